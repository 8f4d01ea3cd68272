/* tracker_format.h - the change map file of a volume, on disk.
 *
 * All integers little-endian (the structs below are the bytes on disk;
 * a big-endian build is refused at compile time).  The file is a heartbeat block, two header
 * slots and a row of areas:
 *
 *   [0, 4 KiB)                 heartbeat: the origin's stamp and the wall
 *                              clock, rewritten about once a second while
 *                              the origin changes
 *   [4 KiB, 4 KiB + SLOT)      header slot 0
 *   [.. + SLOT, .. + 2 SLOT)   header slot 1
 *   TRACKER_AREA0 + i * area   area i: one bit per region of the volume
 *
 * A header is written whole into the slot its sequence number picks, with a
 * checksum; the valid slot with the higher sequence is the header.  So a
 * torn header write leaves the previous one.
 *
 * The header names the live area (regions written in the live generation;
 * a bit is on disk before the first write to its region reaches the
 * origin), a spare area (zeroed on disk before the header naming it was
 * written; it becomes the live area at the next generation boundary,
 * before the header says so), the deltas (areas holding the regions
 * written in a range of closed generations) and the bookmarks.  Reading
 * after a crash: live = live area OR spare area (the spare holds the
 * writes of a generation whose boundary never reached the header; counting
 * them in the older one over-reports, which is allowed). */
#ifndef HS_TRACKER_FORMAT_H
#define HS_TRACKER_FORMAT_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#define TRACKER_MAGIC "HSTRACK1"
#define TRACKER_HB_MAGIC "HSHEART1"
#define TRACKER_VERSION 1
#define TRACKER_HB_SIZE 4096
#define TRACKER_SLOT_SIZE (16 * 1024)
#define TRACKER_AREA0 (TRACKER_HB_SIZE + 2 * TRACKER_SLOT_SIZE)
#define TRACKER_PAGE 4096 /* areas are written in pages */
#define TRACKER_NO_AREA UINT32_MAX
#define TRACKER_MAX_BOOKMARKS 64
#define TRACKER_MAX_DELTAS (TRACKER_MAX_BOOKMARKS + 64 + 2)
#define TRACKER_NAME_MAX 64
#define TRACKER_REASON_MAX 256

struct tracker_disk_stamp {
	uint64_t size;
	uint64_t mtime_ns;
	uint64_t ctime_ns;
};

/* A block device's own write counter at the clean close (dev_stamp's boot
 * and written), since its times do not change when it is written.  Added
 * after the first files were made: their headers end before it
 * (TRACKER_HEADER_LEN_1) and read as zeros here, "not recorded". */
struct tracker_disk_iostamp {
	uint64_t boot;    /* which boot the count is of; 0: none recorded */
	uint64_t written; /* 512-byte sectors written and discarded in that boot */
};

struct tracker_disk_heartbeat {
	char magic[8];
	uint32_t crc; /* crc32 of the block with this field zero */
	uint32_t pad;
	uint64_t seq;
	uint64_t wall_ns;
	struct tracker_disk_stamp stamp;
};

struct tracker_disk_delta {
	uint32_t area;
	uint32_t pad;
	uint64_t gen_from; /* regions written in generations [gen_from, gen_to) */
	uint64_t gen_to;
};

struct tracker_disk_bookmark {
	char name[TRACKER_NAME_MAX + 1];
	uint8_t pad[7];
	uint64_t gen;        /* changes since the bookmark: generations >= gen */
	uint64_t instant_ns; /* wall clock of its snapshot */
	uint64_t created_ns; /* when the backup that left it ended */
};

struct tracker_disk_header {
	char magic[8];
	uint32_t version;
	uint32_t crc; /* crc32 of the slot's first header_len bytes, this field zero */
	uint64_t seq;
	uint32_t header_len;
	uint32_t clean;        /* 1: closed cleanly, stamp taken after the last write */
	uint8_t epoch[16];     /* this tracking's identity: new whenever it starts over */
	uint64_t volume_size;
	uint32_t chunk_shift;
	uint32_t region_shift;
	uint64_t gen;          /* the live generation */
	uint32_t live_area;
	uint32_t spare_area;
	uint64_t epoch_ns;     /* when this tracking started */
	struct tracker_disk_stamp stamp; /* the origin at the clean close */
	char lost_reason[TRACKER_REASON_MAX]; /* why the tracking before this one ended */
	uint64_t lost_ns;
	uint32_t ndeltas;
	uint32_t nbookmarks;
	struct tracker_disk_delta deltas[TRACKER_MAX_DELTAS];
	struct tracker_disk_bookmark bookmarks[TRACKER_MAX_BOOKMARKS];
	struct tracker_disk_iostamp io; /* the origin device at the clean close */
};
/* The length of a header written before io was added. */
#define TRACKER_HEADER_LEN_1 offsetof(struct tracker_disk_header, io)

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the map file is little-endian");
static_assert(sizeof(struct tracker_disk_heartbeat) <= TRACKER_HB_SIZE, "heartbeat block");
static_assert(sizeof(struct tracker_disk_header) <= TRACKER_SLOT_SIZE, "header slot");
static_assert(sizeof(struct tracker_disk_bookmark) == 96, "bookmark record");
static_assert(sizeof(struct tracker_disk_delta) == 24, "delta record");
static_assert(TRACKER_HEADER_LEN_1 == 9648, "the first header's length, as files hold it");

#endif
