/* vm_checkpoint.c - taking a checkpoint (vm.h has the steps and why). */
#include "vm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/compiler.h"
#include "common/names.h"
#include "vm/qmp.h"
#include "vm/vm_qemu.h"

#define FDNAME "hotsnap-checkpoint"
#define POLL_MS 20

static void now_iso(char *buf, size_t len)
{
	time_t t = time(NULL);
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%S%z", &tm);
}

/* DIR must be new or empty: a checkpoint never mixes with other files, and
 * so what a failed checkpoint removes from DIR was its own. */
static int make_dir(const char *dir, char *err, size_t errlen)
{
	if (mkdir(dir, 0750) == 0)
		return 0;
	if (errno != EEXIST) {
		int e = errno;
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(e));
		return -e;
	}
	DIR *dh = opendir(dir);
	if (!dh) {
		int e = errno;
		snprintf(err, errlen, "cannot open %s: %s", dir, strerror(e));
		return -e;
	}
	struct dirent *de;
	bool manifest = false, other = false;
	while ((de = readdir(dh))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (strcmp(de->d_name, VM_MANIFEST) == 0)
			manifest = true;
		other = true;
	}
	closedir(dh);
	if (manifest) {
		snprintf(err, errlen, "%s holds a checkpoint already; give a new directory", dir);
		return -EEXIST;
	}
	if (other) {
		snprintf(err, errlen, "%s is not empty; a checkpoint goes into a new or empty "
			 "directory", dir);
		return -EEXIST;
	}
	return 0;
}

/* Turns QEMU's background-snapshot capability on or off.  Off again after
 * the checkpoint: left on, the next ordinary migration of this guest would
 * be a background snapshot, which leaves the source running beside the
 * destination, both writing the same volumes. */
static int set_background_snapshot(struct qmp *q, bool on, char *err, size_t errlen)
{
	json_object *args = json_object_new_object(), *caps = json_object_new_array(),
		    *cap = json_object_new_object();
	json_object_object_add(cap, "capability", json_object_new_string("background-snapshot"));
	json_object_object_add(cap, "state", json_object_new_boolean(on));
	json_object_array_add(caps, cap);
	json_object_object_add(args, "capabilities", caps);
	return qmp_execute(q, "migrate-set-capabilities", args, -1, NULL, err, errlen);
}

/* The migration's status and the RAM pages it has saved so far (normal and
 * zero pages: counted only by the save's iterations, not by its setup,
 * unlike the bytes written). */
static int migration_status(struct qmp *q, char *status, size_t len, uint64_t *ram_pages,
			    char *why, size_t whylen, char *err, size_t errlen)
{
	json_object *st, *ram, *v;
	int r = qmp_execute(q, "query-migrate", NULL, -1, &st, err, errlen);
	if (r < 0)
		return r;
	snprintf(status, len, "%s", json_object_get_string(json_object_object_get(st, "status")));
	*ram_pages = 0;
	if (json_object_object_get_ex(st, "ram", &ram)) {
		if (json_object_object_get_ex(ram, "normal", &v))
			*ram_pages += (uint64_t)json_object_get_int64(v);
		if (json_object_object_get_ex(ram, "duplicate", &v))
			*ram_pages += (uint64_t)json_object_get_int64(v);
	}
	if (why) {
		v = json_object_object_get(st, "error-desc");
		snprintf(why, whylen, "%s", v ? json_object_get_string(v) : status);
	}
	json_object_put(st);
	return 0;
}

/* Waits for the guest to run again after migrate.  QEMU up to 8.2 resumes
 * it by itself once memory is write-protected (RESUME); from 9.0 it goes
 * back to the run state it found, which is paused, since we stopped it.
 * So: RESUME, or else, once the save has saved RAM pages, `cont`.  It saves
 * them only after it has write-protected all memory and let go of QEMU's
 * big lock, so the memory of the instant is safe by then; a `cont` any
 * earlier (the save "active" but still setting up) could run the guest
 * before memory is protected, and memory would be of a later instant than
 * the disks.  A save that fails ends the wait at once. */
static int wait_resumed(struct qmp *q, int timeout_s, json_object **resume_ev, char *err,
			size_t errlen)
{
	uint64_t deadline = clock_mono_ns() + (uint64_t)timeout_s * 1000000000u;
	bool sent_cont = false;

	for (;;) {
		int r = qmp_wait_event(q, "RESUME", POLL_MS, resume_ev, err, errlen);
		if (r != -ETIMEDOUT)
			return r;
		char status[32], why[256];
		uint64_t pages;
		r = migration_status(q, status, sizeof(status), &pages, why, sizeof(why), err,
				     errlen);
		if (r < 0)
			return r;
		if (strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0) {
			snprintf(err, errlen, "QEMU could not start saving the guest's memory: %s",
				 why);
			return -EIO;
		}
		if (!sent_cont && (strcmp(status, "completed") == 0 ||
				   (strcmp(status, "active") == 0 && pages > 0))) {
			r = qmp_execute(q, "cont", NULL, -1, NULL, err, errlen);
			if (r < 0)
				return r;
			sent_cont = true;
		}
		if (clock_mono_ns() > deadline) {
			snprintf(err, errlen, "the guest did not run again within %d s of the "
				 "snapshot (QEMU's save did not start)", timeout_s);
			return -ETIMEDOUT;
		}
	}
}

/* -EINTR (with err) when one of the held signals is pending. */
static int interrupted(const sigset_t *hold, char *err, size_t errlen)
{
	sigset_t pending;
	if (sigpending(&pending) < 0)
		return 0;
	for (int s = 1; s < NSIG; s++)
		if (sigismember(hold, s) == 1 && sigismember(&pending, s) == 1) {
			snprintf(err, errlen, "interrupted (%s): the checkpoint was undone",
				 strsignal(s));
			return -EINTR;
		}
	return 0;
}

/* After migrate_cancel: QEMU refuses capability changes while it is still
 * cancelling, so wait (a few seconds at most) for the cancel to end. */
static void wait_cancelled(struct qmp *q)
{
	for (int i = 0; i < 250; i++) {
		char status[32], e[256];
		uint64_t pages;
		if (migration_status(q, status, sizeof(status), &pages, NULL, 0, e, sizeof(e)) < 0 ||
		    (strcmp(status, "cancelling") != 0 && strcmp(status, "active") != 0 &&
		     strcmp(status, "setup") != 0))
			return;
		usleep(POLL_MS * 1000);
	}
}

/* Waits until QEMU's migration (our memory save) ends.  0 when completed. */
static int wait_saved(struct qmp *q, const sigset_t *hold, int timeout_s, char *err,
		      size_t errlen)
{
	uint64_t deadline = clock_mono_ns() + (uint64_t)timeout_s * 1000000000u;

	for (;;) {
		char status[32], why[256];
		uint64_t pages;
		int r = migration_status(q, status, sizeof(status), &pages, why, sizeof(why), err,
					 errlen);
		if (r == -ECONNRESET)
			snprintf(err, errlen, "QEMU went away while saving the guest's memory (the "
					      "guest ended?)");
		if (r < 0)
			return r;
		if (strcmp(status, "completed") == 0)
			return 0;
		if (strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0) {
			snprintf(err, errlen, "QEMU could not save the guest's memory: %s", why);
			return -EIO;
		}
		if ((r = interrupted(hold, err, errlen)) < 0)
			return r;
		if (clock_mono_ns() > deadline) {
			snprintf(err, errlen, "QEMU did not finish saving memory in %d s", timeout_s);
			return -ETIMEDOUT;
		}
		usleep(POLL_MS * 1000);
	}
}

static int running(struct qmp *q, char *state, size_t len, char *err, size_t errlen)
{
	json_object *st;
	int r = qmp_execute(q, "query-status", NULL, -1, &st, err, errlen);
	if (r < 0)
		return r;
	snprintf(state, len, "%s", json_object_get_string(json_object_object_get(st, "status")));
	json_object_put(st);
	return strcmp(state, "running") == 0;
}

static void drop_snapshots(const struct vm_daemon *d, const struct vm_checkpoint *c)
{
	char e[256];
	for (int i = 0; i < c->nvols; i++)
		(void)d->delete_snapshot(d->arg, c->vols[i].snapshot, e, sizeof(e));
}

int vm_checkpoint_take(const struct vm_checkpoint_opts *o, const struct vm_daemon *d,
		       struct vm_checkpoint *c, char *err, size_t errlen)
{
	uint64_t t0 = clock_mono_ns();
	int timeout = o->timeout_s > 0 ? HS_MIN(o->timeout_s, 86400) : 600;
	struct qmp *q = NULL;
	json_object *args, *stop_ev = NULL, *resume_ev = NULL;
	char path[PATH_MAX], state[64];
	int memfd = -1, r;
	bool stopped = false, snapped = false, migrating = false, capability_on = false;
	bool held = false;
	sigset_t saved;

	memset(c, 0, sizeof(*c));
	if (o->nvols < 1 || o->nvols > VM_MAX_VOLUMES) {
		snprintf(err, errlen, "a checkpoint takes 1 to %d volumes", VM_MAX_VOLUMES);
		return -EINVAL;
	}
	if (o->name)
		snprintf(c->name, sizeof(c->name), "%s", o->name);
	else {
		time_t t = time(NULL);
		struct tm tm;
		localtime_r(&t, &tm);
		strftime(c->name, sizeof(c->name), "vm-%Y%m%d-%H%M%S", &tm);
	}
	if (names_check(c->name)) {
		snprintf(err, errlen, "bad checkpoint name '%s': %s", c->name, names_check(c->name));
		return -EINVAL;
	}
	snprintf(c->qmp, sizeof(c->qmp), "%s", o->qmp);
	c->disks_only = o->disks_only;
	c->nvols = o->nvols;
	for (int i = 0; i < o->nvols; i++) {
		if (names_check(o->volumes[i])) {
			snprintf(err, errlen, "bad volume name '%.64s': %s", o->volumes[i],
				 names_check(o->volumes[i]));
			return -EINVAL;
		}
		snprintf(c->vols[i].name, sizeof(c->vols[i].name), "%s", o->volumes[i]);
		snprintf(c->vols[i].snapshot, sizeof(c->vols[i].snapshot), "%s@%s", o->volumes[i],
			 c->name);
		if (!o->disks_only)
			snprintf(c->vols[i].image, sizeof(c->vols[i].image), "%s.qcow2",
				 o->volumes[i]);
	}

	r = qmp_open(o->qmp, &q, err, errlen);
	if (r < 0)
		return r;
	qmp_set_reply_timeout(q, timeout * 1000);
	c->qemu_pid = qmp_peer_pid(q);
	snprintf(c->qemu_version, sizeof(c->qemu_version), "%s", qmp_version(q));
	if ((r = vm_qemu_read_process(c->qemu_pid, c, err, errlen)) < 0 ||
	    (r = vm_qemu_match_disks(q, c, err, errlen)) < 0)
		goto out;
	r = running(q, state, sizeof(state), err, errlen);
	if (r == 0) {
		snprintf(err, errlen, "the guest is %s, not running: a checkpoint is taken of a "
			 "running guest (cont it first)", state);
		r = -EINVAL;
	}
	if (r < 0)
		goto out;
	r = set_background_snapshot(q, true, err, errlen);
	if (r < 0) {
		char why[512];
		snprintf(why, sizeof(why), "%s", err);
		snprintf(err, errlen, "%s: this QEMU (%s) or kernel cannot save memory in the "
			 "background (QEMU 6.0 or later and userfaultfd write-protect are needed)",
			 why, c->qemu_version);
		goto out;
	}
	capability_on = true;
	if ((r = make_dir(o->dir, err, errlen)) < 0)
		goto out;
	snprintf(path, sizeof(path), "%s/%s", o->dir, VM_MEMORY_FILE);
	memfd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (memfd < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		goto out;
	}
	args = json_object_new_object();
	json_object_object_add(args, "fdname", json_object_new_string(FDNAME));
	if ((r = qmp_execute(q, "getfd", args, memfd, NULL, err, errlen)) < 0)
		goto out;

	/* the instant: stop, snapshot set, start saving; the guest resumes.
	 * From here the signals that end or suspend a CLI are held: a Ctrl-C
	 * while the guest is stopped would leave it stopped with no one to
	 * start it, and one later would leave the save running with the
	 * capability on.  A held signal ends the checkpoint at its next step,
	 * through the cleanup below, and takes effect once we return. */
	sigset_t hold;
	sigemptyset(&hold);
	sigaddset(&hold, SIGINT);
	sigaddset(&hold, SIGTERM);
	sigaddset(&hold, SIGHUP);
	sigaddset(&hold, SIGQUIT);
	sigaddset(&hold, SIGTSTP);
	pthread_sigmask(SIG_BLOCK, &hold, &saved);
	held = true;
	stopped = true; /* before the answer: a stop that times out may still happen */
	if ((r = qmp_execute(q, "stop", NULL, -1, NULL, err, errlen)) < 0)
		goto out;
	if ((r = qmp_wait_event(q, "STOP", 10000, &stop_ev, err, errlen)) < 0)
		goto out;
	char *vols[VM_MAX_VOLUMES];
	for (int i = 0; i < c->nvols; i++)
		vols[i] = c->vols[i].name;
	if ((r = d->snapshot(d->arg, vols, c->nvols, c->name, err, errlen)) < 0)
		goto out;
	snapped = true;
	args = json_object_new_object();
	json_object_object_add(args, "uri", json_object_new_string("fd:" FDNAME));
	migrating = true;
	if ((r = qmp_execute(q, "migrate", args, -1, NULL, err, errlen)) < 0)
		goto out;
	if ((r = wait_resumed(q, timeout, &resume_ev, err, errlen)) < 0)
		goto out;
	stopped = false;
	c->pause_ms = (double)(qmp_event_time_us(resume_ev) - qmp_event_time_us(stop_ev)) / 1000.0;

	/* the disks while the memory is saved */
	for (int i = 0; !o->disks_only && i < c->nvols; i++) {
		snprintf(path, sizeof(path), "%s/%s", o->dir, c->vols[i].image);
		if ((r = interrupted(&hold, err, errlen)) < 0)
			goto out;
		r = d->backup(d->arg, c->vols[i].snapshot, path, &c->vols[i].bytes, err, errlen);
		if (r < 0)
			goto out;
	}
	r = wait_saved(q, &hold, timeout, err, errlen);
	migrating = false;
	if (r < 0)
		goto out;
	capability_on = false;
	char e2[256];
	if (set_background_snapshot(q, false, e2, sizeof(e2)) < 0)
		snprintf(c->warning, sizeof(c->warning),
			 "background-snapshot is still on in QEMU (%s): turn it off before "
			 "migrating this guest", e2);
	struct stat st;
	if (fstat(memfd, &st) == 0)
		c->memory_bytes = (uint64_t)st.st_size;
	if (fsync(memfd) < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot write %s/%s: %s", o->dir, VM_MEMORY_FILE,
			 strerror(errno));
		goto out;
	}
	if (!o->disks_only)
		drop_snapshots(d, c); /* the images hold them now */
	now_iso(c->created, sizeof(c->created));
	c->seconds = (double)(clock_mono_ns() - t0) / 1e9;
	r = vm_manifest_write(o->dir, c, err, errlen);
	snapped = o->disks_only;
out:
	if (r < 0 && c->warning[0]) { /* the failure is what gets printed */
		size_t used = strlen(err);
		snprintf(err + used, errlen > used ? errlen - used : 0, "; also: %s", c->warning);
	}
	if (r < 0) {
		char e[256];
		if (migrating) {
			(void)qmp_execute(q, "migrate_cancel", NULL, -1, NULL, e, sizeof(e));
			wait_cancelled(q);
		}
		if (stopped && q)
			(void)qmp_execute(q, "cont", NULL, -1, NULL, e, sizeof(e));
		if (capability_on)
			(void)set_background_snapshot(q, false, e, sizeof(e));
		if (snapped)
			drop_snapshots(d, c);
		if (memfd >= 0) {
			snprintf(path, sizeof(path), "%s/%s", o->dir, VM_MEMORY_FILE);
			unlink(path);
			for (int i = 0; i < c->nvols; i++) {
				if (!c->vols[i].image[0])
					continue;
				snprintf(path, sizeof(path), "%s/%s", o->dir, c->vols[i].image);
				unlink(path);
			}
		}
		vm_checkpoint_free(c);
	}
	if (held)
		pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (memfd >= 0)
		close(memfd);
	json_object_put(stop_ev);
	json_object_put(resume_ev);
	qmp_close(q);
	return r;
}
