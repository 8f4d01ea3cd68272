/* units.c - see units.h. */
#include "units.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

int units_parse_size(const char *text, uint64_t *out)
{
	static const struct {
		const char *suffix;
		unsigned shift;
	} suffixes[] = {
		{ "", 0 },     { "b", 0 },    { "k", 10 },   { "kb", 10 },
		{ "kib", 10 }, { "m", 20 },   { "mb", 20 },  { "mib", 20 },
		{ "g", 30 },   { "gb", 30 },  { "gib", 30 }, { "t", 40 },
		{ "tb", 40 },  { "tib", 40 }, { "p", 50 },   { "pb", 50 },
		{ "pib", 50 }, { "e", 60 },   { "eb", 60 },  { "eib", 60 },
	};
	uint64_t value = 0, frac = 0, scale = 1;
	const char *p = text;

	if (!text || !isdigit((unsigned char)*p))
		return -EINVAL;
	while (isdigit((unsigned char)*p)) {
		unsigned digit = (unsigned)(*p - '0');
		if (value > (UINT64_MAX - digit) / 10)
			return -ERANGE;
		value = value * 10 + digit;
		p++;
	}
	/* a fraction, as qemu-img takes it: 1.5G; digits past the 18th only
	 * round, so they are dropped */
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		while (isdigit((unsigned char)*p)) {
			if (scale < UINT64_C(1000000000000000000)) {
				frac = frac * 10 + (uint64_t)(*p - '0');
				scale *= 10;
			}
			p++;
		}
	}
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		unsigned shift = suffixes[i].shift;
		if (strcasecmp(p, suffixes[i].suffix) != 0)
			continue;
		if (frac && shift == 0)
			return -EINVAL; /* a fraction of a byte */
		if (shift && value > (UINT64_MAX >> shift))
			return -ERANGE;
		/* the fraction in bytes, rounded down: frac / scale * 2^shift */
		unsigned __int128 part = ((unsigned __int128)frac << shift) / scale;
		unsigned __int128 total = ((unsigned __int128)value << shift) + part;
		if (total > UINT64_MAX)
			return -ERANGE;
		*out = (uint64_t)total;
		return 0;
	}
	return -EINVAL;
}

char *units_format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const names[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	unsigned i = 0;
	double v = (double)bytes;

	while (v >= 1024.0 && i + 1 < sizeof(names) / sizeof(names[0])) {
		v /= 1024.0;
		i++;
	}
	if (i == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else if (v == (double)(uint64_t)v)
		snprintf(buf, len, "%.0f %s", v, names[i]);
	else
		snprintf(buf, len, "%.2f %s", v, names[i]);
	return buf;
}
