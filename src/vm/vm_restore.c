/* vm_restore.c - a checkpoint back: volumes, then QEMU from the saved state
 * (vm.h).  QEMU arrives paused after an incoming migration of a stopped
 * source; `cont` lets the guest go on from the checkpoint's instant. */
#include "vm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/clock.h"
#include "vm/qmp.h"
#include "vm/vm_qemu.h"

#define FDNAME "hotsnap-restore"
#define START_TIMEOUT_S 60

/* Refuses while the checkpoint's QEMU (or any) still answers on its QMP
 * socket: it would be running the same guest on the same volumes. */
static int check_gone(const struct vm_checkpoint *c, char *err, size_t errlen)
{
	struct qmp *q;
	char e[512];

	int r = qmp_open(c->qmp, &q, e, sizeof(e));
	if (r == -ENOENT || r == -ECONNREFUSED)
		return 0; /* no socket, or no one listening: that QEMU is gone */
	if (r < 0) {
		snprintf(err, errlen, "cannot tell whether the guest's QEMU still runs: %s; quit it "
			 "first, or remove %s if it is gone", e, c->qmp);
		return -EBUSY;
	}
	snprintf(err, errlen, "a QEMU (pid %d) still answers on %s, the guest's QMP socket: quit "
		 "it first (a restore starts the guest again on the same volumes)",
		 (int)qmp_peer_pid(q), c->qmp);
	qmp_close(q);
	return -EBUSY;
}

/* Every image is there before any volume is written: a restore that stops
 * half way would leave some volumes at the checkpoint and others not. */
static int images_present(const char *dir, const struct vm_checkpoint *c, char *err,
			  size_t errlen)
{
	for (int i = 0; i < c->nvols; i++) {
		char path[PATH_MAX];
		if (!c->vols[i].image[0])
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, c->vols[i].image);
		if (access(path, R_OK) < 0) {
			int e = errno;
			snprintf(err, errlen, "the image of volume %s, %s: %s; nothing was restored",
				 c->vols[i].name, path, strerror(e));
			return -e;
		}
	}
	return 0;
}

static int put_volumes_back(const char *dir, struct vm_checkpoint *c, const struct vm_daemon *d,
			    struct vm_restore_result *res, char *err, size_t errlen)
{
	int live = 0;

	for (int i = 0; i < c->nvols; i++)
		live += d->snapshot_live(d->arg, c->vols[i].snapshot) == 1;
	/* all or none: a guest with some disks reverted and some restored is
	 * fine too, but one path is easier to reason about for the user */
	res->reverted = live == c->nvols;
	if (!res->reverted && c->disks_only) {
		snprintf(err, errlen, "the checkpoint kept its disks as snapshots (--disks-only), "
			 "and %d of %d are gone: it cannot be restored", c->nvols - live, c->nvols);
		return -ENOENT;
	}
	for (int i = 0; i < c->nvols; i++) {
		uint64_t bytes = 0;
		int r;
		if (res->reverted) {
			r = d->revert(d->arg, c->vols[i].snapshot, &bytes, err, errlen);
		} else {
			char image[PATH_MAX];
			snprintf(image, sizeof(image), "%s/%s", dir, c->vols[i].image);
			r = d->restore(d->arg, image, c->vols[i].name, &bytes, err, errlen);
		}
		if (r < 0)
			return r;
		res->disk_bytes += bytes;
	}
	return 0;
}

/* Connects to the new QEMU's monitor, waiting while it starts. */
static int connect_new(const char *qmp_path, pid_t pid, struct qmp **q, char *err,
		       size_t errlen)
{
	uint64_t deadline = clock_mono_ns() + START_TIMEOUT_S * 1000000000ull;
	int status;

	for (;;) {
		if (qmp_open(qmp_path, q, err, errlen) == 0)
			return 0;
		/* with -daemonize the first process exits 0 once QEMU is up */
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
			snprintf(err, errlen, "QEMU exited at start (%s %d): see qemu-restore.log in "
				 "the checkpoint directory",
				 WIFEXITED(status) ? "status" : "signal",
				 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
			return -EIO;
		}
		if (clock_mono_ns() > deadline) {
			snprintf(err, errlen, "QEMU did not open its monitor in %d s",
				 START_TIMEOUT_S);
			return -ETIMEDOUT;
		}
		usleep(20000);
	}
}

static int load_state(struct qmp *q, int memfd, char *err, size_t errlen)
{
	json_object *args = json_object_new_object();
	int r;

	json_object_object_add(args, "fdname", json_object_new_string(FDNAME));
	if ((r = qmp_execute(q, "getfd", args, memfd, NULL, err, errlen)) < 0)
		return r;
	args = json_object_new_object();
	json_object_object_add(args, "uri", json_object_new_string("fd:" FDNAME));
	if ((r = qmp_execute(q, "migrate-incoming", args, -1, NULL, err, errlen)) < 0)
		return r;
	for (;;) {
		json_object *st;
		if ((r = qmp_execute(q, "query-migrate", NULL, -1, &st, err, errlen)) < 0)
			return r;
		const char *s = json_object_get_string(json_object_object_get(st, "status"));
		bool done = s && strcmp(s, "completed") == 0;
		bool failed = s && (strcmp(s, "failed") == 0 || strcmp(s, "cancelled") == 0);
		json_object_put(st);
		if (done)
			break;
		if (failed) {
			snprintf(err, errlen, "QEMU could not load the saved state (different "
				 "machine arguments or QEMU version?): see qemu-restore.log");
			return -EIO;
		}
		usleep(20000);
	}
	char state[64];
	json_object *st;
	if ((r = qmp_execute(q, "query-status", NULL, -1, &st, err, errlen)) < 0)
		return r;
	snprintf(state, sizeof(state), "%s", json_object_get_string(json_object_object_get(st, "status")));
	json_object_put(st);
	if (strcmp(state, "running") != 0)
		r = qmp_execute(q, "cont", NULL, -1, NULL, err, errlen);
	return r;
}

int vm_restore(const char *dir, const struct vm_daemon *d, struct vm_restore_result *res,
	       char *err, size_t errlen)
{
	struct vm_checkpoint c;
	char mem[PATH_MAX], qmp_path[PATH_MAX], log_path[PATH_MAX];
	struct qmp *q = NULL;
	pid_t pid = -1;
	bool volumes_back = false;
	int memfd, r;

	memset(res, 0, sizeof(*res));
	if ((r = vm_manifest_read(dir, &c, err, errlen)) < 0)
		return r;
	snprintf(mem, sizeof(mem), "%s/%s", dir, VM_MEMORY_FILE);
	snprintf(qmp_path, sizeof(qmp_path), "%s/%s", dir, VM_RESTORE_QMP);
	snprintf(log_path, sizeof(log_path), "%s/qemu-restore.log", dir);
	if (strlen(qmp_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		snprintf(err, errlen, "the path %s is too long for a socket (%zu bytes at most): "
			 "move the checkpoint to a shorter path", qmp_path,
			 sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		vm_checkpoint_free(&c);
		return -ENAMETOOLONG;
	}
	memfd = open(mem, O_RDONLY | O_CLOEXEC);
	if (memfd < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot open the saved state %s: %s", mem, strerror(errno));
		goto out;
	}
	if ((r = check_gone(&c, err, errlen)) < 0 ||
	    (r = images_present(dir, &c, err, errlen)) < 0 ||
	    (r = put_volumes_back(dir, &c, d, res, err, errlen)) < 0)
		goto out;
	volumes_back = true;
	uint64_t t0 = clock_mono_ns();
	if ((r = vm_qemu_start(&c, qmp_path, log_path, &pid, err, errlen)) < 0)
		goto out;
	if ((r = connect_new(qmp_path, pid, &q, err, errlen)) < 0 ||
	    (r = load_state(q, memfd, err, errlen)) < 0) {
		if (q) {
			char e[128];
			(void)qmp_execute(q, "quit", NULL, -1, NULL, e, sizeof(e));
		} else if (pid > 0) {
			kill(pid, SIGTERM);
		}
		goto out;
	}
	res->load_seconds = (double)(clock_mono_ns() - t0) / 1e9;
	res->qemu_pid = qmp_peer_pid(q);
out:
	if (r < 0 && volumes_back) {
		size_t n = strlen(err);
		snprintf(err + n, errlen - n, " (the volumes are back at the checkpoint already; "
			 "QEMU's output is in %s)", log_path);
	}
	if (pid > 0)
		(void)waitpid(pid, NULL, WNOHANG); /* a -daemonize parent */
	qmp_close(q);
	if (memfd >= 0)
		close(memfd);
	vm_checkpoint_free(&c);
	return r;
}
