/* units.h - parsing and printing of byte sizes and rates.
 *
 * Sizes accept a plain number of bytes or a number with a binary suffix:
 * K, M, G, T, P, E (also KiB, MiB, ... and KB, MB, ...; all powers of 1024,
 * as qemu-img and losetup read them), with a fraction when there is a
 * suffix: 1.5G (rounded down to whole bytes).  Rates printed for people use MB = 10^6. */
#ifndef HS_UNITS_H
#define HS_UNITS_H

#include <stddef.h>
#include <stdint.h>

/* 0 on success; -EINVAL when text is not a size; -ERANGE on overflow. */
int units_parse_size(const char *text, uint64_t *out);

/* "1.5 GiB", "512 KiB", "4096 B". Returns buf. */
char *units_format_size(uint64_t bytes, char *buf, size_t len);

#endif
