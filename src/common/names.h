/* names.h - the rules for volume and snapshot names.
 *
 * A name is 1 to HS_NAME_MAX characters from [A-Za-z0-9._-], and does not
 * start with '.' or '-'.  So it is safe as a file name, an NBD export name and
 * a command-line word, and "VOLUME@SNAPSHOT" is never ambiguous. */
#ifndef HS_NAMES_H
#define HS_NAMES_H

#include <stdbool.h>
#include <stddef.h>

#define HS_NAME_MAX 64

/* NULL when valid, else a sentence saying what is wrong (static storage). */
const char *names_check(const char *name);

/* Splits "VOLUME@SNAPSHOT" into its parts, copied into vol and snap (each
 * HS_NAME_MAX + 1 bytes) and both checked.  NULL on success, else a sentence
 * saying what is wrong (static storage). */
const char *names_split_snapshot(const char *full, char *vol, char *snap);

#endif
