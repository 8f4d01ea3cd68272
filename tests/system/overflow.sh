#!/bin/bash
# Overflow: a snapshot whose diff store fills fails; the volume's writes do
# not.  ext4 on a 256M volume with a 4M --diff-limit, a snapshot of every
# block, then fio writes (and verifies) 64M: fio must see no error, the
# snapshot must be "failed" with a reason naming the diff limit, and every way
# of reading it (backup, attach, NBD) must refuse, with that reason where
# there is a message.  The origin stays exact and its ext4 clean; deleting
# the snapshot empties the diff store and a new snapshot works again.
. "$(dirname "$0")/lib.sh"
require_block
require mkfs.ext4 e2fsck fio nbdcopy nbdinfo
setup
start_daemon

make_ext4_volume vol0 256M --diff-limit 4M
limit=$((4 * 1024 * 1024))
# fio's file holds data before the snapshot (an original of zeros is a
# zero record, which costs the diff store nothing), and --all-blocks
# protects every chunk: every first overwrite needs a copy, the 4M go quickly
dd if=/dev/urandom of="$VOL_MNT/f" bs=1M count=64 status=none
sync
snap=$(hs snapshot create vol0 --name s --all-blocks)
[ "$snap" = vol0@s ] || fail "snapshot create printed '$snap'"

(cd "$T" && fio --name=v --filename="$VOL_MNT/f" --size=64M --rw=randwrite --bs=4k \
    --direct=1 --ioengine=libaio --iodepth=16 --verify=crc32c --verify_fatal=1 \
    --do_verify=1 --verify_state_save=0 --output="$T/fio.log") ||
    fail "fio failed while the snapshot overflowed: $(grep -iE 'err|verify' "$T/fio.log" | head -5)"
grep -q 'err= 0' "$T/fio.log" || fail "fio reports an error: $(grep -m1 'err=' "$T/fio.log")"

# the snapshot: failed, and the reason names the limit
hs --json snapshot list >"$T/snaps.json"
state=$(json_get '["snapshots"][0]["state"]' <"$T/snaps.json")
reason=$(json_get '["snapshots"][0]["reason"]' <"$T/snaps.json")
[ "$state" = failed ] || fail "after 64M of writes past a 4M diff limit, vol0@s is '$state', not failed"
grep -q "diff limit" <<<"$reason" || fail "the failure reason does not mention the diff limit: '$reason'"
cow=$(json_get '["snapshots"][0]["cow_bytes"]' <"$T/snaps.json")
[ "$cow" -ge "$limit" ] || fail "the snapshot failed after copying only $cow bytes (limit $limit)"
hs snapshot list | grep "^vol0@s " | grep -q "failed.*diff limit" ||
    fail "snapshot list does not show vol0@s as failed with its reason: $(hs snapshot list)"
hs status | grep -q "snapshot vol0@s: failed: .*diff limit" ||
    fail "status does not show vol0@s as failed with its reason"
# and the event stream said so as it happened, after the levels on the way up
events=$(hs events --recent 100 --no-follow)
grep -q "snapshot.failed .*vol0@s failed: .*diff limit" <<<"$events" ||
    fail "no snapshot.failed event with the reason: $events"
grep -q "diff.level .*past 95%" <<<"$events" || fail "no 95% level event before the overflow: $events"

# nothing reads it any more; each refusal gives the reason
expect_fail 1 "vol0@s failed: .*diff limit" hs backup vol0@s -o "$T/img.raw" --no-progress
[ ! -e "$T/img.raw" ] || fail "a refused backup left $T/img.raw behind"
expect_fail 1 "vol0@s failed: .*diff limit" hs snapshot attach vol0@s
uri="nbd+unix:///vol0@s?socket=$STATE/nbd.sock"
if nbdcopy "$uri" "$T/nbd.raw" 2>"$T/nbdcopy.err"; then
    fail "nbdcopy read the failed snapshot over NBD"
fi
nbdinfo --list "nbd+unix:///?socket=$STATE/nbd.sock" >"$T/exports" 2>&1 ||
    fail "nbdinfo --list failed: $(tail -2 "$T/exports")"
grep -q 'export="vol0@s"' "$T/exports" && fail "NBD still lists the failed snapshot vol0@s"
grep -q 'export="vol0"' "$T/exports" || fail "NBD no longer lists the volume: $(cat "$T/exports")"

# the origin took every write: exact on its backing file, and a clean ext4
umount "$VOL_MNT"
[ "$(sha_dev "$VOL_DEV")" = "$(sha_dev "$T/vol0.img")" ] ||
    fail "the volume reads differently from its backing file"
e2fsck -fn "$VOL_DEV" >"$T/fsck.log" 2>&1 || fail "e2fsck after the overflow: $(tail -5 "$T/fsck.log")"

# deleting the failed snapshot empties the diff store
hs snapshot delete vol0@s
[ "$(hs --json snapshot list | json_get '["snapshots"].__len__()')" = 0 ] ||
    fail "vol0@s is still listed after delete"
hs --json status >"$T/status.json"
diff_bytes=$(json_get '["volumes"][0]["diff_bytes"]' <"$T/status.json")
[ "$diff_bytes" = 0 ] || fail "diff_bytes is $diff_bytes after the failed snapshot was deleted"

# and the next snapshot works: small changes fit, the backup is exact
ref=$(sha_dev "$VOL_DEV")
hs snapshot create vol0 --name again --all-blocks >/dev/null
dd if=/dev/urandom of="$VOL_DEV" bs=4k count=64 seek=1000 oflag=direct status=none
hs backup vol0@again -o "$T/again.raw" --no-progress >/dev/null
[ "$(sha_file "$T/again.raw")" = "$ref" ] || fail "a snapshot after the overflow is not exact"
[ "$(hs --json snapshot list | json_get '["snapshots"][0]["state"]')" = active ] ||
    fail "the snapshot after the overflow is not active"
hs snapshot delete vol0@again
log "overflow failed the snapshot ($reason); fio verified, e2fsck clean, diff store empty"
