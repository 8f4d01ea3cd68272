/* vm_manifest.c - a checkpoint's manifest: DIR/checkpoint.json, written
 * last and atomically (temp file, fsync, rename, fsync of DIR), so that its
 * presence means every file it names is complete. */
#include "vm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FORMAT "hotsnap-vm-checkpoint/1"

static void add_str(json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, json_object_new_string(v));
}

json_object *vm_checkpoint_json(const struct vm_checkpoint *c)
{
	json_object *o = json_object_new_object(), *q = json_object_new_object();
	json_object *argv = json_object_new_array(), *vols = json_object_new_array();

	add_str(o, "format", FORMAT);
	add_str(o, "name", c->name);
	add_str(o, "created", c->created);
	add_str(o, "qmp", c->qmp);
	add_str(q, "binary", c->qemu_binary);
	add_str(q, "cwd", c->qemu_cwd);
	add_str(q, "version", c->qemu_version);
	json_object_object_add(q, "pid", json_object_new_int64(c->qemu_pid));
	for (int i = 0; i < c->argc; i++)
		json_object_array_add(argv, json_object_new_string(c->argv[i]));
	json_object_object_add(q, "argv", argv);
	json_object_object_add(o, "qemu", q);
	json_object_object_add(o, "disks_only", json_object_new_boolean(c->disks_only));
	for (int i = 0; i < c->nvols; i++) {
		json_object *v = json_object_new_object();
		add_str(v, "volume", c->vols[i].name);
		add_str(v, "snapshot", c->vols[i].snapshot);
		add_str(v, "device", c->vols[i].device);
		if (c->vols[i].image[0])
			add_str(v, "image", c->vols[i].image);
		json_object_object_add(v, "bytes", json_object_new_int64((int64_t)c->vols[i].bytes));
		json_object_array_add(vols, v);
	}
	json_object_object_add(o, "volumes", vols);
	add_str(o, "memory", VM_MEMORY_FILE);
	json_object_object_add(o, "memory_bytes", json_object_new_int64((int64_t)c->memory_bytes));
	json_object_object_add(o, "pause_ms", json_object_new_double(c->pause_ms));
	json_object_object_add(o, "seconds", json_object_new_double(c->seconds));
	return o;
}

int vm_manifest_write(const char *dir, const struct vm_checkpoint *c, char *err, size_t errlen)
{
	char tmp[PATH_MAX], path[PATH_MAX];
	json_object *o = vm_checkpoint_json(c);
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
							     JSON_C_TO_STRING_NOSLASHESCAPE);
	size_t len = strlen(text);
	int fd, r = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, VM_MANIFEST);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, VM_MANIFEST);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		r = -errno;
	for (size_t done = 0; r == 0 && done < len + 1;) {
		/* the text, then its newline; a short write goes on, none is -EIO */
		const char *from = done < len ? text + done : "\n";
		size_t n = done < len ? len - done : 1;
		ssize_t w = write(fd, from, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			r = w < 0 ? -errno : -EIO;
		else
			done += (size_t)w;
	}
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (fd >= 0)
		close(fd);
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	json_object_put(o);
	if (r < 0) {
		unlink(tmp);
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(-r));
		return r;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	return 0;
}

static void get_str(json_object *o, const char *k, char *buf, size_t len)
{
	json_object *v;
	if (json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string))
		snprintf(buf, len, "%s", json_object_get_string(v));
	else
		buf[0] = '\0';
}

int vm_manifest_read(const char *dir, struct vm_checkpoint *c, char *err, size_t errlen)
{
	char path[PATH_MAX], fmt[64];
	json_object *o, *q, *argv, *vols, *v;

	memset(c, 0, sizeof(*c));
	snprintf(path, sizeof(path), "%s/%s", dir, VM_MANIFEST);
	if (access(path, F_OK) < 0) {
		int e = errno;
		snprintf(err, errlen, "%s has no %s: not a checkpoint directory, or a checkpoint "
			 "that did not finish", dir, VM_MANIFEST);
		return e == ENOENT ? -ENOENT : -e;
	}
	o = json_object_from_file(path);
	get_str(o, "format", fmt, sizeof(fmt));
	if (!o || strcmp(fmt, FORMAT) != 0 || !json_object_object_get_ex(o, "qemu", &q) ||
	    !json_object_object_get_ex(q, "argv", &argv) ||
	    !json_object_is_type(argv, json_type_array) ||
	    !json_object_object_get_ex(o, "volumes", &vols) ||
	    !json_object_is_type(vols, json_type_array)) {
		json_object_put(o);
		snprintf(err, errlen, "%s is not a hotsnap checkpoint manifest (%s)", path, FORMAT);
		return -EINVAL;
	}
	get_str(o, "name", c->name, sizeof(c->name));
	get_str(o, "created", c->created, sizeof(c->created));
	get_str(o, "qmp", c->qmp, sizeof(c->qmp));
	get_str(q, "binary", c->qemu_binary, sizeof(c->qemu_binary));
	get_str(q, "cwd", c->qemu_cwd, sizeof(c->qemu_cwd));
	get_str(q, "version", c->qemu_version, sizeof(c->qemu_version));
	if (json_object_object_get_ex(q, "pid", &v))
		c->qemu_pid = (pid_t)json_object_get_int64(v);
	c->argc = (int)json_object_array_length(argv);
	c->argv = calloc((size_t)c->argc + 1, sizeof(char *));
	for (int i = 0; c->argv && i < c->argc; i++) {
		const char *a = json_object_get_string(json_object_array_get_idx(argv, i));
		c->argv[i] = strdup(a ? a : "");
	}
	c->disks_only = json_object_object_get_ex(o, "disks_only", &v) && json_object_get_boolean(v);
	c->nvols = (int)json_object_array_length(vols);
	if (c->nvols > VM_MAX_VOLUMES)
		c->nvols = VM_MAX_VOLUMES;
	for (int i = 0; i < c->nvols; i++) {
		json_object *e = json_object_array_get_idx(vols, i);
		get_str(e, "volume", c->vols[i].name, sizeof(c->vols[i].name));
		get_str(e, "snapshot", c->vols[i].snapshot, sizeof(c->vols[i].snapshot));
		get_str(e, "device", c->vols[i].device, sizeof(c->vols[i].device));
		get_str(e, "image", c->vols[i].image, sizeof(c->vols[i].image));
		if (strchr(c->vols[i].image, '/'))
			c->vols[i].image[0] = '\0'; /* only files of DIR itself */
		if (json_object_object_get_ex(e, "bytes", &v))
			c->vols[i].bytes = (uint64_t)json_object_get_int64(v);
	}
	if (json_object_object_get_ex(o, "memory_bytes", &v))
		c->memory_bytes = (uint64_t)json_object_get_int64(v);
	if (json_object_object_get_ex(o, "pause_ms", &v))
		c->pause_ms = json_object_get_double(v);
	if (json_object_object_get_ex(o, "seconds", &v))
		c->seconds = json_object_get_double(v);
	json_object_put(o);
	if (!c->argv || c->argc == 0 || !c->qemu_binary[0] || c->nvols == 0) {
		vm_checkpoint_free(c);
		snprintf(err, errlen, "%s lacks QEMU's arguments or the volumes", path);
		return -EINVAL;
	}
	for (int i = 0; i < c->argc; i++)
		if (!c->argv[i]) {
			vm_checkpoint_free(c);
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
	return 0;
}

void vm_checkpoint_free(struct vm_checkpoint *c)
{
	if (c->argv)
		for (int i = 0; i < c->argc; i++)
			free(c->argv[i]);
	free(c->argv);
	c->argv = NULL;
	c->argc = 0;
}
