#!/bin/bash
# The weekly fstrim must cost a snapshot nothing (issue 11, zeros cost
# nothing).  A 512 MiB XFS volume with ~100 MiB of files, 30 MiB of them
# deleted, then snapshots and fstrim, as fstrim.timer does it:
#  1. a --no-freeze snapshot (every block protected, no used map): two
#     fstrims 3 s apart copy at most the freed chunks that held data, and
#     the second costs no more than the first;
#  2. the same with an --all-blocks snapshot beside the first;
#  3. churn on top, and both snapshots survive the default diff limit;
#  4. both snapshots still read as the volume was at their instant (the
#     zero records read as zeros): backups equal the hashes taken then.
. "$(dirname "$0")/lib.sh"
require_block
require mkfs.xfs fstrim
setup
start_daemon

MiB=1048576
hs volume create vol0 --backing "$T/vol0.img" --size 512M >/dev/null
dev=$(hs volume attach vol0)
mkfs.xfs -q -f "$dev"
mkdir "$T/mnt"
mount "$dev" "$T/mnt"
fill_files "$T/mnt/keep" 20 64
fill_files "$T/mnt/gone" 10 24
du_gone=$(du -sb "$T/mnt/gone" | cut -f1)
rm -rf "$T/mnt/gone"
sync
fsfreeze -f "$T/mnt"; fsfreeze -u "$T/mnt"   # the log is written back: nothing moves below
log "backing file holds $(( $(du -B1 "$T/vol0.img" | cut -f1) / MiB )) MiB; deleted $((du_gone / MiB)) MiB"

snap_json() { hs --json snapshot list | json_eval "[s for s in v['snapshots'] if s['name']=='$1'][0]$2"; }
cow_of() { snap_json "$1" "['cow_bytes']"; }

sha_a=$(sha_dev "$dev")
hs snapshot create vol0 --name a --no-freeze >/dev/null
fstrim "$T/mnt"
cow1=$(cow_of a)
sleep 3
fstrim "$T/mnt"
cow2=$(cow_of a)
log "snapshot a (--no-freeze): first fstrim copied $((cow1 / MiB)) MiB, second $(((cow2 - cow1) / MiB)) MiB; zero records $(($(snap_json a "['zero_bytes']") / MiB)) MiB"
limit=$((du_gone + 4 * MiB))
[ "$cow2" -le "$limit" ] ||
    fail "two fstrims copied $((cow2 / MiB)) MiB: more than the $((du_gone / MiB)) MiB of freed data"
[ $((cow2 - cow1)) -le "$cow1" ] || [ $((cow2 - cow1)) -le $((4 * MiB)) ] ||
    fail "the second fstrim copied $(((cow2 - cow1) / MiB)) MiB, the first $((cow1 / MiB)) MiB"
[ "$(snap_json a "['zero_bytes']")" -gt 0 ] || fail "no zero records: the trim copied zeros"

# 2. an --all-blocks snapshot beside it behaves the same
sha_b=$(sha_dev "$dev")
hs snapshot create vol0 --name b --all-blocks --no-freeze >/dev/null
fstrim "$T/mnt"
fstrim "$T/mnt"
cowb=$(cow_of b)
log "snapshot b (--all-blocks): two fstrims copied $((cowb / MiB)) MiB"
[ "$cowb" -le $((4 * MiB)) ] || fail "fstrim copied $((cowb / MiB)) MiB for an --all-blocks snapshot"

# 3. churn and a third fstrim, both snapshots live, the default diff limit
for i in $(seq 8); do
    dd if=/dev/urandom of="$T/mnt/churn$i" bs=1M count=8 status=none
    rm -f "$T/mnt/churn$((i - 2))"
done
sync
fstrim "$T/mnt"
for s in a b; do
    [ "$(snap_json $s "['state']")" = active ] || fail "snapshot $s: $(snap_json $s "['reason']")"
done
held=$(hs --json status | json_eval "v['volumes'][0]['diff_bytes']")
log "after churn: the diff store holds $((held / MiB)) MiB of $(( $(hs --json status | json_eval "v['volumes'][0]['diff_limit']") / MiB )) MiB"

# 4. both read as at their instant
hs backup vol0@a -o "$T/a.raw" --no-progress >/dev/null
hs backup vol0@b -o "$T/b.raw" --no-progress >/dev/null
[ "$(sha_file "$T/a.raw")" = "$sha_a" ] || fail "snapshot a does not read as the volume at its instant"
[ "$(sha_file "$T/b.raw")" = "$sha_b" ] || fail "snapshot b does not read as the volume at its instant"
log "ok"
