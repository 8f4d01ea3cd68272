#!/bin/bash
# A volume on a block device (a loop device of the test's own).  A device's
# times do not change when it is written, so the change tracking trusts it
# across a daemon's stop by the device's own write counter (within a boot):
#  1. stopped and started again with nothing written on the device: the
#     tracking is kept and an incremental from the last backup is taken;
#  2. stopped, its ext4 mounted straight from the device and a file
#     written (the device node's times do not move: the file system writes
#     below them), started: the tracking is lost, status says the device was
#     written while no daemon served it and how much, and the incremental is
#     refused with one line.
. "$(dirname "$0")/lib.sh"
require_block
require qemu-img mkfs.ext4
setup

truncate -s 64M "$T/disk.img"
DISK=$(losetup -f --show --direct-io=on "$T/disk.img") # cleanup detaches it: its file is in $T
start_daemon
hs volume create blk --backing "$DISK" >/dev/null
dev=$(hs volume attach blk)
mkfs.ext4 -q "$dev"
hs backup blk -o "$T/full.qcow2" --format qcow2 --no-progress >/dev/null || fail "the full backup failed"
hs volume detach blk

tracking() { hs --json status | json_get "[\"volumes\"][0][\"tracking\"][\"$1\"]"; }

# 1. nothing written while the daemon was down: kept
hs shutdown
DAEMON_PID=""
start_daemon
[ "$(tracking state)" != lost ] || fail "tracking lost though nothing wrote the device: $(tracking started_over_because)"
dev=$(hs volume attach blk)
dd if=/dev/urandom of="$dev" bs=4k count=16 seek=100 oflag=direct status=none
hs volume detach blk
out=$(hs --json backup blk -o "$T/inc1.qcow2" --format qcow2 --incremental "$T/full.qcow2" --no-progress) ||
    fail "the incremental after a clean restart failed: $out"
qemu-img check "$T/inc1.qcow2" >/dev/null || fail "qemu-img check of the incremental"

# 2. written straight on the device while the daemon was down: lost
hs shutdown
DAEMON_PID=""
before=$(stat -c %Y.%Z "$DISK")
mkdir "$T/m"
mount "$DISK" "$T/m"
head -c 1M /dev/urandom >"$T/m/written-while-down"
umount "$T/m"
[ "$(stat -c %Y.%Z "$DISK")" = "$before" ] || log "(the device node's times moved: a weaker test)"
start_daemon
[ "$(tracking state)" = lost ] || fail "the tracking survived a write on its device while no daemon ran"
why=$(tracking started_over_because)
grep -qE "backing device was written while no hotsnap daemon served it \([0-9.]+ [KMG]iB written" <<<"$why" ||
    fail "status does not say the device was written, and how much: $why"
expect_fail 1 "full backup is needed" \
    hs backup blk -o "$T/refused.qcow2" --format qcow2 --incremental "$T/inc1.qcow2" --no-progress
[ ! -e "$T/refused.qcow2" ] || fail "a refused incremental left an image"
log "block device backing: kept across a clean restart, lost (and said why) after a write while down"
