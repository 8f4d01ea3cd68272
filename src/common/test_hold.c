/* test_hold.c - see test_hold.h. */
#include "common/test_hold.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

void test_hold_point(const char *name)
{
	const char *dir = getenv("HOTSNAP_TEST_HOLD");
	char path[PATH_MAX], buf[64];
	struct stat st;
	int fd;

	if (!dir || !dir[0])
		return;
	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path) ||
	    stat(path, &st) < 0 || !S_ISFIFO(st.st_mode))
		return;
	hs_info("test hold: waiting at %s", name);
	do
		fd = open(path, O_RDONLY | O_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n == 0 || (n < 0 && errno != EINTR))
			break; /* the test closed its end */
	}
	close(fd);
	hs_info("test hold: released at %s", name);
}
