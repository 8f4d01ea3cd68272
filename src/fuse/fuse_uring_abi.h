/* fuse_uring_abi.h - the kernel's FUSE-over-io_uring interface (FUSE
 * protocol 7.42, Linux 6.14 and later), which Debian 12's <linux/fuse.h>
 * (7.38) predates.
 *
 * Copied from the protocol's description, not from a header: the layouts
 * below are the kernel's ABI, and the asserts at the bottom pin their sizes
 * and offsets so a typo cannot compile.
 *
 * How it is used (fuse_uring.c):
 *  - The daemon sets FUSE_OVER_IO_URING in the flags2 of its INIT reply
 *    (with FUSE_INIT_EXT) when the kernel offered it in the INIT request.
 *  - Each ring entry is an IORING_OP_URING_CMD on the /dev/fuse descriptor,
 *    in a ring set up with IORING_SETUP_SQE128 (the command block below
 *    lives in the SQE's cmd area).  sqe->addr points at two iovecs: the
 *    entry's header block and its payload buffer (at least max_write).
 *  - REGISTER hands an entry to queue qid (one queue per possible CPU;
 *    requests go to the queue of the CPU they were issued on).  Until every
 *    queue has an entry the kernel holds new requests; a REGISTER that fails
 *    turns the ring off for the connection (back to /dev/fuse).
 *  - The completion of a REGISTER or COMMIT_AND_FETCH is a request: the
 *    fuse_in_header in in_out, the opcode's fixed argument in op_in, the
 *    rest (write data, a name) at the start of the payload, its length in
 *    ring_ent_in_out.payload_sz.
 *  - The answer: a fuse_out_header (unique, error) in in_out, the reply's
 *    arguments at the start of the payload, their length in payload_sz;
 *    then COMMIT_AND_FETCH with the request's commit_id, which also waits
 *    for the next request on the same entry.
 *  - FORGET and INTERRUPT still travel over /dev/fuse.
 */
#ifndef HS_FUSE_URING_ABI_H
#define HS_FUSE_URING_ABI_H

#include <stddef.h>
#include <stdint.h>

/* fuse_init_in/out flags2 bit 9 (bit 41 of the 64-bit flags) */
#define HS_FUSE_OVER_IO_URING_FLAGS2 (1u << 9)
/* fuse_init flags bit 30: flags2 is valid */
#define HS_FUSE_INIT_EXT (1u << 30)

#define HS_FUSE_URING_IN_OUT_HEADER_SZ 128
#define HS_FUSE_URING_OP_IN_OUT_SZ 128
#define HS_FUSE_URING_IOV_SEGS 2

struct hs_fuse_uring_ent_in_out {
	uint64_t flags;
	uint64_t commit_id; /* to quote in the COMMIT_AND_FETCH answering it */
	uint32_t payload_sz;
	uint32_t padding;
	uint64_t reserved;
};

struct hs_fuse_uring_req_header {
	char in_out[HS_FUSE_URING_IN_OUT_HEADER_SZ]; /* fuse_in_header / fuse_out_header */
	char op_in[HS_FUSE_URING_OP_IN_OUT_SZ];	     /* the opcode's fixed argument */
	struct hs_fuse_uring_ent_in_out ring_ent_in_out;
};

enum hs_fuse_uring_cmd {
	HS_FUSE_IO_URING_CMD_INVALID = 0,
	HS_FUSE_IO_URING_CMD_REGISTER = 1,
	HS_FUSE_IO_URING_CMD_COMMIT_AND_FETCH = 2,
};

/* In the SQE's cmd area. */
struct hs_fuse_uring_cmd_req {
	uint64_t flags;
	uint64_t commit_id;
	uint16_t qid;
	uint8_t padding[6];
};

_Static_assert(sizeof(struct hs_fuse_uring_ent_in_out) == 32, "fuse_uring_ent_in_out");
_Static_assert(offsetof(struct hs_fuse_uring_ent_in_out, payload_sz) == 16, "payload_sz");
_Static_assert(sizeof(struct hs_fuse_uring_req_header) == 288, "fuse_uring_req_header");
_Static_assert(offsetof(struct hs_fuse_uring_req_header, ring_ent_in_out) == 256,
	       "ring_ent_in_out");
_Static_assert(sizeof(struct hs_fuse_uring_cmd_req) == 24, "fuse_uring_cmd_req");
_Static_assert(offsetof(struct hs_fuse_uring_cmd_req, qid) == 16, "qid");

#endif
