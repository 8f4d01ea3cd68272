/* backup_meta.c - see backup_meta.h. */
#include "backup/backup_meta.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t backup_meta_encode(const struct backup_meta *m, char *buf, size_t len)
{
	int n = snprintf(buf, len,
			 "hotsnap-image 1\nvolume %s\nvolume-size %" PRIu64 "\nchunk-size %" PRIu64
			 "\nepoch %s\ngeneration %" PRIu64 "\nbookmark %s\ninstant %" PRIu64
			 "\nparent-generation %" PRIu64 "\n",
			 m->volume, m->volume_size, m->chunk_size, m->epoch[0] ? m->epoch : "-",
			 m->generation, m->bookmark[0] ? m->bookmark : "-", m->instant_s,
			 m->parent_generation);
	return n > 0 && (size_t)n < len ? (size_t)n : 0;
}

static int number(const char *v, uint64_t *out)
{
	char *end;
	if (!*v || *v == '-')
		return -EINVAL;
	errno = 0;
	*out = strtoull(v, &end, 10);
	return errno || *end ? -EINVAL : 0;
}

static int word(const char *v, char *out, size_t len, bool name)
{
	if (strcmp(v, "-") == 0) {
		out[0] = '\0';
		return 0;
	}
	if (strlen(v) >= len || (name && names_check(v)))
		return -EINVAL;
	strcpy(out, v);
	return 0;
}

int backup_meta_decode(const void *buf, size_t len, struct backup_meta *m, const char **why)
{
	char text[1025], *save = NULL;
	unsigned seen = 0;

	memset(m, 0, sizeof(*m));
	*why = "its hotsnap metadata is damaged";
	if (len == 0 || len >= sizeof(text) || memchr(buf, '\0', len))
		return -EINVAL;
	memcpy(text, buf, len);
	text[len] = '\0';
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *v = strchr(line, ' ');
		int r = 0;
		if (!v)
			return -EINVAL;
		*v++ = '\0';
		if (strcmp(line, "hotsnap-image") == 0) {
			if (strcmp(v, "1") != 0) {
				*why = "it was written by a newer hotsnap";
				return -EINVAL;
			}
			seen |= 1;
		} else if (strcmp(line, "volume") == 0) {
			r = word(v, m->volume, sizeof(m->volume), true);
			seen |= 2;
		} else if (strcmp(line, "volume-size") == 0) {
			r = number(v, &m->volume_size);
			seen |= 4;
		} else if (strcmp(line, "chunk-size") == 0) {
			r = number(v, &m->chunk_size);
		} else if (strcmp(line, "epoch") == 0) {
			r = word(v, m->epoch, sizeof(m->epoch), false);
			if (r == 0 && m->epoch[0] && strspn(m->epoch, "0123456789abcdef") != 32)
				r = -EINVAL;
			seen |= 8;
		} else if (strcmp(line, "generation") == 0) {
			r = number(v, &m->generation);
			seen |= 16;
		} else if (strcmp(line, "bookmark") == 0) {
			r = word(v, m->bookmark, sizeof(m->bookmark), true);
		} else if (strcmp(line, "instant") == 0) {
			r = number(v, &m->instant_s);
		} else if (strcmp(line, "parent-generation") == 0) {
			r = number(v, &m->parent_generation);
		} /* other keys: from a later hotsnap, ignored */
		if (r < 0)
			return r;
	}
	if (seen != 31 || !m->volume[0])
		return -EINVAL;
	*why = NULL;
	return 0;
}
