/* hooks.h - application hooks around a snapshot instant (what VSS writers
 * and pre-freeze/post-thaw scripts do for Windows, for Linux programs).
 *
 * A hook is an executable, run as `HOOK PHASE` with the snapshot's volumes,
 * mount points and name in its environment (HOTSNAP_*).  One run of the
 * hooks of one snapshot attempt goes through these steps, in order:
 *
 *   hooks_prepare   every hook with `prepare`, one after the other (may take
 *                   seconds: a database checkpoint).  A failure stops here.
 *   hooks_freeze    every hook with `freeze`, one after the other; a hook
 *                   that must hold something across the instant prints
 *                   `ready` once it holds it and keeps running (a holder);
 *                   one with nothing to hold exits 0.
 *   ...             the caller freezes file systems, takes the set, thaws
 *   hooks_release   holders are told `thaw` (or `abort`) on stdin, in
 *                   reverse order, and waited for.
 *   hooks_finish    every hook with `thaw`, or with `abort` when the
 *                   attempt failed after prepare began.
 *
 * Promises:
 *  - Every phase has a deadline; a hook past it is killed with its whole
 *    process group, so nothing it started keeps a lock.
 *  - hooks_release is safe after any failure (holders that never got ready
 *    are killed); after it returns, no hook process of the run is alive.
 *  - A failure message names the hook, the phase and its last stderr line.
 *  - Hooks start with a clean signal mask and default dispositions, in a
 *    process group of their own, with no descriptor of ours but 0-2.
 *
 * Not thread safe: one run belongs to one thread.  No registry or engine
 * knowledge here; the caller supplies names and paths. */
#ifndef HS_HOOKS_H
#define HS_HOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define HOOKS_MAX 32
#define HOOKS_DEFAULT_TIMEOUT_S 60
#define HOOKS_DEFAULT_READY_TIMEOUT_S 10

struct hook {
	char path[4096];
	char volume[128]; /* its volume, for a per-volume hook; "" for a directory hook */
	char mount[4096];
	pid_t holder;     /* a `freeze` hook still holding, or 0 */
	int holder_in;    /* its stdin, to say thaw or abort */
	int holder_out, holder_err;
	char holder_last_err[512]; /* its last stderr line before ready */
};

/* What happened to one hook in one phase, for the caller's log and events. */
struct hook_report {
	const char *hook;  /* path */
	const char *phase;
	bool ok;
	double ms;
	const char *message; /* a failure's reason, or NULL */
};
typedef void (*hook_report_fn)(void *arg, const struct hook_report *r);

struct hooks_run {
	struct hook hooks[HOOKS_MAX];
	size_t n;
	unsigned timeout_s;       /* per phase per hook */
	unsigned ready_timeout_s; /* for `freeze` to print ready */
	/* HOTSNAP_SNAPSHOT, _VOLUMES, _MOUNTS, _DEVICES */
	char snapshot[128];
	char volumes[8192], mounts[16384], devices[4096];
	bool prepared;            /* prepare began: abort must be said on failure */
	hook_report_fn report;
	void *report_arg;
};

void hooks_init(struct hooks_run *hr, unsigned timeout_s, unsigned ready_timeout_s);
/* Adds the executables in dir, in name order (dot files, backups ending in
 * ~ and dpkg leftovers are skipped; so are files that are not executable,
 * such as a hook's own configuration).  A missing dir adds none.  0, or -1
 * with a message. */
int hooks_add_dir(struct hooks_run *hr, const char *dir, char *err, size_t errlen);
/* Adds one hook for volume (mounted at mount, or "").  0, or -1 with a
 * message (too many, or not an executable file). */
int hooks_add(struct hooks_run *hr, const char *path, const char *volume, const char *mount,
	      char *err, size_t errlen);
/* Adds a volume of the set to the environment every hook sees. */
void hooks_add_volume(struct hooks_run *hr, const char *name, const char *mount,
		      const char *device);
void hooks_set_snapshot(struct hooks_run *hr, const char *name);

/* Each: 0, or -1 with a message naming the hook (the run is then to be
 * released and finished with taken = false). */
int hooks_prepare(struct hooks_run *hr, char *err, size_t errlen);
int hooks_freeze(struct hooks_run *hr, char *err, size_t errlen);
/* Whether every holder still runs (asked right after the instant, before
 * the thaw): 0, or -1 with a message naming the one that stopped holding
 * early (its exit and last stderr line).  Reaps nothing. */
int hooks_holders_alive(struct hooks_run *hr, char *err, size_t errlen);
/* taken: the snapshot was made (holders hear `thaw`, else `abort`).
 * Returns how many holders failed to end cleanly (they are gone anyway). */
unsigned hooks_release(struct hooks_run *hr, bool taken);
/* Runs `thaw` (taken) or `abort` (when prepare began).  Failures are only
 * reported: the snapshot stands or has already failed.  Returns how many
 * hooks failed. */
unsigned hooks_finish(struct hooks_run *hr, bool taken);

#endif
