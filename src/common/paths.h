/* paths.h - file name arithmetic. */
#ifndef HS_PATHS_H
#define HS_PATHS_H

#include <stddef.h>

/* The state dir of the system daemon (and of the CLI without
 * --state-dir or $HOTSNAP_STATE_DIR). */
#define HS_DEFAULT_STATE_DIR "/var/lib/hotsnap"

/* The path of `to` relative to the directory `from_dir`, both absolute and
 * free of "." and ".." (as realpath gives them): "a.qcow2", "../x/a.qcow2".
 * 0, or -ENAMETOOLONG / -EINVAL. */
int path_relative(const char *from_dir, const char *to, char *out, size_t len);

/* mkdir -p: the missing parents with mode 0755, path itself with mode.
 * 0 (also when it exists) or -errno. */
int path_mkdir_p(const char *path, unsigned mode);

#endif
