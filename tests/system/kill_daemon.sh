#!/bin/bash
# The daemon killed with SIGKILL at random moments: during heavy writes with
# a snapshot active, during a backup, during snapshot creation, and during
# diff-store spill.  After a restart on the same state dir: the volume's
# ext4 mounts (its journal replays), every file written and fsynced before
# the kill is intact, e2fsck -fn is clean, and the snapshots of the killed
# daemon are reported lost, not served.  Also: a daemon killed inside a
# freeze leaves the file system frozen; the next daemon thaws it.
# ROUNDS (default 1) repeats each scenario; make stress sets more.
. "$(dirname "$0")/lib.sh"
require_block
require mkfs.ext4 e2fsck fsfreeze
setup
ROUNDS=${ROUNDS:-1}
SEED=${HOTSNAP_SEED:-$$}
RANDOM=$SEED
log "seed $SEED (replay with HOTSNAP_SEED=$SEED)"
KILLS=0
VERIFIED=0

start_daemon
hs volume create vol0 --backing "$T/vol0.img" --size 512M --cow-buffer 1M --diff-limit 512M >/dev/null
dev=$(hs volume attach vol0)
mkfs.ext4 -q -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 "$dev"
MNT=$T/mnt
mkdir -p "$MNT"
mount "$dev" "$MNT"
dd if=/dev/urandom of="$MNT/base" bs=1M count=200 status=none   # something to back up
umount "$MNT"

# Kills the daemon, restarts it, and checks everything that must survive.
kill_and_check() {   # kill_and_check SCENARIO
    local what=$1 n bad=0 name sum
    kill -KILL "$DAEMON_PID" 2>/dev/null || true
    wait "$DAEMON_PID" 2>/dev/null || true
    DAEMON_PID=""
    KILLS=$((KILLS + 1))
    stop_bg
    start_daemon   # thaws what the dead daemon froze, detaches its loop devices
    umount -l "$MNT" 2>/dev/null || true
    local lost
    lost=$(hs --json snapshot list | json_eval 'len([s for s in v["snapshots"] if s.get("lost")])')
    local live
    live=$(hs --json snapshot list | json_eval 'len([s for s in v["snapshots"] if not s.get("lost")])')
    [ "$live" = 0 ] || fail "$what: a snapshot of the killed daemon is still served"
    for name in $(hs --json snapshot list | json_eval '" ".join(s["snapshot"] for s in v["snapshots"])'); do
        hs snapshot delete "$name"
    done
    dev=$(hs volume attach vol0)
    mount "$dev" "$MNT" || fail "$what: the volume's ext4 does not mount after the kill"
    n=0
    while read -r name sum; do
        if [ "$(sha256sum "$MNT/$name" 2>/dev/null | cut -d' ' -f1)" != "$sum" ]; then
            bad=$((bad + 1))
            log "lost: $name ($(stat -c '%s bytes' "$MNT/$name" 2>&1))"
        fi
        n=$((n + 1))
    done <"$T/manifest"
    [ "$bad" = 0 ] || fail "$what: $bad of $n fsynced files are damaged or missing after the kill"
    VERIFIED=$((VERIFIED + n))
    umount "$MNT"
    e2fsck -fn "$dev" >"$T/fsck.log" 2>&1 || fail "$what: e2fsck after the kill: $(tail -3 "$T/fsck.log")"
    log "$what: killed, $n fsynced files intact, $lost snapshot(s) reported lost, e2fsck clean"
    mount "$dev" "$MNT"
    # room for the next scenario
    rm -rf "$MNT"/w[0-9]* "$MNT/heavy" "$MNT/spill"
    : >"$T/manifest"
    sync
}

pause() { sleep "0.$((RANDOM % 9 + 1))$((RANDOM % 10))"; }   # 0.1 .. 0.99 s, from the seed

for round in $(seq "$ROUNDS"); do
    mount "$dev" "$MNT" 2>/dev/null || true
    # 1. heavy writes with a snapshot active
    hs snapshot create vol0 >/dev/null
    bg "$HERE/fsync_writer.py" "$MNT" "w$round-1" "$T/manifest"
    bg dd if=/dev/urandom of="$MNT/heavy" bs=1M count=150 oflag=direct status=none
    pause; pause
    kill_and_check "writes with a snapshot active"

    # 2. during a backup
    snap=$(hs snapshot create vol0)
    bg "$HERE/fsync_writer.py" "$MNT" "w$round-2" "$T/manifest"
    hs backup "$snap" -o "$T/img-$round.raw" --rate 20 --no-progress >/dev/null 2>&1 &
    backup=$!
    pause; pause
    kill -KILL "$DAEMON_PID"
    rc=0
    wait "$backup" || rc=$?
    if [ "$rc" != 0 ]; then
        [ ! -e "$T/img-$round.raw" ] || fail "the killed daemon's backup left an image under the final name"
    else
        log "(the backup finished before the kill)"
    fi
    kill_and_check "a backup"

    # 3. during snapshot creation (freeze, map, install, thaw)
    bg "$HERE/fsync_writer.py" "$MNT" "w$round-3" "$T/manifest"
    # in a process group of its own: a CLI it started just before the kill
    # must not live on and reach the next daemon
    setsid bash -c "while :; do s=\$('$HOTSNAP' --state-dir '$STATE' snapshot create vol0) && '$HOTSNAP' --state-dir '$STATE' snapshot delete \"\$s\"; done" &
    creator=$!
    BG_PIDS+=("$creator")
    pause; pause
    kill -KILL "$DAEMON_PID" 2>/dev/null || true
    kill -TERM -- "-$creator" 2>/dev/null || true
    kill_and_check "snapshot creation"

    # 4. during diff-store spill (a 1 MiB buffer, rewrites of a big file)
    dd if=/dev/urandom of="$MNT/spill" bs=1M count=128 status=none
    sync
    hs snapshot create vol0 >/dev/null
    bg "$HERE/fsync_writer.py" "$MNT" "w$round-4" "$T/manifest"
    bg dd if=/dev/urandom of="$MNT/spill" bs=1M count=128 conv=notrunc oflag=direct status=none
    pause; pause
    kill_and_check "diff-store spill"
done

# A daemon killed inside a freeze: the next one thaws what it froze.
fsfreeze -f "$MNT"
printf '%s\n' "$MNT" >"$STATE/freezing"
kill -KILL "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null || true
DAEMON_PID=""
start_daemon
[ ! -e "$STATE/freezing" ] || fail "the freeze list is still there after a restart"
grep -q "thawed $MNT" "$T/daemon.log" || fail "the restarted daemon did not say it thawed $MNT"
# thawing something not frozen fails with EINVAL: so it is thawed
err=$(fsfreeze -u "$MNT" 2>&1) && fail "$MNT was still frozen after the restart"
grep -q "Invalid argument" <<<"$err" || fail "unexpected fsfreeze -u error: $err"
log "$KILLS kills, $VERIFIED fsynced files verified; a freeze left by a dead daemon was thawed"
