/* daemon.h - the daemon's state: its volumes, their snapshots, front ends.
 *
 * The daemon owns one registry of volumes (persisted in the state dir), a
 * FUSE front end, an NBD server and the control socket.  One mutex, d->mu,
 * guards the registry; control commands hold it while they change the
 * registry, but never across a backup's copying (a backup holds engine
 * references instead) and never while waiting for a client.
 *
 * State dir layout:
 *   volumes.json    volume definitions (survive restarts)
 *   snapshots.json  live snapshots, so a restarted daemon can say which were
 *                   lost; entries marked lost stay until deleted
 *   control.sock    the control socket (0600)
 *   nbd.sock        the default NBD socket (0600)
 *   daemon.lock     flock held by the running daemon; holds its pid
 *   daemon.log      the log of a daemon started with --detach
 *   freezing        mount points being frozen right now (see freeze.h)
 *   mnt/            the FUSE mount: one file per volume and attached snapshot
 *   diff/           default directory for diff files (unnamed, O_TMPFILE)
 *   tracking/       one change map per volume, NAME.map (see engine/tracker.h)
 *   hooks.d/        the default directory of application hooks (hooks/hooks.h)
 */
#ifndef HS_DAEMON_H
#define HS_DAEMON_H

#include <json-c/json.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "common/names.h"
#include "control/proto.h"
#include "daemon/loopdev.h"
#include "engine/engine.h"
#include "fuse/fuse_front.h"
#include "nbd/nbd_server.h"

#define DAEMON_MAX_NBD 8
#define DAEMON_MAX_CONTROL 4 /* --control listeners */
#define RATE_SAMPLES 16

/* A FUSE request waiting this long makes status report a problem (the
 * backing or diff store is stuck); --stall-warning changes it. */
#define DAEMON_STALL_WARNING_S 30

struct fuse_front;
struct nbd_server;
struct backup_job;

/* What volumes.json keeps of a volume. */
struct vol_config {
	char name[HS_NAME_MAX + 1];
	char backing[PATH_MAX];
	char diff_dir[PATH_MAX];
	uint64_t size;
	uint64_t chunk_size;
	uint64_t cow_buffer;
	uint64_t diff_limit;
	uint64_t next_snapshot; /* for default names: snap1, snap2, ... */
	char cache[12];         /* auto, writeback or none (see registry.c) */
	uint64_t track_granularity; /* bytes per bit of the change map file; 0: no tracking */
	char hook[PATH_MAX];    /* its own application hook (hooks.h), or "" */
	bool attached;          /* attached by request: attached again at start */
};

struct snap_entry {
	char name[HS_NAME_MAX + 1];
	struct snapshot *snap;         /* an engine reference */
	struct loop_attachment loop;   /* attached read-only, or loop.dev "" */
	bool published;                /* has a FUSE file */
	bool temporary;                /* made by `backup VOLUME`; deleted after */
	int backups;                   /* backups reading it now */
	struct snap_entry *next;
};

/* A snapshot of a previous daemon run: it did not survive the restart. */
struct lost_snap {
	char name[HS_NAME_MAX + 1];
	char reason[256];
	struct lost_snap *next;
};

struct rate_sample {
	uint64_t t_ns;
	uint64_t bytes;
};

struct vol_entry {
	struct vol_config cfg;
	struct volume *vol;          /* NULL when it could not be opened */
	char open_error[512];        /* why not */
	struct loop_attachment loop;  /* loop.dev "" when not attached */
	struct snap_entry *snaps;
	struct lost_snap *lost;
	struct backup_job *backups;  /* running backups of this volume */
	/* diff store use sampled once a second, for fill rate and time to full */
	struct rate_sample samples[RATE_SAMPLES];
	unsigned nsamples, sample_next;
	char tracking_error[256];    /* why the volume has no change tracking, or "" */
	const char *busy;            /* "a restore": what holds the volume, or NULL */
	struct vol_entry *next;
};

/* An image served read-only by `image attach` (for file-level restore): a
 * FUSE file "image:NAME", a read-only loop device on it, and the NBD
 * export of the same name.  Lives as long as the daemon. */
struct image_entry {
	char name[HS_NAME_MAX + 1];
	char path[PATH_MAX];
	struct export *base;        /* what FUSE files and NBD opens duplicate */
	struct loop_attachment loop;
	struct image_entry *next;
};

/* What a new volume gets for what `volume create` does not say: the
 * daemon's --default-* options (or its config file), else the built-in
 * values.  0 / "" here: the built-in value. */
struct volume_defaults {
	uint64_t chunk_size, cow_buffer;
	uint64_t diff_limit;      /* bytes; 0: diff_limit_pct or the built-in rule */
	unsigned diff_limit_pct;  /* a share of the volume's size, 1..100 */
	char cache[16];
};

struct daemon {
	char state_dir[PATH_MAX];
	char mnt_dir[PATH_MAX];
	dev_t fuse_dev;          /* the FUSE mount's device number, taken once mounted:
				  * mnt_dir's own would be the file system below it
				  * should someone unmount it */
	char control_path[PATH_MAX];
	char default_diff_dir[PATH_MAX]; /* STATE_DIR/diff, or --default-diff-dir */
	struct volume_defaults defaults;
	const char *nbd_listen[DAEMON_MAX_NBD];
	size_t nbd_nlisten;
	struct nbd_server_config nbd_cfg; /* TLS and TCP policy (nbd_server.h) */
	const char *control_listen[DAEMON_MAX_CONTROL]; /* --control tcp:HOST:PORT */
	size_t control_nlisten;
	struct control_remote *remote;    /* the remote channel, when listening */
	int lock_fd;
	int listen_fd;
	pthread_mutex_t mu;
	struct vol_entry *volumes; /* [mu] */
	struct image_entry *images; /* [mu] */
	struct fuse_front *fuse;
	struct nbd_server *nbd;
	atomic_bool stopping;
	int wake_pipe[2]; /* written to wake the main thread for shutdown */
	uint64_t started_ns;
	atomic_uint clients;
	pthread_t sampler;
	bool sampler_started;
	char hooks_dir[PATH_MAX];  /* application hooks for every freezing snapshot */
	char dev_dir[PATH_MAX];    /* stable device names (devlinks.h) */
	char log_path[PATH_MAX];   /* the log file (detached), reopened on SIGHUP; or "" */
	unsigned hook_timeout_s;   /* per hook and phase */
	unsigned stall_warning_s;  /* a FUSE request older than this is a PROBLEM in status */
	enum fuse_transport_mode fuse_transport; /* --fuse-transport */
};

/* Reads one --default-* option (NAME without the dashes, such as
 * "default-chunk-size") into d: 0, or -1 with err saying what is wrong. */
int volume_defaults_option(struct daemon *d, const char *name, const char *value, char *err,
			   size_t errlen);

/* --- registry (registry.c); callers hold d->mu ------------------------- */
struct vol_entry *registry_volume(struct daemon *d, const char *name);
struct snap_entry *registry_snapshot(struct vol_entry *ve, const char *name);
struct lost_snap *registry_lost(struct vol_entry *ve, const char *name);
/* Opens the engine volume of a config (backing file, diff file). */
int registry_open_volume(struct daemon *d, struct vol_entry *ve, char *err, size_t errlen);
void registry_close_volume(struct daemon *d, struct vol_entry *ve);
/* The volume whose backing is the file or device st describes (by inode, or
 * device number for block devices), or NULL. */
struct vol_entry *registry_volume_on(struct daemon *d, const struct stat *st);
/* Whether st lies on hotsnap's own FUSE file system. */
bool registry_on_fuse(struct daemon *d, const struct stat *st);
/* Whether path lies in a file system that this daemon serves: on a loop
 * device over one of its FUSE files (name gets that file's name, the volume
 * or VOLUME@SNAP), or in the FUSE directory itself.  A backing file or diff
 * directory there would make the daemon's own writes wait for FUSE workers
 * that may all be waiting for those writes. */
bool registry_on_own_volume(struct daemon *d, const char *path, char *name, size_t len);
/* Whether the volume's origin goes through the host page cache. */
bool registry_cache_writeback(const struct vol_entry *ve);
/* FUSE file name of a volume or snapshot. */
void registry_fuse_path(struct daemon *d, const char *file, char *buf, size_t len);
/* Releases a snapshot entry: detaches, withdraws its file, deletes it. */
void registry_drop_snapshot(struct daemon *d, struct vol_entry *ve, struct snap_entry *se);
/* Resolves "VOLUME@SNAPSHOT"; on failure err says what is wrong and the
 * return is NULL.  *usage tells a malformed name from a missing one. */
struct snap_entry *registry_resolve_snapshot(struct daemon *d, const char *full,
					     struct vol_entry **vep, char *err, size_t errlen,
					     bool *usage);

/* --- change tracking (tracking.c); callers hold d->mu ------------------- */
/* The tracker of a volume over its origin, from STATE_DIR/tracking/NAME.map
 * (made when missing); NULL, with ve->tracking_error saying why, when the
 * volume must go without. */
struct tracker *tracking_open(struct daemon *d, struct vol_entry *ve, struct dev *origin);
/* Removes a volume's map file (the volume is gone, or is made anew). */
void tracking_forget(struct daemon *d, const char *name);
/* "tracking" of a volume's status. */
json_object *tracking_json(struct daemon *d, struct vol_entry *ve);

/* --- persistence (persist.c); callers hold d->mu ------------------------- */
int persist_load(struct daemon *d, char *err, size_t errlen);
int persist_save_volumes(struct daemon *d);
/* The same without fsync, when only the default-name counters changed. */
int persist_save_volume_counters(struct daemon *d);
int persist_save_snapshots(struct daemon *d);

/* --- control commands (commands_*.c) -------------------------------------- */
struct ctl_session;
enum cmd_status { CMD_OK = 0, CMD_ERROR = 1, CMD_USAGE = 2 };
typedef enum cmd_status (*cmd_handler)(struct daemon *d, const struct ctl_request *req,
				       struct ctl_session *sess, json_object **result,
				       char *err, size_t errlen);
cmd_handler commands_find(const char *name);

/* What a streaming handler may do with its client. */
int ctl_session_take_fd(struct ctl_session *sess);
/* Sends an event line; never blocks (a slow client misses events). */
void ctl_session_event(struct ctl_session *sess, json_object *event);
/* True when the client has gone away (so its command should stop). */
bool ctl_session_gone(struct ctl_session *sess);
/* Sends one line (without its newline) and waits for the socket to take it
 * (up to the send timeout); false when the client is gone or stuck. */
bool ctl_session_send_line(struct ctl_session *sess, const char *line);

/* --- status pieces (commands_status.c) ------------------------------------ */
/* key: the wall-clock time ns as "2026-11-30T01:12:35+0000". */
void json_add_time(json_object *o, const char *key, uint64_t wall_ns);
json_object *status_volume_json(struct daemon *d, struct vol_entry *ve);
json_object *status_snapshot_json(struct daemon *d, struct vol_entry *ve,
				  struct snap_entry *se);
void daemon_sample_rates(struct daemon *d);

/* --- snapshot creation, shared by `snapshot create` and `backup VOLUME` --- */
struct snapshot_set_request {
	struct vol_entry *vols[CONTROL_MAX_LIST];
	size_t n;
	const char *name; /* NULL: the next default name */
	bool freeze;
	bool no_hooks;     /* freeze without the application hooks */
	bool all_blocks;
	bool temporary;
};
struct snapshot_set_result {
	struct snap_entry *snaps[CONTROL_MAX_LIST];
	char name[HS_NAME_MAX + 1];
	double freeze_ms;  /* from before freeze to after thaw */
	unsigned hooks;        /* application hooks that ran */
	unsigned hooks_failed; /* failed after the instant (logged; the snapshot stands) */
	double engine_us;  /* writers held by the engine */
	double daemon_us;  /* all of hotsnap's work inside the freeze window */
	double map_ms;     /* building used-block maps */
	uint64_t used_chunks[CONTROL_MAX_LIST];
	const char *map_source[CONTROL_MAX_LIST];
};
enum cmd_status snapshots_create_locked(struct daemon *d, const struct snapshot_set_request *rq,
					struct snapshot_set_result *res, char *err,
					size_t errlen);

/* --- the NBD catalog (nbd_catalog.c) -------------------------------------- */
struct nbd_catalog;
void nbd_catalog_init(struct daemon *d, struct nbd_catalog *cat);
const char *daemon_nbd_uri(struct daemon *d, const char *name, char *buf, size_t len);

/* --- attached images (commands_image.c) ----------------------------------- */
struct image_entry *images_find(struct daemon *d, const char *name);
/* Detaches and forgets every attached image (for shutdown).  Under d->mu. */
void images_release_all(struct daemon *d);

/* --- control socket (control_server.c) ------------------------------------ */
int control_server_start(struct daemon *d, char *err, size_t errlen);
void control_server_stop(struct daemon *d);
/* Serves fd (a socketpair end; owned from now on) as a session of a remote
 * client who proved to be remote ("PSK identity 'NAME'", ...). */
void control_server_adopt(struct daemon *d, int fd, const char *remote);

/* --- the remote control channel (control_remote.c) ------------------------ */
/* Listens on d->control_listen (tcp:HOST:PORT) with TLS always; 0 or -errno
 * with err. */
int control_remote_start(struct daemon *d, char *err, size_t errlen);
void control_remote_stop(struct daemon *d);
/* Whether a remote client may run cmd: what reads state, takes, lists and
 * deletes snapshots and bookmarks, and follows events; not what works on
 * the host's paths and devices, nor shutdown. */
bool control_remote_allows(const char *cmd);

/* --- lifecycle (daemon.c) -------------------------------------------------- */
void daemon_request_stop(struct daemon *d);

#endif
