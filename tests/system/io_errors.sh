#!/bin/bash
# I/O errors around a volume.
#  1. The diff dir on a tiny file system that fills up: the snapshot fails
#     naming the diff file and "No space", and the volume's writes go on
#     with no error (fio verifies them).
#  2. The backing on a loop device that starts failing (a sparse file on a
#     tiny tmpfs: writes past its room fail): the writer gets EIO, the
#     daemon stays up, data written before still reads back.
#  3. The backing file removed under a running daemon: the volume keeps
#     working (the daemon holds it open); after a restart the volume is
#     reported unavailable with the reason, and commands on it say so.
. "$(dirname "$0")/lib.sh"
require_block
require fio mkfs.ext4
setup
start_daemon
MiB=$((1024 * 1024))

# 1. a diff dir with 2 MiB of room, a diff limit of 64 MiB, a 1 MiB buffer
mkdir "$T/tiny"
mount -t tmpfs -o size=2m tmpfs "$T/tiny"
hs volume create a --backing "$T/a.img" --size 64M --diff-dir "$T/tiny" --diff-limit 64M \
    --cow-buffer 1M >/dev/null
da=$(hs volume attach a)
dd if=/dev/urandom of="$da" bs=1M count=64 oflag=direct status=none
hs snapshot create a --no-freeze >/dev/null
fio --name=v --filename="$da" --rw=randwrite --bs=64k --size=64M --direct=1 --ioengine=libaio \
    --iodepth=8 --verify=crc32c --verify_fatal=1 --do_verify=1 --verify_state_save=0 \
    --output="$T/fio.log" || fail "fio failed on the volume: $(tail -3 "$T/fio.log")"
grep -qE "err= *0" "$T/fio.log" || fail "fio: $(grep err= "$T/fio.log")"
st=$(hs --json snapshot list | json_get '["snapshots"][0]["state"]')
reason=$(hs --json snapshot list | json_get '["snapshots"][0]["reason"]')
[ "$st" = failed ] || fail "the snapshot did not fail when its diff dir filled up ($st)"
grep -q "diff file.*No space" <<<"$reason" || fail "the reason does not say the diff dir is full: $reason"
log "diff dir full: $reason"
hs snapshot delete a@snap1
hs volume detach a >/dev/null

# 2. a backing device that fails: a 32 MiB loop device over a sparse file
#    on a 8 MiB tmpfs
mkdir "$T/small"
mount -t tmpfs -o size=8m tmpfs "$T/small"
truncate -s 32M "$T/small/backing"
bdev=$(losetup -f --show "$T/small/backing")
hs volume create b --backing "$bdev" >/dev/null
db=$(hs volume attach b)
head -c $((4 * MiB)) /dev/urandom >"$T/first"
dd if="$T/first" of="$db" bs=1M oflag=direct status=none || fail "the first 4 MiB could not be written"
rc=0
dd if=/dev/urandom of="$db" bs=1M count=24 seek=4 oflag=direct status=none 2>"$T/dd.err" || rc=$?
[ "$rc" != 0 ] || fail "writes past the backing's room succeeded"
grep -qiE "Input/output error|No space" "$T/dd.err" || fail "the writer did not get EIO/ENOSPC: $(cat "$T/dd.err")"
hs status >/dev/null || fail "the daemon is not answering after origin errors"
cmp -n $((4 * MiB)) "$T/first" <(dd if="$db" iflag=direct bs=1M count=4 status=none) ||
    fail "data written before the errors does not read back"
hs volume detach b >/dev/null

# 3. a backing file removed under the daemon
hs volume create c --backing "$T/c.img" --size 16M >/dev/null
dc=$(hs volume attach c)
dd if=/dev/urandom of="$dc" bs=1M count=16 oflag=direct status=none
rm "$T/c.img"
dd if=/dev/zero of="$dc" bs=1M count=1 oflag=direct status=none || fail "the volume stopped working when its file was removed"
hs volume detach c >/dev/null
stop_daemon
start_daemon
c_state=$(hs --json volume list | json_eval '[x for x in v["volumes"] if x["name"] == "c"][0]["state"]')
c_error=$(hs --json volume list | json_eval '[x for x in v["volumes"] if x["name"] == "c"][0].get("error", "")')
[ "$c_state" = error ] || fail "the volume with a removed backing is not reported ($c_state)"
grep -q "No such file" <<<"$c_error" || fail "the reason does not say the file is missing: $c_error"
expect_fail 1 "not available.*No such file" hs volume attach c
hs volume remove c
hs volume remove a   # its diff file lives in $T/tiny
hs volume remove b   # its backing is $bdev
umount "$T/tiny"
losetup -d "$bdev"
umount "$T/small"
log "diff dir full, origin errors and a removed backing all handled"
