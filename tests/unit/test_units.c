/* Size parsing, name rules and path arithmetic. */
#include <errno.h>

#include "check.h"
#include "common/names.h"
#include "common/paths.h"
#include "common/units.h"

int main(void)
{
	uint64_t v;
	char vol[HS_NAME_MAX + 1], snap[HS_NAME_MAX + 1];

	CHECK(units_parse_size("4096", &v) == 0 && v == 4096);
	CHECK(units_parse_size("4k", &v) == 0 && v == 4096);
	CHECK(units_parse_size("8M", &v) == 0 && v == 8u << 20);
	CHECK(units_parse_size("1GiB", &v) == 0 && v == 1u << 30);
	CHECK(units_parse_size("2T", &v) == 0 && v == UINT64_C(2) << 40);
	CHECK(units_parse_size("1.5G", &v) == 0 && v == UINT64_C(3) << 29);
	CHECK(units_parse_size("0.5k", &v) == 0 && v == 512);
	CHECK(units_parse_size("1.1K", &v) == 0 && v == 1126); /* rounded down */
	CHECK(units_parse_size("2E", &v) == 0 && v == UINT64_C(2) << 60);
	CHECK(units_parse_size("15.99E", &v) == 0);
	CHECK(units_parse_size("16E", &v) == -ERANGE);
	CHECK(units_parse_size("1.5", &v) == -EINVAL);  /* no fraction of a byte */
	CHECK(units_parse_size("1.", &v) == -EINVAL);
	CHECK(units_parse_size("1.G", &v) == -EINVAL);
	CHECK(units_parse_size("abc", &v) == -EINVAL);
	CHECK(units_parse_size("", &v) == -EINVAL);
	CHECK(units_parse_size("-1", &v) == -EINVAL);
	CHECK(units_parse_size("10X", &v) == -EINVAL);
	CHECK(units_parse_size("99999999999999999999", &v) == -ERANGE);
	CHECK(units_parse_size("100000000P", &v) == -ERANGE);

	char rel[64];
	CHECK(path_relative("/b", "/b/x.qcow2", rel, sizeof(rel)) == 0 && !strcmp(rel, "x.qcow2"));
	CHECK(path_relative("/b/c", "/b/x.qcow2", rel, sizeof(rel)) == 0 &&
	      !strcmp(rel, "../x.qcow2"));
	CHECK(path_relative("/b/c/d", "/b/e/x", rel, sizeof(rel)) == 0 && !strcmp(rel, "../../e/x"));
	CHECK(path_relative("/bb", "/b/x", rel, sizeof(rel)) == 0 && !strcmp(rel, "../b/x"));
	CHECK(path_relative("/", "/x", rel, sizeof(rel)) == 0 && !strcmp(rel, "x"));
	CHECK(path_relative("/b", "/bc/x", rel, sizeof(rel)) == 0 && !strcmp(rel, "../bc/x"));
	CHECK(path_relative("b", "/x", rel, sizeof(rel)) == -EINVAL);
	CHECK(path_relative("/a/b/c/d/e", "/x/y", rel, 8) == -ENAMETOOLONG);

	CHECK(names_check("vol0") == NULL);
	CHECK(names_check("a.b_c-d") == NULL);
	CHECK(names_check("") != NULL);
	CHECK(names_check("a/b") != NULL);
	CHECK(names_check("a@b") != NULL);
	CHECK(names_check(".hidden") != NULL);
	CHECK(names_check("-x") != NULL);
	CHECK(names_check("sp ace") != NULL);
	char longname[80];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[79] = 0;
	CHECK(names_check(longname) != NULL);
	CHECK(names_split_snapshot("vol@s1", vol, snap) == NULL);
	CHECK(strcmp(vol, "vol") == 0 && strcmp(snap, "s1") == 0);
	CHECK(names_split_snapshot("vol", vol, snap) != NULL);
	CHECK(names_split_snapshot("@s", vol, snap) != NULL);
	CHECK(names_split_snapshot("v@", vol, snap) != NULL);
	CHECK(names_split_snapshot("v@a@b", vol, snap) != NULL);
	printf("test_units: ok\n");
	return 0;
}
