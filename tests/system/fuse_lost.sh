#!/bin/bash
# The FUSE mount unmounted behind the daemon's back (umount -l): the daemon
# stays up and says so clearly in `status` (fuse_mounted false, a
# fuse_problem line in JSON and a PROBLEM line for people); the loop device
# attached before keeps working, as that line says (the daemon still serves
# the open file: data written reads back), rather than hanging; `volume
# detach` really detaches or says why not; and the daemon still stops
# cleanly, leaving no loop device behind.
. "$(dirname "$0")/lib.sh"
require_block
require timeout
setup

# After the lazy unmount the kernel names a loop device's file "/v"; lib.sh
# only cleans loop devices on files under $T, so release ours by name here.
LOOPDEV=""
WDEV=""
release_loop() {
    local dev back
    for dev in $LOOPDEV $WDEV; do
        back=$(losetup -n -O BACK-FILE "$dev" 2>/dev/null) || continue
        case $back in /v | /w | "$STATE"/mnt/[vw]) losetup -d "$dev" 2>/dev/null ;; esac
    done
    return 0
}
trap 'rc=$?; set +e; release_loop; (exit $rc); cleanup' EXIT

# Each check below runs even when one before it failed; the test fails at
# the end, listing them.
FAILED=()
problem() { echo "FAIL: $*" >&2; FAILED+=("$*"); }

start_daemon
hs volume create v --backing "$T/v.img" --size 32M >/dev/null
LOOPDEV=$(hs volume attach v)
dd if=/dev/urandom of="$LOOPDEV" bs=1M count=32 oflag=direct status=none
# w stays attached to the end: the daemon's stop must release it
hs volume create w --backing "$T/w.img" --size 16M >/dev/null
WDEV=$(hs volume attach w)
[ "$(hs --json status | json_get '["fuse_mounted"]')" = True ] || fail "fuse_mounted is not true at the start"

umount -l "$STATE/mnt"

# the daemon stays up and says what happened
kill -0 "$DAEMON_PID" 2>/dev/null || fail "the daemon died when its FUSE mount was unmounted"
hs --json status >"$T/status.json" || fail "status fails after the FUSE mount is gone"
[ "$(json_get '["fuse_mounted"]' <"$T/status.json")" = False ] ||
    fail "status --json still says fuse_mounted after umount -l $STATE/mnt"
why=$(json_get '.get("fuse_problem", "")' <"$T/status.json")
grep -qi "FUSE mount is gone" <<<"$why" || fail "status --json has no clear fuse_problem: '$why'"
hs status >"$T/status.txt" || fail "status (human) fails after the FUSE mount is gone"
[ "$(grep -c '^PROBLEM: .*FUSE mount is gone' "$T/status.txt")" = 1 ] ||
    fail "status does not show one PROBLEM line about the FUSE mount: $(head -3 "$T/status.txt")"

# I/O on the loop device goes on, correctly (timeout is only a hang
# detector: a hang here would block the test forever)
head -c 4096 /dev/urandom >"$T/pattern"
timeout -k 5 60 dd if="$T/pattern" of="$LOOPDEV" bs=4k count=1 seek=77 oflag=direct status=none ||
    problem "a write on $LOOPDEV fails or hangs after the FUSE mount is gone"
timeout -k 5 60 dd if="$LOOPDEV" of="$T/back" bs=4k count=1 skip=77 iflag=direct status=none ||
    problem "a read on $LOOPDEV fails or hangs after the FUSE mount is gone"
cmp -s "$T/pattern" "$T/back" || problem "data written on $LOOPDEV after the FUSE mount went does not read back"
grep -qi "keep working" <<<"$why" || problem "status does not say attached loop devices keep working: '$why'"

# the daemon still serves commands
hs volume list >/dev/null || fail "volume list fails after the FUSE mount is gone"
expect_fail 1 "volume 'nosuch' does not exist" hs volume attach nosuch
# ... and knows its own file system by the device it had, not by the
# directory now bare: a diff dir in the state dir is not "on hotsnap"
err=$(hs volume create x --backing "$T/x.img" --size 16M 2>&1 >/dev/null) ||
    problem "volume create after the FUSE mount is gone refused: $err"

# detach: done for real, or refused with a reason; never a success that
# leaves the device attached
rc=0
err=$(hs volume detach v 2>&1) || rc=$?
if [ "$rc" = 0 ]; then
    back=$(losetup -n -O BACK-FILE "$LOOPDEV" 2>/dev/null || true)
    [ -z "$back" ] || problem "volume detach v succeeded but $LOOPDEV is still attached (to '$back')"
elif [ "$(wc -l <<<"$err")" != 1 ] || ! grep -q "$LOOPDEV" <<<"$err"; then
    problem "volume detach v failed without one clear line naming $LOOPDEV: $err"
fi

# the daemon stops cleanly (a bounded wait: a hang detector, not a timing
# assertion) and leaves no loop device on its volumes
kill -TERM "$DAEMON_PID"
for i in $(seq 600); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$DAEMON_PID" 2>/dev/null && fail "the daemon does not stop on SIGTERM after losing its FUSE mount"
st=0
wait "$DAEMON_PID" || st=$?
DAEMON_PID=""
[ "$st" = 0 ] || fail "the daemon exited with status $st on SIGTERM after losing its FUSE mount"
for dev in "$LOOPDEV" "$WDEV"; do
    back=$(losetup -n -O BACK-FILE "$dev" 2>/dev/null || true)
    [ -z "$back" ] || problem "after the daemon stopped, $dev is still attached (to '$back')"
done
if [ ${#FAILED[@]} -gt 0 ]; then
    printf '  failed: %s\n' "${FAILED[@]}" >&2
    fail "${#FAILED[@]} check(s) failed"
fi
log "lost FUSE mount reported; I/O fails, detach and stop are clean"
