/* hooks.c - see hooks.h.
 *
 * Notes on the design
 * -------------------
 * A hook is started with posix_spawn (glibc's uses CLONE_VFORK: no copy of
 * the daemon's address space), in a process group of its own so a timeout
 * kills whatever it started too (a database client it left behind would
 * otherwise keep a lock forever).  Its stdout and stderr come back through
 * pipes and are logged line by line; a pidfd tells when it has exited, so
 * one poll() waits for output, exit and the deadline together, without
 * SIGCHLD (the daemon's signals go to a signalfd and are blocked, which is
 * why the child gets an empty mask and default dispositions).
 */
#include "hooks/hooks.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

extern char **environ;

#define LINE_MAX_LEN 512

void hooks_init(struct hooks_run *hr, unsigned timeout_s, unsigned ready_timeout_s)
{
	memset(hr, 0, sizeof(*hr));
	hr->timeout_s = timeout_s ? timeout_s : HOOKS_DEFAULT_TIMEOUT_S;
	hr->ready_timeout_s = ready_timeout_s ? ready_timeout_s : HOOKS_DEFAULT_READY_TIMEOUT_S;
	if (hr->ready_timeout_s > hr->timeout_s)
		hr->ready_timeout_s = hr->timeout_s;
}

static bool skipped_name(const char *n)
{
	size_t len = strlen(n);
	return n[0] == '.' || (len && n[len - 1] == '~') || strstr(n, ".dpkg-") != NULL;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int hooks_add_dir(struct hooks_run *hr, const char *dir, char *err, size_t errlen)
{
	char *names[HOOKS_MAX * 4];
	size_t n = 0;
	struct dirent *de;
	DIR *dp = opendir(dir);
	int r = 0;

	if (!dp) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "cannot read the hooks directory %s: %s", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(dp)) && n < HS_ARRAY_SIZE(names))
		if (!skipped_name(de->d_name))
			names[n++] = strdup(de->d_name);
	closedir(dp);
	qsort(names, n, sizeof(names[0]), cmp_names);
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		struct stat st;
		if (!names[i]) {
			snprintf(err, errlen, "out of memory");
			r = -1;
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (r == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    access(path, X_OK) == 0)
			r = hooks_add(hr, path, "", "", err, errlen);
		free(names[i]);
	}
	return r;
}

int hooks_add(struct hooks_run *hr, const char *path, const char *volume, const char *mount,
	      char *err, size_t errlen)
{
	struct stat st;

	if (hr->n >= HOOKS_MAX) {
		snprintf(err, errlen, "more than %d hooks for one snapshot", HOOKS_MAX);
		return -1;
	}
	errno = 0;
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || access(path, X_OK) < 0) {
		snprintf(err, errlen, "hook %s%s%s is not an executable file%s%s", path,
			 volume[0] ? " of volume " : "", volume, errno ? ": " : "",
			 errno ? strerror(errno) : "");
		return -1;
	}
	struct hook *h = &hr->hooks[hr->n++];
	memset(h, 0, sizeof(*h));
	snprintf(h->path, sizeof(h->path), "%s", path);
	snprintf(h->volume, sizeof(h->volume), "%s", volume);
	snprintf(h->mount, sizeof(h->mount), "%s", mount);
	h->holder_in = h->holder_out = h->holder_err = -1;
	return 0;
}

static void append_word(char *list, size_t size, const char *word)
{
	size_t len = strlen(list);
	snprintf(list + len, size - len, "%s%s", len ? " " : "", word && word[0] ? word : "-");
}

void hooks_add_volume(struct hooks_run *hr, const char *name, const char *mount,
		      const char *device)
{
	append_word(hr->volumes, sizeof(hr->volumes), name);
	append_word(hr->mounts, sizeof(hr->mounts), mount);
	append_word(hr->devices, sizeof(hr->devices), device);
}

void hooks_set_snapshot(struct hooks_run *hr, const char *name)
{
	snprintf(hr->snapshot, sizeof(hr->snapshot), "%s", name);
}

/* --- one process ---------------------------------------------------------- */

struct proc {
	struct hook *h;
	const char *phase;
	pid_t pid;
	int pidfd;
	int in, out, err; /* ours; -1 when closed */
	char outbuf[LINE_MAX_LEN], errbuf[LINE_MAX_LEN];
	size_t outlen, errlen;
	char last_err[LINE_MAX_LEN];
	bool ready;
	int status; /* wait status, once exited */
	bool exited;
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* The daemon's environment without HOTSNAP_* of its own, then ours. */
static char **build_env(const struct hooks_run *hr, const struct hook *h, const char *phase)
{
	size_t n = 0;
	for (char **e = environ; e && *e; e++)
		n++;
	char **env = calloc(n + 12, sizeof(char *));
	size_t k = 0;
	if (!env)
		return NULL;
	for (char **e = environ; e && *e; e++)
		if (strncmp(*e, "HOTSNAP_", 8) != 0)
			env[k++] = strdup(*e);
	if (asprintf(&env[k++], "HOTSNAP_PHASE=%s", phase) < 0 ||
	    asprintf(&env[k++], "HOTSNAP_SNAPSHOT=%s", hr->snapshot) < 0 ||
	    asprintf(&env[k++], "HOTSNAP_VOLUMES=%s", hr->volumes) < 0 ||
	    asprintf(&env[k++], "HOTSNAP_MOUNTS=%s", hr->mounts) < 0 ||
	    asprintf(&env[k++], "HOTSNAP_DEVICES=%s", hr->devices) < 0 ||
	    asprintf(&env[k++], "HOTSNAP_VOLUME=%s", h->volume) < 0 ||
	    asprintf(&env[k++], "HOTSNAP_MOUNT=%s", h->mount) < 0 ||
	    asprintf(&env[k++], "HOTSNAP_TIMEOUT=%u",
		     strcmp(phase, "freeze") == 0 ? hr->ready_timeout_s : hr->timeout_s) < 0)
		env[k - 1] = NULL;
	for (size_t i = 0; i < k; i++)
		if (!env[i]) {
			for (size_t j = 0; j < k; j++)
				free(env[j]);
			free(env);
			return NULL;
		}
	return env;
}

static void free_env(char **env)
{
	for (char **e = env; e && *e; e++)
		free(*e);
	free(env);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int start(struct hooks_run *hr, struct hook *h, const char *phase, bool with_stdin,
		 struct proc *p)
{
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, er[2] = { -1, -1 };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all;
	char *argv[] = { h->path, (char *)phase, NULL };
	char **env;
	int r;

	memset(p, 0, sizeof(*p));
	p->h = h;
	p->phase = phase;
	p->in = p->out = p->err = p->pidfd = -1;
	if ((with_stdin && pipe2(in, O_CLOEXEC) < 0) || pipe2(out, O_CLOEXEC) < 0 ||
	    pipe2(er, O_CLOEXEC) < 0) {
		r = -errno;
		goto err_pipes;
	}
	env = build_env(hr, h, phase);
	if (!env) {
		r = -ENOMEM;
		goto err_pipes;
	}
	posix_spawn_file_actions_init(&fa);
	if (with_stdin)
		posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	else
		posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_adddup2(&fa, er[1], 2);
	posix_spawn_file_actions_addchdir_np(&fa, "/");
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	posix_spawnattr_init(&at);
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	posix_spawnattr_setpgroup(&at, 0);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
					      POSIX_SPAWN_SETPGROUP);
	r = -posix_spawn(&p->pid, h->path, &fa, &at, argv, env);
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	free_env(env);
	if (r < 0)
		goto err_pipes;
	p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
	close_fd(&in[0]);
	close_fd(&out[1]);
	close_fd(&er[1]);
	p->in = in[1];
	p->out = out[0];
	p->err = er[0];
	return 0;

err_pipes:
	for (int i = 0; i < 2; i++) {
		close_fd(&in[i]);
		close_fd(&out[i]);
		close_fd(&er[i]);
	}
	return r;
}

/* A whole line of output: logged; `ready` on stdout is the holder's word. */
static void take_line(struct proc *p, bool is_err, char *line)
{
	size_t len = strlen(line);
	while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
		line[--len] = 0;
	if (!is_err && strcmp(line, "ready") == 0 && strcmp(p->phase, "freeze") == 0) {
		p->ready = true;
		return;
	}
	if (!len)
		return;
	hs_info("hook %s %s: %s", base_name(p->h->path), p->phase, line);
	if (is_err)
		snprintf(p->last_err, sizeof(p->last_err), "%s", line);
}

/* Reads what is there on fd into buf, passing whole lines on.  false at
 * the end of the stream. */
static bool drain(struct proc *p, bool is_err)
{
	int *fd = is_err ? &p->err : &p->out;
	char *buf = is_err ? p->errbuf : p->outbuf;
	size_t *len = is_err ? &p->errlen : &p->outlen;
	char tmp[4096];
	ssize_t n = read(*fd, tmp, sizeof(tmp));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (n <= 0) {
		if (*len) {
			buf[*len] = 0;
			take_line(p, is_err, buf);
			*len = 0;
		}
		close_fd(fd);
		return false;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (tmp[i] == '\n' || *len == LINE_MAX_LEN - 1) {
			buf[*len] = 0;
			take_line(p, is_err, buf);
			*len = 0;
			if (tmp[i] == '\n')
				continue;
		}
		buf[(*len)++] = tmp[i];
	}
	return true;
}

static void reap(struct proc *p)
{
	if (!p->exited && waitpid(p->pid, &p->status, 0) == p->pid)
		p->exited = true;
}

/* Waits until the hook has exited and its output ended, or (until_ready)
 * it said ready, or the deadline.  true unless the deadline passed. */
static bool wait_proc(struct proc *p, uint64_t deadline, bool until_ready)
{
	bool seen_exit = false;

	for (;;) {
		if (p->exited && !seen_exit) {
			/* something it started may keep its output open: a second more */
			seen_exit = true;
			deadline = HS_MIN_U64(deadline, now_ms() + 1000);
		}
		if (until_ready && p->ready)
			return true;
		bool gone = p->exited || p->pidfd < 0;
		if (gone && p->out < 0 && p->err < 0)
			break;
		struct pollfd f[3];
		int nf = 0, io = -1, ie = -1, ip = -1;
		if (p->out >= 0) {
			io = nf;
			f[nf++] = (struct pollfd){ .fd = p->out, .events = POLLIN };
		}
		if (p->err >= 0) {
			ie = nf;
			f[nf++] = (struct pollfd){ .fd = p->err, .events = POLLIN };
		}
		if (!p->exited && p->pidfd >= 0) {
			ip = nf;
			f[nf++] = (struct pollfd){ .fd = p->pidfd, .events = POLLIN };
		}
		uint64_t now = now_ms();
		if (now >= deadline) {
			if (p->exited)
				break;
			return false;
		}
		if (nf == 0)
			break;
		int r = poll(f, (nfds_t)nf, (int)(deadline - now));
		if (r < 0 && errno != EINTR)
			return false;
		if (r <= 0)
			continue;
		if (io >= 0 && f[io].revents)
			drain(p, false);
		if (ie >= 0 && f[ie].revents)
			drain(p, true);
		if (ip >= 0 && f[ip].revents &&
		    waitpid(p->pid, &p->status, WNOHANG) == p->pid)
			p->exited = true;
	}
	/* Its output has ended: without a pidfd (old kernels) wait plainly. */
	reap(p);
	return true;
}

static void kill_proc(struct proc *p)
{
	if (!p->exited) {
		kill(-p->pid, SIGKILL); /* its process group: what it started goes too */
		kill(p->pid, SIGKILL);
		reap(p);
	}
}

static void end_proc(struct proc *p)
{
	close_fd(&p->in);
	close_fd(&p->out);
	close_fd(&p->err);
	close_fd(&p->pidfd);
}

static bool exited_ok(const struct proc *p)
{
	return p->exited && WIFEXITED(p->status) && WEXITSTATUS(p->status) == 0;
}

static void describe_exit(const struct proc *p, char *buf, size_t len)
{
	if (!p->exited)
		snprintf(buf, len, "still running");
	else if (WIFEXITED(p->status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(p->status));
	else if (WIFSIGNALED(p->status))
		snprintf(buf, len, "was killed by signal %d", WTERMSIG(p->status));
	else
		snprintf(buf, len, "ended");
}

static void report(struct hooks_run *hr, const struct proc *p, bool ok, uint64_t t0,
		   const char *msg)
{
	struct hook_report r = { .hook = p->h->path, .phase = p->phase, .ok = ok,
				 .ms = (double)(now_ms() - t0), .message = msg };
	if (ok)
		hs_info("hook %s %s: done in %.0f ms", base_name(p->h->path), p->phase, r.ms);
	else
		hs_warn("hook %s %s failed: %s", p->h->path, p->phase, msg);
	if (hr->report)
		hr->report(hr->report_arg, &r);
}

static void failure(const struct proc *p, const char *what, char *err, size_t errlen)
{
	snprintf(err, errlen, "hook %s (%s%s%s) %s%s%s", p->h->path, p->phase,
		 p->h->volume[0] ? ", volume " : "", p->h->volume, what,
		 p->last_err[0] ? "; its last message: " : "", p->last_err);
}

/* Runs one hook through a phase to its end. */
static int run_phase(struct hooks_run *hr, struct hook *h, const char *phase, char *err,
		     size_t errlen)
{
	struct proc p;
	uint64_t t0 = now_ms();
	char how[64];
	int r = start(hr, h, phase, false, &p);

	if (r < 0) {
		snprintf(err, errlen, "hook %s (%s) could not start: %s", h->path, phase,
			 strerror(-r));
		struct proc dummy = { .h = h, .phase = phase };
		report(hr, &dummy, false, t0, err);
		return -1;
	}
	close_fd(&p.in);
	if (!wait_proc(&p, t0 + (uint64_t)hr->timeout_s * 1000, false)) {
		kill_proc(&p);
		snprintf(how, sizeof(how), "did not finish within %u s (--hook-timeout) and was "
					   "killed", hr->timeout_s);
		failure(&p, how, err, errlen);
		r = -1;
	} else if (!exited_ok(&p)) {
		describe_exit(&p, how, sizeof(how));
		failure(&p, how, err, errlen);
		r = -1;
	}
	report(hr, &p, r == 0, t0, r ? err : NULL);
	end_proc(&p);
	return r;
}

int hooks_prepare(struct hooks_run *hr, char *err, size_t errlen)
{
	hr->prepared = hr->n > 0;
	for (size_t i = 0; i < hr->n; i++)
		if (run_phase(hr, &hr->hooks[i], "prepare", err, errlen) < 0)
			return -1;
	return 0;
}

int hooks_freeze(struct hooks_run *hr, char *err, size_t errlen)
{
	for (size_t i = 0; i < hr->n; i++) {
		struct hook *h = &hr->hooks[i];
		struct proc p;
		uint64_t t0 = now_ms();
		char how[96];
		int r = start(hr, h, "freeze", true, &p);

		if (r < 0) {
			snprintf(err, errlen, "hook %s (freeze) could not start: %s", h->path,
				 strerror(-r));
			return -1;
		}
		bool in_time = wait_proc(&p, t0 + (uint64_t)hr->ready_timeout_s * 1000, true);
		if (p.ready && p.exited) {
			/* said ready and is gone already: it holds nothing */
			while (p.err >= 0 && drain(&p, true))
				;
			char st[64];
			describe_exit(&p, st, sizeof(st));
			snprintf(how, sizeof(how), "stopped holding before the snapshot was taken (%s)",
				 st);
			failure(&p, how, err, errlen);
			report(hr, &p, false, t0, err);
			end_proc(&p);
			return -1;
		}
		if (p.ready) {
			/* a holder: it keeps running until hooks_release */
			h->holder = p.pid;
			h->holder_in = p.in;
			h->holder_out = p.out;
			h->holder_err = p.err;
			snprintf(h->holder_last_err, sizeof(h->holder_last_err), "%s", p.last_err);
			close_fd(&p.pidfd);
			report(hr, &p, true, t0, NULL);
			continue;
		}
		if (!in_time) {
			kill_proc(&p);
			snprintf(how, sizeof(how), "did not say ready within %u s and was killed",
				 hr->ready_timeout_s);
			failure(&p, how, err, errlen);
		} else if (!exited_ok(&p)) {
			describe_exit(&p, how, sizeof(how));
			failure(&p, how, err, errlen);
		}
		bool ok = in_time && exited_ok(&p);
		report(hr, &p, ok, t0, ok ? NULL : err);
		end_proc(&p);
		if (!ok)
			return -1;
	}
	return 0;
}

int hooks_holders_alive(struct hooks_run *hr, char *err, size_t errlen)
{
	for (size_t i = 0; i < hr->n; i++) {
		struct hook *h = &hr->hooks[i];
		siginfo_t si = { 0 };
		if (!h->holder ||
		    waitid(P_PID, (id_t)h->holder, &si, WEXITED | WNOHANG | WNOWAIT) < 0 ||
		    si.si_pid == 0)
			continue;
		/* what it said on its way out, if it is there already */
		struct proc p = { .h = h, .phase = "freeze", .pid = h->holder, .in = -1,
				  .out = h->holder_out, .err = -1, .pidfd = -1 };
		snprintf(p.last_err, sizeof(p.last_err), "%s", h->holder_last_err);
		struct pollfd f = { .fd = h->holder_err, .events = POLLIN };
		while (h->holder_err >= 0 && poll(&f, 1, 0) > 0) {
			p.err = h->holder_err;
			if (!drain(&p, true)) {
				h->holder_err = -1;
				break;
			}
		}
		snprintf(h->holder_last_err, sizeof(h->holder_last_err), "%s", p.last_err);
		char how[96];
		if (si.si_code == CLD_EXITED)
			snprintf(how, sizeof(how), "stopped holding before the snapshot was taken "
						   "(exited with status %d)", si.si_status);
		else
			snprintf(how, sizeof(how), "stopped holding before the snapshot was taken "
						   "(killed by signal %d)", si.si_status);
		failure(&p, how, err, errlen);
		return -1;
	}
	return 0;
}

unsigned hooks_release(struct hooks_run *hr, bool taken)
{
	const char *word = taken ? "thaw\n" : "abort\n";
	unsigned failed = 0;

	/* tell them all at once, then wait: the locks go as early as they can */
	for (size_t i = hr->n; i-- > 0;) {
		struct hook *h = &hr->hooks[i];
		if (!h->holder)
			continue;
		if (write(h->holder_in, word, strlen(word)) < 0) {
			/* gone already: waited for below */
		}
		close_fd(&h->holder_in);
	}
	for (size_t i = hr->n; i-- > 0;) {
		struct hook *h = &hr->hooks[i];
		if (!h->holder)
			continue;
		struct proc p = { .h = h, .phase = "freeze", .pid = h->holder, .in = -1,
				  .out = h->holder_out, .err = h->holder_err,
				  .pidfd = (int)syscall(SYS_pidfd_open, h->holder, 0) };
		snprintf(p.last_err, sizeof(p.last_err), "%s", h->holder_last_err);
		uint64_t t0 = now_ms();
		char how[96], msg[1024];
		bool in_time = wait_proc(&p, t0 + (uint64_t)hr->timeout_s * 1000, false);
		if (!in_time) {
			kill_proc(&p);
			snprintf(how, sizeof(how), "did not end within %u s of being told %.5s and was "
						   "killed", hr->timeout_s, word);
			failure(&p, how, msg, sizeof(msg));
			report(hr, &p, false, t0, msg);
			failed++;
		} else if (!exited_ok(&p)) {
			describe_exit(&p, how, sizeof(how));
			failure(&p, how, msg, sizeof(msg));
			report(hr, &p, false, t0, msg);
			failed++;
		}
		end_proc(&p);
		h->holder = 0;
		h->holder_out = h->holder_err = -1;
	}
	return failed;
}

unsigned hooks_finish(struct hooks_run *hr, bool taken)
{
	unsigned failed = 0;
	char err[1024];

	if (!taken && !hr->prepared)
		return 0;
	for (size_t i = 0; i < hr->n; i++)
		if (run_phase(hr, &hr->hooks[i], taken ? "thaw" : "abort", err, sizeof(err)) < 0)
			failed++;
	return failed;
}
