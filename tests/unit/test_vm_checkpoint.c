/* test_vm_checkpoint.c - vm_checkpoint_take against a scripted QMP peer and
 * a fake daemon, for the paths a real QEMU 7.2 here never takes:
 *
 *  qemu9      QEMU 9 and later do not resume the guest after a background
 *             snapshot starts: `cont` must come, and only once the save
 *             has saved RAM pages (memory is write-protected by then);
 *  interrupt  a Ctrl-C held during the checkpoint undoes it at the next
 *             step: migrate_cancel, the capability off once the cancel has
 *             ended, the snapshots deleted, the files removed, and the
 *             signal delivered only when the call returns;
 *  capability a good checkpoint whose capability reset QEMU refuses says
 *             so in its result.
 *
 * The peer answers as the script says, never on a clock: how often the
 * client polls does not change what it is told. */
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "vm/vm.h"

enum scenario { QEMU9, INTERRUPT, CAPABILITY };

struct peer {
	enum scenario sc;
	int lfd, fd;
	FILE *in;
	/* what it saw */
	bool capability;          /* background-snapshot as last set */
	bool reported_pages;      /* query-migrate has shown saved pages */
	bool cont, cont_early, cancel, cap_off_after_cancel, cap_off_while_cancelling;
	unsigned queries;         /* query-migrate since migrate */
	enum { IDLE, SAVING, CANCELLING, CANCELLED, DONE } mig;
};

static void say(struct peer *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct peer *p, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	CHECK(dprintf(p->fd, "%s\n", line) > 0);
}

static void answer(struct peer *p, long long id, const char *ret)
{
	say(p, "{\"return\": %s, \"id\": %lld}", ret, id);
}

static const char *migrate_state(struct peer *p)
{
	if (p->mig == CANCELLING) {
		p->mig = CANCELLED; /* told once, then done */
		return "{\"status\": \"cancelling\"}";
	}
	if (p->mig == CANCELLED)
		return "{\"status\": \"cancelled\"}";
	if (p->mig == DONE || (p->mig == SAVING && p->sc != INTERRUPT && p->queries > 4 &&
			       (p->sc != QEMU9 || p->cont)))
		return "{\"status\": \"completed\", \"ram\": {\"normal\": 9, \"duplicate\": 1}}";
	/* setting up first (no pages: a cont now would be too early) */
	if (++p->queries < 3)
		return "{\"status\": \"active\", \"ram\": {\"normal\": 0, \"duplicate\": 0}}";
	p->reported_pages = true;
	return "{\"status\": \"active\", \"ram\": {\"normal\": 5, \"duplicate\": 3}}";
}

static void serve(struct peer *p, const char *cmd, long long id, json_object *args)
{
	if (strcmp(cmd, "qmp_capabilities") == 0 || strcmp(cmd, "getfd") == 0) {
		answer(p, id, "{}");
	} else if (strcmp(cmd, "query-block") == 0) {
		answer(p, id, "[{\"device\": \"drive0\", \"inserted\": {\"file\": "
			      "\"nbd+unix:///vol0?socket=/run/hotsnap/nbd.sock\", \"ro\": false}}, "
			      "{\"device\": \"drive1\", \"inserted\": {\"file\": "
			      "\"nbd+unix:///vol1?socket=/run/hotsnap/nbd.sock\", \"ro\": false}}, "
			      "{\"device\": \"cd0\"}]");
	} else if (strcmp(cmd, "query-status") == 0) {
		answer(p, id, "{\"status\": \"running\", \"running\": true}");
	} else if (strcmp(cmd, "migrate-set-capabilities") == 0) {
		json_object *caps = json_object_object_get(args, "capabilities");
		json_object *c0 = json_object_array_get_idx(caps, 0);
		bool on = json_object_get_boolean(json_object_object_get(c0, "state"));
		if (!on && p->cancel) {
			p->cap_off_after_cancel = true;
			p->cap_off_while_cancelling |= p->mig != CANCELLED;
		}
		if (!on && p->sc == CAPABILITY) {
			say(p, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"There's a "
			       "migration process in progress\"}, \"id\": %lld}", id);
			return;
		}
		p->capability = on;
		answer(p, id, "{}");
	} else if (strcmp(cmd, "stop") == 0) {
		answer(p, id, "{}");
		say(p, "{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 100, \"microseconds\": 0}}");
	} else if (strcmp(cmd, "migrate") == 0) {
		CHECK(p->capability);
		p->mig = SAVING;
		answer(p, id, "{}");
		if (p->sc != QEMU9) /* up to 8.2 QEMU resumes the guest itself */
			say(p, "{\"event\": \"RESUME\", \"timestamp\": {\"seconds\": 100, "
			       "\"microseconds\": 12500}}");
	} else if (strcmp(cmd, "query-migrate") == 0) {
		answer(p, id, migrate_state(p));
	} else if (strcmp(cmd, "cont") == 0) {
		p->cont = true;
		p->cont_early |= !p->reported_pages;
		answer(p, id, "{}");
		say(p, "{\"event\": \"RESUME\", \"timestamp\": {\"seconds\": 100, "
		       "\"microseconds\": 12500}}");
	} else if (strcmp(cmd, "migrate_cancel") == 0) {
		p->cancel = true;
		p->mig = CANCELLING;
		answer(p, id, "{}");
	} else {
		say(p, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command %s "
		       "has not been found\"}, \"id\": %lld}", cmd, id);
	}
}

static void *peer_main(void *arg)
{
	struct peer *p = arg;
	char line[8192];

	p->fd = accept(p->lfd, NULL, NULL);
	CHECK(p->fd >= 0);
	p->in = fdopen(dup(p->fd), "r");
	CHECK(p->in != NULL);
	say(p, "{\"QMP\": {\"version\": {\"qemu\": {\"major\": %d, \"minor\": 0, \"micro\": 0}}, "
	       "\"capabilities\": []}}", p->sc == QEMU9 ? 9 : 8);
	while (fgets(line, sizeof(line), p->in)) {
		json_object *o = json_tokener_parse(line), *v;
		CHECK(o != NULL);
		CHECK(json_object_object_get_ex(o, "execute", &v));
		const char *cmd = json_object_get_string(v);
		CHECK(json_object_object_get_ex(o, "id", &v));
		serve(p, cmd, (long long)json_object_get_int64(v), json_object_object_get(o, "arguments"));
		json_object_put(o);
	}
	fclose(p->in);
	close(p->fd);
	return NULL;
}

/* --- the fake daemon ---------------------------------------------------------- */

struct fake_daemon {
	enum scenario sc;
	unsigned snapshots, backups, deleted;
};

static int fake_snapshot(void *arg, char *const *volumes, int n, const char *name, char *err,
			 size_t errlen)
{
	struct fake_daemon *d = arg;
	(void)err, (void)errlen;
	CHECK_EQ(n, 2);
	CHECK(strcmp(volumes[0], "vol0") == 0 && strcmp(volumes[1], "vol1") == 0);
	CHECK(strcmp(name, "cp") == 0);
	d->snapshots++;
	return 0;
}

static int fake_backup(void *arg, const char *snapshot, const char *path, uint64_t *bytes,
		       char *err, size_t errlen)
{
	struct fake_daemon *d = arg;
	FILE *f = fopen(path, "w");
	(void)snapshot, (void)err, (void)errlen;
	CHECK(f != NULL);
	fputs("image", f);
	fclose(f);
	*bytes = 5;
	d->backups++;
	if (d->sc == INTERRUPT)
		raise(SIGINT); /* held: it must end the checkpoint at its next step */
	return 0;
}

static int fake_delete(void *arg, const char *snapshot, char *err, size_t errlen)
{
	struct fake_daemon *d = arg;
	(void)snapshot, (void)err, (void)errlen;
	d->deleted++;
	return 0;
}

static volatile sig_atomic_t got_sigint;
static void on_sigint(int sig)
{
	(void)sig;
	got_sigint++;
}

static void run(enum scenario sc, const char *base)
{
	char sock[128], dir[160], path[256], err[1024];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct peer p = { .sc = sc };
	struct fake_daemon fd = { .sc = sc };
	struct vm_daemon d = { .arg = &fd, .snapshot = fake_snapshot, .backup = fake_backup,
			       .delete_snapshot = fake_delete };
	char *vols[] = { "vol0", "vol1" };
	struct vm_checkpoint c;
	struct stat st;
	pthread_t th;

	snprintf(sock, sizeof(sock), "%s/qmp%d.sock", base, (int)sc);
	snprintf(dir, sizeof(dir), "%s/cp%d", base, (int)sc);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	p.lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(p.lfd >= 0);
	CHECK(bind(p.lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(listen(p.lfd, 1) == 0);
	CHECK(pthread_create(&th, NULL, peer_main, &p) == 0);

	struct vm_checkpoint_opts o = { .qmp = sock, .dir = dir, .name = "cp", .volumes = vols,
					.nvols = 2, .timeout_s = 60 };
	int r = vm_checkpoint_take(&o, &d, &c, err, sizeof(err));
	pthread_join(th, NULL); /* the client has closed its monitor */
	close(p.lfd);
	unlink(sock);

	switch (sc) {
	case QEMU9:
		CHECK_EQ(r, 0);
		CHECK(p.cont);          /* QEMU 9 left the guest paused: we ran it */
		CHECK(!p.cont_early);   /* but not before memory was protected */
		CHECK(!p.capability);   /* and turned the capability off after */
		CHECK(c.pause_ms > 12.4 && c.pause_ms < 12.6);
		CHECK_EQ(fd.snapshots, 1);
		CHECK_EQ(fd.backups, 2);
		CHECK_EQ(fd.deleted, 2); /* the images hold them now */
		snprintf(path, sizeof(path), "%s/%s", dir, VM_MANIFEST);
		CHECK(stat(path, &st) == 0);
		CHECK(c.warning[0] == '\0');
		vm_checkpoint_free(&c);
		break;
	case INTERRUPT:
		CHECK_EQ(r, -EINTR);
		CHECK(strstr(err, "interrupted") != NULL);
		CHECK_EQ(got_sigint, 1);  /* delivered once the call let it through */
		CHECK_EQ(fd.backups, 1);  /* the next step saw it */
		CHECK(p.cancel);
		CHECK(p.cap_off_after_cancel && !p.cap_off_while_cancelling);
		CHECK(!p.capability);
		CHECK(!p.cont);           /* the guest was running already */
		CHECK_EQ(fd.deleted, 2);
		snprintf(path, sizeof(path), "%s/%s", dir, VM_MEMORY_FILE);
		CHECK(stat(path, &st) < 0 && errno == ENOENT);
		snprintf(path, sizeof(path), "%s/vol0.qcow2", dir);
		CHECK(stat(path, &st) < 0 && errno == ENOENT);
		break;
	case CAPABILITY:
		CHECK_EQ(r, 0);
		CHECK(!p.cont);
		CHECK(strstr(c.warning, "background-snapshot is still on") != NULL);
		CHECK(strstr(c.warning, "migration process in progress") != NULL);
		vm_checkpoint_free(&c);
		break;
	}
}

int main(void)
{
	char base[] = "/tmp/hs-test_vm_checkpoint.XXXXXX";
	struct sigaction sa = { .sa_handler = on_sigint };
	char cmd[128];

	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(SIGINT, &sa, NULL) == 0);
	CHECK(mkdtemp(base) != NULL);
	run(QEMU9, base);
	run(INTERRUPT, base);
	run(CAPABILITY, base);
	CHECK_EQ(got_sigint, 1);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
	CHECK(system(cmd) == 0);
	printf("test_vm_checkpoint: ok\n");
	return 0;
}
