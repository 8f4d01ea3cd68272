/* freeze.h - finding the file systems mounted on a block device, and
 * freezing and thawing them around a snapshot. */
#ifndef HS_FREEZE_H
#define HS_FREEZE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct frozen_fs {
	char mountpoint[4096];
	char fstype[32];
	bool frozen_by_us;
	bool was_frozen;    /* someone else had frozen it already */
};

/* Finds the file system mounted from block device dev (every mount of one
 * device is the same file system; a mount of its root is preferred).  False
 * when nothing is mounted from it. */
bool freeze_find_mount(const char *dev, struct frozen_fs *out);

/* The freeze itself happens in a child process.  FIFREEZE flushes the file
 * system through its loop device, that is through this very daemon's FUSE
 * workers; a daemon killed while one of its own threads waited in FIFREEZE
 * could never finish dying (the thread waits for workers that are gone),
 * and the file system would stay frozen with every writer on it hanging.
 * The child holds no FUSE descriptor: it freezes, waits on a pipe, and
 * thaws when told to, or as soon as the daemon is gone (end of file). */
struct freezer {
	int pid;
	int cmd_fd;    /* parent to child: a byte, or closing it, means thaw */
	int status_fd; /* child to parent: one int per file system, then one */
};

/* Freezes the file systems of fs[0..n) with a non-empty mount point, all
 * or none: 0, or -errno with *failed set to the one that failed (the
 * others are thawed again).  A file system frozen already counts as frozen
 * (was_frozen) and is left frozen by the thaw. */
int freezer_freeze(struct freezer *fz, struct frozen_fs *fs, size_t n, size_t *failed);
/* Thaws what freezer_freeze froze and reaps the child.  0 or -errno. */
int freezer_thaw(struct freezer *fz);

/* A daemon killed inside a freeze would leave its file systems frozen, and
 * every writer on them hanging, with nobody left to thaw them.  So before
 * freezing, the mount points go into a list in the state dir (no fsync: a
 * power cut unfreezes everything anyway), the list is removed after the
 * thaw, and a starting daemon thaws whatever a list left behind names. */
void freeze_journal_write(const char *state_dir, const struct frozen_fs *fs, size_t n);
void freeze_journal_clear(const char *state_dir);
void freeze_journal_recover(const char *state_dir);

#endif
