#!/bin/bash
# snapshot revert (issue 13), on ext4 with fio's verify:
#  1. files and a fio verify file are made, snapshot s1 is taken (frozen);
#     then fio rewrites its file with another pattern, files are deleted
#     and new ones written, and snapshot s2 is taken in between;
#  2. revert is refused while the volume is attached, and changes nothing,
#     and while an NBD client has it open (so is a restore);
#  3. after unmount and detach, revert to s1 writes back only what changed
#     (well under the volume's size); mounted again, e2fsck is clean, every
#     file of s1 is back with its sums, the new ones are gone, and fio
#     --verify_only passes on its s1 pattern;
#  4. s2, taken between, still reads exactly as before the revert;
#  5. a consuming backup of the attached s2 says it consumed nothing; once
#     detached and consumed in part, a revert to it is refused with the reason.
# While the revert of 3 runs (held at a test pause point), it has the volume
# alone: an NBD client is refused, saying why, and so is an open of its
# FUSE file.
. "$(dirname "$0")/lib.sh"
require_block
require mkfs.ext4 e2fsck fio qemu-img
setup
start_daemon

make_ext4_volume vol0 256M --diff-limit 256M
fill_files "$VOL_MNT/keep" 30
fio --name=v --filename="$VOL_MNT/fio.dat" --size=32M --rw=write --bs=64k --verify=crc32c --verify_state_save=0 \
    --verify_pattern=0x51 --do_verify=1 --output=/dev/null || fail "fio could not write its file"
sync
sums_s1=$(tree_sums "$VOL_MNT")
hs snapshot create vol0 --name s1 >/dev/null

# 1. changes after s1, with s2 in the middle of them
rm -rf "$VOL_MNT/keep/"*5*
fill_files "$VOL_MNT/new" 10
sync
hs snapshot create vol0 --name s2 >/dev/null
s2dev=$(hs snapshot attach vol0@s2)
s2_sum=$(sha_dev "$s2dev")
fio --name=v --filename="$VOL_MNT/fio.dat" --size=32M --rw=randwrite --bs=4k --verify=crc32c --verify_state_save=0 \
    --verify_pattern=0xa7 --do_verify=1 --number_ios=2000 --output=/dev/null ||
    fail "fio could not rewrite its file"
sync
[ "$(tree_sums "$VOL_MNT")" != "$sums_s1" ] || fail "nothing changed after s1: the test tests nothing"

# 2. not while attached
umount "$VOL_MNT"
before=$(sha_dev "$VOL_DEV")
expect_fail 1 "volume 'vol0' is attached as .*: unmount and detach it first" hs snapshot revert vol0@s1
[ "$(sha_dev "$VOL_DEV")" = "$before" ] || fail "a refused revert changed the volume"
hs volume detach vol0

# ... nor while an NBD client holds the volume
mkfifo "$T/hold"
/usr/bin/python3 -c '
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
print("connected", flush=True)
open(sys.argv[2]).read()
' "nbd+unix:///vol0?socket=$STATE/nbd.sock" "$T/hold" >"$T/nbd.out" &
holder=$!
BG_PIDS+=("$holder")
for i in $(seq 200); do grep -q connected "$T/nbd.out" && break; sleep 0.05; done
expect_fail 1 "volume 'vol0' is served to 1 NBD client" hs snapshot revert vol0@s1
truncate -s 256M "$T/blank.raw"   # nor a restore over it
expect_fail 1 "volume 'vol0' is served to 1 NBD client" hs restore "$T/blank.raw" --to vol0
echo >"$T/hold"; wait "$holder" 2>/dev/null || true; bg_forget "$holder"

# 3. revert to s1, held once under way: nobody may connect meanwhile
fuse_file=$(hs --json status | json_eval 'v["volumes"][0]["fuse_file"]')
hold_arm revert
hs --json snapshot revert vol0@s1 >"$T/revert.json" &
reverter=$!
BG_PIDS+=("$reverter")
hold_wait revert
# (qemu prints the reason the server gave; nbdinfo only the error code)
expect_fail 1 "being reverted to a snapshot; connect after the revert ends" \
    qemu-img info "nbd+unix:///vol0?socket=$STATE/nbd.sock"
/usr/bin/python3 -c '
import errno, os, sys
try:
    os.close(os.open(sys.argv[1], os.O_RDWR))
except OSError as e:
    sys.exit(0 if e.errno == errno.EBUSY else 2)
sys.exit(1)
' "$fuse_file" || fail "the FUSE file of a volume under revert opened, or failed otherwise than EBUSY ($?)"
hold_release
wait "$reverter" || fail "snapshot revert failed: $(cat "$T/revert.json")"
bg_forget "$reverter"
out=$(cat "$T/revert.json")
changed=$(echo "$out" | json_get '["changed_bytes"]')
[ "$changed" -gt 0 ] && [ "$changed" -lt $((64 << 20)) ] ||
    fail "revert wrote back $changed bytes; only what changed since s1 was expected: $out"
VOL_DEV=$(hs volume attach vol0)
e2fsck -fn "$VOL_DEV" >"$T/fsck.log" 2>&1 || fail "e2fsck after the revert: $(tail -5 "$T/fsck.log")"
mount -o nodiscard "$VOL_DEV" "$VOL_MNT"
[ "$(tree_sums "$VOL_MNT")" = "$sums_s1" ] || fail "the files after the revert are not those of s1"
[ -e "$VOL_MNT/new" ] && fail "files written after s1 survived the revert"
fio --name=v --filename="$VOL_MNT/fio.dat" --size=32M --rw=write --bs=64k --verify=crc32c --verify_state_save=0 \
    --verify_pattern=0x51 --verify_only --output="$T/fio.out" || fail "fio --verify_only after the revert: $(tail -5 "$T/fio.out")"

# 4. s2 unchanged
[ "$(sha_dev "$s2dev")" = "$s2_sum" ] || fail "s2 changed when the volume was reverted to s1"
grep -q "event snapshot.reverted: volume vol0 reverted to vol0@s1" "$STATE/../daemon.log" ||
    fail "no snapshot.reverted event in the log"

# 5. a consumed snapshot cannot be reverted to
umount "$VOL_MNT"
hs volume detach vol0
# (not while it is attached: then the backup says it consumed nothing)
out=$(hs backup vol0@s2 -o "$T/s2a.raw" --consume --no-progress) || fail "backup of attached s2 failed"
echo "$out" | grep -q "not consumed: the snapshot is also attached" ||
    fail "a consuming backup of an attached snapshot did not say it consumed nothing: $out"
[ "$(sha_dev "$s2dev")" = "$s2_sum" ] || fail "a backup that did not consume changed s2"
rm -f "$T/s2a.raw"
hs snapshot detach vol0@s2
hs backup vol0@s2 -o "$T/s2.raw" --consume --no-progress >/dev/null
expect_fail 1 "a backup consumed part of the snapshot" hs snapshot revert vol0@s2
log "revert: only the changes written back, ext4 clean, files and fio pattern of s1 back, s2 untouched"
