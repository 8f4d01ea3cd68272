/* nbd_testserver.c - serves test volumes over NBD for the system tests.
 *
 *   nbd_testserver --socket PATH [--pidfile PATH] [--dir DIR]
 *                  [--listen ADDR]... ACTION...
 *
 * Actions run in order before serving, so a test states its whole setup on
 * one command line and everything it later checks is deterministic:
 *   vol NAME SIZE [file|mem]   a volume; file: a sparse DIR/NAME.img (default)
 *   write NAME OFF LEN BYTE    LEN bytes of value BYTE at OFF
 *   snap NAME SNAP             a snapshot NAME@SNAP
 *   dump NAME FILE             the volume's current content into FILE
 * Sizes take K, M, G suffixes.  The server listens on unix:PATH (and any
 * --listen), serves "NAME" and "NAME@SNAP", and stops on SIGTERM or SIGINT,
 * removing the socket and the pid file.  SIGUSR1 takes a snapshot "uN" of
 * every volume (N = 1, 2, ...) while serving and then prints "snapshot uN".
 *
 * Once listening it prints one line, "ready URI", on stdout and nothing else
 * there: a test runs it as a coprocess and reads that line, so it waits for
 * exactly as long as needed (or sees end of file if setup failed), with no
 * polling and no sleeps. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/units.h"
#include "engine/engine.h"
#include "export/export.h"
#include "nbd/nbd_server.h"

#define MAX_VOLS 8
#define MAX_LISTEN 8

struct tvol {
	char name[64];
	struct volume *v;
};

static struct tvol vols[MAX_VOLS];
static unsigned nvols;
static const char *dir = ".";

static void die(const char *what, const char *arg)
{
	fprintf(stderr, "nbd_testserver: %s%s\n", what, arg);
	exit(1);
}

static uint64_t size_arg(const char *s)
{
	uint64_t v;
	if (units_parse_size(s, &v) != 0)
		die("not a size: ", s);
	return v;
}

static struct tvol *find_vol(const char *name, size_t len)
{
	for (unsigned i = 0; i < nvols; i++)
		if (strlen(vols[i].name) == len && memcmp(vols[i].name, name, len) == 0)
			return &vols[i];
	return NULL;
}

/* --- the catalog ------------------------------------------------------------- */

static struct export *cat_open(void *ctx, const char *name, const char **why)
{
	const char *at = strchr(name, '@');
	struct tvol *tv = find_vol(name, at ? (size_t)(at - name) : strlen(name));
	struct snapshot *s;
	struct export *e;

	if (!tv) {
		*why = "no volume of that name";
		return NULL;
	}
	if (!at)
		return export_open_volume(tv->v);
	s = volume_find_snapshot(tv->v, at + 1);
	if (!s) {
		*why = "no snapshot of that name";
		return NULL;
	}
	e = export_open_snapshot(s);
	snapshot_put(s);
	return e;
}

struct list_ctx {
	void (*fn)(void *arg, const char *name, const char *description);
	void *arg;
	const char *vol;
};

static void list_snap(void *arg, struct snapshot *s)
{
	struct list_ctx *lc = arg;
	char name[160], desc[600];
	snprintf(name, sizeof(name), "%s@%s", lc->vol, snapshot_name(s));
	snprintf(desc, sizeof(desc), "snapshot %s of volume %s", snapshot_name(s), lc->vol);
	lc->fn(lc->arg, name, desc);
}

static void cat_list(void *ctx, void (*fn)(void *arg, const char *name, const char *description),
		     void *arg)
{
	for (unsigned i = 0; i < nvols; i++) {
		struct list_ctx lc = { .fn = fn, .arg = arg, .vol = vols[i].name };
		char desc[700];
		snprintf(desc, sizeof(desc), "volume %s of %" PRIu64 " bytes", vols[i].name,
			 volume_size(vols[i].v));
		fn(arg, vols[i].name, desc);
		volume_foreach_snapshot(vols[i].v, list_snap, &lc);
	}
}

/* --- actions ------------------------------------------------------------------- */

static void act_vol(const char *name, uint64_t size, const char *kind)
{
	struct volume_config cfg = {
		.name = name,
		.size = size,
		.chunk_shift = 16,
		.cow_buffer = 4u << 20,
		.diff_limit = 256u << 20,
	};
	struct dev *origin, *diff;
	char path[4096];
	int r;

	if (nvols == MAX_VOLS || strlen(name) >= sizeof(vols[0].name))
		die("too many volumes, or the name is too long: ", name);
	if (strcmp(kind, "mem") == 0) {
		r = dev_mem_create(&origin, size);
	} else {
		int fd;
		snprintf(path, sizeof(path), "%s/%s.img", dir, name);
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || ftruncate(fd, (off_t)size) != 0)
			die("cannot make ", path);
		close(fd);
		r = dev_file_open(&origin, path, 0);
	}
	if (r)
		die("cannot open the origin of ", name);
	if (dev_mem_create(&diff, cfg.diff_limit + (1u << cfg.chunk_shift)) != 0)
		die("no memory for the diff store of ", name);
	if (volume_create(&vols[nvols].v, &cfg, origin, diff) != 0)
		die("volume_create failed for ", name);
	snprintf(vols[nvols].name, sizeof(vols[nvols].name), "%s", name);
	nvols++;
}

static struct volume *vol_arg(const char *name)
{
	struct tvol *tv = find_vol(name, strlen(name));
	if (!tv)
		die("no volume ", name);
	return tv->v;
}

static void act_write(const char *name, uint64_t off, uint64_t len, unsigned byte)
{
	struct volume *v = vol_arg(name);
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		die("no memory for a write to ", name);
	memset(buf, (int)byte, len);
	if (volume_write(v, buf, len, off, 0) != 0)
		die("volume_write failed on ", name);
	free(buf);
}

static void act_snap(const char *name, const char *snap)
{
	struct snapshot_request rq = { .volume = vol_arg(name), .name = snap };
	struct snapshot *s;
	if (snapshot_create_set(&rq, 1, &s) != 0)
		die("cannot take snapshot ", snap);
	snapshot_put(s); /* the volume keeps it until deleted */
}

static void act_dump(const char *name, const char *file)
{
	struct volume *v = vol_arg(name);
	uint64_t size = volume_size(v);
	uint8_t *buf = malloc(1u << 20);
	FILE *f = fopen(file, "wb");

	if (!buf || !f)
		die("cannot write ", file);
	for (uint64_t off = 0; off < size; off += 1u << 20) {
		size_t n = (size_t)(size - off < (1u << 20) ? size - off : (1u << 20));
		if (volume_read(v, buf, n, off) != 0 || fwrite(buf, 1, n, f) != n)
			die("cannot dump ", name);
	}
	if (fclose(f) != 0)
		die("cannot write ", file);
	free(buf);
}

static int run_actions(int argc, char **argv)
{
	for (int i = 0; i < argc;) {
		const char *a = argv[i];
		if (strcmp(a, "vol") == 0 && i + 2 < argc) {
			const char *kind = "file";
			int used = 3;
			if (i + 3 < argc && (strcmp(argv[i + 3], "file") == 0 ||
					     strcmp(argv[i + 3], "mem") == 0)) {
				kind = argv[i + 3];
				used = 4;
			}
			act_vol(argv[i + 1], size_arg(argv[i + 2]), kind);
			i += used;
		} else if (strcmp(a, "write") == 0 && i + 4 < argc) {
			act_write(argv[i + 1], size_arg(argv[i + 2]), size_arg(argv[i + 3]),
				  (unsigned)strtoul(argv[i + 4], NULL, 0));
			i += 5;
		} else if (strcmp(a, "snap") == 0 && i + 2 < argc) {
			act_snap(argv[i + 1], argv[i + 2]);
			i += 3;
		} else if (strcmp(a, "dump") == 0 && i + 2 < argc) {
			act_dump(argv[i + 1], argv[i + 2]);
			i += 3;
		} else {
			die("bad action at: ", a);
		}
	}
	return 0;
}

/* --- main ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
	const char *listen[MAX_LISTEN];
	size_t nlisten = 0;
	const char *pidfile = NULL, *why = NULL;
	char sockaddr[4200];
	struct nbd_server *srv;
	sigset_t set;
	int i, sig;

	for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
			snprintf(sockaddr, sizeof(sockaddr), "unix:%s", argv[++i]);
			if (nlisten < MAX_LISTEN)
				listen[nlisten++] = sockaddr;
		} else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
			if (nlisten < MAX_LISTEN)
				listen[nlisten++] = argv[++i];
		} else if (strcmp(argv[i], "--pidfile") == 0 && i + 1 < argc) {
			pidfile = argv[++i];
		} else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else {
			die("unknown option ", argv[i]);
		}
	}
	if (nlisten == 0)
		die("", "usage: nbd_testserver --socket PATH [--pidfile PATH] "
			  "[--dir DIR] [--listen ADDR]... ACTION...");

	/* Signals are taken by sigwait() below, never by a handler. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	run_actions(argc - i, argv + i);

	struct nbd_catalog cat = { .open = cat_open, .list = cat_list, .ctx = NULL };
	/* a test harness: clear text and writable on TCP, as the tests ask */
	struct nbd_server_config cfg = { .tls_mode = NBD_TLS_OFF, .tcp_writable = true };
	int r = nbd_server_start(&srv, listen, nlisten, &cat, &cfg, &why);
	if (r)
		die("cannot serve: ", why ? why : strerror(-r));
	if (pidfile) {
		FILE *f = fopen(pidfile, "w");
		if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0)
			die("cannot write ", pidfile);
	}
	char uri[4400];
	if (nvols && nbd_server_uri(srv, vols[0].name, uri, sizeof(uri)))
		printf("ready %s\n", uri);
	else
		printf("ready\n");
	fflush(stdout);

	for (unsigned nsnap = 1;; nsnap++) {
		char snap[32];
		sig = 0;
		sigwait(&set, &sig);
		if (sig == SIGTERM || sig == SIGINT)
			break;
		snprintf(snap, sizeof(snap), "u%u", nsnap);
		for (unsigned v = 0; v < nvols; v++)
			act_snap(vols[v].name, snap);
		printf("snapshot %s\n", snap);
		fflush(stdout);
	}

	nbd_server_stop(srv);
	for (unsigned v = 0; v < nvols; v++)
		volume_destroy(vols[v].v);
	if (pidfile)
		unlink(pidfile);
	return 0;
}
