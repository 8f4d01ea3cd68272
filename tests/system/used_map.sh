#!/bin/bash
# Free blocks are neither copied nor backed up.  On a half-full ext4, a
# snapshot (frozen by hotsnap, map from GETFSMAP): a new 100 MiB file costs
# (almost) no copy-on-write, rewriting an existing 100 MiB file costs about
# 100 MiB; the backup reads about the used size, not the volume size, and
# the image is the same file system: e2fsck clean, every file identical.
. "$(dirname "$0")/lib.sh"
require_block
require mkfs.ext4 e2fsck
setup
start_daemon

MiB=$((1024 * 1024))
make_ext4_volume vol0 1G --diff-limit 1G
fill_files "$VOL_MNT/data" 30 200
dd if=/dev/urandom of="$VOL_MNT/old100" bs=1M count=100 status=none
sync
ref=$(tree_sums "$VOL_MNT")

out=$(hs --json snapshot create vol0)
snap=$(echo "$out" | json_get '["snapshots"][0]')
echo "$out" | json_get '["maps"][0]["source"]' | grep -q GETFSMAP ||
    fail "the snapshot has no GETFSMAP map: $(echo "$out" | json_get '["maps"][0]["source"]')"
used=$(echo "$out" | json_get '["maps"][0]["used_bytes"]')
log "used at the snapshot: $((used / MiB)) MiB of 1024"
[ "$used" -gt $((300 * MiB)) ] && [ "$used" -lt $((600 * MiB)) ] ||
    fail "used_bytes $used is not about the data written"

cow() { hs --json status | json_get '["snapshots"][0]["cow_bytes"]'; }
c0=$(cow)
dd if=/dev/urandom of="$VOL_MNT/new100" bs=1M count=100 conv=fsync status=none
c1=$(cow)
log "a new 100 MiB file copied $(( (c1 - c0) / 1024 )) KiB"
[ $((c1 - c0)) -lt $MiB ] || fail "a new file in free space copied $((c1 - c0)) bytes"
dd if=/dev/urandom of="$VOL_MNT/old100" bs=1M count=100 conv=notrunc,fsync status=none
c2=$(cow)
log "rewriting a 100 MiB file copied $(( (c2 - c1) / MiB )) MiB"
[ $((c2 - c1)) -ge $((95 * MiB)) ] && [ $((c2 - c1)) -le $((110 * MiB)) ] ||
    fail "rewriting 100 MiB in place copied $((c2 - c1)) bytes"

res=$(hs --json backup "$snap" -o "$T/image.raw" --no-progress)
read=$(echo "$res" | json_get '["bytes_read"]')
log "backup read $((read / MiB)) MiB of a 1024 MiB volume"
[ "$read" -le $((used + 4 * MiB)) ] || fail "the backup read $read bytes, more than the $used in use"
[ "$read" -ge $((300 * MiB)) ] || fail "the backup read only $read bytes"
e2fsck -fn "$T/image.raw" >"$T/fsck.log" 2>&1 || fail "e2fsck: $(tail -5 "$T/fsck.log")"
mkdir "$T/img"
mount -o ro,loop,noload "$T/image.raw" "$T/img"
[ "$(tree_sums "$T/img")" = "$ref" ] || fail "files in the image differ from the frozen ones"
umount "$T/img"
