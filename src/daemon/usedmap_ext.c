/* usedmap_ext.c - the used-block map of an unmounted ext2/3/4 image, from
 * its block bitmaps, read with libext2fs through a snapshot.  See usedmap.h.
 *
 * libext2fs reads through an io_manager; ours forwards reads to a callback
 * (the snapshot) and refuses writes.  The channel finds its callback through
 * a pointer encoded in the "device name", which is how io managers are
 * given context. */
#include <errno.h>
#include <ext2fs/ext2fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usedmap.h"

struct reader {
	usedmap_read_fn fn;
	void *ctx;
	uint64_t size;
};

static struct struct_io_manager snap_io_manager;

static errcode_t snap_open(const char *name, int flags, io_channel *channel)
{
	struct reader *rd = NULL;
	io_channel ch;
	errcode_t err;

	if ((flags & IO_FLAG_RW) || sscanf(name, "hotsnap:%p", (void **)&rd) != 1 || !rd)
		return EXT2_ET_BAD_DEVICE_NAME;
	err = ext2fs_get_memzero(sizeof(*ch), &ch);
	if (err)
		return err;
	err = ext2fs_get_mem(strlen(name) + 1, &ch->name);
	if (err) {
		ext2fs_free_mem(&ch);
		return err;
	}
	strcpy(ch->name, name);
	ch->magic = EXT2_ET_MAGIC_IO_CHANNEL;
	ch->manager = &snap_io_manager;
	ch->block_size = 1024;
	ch->refcount = 1;
	ch->private_data = rd;
	*channel = ch;
	return 0;
}

static errcode_t snap_close(io_channel ch)
{
	if (--ch->refcount > 0)
		return 0;
	ext2fs_free_mem(&ch->name);
	ext2fs_free_mem(&ch);
	return 0;
}

static errcode_t snap_set_blksize(io_channel ch, int blksize)
{
	ch->block_size = blksize;
	return 0;
}

static errcode_t snap_read64(io_channel ch, unsigned long long block, int count, void *data)
{
	struct reader *rd = ch->private_data;
	uint64_t len = count < 0 ? (uint64_t)-count : (uint64_t)count * (uint64_t)ch->block_size;
	uint64_t off = block * (uint64_t)ch->block_size;

	if (off >= rd->size || len > rd->size - off)
		return EXT2_ET_SHORT_READ;
	return rd->fn(rd->ctx, data, len, off) < 0 ? EXT2_ET_SHORT_READ : 0;
}

static errcode_t snap_read(io_channel ch, unsigned long block, int count, void *data)
{
	return snap_read64(ch, block, count, data);
}

static errcode_t snap_write64(io_channel ch, unsigned long long block, int count,
			      const void *data)
{
	return EXT2_ET_RO_FILSYS;
}

static errcode_t snap_write(io_channel ch, unsigned long block, int count, const void *data)
{
	return EXT2_ET_RO_FILSYS;
}

static errcode_t snap_flush(io_channel ch)
{
	return 0;
}

static struct struct_io_manager snap_io_manager = {
	.magic = EXT2_ET_MAGIC_IO_MANAGER,
	.name = "hotsnap snapshot",
	.open = snap_open,
	.close = snap_close,
	.set_blksize = snap_set_blksize,
	.read_blk = snap_read,
	.write_blk = snap_write,
	.flush = snap_flush,
	.read_blk64 = snap_read64,
	.write_blk64 = snap_write64,
};

static int mark(struct bitmap *used, uint64_t size, unsigned shift, uint64_t off, uint64_t len)
{
	if (len == 0 || off >= size)
		return 0;
	if (len > size - off)
		len = size - off;
	uint64_t c0 = off >> shift, c1 = (off + len - 1) >> shift;
	return bitmap_set_range(used, c0, c1 - c0 + 1);
}

int usedmap_from_ext(usedmap_read_fn fn, void *ctx, uint64_t size, unsigned chunk_shift,
		     struct bitmap *used, const char **why)
{
	struct reader rd = { .fn = fn, .ctx = ctx, .size = size };
	struct ext2_super_block sb;
	char name[64];
	ext2_filsys fs;
	uint64_t nchunks = (size + (UINT64_C(1) << chunk_shift) - 1) >> chunk_shift;
	int r;

	/* Look before libext2fs does: most volumes are not ext at all. */
	if (size < 2048 || fn(ctx, &sb, sizeof(sb), 1024) < 0 ||
	    ext2fs_le16_to_cpu(sb.s_magic) != EXT2_SUPER_MAGIC) {
		*why = "no ext2/3/4 file system";
		return -ENOTSUP;
	}
	if (!(ext2fs_le16_to_cpu(sb.s_state) & EXT2_VALID_FS) ||
	    (ext2fs_le16_to_cpu(sb.s_state) & EXT2_ERROR_FS) ||
	    (ext2fs_le32_to_cpu(sb.s_feature_incompat) & EXT3_FEATURE_INCOMPAT_RECOVER)) {
		*why = "the ext file system was not cleanly unmounted (mounted elsewhere, or its "
		       "journal needs recovery): its bitmaps cannot be trusted";
		return -ENOTSUP;
	}
	snprintf(name, sizeof(name), "hotsnap:%p", (void *)&rd);
	if (ext2fs_open2(name, NULL, EXT2_FLAG_64BITS | EXT2_FLAG_IGNORE_CSUM_ERRORS, 0, 0,
			 &snap_io_manager, &fs)) {
		*why = "libext2fs could not open the file system";
		return -ENOTSUP;
	}
	if (ext2fs_read_block_bitmap(fs)) {
		ext2fs_close_free(&fs);
		*why = "libext2fs could not read the block bitmaps";
		return -ENOTSUP;
	}
	r = bitmap_init(used, nchunks, false);
	if (r < 0)
		goto out;
	uint64_t bs = (uint64_t)fs->blocksize;
	blk64_t first = fs->super->s_first_data_block;
	blk64_t last = ext2fs_blocks_count(fs->super) - 1;
	/* the boot area before the first data block belongs to the image too */
	r = mark(used, size, chunk_shift, 0, first * bs + 1024 + sizeof(sb));
	for (blk64_t b = first; r == 0 && b <= last;) {
		blk64_t set, clear;
		if (ext2fs_find_first_set_block_bitmap2(fs->block_map, b, last, &set))
			break; /* nothing more in use */
		if (ext2fs_find_first_zero_block_bitmap2(fs->block_map, set, last, &clear))
			clear = last + 1;
		r = mark(used, size, chunk_shift, set * bs, (clear - set) * bs);
		b = clear;
	}
	if (r < 0)
		bitmap_destroy(used);
out:
	ext2fs_close_free(&fs);
	if (r < 0)
		*why = "out of memory";
	return r;
}
