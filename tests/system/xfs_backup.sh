#!/bin/bash
# XFS on a volume: a frozen snapshot with its GETFSMAP map, writes during
# the backup, and an image that xfs_repair -n finds clean and whose files
# match the frozen ones.  A frozen XFS keeps a dirty log on this kernel (a
# plain dd of the frozen device shows the same), so the image's log is
# replayed by mounting it once before xfs_repair -n, as after a crash.
. "$(dirname "$0")/lib.sh"
require_block
require mkfs.xfs xfs_repair
setup
start_daemon

hs volume create vol0 --backing "$T/vol0.img" --size 1G --diff-limit 1G >/dev/null
dev=$(hs volume attach vol0)
mkfs.xfs -q -f "$dev"
mkdir "$T/mnt"
mount "$dev" "$T/mnt"
fill_files "$T/mnt/data" 20 64
ref=$(tree_sums "$T/mnt")
out=$(hs --json snapshot create vol0)
snap=$(echo "$out" | json_get '["snapshots"][0]')
log "map: $(echo "$out" | json_get '["maps"][0]["source"]'), used $(( $(echo "$out" | json_get '["maps"][0]["used_bytes"]') / 1048576 )) MiB"
bg bash -c "while :; do dd if=/dev/urandom of='$T/mnt/data/big' bs=64k count=16 seek=\$((RANDOM % 500)) conv=notrunc status=none; head -c 200000 /dev/urandom > '$T/mnt/n\$RANDOM'; sync; done"
hs backup "$snap" -o "$T/image.raw" --rate 100 --no-progress >/dev/null
stop_bg
mkdir "$T/img"
mount -o loop,nouuid "$T/image.raw" "$T/img"     # replays the log
umount "$T/img"
xfs_repair -n -f "$T/image.raw" >"$T/repair.log" 2>&1 || fail "xfs_repair -n: $(tail -5 "$T/repair.log")"
mount -o ro,loop,nouuid "$T/image.raw" "$T/img"
[ "$(tree_sums "$T/img")" = "$ref" ] || fail "files in the image differ from the frozen ones"
umount "$T/img"
