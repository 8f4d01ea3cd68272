/* nbd_proto.h - the NBD wire format, as hotsnap speaks it.
 *
 * One header for every byte that crosses the socket: magics, option and
 * command numbers, flags, and the fixed-size messages as packed structs whose
 * multi-byte fields are big-endian on the wire (convert with be16toh() and
 * friends at the one place a field is read or written).  Sizes are checked
 * with static_assert so a layout mistake fails the build, not a client.
 *
 * The reference is doc/proto.md of the NetworkBlockDevice/nbd project.  Only
 * the fixed newstyle handshake is spoken, with TLS by NBD_OPT_STARTTLS
 * (nbd_tls.h); there is no oldstyle. */
#ifndef HS_NBD_PROTO_H
#define HS_NBD_PROTO_H

#include <assert.h>
#include <stdint.h>

/* --- handshake ------------------------------------------------------------ */

#define NBD_MAGIC UINT64_C(0x4e42444d41474943)          /* "NBDMAGIC" */
#define NBD_IHAVEOPT UINT64_C(0x49484156454F5054)       /* "IHAVEOPT" */
#define NBD_OPT_REPLY_MAGIC UINT64_C(0x0003e889045565a9)

/* handshake flags (server) */
#define NBD_FLAG_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_NO_ZEROES (1u << 1)
/* client flags */
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES (1u << 1)
#define NBD_FLAG_C_KNOWN (NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)

/* transmission flags */
#define NBD_FLAG_HAS_FLAGS (1u << 0)
#define NBD_FLAG_READ_ONLY (1u << 1)
#define NBD_FLAG_SEND_FLUSH (1u << 2)
#define NBD_FLAG_SEND_FUA (1u << 3)
#define NBD_FLAG_ROTATIONAL (1u << 4)
#define NBD_FLAG_SEND_TRIM (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN (1u << 8)
#define NBD_FLAG_SEND_CACHE (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO (1u << 11)

/* options */
#define NBD_OPT_EXPORT_NAME 1
#define NBD_OPT_ABORT 2
#define NBD_OPT_LIST 3
#define NBD_OPT_STARTTLS 5
#define NBD_OPT_INFO 6
#define NBD_OPT_GO 7
#define NBD_OPT_STRUCTURED_REPLY 8
#define NBD_OPT_LIST_META_CONTEXT 9
#define NBD_OPT_SET_META_CONTEXT 10

/* option replies */
#define NBD_REP_ACK 1
#define NBD_REP_SERVER 2
#define NBD_REP_INFO 3
#define NBD_REP_META_CONTEXT 4
#define NBD_REP_ERR(n) (UINT32_C(0x80000000) | (n))
#define NBD_REP_ERR_UNSUP NBD_REP_ERR(1)
#define NBD_REP_ERR_POLICY NBD_REP_ERR(2)
#define NBD_REP_ERR_INVALID NBD_REP_ERR(3)
#define NBD_REP_ERR_PLATFORM NBD_REP_ERR(4)
#define NBD_REP_ERR_TLS_REQD NBD_REP_ERR(5)
#define NBD_REP_ERR_UNKNOWN NBD_REP_ERR(6)
#define NBD_REP_ERR_SHUTDOWN NBD_REP_ERR(7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD NBD_REP_ERR(8)
#define NBD_REP_ERR_TOO_BIG NBD_REP_ERR(9)

/* NBD_REP_INFO types */
#define NBD_INFO_EXPORT 0
#define NBD_INFO_NAME 1
#define NBD_INFO_DESCRIPTION 2
#define NBD_INFO_BLOCK_SIZE 3

/* A string in the protocol: at most this many bytes (names, messages). */
#define NBD_MAX_STRING 4096

struct nbd_hello { /* S: after connect */
	uint64_t magic;      /* NBD_MAGIC */
	uint64_t opt_magic;  /* NBD_IHAVEOPT */
	uint16_t hs_flags;
} __attribute__((packed));
static_assert(sizeof(struct nbd_hello) == 18, "nbd_hello is 18 bytes");

struct nbd_option { /* C: each option */
	uint64_t magic;  /* NBD_IHAVEOPT */
	uint32_t option;
	uint32_t length; /* bytes of data that follow */
} __attribute__((packed));
static_assert(sizeof(struct nbd_option) == 16, "nbd_option is 16 bytes");

struct nbd_option_reply { /* S: each reply to an option */
	uint64_t magic;  /* NBD_OPT_REPLY_MAGIC */
	uint32_t option;
	uint32_t reply;  /* NBD_REP_* */
	uint32_t length;
} __attribute__((packed));
static_assert(sizeof(struct nbd_option_reply) == 20, "nbd_option_reply is 20 bytes");

struct nbd_export_name_reply { /* S: after NBD_OPT_EXPORT_NAME */
	uint64_t size;
	uint16_t tflags;
	uint8_t zeroes[124]; /* not sent with NBD_FLAG_C_NO_ZEROES */
} __attribute__((packed));
static_assert(sizeof(struct nbd_export_name_reply) == 134, "export name reply is 134 bytes");

struct nbd_info_export {
	uint16_t info; /* NBD_INFO_EXPORT */
	uint64_t size;
	uint16_t tflags;
} __attribute__((packed));
static_assert(sizeof(struct nbd_info_export) == 12, "NBD_INFO_EXPORT is 12 bytes");

struct nbd_info_block_size {
	uint16_t info; /* NBD_INFO_BLOCK_SIZE */
	uint32_t minimum;
	uint32_t preferred;
	uint32_t maximum;
} __attribute__((packed));
static_assert(sizeof(struct nbd_info_block_size) == 14, "NBD_INFO_BLOCK_SIZE is 14 bytes");

/* --- transmission --------------------------------------------------------- */

#define NBD_REQUEST_MAGIC UINT32_C(0x25609513)
#define NBD_SIMPLE_REPLY_MAGIC UINT32_C(0x67446698)
#define NBD_STRUCTURED_REPLY_MAGIC UINT32_C(0x668e33ef)

/* commands */
#define NBD_CMD_READ 0
#define NBD_CMD_WRITE 1
#define NBD_CMD_DISC 2
#define NBD_CMD_FLUSH 3
#define NBD_CMD_TRIM 4
#define NBD_CMD_CACHE 5
#define NBD_CMD_WRITE_ZEROES 6
#define NBD_CMD_BLOCK_STATUS 7

/* command flags */
#define NBD_CMD_FLAG_FUA (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE (1u << 1)
#define NBD_CMD_FLAG_DF (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4)

/* structured reply flags and chunk types */
#define NBD_REPLY_FLAG_DONE (1u << 0)
#define NBD_REPLY_TYPE_NONE 0
#define NBD_REPLY_TYPE_OFFSET_DATA 1
#define NBD_REPLY_TYPE_OFFSET_HOLE 2
#define NBD_REPLY_TYPE_BLOCK_STATUS 5
#define NBD_REPLY_TYPE_ERROR ((1u << 15) | 1)
#define NBD_REPLY_TYPE_ERROR_OFFSET ((1u << 15) | 2)

/* error values (not errno: see nbd_errno.c) */
#define NBD_SUCCESS 0
#define NBD_EPERM 1
#define NBD_EIO 5
#define NBD_ENOMEM 12
#define NBD_EINVAL 22
#define NBD_ENOSPC 28
#define NBD_EOVERFLOW 75
#define NBD_ENOTSUP 95
#define NBD_ESHUTDOWN 108

/* base:allocation */
#define NBD_STATE_HOLE (1u << 0)
#define NBD_STATE_ZERO (1u << 1)
/* hotsnap:changed: written on the volume since the snapshot */
#define NBD_STATE_CHANGED (1u << 0)

struct nbd_request {
	uint32_t magic; /* NBD_REQUEST_MAGIC */
	uint16_t flags;
	uint16_t type;
	uint64_t cookie;
	uint64_t offset;
	uint32_t length;
} __attribute__((packed));
static_assert(sizeof(struct nbd_request) == 28, "nbd_request is 28 bytes");

struct nbd_simple_reply {
	uint32_t magic; /* NBD_SIMPLE_REPLY_MAGIC */
	uint32_t error;
	uint64_t cookie;
} __attribute__((packed));
static_assert(sizeof(struct nbd_simple_reply) == 16, "nbd_simple_reply is 16 bytes");

struct nbd_chunk { /* header of every structured reply chunk */
	uint32_t magic; /* NBD_STRUCTURED_REPLY_MAGIC */
	uint16_t flags;
	uint16_t type;
	uint64_t cookie;
	uint32_t length; /* of the payload that follows */
} __attribute__((packed));
static_assert(sizeof(struct nbd_chunk) == 20, "nbd_chunk is 20 bytes");

struct nbd_chunk_hole {
	uint64_t offset;
	uint32_t length;
} __attribute__((packed));
static_assert(sizeof(struct nbd_chunk_hole) == 12, "OFFSET_HOLE payload is 12 bytes");

struct nbd_chunk_error { /* followed by the message */
	uint32_t error;
	uint16_t msg_len;
} __attribute__((packed));
static_assert(sizeof(struct nbd_chunk_error) == 6, "ERROR payload head is 6 bytes");

struct nbd_extent {
	uint32_t length;
	uint32_t flags;
} __attribute__((packed));
static_assert(sizeof(struct nbd_extent) == 8, "block status descriptor is 8 bytes");

#endif
