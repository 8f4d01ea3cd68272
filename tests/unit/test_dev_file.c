/* dev_file's answers about holes: the remembered data extent must never
 * hide a hole made through the device, and must answer like lseek did.
 * Runs in a directory on the file system under test ($TMPDIR or /var/tmp),
 * since tmpfs and ext4 find holes differently. */
#include <fcntl.h>
#include <unistd.h>

#include "check.h"
#include "engine/dev.h"

#define MiB (UINT64_C(1) << 20)

static void extent_at(struct dev *d, uint64_t off, enum dev_extent_type want, uint64_t want_len)
{
	enum dev_extent_type type;
	uint64_t len = 0;

	CHECK(d->ops->extent(d, off, 64 * MiB, &type, &len) == 0);
	CHECK_EQ(type, want);
	CHECK_EQ(len, want_len);
}

static void test_extents_follow_discards(const char *dir)
{
	char path[4096];
	struct dev *d;
	uint8_t *buf = malloc(4 * MiB);
	int fd;

	snprintf(path, sizeof(path), "%s/test_dev_file.XXXXXX", dir);
	fd = mkstemp(path);
	CHECK(fd >= 0);
	memset(buf, 0xab, 4 * MiB);
	/* data [0, 4M), a hole [4M, 8M), data [8M, 12M) */
	CHECK(pwrite(fd, buf, 4 * MiB, 0) == (ssize_t)(4 * MiB));
	CHECK(pwrite(fd, buf, 4 * MiB, 8 * MiB) == (ssize_t)(4 * MiB));
	CHECK(fsync(fd) == 0);
	close(fd);
	CHECK(dev_file_open(&d, path, DEV_FILE_BUFFERED) == 0);

	extent_at(d, 0, DEV_EXTENT_DATA, 4 * MiB);
	extent_at(d, 1 * MiB, DEV_EXTENT_DATA, 3 * MiB); /* from the remembered extent */
	extent_at(d, 4 * MiB, DEV_EXTENT_HOLE, 4 * MiB);
	extent_at(d, 9 * MiB, DEV_EXTENT_DATA, 3 * MiB);

	/* a discard through the device: the hole shows at once, also inside
	 * the extent it remembered a moment ago */
	extent_at(d, 8 * MiB, DEV_EXTENT_DATA, 4 * MiB);
	CHECK(d->ops->discard(d, 9 * MiB, 1 * MiB) == 0);
	extent_at(d, 8 * MiB, DEV_EXTENT_DATA, 1 * MiB);
	extent_at(d, 9 * MiB, DEV_EXTENT_HOLE, 1 * MiB);
	extent_at(d, 10 * MiB, DEV_EXTENT_DATA, 2 * MiB);
	extent_at(d, 11 * MiB, DEV_EXTENT_DATA, 1 * MiB);

	dev_destroy(d);
	unlink(path);
	free(buf);
}

int main(void)
{
	const char *dir = getenv("TMPDIR");

	test_extents_follow_discards(dir && *dir ? dir : "/var/tmp");
	printf("test_dev_file: ok\n");
	return 0;
}
