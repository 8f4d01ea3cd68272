#!/bin/bash
# Looking inside backups: `image info` shows a chain and what each image
# holds; `image attach` serves the top of a qcow2 chain read-only as a loop
# device (mounted: the files are those of the snapshot's instant) and as an
# NBD export (nbdcopy reads the chain's bytes); a mounted image refuses to
# detach.  Damaged images are refused with one line by info, attach and
# restore, and nothing is left behind.
. "$(dirname "$0")/lib.sh"
require_block
require mkfs.ext4 qemu-img nbdinfo nbdcopy
setup
start_daemon

make_ext4_volume vol0 128M
fill_files "$VOL_MNT/data" 10 8
sync
hs snapshot create vol0 --name s1 >/dev/null
hs backup vol0@s1 -o "$T/full.qcow2" --format qcow2 --no-progress >/dev/null
rm "$VOL_MNT/data/file3"
head -c 500000 /dev/urandom >"$VOL_MNT/data/added"
sync
want=$(tree_sums "$VOL_MNT/data")
hs snapshot create vol0 --name s2 >/dev/null
hs backup vol0@s2 -o "$T/inc.qcow2" --incremental "$T/full.qcow2" --no-progress >/dev/null

# image info, with no daemon needed
info=$("$HOTSNAP" image info "$T/inc.qcow2")
grep -q "backed by $T/full.qcow2" <<<"$info" || fail "image info does not show the chain: $info"
grep -q "incremental of volume vol0.*bookmark vol0#s2" <<<"$info" || fail "image info: $info"
[ "$("$HOTSNAP" --json image info "$T/inc.qcow2" | json_get '["depth"]')" = 2 ] ||
    fail "image info --json does not give the chain's depth"

# attached: a read-only device with the snapshot's files
dev=$(hs image attach "$T/inc.qcow2")
[ "$(blockdev --getro "$dev")" = 1 ] || fail "the attached image $dev is not read-only"
mkdir "$T/m"
mount -o ro,noload "$dev" "$T/m"
[ "$(tree_sums "$T/m/data")" = "$want" ] || fail "the attached image does not hold the snapshot's files"
expect_fail 1 "is mounted at" hs image detach inc
expect_fail 1 "attached already" hs image attach "$T/inc.qcow2"

# over NBD
sock=$STATE/nbd.sock
nbdinfo --list "nbd+unix:///?socket=$sock" | grep -q "image:inc" || fail "nbdinfo --list has no image:inc"
nbdcopy "nbd+unix:///image:inc?socket=$sock" "$T/inc.raw"
qemu-img compare -f raw "$T/inc.raw" -F qcow2 "$T/inc.qcow2" >/dev/null ||
    fail "nbdcopy of image:inc differs from the chain"
umount "$T/m"
hs image detach inc
[ "$(hs --json image list | json_eval 'len(v["images"])')" = 0 ] || fail "image list still shows it"
log "image info shows the chain; attached, it mounts with the snapshot's files and reads over NBD"

# damaged images: one line each, nothing left attached or created
head -c 50000 "$T/full.qcow2" >"$T/cut.qcow2"
cp "$T/full.qcow2" "$T/v9.qcow2"
printf '\x00\x00\x00\x09' | dd of="$T/v9.qcow2" bs=1 seek=4 conv=notrunc status=none
cp "$T/inc.qcow2" "$T/moved.qcow2"
mkdir "$T/elsewhere"
mv "$T/moved.qcow2" "$T/elsewhere/"
for bad in "$T/cut.qcow2:outside the file|damaged|past the end" "$T/v9.qcow2:version 9" \
           "$T/elsewhere/moved.qcow2:cannot open $T/elsewhere/full.qcow2"; do
    f=${bad%%:*}
    words=${bad#*:}
    expect_fail 1 "$words" "$HOTSNAP" image info "$f"
    expect_fail 1 "$words" hs image attach "$f" --name bad
    expect_fail 1 "$words" hs restore "$f" --new bad --backing "$T/bad.img"
done
[ ! -e "$T/bad.img" ] || fail "a refused restore left a backing file"
[ "$(hs --json volume list | json_eval 'len(v["volumes"])')" = 1 ] || fail "a refused restore left a volume"
[ "$(hs --json image list | json_eval 'len(v["images"])')" = 0 ] || fail "a refused attach left an image"
log "damaged and broken-chain images refused with one line by info, attach and restore"
