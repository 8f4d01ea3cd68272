/* devlinks.c - see devlinks.h. */
#include "daemon/devlinks.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/paths.h"
#include "daemon/daemon.h"

const char *devlinks_path(struct daemon *d, const char *name, char *buf, unsigned long len)
{
	snprintf(buf, len, "%s/%s", d->dev_dir, name);
	return buf;
}

void devlinks_init(struct daemon *d)
{
	struct dirent *de;
	DIR *dp;
	int r = path_mkdir_p(d->dev_dir, 0755);

	if (r < 0) {
		hs_warn("cannot create %s for the devices' stable names: %s", d->dev_dir,
			strerror(-r));
		return;
	}
	dp = opendir(d->dev_dir);
	if (!dp)
		return;
	/* only symlinks to loop devices are ours to remove */
	while ((de = readdir(dp))) {
		char path[PATH_MAX], target[PATH_MAX];
		ssize_t n;
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", d->dev_dir, de->d_name);
		n = readlink(path, target, sizeof(target) - 1);
		if (n > 0) {
			target[n] = 0;
			if (strncmp(target, "/dev/loop", 9) == 0)
				unlink(path);
		}
	}
	closedir(dp);
}

void devlinks_set(struct daemon *d, const char *name, const char *dev)
{
	char path[PATH_MAX], tmp[PATH_MAX + 16];

	devlinks_path(d, name, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s/.%s.new", d->dev_dir, name);
	unlink(tmp);
	if (symlink(dev, tmp) < 0 || rename(tmp, path) < 0) {
		hs_warn("cannot make the stable name %s -> %s: %s", path, dev, strerror(errno));
		unlink(tmp);
	}
}

void devlinks_remove(struct daemon *d, const char *name)
{
	char path[PATH_MAX];

	devlinks_path(d, name, path, sizeof(path));
	if (unlink(path) < 0 && errno != ENOENT)
		hs_warn("cannot remove %s: %s", path, strerror(errno));
}
