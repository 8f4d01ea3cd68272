#!/bin/bash
# Both FUSE transports carry a real workload, and the choice between them is
# made and reported as promised:
#  - the default (auto): the ring when the kernel offers it (this kernel
#    does: the daemon switches on the fuse module's enable_uring), else
#    /dev/fuse with the reason;
#  - --fuse-transport dev (and the config file's key): /dev/fuse only;
#  - a kernel that refuses the ring's registration (a test-only malformed
#    REGISTER): the daemon falls back to /dev/fuse by itself, says why, and
#    nothing hangs;
#  - a queue left without an entry after the INIT reply accepted the ring
#    (test-only): the kernel holds requests until the daemon's own refused
#    REGISTER sends it back to /dev/fuse; the mount works;
#  - --fuse-transport io-uring with the ring refused: the daemon does not
#    start, and says why; a bad value is refused with the choices.
# The workload on each: ext4 made through the loop device, fio with verify
# before and after a snapshot, a backup that must equal the frozen device,
# readdir/lookup/stat of the FUSE directory, e2fsck clean, and a write held
# while being served shows in status with its file (and, held past
# --stall-warning, as a problem).
. "$(dirname "$0")/lib.sh"
require_block
require mkfs.ext4 e2fsck fsfreeze fio sha256sum
setup

have_ring=0
[ -e /sys/module/fuse/parameters/enable_uring ] && have_ring=1

ft() { hs --json status | json_get "[\"fuse_transport\"][\"$1\"]"; }

# workload NAME: the checks every transport must pass.
workload() {
    local name=$1
    make_ext4_volume "$name" 256M --diff-limit 256M
    fio --name=pre --directory="$VOL_MNT" --size=24M --bs=4k --rw=randwrite --direct=1 \
        --ioengine=libaio --iodepth=16 --verify=crc32c --do_verify=1 \
        --output="$T/fio-pre-$name.log" >/dev/null || fail "fio verify before the snapshot failed"
    sync
    fsfreeze -f "$VOL_MNT"
    ref=$(sha_dev "$VOL_DEV")
    snap=$(hs snapshot create "$name" --no-freeze)
    fsfreeze -u "$VOL_MNT"
    fio --name=post --directory="$VOL_MNT" --size=24M --bs=4k --rw=randrw --direct=1 \
        --ioengine=libaio --iodepth=16 --verify=crc32c --do_verify=1 \
        --output="$T/fio-post-$name.log" >/dev/null || fail "fio verify after the snapshot failed"
    hs backup "$snap" -o "$T/$name.raw" --no-progress >/dev/null
    [ "$(sha_file "$T/$name.raw")" = "$ref" ] || fail "$name: the backup differs from the frozen device"
    # the directory: readdir, lookup, stat through the transport
    ls "$STATE/mnt" | grep -qx "$name" || fail "$name: readdir of the FUSE directory misses it"
    [ "$(stat -c %s "$STATE/mnt/$name")" = $((256 * 1024 * 1024)) ] ||
        fail "$name: stat of the FUSE file gives the wrong size"
    umount "$VOL_MNT"
    e2fsck -fn "$VOL_DEV" >"$T/fsck-$name.log" 2>&1 || fail "$name: e2fsck: $(tail -3 "$T/fsck-$name.log")"
    # a request being served is shown, with its file: one write held at a
    # pause point (the same bytes written back, so the file system stays)
    dd if="$VOL_DEV" of="$T/blk" bs=4k count=1 skip=5000 iflag=direct status=none
    hold_arm fuse-write
    dd if="$T/blk" of="$VOL_DEV" bs=4k count=1 seek=5000 oflag=direct conv=notrunc status=none &
    local writer=$!
    BG_PIDS+=("$writer")
    hold_wait fuse-write
    hs --json status >"$T/busy-$name.json"
    if [ "${STALL_WARNING:-}" ]; then
        # held longer than --stall-warning: status calls it a problem (the
        # request only ages while held, so waiting for it cannot race)
        local i
        for i in $(seq 300); do
            hs --json status | json_eval '"fuse_stall" in v' | grep -qx True && break
            sleep 0.1
        done
        hs status >"$T/stall-$name.txt"
        grep -q "PROBLEM.*a request to $name has waited" "$T/stall-$name.txt" ||
            fail "$name: a write held past --stall-warning $STALL_WARNING is no problem in status: $(grep -i problem "$T/stall-$name.txt")"
    fi
    hold_release
    wait "$writer" || fail "$name: the held write failed once let go"
    bg_forget "$writer"
    [ "$(json_get '["fuse_requests"]["in_flight"]' <"$T/busy-$name.json")" -ge 1 ] &&
        [ "$(json_get '["fuse_requests"]["oldest_file"]' <"$T/busy-$name.json")" = "$name" ] ||
        fail "$name: status does not show the write being served: $(json_get '["fuse_requests"]' <"$T/busy-$name.json")"
    hs volume detach "$name" >/dev/null
}

# 1. the default (a held request is a problem after a second, not 30)
STALL_WARNING=1
start_daemon --stall-warning "$STALL_WARNING"
if [ "$have_ring" = 1 ]; then
    [ "$(ft name)" = io-uring ] || fail "the default transport is $(ft name), not io-uring: $(ft why_not_io_uring)"
    [ "$(cat /sys/module/fuse/parameters/enable_uring)" = Y ] || fail "enable_uring is not on"
else
    [ "$(ft name)" = dev ] || fail "no ring in this kernel, yet the transport is $(ft name)"
    ft why_not_io_uring | grep -q enable_uring || fail "the reason does not name enable_uring"
fi
before=$(ft ring_requests)
workload ring
STALL_WARNING=
if [ "$have_ring" = 1 ]; then
    after=$(ft ring_requests)
    [ "$after" -gt $((before + 1000)) ] || fail "the ring served $((after - before)) requests of the workload"
    hs status | grep -q "FUSE over io_uring" || fail "status text does not say io_uring"
    # into a file first: grep -q stops reading at the first match, and
    # under pipefail the writer's SIGPIPE would fail the pipeline once the
    # output is longer than one write
    hs status --prometheus >"$T/metrics.prom"
    grep -q "hotsnap_fuse_requests_total{transport=\"io_uring\"}" "$T/metrics.prom" &&
        grep -q "^hotsnap_fuse_oldest_request_seconds " "$T/metrics.prom" ||
        fail "no hotsnap_fuse_requests_total or hotsnap_fuse_oldest_request_seconds in the Prometheus output"
    hs --json status | json_get '["volumes"][0]["fuse_transport"]' | grep -qx io-uring ||
        fail "the volume does not say which transport serves it"
fi
# The freezer child (forked during a freezing snapshot) must not inherit the
# rings' mappings: its copy kept a killed daemon's FUSE connection alive,
# and its own thaw then waited on that connection for good (kill_daemon
# wedged so).  Every io_uring mapping of the daemon is "dc" (MADV_DONTFORK).
if [ "$have_ring" = 1 ]; then
    /usr/bin/python3 - "$DAEMON_PID" <<'PY' || fail "the daemon's rings would be copied into a fork"
import sys
maps, name, bad = 0, None, []
for line in open("/proc/%s/smaps" % sys.argv[1]):
    f = line.split()
    if len(f) >= 5 and "-" in f[0] and ":" in f[3]:
        name = f[5] if len(f) > 5 else ""
    elif line.startswith("VmFlags:") and "io_uring" in (name or ""):
        maps += 1
        if "dc" not in f[1:]:
            bad.append(line.strip())
print("io_uring mappings: %d, copied into a fork: %d" % (maps, len(bad)))
sys.exit(1 if bad or maps == 0 else 0)
PY
fi
stop_daemon
log "default transport: $(grep -m1 'FUSE:' "$T/daemon.log" | sed 's/.*info: //'); its rings are not copied into a fork"

# 2. /dev/fuse, asked for in the config file
printf 'fuse-transport = dev\n' >"$T/hotsnap.conf"
start_daemon --config "$T/hotsnap.conf"
[ "$(ft name)" = dev ] || fail "fuse-transport = dev gave $(ft name)"
ft why_not_io_uring | grep -q -- "--fuse-transport dev" || fail "the reason is '$(ft why_not_io_uring)'"
workload dev
[ "$(ft ring_requests)" = 0 ] || fail "the ring served requests under --fuse-transport dev"
[ "$(ft dev_requests)" -gt 1000 ] || fail "/dev/fuse served only $(ft dev_requests) requests"
stop_daemon
log "/dev/fuse: served the workload"

if [ "$have_ring" = 1 ]; then
    # 3. the kernel refuses the ring: auto falls back on its own
    HOTSNAP_TEST_FUSE_URING=fail-register start_daemon
    [ "$(ft name)" = dev ] || fail "a refused ring still reports $(ft name)"
    ft why_not_io_uring | grep -qi "refused" || fail "the reason is '$(ft why_not_io_uring)'"
    workload refused
    [ "$(ft dev_requests)" -gt 1000 ] || fail "/dev/fuse served only $(ft dev_requests) requests"
    stop_daemon
    log "refused ring: fell back to /dev/fuse ($(grep -m1 'ring does not serve' "$T/daemon.log" | sed 's/.*warn[a-z]*: //'))"

    # 3b. a queue that gets no entry (a worker that could not start): the
    # kernel holds every request until the daemon makes it fall back
    HOTSNAP_TEST_FUSE_URING=skip-queue0 start_daemon
    [ "$(ft name)" = dev ] || fail "with a queue unregistered the transport is $(ft name)"
    ft why_not_io_uring | grep -q "could not be registered" || fail "the reason is '$(ft why_not_io_uring)'"
    hs volume create escape --backing "$T/escape.img" --size 64M >/dev/null
    dev=$(hs volume attach escape)
    head -c $((16 << 20)) /dev/urandom >"$T/escape.data"
    dd if="$T/escape.data" of="$dev" bs=1M oflag=direct status=none
    [ "$(dd if="$dev" iflag=direct bs=1M count=16 status=none | sha256sum | cut -d' ' -f1)" = "$(sha_file "$T/escape.data")" ] ||
        fail "data written after the fallback reads back differently"
    hs volume detach escape >/dev/null
    stop_daemon
    log "a queue left without an entry: the daemon sent the kernel back to /dev/fuse"

    # 4. demanded and refused: no start, and why
    rc=0
    HOTSNAP_TEST_FUSE_URING=fail-register timeout 60 "$HOTSNAP" --state-dir "$STATE" daemon \
        --fuse-transport io-uring >"$T/demand.log" 2>&1 || rc=$?
    [ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "--fuse-transport io-uring started (or hung, $rc) with the ring refused"
    grep -q "io-uring" "$T/demand.log" || fail "no reason given: $(cat "$T/demand.log")"
    grep -qi "refused" "$T/demand.log" || fail "the reason does not say refused: $(cat "$T/demand.log")"
    log "io-uring demanded and refused: $(grep -m1 -i refused "$T/demand.log" | sed 's/.*: //')"
fi

# 5. a bad value
expect_fail 2 "expected auto, io-uring or dev" -- "$HOTSNAP" --state-dir "$STATE" daemon --fuse-transport ring
log "ok"
