/* backup_service.h - a backup as the daemon runs it: the source resolved
 * (a snapshot, or a volume and a snapshot of its own), an incremental's
 * parent checked against the volume's change tracking, the image begun,
 * the job run, the image finished, and a bookmark left for the next
 * incremental.  The control command only parses and renders around it.
 *
 * It takes the registry lock (d->mu) to set up and to tear down, never
 * while the job copies. */
#ifndef HS_BACKUP_SERVICE_H
#define HS_BACKUP_SERVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "daemon/daemon.h"
#include "image/image.h"

struct backup_request {
	const char *source;      /* VOLUME or VOLUME@SNAPSHOT */
	const char *output;      /* the image's final path (the CLI names it at the end) */
	int fd;                  /* where to write it; the caller closes it */
	enum image_format format;
	enum image_compress compress;
	const char *incremental; /* the parent image's path, or NULL */
	bool consume, all_blocks, yield;
	uint64_t rate;           /* bytes/s, 0 = none */
	void (*tick)(void *arg, struct backup_job *job);
	void *tick_arg;
};

struct backup_outcome {
	char source[2 * HS_NAME_MAX + 2];
	uint64_t size, bytes_read, bytes_skipped, data_bytes, cow_bytes, diff_peak, yields;
	uint64_t changed_bytes;  /* an incremental's changed set */
	bool changed_exact;      /* ... from the exact (per chunk) map */
	uint32_t cluster_size;
	double seconds, freeze_ms, copies_seconds;
	uint64_t copies_bytes;
	bool consumed, all_blocks, temporary;
	const char *consume_refused;
	char bookmark[2 * HS_NAME_MAX + 2]; /* VOLUME#NAME left for the next incremental */
	char bookmark_problem[256];         /* why none was left */
	char backing[IMAGE_BACKING_MAX + 1];
};

enum cmd_status backup_service_run(struct daemon *d, const struct backup_request *rq,
				   struct backup_outcome *out, char *err, size_t errlen);

#endif
