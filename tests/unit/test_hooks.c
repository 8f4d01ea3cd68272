/* The hooks library (hooks.h) with small shell hooks: phases in order and
 * their environment, a holder across release, failures that name the hook
 * and its last stderr line, deadlines that kill the whole process group. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "hooks/hooks.h"

static char dir[] = "/tmp/hs-hooks-XXXXXX";
static char logpath[256];

static void write_hook(const char *name, const char *body)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	fprintf(f, "#!/bin/sh\nLOG=%s\n%s\n", logpath, body);
	fclose(f);
	CHECK(chmod(path, 0755) == 0);
}

static char *slurp(void)
{
	static char buf[8192];
	FILE *f = fopen(logpath, "r");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = 0;
	unlink(logpath);
	return buf;
}

static void init_run(struct hooks_run *hr, unsigned timeout)
{
	hooks_init(hr, timeout, 0);
	hooks_set_snapshot(hr, "s1");
	hooks_add_volume(hr, "db", "/srv/db", "/dev/loop7");
	hooks_add_volume(hr, "logs", "", "");
}

static void test_phases_in_order(void)
{
	struct hooks_run hr;
	char err[1024] = "", path[512];

	write_hook("10-a", "echo \"a $1 $HOTSNAP_SNAPSHOT [$HOTSNAP_VOLUMES] [$HOTSNAP_MOUNTS] "
			   "[$HOTSNAP_DEVICES] [$HOTSNAP_VOLUME]\" >>$LOG");
	write_hook("20-holder", "case $1 in freeze) echo \"h hold\" >>$LOG; echo ready;"
				" read w; echo \"h $w\" >>$LOG;; *) echo \"h $1\" >>$LOG;; esac");
	write_hook(".hidden", "echo hidden >>$LOG");
	write_hook("30-b~", "echo backup >>$LOG");
	snprintf(path, sizeof(path), "%s/10-a.conf", dir);
	FILE *f = fopen(path, "w");
	fclose(f); /* not executable: skipped */
	init_run(&hr, 10);
	CHECK(hooks_add_dir(&hr, dir, err, sizeof(err)) == 0);
	CHECK_EQ(hr.n, 2);
	CHECK(hooks_prepare(&hr, err, sizeof(err)) == 0);
	CHECK(hooks_freeze(&hr, err, sizeof(err)) == 0);
	CHECK(hr.hooks[1].holder > 0);
	CHECK_EQ(hooks_release(&hr, true), 0);
	CHECK_EQ(hooks_finish(&hr, true), 0);
	const char *want = "a prepare s1 [db logs] [/srv/db -] [/dev/loop7 -] []\n"
			   "h prepare\n"
			   "a freeze s1 [db logs] [/srv/db -] [/dev/loop7 -] []\n"
			   "h hold\n"
			   "h thaw\n"
			   "a thaw s1 [db logs] [/srv/db -] [/dev/loop7 -] []\n"
			   "h thaw\n";
	const char *got = slurp();
	if (strcmp(got, want) != 0) {
		fputs("got:\n", stderr);
		fputs(got, stderr);
	}
	CHECK(strcmp(got, want) == 0);
	unlink(path);
}

static void test_failure_names_hook(void)
{
	struct hooks_run hr;
	char err[1024] = "", path[512];

	snprintf(path, sizeof(path), "%s/fails", dir);
	write_hook("fails", "[ $1 = prepare ] && { echo 'first' >&2; echo 'server gone' >&2; "
			    "exit 4; }; echo \"f $1\" >>$LOG");
	init_run(&hr, 10);
	CHECK(hooks_add(&hr, path, "db", "/srv/db", err, sizeof(err)) == 0);
	CHECK(hooks_prepare(&hr, err, sizeof(err)) < 0);
	CHECK(strstr(err, path) && strstr(err, "prepare") && strstr(err, "volume db") &&
	      strstr(err, "status 4") && strstr(err, "server gone"));
	CHECK_EQ(hooks_release(&hr, false), 0);
	CHECK_EQ(hooks_finish(&hr, false), 0);
	CHECK(strcmp(slurp(), "f abort\n") == 0);
	unlink(path);
	/* not executable: refused when added */
	snprintf(path, sizeof(path), "%s/plain", dir);
	FILE *f = fopen(path, "w");
	fclose(f);
	CHECK(hooks_add(&hr, path, "", "", err, sizeof(err)) < 0);
	unlink(path);
	CHECK(strstr(err, "not an executable") != NULL);
}

static bool gone(pid_t pid)
{
	char p[64], buf[512];
	snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(p, "r");
	if (!f)
		return true;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *paren = strrchr(buf, ')');
	return paren && paren[2] == 'Z';
}

static void test_deadlines_kill_the_group(void)
{
	struct hooks_run hr;
	char err[1024] = "", path[512], pidfile[512];

	snprintf(path, sizeof(path), "%s/mute", dir);
	snprintf(pidfile, sizeof(pidfile), "%s/child", dir);
	char body[1024];
	snprintf(body, sizeof(body),
		 "[ $1 = freeze ] || exit 0; sleep 1000 & echo $! >%s; echo 'no lock' >&2; wait",
		 pidfile);
	write_hook("mute", body);
	hooks_init(&hr, 1, 0);
	CHECK(hooks_add(&hr, path, "", "", err, sizeof(err)) == 0);
	CHECK(hooks_prepare(&hr, err, sizeof(err)) == 0);
	CHECK(hooks_freeze(&hr, err, sizeof(err)) < 0);
	CHECK(strstr(err, "did not say ready within 1 s") && strstr(err, "no lock"));
	FILE *f = fopen(pidfile, "r");
	int child = 0;
	CHECK(f && fscanf(f, "%d", &child) == 1);
	fclose(f);
	for (int i = 0; i < 200 && !gone(child); i++)
		usleep(10000); /* SIGKILL lands soon */
	CHECK(gone(child));
	hooks_release(&hr, false);
	hooks_finish(&hr, false);
	unlink(pidfile);
	unlink(path);

	/* a holder that quits after ready is caught before the thaw, with its
	 * last word */
	snprintf(path, sizeof(path), "%s/quitter", dir);
	write_hook("quitter", "[ $1 = freeze ] || exit 0; echo ready; echo 'lost my lock' >&2; exit 1");
	hooks_init(&hr, 5, 0);
	CHECK(hooks_add(&hr, path, "", "", err, sizeof(err)) == 0);
	/* caught when it says ready, or (gone a moment later) right after */
	if (hooks_freeze(&hr, err, sizeof(err)) == 0) {
		siginfo_t si;
		CHECK(waitid(P_PID, (id_t)hr.hooks[0].holder, &si, WEXITED | WNOWAIT) == 0);
		CHECK(hooks_holders_alive(&hr, err, sizeof(err)) < 0);
	}
	CHECK(strstr(err, "stopped holding") && strstr(err, "status 1") && strstr(err, "lost my lock"));
	hooks_release(&hr, false);
	hooks_finish(&hr, false);
	unlink(path);

	/* a holder that ignores thaw is killed, and counted */
	snprintf(path, sizeof(path), "%s/stubborn", dir);
	write_hook("stubborn", "[ $1 = freeze ] || exit 0; echo ready; exec sleep 1000");
	hooks_init(&hr, 1, 0);
	CHECK(hooks_add(&hr, path, "", "", err, sizeof(err)) == 0);
	CHECK(hooks_freeze(&hr, err, sizeof(err)) == 0);
	CHECK(hooks_holders_alive(&hr, err, sizeof(err)) == 0);
	pid_t holder = hr.hooks[0].holder;
	CHECK_EQ(hooks_release(&hr, true), 1);
	CHECK(gone(holder));
	CHECK_EQ(hooks_finish(&hr, true), 0);
	unlink(path);
}

int main(void)
{
	CHECK(mkdtemp(dir) != NULL);
	snprintf(logpath, sizeof(logpath), "%s/log", dir);
	signal(SIGPIPE, SIG_IGN);
	test_phases_in_order();
	test_failure_names_hook();
	test_deadlines_kill_the_group();
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
	printf("test_hooks: ok\n");
	return 0;
}
