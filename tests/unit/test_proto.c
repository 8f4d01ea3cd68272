/* The control protocol's request checking: every malformed request is
 * refused with a message, every well-formed one is accepted with its
 * typed values. */
#include "check.h"
#include "control/proto.h"

static int parse(const char *s, char *err)
{
	struct ctl_request req;
	int r = ctl_request_parse(s, strlen(s), &req, err, 256);
	if (r == 0)
		ctl_request_free(&req);
	return r;
}

static void refused(const char *s, const char *words)
{
	char err[256] = "";
	if (parse(s, err) == 0 || !strstr(err, words)) {
		fprintf(stderr, "request %s: got '%s', wanted a refusal saying '%s'\n", s, err, words);
		abort();
	}
}

int main(void)
{
	char err[256];
	struct ctl_request req;
	const char *vols[4];
	const char *ok = "{\"cmd\":\"snapshot.create\",\"args\":{\"volumes\":[\"a\",\"b\"],"
			 "\"freeze\":false,\"name\":\"x\"}}";

	CHECK(ctl_request_parse(ok, strlen(ok), &req, err, sizeof(err)) == 0);
	CHECK(strcmp(req.cmd->name, "snapshot.create") == 0);
	CHECK(ctl_strings(&req, "volumes", vols, 4) == 2 && strcmp(vols[1], "b") == 0);
	CHECK(!ctl_bool(&req, "freeze", true));
	CHECK(ctl_bool(&req, "all_blocks", true)); /* absent: the default */
	CHECK(strcmp(ctl_str(&req, "name"), "x") == 0);
	ctl_request_free(&req);
	CHECK(parse("{\"cmd\":\"status\"}", err) == 0);
	CHECK(parse("  {\"cmd\" : \"ping\", \"args\" : {}}  ", err) == 0);

	refused("", "not one JSON object");
	refused("{", "not one JSON object");
	refused("[1,2]", "not a JSON object");
	refused("{\"cmd\":\"status\"} {}", "not one JSON object");
	refused("{\"args\":{}}", "no \"cmd\"");
	refused("{\"cmd\":7}", "no \"cmd\"");
	refused("{\"cmd\":\"frobnicate\"}", "unknown command");
	refused("{\"cmd\":\"status\",\"extra\":1}", "unknown field");
	refused("{\"cmd\":\"status\",\"args\":[]}", "must be a JSON object");
	refused("{\"cmd\":\"volume.attach\"}", "missing argument 'name'");
	refused("{\"cmd\":\"volume.attach\",\"args\":{\"name\":5}}", "must be a string");
	refused("{\"cmd\":\"volume.attach\",\"args\":{\"name\":\"a\",\"x\":1}}", "unknown argument");
	refused("{\"cmd\":\"volume.create\",\"args\":{\"name\":\"a\",\"backing\":\"/b\",\"size\":-5}}",
		"non-negative integer");
	refused("{\"cmd\":\"volume.create\",\"args\":{\"name\":\"a\",\"backing\":\"/b\",\"size\":\"1G\"}}",
		"non-negative integer");
	refused("{\"cmd\":\"snapshot.create\",\"args\":{\"volumes\":\"a\"}}", "list of strings");
	refused("{\"cmd\":\"snapshot.create\",\"args\":{\"volumes\":[]}}", "list of strings");
	refused("{\"cmd\":\"snapshot.create\",\"args\":{\"volumes\":[1]}}", "list of strings");
	refused("{\"cmd\":\"volume.attach\",\"args\":{\"name\":\"a\\u0000b\"}}", "must be a string");
	/* duplicate keys, also when spelled with escapes */
	refused("{\"cmd\":\"status\",\"cmd\":\"shutdown\"}", "appears twice");
	refused("{\"cmd\":\"status\",\"\\u0063md\":\"shutdown\"}", "appears twice");
	refused("{\"cmd\":\"volume.attach\",\"args\":{\"name\":\"a\",\"name\":\"b\"}}", "appears twice");
	refused("{\"cmd\":\"status\",\"args\":{\"a\":[[[[[[[[[1]]]]]]]]]}}", "nested too deeply");
	/* values that look like keys are not keys */
	CHECK(parse("{\"cmd\":\"snapshot.create\",\"args\":{\"volumes\":[\"cmd\",\"cmd:\"]}}", err) == 0);
	printf("test_proto: ok\n");
	return 0;
}
