#!/bin/bash
# scripts/demo.sh - what `make demo` runs: hotsnap's main job end to end on a
# scratch volume, with an application writing the whole time.
#
#  1. a daemon on a private state dir; a 2 GiB volume on a sparse file,
#     attached as a loop device; ext4 on it, mounted, filled with files
#  2. a writer (fio, random 4k writes, plus new files) that runs throughout
#  3. a bit-exact snapshot: freeze, hash the device, snapshot, thaw
#  4. a backup of that snapshot with the progress bar, while the writer runs
#  5. verification: the image's sha256 equals the frozen volume's, and
#     e2fsck finds it clean
#  6. the one-command backup (`hotsnap backup VOLUME`): its own frozen
#     snapshot, only the blocks in use, consumed as it reads, as a qcow2
#     compressed with zstd; it leaves a bookmark
#  7. the next night's backup: an incremental qcow2 holding only what
#     changed since that bookmark, its parent as backing file
#  8. the chain restored into a new volume, checked against the images;
#     e2fsck finds the restored file system clean
#  9. a summary, and everything cleaned up (also on Ctrl-C or failure)
set -euo pipefail
export LC_ALL=C

cd "$(dirname "$0")/.."
HOTSNAP=${HOTSNAP:-$PWD/build/hotsnap}
[ "$(id -u)" = 0 ] || { echo "make demo needs root (loop devices, FUSE, mount)" >&2; exit 1; }
[ -x "$HOTSNAP" ] || { echo "no $HOTSNAP: run make first" >&2; exit 1; }

D=$(mktemp -d /tmp/hotsnap-demo.XXXXXX)
S=$D/state
MNT=$D/mnt
DAEMON=""
WRITER=""

cleanup() {
    local rc=$? m dev back
    set +e
    [ -n "$WRITER" ] && kill "$WRITER" 2>/dev/null && wait "$WRITER" 2>/dev/null
    if mountpoint -q "$MNT" 2>/dev/null; then
        fsfreeze -u "$MNT" 2>/dev/null
        umount "$MNT" || umount -l "$MNT"
    fi
    if [ -n "$DAEMON" ] && kill -0 "$DAEMON" 2>/dev/null; then
        "$HOTSNAP" --state-dir "$S" volume detach demo >/dev/null 2>&1
        kill -TERM "$DAEMON"
        wait "$DAEMON" 2>/dev/null
    fi
    losetup -n -O NAME,BACK-FILE 2>/dev/null | while read -r dev back; do
        case $back in "$D"/*) losetup -d "$dev" ;; esac
    done
    mountpoint -q "$S/mnt" 2>/dev/null && umount -l "$S/mnt"
    [ "$rc" = 0 ] || { echo; echo "demo failed (exit $rc); daemon log:"; tail -20 "$D/daemon.log"; }
    rm -rf "$D"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

hs() { "$HOTSNAP" --state-dir "$S" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
json() { /usr/bin/python3 -c 'import json,sys; v=json.load(sys.stdin); print(eval("v"+sys.argv[1]))' "$1"; }

say "1. daemon, volume, file system"
"$HOTSNAP" --state-dir "$S" daemon >"$D/daemon.log" 2>&1 &
DAEMON=$!
for _ in $(seq 100); do hs status >/dev/null 2>&1 && break; sleep 0.05; done
hs volume create demo --backing "$D/demo.img" --size 2G --diff-limit 1G
DEV=$(hs volume attach demo)
echo "attached as $DEV (loop direct I/O: $(cat "/sys/block/${DEV#/dev/}/loop/dio"))"
mkfs.ext4 -q -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 "$DEV"
mkdir -p "$MNT"
mount "$DEV" "$MNT"
mkdir "$MNT/files"
for i in $(seq 40); do head -c $((i * 97 * 1024)) /dev/urandom >"$MNT/files/f$i"; done
dd if=/dev/urandom of="$MNT/files/big" bs=1M count=400 status=none
sync
echo "ext4 mounted at $MNT, $(du -sh "$MNT" | cut -f1) of files"

say "2. an application writing all the time (fio, random 4k writes)"
fio --name=app --filename="$MNT/app.dat" --size=256M --rw=randwrite --bs=4k \
    --ioengine=libaio --direct=1 --iodepth=8 --rate_iops=3000 --time_based --runtime=600 \
    >"$D/fio.log" 2>&1 &
WRITER=$!
sleep 2

say "3. snapshot: freeze, hash the frozen device, snapshot, thaw"
t0=$(date +%s%N)
fsfreeze -f "$MNT"
REF=$(dd if="$DEV" iflag=direct bs=4M status=none | sha256sum | cut -d' ' -f1)
SNAPJSON=$(hs --json snapshot create demo --no-freeze --all-blocks --name demo1)
fsfreeze -u "$MNT"
t1=$(date +%s%N)
SNAP=$(echo "$SNAPJSON" | json '["snapshots"][0]')
echo "$SNAP: hotsnap's work inside the freeze $(echo "$SNAPJSON" | json '["daemon_us"]') us" \
     "(engine $(echo "$SNAPJSON" | json '["engine_us"]') us); frozen volume sha256 $REF"

say "4. backup of $SNAP while the application keeps writing"
hs backup "$SNAP" -o "$D/image.raw" --rate 300
BJSON=$(hs --json status)

say "5. verify the image"
GOT=$(sha256sum "$D/image.raw" | cut -d' ' -f1)
[ "$GOT" = "$REF" ] && echo "sha256 of the image equals the frozen volume: $GOT" ||
    { echo "MISMATCH: image $GOT, frozen $REF"; exit 1; }
e2fsck -fn "$D/image.raw" >"$D/fsck1.log" 2>&1 && echo "e2fsck -fn: clean" ||
    { cat "$D/fsck1.log"; exit 1; }
COW=$(hs --json snapshot list | json '["snapshots"][0]["cow_bytes"]')
hs snapshot delete "$SNAP"

say "6. one command: hotsnap backup demo (its own frozen snapshot, used blocks only, consumed as read)"
hs backup demo -o "$D/night1.qcow2" --format qcow2 --no-progress | tee "$D/b2.txt"
OUT=$(hs --json status)
sleep 3   # the application goes on writing

say "7. the next night: only what changed since the bookmark"
hs backup demo -o "$D/night2.qcow2" --incremental "$D/night1.qcow2" --no-progress | tee "$D/b3.txt"
"$HOTSNAP" image info "$D/night2.qcow2"
kill "$WRITER"
wait "$WRITER" 2>/dev/null || true
WRITER=""
IOPS=$(/usr/bin/python3 -c 'import re,sys; m=re.search(r"IOPS=([0-9.k]+)", open(sys.argv[1]).read()); print(m.group(1) if m else "?")' "$D/fio.log")

say "8. restore the chain into a new volume"
RJSON=$(hs --json restore "$D/night2.qcow2" --new restored --backing "$D/restored.img" --no-progress)
echo "$RJSON" | json '["chain_images"]' | xargs -I{} echo "{} images restored, read back and checked against them"
RDEV=$(hs volume attach restored)
e2fsck -fn "$RDEV" >"$D/fsck2.log" 2>&1 && echo "e2fsck -fn on the restored volume: clean" ||
    { cat "$D/fsck2.log"; exit 1; }
hs volume detach restored >/dev/null

say "summary"
mb() { /usr/bin/python3 -c "print('%.1f MiB' % ($1/1048576))"; }
printf '  %-44s %s\n' "freeze window (freeze, hash, snapshot, thaw)" "$(( (t1 - t0) / 1000000 )) ms (most of it hashing 2 GiB)"
printf '  %-44s %s us\n' "hotsnap's work inside the freeze" "$(echo "$SNAPJSON" | json '["daemon_us"]')"
printf '  %-44s %s\n' "copied on write during backup 1" "$(mb "$COW")"
printf '  %-44s %s\n' "backup 1 (every block): image" "sha256 == frozen volume, e2fsck clean"
printf '  %-44s %s\n' "night 1 (qcow2+zstd, used blocks, consuming)" "$(sed -n 2p "$D/b2.txt" | sed 's/^ *//')"
printf '  %-44s %s\n' "night 2 (incremental over night 1)" "$(sed -n 2p "$D/b3.txt" | sed 's/^ *//')"
printf '  %-44s %s\n' "images on disk: night 1 | night 2" "$(du -h "$D/night1.qcow2" | cut -f1) | $(du -h "$D/night2.qcow2" | cut -f1)"
printf '  %-44s %s s (%s MB/s), checked, e2fsck clean\n' "restore of the chain" \
    "$(echo "$RJSON" | json '["seconds"]' | cut -c1-5)" "$(echo "$RJSON" | json '["mb_per_s"]' | cut -d. -f1)"
printf '  %-44s %s\n' "application writes during the demo (fio)" "$IOPS IOPS"
printf '  %-44s %s\n' "daemon RSS" "$(mb "$(echo "$OUT" | json '["rss_bytes"]')")"
echo
echo "demo done; cleaning up"
