/* freeze.c - see freeze.h. */
#include "freeze.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/compiler.h"
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
		have_root = strcmp(root, "/") == 0;
		found = true;
	}
	free(line);
	fclose(f);
	return found;
}

/* --- the freezer child -------------------------------------------------------- */

#define FREEZER_MAX 64 /* file systems frozen together; a larger set is refused */

/* Everything the child does must be async-signal-safe (the daemon is
 * multi-threaded): open, ioctl, read, write, close, _exit. */
static int write_int(int fd, int v)
{
	return write(fd, &v, sizeof(v)) == (ssize_t)sizeof(v) ? 0 : -1;
}

static int read_int(int fd, int *v)
{
	ssize_t n;
	do
		n = read(fd, v, sizeof(*v));
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(*v) ? 0 : -1;
}

static HS_NORETURN void freezer_child(const struct frozen_fs *fs, size_t n, int cmd, int status)
{
	int fds[FREEZER_MAX];
	bool ours[FREEZER_MAX];
	int err = 0;
	char c;

	/* keep only the two pipes: above all no /dev/fuse descriptor, or a dead
	 * daemon's connection would live on in this process (nor a FUSE ring:
	 * those are mapped MADV_DONTFORK, fuse_uring.c) */
	if (dup2(cmd, 3) < 0 || dup2(status, 4) < 0)
		_exit(1);
	syscall(SYS_close_range, 5u, ~0u, 0u);
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	for (size_t i = 0; i < n && i < FREEZER_MAX; i++) {
		int r = 0;
		fds[i] = -1;
		ours[i] = false;
		if (fs[i].mountpoint[0]) {
			fds[i] = open(fs[i].mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (fds[i] < 0)
				r = errno;
			else if (ioctl(fds[i], FIFREEZE, 0) == 0)
				ours[i] = true;
			else if (errno != EBUSY)
				r = errno;
			else
				r = -EBUSY; /* frozen by someone else: it stays so */
		}
		write_int(4, r);
		if (r > 0) { /* failed: undo, and stop */
			for (size_t k = 0; k < i; k++)
				if (ours[k])
					ioctl(fds[k], FITHAW, 0);
			_exit(1);
		}
	}
	/* a byte, or end of file when the daemon is gone: thaw */
	while (read(3, &c, 1) < 0 && errno == EINTR)
		;
	for (size_t i = 0; i < n && i < FREEZER_MAX; i++)
		if (ours[i] && ioctl(fds[i], FITHAW, 0) < 0 && !err)
			err = errno;
	write_int(4, err);
	_exit(0);
}

int freezer_freeze(struct freezer *fz, struct frozen_fs *fs, size_t n, size_t *failed)
{
	int cmd[2], status[2];

	fz->pid = -1;
	if (n > FREEZER_MAX)
		return -E2BIG;
	if (pipe2(cmd, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(status, O_CLOEXEC) < 0) {
		close(cmd[0]);
		close(cmd[1]);
		return -errno;
	}
	fz->pid = fork();
	if (fz->pid == 0)
		freezer_child(fs, n, cmd[0], status[1]);
	close(cmd[0]);
	close(status[1]);
	if (fz->pid < 0) {
		int r = -errno;
		close(cmd[1]);
		close(status[0]);
		return r;
	}
	fz->cmd_fd = cmd[1];
	fz->status_fd = status[0];
	for (size_t i = 0; i < n; i++) {
		int r;
		fs[i].frozen_by_us = fs[i].was_frozen = false;
		if (read_int(fz->status_fd, &r) < 0)
			r = EIO; /* the child died */
		if (r == -EBUSY)
			fs[i].was_frozen = true;
		else if (r == 0 && fs[i].mountpoint[0])
			fs[i].frozen_by_us = true;
		if (r > 0) {
			*failed = i;
			(void)freezer_thaw(fz);
			for (size_t k = 0; k < n; k++)
				fs[k].frozen_by_us = false;
			return -r;
		}
	}
	return 0;
}

int freezer_thaw(struct freezer *fz)
{
	int err = 0, st;

	if (fz->pid <= 0)
		return 0;
	if (write(fz->cmd_fd, "t", 1) < 0) {
		/* the child is gone already: it thawed on its way out */
	}
	close(fz->cmd_fd);
	if (read_int(fz->status_fd, &err) < 0)
		err = 0; /* exited early (a failed freeze): nothing left frozen */
	close(fz->status_fd);
	while (waitpid(fz->pid, &st, 0) < 0 && errno == EINTR)
		;
	fz->pid = -1;
	if (err)
		hs_error("thawing failed: %s; run 'fsfreeze -u' on the mount points", strerror(err));
	return -err;
}

static void journal_path(const char *state_dir, char *buf, size_t len)
{
	snprintf(buf, len, "%s/freezing", state_dir);
}

void freeze_journal_write(const char *state_dir, const struct frozen_fs *fs, size_t n)
{
	char path[4200];
	FILE *f;

	journal_path(state_dir, path, sizeof(path));
	f = fopen(path, "we");
	if (!f) {
		hs_warn("cannot write %s: %s", path, strerror(errno));
		return;
	}
	for (size_t i = 0; i < n; i++)
		if (fs[i].mountpoint[0])
			fprintf(f, "%s\n", fs[i].mountpoint);
	fclose(f);
}

void freeze_journal_clear(const char *state_dir)
{
	char path[4200];

	journal_path(state_dir, path, sizeof(path));
	unlink(path);
}

void freeze_journal_recover(const char *state_dir)
{
	char path[4200], *line = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *f;

	journal_path(state_dir, path, sizeof(path));
	f = fopen(path, "re");
	if (!f)
		return;
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] == '\n')
			line[n - 1] = '\0';
		int fd = open(line, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (ioctl(fd, FITHAW, 0) == 0)
			hs_warn("thawed %s: a hotsnap daemon died while it was frozen", line);
		close(fd);
	}
	free(line);
	fclose(f);
	unlink(path);
}
