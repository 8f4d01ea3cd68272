/* qcow2_format.h - the qcow2 (version 3) on-disk format, as much of it as
 * hotsnap writes and reads.  Everything on disk is big-endian.  The facts
 * below are from docs/interop/qcow2.txt in QEMU and were checked against
 * qemu-img 7.2 (Debian 12); where QEMU is stricter than the text, QEMU's
 * rule is the one given.
 *
 * Layout hotsnap writes: cluster 0 holds the header, its extensions and the
 * backing file name; data follows from cluster 1 in the order it arrives
 * (compressed clusters packed byte by byte, normal clusters aligned); L2
 * tables are placed as their part of the image is done; the L1 table, the
 * refcount blocks and the refcount table come last, and the header is
 * written after everything else, so an interrupted writer leaves no valid
 * image. */
#ifndef HS_QCOW2_FORMAT_H
#define HS_QCOW2_FORMAT_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

#define QCOW2_MAGIC 0x514649fbu /* "QFI\xfb" */
#define QCOW2_VERSION 3
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_DEFAULT_CLUSTER_BITS 16
#define QCOW2_HEADER_V3_LEN 112 /* with compression_type and its padding */
#define QCOW2_HEADER_V2_LEN 72
#define QCOW2_MAX_L1_BYTES (UINT64_C(32) << 20) /* QEMU refuses larger L1 tables */
#define QCOW2_BACKING_MAX 1023
#define QCOW2_REFCOUNT_ORDER 4 /* 16-bit refcounts */

/* header field offsets */
enum {
	QH_MAGIC = 0,              /* u32 */
	QH_VERSION = 4,            /* u32 */
	QH_BACKING_OFFSET = 8,     /* u64, 0 = none; must lie in cluster 0 */
	QH_BACKING_SIZE = 16,      /* u32, no terminating NUL, at most 1023 */
	QH_CLUSTER_BITS = 20,      /* u32, 9..21 */
	QH_SIZE = 24,              /* u64, virtual size; QEMU rounds down to 512 */
	QH_CRYPT_METHOD = 32,      /* u32, 0 */
	QH_L1_SIZE = 36,           /* u32, entries */
	QH_L1_OFFSET = 40,         /* u64, cluster aligned */
	QH_REFTABLE_OFFSET = 48,   /* u64, cluster aligned */
	QH_REFTABLE_CLUSTERS = 56, /* u32, never 0 */
	QH_NB_SNAPSHOTS = 60,      /* u32 */
	QH_SNAPSHOTS_OFFSET = 64,  /* u64, cluster aligned even when unused: write 0 */
	QH_INCOMPATIBLE = 72,      /* u64 */
	QH_COMPATIBLE = 80,        /* u64 */
	QH_AUTOCLEAR = 88,         /* u64 */
	QH_REFCOUNT_ORDER = 96,    /* u32 */
	QH_HEADER_LENGTH = 100,    /* u32 */
	QH_COMPRESSION_TYPE = 104, /* u8, read only when header_length > 104 */
};

/* incompatible feature bits */
#define QCOW2_INCOMPAT_DIRTY (UINT64_C(1) << 0)
#define QCOW2_INCOMPAT_CORRUPT (UINT64_C(1) << 1)
#define QCOW2_INCOMPAT_DATA_FILE (UINT64_C(1) << 2)
#define QCOW2_INCOMPAT_COMPRESSION (UINT64_C(1) << 3) /* set iff compression_type != 0 */
#define QCOW2_INCOMPAT_EXTL2 (UINT64_C(1) << 4)

#define QCOW2_COMPRESSION_ZLIB 0 /* raw deflate, window bits -12 */
#define QCOW2_COMPRESSION_ZSTD 1 /* one zstd frame per cluster */

/* header extensions: u32 type, u32 length, data padded to 8 bytes; they end
 * with type 0 and must end before the backing file name */
#define QCOW2_EXT_END 0x00000000u
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau /* length < 16 */
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857u
#define QCOW2_EXT_HOTSNAP 0x48534e50u /* "HSNP": hotsnap's metadata; QEMU keeps unknown ones */

/* L1 entry: bits 9-55 the L2 table's offset, bit 63 COPIED */
#define QCOW2_OFLAG_COPIED (UINT64_C(1) << 63)
#define QCOW2_OFLAG_COMPRESSED (UINT64_C(1) << 62)
#define QCOW2_OFLAG_ZERO UINT64_C(1) /* standard L2 entry: reads as zeros */
#define QCOW2_L1E_OFFSET_MASK UINT64_C(0x00fffffffffffe00)
#define QCOW2_L1E_RESERVED_MASK UINT64_C(0x7f000000000001ff)
#define QCOW2_L2E_OFFSET_MASK UINT64_C(0x00fffffffffffe00)
#define QCOW2_L2E_STD_RESERVED_MASK UINT64_C(0x3f000000000001fe)
#define QCOW2_REFT_OFFSET_MASK UINT64_C(0xfffffffffffffe00)

/* Compressed L2 entry, x = 62 - (cluster_bits - 8): bits 0..x-1 the host
 * byte offset (any byte), bits x..61 the number of 512-byte sectors beyond
 * the one holding the offset.  QEMU reads [off, off + csize) with
 * csize = (nsect + 1) * 512 - (off & 511), and counts a reference on every
 * host cluster that range touches. */
static inline unsigned qcow2_csize_shift(unsigned cluster_bits)
{
	return 62 - (cluster_bits - 8);
}

static inline uint64_t qcow2_compressed_entry(unsigned cluster_bits, uint64_t off, uint64_t len)
{
	uint64_t nsect = ((off + len - 1) >> 9) - (off >> 9);
	return QCOW2_OFLAG_COMPRESSED | (nsect << qcow2_csize_shift(cluster_bits)) | off;
}

static inline void qcow2_parse_compressed(unsigned cluster_bits, uint64_t entry, uint64_t *off,
					  uint64_t *csize)
{
	unsigned x = qcow2_csize_shift(cluster_bits);
	uint64_t nsect = (entry >> x) & ((UINT64_C(1) << (cluster_bits - 8)) - 1);

	*off = entry & ((UINT64_C(1) << x) - 1);
	*csize = (nsect + 1) * 512 - (*off & 511);
}

static inline uint32_t qcow2_get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return be32toh(v);
}
static inline uint64_t qcow2_get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return be64toh(v);
}
static inline void qcow2_put32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}
static inline void qcow2_put64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

#endif
