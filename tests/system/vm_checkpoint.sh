#!/bin/bash
# vm checkpoint / vm restore (issue 13).  A small Linux guest (built by
# tests/guest/build-guest.sh from Debian's kernel and busybox; under TCG
# unless the CPU has vmx/svm) runs from a hotsnap volume over NBD and
# counts: tick N is appended to /mnt/counter and fsynced before "tick N" is
# printed on its console, and the counter lives in the shell's memory.
#  1. mistakes are named: no QMP socket, a socket that is not QEMU, a volume
#     that is not one of the guest's disks, a directory that is not empty;
#  2. checkpoint c1 (disks into images) while it counts; it runs on; restore
#     is refused while its QEMU runs; QEMU is killed, c1 restored from the
#     images: the guest goes on from the checkpoint's instant;
#  3. in the restored guest, checkpoint c2 --disks-only (live snapshots); it
#     runs on; QEMU is killed; c2 restored by a revert (DIR given relative);
#  after each restore the records on disk are 1..M with no gap and no
#  repeat (memory and disk from one instant, and the disk really went back:
#  the guest had counted past the restored value), and e2fsck is clean.
. "$(dirname "$0")/lib.sh"
require_root
require qemu-system-x86_64 mkfs.ext4 e2fsck qemu-img
setup

BUILDER=$HERE/../guest/build-guest.sh
GUEST=$(dirname "$HOTSNAP")/test-guest
"$BUILDER" "$GUEST" || fail "cannot build the test guest (tests/guest/build-guest.sh)"
read -r -a ACCEL <<<"$("$BUILDER" --accel)"

start_daemon
hs volume create vol0 --backing "$T/vol0.img" --size 128M >/dev/null
hs volume create other --backing "$T/other.img" --size 16M >/dev/null
dev=$(hs volume attach vol0)
mkfs.ext4 -q -F "$dev"
hs volume detach vol0

CON=$T/console.log
QMP=$T/qmp.sock
qemu-system-x86_64 "${ACCEL[@]}" -m 256 -display none -monitor none -no-reboot \
    -kernel "$GUEST/vmlinuz" -initrd "$GUEST/initrd.img" -append 'console=ttyS0 panic=-1 quiet' \
    -drive "file=nbd+unix:///vol0?socket=$STATE/nbd.sock,format=raw,if=virtio,cache=none" \
    -chardev "file,id=con,path=$CON,append=on" -serial chardev:con \
    -qmp "unix:$QMP,server=on,wait=off" >"$T/qemu.log" 2>&1 &
QEMU=$!
BG_PIDS+=("$QEMU")

# the last tick printed in FILE, or nothing (QEMU may not have made it yet)
last_tick() { { grep -ao 'tick [0-9]*' "$1" 2>/dev/null || true; } | tail -1 | cut -d' ' -f2; }
# wait_ticks FILE N: until the guest printed tick N or later in FILE
wait_ticks() {
    local i t
    for i in $(seq 1800); do
        t=$(last_tick "$1")
        [ -n "$t" ] && [ "$t" -ge "$2" ] && return 0
        grep -aqs GUEST-ERROR "$1" && fail "the guest failed: $(grep -a GUEST-ERROR "$1")"
        sleep 0.1
    done
    fail "the guest did not reach tick $2 in 180 s; console: $(tail -c 400 "$1")"
}
# ends a QEMU we did not start as a child, by its pid
end_qemu() {
    local i
    kill -TERM "$1" 2>/dev/null
    for i in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null
}
# the records on the volume: 1..M, no gap, no repeat; e2fsck clean; prints M
check_counter() {
    local dev mnt=$T/mnt m
    dev=$(hs volume attach vol0)
    mkdir -p "$mnt"
    mount "$dev" "$mnt" || fail "cannot mount the guest's file system"
    m=$(awk 'NR != $1 { print "record " NR " reads " $1; exit 1 } END { print NR }' "$mnt/counter") ||
        fail "$1: the counter file is not 1..M: $m (memory and disk from different instants?)"
    umount "$mnt"
    e2fsck -fn "$dev" >"$T/fsck.log" 2>&1 || fail "$1: e2fsck: $(tail -5 "$T/fsck.log")"
    hs volume detach vol0
    echo "$m"
}

wait_ticks "$CON" 5

# 1. mistakes
expect_fail 1 "QMP socket $T/none.sock" hs vm checkpoint --qmp "$T/none.sock" -o "$T/x" vol0
expect_fail 1 "does not speak QMP" hs vm checkpoint --qmp "$STATE/nbd.sock" -o "$T/x" vol0
expect_fail 1 "volume other is not among the guest's disks" \
    hs vm checkpoint --qmp "$QMP" -o "$T/x" vol0 other
[ -e "$T/x" ] && fail "a refused checkpoint left $T/x behind"
mkdir "$T/full" && echo keep >"$T/full/mine"
expect_fail 1 "$T/full is not empty" hs vm checkpoint --qmp "$QMP" -o "$T/full" vol0
[ "$(cat "$T/full/mine")" = keep ] || fail "a refused checkpoint touched a file of its directory"

# 2. checkpoint into images, run on, restore from them
out=$(hs --json vm checkpoint --qmp "$QMP" -o "$T/c1" --name c1 vol0) || fail "vm checkpoint failed"
pause=$(echo "$out" | json_get '["pause_ms"]')
mem=$(echo "$out" | json_get '["memory_bytes"]')
[ "$mem" -gt $((16 << 20)) ] || fail "the saved memory is only $mem bytes: $out"
[ -s "$T/c1/checkpoint.json" ] && [ -s "$T/c1/memory.state" ] || fail "the checkpoint lacks files"
qemu-img check -q "$T/c1/vol0.qcow2" || fail "the disk image of c1 does not pass qemu-img check"
hs snapshot list --noheadings | grep -q 'vol0@c1' && fail "c1's snapshot outlived its image"
at_ckpt=$(last_tick "$CON")
wait_ticks "$CON" $((at_ckpt + 15))
ran_to=$(last_tick "$CON")
expect_fail 1 "still answers on $QMP" hs vm restore "$T/c1"
end_qemu "$QEMU"; wait "$QEMU" 2>/dev/null; bg_forget "$QEMU"
echo "=== restore c1" >>"$CON"
out=$(hs --json vm restore "$T/c1") || fail "vm restore failed: $(tail -5 "$T/c1/qemu-restore.log" 2>/dev/null)"
QEMU=$(echo "$out" | json_get '["qemu_pid"]')
at_exit end_qemu "$QEMU"
[ "$(echo "$out" | json_get '["reverted"]')" = False ] || fail "c1 has no live snapshots, yet: $out"
sed -n '/^=== restore c1/,$p' "$CON" >"$T/after1"
first=""
for i in $(seq 1800); do
    sed -n '/^=== restore c1/,$p' "$CON" >"$T/after1"
    first=$({ grep -ao 'tick [0-9]*' "$T/after1" || true; } | head -1 | cut -d' ' -f2)
    [ -n "$first" ] && break
    sleep 0.1
done
[ -n "$first" ] || fail "the restored guest printed no tick: $(tail -c 400 "$CON")"
grep -aq counter-start "$T/after1" && fail "the restored guest booted afresh instead of going on"
[ "$first" -le "$ran_to" ] || fail "the restored guest went on at $first, after $ran_to: it did not go back"
wait_ticks "$CON" $((first + 10))

# 3. a --disks-only checkpoint of the restored guest, restored by a revert
out=$(hs --json vm checkpoint --qmp "$T/c1/restore-qmp.sock" -o "$T/c2" --name c2 --disks-only vol0) ||
    fail "vm checkpoint --disks-only of the restored guest failed"
pause2=$(echo "$out" | json_get '["pause_ms"]')
hs snapshot list --noheadings | grep -q 'vol0@c2' || fail "--disks-only kept no snapshot"
at_ckpt=$(last_tick "$CON")
wait_ticks "$CON" $((at_ckpt + 15))
ran_to=$(last_tick "$CON")
end_qemu "$QEMU"
m1=$(check_counter "after c1 ran on") || exit 1
echo "=== restore c2" >>"$CON"
out=$(cd "$T" && hs --json vm restore c2) || fail "vm restore of c2 failed: $(tail -5 "$T/c2/qemu-restore.log" 2>/dev/null)"
QEMU=$(echo "$out" | json_get '["qemu_pid"]')
at_exit end_qemu "$QEMU"
[ "$(echo "$out" | json_get '["reverted"]')" = True ] || fail "c2's snapshots are live, yet: $out"
for i in $(seq 1800); do
    first=$(sed -n '/^=== restore c2/,$p' "$CON" | { grep -ao 'tick [0-9]*' || true; } | head -1 | cut -d' ' -f2)
    [ -n "$first" ] && break
    sleep 0.1
done
[ -n "$first" ] && [ "$first" -le "$ran_to" ] || fail "the guest restored from c2 did not go back ($first, ran to $ran_to)"
wait_ticks "$CON" $((first + 10))
end_qemu "$QEMU"
m2=$(check_counter "after the restore of c2") || exit 1
[ "$m2" -ge $((first + 10)) ] || fail "the restored guest's records end at $m2, before its tick $((first + 10))"
hs vm list "$T" | grep -q c2 || fail "vm list does not show c2"
log "checkpoints: pauses $pause ms and $pause2 ms (${ACCEL[*]}), memory $((mem >> 20)) MiB;" \
    "restored from images and by revert, the guest went on from the instant (records 1..$m1, then 1..$m2)"
