#!/bin/bash
# mkfs.ext4 through the loop device (direct I/O on the FUSE file, many
# requests in flight) must give exactly the bytes mkfs.ext4 gives on a plain
# file.  A FUSE server that shares one buffer between requests fails this.
. "$(dirname "$0")/lib.sh"
require_block
require mkfs.ext4
setup
start_daemon

size=$((768 * 1024 * 1024))
hs volume create vol0 --backing "$T/vol0.img" --size $size >/dev/null
dev=$(hs volume attach vol0)
[ "$(cat "/sys/block/${dev#/dev/}/loop/dio")" = 1 ] || fail "$dev does not use direct I/O"
truncate -s $size "$T/plain.img"

# The same file system twice: fixed UUID, hash seed and time.
opts=(-q -F -U 6f0d3c4e-5a1b-4c2d-9e8f-0123456789ab -E hash_seed=3c6f9d2e-1b4a-4e5f-8a7b-fedcba987654,lazy_itable_init=0,lazy_journal_init=0,nodiscard -b 4096)
E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 "${opts[@]}" "$dev"
E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 "${opts[@]}" "$T/plain.img"
a=$(sha_dev "$dev")
b=$(sha_file "$T/plain.img")
[ "$a" = "$b" ] || { cmp -l <(dd if="$dev" iflag=direct bs=1M status=none) "$T/plain.img" | head -5; fail "mkfs through hotsnap differs from mkfs on a plain file"; }
log "identical: $a"
