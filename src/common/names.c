/* names.c - see names.h. */
#include "names.h"

#include <string.h>

const char *names_check(const char *name)
{
	size_t len;

	if (!name || !*name)
		return "a name must not be empty";
	len = strlen(name);
	if (len > HS_NAME_MAX)
		return "a name must be at most 64 characters long";
	if (name[0] == '.' || name[0] == '-')
		return "a name must not start with '.' or '-'";
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')
			continue;
		if (c == '/')
			return "a name must not contain '/' (use letters, digits, '.', '_' and '-')";
		if (c == '@')
			return "a name must not contain '@' (it separates VOLUME@SNAPSHOT)";
		return "a name may contain only letters, digits, '.', '_' and '-'";
	}
	return NULL;
}

const char *names_split_snapshot(const char *full, char *vol, char *snap)
{
	const char *at = strchr(full, '@');
	const char *why;
	size_t vlen;

	if (!at)
		return "a snapshot is named VOLUME@SNAPSHOT";
	vlen = (size_t)(at - full);
	if (vlen > HS_NAME_MAX || strlen(at + 1) > HS_NAME_MAX)
		return "a name must be at most 64 characters long";
	memcpy(vol, full, vlen);
	vol[vlen] = '\0';
	strcpy(snap, at + 1);
	if ((why = names_check(vol)) || (why = names_check(snap)))
		return why;
	return NULL;
}
