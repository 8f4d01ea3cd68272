/* test_qmp.c - the QMP client against a scripted peer on a unix socket.
 *
 * The peer answers only when the script says so, never on a clock: the one
 * command left unanswered times out on the client's own bound, and its late
 * answer is sent only after the next command has arrived.  That answer must
 * be dropped (its id is the old command's), not taken for the new one's;
 * an event in between is queued for qmp_wait_event. */
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "vm/qmp.h"

struct peer {
	int lfd, fd;
	FILE *in;
	int64_t ids[8];
	char cmds[8][32];
	unsigned n;
};

static void say(struct peer *p, const char *line)
{
	size_t len = strlen(line);
	CHECK(write(p->fd, line, len) == (ssize_t)len);
	CHECK(write(p->fd, "\n", 1) == 1);
}

/* Reads the next command: its name and id, kept for the checks. */
static int64_t next_command(struct peer *p, const char *want)
{
	char line[4096];
	json_object *o, *v;

	CHECK(fgets(line, sizeof(line), p->in) != NULL);
	o = json_tokener_parse(line);
	CHECK(o != NULL);
	CHECK(json_object_object_get_ex(o, "execute", &v));
	CHECK(strcmp(json_object_get_string(v), want) == 0);
	CHECK(json_object_object_get_ex(o, "id", &v)); /* every command has one */
	CHECK(json_object_is_type(v, json_type_int));
	int64_t id = json_object_get_int64(v);
	for (unsigned i = 0; i < p->n; i++)
		CHECK(p->ids[i] != id); /* and no two the same */
	p->ids[p->n++] = id;
	json_object_put(o);
	return id;
}

static void *peer_main(void *arg)
{
	struct peer *p = arg;
	char buf[256];

	p->fd = accept(p->lfd, NULL, NULL);
	CHECK(p->fd >= 0);
	p->in = fdopen(dup(p->fd), "r");
	CHECK(p->in != NULL);
	say(p, "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 7, \"minor\": 2, \"micro\": 0}}, "
	       "\"capabilities\": []}}");
	snprintf(buf, sizeof(buf), "{\"return\": {}, \"id\": %lld}",
		 (long long)next_command(p, "qmp_capabilities"));
	say(p, buf);

	int64_t late = next_command(p, "query-status"); /* left unanswered: times out */
	int64_t now = next_command(p, "query-name");
	snprintf(buf, sizeof(buf), "{\"return\": {\"status\": \"late\"}, \"id\": %lld}", (long long)late);
	say(p, buf);
	say(p, "{\"event\": \"RESUME\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 5}}");
	snprintf(buf, sizeof(buf), "{\"return\": {\"name\": \"right\"}, \"id\": %lld}", (long long)now);
	say(p, buf);

	snprintf(buf, sizeof(buf),
		 "{\"error\": {\"class\": \"GenericError\", \"desc\": \"not now\"}, \"id\": %lld}",
		 (long long)next_command(p, "stop"));
	say(p, buf);
	/* QEMU's answer to a line it cannot parse has no id: still the answer */
	next_command(p, "cont");
	say(p, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}");

	fclose(p->in);
	close(p->fd);
	return NULL;
}

int main(void)
{
	char dir[] = "/tmp/hs-test_qmp.XXXXXX", path[108], err[256];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct peer p = { 0 };
	pthread_t th;
	struct qmp *q;
	json_object *ret = NULL, *v, *ev = NULL;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/qmp.sock", dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	p.lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(p.lfd >= 0);
	CHECK(bind(p.lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(listen(p.lfd, 1) == 0);
	CHECK(pthread_create(&th, NULL, peer_main, &p) == 0);

	CHECK(qmp_open(path, &q, err, sizeof(err)) == 0);
	CHECK(strcmp(qmp_version(q), "7.2.0") == 0);
	qmp_set_reply_timeout(q, 100);
	CHECK_EQ(qmp_execute(q, "query-status", NULL, -1, &ret, err, sizeof(err)), -ETIMEDOUT);
	CHECK(strstr(err, "did not answer 'query-status'") != NULL);
	qmp_set_reply_timeout(q, 0);

	/* the late answer to query-status comes first: not this one's */
	CHECK_EQ(qmp_execute(q, "query-name", NULL, -1, &ret, err, sizeof(err)), 0);
	CHECK(json_object_object_get_ex(ret, "name", &v));
	CHECK(strcmp(json_object_get_string(v), "right") == 0);
	json_object_put(ret);
	CHECK_EQ(qmp_wait_event(q, "RESUME", 1000, &ev, err, sizeof(err)), 0);
	CHECK_EQ(qmp_event_time_us(ev), 1000005);
	json_object_put(ev);

	CHECK_EQ(qmp_execute(q, "stop", NULL, -1, NULL, err, sizeof(err)), -EIO);
	CHECK(strstr(err, "not now") != NULL);
	CHECK_EQ(qmp_execute(q, "cont", NULL, -1, NULL, err, sizeof(err)), -EIO);
	CHECK(strstr(err, "JSON parse error") != NULL);

	pthread_join(th, NULL);
	CHECK_EQ(qmp_execute(q, "query-status", NULL, -1, NULL, err, sizeof(err)), -ECONNRESET);
	qmp_close(q);
	close(p.lfd);
	unlink(path);
	rmdir(dir);
	printf("test_qmp: ok\n");
	return 0;
}
