/* paths.h - file name arithmetic. */
#ifndef HS_PATHS_H
#define HS_PATHS_H

#include <stddef.h>

/* The path of `to` relative to the directory `from_dir`, both absolute and
 * free of "." and ".." (as realpath gives them): "a.qcow2", "../x/a.qcow2".
 * 0, or -ENAMETOOLONG / -EINVAL. */
int path_relative(const char *from_dir, const char *to, char *out, size_t len);

#endif
