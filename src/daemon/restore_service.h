/* restore_service.h - a restore as the daemon runs it: the image chain
 * opened, the target volume made (--new) or checked free (not attached,
 * not open, no snapshots, no backup), held busy while the job writes and
 * verifies (restore/restore.h), released. */
#ifndef HS_RESTORE_SERVICE_H
#define HS_RESTORE_SERVICE_H

#include "daemon/daemon.h"
#include "restore/restore.h"

struct restore_request {
	const char *image;       /* absolute path */
	const char *volume;      /* the target */
	const char *new_backing; /* make the volume first, on this backing */
	bool verify_only;
	void (*tick)(void *arg, struct restore_job *job);
	void *tick_arg;
};

struct restore_outcome {
	uint64_t size, written, zeroed, checked, mismatched, first_mismatch;
	double seconds, write_seconds, verify_seconds;
	unsigned depth;          /* images in the chain */
	bool created;            /* the volume was made for this restore */
};

enum cmd_status restore_service_run(struct daemon *d, const struct restore_request *rq,
				    struct restore_outcome *out, char *err, size_t errlen);

#endif
