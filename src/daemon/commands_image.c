/* commands_image.c - image attach, detach, list: a backup image (raw, or a
 * qcow2 chain) served read-only, as a loop device to mount and copy files
 * from, and as an NBD export "image:NAME". */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "daemon/commands.h"
#include "export/export.h"
#include "fuse/fuse_front.h"

struct image_entry *images_find(struct daemon *d, const char *name)
{
	for (struct image_entry *ie = d->images; ie; ie = ie->next)
		if (strcmp(ie->name, name) == 0)
			return ie;
	return NULL;
}

static void fuse_name(const struct image_entry *ie, char *buf, size_t len)
{
	snprintf(buf, len, "image:%s", ie->name);
}

static void release(struct daemon *d, struct image_entry *ie)
{
	char fname[HS_NAME_MAX + 8];

	fuse_name(ie, fname, sizeof(fname));
	loopdev_detach_force(&ie->loop);
	if (fuse_front_remove(d->fuse, fname) < 0)
		hs_warn("the FUSE file of image %s is still open; it goes when closed", ie->name);
	export_close(ie->base);
	for (struct image_entry **pp = &d->images; *pp; pp = &(*pp)->next)
		if (*pp == ie) {
			*pp = ie->next;
			break;
		}
	free(ie);
}

void images_release_all(struct daemon *d)
{
	while (d->images)
		release(d, d->images);
}

static json_object *image_json(struct daemon *d, struct image_entry *ie)
{
	json_object *o = json_object_new_object();
	char fname[HS_NAME_MAX + 8], path[PATH_MAX], uri[512];
	fuse_name(ie, fname, sizeof(fname));
	json_object_object_add(o, "name", json_object_new_string(ie->name));
	json_object_object_add(o, "image", json_object_new_string(ie->path));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)export_size(ie->base)));
	if (ie->loop.dev[0])
		json_object_object_add(o, "device", json_object_new_string(ie->loop.dev));
	registry_fuse_path(d, fname, path, sizeof(path));
	json_object_object_add(o, "fuse_file", json_object_new_string(path));
	json_object_object_add(o, "nbd_uri",
			       json_object_new_string(daemon_nbd_uri(d, fname, uri, sizeof(uri))));
	return o;
}

/* A name from the file's: "db-3.qcow2" -> "db-3". */
static void default_name(const char *path, char *out, size_t len)
{
	char copy[PATH_MAX];
	snprintf(copy, sizeof(copy), "%s", path);
	snprintf(out, len, "%s", basename(copy));
	char *dot = strrchr(out, '.');
	if (dot && dot != out)
		*dot = '\0';
}

static enum cmd_status cmd_image_attach(struct daemon *d, const struct ctl_request *req,
					struct ctl_session *sess, json_object **result,
					char *err, size_t errlen)
{
	const char *path = ctl_str(req, "image"), *why;
	char name[PATH_MAX], fname[HS_NAME_MAX + 8], fpath[PATH_MAX], msg[IMAGE_ERROR_MAX];
	struct image_reader *r;
	struct image_entry *ie;
	int e;

	if (path[0] != '/') {
		snprintf(err, errlen, "the image must be an absolute path");
		return CMD_USAGE;
	}
	if (ctl_str(req, "name"))
		snprintf(name, sizeof(name), "%s", ctl_str(req, "name"));
	else
		default_name(path, name, sizeof(name));
	if ((why = names_check(name))) {
		snprintf(err, errlen, "cannot use '%.64s' as the image's name (%s); give --name", name,
			 why);
		return CMD_USAGE;
	}
	if (images_find(d, name)) {
		snprintf(err, errlen, "an image named '%s' is attached already (hotsnap image detach "
				      "%s, or give --name)",
			 name, name);
		return CMD_ERROR;
	}
	e = image_open(&r, path, 0, msg, sizeof(msg));
	if (e < 0) {
		snprintf(err, errlen, "cannot attach %s: %s", path, msg);
		return CMD_ERROR;
	}
	ie = calloc(1, sizeof(*ie));
	if (!ie) {
		image_close(r);
		snprintf(err, errlen, "out of memory");
		return CMD_ERROR;
	}
	snprintf(ie->name, sizeof(ie->name), "%s", name);
	snprintf(ie->path, sizeof(ie->path), "%s", path);
	fuse_name(ie, fname, sizeof(fname));
	ie->base = export_open_image(r, fname);
	struct export *fe = ie->base ? export_dup(ie->base) : NULL;
	e = fe ? fuse_front_add(d->fuse, fname, fe) : -ENOMEM;
	if (e < 0) {
		snprintf(err, errlen, "cannot publish %s: %s", fname, strerror(-e));
		export_close(ie->base);
		free(ie);
		return CMD_ERROR;
	}
	ie->next = d->images;
	d->images = ie;
	registry_fuse_path(d, fname, fpath, sizeof(fpath));
	const char *lwhy = "";
	e = loopdev_attach(fpath, true, &ie->loop, &lwhy);
	if (e < 0) {
		snprintf(err, errlen, "cannot attach a loop device to %s: %s: %s", path, lwhy,
			 strerror(-e));
		release(d, ie);
		return CMD_ERROR;
	}
	hs_info("image %s attached read-only as %s (NBD export %s)", path, ie->loop.dev, fname);
	*result = image_json(d, ie);
	return CMD_OK;
}

static enum cmd_status cmd_image_detach(struct daemon *d, const struct ctl_request *req,
					struct ctl_session *sess, json_object **result,
					char *err, size_t errlen)
{
	struct image_entry *ie = images_find(d, ctl_str(req, "name"));
	char what[HS_NAME_MAX + 16];
	enum cmd_status st;

	if (!ie) {
		snprintf(err, errlen, "no image named '%.64s' is attached (see hotsnap image list)",
			 ctl_str(req, "name"));
		return CMD_ERROR;
	}
	snprintf(what, sizeof(what), "image '%s'", ie->name);
	if (ie->loop.dev[0]) {
		char fname[HS_NAME_MAX + 8];
		fuse_name(ie, fname, sizeof(fname));
		st = commands_detach_loop(d, &ie->loop, what, fname, NULL, err, errlen);
		if (st != CMD_OK)
			return st;
	}
	hs_info("image %s detached", ie->path);
	release(d, ie);
	*result = json_object_new_object();
	return CMD_OK;
}

static enum cmd_status cmd_image_list(struct daemon *d, const struct ctl_request *req,
				      struct ctl_session *sess, json_object **result, char *err,
				      size_t errlen)
{
	json_object *arr = json_object_new_array();

	for (struct image_entry *ie = d->images; ie; ie = ie->next)
		json_object_array_add(arr, image_json(d, ie));
	*result = json_object_new_object();
	json_object_object_add(*result, "images", arr);
	return CMD_OK;
}

const struct command_entry commands_image[] = {
	{ "image.attach", cmd_image_attach },
	{ "image.detach", cmd_image_detach },
	{ "image.list", cmd_image_list },
	{ NULL, NULL },
};
