#!/bin/bash
# The main path: a live ext4 volume full of files is frozen, hashed and
# snapshotted; then files are overwritten, deleted, created and trimmed while
# the backup runs.  The image must equal the frozen volume bit for bit and
# pass e2fsck; the snapshot, attached read-only, must mount and show every
# file as it was.
. "$(dirname "$0")/lib.sh"
require_block
require mkfs.ext4 e2fsck fsfreeze fstrim sha256sum
setup
start_daemon

make_ext4_volume vol0 512M --diff-limit 512M
fill_files "$VOL_MNT/data" 30 64
before=$(tree_sums "$VOL_MNT/data")

fsfreeze -f "$VOL_MNT"
ref=$(sha_dev "$VOL_DEV")
snap=$(hs snapshot create vol0 --no-freeze)
fsfreeze -u "$VOL_MNT"
[ "$snap" = "vol0@snap1" ] || fail "snapshot create printed '$snap', expected vol0@snap1"

churn() {
    local i=0
    while :; do
        dd if=/dev/urandom of="$VOL_MNT/data/big" bs=4k count=64 seek=$((RANDOM % 16000)) \
           conv=notrunc status=none
        rm -f "$VOL_MNT/data/file$((i % 30 + 1))"
        head -c 300000 /dev/urandom >"$VOL_MNT/new$i"
        fstrim "$VOL_MNT" 2>/dev/null || true
        sync
        i=$((i + 1))
    done
}
# copies made before the backup starts, scattered: its first pass takes them
# in diff-file order, and its block pass must leave them alone
for i in $(seq 16); do
    dd if=/dev/urandom of="$VOL_MNT/data/big" bs=4k count=8 seek=$(((i * 7919) % 16000)) \
       conv=notrunc status=none
done
sync
bg churn
hs backup "$snap" -o "$T/image.raw" --rate 60 --no-progress
stop_bg
hs --json status | json_get '["snapshots"][0]["cow_bytes"]' >"$T/cow"
[ "$(cat "$T/cow")" -gt 0 ] || fail "the writers caused no copy-on-write: the test tested nothing"

[ "$(sha_file "$T/image.raw")" = "$ref" ] || fail "the image differs from the frozen volume"
e2fsck -fn "$T/image.raw" >"$T/fsck.log" 2>&1 || fail "e2fsck on the image: $(tail -5 "$T/fsck.log")"

sdev=$(hs snapshot attach "$snap")
[ "$(blockdev --getro "$sdev")" = 1 ] || fail "the attached snapshot $sdev is not read-only"
mkdir "$T/snapmnt"
mount -o ro,noload "$sdev" "$T/snapmnt"
[ "$(tree_sums "$T/snapmnt/data")" = "$before" ] || fail "files in the snapshot differ"
umount "$T/snapmnt"
hs snapshot detach "$snap"
hs snapshot delete "$snap"
log "image == frozen volume ($ref), e2fsck clean, snapshot files match"
