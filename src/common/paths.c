/* paths.c - see paths.h. */
#include "paths.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int path_relative(const char *from_dir, const char *to, char *out, size_t len)
{
	size_t common = 0, i, n = 0;

	if (from_dir[0] != '/' || to[0] != '/')
		return -EINVAL;
	/* the longest shared run of whole components */
	for (i = 0; from_dir[i] && from_dir[i] == to[i]; i++)
		if (from_dir[i] == '/')
			common = i;
	if (!from_dir[i] && (to[i] == '/' || !to[i]))
		common = i;
	/* one ".." per component of from_dir past the shared part */
	out[0] = '\0';
	for (const char *p = from_dir + common; *p; p++)
		if (*p == '/' && p[1]) {
			if (n + 3 >= len)
				return -ENAMETOOLONG;
			memcpy(out + n, "../", 4);
			n += 3;
		}
	const char *rest = to + common;
	while (*rest == '/')
		rest++;
	if (n + strlen(rest) + 1 > len)
		return -ENAMETOOLONG;
	strcpy(out + n, rest);
	return 0;
}

int path_mkdir_p(const char *path, unsigned mode)
{
	char tmp[PATH_MAX];

	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, (mode_t)mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

