/* daemon.c - `hotsnap daemon`: start, serve, stop.
 *
 * Start: take the state dir's lock (one daemon per state dir), mount the
 * FUSE directory, open every volume in volumes.json, note the snapshots of
 * the previous run as lost, start NBD and the control socket, then tell a
 * detaching parent we are ready.  Signals are handled by the main thread
 * alone (every other thread blocks them).  Stop (SIGTERM, SIGINT or the
 * shutdown command): close the control socket, end the NBD connections,
 * detach our loop devices, close the volumes (flushing the origins) and
 * unmount the FUSE directory. */
#include "daemon/daemon_main.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/paths.h"
#include "daemon/daemon.h"
#include "daemon/config.h"
#include "daemon/devlinks.h"
#include "daemon/events.h"
#include "daemon/freeze.h"
#include "daemon/service.h"
#include "hooks/hooks.h"
#include "fuse/fuse_front.h"
#include "nbd/nbd_server.h"

static void daemon_usage(FILE *f)
{
	fprintf(f, "usage: hotsnap daemon [--state-dir DIR] [--detach] "
		   "[--nbd unix:PATH|tcp:HOST:PORT]... [--no-nbd] [--hooks-dir DIR]\n"
		   "       [--hook-timeout SECONDS] [--dev-dir DIR] [--config FILE] [--debug]\n"
		   "       [--default-chunk-size SIZE] [--default-cow-buffer SIZE]\n"
		   "       [--default-diff-limit SIZE|N%%] [--default-diff-dir DIR]\n"
		   "       [--default-cache MODE] [--tls off|on|require] [--tls-certificates DIR]\n"
		   "       [--tls-psk FILE] [--tls-no-verify-peer] [--nbd-writable]\n"
		   "       [--control tcp:HOST:PORT]... [--fuse-transport auto|io-uring|dev]\n"
		   "       [--stall-warning SECONDS]\n");
}

void daemon_request_stop(struct daemon *d)
{
	atomic_store(&d->stopping, true);
	if (write(d->wake_pipe[1], "x", 1) < 0) {
		/* the pipe is full: a wake-up is pending anyway */
	}
}

/* The state dir's lock: held for the daemon's life, with its pid inside. */
static int take_lock(struct daemon *d)
{
	char path[PATH_MAX], pid[32] = "";
	ssize_t n;

	snprintf(path, sizeof(path), "%s/daemon.lock", d->state_dir);
	d->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (d->lock_fd < 0) {
		fprintf(stderr, "hotsnap: cannot open %s: %s\n", path, strerror(errno));
		return -errno;
	}
	if (flock(d->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		n = pread(d->lock_fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		fprintf(stderr,
			"hotsnap: another hotsnap daemon%s%s%s is already running on %s; stop it "
			"first (hotsnap --state-dir %s shutdown)\n",
			pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "", d->state_dir, d->state_dir);
		close(d->lock_fd);
		return -EBUSY;
	}
	return 0;
}

static void write_pid(struct daemon *d)
{
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());

	if (ftruncate(d->lock_fd, 0) < 0 || pwrite(d->lock_fd, pid, (size_t)n, 0) != n)
		hs_warn("cannot write the pid into daemon.lock");
}

static void warn_stale_loop(void *arg, const char *dev, const char *backing)
{
	(void)arg;
	hs_warn("%s is still attached to %s from a previous daemon; detaching it (if it is "
		"mounted, unmount it: its I/O fails until then)",
		dev, backing);
	loopdev_detach_path(dev, backing);
}

/* Volumes attached by request before a restart are attached again, under
 * their stable names, before the daemon says it is ready: an fstab line
 * that waits for hotsnap.service finds its device. */
static unsigned reattach_volumes(struct daemon *d)
{
	unsigned n = 0;

	devlinks_init(d);
	for (struct vol_entry *ve = d->volumes; ve; ve = ve->next) {
		char path[PATH_MAX];
		const char *why = "";
		if (!ve->cfg.attached || !ve->vol)
			continue;
		registry_fuse_path(d, ve->cfg.name, path, sizeof(path));
		int r = loopdev_attach(path, false, &ve->loop, &why);
		if (r < 0) {
			hs_error("volume %s could not be attached again: %s: %s", ve->cfg.name, why,
				 strerror(-r));
			continue;
		}
		devlinks_set(d, ve->cfg.name, ve->loop.dev);
		hs_info("volume %s attached again as %s", ve->cfg.name, ve->loop.dev);
		n++;
	}
	return n;
}

static void open_volumes(struct daemon *d)
{
	for (struct vol_entry *ve = d->volumes; ve; ve = ve->next) {
		if (registry_open_volume(d, ve, ve->open_error, sizeof(ve->open_error)) < 0)
			hs_error("volume %s is not available: %s", ve->cfg.name, ve->open_error);
		else
			hs_info("volume %s: %s, %llu bytes", ve->cfg.name, ve->cfg.backing,
				(unsigned long long)ve->cfg.size);
	}
}

static void *sampler_main(void *arg)
{
	struct daemon *d = arg;
	struct pollfd p = { .fd = d->wake_pipe[0], .events = POLLIN };

	while (!atomic_load(&d->stopping)) {
		pthread_mutex_lock(&d->mu);
		daemon_sample_rates(d);
		pthread_mutex_unlock(&d->mu);
		service_watchdog_tick();
		(void)poll(&p, 1, 1000);
	}
	return NULL;
}

static int start_nbd(struct daemon *d, char *err, size_t errlen)
{
	struct nbd_catalog cat;
	const char *why = "";
	int r;

	if (d->nbd_nlisten == 0)
		return 0;
	nbd_catalog_init(d, &cat);
	r = nbd_server_start(&d->nbd, d->nbd_listen, d->nbd_nlisten, &cat, &d->nbd_cfg, &why);
	if (r == -EINVAL)
		snprintf(err, errlen, "cannot start the NBD server: %s", why);
	else if (r < 0)
		snprintf(err, errlen, "cannot start the NBD server: %s: %s", why, strerror(-r));
	return r;
}

static void stop_everything(struct daemon *d)
{
	atomic_store(&d->stopping, true);
	service_stopping();
	events_wake_all(); /* `hotsnap events` clients end */
	control_remote_stop(d); /* its sessions end with their pumps */
	control_server_stop(d);
	if (d->sampler_started)
		pthread_join(d->sampler, NULL);
	if (d->nbd) {
		nbd_server_stop(d->nbd);
		d->nbd = NULL;
	}
	pthread_mutex_lock(&d->mu);
	images_release_all(d);
	while (d->volumes) {
		struct vol_entry *ve = d->volumes;
		d->volumes = ve->next;
		if (ve->loop.dev[0])
			hs_info("detaching %s of volume %s", ve->loop.dev, ve->cfg.name);
		registry_close_volume(d, ve);
		while (ve->lost) {
			struct lost_snap *ls = ve->lost;
			ve->lost = ls->next;
			free(ls);
		}
		free(ve);
	}
	pthread_mutex_unlock(&d->mu);
	if (d->fuse) {
		fuse_front_stop(d->fuse);
		d->fuse = NULL;
	}
}

/* SIGHUP (logrotate's postrotate): the log file of a detached daemon is
 * opened again by name, so the rotated one is let go. */
static void reopen_log(struct daemon *d)
{
	if (!d->log_path[0])
		return;
	int fd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0) {
		hs_error("SIGHUP: cannot open %s again: %s", d->log_path, strerror(errno));
		return;
	}
	dup2(fd, 1);
	dup2(fd, 2);
	close(fd);
	hs_info("SIGHUP: log file %s opened again", d->log_path);
}

/* Runs until stopped.  ready_fd (or -1) gets one byte when the control
 * socket answers, or an error line when starting failed. */
static int serve(struct daemon *d, int ready_fd)
{
	char err[1024] = "";
	const char *why = "";
	sigset_t set;
	int sfd, r;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread inherits this */
	sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sfd < 0 || pipe2(d->wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		snprintf(err, sizeof(err), "cannot set up signal handling: %s", strerror(errno));
		r = -errno;
		goto fail;
	}
	d->started_ns = clock_mono_ns();
	service_journal_init();
	events_init();
	write_pid(d);
	freeze_journal_recover(d->state_dir);
	loopdev_foreach_under(d->mnt_dir, warn_stale_loop, NULL);
	r = fuse_front_start(&d->fuse, d->mnt_dir, d->fuse_transport, &why);
	if (r < 0) {
		snprintf(err, sizeof(err), "%s (%s)", why, strerror(-r));
		goto fail;
	}
	struct stat mst;
	if (stat(d->mnt_dir, &mst) < 0) {
		snprintf(err, sizeof(err), "cannot stat the FUSE mount %s: %s", d->mnt_dir,
			 strerror(errno));
		goto fail;
	}
	d->fuse_dev = mst.st_dev;
	pthread_mutex_lock(&d->mu);
	r = persist_load(d, err, sizeof(err));
	unsigned attached = 0, nvol = 0;
	if (r == 0) {
		open_volumes(d);
		attached = reattach_volumes(d);
		for (struct vol_entry *ve = d->volumes; ve; ve = ve->next)
			nvol++;
	}
	pthread_mutex_unlock(&d->mu);
	if (r < 0)
		goto fail;
	r = start_nbd(d, err, sizeof(err));
	if (r < 0)
		goto fail;
	r = control_server_start(d, err, sizeof(err));
	if (r < 0)
		goto fail;
	r = control_remote_start(d, err, sizeof(err));
	if (r < 0)
		goto fail;
	if (pthread_create(&d->sampler, NULL, sampler_main, d) == 0)
		d->sampler_started = true;
	hs_info("daemon %d serving %s (control socket %s)", (int)getpid(), d->state_dir,
		d->control_path);
	char status[128];
	snprintf(status, sizeof(status), "serving %u volumes, %u attached", nvol, attached);
	service_ready(status);
	if (ready_fd >= 0) {
		if (write(ready_fd, "", 1) != 1) {
			/* the parent is gone: nothing to tell */
		}
		close(ready_fd);
		ready_fd = -1;
	}

	struct pollfd pf[2] = { { .fd = sfd, .events = POLLIN },
				{ .fd = d->wake_pipe[0], .events = POLLIN } };
	while (!atomic_load(&d->stopping)) {
		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			break;
		if (pf[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) != sizeof(si) || si.ssi_signo == SIGPIPE)
				continue;
			if (si.ssi_signo == SIGHUP) {
				reopen_log(d);
				continue;
			}
			hs_info("signal %u: shutting down", si.ssi_signo);
			break;
		}
		if (pf[1].revents & POLLIN)
			hs_info("shutdown requested");
	}
	stop_everything(d);
	hs_info("daemon stopped");
	close(sfd);
	return 0;

fail:
	hs_error("%s", err);
	if (ready_fd >= 0) {
		size_t len = strlen(err);
		if (write(ready_fd, err, len) < 0) {
			/* the parent reads nothing then, and says the daemon failed */
		}
		close(ready_fd);
	}
	stop_everything(d);
	if (sfd >= 0)
		close(sfd);
	return r < 0 ? r : -EIO;
}

/* --detach: the parent waits until the child serves (or says why not). */
static int detach_and_serve(struct daemon *d)
{
	char path[PATH_MAX], msg[1024];
	int pfd[2], logfd;
	pid_t pid;
	ssize_t n;

	if (pipe2(pfd, O_CLOEXEC) < 0) {
		perror("hotsnap: pipe");
		return 1;
	}
	pid = fork();
	if (pid < 0) {
		perror("hotsnap: fork");
		return 1;
	}
	if (pid > 0) {
		close(pfd[1]);
		close(d->lock_fd); /* the child keeps the lock */
		n = read(pfd[0], msg, sizeof(msg) - 1);
		if (n == 1 && msg[0] == '\0')
			return 0;
		msg[n > 0 ? n : 0] = '\0';
		fprintf(stderr, "hotsnap: the daemon did not start: %s\n",
			n > 0 ? msg : "it exited (see daemon.log in the state dir)");
		return 1;
	}
	close(pfd[0]);
	setsid();
	snprintf(path, sizeof(path), "%s/daemon.log", d->state_dir);
	snprintf(d->log_path, sizeof(d->log_path), "%s", path);
	logfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	int nullfd = open("/dev/null", O_RDWR);
	if (nullfd >= 0) {
		dup2(nullfd, 0);
		dup2(logfd >= 0 ? logfd : nullfd, 1);
		dup2(logfd >= 0 ? logfd : nullfd, 2);
		if (nullfd > 2)
			close(nullfd);
	}
	if (logfd > 2)
		close(logfd);
	if (chdir("/") < 0) {
		/* nothing depends on the cwd */
	}
	_exit(serve(d, pfd[1]) < 0 ? 1 : 0);
}

/* The options, from the config file and then the command line; later
 * words win, except --nbd, which a command line's list replaces. */
struct opt_state {
	const char *state_dir;
	bool detach, no_nbd, nbd_from_cli;
	const char *config;
};

static const struct option daemon_opts[] = {
	{ "state-dir", required_argument, NULL, 's' },
	{ "detach", no_argument, NULL, 'd' },
	{ "nbd", required_argument, NULL, 'n' },
	{ "no-nbd", no_argument, NULL, 'N' },
	{ "debug", no_argument, NULL, 'D' },
	{ "hooks-dir", required_argument, NULL, 'H' },
	{ "hook-timeout", required_argument, NULL, 'T' },
	{ "dev-dir", required_argument, NULL, 'V' },
	{ "config", required_argument, NULL, 'C' },
	{ "default-chunk-size", required_argument, NULL, 'v' },
	{ "default-cow-buffer", required_argument, NULL, 'v' },
	{ "default-diff-limit", required_argument, NULL, 'v' },
	{ "default-diff-dir", required_argument, NULL, 'v' },
	{ "default-cache", required_argument, NULL, 'v' },
	{ "tls", required_argument, NULL, 't' },
	{ "tls-certificates", required_argument, NULL, 'X' },
	{ "tls-psk", required_argument, NULL, 'P' },
	{ "tls-no-verify-peer", no_argument, NULL, 'Y' },
	{ "nbd-writable", no_argument, NULL, 'W' },
	{ "control", required_argument, NULL, 'c' },
	{ "fuse-transport", required_argument, NULL, 'F' },
	{ "stall-warning", required_argument, NULL, 'S' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* 0 to go on, else the exit status (1 for --help: 0 returned by caller). */
static int parse_options(struct daemon *d, struct opt_state *o, int argc, char **argv,
			 const char *where)
{
	int c, idx = 0;

	optind = 0; /* a fresh scan (glibc) */
	while ((c = getopt_long(argc, argv, "+h", daemon_opts, &idx)) != -1) {
		switch (c) {
		case 'v': { /* what new volumes get (commands_volume.c checks it) */
			char err[256];
			if (volume_defaults_option(d, daemon_opts[idx].name, optarg, err,
						   sizeof(err)) < 0) {
				fprintf(stderr, "hotsnap daemon: %s%s\n", where, err);
				return 2;
			}
			break;
		}
		case 's':
			o->state_dir = optarg;
			break;
		case 'd':
			o->detach = true;
			break;
		case 'n':
			if (strncmp(optarg, "unix:", 5) != 0 && strncmp(optarg, "tcp:", 4) != 0) {
				fprintf(stderr, "hotsnap daemon: %s--nbd '%s': expected unix:PATH or "
						"tcp:HOST:PORT\n", where, optarg);
				return 2;
			}
			if (!where[0] && !o->nbd_from_cli) {
				o->nbd_from_cli = true;
				d->nbd_nlisten = 0; /* the command line's list replaces the file's */
			}
			if (d->nbd_nlisten == DAEMON_MAX_NBD) {
				fprintf(stderr, "hotsnap daemon: at most %d --nbd addresses\n",
					DAEMON_MAX_NBD);
				return 2;
			}
			d->nbd_listen[d->nbd_nlisten++] = optarg;
			break;
		case 'N':
			o->no_nbd = true;
			break;
		case 't':
			if (strcmp(optarg, "off") == 0)
				d->nbd_cfg.tls_mode = NBD_TLS_OFF;
			else if (strcmp(optarg, "on") == 0)
				d->nbd_cfg.tls_mode = NBD_TLS_ON;
			else if (strcmp(optarg, "require") == 0)
				d->nbd_cfg.tls_mode = NBD_TLS_REQUIRE;
			else {
				fprintf(stderr, "hotsnap daemon: %s--tls '%s': expected off, on or "
						"require\n", where, optarg);
				return 2;
			}
			break;
		case 'X':
		case 'P':
			if (optarg[0] != '/') {
				fprintf(stderr, "hotsnap daemon: %s--%s must be an absolute path\n",
					where, c == 'X' ? "tls-certificates" : "tls-psk");
				return 2;
			}
			if (c == 'X')
				d->nbd_cfg.tls_certificates = optarg;
			else
				d->nbd_cfg.tls_psk = optarg;
			break;
		case 'Y':
			d->nbd_cfg.tls_anonymous = true;
			break;
		case 'W':
			d->nbd_cfg.tcp_writable = true;
			break;
		case 'c':
			if (d->control_nlisten == DAEMON_MAX_CONTROL) {
				fprintf(stderr, "hotsnap daemon: at most %d --control addresses\n",
					DAEMON_MAX_CONTROL);
				return 2;
			}
			d->control_listen[d->control_nlisten++] = optarg;
			break;
		case 'D':
			hs_log_set_level(HS_LOG_DEBUG);
			break;
		case 'H':
		case 'V': {
			char *dst = c == 'H' ? d->hooks_dir : d->dev_dir;
			if (optarg[0] != '/' || strlen(optarg) >= PATH_MAX) {
				fprintf(stderr, "hotsnap daemon: %s--%s must be an absolute path\n", where,
					c == 'H' ? "hooks-dir" : "dev-dir");
				return 2;
			}
			snprintf(dst, PATH_MAX, "%s", optarg);
			break;
		}
		case 'T': {
			char *end;
			unsigned long t = strtoul(optarg, &end, 10);
			if (*end || end == optarg || t < 1 || t > 3600) {
				fprintf(stderr, "hotsnap daemon: %s--hook-timeout '%s': expected seconds "
						"from 1 to 3600\n", where, optarg);
				return 2;
			}
			d->hook_timeout_s = (unsigned)t;
			break;
		}
		case 'S': {
			char *end;
			unsigned long t = strtoul(optarg, &end, 10);
			if (*end || end == optarg || t < 1 || t > 86400) {
				fprintf(stderr, "hotsnap daemon: %s--stall-warning '%s': expected seconds "
						"from 1 to 86400\n", where, optarg);
				return 2;
			}
			d->stall_warning_s = (unsigned)t;
			break;
		}
		case 'F':
			if (!fuse_transport_parse(optarg, &d->fuse_transport)) {
				fprintf(stderr, "hotsnap daemon: %s--fuse-transport '%s': expected auto, "
						"io-uring or dev\n", where, optarg);
				return 2;
			}
			break;
		case 'C':
			if (where[0]) {
				fprintf(stderr, "hotsnap daemon: %sa config file cannot name another\n",
					where);
				return 2;
			}
			o->config = optarg;
			break;
		case 'h':
			daemon_usage(stdout);
			return -1;
		default:
			daemon_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "hotsnap daemon: %sunexpected argument '%s'\n", where, argv[optind]);
		daemon_usage(stderr);
		return 2;
	}
	return 0;
}

int daemon_main(const char *state_dir, int argc, char **argv)
{
	static struct daemon dm; /* one per process */
	struct daemon *d = &dm;
	static char default_nbd[PATH_MAX + 8];
	struct opt_state o = { .state_dir = state_dir };
	struct config_words cw;
	int r;

	/* the command line once for --config (and --help), the file, then the
	 * command line again so that it wins */
	r = parse_options(d, &o, argc, argv, "");
	if (r)
		return r < 0 ? 0 : r;
	if (o.config) {
		char where[PATH_MAX + 16];
		if (config_read(o.config, &cw) < 0)
			return 2;
		snprintf(where, sizeof(where), "%s: ", o.config);
		struct opt_state fo = { .state_dir = state_dir };
		memset(d, 0, sizeof(*d));
		r = parse_options(d, &fo, cw.argc, cw.argv, where);
		if (r)
			return r < 0 ? 0 : r;
		o.state_dir = fo.state_dir;
		o.detach = fo.detach;
		o.no_nbd = fo.no_nbd;
		o.config = NULL;
		r = parse_options(d, &o, argc, argv, "");
		if (r)
			return r < 0 ? 0 : r;
	}
	state_dir = o.state_dir;
	bool detach = o.detach, no_nbd = o.no_nbd;
	if (state_dir[0] != '/') {
		fprintf(stderr, "hotsnap daemon: the state dir must be an absolute path\n");
		return 2;
	}
	if (strlen(state_dir) > 80) {
		fprintf(stderr, "hotsnap daemon: the state dir path is too long (at most 80 "
				"characters: its sockets must fit a unix socket address)\n");
		return 2;
	}
	snprintf(d->state_dir, sizeof(d->state_dir), "%s", state_dir);
	snprintf(d->mnt_dir, sizeof(d->mnt_dir), "%s/mnt", state_dir);
	snprintf(d->control_path, sizeof(d->control_path), "%s/control.sock", state_dir);
	if (!d->default_diff_dir[0])
		snprintf(d->default_diff_dir, sizeof(d->default_diff_dir), "%s/diff", state_dir);
	if (!d->hooks_dir[0])
		snprintf(d->hooks_dir, sizeof(d->hooks_dir), "%s/hooks.d", state_dir);
	/* the system daemon owns /dev/hotsnap; any other keeps its names home */
	if (!d->dev_dir[0])
		snprintf(d->dev_dir, sizeof(d->dev_dir), "%s",
			 strcmp(state_dir, HS_DEFAULT_STATE_DIR) == 0 ? "/dev/hotsnap" : "");
	if (!d->dev_dir[0])
		snprintf(d->dev_dir, sizeof(d->dev_dir), "%s/dev", state_dir);
	if (!d->hook_timeout_s)
		d->hook_timeout_s = HOOKS_DEFAULT_TIMEOUT_S;
	if (!d->stall_warning_s)
		d->stall_warning_s = DAEMON_STALL_WARNING_S;
	if (!no_nbd && d->nbd_nlisten == 0) {
		snprintf(default_nbd, sizeof(default_nbd), "unix:%s/nbd.sock", state_dir);
		d->nbd_listen[d->nbd_nlisten++] = default_nbd;
	}
	if (no_nbd)
		d->nbd_nlisten = 0;
	d->listen_fd = -1;
	d->wake_pipe[0] = d->wake_pipe[1] = -1;
	/* dozens of threads, little heap each: a few arenas are plenty, and
	 * each one more would keep its own freed memory resident */
	mallopt(M_ARENA_MAX, 2);
	pthread_mutex_init(&d->mu, NULL);

	if ((r = path_mkdir_p(state_dir, 0700)) < 0) {
		fprintf(stderr, "hotsnap daemon: cannot create %s: %s\n", state_dir, strerror(-r));
		return 1;
	}
	if (take_lock(d) < 0)
		return 1;
	hs_log_set_prefix("hotsnapd");
	if (detach)
		return detach_and_serve(d);
	return serve(d, -1) < 0 ? 1 : 0;
}
