/* pull.h - a backup of a remote export: `hotsnap backup nbds://HOST/VOL@SNAP`.
 *
 * A backup server reads a snapshot that another host's daemon serves over
 * NBD (TLS, with the keys in the URI as libnbd reads them:
 * ?tls-psk-file=FILE or ?tls-certificates=DIR) and writes it with the same
 * image writers a local backup uses.  No local daemon takes part.
 *
 * How it reads: `connections` libnbd handles (the export allows multi-conn),
 * each a worker that takes every connections-th window of WINDOW bytes,
 * asks base:allocation which parts hold data, reads those (as 256 KiB
 * requests, all of a window in flight at once), and hands the
 * window to the writer (image writers take ranges from any thread in any
 * order; a stream, which takes them in order, gets the windows in turn).  Holes and
 * zeros become zeros of the image without being read.  With `consume`,
 * each window is trimmed on the export once written, so the remote diff
 * store releases what this backup no longer needs.
 *
 * An incremental (`parent`, a qcow2 an earlier pull wrote of the same
 * volume): the parent's metadata names the instant it holds (a snapshot
 * name, whose bookmark VOLUME#NAME the remote keeps: `bookmark create`
 * over --remote after the pull), the export's
 * hotsnap:changed-since:VOLUME#NAME context says which regions changed
 * since, and only those are read, widened to whole clusters, into a qcow2
 * whose backing file is the parent.  A full pull to qcow2 records the
 * volume and the snapshot's name for the next one.
 *
 * Memory: connections x WINDOW of buffers, whatever the export's size. */
#ifndef HS_PULL_H
#define HS_PULL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "image/image.h"

#define PULL_WINDOW (4u << 20)
#define PULL_MAX_CONNECTIONS 16

struct pull_job {
	/* set by the caller */
	const char *uri;     /* nbd://, nbds://, nbd+unix://, nbds+unix:// */
	const char *output;  /* for messages */
	int fd;              /* the image goes here (the caller names it at the end) */
	enum image_format format;
	enum image_compress compress;
	bool consume;
	unsigned connections; /* 1..PULL_MAX_CONNECTIONS; 0: 4 */
	const char *parent;   /* an incremental over this image, or NULL */
	void (*tick)(void *arg, uint64_t done, uint64_t size); /* about every 200 ms */
	void *tick_arg;
	/* results */
	uint64_t size;
	atomic_uint_fast64_t position;   /* written up to here */
	atomic_uint_fast64_t bytes_read; /* data read over the network */
	atomic_uint_fast64_t bytes_zero; /* holes and zeros, not read */
	uint64_t image_bytes;            /* the image's size on disk */
	atomic_uint_fast64_t bytes_unchanged; /* incrementals: left to the parent */
	char since[160];                 /* incrementals: the bookmark, VOLUME#NAME */
	double seconds;
	char error[768];
};

/* Reads the export into an image on job->fd.  0, or -errno with
 * job->error saying what failed (the caller removes the partial image). */
int pull_run(struct pull_job *job);

/* True for a source the pull reads (an NBD URI). */
bool pull_is_uri(const char *source);

#endif
