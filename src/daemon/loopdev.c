/* loopdev.c - see loopdev.h.
 *
 * LOOP_CONFIGURE sets the file, direct I/O and read-only in one ioctl, so a
 * device is never visible half set up.  Device nodes are created when there
 * is no udev to do it (containers, minimal VMs). */
#include "loopdev.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/log.h"

#define LOOP_MAJOR 7

static int open_loop_node(int n, int flags)
{
	char dev[LOOPDEV_NAME_MAX];
	int fd;

	snprintf(dev, sizeof(dev), "/dev/loop%d", n);
	fd = open(dev, flags | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		if (mknod(dev, S_IFBLK | 0660, makedev(LOOP_MAJOR, (unsigned)n)) < 0 &&
		    errno != EEXIST)
			return -errno;
		fd = open(dev, flags | O_CLOEXEC);
	}
	return fd < 0 ? -errno : fd;
}

/* The backing file of loop device number n, from sysfs ("" if none). */
/* The first line of a sysfs backing_file into out; "" when there is none. */
static void read_backing(const char *sysfs_path, char *out, size_t len)
{
	FILE *f = fopen(sysfs_path, "re");

	out[0] = '\0';
	if (!f)
		return;
	if (fgets(out, (int)len, f)) {
		size_t n = strlen(out);
		while (n && (out[n - 1] == '\n' || out[n - 1] == ' '))
			out[--n] = '\0';
	} else {
		out[0] = '\0';
	}
	fclose(f);
}

static void backing_of(const char *devname, char *out, size_t len)
{
	char path[128];

	snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file", devname);
	read_backing(path, out, len);
}

void loopdev_backing_of_dev(dev_t dev, char *out, size_t len)
{
	/* /sys/dev/block/MAJ:MIN is the device, or a partition whose parent
	 * directory is the device */
	static const char *const where[] = { "loop/backing_file", "../loop/backing_file" };
	out[0] = '\0';
	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]) && !out[0]; i++) {
		char path[128];
		snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/%s", major(dev), minor(dev),
			 where[i]);
		read_backing(path, out, len);
	}
}

static bool stack_under(dev_t dev, const char *dir, size_t dlen, char *rest, size_t len,
			int depth)
{
	char back[4096], path[128];
	DIR *dh;
	struct dirent *de;
	bool found = false;

	loopdev_backing_of_dev(dev, back, sizeof(back));
	if (back[0] && strncmp(back, dir, dlen) == 0 && back[dlen] == '/') {
		snprintf(rest, len, "%s", back + dlen + 1);
		return true;
	}
	if (depth >= 8)
		return false;
	/* a partition has no slaves of its own: its disk has */
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/partition", major(dev), minor(dev));
	if (access(path, F_OK) == 0) {
		char num[32];
		unsigned ma, mi;
		snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/../dev", major(dev), minor(dev));
		read_backing(path, num, sizeof(num)); /* "MAJ:MIN", the first line */
		return sscanf(num, "%u:%u", &ma, &mi) == 2 && makedev(ma, mi) != dev &&
		       stack_under(makedev(ma, mi), dir, dlen, rest, len, depth + 1);
	}
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/slaves", major(dev), minor(dev));
	if (!(dh = opendir(path)))
		return false;
	while (!found && (de = readdir(dh))) {
		char devfile[512], num[32];
		unsigned ma, mi;
		if (de->d_name[0] == '.')
			continue;
		snprintf(devfile, sizeof(devfile), "%s/%s/dev", path, de->d_name);
		read_backing(devfile, num, sizeof(num)); /* "MAJ:MIN", the first line */
		if (sscanf(num, "%u:%u", &ma, &mi) == 2)
			found = stack_under(makedev(ma, mi), dir, dlen, rest, len, depth + 1);
	}
	closedir(dh);
	return found;
}

bool loopdev_stack_under(dev_t dev, const char *dir, char *rest, size_t len)
{
	return stack_under(dev, dir, strlen(dir), rest, len, 0);
}

static bool backed_by_path(const char *dev, const char *path)
{
	char back[4096];

	if (strncmp(dev, "/dev/", 5) != 0)
		return false;
	backing_of(dev + 5, back, sizeof(back));
	return back[0] && strcmp(back, path) == 0;
}

bool loopdev_attached(const struct loop_attachment *a)
{
	struct loop_info64 info;
	bool same = false;
	int fd;

	if (!a->dev[0])
		return false;
	fd = open(a->dev, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	if (ioctl(fd, LOOP_GET_STATUS64, &info) == 0)
		same = info.lo_device == (uint64_t)a->back_dev && info.lo_inode == (uint64_t)a->back_ino;
	close(fd);
	return same;
}

int loopdev_attach(const char *path, bool readonly, struct loop_attachment *a, const char **why)
{
	struct loop_config cfg;
	struct stat st;
	int ctl, file, r = 0;

	a->dev[0] = '\0';
	file = open(path, (readonly ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC);
	if (file < 0) {
		*why = "cannot open the volume's FUSE file for the loop device";
		return -errno;
	}
	if (fstat(file, &st) < 0) {
		r = -errno;
		*why = "cannot stat the volume's FUSE file";
		close(file);
		return r;
	}
	a->back_dev = st.st_dev;
	a->back_ino = st.st_ino;
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0) {
		r = -errno;
		*why = "cannot open /dev/loop-control (is the loop module loaded?)";
		goto out_file;
	}
	/* Another process may take the free device first: then try again. */
	for (int attempt = 0; attempt < 16; attempt++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0) {
			r = -errno;
			*why = "no free loop device";
			break;
		}
		int lfd = open_loop_node(n, readonly ? O_RDONLY : O_RDWR);
		if (lfd < 0) {
			r = lfd;
			*why = "cannot open the loop device node";
			break;
		}
		memset(&cfg, 0, sizeof(cfg));
		cfg.fd = (uint32_t)file;
		cfg.block_size = 0; /* 512: what a disk of this size would have */
		cfg.info.lo_flags = LO_FLAGS_DIRECT_IO | (readonly ? LO_FLAGS_READ_ONLY : 0);
		snprintf((char *)cfg.info.lo_file_name, LO_NAME_SIZE, "%s", path);
		if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0) {
			close(lfd);
			snprintf(a->dev, sizeof(a->dev), "/dev/loop%d", n);
			r = 0;
			goto out_ctl;
		}
		r = -errno;
		close(lfd);
		if (r != -EBUSY) {
			*why = "LOOP_CONFIGURE failed";
			break;
		}
	}
	if (r == -EBUSY)
		*why = "every free loop device was taken by someone else";
out_ctl:
	close(ctl);
out_file:
	close(file);
	return r;
}

/* LOOP_CLR_FD on dev; exclusive first unless forced.  0 or -errno. */
static int clear_fd(const char *dev, bool force)
{
	int fd, r = 0;

	/* A mounted file system holds the device exclusively. */
	fd = open(dev, O_RDONLY | O_CLOEXEC | (force ? 0 : O_EXCL));
	if (fd < 0)
		return errno == EBUSY ? -EBUSY : -errno;
	if (ioctl(fd, LOOP_CLR_FD) < 0)
		r = -errno;
	close(fd);
	return r;
}

int loopdev_detach(struct loop_attachment *a)
{
	int r;

	if (!loopdev_attached(a)) {
		a->dev[0] = '\0';
		return -ESTALE;
	}
	r = clear_fd(a->dev, false);
	if (r == 0)
		a->dev[0] = '\0';
	return r;
}

void loopdev_detach_force(struct loop_attachment *a)
{
	if (loopdev_attached(a)) {
		int r = clear_fd(a->dev, true);
		if (r < 0)
			hs_warn("cannot detach %s: %s", a->dev, strerror(-r));
	}
	a->dev[0] = '\0';
}

void loopdev_detach_path(const char *dev, const char *path)
{
	if (backed_by_path(dev, path))
		(void)clear_fd(dev, true);
}

void loopdev_foreach_under(const char *dir, void (*fn)(void *arg, const char *dev,
						       const char *backing), void *arg)
{
	DIR *d = opendir("/sys/block");
	struct dirent *de;
	size_t dlen = strlen(dir);
	char back[4096], dev[LOOPDEV_NAME_MAX + 8];

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "loop", 4) != 0)
			continue;
		backing_of(de->d_name, back, sizeof(back));
		if (!back[0] || strncmp(back, dir, dlen) != 0 || back[dlen] != '/')
			continue;
		snprintf(dev, sizeof(dev), "/dev/%s", de->d_name);
		fn(arg, dev, back);
	}
	closedir(d);
}
