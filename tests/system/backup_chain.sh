#!/bin/bash
# Backup chains, as a nightly job would make them.
#  1. a full qcow2, then 9 incrementals, each taken while fio writes with
#     verify; every image passes qemu-img check, the top of the chain reads
#     (qemu-img compare) exactly as the snapshot it was made from, and
#     `hotsnap restore` of the chain into a new volume gives the frozen
#     hash (and --verify-only agrees); each incremental read only what
#     changed (from the exact map);
#     While a restore runs, no NBD client may connect to its volume, and the
#     volume cannot be attached;
#  2. 5 rounds of kill -9 while files are written; after each restart the
#     next incremental (from the region map kept on disk) still gives a
#     chain equal to the new snapshot;
#  3. qemu-nbd serves the top of the chain: nbdcopy reads the frozen bytes;
#     `backup -o -` streams the same bytes;
#  4. the backing file changed while no daemon served it: status says the
#     tracking was lost and why, the next incremental is refused with one
#     line asking for a full backup, a full one works and the chain goes on;
#  5. over NBD a snapshot offers the changes since a bookmark, as
#     hotsnap:changed-since:VOLUME#NAME and qemu:dirty-bitmap:NAME: both
#     total what an incremental from that bookmark reads;
#  6. a deleted bookmark refuses the incremental that needs it.
. "$(dirname "$0")/lib.sh"
require_block
require mkfs.ext4 fio qemu-img qemu-nbd nbdcopy sha256sum
setup
start_daemon

make_ext4_volume vol0 128M --diff-limit 128M
fill_files "$VOL_MNT/data" 20 32

# Takes an --all-blocks snapshot (bit-exact), backs it up (full or over the
# previous image), checks the image and compares the chain with the
# snapshot.  Sets LAST to the new image; prints the backup's JSON to $T/out.
LAST=""
N=0
chain_step() {   # chain_step NAME [expect_exact]
    local name=$1 want_exact=${2:-} img sdev
    hs snapshot create vol0 --name "$name" --all-blocks >/dev/null
    N=$((N + 1))
    img=$T/c$N.qcow2
    if [ -z "$LAST" ]; then
        hs --json backup "vol0@$name" -o "$img" --format qcow2 --no-progress >"$T/out"
    else
        hs --json backup "vol0@$name" -o "$img" --incremental "$LAST" --no-progress >"$T/out"
        [ "$(json_get '["backing_file"]' <"$T/out")" = "$(basename "$LAST")" ] ||
            fail "$img names its backing '$(json_get '["backing_file"]' <"$T/out")', not $(basename "$LAST")"
        read -r changed readb exact < <(json_eval '"%d %d %s" % (v["changed_bytes"], v["bytes_read"], v["changed_exact"])' <"$T/out")
        [ "$readb" -le "$changed" ] || fail "$img read $readb bytes, more than the $changed that changed"
        [ -z "$want_exact" ] || [ "$exact" = "$want_exact" ] ||
            fail "$img: changed set exact=$exact, expected $want_exact"
    fi
    [ "$(json_get '["bookmark"]' <"$T/out")" = "vol0#$name" ] || fail "$img left no bookmark vol0#$name"
    qemu-img check "$img" >"$T/check.log" 2>&1 || fail "qemu-img check $img: $(tail -3 "$T/check.log")"
    sdev=$(hs snapshot attach "vol0@$name")
    qemu-img compare -f raw "$sdev" -F qcow2 "$img" >"$T/cmp.log" 2>&1 ||
        fail "the chain up to $img differs from vol0@$name: $(tail -2 "$T/cmp.log")"
    FROZEN=$(sha_dev "$sdev")
    hs snapshot detach "vol0@$name"
    hs snapshot delete "vol0@$name"
    LAST=$img
    restore_check "$img"
}

# Restores the chain ending at $1 into a new volume: it must read as the
# frozen snapshot, and a comparison agrees.  The first time also: a changed
# block is found by the comparison, and a restore over it (an old volume,
# zeros written as zeros) makes it equal again.
RESTORES=0
restore_check() {
    local img=$1 rdev
    hs restore "$img" --new rst --backing "$T/rst.img" --no-progress >/dev/null ||
        fail "restore of $img failed"
    rdev=$(hs volume attach rst)
    [ "$(sha_dev "$rdev")" = "$FROZEN" ] || fail "the volume restored from $img differs from its snapshot"
    if [ "$RESTORES" = 0 ]; then
        head -c 4096 /dev/urandom | dd of="$rdev" bs=4096 seek=3 oflag=direct conv=notrunc status=none
        hs volume detach rst
        expect_fail 1 "differs from the image.*offset 1228[89]" hs restore "$img" --to rst --verify-only
        # held under way: the restore has the volume alone meanwhile
        hold_arm restore
        hs restore "$img" --to rst --no-progress >"$T/restore.out" 2>&1 &
        local restorer=$!
        BG_PIDS+=("$restorer")
        hold_wait restore
        expect_fail 1 "being restored from an image; connect after the restore ends" \
            qemu-img info "nbd+unix:///rst?socket=$STATE/nbd.sock"
        expect_fail 1 "is busy: a restore is running" hs volume attach rst
        hold_release
        wait "$restorer" || fail "restore over an old volume failed: $(cat "$T/restore.out")"
        bg_forget "$restorer"
        rdev=$(hs volume attach rst)
        [ "$(sha_dev "$rdev")" = "$FROZEN" ] || fail "a restore over an old volume left it different"
    fi
    hs volume detach rst
    hs restore "$img" --to rst --verify-only >/dev/null || fail "restore --verify-only of $img disagrees"
    hs volume remove rst
    rm -f "$T/rst.img"
    RESTORES=$((RESTORES + 1))
}

# --- 1. ten images under fio with verify
for i in $(seq 10); do
    fio --name=w --filename="$VOL_MNT/fio.dat" --size=24M --io_size=6M --rw=randwrite --bs=4k \
        --ioengine=psync --verify=crc32c --verify_backlog=256 --verify_state_save=0 --randseed=$i \
        --output="$T/fio.log" >/dev/null &
    fio_pid=$!
    BG_PIDS+=("$fio_pid")
    head -c $((i * 40000)) /dev/urandom >"$VOL_MNT/data/round$i"
    chain_step "n$i" $([ "$i" -gt 1 ] && echo True)
    wait "$fio_pid" || fail "fio with verify failed in round $i: $(tail -5 "$T/fio.log")"
    bg_forget "$fio_pid"
done
depth=$(qemu-img info --backing-chain --output=json "$LAST" | json_eval 'len(v)')
[ "$depth" = 10 ] || fail "qemu-img sees a chain of $depth images, not 10"
log "a chain of 10 under fio with verify: every image checked, every top equal to its snapshot, every chain restored to its frozen hash"

# --- 3. other readers of the chain
qn=$T/qn.sock
qemu-nbd -r -f qcow2 -k "$qn" "$LAST" >"$T/qemu-nbd.log" 2>&1 &
BG_PIDS+=("$!")
for _ in $(seq 100); do [ -S "$qn" ] && break; sleep 0.05; done
nbdcopy "nbd+unix:///?socket=$qn" "$T/qn.raw"
[ "$(sha_file "$T/qn.raw")" = "$FROZEN" ] || fail "qemu-nbd serving the chain gives other bytes"
rm -f "$T/qn.raw"
hs snapshot create vol0 --name st --all-blocks >/dev/null
sdev=$(hs snapshot attach vol0@st)
want=$(sha_dev "$sdev")
hs snapshot detach vol0@st
hs backup vol0@st -o - --no-progress 2>"$T/stream.err" | sha256sum | cut -d' ' -f1 >"$T/stream.sha"
[ "$(cat "$T/stream.sha")" = "$want" ] || fail "backup -o - streamed other bytes: $(cat "$T/stream.err")"
hs snapshot delete vol0@st
hs bookmark delete vol0#st
log "qemu-nbd serves the chain's frozen bytes; -o - streams them"

# --- 2. kill -9 between incrementals
for k in $(seq 5); do
    bg "$HERE/fsync_writer.py" "$VOL_MNT" "k$k" "$T/manifest"
    dd if=/dev/urandom of="$VOL_MNT/data/big" bs=1M count=8 seek=$((k * 2)) conv=notrunc \
       oflag=direct status=none
    kill -KILL "$DAEMON_PID"
    wait "$DAEMON_PID" 2>/dev/null || true
    DAEMON_PID=""
    stop_bg
    start_daemon
    umount -l "$VOL_MNT" 2>/dev/null || true
    for s in $(hs --json snapshot list | json_eval '" ".join(s["snapshot"] for s in v["snapshots"])'); do
        hs snapshot delete "$s"
    done
    state=$(hs --json status | json_get '["volumes"][0]["tracking"]["state"]')
    [ "$state" = active ] || fail "after kill $k the tracking is $state: $(hs status | grep tracking)"
    VOL_DEV=$(hs volume attach vol0)
    mount -o nodiscard "$VOL_DEV" "$VOL_MNT" || fail "the volume does not mount after kill $k"
    head -c 100000 /dev/urandom >"$VOL_MNT/data/after$k"
    sync
    # the first incremental after a restart comes from the map on disk
    chain_step "k$k" False
done
log "5 kills: every next incremental still gave a chain equal to its snapshot"

# --- 4. the backing changed while no daemon served it
umount "$VOL_MNT"
hs volume detach vol0
hs shutdown
DAEMON_PID=""
dd if=/dev/urandom of="$T/vol0.img" bs=4k count=1 seek=5000 conv=notrunc status=none
start_daemon
hs --json status >"$T/status"
[ "$(json_get '["volumes"][0]["tracking"]["state"]' <"$T/status")" = lost ] ||
    fail "status does not say the tracking was lost: $(hs status | grep tracking)"
json_get '["volumes"][0]["tracking"]["started_over_because"]' <"$T/status" |
    grep -q "changed while no hotsnap daemon served it" || fail "status gives no reason for the loss"
hs snapshot create vol0 --name lost1 --all-blocks >/dev/null
expect_fail 1 "full backup is needed" hs backup vol0@lost1 -o "$T/refused.qcow2" --incremental "$LAST" --no-progress
[ ! -e "$T/refused.qcow2" ] || fail "a refused incremental left an image"
hs snapshot delete vol0@lost1
LAST=""
chain_step full2
VOL_DEV=$(hs volume attach vol0)
mount -o nodiscard "$VOL_DEV" "$VOL_MNT"
head -c 300000 /dev/urandom >"$VOL_MNT/data/new"
sync
chain_step inc2 True
[ "$(hs --json status | json_get '["volumes"][0]["tracking"]["state"]')" = active ] ||
    fail "tracking is not active again after a full backup"
log "a backing changed while down: tracking lost and said why, incremental refused, full + incremental work again"

# --- 5. the changes since a bookmark, over NBD
head -c 700000 /dev/urandom >"$VOL_MNT/data/pulled"
sync
hs snapshot create vol0 --name pull --all-blocks >/dev/null
uri="nbd+unix:///vol0@pull?socket=$STATE/nbd.sock"
nbdinfo --json "$uri" | grep -q '"qemu:dirty-bitmap:inc2"' || fail "the snapshot export lists no qemu:dirty-bitmap:inc2"
nbdinfo --json "$uri" | grep -q '"hotsnap:changed-since:vol0#inc2"' || fail "no hotsnap:changed-since:vol0#inc2"
dirty() { nbdinfo --map="$1" --json "$uri" | json_eval 'sum(e["length"] for e in v if e["type"] & 1)'; }
q=$(dirty qemu:dirty-bitmap:inc2)
h=$(dirty "hotsnap:changed-since:vol0#inc2")
hs --json backup vol0@pull -o "$T/pull.qcow2" --incremental "$LAST" --no-progress >"$T/out"
c=$(json_get '["changed_bytes"]' <"$T/out")
[ "$q" -gt 0 ] && [ "$q" = "$h" ] && [ "$h" = "$c" ] ||
    fail "changes since vol0#inc2: qemu:dirty-bitmap $q, hotsnap:changed-since $h, the backup $c"
nbdinfo --map=qemu:dirty-bitmap:nosuch "$uri" >/dev/null 2>&1 && fail "an unknown bookmark's map was served"
hs snapshot delete vol0@pull
LAST=$T/pull.qcow2
log "over NBD the changes since a bookmark ($q bytes) match what the incremental read"

# --- 6. a bookmark deleted
hs bookmark delete vol0#pull
hs snapshot list | grep -q "vol0#pull" && fail "snapshot list still shows the deleted bookmark"
hs snapshot create vol0 --name nb --all-blocks >/dev/null
expect_fail 1 "bookmark vol0#pull.*is gone.*full backup is needed" \
    hs backup vol0@nb -o "$T/nb.qcow2" --incremental "$LAST" --no-progress
expect_fail 1 "is an image of volume|not a qcow2 image hotsnap wrote" \
    hs backup vol0@nb -o "$T/nb.qcow2" --incremental "$T/vol0.img" --no-progress
expect_fail 2 "a bookmark is named VOLUME#NAME" hs bookmark delete vol0
expect_fail 1 "does not exist" hs bookmark delete vol0#nosuch
log "deleted bookmarks and foreign parents are refused with one line each"
