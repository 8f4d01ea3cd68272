/* freeze.c - see freeze.h. */
#include "freeze.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/log.h"

/* Undoes the octal escapes of /proc/self/mountinfo ("\040" for a space). */
static void unescape(char *s)
{
	char *out = s;
	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 4;
		} else {
			*out++ = *s++;
		}
	}
	*out = '\0';
}

bool freeze_find_mount(const char *dev, struct frozen_fs *out)
{
	struct stat st;
	FILE *f;
	char *line = NULL;
	size_t cap = 0;
	bool found = false, have_root = false;

	if (stat(dev, &st) < 0 || !S_ISBLK(st.st_mode))
		return false;
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return false;
	/* Every mount of one block device is the same super block, so one
	 * freeze covers them all: keep one, preferring a mount of its root. */
	while (getline(&line, &cap, f) > 0 && !have_root) {
		unsigned maj, min;
		char root[4096], mnt[4096], fstype[64];
		/* id parent maj:min root mountpoint options ... - fstype source ... */
		if (sscanf(line, "%*d %*d %u:%u %4095s %4095s", &maj, &min, root, mnt) != 4)
			continue;
		if (makedev(maj, min) != st.st_rdev)
			continue;
		char *dash = strstr(line, " - ");
		if (!dash || sscanf(dash + 3, "%63s", fstype) != 1)
			continue;
		unescape(mnt);
		memset(out, 0, sizeof(*out));
		snprintf(out->mountpoint, sizeof(out->mountpoint), "%s", mnt);
		snprintf(out->fstype, sizeof(out->fstype), "%s", fstype);
		out->fd = -1;
		have_root = strcmp(root, "/") == 0;
		found = true;
	}
	free(line);
	fclose(f);
	return found;
}

int freeze_fs(struct frozen_fs *fs)
{
	fs->fd = open(fs->mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fs->fd < 0)
		return -errno;
	if (ioctl(fs->fd, FIFREEZE, 0) == 0) {
		fs->frozen_by_us = true;
		return 0;
	}
	if (errno == EBUSY) {
		fs->was_frozen = true; /* frozen by someone else: keep it so */
		return 0;
	}
	int r = -errno;
	close(fs->fd);
	fs->fd = -1;
	return r;
}

int thaw_fs(struct frozen_fs *fs)
{
	int r = 0;

	if (fs->fd < 0)
		return 0;
	if (fs->frozen_by_us && ioctl(fs->fd, FITHAW, 0) < 0) {
		r = -errno;
		hs_error("thawing %s failed: %s; run 'fsfreeze -u %s'", fs->mountpoint,
			 strerror(errno), fs->mountpoint);
	}
	fs->frozen_by_us = false;
	close(fs->fd);
	fs->fd = -1;
	return r;
}
