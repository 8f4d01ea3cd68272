/* fuzz_control.c - libFuzzer target for the control protocol: the input is
 * what a client sends, cut into lines as the daemon cuts them; every line
 * goes through the request parser and, when accepted, every typed accessor
 * of its command's arguments. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "control/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void exercise(const struct ctl_request *req)
{
	const char *strs[CONTROL_MAX_LIST];
	volatile size_t sink = 0;

	for (const struct ctl_arg *a = req->cmd->args; a->key; a++) {
		switch (a->type) {
		case CTL_STRING:
			if (ctl_str(req, a->key))
				sink += strlen(ctl_str(req, a->key));
			break;
		case CTL_BOOL:
			sink += ctl_bool(req, a->key, false);
			break;
		case CTL_U64:
			sink += ctl_u64(req, a->key, 0);
			break;
		case CTL_STRINGS:
			sink += ctl_strings(req, a->key, strs, CONTROL_MAX_LIST);
			break;
		}
		sink += ctl_has(req, a->key);
	}
	(void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	char err[256];

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)((nl ? nl : end) - p);
		struct ctl_request req;
		if (ctl_request_parse(p, len, &req, err, sizeof(err)) == 0) {
			exercise(&req);
			ctl_request_free(&req);
		}
		p += len + 1;
	}
	return 0;
}
