/* vm_qemu.c - see vm_qemu.h. */
#include "vm/vm_qemu.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int read_all(const char *path, char **out, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || !buf) {
		int e = fd < 0 ? errno : ENOMEM;
		free(buf);
		if (fd >= 0)
			close(fd);
		return -e;
	}
	for (;;) {
		if (n == cap) {
			char *b = realloc(buf, cap *= 2);
			if (!b) {
				free(buf);
				close(fd);
				return -ENOMEM;
			}
			buf = b;
		}
		ssize_t got = read(fd, buf + n, cap - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			int e = errno;
			free(buf);
			close(fd);
			return -e;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	close(fd);
	*out = buf;
	*len = n;
	return 0;
}

/* How many arguments from argv[i] a restore must not repeat: what a
 * restore added (its -incoming, its monitor), and -daemonize: the restore
 * runs QEMU in a session of its own already, and a daemonizing QEMU's pid
 * would be its parent's, gone at once, so a failed load could not end it. */
static int restore_added(char **argv, int argc, int i)
{
	if (strcmp(argv[i], "-daemonize") == 0 || strcmp(argv[i], "--daemonize") == 0)
		return 1;
	if (i + 1 >= argc)
		return 0;
	if (strcmp(argv[i], "-incoming") == 0)
		return 2;
	if ((strcmp(argv[i], "-chardev") == 0 || strcmp(argv[i], "-mon") == 0) &&
	    strstr(argv[i + 1], VM_MONITOR_ID))
		return 2;
	return 0;
}

int vm_qemu_read_process(pid_t pid, struct vm_checkpoint *c, char *err, size_t errlen)
{
	char path[64], *buf = NULL;
	size_t len = 0;
	ssize_t n;
	int r, count = 0;

	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	n = readlink(path, c->qemu_binary, sizeof(c->qemu_binary) - 1);
	if (n < 0) {
		snprintf(err, errlen, "cannot read %s (QEMU's binary): %s", path, strerror(errno));
		return -errno;
	}
	c->qemu_binary[n] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/cwd", (int)pid);
	n = readlink(path, c->qemu_cwd, sizeof(c->qemu_cwd) - 1);
	c->qemu_cwd[n > 0 ? n : 0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	r = read_all(path, &buf, &len);
	if (r < 0) {
		snprintf(err, errlen, "cannot read %s (QEMU's arguments): %s", path, strerror(-r));
		return r;
	}
	for (size_t i = 0; i < len; i++)
		count += buf[i] == '\0';
	char **all = calloc((size_t)count + 1, sizeof(char *));
	c->argv = calloc((size_t)count + 1, sizeof(char *));
	if (!all || !c->argv) {
		free(all);
		free(buf);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0, k = 0; i < len && (int)k < count; k++) {
		all[k] = buf + i;
		i += strlen(buf + i) + 1;
	}
	c->argc = 0;
	for (int i = 0; i < count; i++) {
		int skip = i > 0 ? restore_added(all, count, i) : 0;
		if (skip) {
			i += skip - 1;
			continue;
		}
		c->argv[c->argc++] = strdup(all[i]);
	}
	free(all);
	free(buf);
	for (int i = 0; i < c->argc; i++)
		if (!c->argv[i]) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
	return 0;
}

/* The NBD export a QEMU disk's file name reads, or "" (not NBD).  QEMU names
 * NBD disks as it was given them: nbd+unix:///EXPORT?socket=PATH,
 * nbd://HOST[:PORT]/EXPORT, nbd:unix:PATH:exportname=EXPORT, or json:{...
 * "export": EXPORT ...}. */
static void nbd_export_of(const char *file, char *out, size_t len)
{
	const char *p = NULL;
	size_t n;

	out[0] = '\0';
	if (strncmp(file, "nbd", 3) == 0 && strstr(file, "://")) {
		p = strstr(file, "://") + 3;
		p = strchr(p, '/');
		if (!p)
			return;
		p++;
		n = strcspn(p, "?");
	} else if (strncmp(file, "nbd:", 4) == 0 && (p = strstr(file, "exportname="))) {
		p += strlen("exportname=");
		n = strcspn(p, ":,");
	} else if (strncmp(file, "json:", 5) == 0 && strstr(file, "\"nbd\"") &&
		   (p = strstr(file, "\"export\""))) {
		p = strchr(p + 8, '"');
		if (!p)
			return;
		p++;
		n = strcspn(p, "\"");
	} else {
		return;
	}
	snprintf(out, len, "%.*s", (int)n, p);
}

int vm_qemu_match_disks(struct qmp *q, struct vm_checkpoint *c, char *err, size_t errlen)
{
	json_object *blocks;
	bool found[VM_MAX_VOLUMES] = { false };
	int r = qmp_execute(q, "query-block", NULL, -1, &blocks, err, errlen);

	if (r < 0)
		return r;
	r = 0;
	for (size_t i = 0; r == 0 && i < json_object_array_length(blocks); i++) {
		json_object *b = json_object_array_get_idx(blocks, i), *ins, *v;
		char export[256];
		const char *dev, *file;

		if (!json_object_object_get_ex(b, "inserted", &ins))
			continue; /* an empty drive */
		file = json_object_get_string(json_object_object_get(ins, "file"));
		dev = json_object_get_string(json_object_object_get(b, "device"));
		if (!dev || !dev[0])
			dev = json_object_get_string(json_object_object_get(b, "qdev"));
		nbd_export_of(file ? file : "", export, sizeof(export));
		int k;
		for (k = 0; k < c->nvols; k++)
			if (strcmp(c->vols[k].name, export) == 0)
				break;
		if (k < c->nvols) {
			found[k] = true;
			snprintf(c->vols[k].device, sizeof(c->vols[k].device), "%s", dev ? dev : "?");
			continue;
		}
		bool ro = json_object_object_get_ex(ins, "ro", &v) && json_object_get_boolean(v);
		if (!ro) {
			snprintf(err, errlen, "the guest's disk %s (%s) is writable and not among the "
				 "volumes given: its contents would not match the saved memory; "
				 "name its volume too, or make it read-only",
				 dev ? dev : "?", file ? file : "?");
			r = -EINVAL;
		}
	}
	json_object_put(blocks);
	for (int k = 0; r == 0 && k < c->nvols; k++)
		if (!found[k]) {
			snprintf(err, errlen, "volume %s is not among the guest's disks (its -drive must "
				 "read nbd+unix:///%s?socket=... from the daemon)", c->vols[k].name,
				 c->vols[k].name);
			r = -ENOENT;
		}
	return r;
}

int vm_qemu_start(const struct vm_checkpoint *c, const char *qmp_path, const char *log_path,
		  pid_t *pid, char *err, size_t errlen)
{
	char chardev[PATH_MAX + 128], mon[128];
	char **argv = calloc((size_t)c->argc + 7, sizeof(char *));
	int logfd, n = 0;

	if (!argv) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(chardev, sizeof(chardev), "socket,id=%s,path=%s,server=on,wait=off",
		 VM_MONITOR_ID, qmp_path);
	snprintf(mon, sizeof(mon), "chardev=%s,mode=control", VM_MONITOR_ID);
	for (int i = 0; i < c->argc; i++)
		argv[n++] = c->argv[i];
	argv[n++] = "-chardev";
	argv[n++] = chardev;
	argv[n++] = "-mon";
	argv[n++] = mon;
	argv[n++] = "-incoming";
	argv[n++] = "defer";
	argv[n] = NULL;
	logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (logfd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", log_path, strerror(errno));
		free(argv);
		return -errno;
	}
	unlink(qmp_path);
	pid_t child = fork();
	if (child < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		close(logfd);
		free(argv);
		return -errno;
	}
	if (child == 0) {
		int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
		setsid();
		signal(SIGPIPE, SIG_DFL);
		if (devnull >= 0)
			dup2(devnull, STDIN_FILENO);
		dup2(logfd, STDOUT_FILENO);
		dup2(logfd, STDERR_FILENO);
		if (c->qemu_cwd[0] && chdir(c->qemu_cwd) < 0)
			fprintf(stderr, "hotsnap: cannot enter %s: %s\n", c->qemu_cwd, strerror(errno));
		execv(c->qemu_binary, argv);
		fprintf(stderr, "hotsnap: cannot run %s: %s\n", c->qemu_binary, strerror(errno));
		_exit(127);
	}
	close(logfd);
	free(argv);
	*pid = child;
	return 0;
}
