/* image_tool - drives the image library from the shell, for system tests
 * and the fuzz corpus:
 *   image_tool write FORMAT SRC DST [CLUSTER COMPRESS [BACKING CHANGED]]
 *       writes the file SRC as an image; with BACKING (stored as given) only
 *       the clusters listed in the file CHANGED (one offset per line) are
 *       written, the rest left to the backing file
 *   image_tool read IMAGE DST     the image's view, as a raw file
 *   image_tool info IMAGE         format, size, depth, backing, metadata */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/image.h"

static int die(const char *what, const char *msg)
{
	fprintf(stderr, "image_tool: %s: %s\n", what, msg);
	return 1;
}

static int cmd_write(int argc, char **argv)
{
	struct image_params ip = { 0 };
	char err[512];
	struct image_writer *w;
	struct stat st;
	int in = open(argv[3], O_RDONLY), out;

	if (in < 0 || fstat(in, &st) < 0)
		return die(argv[3], strerror(errno));
	if (image_format_parse(argv[2], &ip.format) < 0)
		return die(argv[2], "not a format");
	ip.size = (uint64_t)st.st_size;
	ip.name = argv[4];
	if (argc > 5)
		ip.cluster_size = (uint32_t)strtoul(argv[5], NULL, 0);
	if (argc > 6 && image_compress_parse(argv[6], &ip.compress) < 0)
		return die(argv[6], "not a compression");
	if (argc > 8) {
		ip.backing = argv[7];
		ip.backing_format = "qcow2";
	}
	out = open(argv[4], O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (out < 0)
		return die(argv[4], strerror(errno));
	if (image_writer_begin(&w, out, &ip, err, sizeof(err)) < 0)
		return die("begin", err);
	uint32_t step = w->granularity > 65536 ? w->granularity : 65536;
	char *buf = malloc(step);
	if (argc > 8) {
		FILE *f = fopen(argv[8], "r");
		unsigned long long off;
		if (!f)
			return die(argv[8], strerror(errno));
		step = w->granularity;
		while (fscanf(f, "%llu", &off) == 1) {
			size_t n = (size_t)(off + step > ip.size ? ip.size - off : step);
			if (pread(in, buf, n, (off_t)off) != (ssize_t)n ||
			    image_writer_data(w, buf, n, off) < 0)
				return die("write", w->error);
		}
		fclose(f);
	} else {
		for (uint64_t off = 0; off < ip.size; off += step) {
			size_t n = (size_t)(off + step > ip.size ? ip.size - off : step);
			if (pread(in, buf, n, (off_t)off) != (ssize_t)n ||
			    image_writer_data(w, buf, n, off) < 0)
				return die("write", w->error);
			image_writer_position(w, off + n);
		}
	}
	if (image_writer_finish(w, err, sizeof(err)) < 0)
		return die("finish", err);
	free(buf);
	return 0;
}

static int cmd_read(char **argv)
{
	struct image_reader *r;
	char err[512];
	int out;

	if (image_open(&r, argv[2], 0, err, sizeof(err)) < 0)
		return die("open", err);
	out = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (out < 0)
		return die(argv[3], strerror(errno));
	uint64_t size = image_get_info(r)->size;
	char *buf = malloc(1 << 20);
	for (uint64_t off = 0; off < size; off += 1 << 20) {
		size_t n = (size_t)(size - off < (1 << 20) ? size - off : (1 << 20));
		if (image_read(r, buf, n, off) < 0)
			return die("read", image_error());
		if (pwrite(out, buf, n, (off_t)off) != (ssize_t)n)
			return die(argv[3], strerror(errno));
	}
	free(buf);
	close(out);
	image_close(r);
	return 0;
}

static int cmd_info(char **argv)
{
	struct image_reader *r;
	char err[512];

	if (image_open(&r, argv[2], 0, err, sizeof(err)) < 0)
		return die("open", err);
	const struct image_info *i = image_get_info(r);
	printf("format %s\nsize %llu\ncluster %u\ndepth %u\nbacking %s\n",
	       image_format_name(i->format), (unsigned long long)i->size, i->cluster_size, i->depth,
	       i->backing);
	if (i->meta_len)
		printf("meta %.*s\n", (int)i->meta_len, (const char *)i->meta);
	image_close(r);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 5 && strcmp(argv[1], "write") == 0)
		return cmd_write(argc, argv);
	if (argc == 4 && strcmp(argv[1], "read") == 0)
		return cmd_read(argv);
	if (argc == 3 && strcmp(argv[1], "info") == 0)
		return cmd_info(argv);
	fprintf(stderr, "usage: image_tool write FORMAT SRC DST [CLUSTER COMPRESS [BACKING CHANGED]]\n"
			"       image_tool read IMAGE DST | info IMAGE\n");
	return 2;
}
