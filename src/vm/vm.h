/* vm.h - checkpoints of running QEMU guests whose disks are hotsnap volumes
 * (served over NBD): disks and memory at one instant, as Hyper-V does it.
 *
 * A checkpoint, through QEMU's QMP socket:
 *   1. the guest is stopped (QEMU drains and flushes its disks first, so
 *      every write the guest saw complete is in the volumes);
 *   2. the daemon takes one snapshot set of the volumes (no freeze: nothing
 *      in the guest runs);
 *   3. `migrate` with background-snapshot starts saving device state and
 *      memory into DIR; QEMU resumes the guest by itself once the device
 *      state is saved and write-protects memory not yet saved (userfaultfd),
 *      so memory is that of the instant of step 2.  We never send `cont`
 *      there: it would race QEMU's snapshot thread and let the guest run
 *      before its memory is taken;
 *   4. while memory is saved, the snapshots are backed up into DIR (or kept
 *      live with disks_only); then a manifest is written, last, so a
 *      directory without one is an unfinished checkpoint.
 * The pause is QEMU's own STOP to RESUME (event timestamps).
 *
 * A restore puts the volumes back (a revert when the checkpoint's
 * snapshots are still live, else the images), starts QEMU with the saved
 * arguments plus `-incoming defer` and a monitor of our own, feeds it the
 * saved state, and lets the guest go on.
 *
 * This folder knows QMP and QEMU, not the daemon: what it needs of the
 * daemon comes through struct vm_daemon. */
#ifndef HS_VM_VM_H
#define HS_VM_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VM_MAX_VOLUMES 16
#define VM_MANIFEST "checkpoint.json"
#define VM_MEMORY_FILE "memory.state"
#define VM_RESTORE_QMP "restore-qmp.sock"
#define VM_MONITOR_ID "hotsnap-restore-qmp" /* our monitor's chardev in a restored QEMU */

/* What a checkpoint or restore asks of the daemon.  Each returns 0, or < 0
 * with err saying why. */
struct vm_daemon {
	void *arg;
	/* one snapshot set of volumes, named name, without freeze or hooks */
	int (*snapshot)(void *arg, char *const *volumes, int n, const char *name, char *err,
			size_t errlen);
	/* VOLUME@NAME into a qcow2 image at path; *bytes: what it read */
	int (*backup)(void *arg, const char *snapshot, const char *path, uint64_t *bytes,
		      char *err, size_t errlen);
	int (*delete_snapshot)(void *arg, const char *snapshot, char *err, size_t errlen);
	/* 1 when VOLUME@NAME is live and whole (revertable), 0 when not */
	int (*snapshot_live)(void *arg, const char *snapshot);
	int (*revert)(void *arg, const char *snapshot, uint64_t *bytes, char *err, size_t errlen);
	int (*restore)(void *arg, const char *image, const char *volume, uint64_t *bytes,
		       char *err, size_t errlen);
};

struct vm_volume {
	char name[128];     /* the volume */
	char snapshot[256]; /* VOLUME@NAME */
	char device[128];   /* the guest's device (qdev id or node name) */
	char image[160];    /* file in the checkpoint directory, "" with disks_only */
	uint64_t bytes;     /* read into the image, or written back on restore */
};

/* A checkpoint as its manifest (VM_MANIFEST) records it. */
struct vm_checkpoint {
	char name[128];
	char created[40];     /* ISO 8601 */
	char qmp[4096];       /* the QMP socket it was taken through */
	char qemu_binary[4096];
	char qemu_cwd[4096];
	char **argv;          /* QEMU's arguments, argv[0] included; NULL-ended */
	int argc;
	char qemu_version[64];
	pid_t qemu_pid;
	bool disks_only;
	struct vm_volume vols[VM_MAX_VOLUMES];
	int nvols;
	uint64_t memory_bytes;  /* the saved state file */
	double pause_ms;        /* QEMU's STOP to RESUME */
	double seconds;         /* the whole checkpoint */
	char warning[384];      /* a good checkpoint that left something to do, or "" */
};

struct vm_checkpoint_opts {
	const char *qmp;
	const char *dir;
	const char *name;     /* NULL: vm-YYYYmmdd-HHMMSS */
	char *const *volumes;
	int nvols;
	bool disks_only;
	int timeout_s;        /* for QEMU's events and the memory save; 0: 600 */
};

/* Takes a checkpoint (the steps above); fills *out.  0, or < 0 with err;
 * on failure after the stop the guest is running again and the snapshots
 * are deleted. */
int vm_checkpoint_take(const struct vm_checkpoint_opts *o, const struct vm_daemon *d,
		       struct vm_checkpoint *out, char *err, size_t errlen);

struct vm_restore_result {
	pid_t qemu_pid;
	double load_seconds;   /* -incoming to running */
	uint64_t disk_bytes;   /* written back into the volumes */
	bool reverted;         /* by snapshot revert, not from images */
};

/* Restores the checkpoint in dir: the volumes, then QEMU from the saved
 * state, which is left running (its output in dir/qemu-restore.log).
 * Refused while the checkpoint's QEMU still answers on its QMP socket. */
int vm_restore(const char *dir, const struct vm_daemon *d, struct vm_restore_result *res,
	       char *err, size_t errlen);

/* The manifest of dir.  0, -ENOENT (no manifest: not a checkpoint, or an
 * unfinished one), or -EINVAL with err. */
int vm_manifest_read(const char *dir, struct vm_checkpoint *c, char *err, size_t errlen);
int vm_manifest_write(const char *dir, const struct vm_checkpoint *c, char *err, size_t errlen);
void vm_checkpoint_free(struct vm_checkpoint *c);
/* The manifest's JSON (the caller puts it). */
struct json_object *vm_checkpoint_json(const struct vm_checkpoint *c);

#endif
