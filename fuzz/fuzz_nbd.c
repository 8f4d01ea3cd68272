/* fuzz_nbd.c - libFuzzer target for the NBD server: the input is the whole
 * byte stream a client sends.
 *
 * It runs the real connection code (nbd_conn_serve: handshake, request
 * reader, validation, commands, replies) over an in-memory transport that
 * reads the input and throws the server's replies away.  The connection runs
 * its requests inline (no worker threads) so every input replays the same
 * way.  Each input gets a fresh memory volume "vol" with data and a snapshot
 * "vol@s" taken before later writes, so reads, holes, consumed ranges and the
 * changed map are all reachable.  Each input runs under the three listener
 * policies (nbd_internal.h): a unix socket's, TCP's with TLS required, and
 * TCP's in clear text with read-only volumes.
 *
 * Built with -fsanitize=fuzzer by fuzz/meson.build, and without it by
 * tests/nbd (fuzz_nbd_replay) to replay fuzz/regress/nbd/ in the test suite. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "export/export.h"
#include "nbd/nbd_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_VOL_SIZE (1u << 20)
#define FUZZ_CHUNK_SHIFT 12

/* --- the client's stream --------------------------------------------------------- */

struct mem_stream {
	struct nbd_transport t;
	const uint8_t *p;
	size_t left;
	size_t written;
};

static struct mem_stream *to_ms(struct nbd_transport *t)
{
	return (struct mem_stream *)t;
}

static int ms_read(struct nbd_transport *t, void *buf, size_t len)
{
	struct mem_stream *ms = to_ms(t);
	if (len > ms->left) {
		ms->left = 0; /* the client hung up mid-message */
		return -ECONNRESET;
	}
	memcpy(buf, ms->p, len);
	ms->p += len;
	ms->left -= len;
	return 0;
}

static int ms_writev(struct nbd_transport *t, const struct iovec *iov, int iovcnt)
{
	/* touch every byte so the sanitizers see reads of uninitialised or
	 * freed reply memory */
	volatile uint8_t sink = 0;
	for (int i = 0; i < iovcnt; i++) {
		const uint8_t *b = iov[i].iov_base;
		for (size_t j = 0; j < iov[i].iov_len; j++)
			sink ^= b[j];
		to_ms(t)->written += iov[i].iov_len;
	}
	(void)sink;
	return 0;
}

static void ms_shutdown(struct nbd_transport *t)
{
	to_ms(t)->left = 0;
}

static void ms_close(struct nbd_transport *t)
{
	/* lives on the caller's stack */
}

static const struct nbd_transport_ops mem_stream_ops = {
	.read = ms_read,
	.writev = ms_writev,
	.shutdown = ms_shutdown,
	.close = ms_close,
};

/* --- the catalog: "vol" and "vol@s" ----------------------------------------------------- */

struct fuzz_world {
	struct volume *vol;
	struct snapshot *snap;
};

static struct export *fz_open(void *ctx, const char *name, const char **why)
{
	struct fuzz_world *w = ctx;
	if (strcmp(name, "vol") == 0)
		return export_open_volume(w->vol);
	if (strcmp(name, "vol@s") == 0)
		return export_open_snapshot(w->snap);
	*why = "no such export";
	return NULL;
}

static void fz_list(void *ctx, void (*fn)(void *arg, const char *name, const char *description),
		    void *arg)
{
	fn(arg, "vol", "a memory volume");
	fn(arg, "vol@s", "its snapshot");
}

static int world_make(struct fuzz_world *w)
{
	struct volume_config cfg = {
		.name = "vol",
		.size = FUZZ_VOL_SIZE,
		.chunk_shift = FUZZ_CHUNK_SHIFT,
		.cow_buffer = 16u << FUZZ_CHUNK_SHIFT,
		.diff_limit = 64u << FUZZ_CHUNK_SHIFT,
	};
	struct snapshot_request rq = { .name = "s" };
	static uint8_t pattern[64u << 10];
	struct dev *origin, *diff;

	if (dev_mem_create(&origin, FUZZ_VOL_SIZE) != 0)
		return -1;
	if (dev_mem_create(&diff, cfg.diff_limit + (1u << FUZZ_CHUNK_SHIFT)) != 0) {
		dev_destroy(origin);
		return -1;
	}
	if (volume_create(&w->vol, &cfg, origin, diff) != 0)
		return -1;
	memset(pattern, 0xa5, sizeof(pattern));
	volume_write(w->vol, pattern, sizeof(pattern), 0, 0);
	volume_write(w->vol, pattern, sizeof(pattern), 512u << 10, 0);
	rq.volume = w->vol;
	if (snapshot_create_set(&rq, 1, &w->snap) != 0) {
		volume_destroy(w->vol);
		return -1;
	}
	memset(pattern, 0x5a, 8192);
	volume_write(w->vol, pattern, 8192, 4096, 0); /* changed since the snapshot */
	return 0;
}

static void world_free(struct fuzz_world *w)
{
	snapshot_put(w->snap);
	volume_destroy(w->vol);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The same stream under each listener policy: a unix socket's (no
	 * TLS, writable), TCP's default (TLS required: this stream cannot do
	 * TLS, so STARTTLS is refused and so must be everything but ABORT), and
	 * TCP's in clear text (volumes read-only). */
	static const struct nbd_policy policies[] = {
		{ .where = "unix:fuzz" },
		{ .tls_required = true, .volumes_readonly = true, .where = "tcp:fuzz" },
		{ .volumes_readonly = true, .where = "tcp:fuzz" },
	};

	for (size_t i = 0; i < sizeof(policies) / sizeof(policies[0]); i++) {
		struct mem_stream ms = { .t.ops = &mem_stream_ops, .p = data, .left = size };
		struct fuzz_world w;
		struct nbd_catalog cat = { .open = fz_open, .list = fz_list, .ctx = &w };
		struct nbd_conn *c;

		if (world_make(&w) != 0)
			abort();
		c = nbd_conn_new(&ms.t, &cat, 0);
		if (c) {
			nbd_conn_set_policy(c, &policies[i]);
			nbd_conn_serve(c);
			nbd_conn_free(c);
		}
		world_free(&w);
	}
	return 0;
}
