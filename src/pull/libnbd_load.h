/* libnbd_load.h - libnbd, loaded when a pull first needs it.
 *
 * Why not linked: libnbd brings libxml2, ICU and libstdc++ into every start
 * of the one binary (a program that only links libnbd starts in 10.9 ms
 * against 2.2 ms here; `hotsnap --help` took 14.5 ms linked, 10.9 ms
 * without), and the CLI starts inside the freeze window of every snapshot
 * a script takes (`hotsnap snapshot create`).  Only pulls (`backup nbd://...`) use it, so
 * the first pull dlopen()s libnbd.so.0 and calls through this table; the
 * types and constants still come from <libnbd.h>, and each entry has the
 * exact type of the function it stands for.
 *
 * Not a replacement for libnbd: every call is libnbd's own. */
#ifndef HS_LIBNBD_LOAD_H
#define HS_LIBNBD_LOAD_H

#include <libnbd.h>
#include <stddef.h>

#define HS_LIBNBD_FUNCTIONS(X)                                                     \
	X(create) X(close) X(get_error) X(connect_uri) X(add_meta_context)           \
	X(set_strict_mode) X(get_strict_mode) X(set_uri_allow_local_file) X(get_size) \
	X(get_export_name) X(can_multi_conn) X(can_meta_context) X(block_status)     \
	X(aio_pread) X(aio_in_flight) X(aio_command_completed) X(poll) X(trim)        \
	X(shutdown)

struct libnbd_table {
#define HS_LIBNBD_ENTRY(name) __typeof__(nbd_##name) *name;
	HS_LIBNBD_FUNCTIONS(HS_LIBNBD_ENTRY)
#undef HS_LIBNBD_ENTRY
};

/* Loads libnbd once (thread safe); 0, or -1 with why filled (libnbd0 not
 * installed, or too old for a function named in why). */
int libnbd_load(char *why, size_t len);
/* Valid after libnbd_load returned 0. */
extern struct libnbd_table libnbd;

#endif
