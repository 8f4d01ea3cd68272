#!/bin/bash
# An interrupted backup leaves nothing behind: `hs backup` stopped by SIGINT,
# then by SIGKILL, halfway through a rate-limited backup of 256M: no file
# under the final name, no stray file in the directory, the daemon notices
# the client went away (the backup ends, its descriptor is closed), and the
# snapshot stays active: a new full backup of it is exact.  `hs backup
# VOLUME` killed the same way leaves no temporary snapshot behind.  An
# interrupted --consume backup may leave its snapshot unreadable, but then a
# later backup must fail clearly, never write a wrong image.
. "$(dirname "$0")/lib.sh"
require_block
setup
start_daemon

hs volume create vol --backing "$T/vol.img" --size 256M --diff-limit 256M >/dev/null
dev=$(hs volume attach vol)
dd if=/dev/urandom of="$dev" bs=1M count=256 oflag=direct status=none
ref=$(sha_dev "$dev")   # nothing writes the volume now: it is frozen
hs snapshot create vol --name s >/dev/null
# the volume moves on: the snapshot must still read as it was
dd if=/dev/urandom of="$dev" bs=1M count=16 seek=40 oflag=direct status=none
[ "$(sha_dev "$dev")" != "$ref" ] || fail "the writes after the snapshot changed nothing"

mkdir "$T/out"
echo "was here before" >"$T/out/keep.txt"
listing() { ls -A "$T/out"; }
before=$(listing)
nfds() { ls "/proc/$DAEMON_PID/fd" | wc -l; }
fds0=$(nfds)

# Runs `hs backup SOURCE -o $T/out/img.raw --rate 20` with SIGINT at its
# default (a background job of a script would ignore it), waits until the
# daemon reports it under way, and sends it SIG.
interrupted_backup() {   # interrupted_backup SIG SOURCE [options]
    local sig=$1 src=$2 pid i rc=0
    shift 2
    /usr/bin/python3 -c '
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])' "$HOTSNAP" --state-dir "$STATE" backup "$src" \
        -o "$T/out/img.raw" --rate 20 --no-progress "$@" 2>"$T/backup.err" &
    pid=$!
    BG_PIDS+=("$pid")
    for i in $(seq 300); do
        [ "$(running_backups position)" -gt 0 ] 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || fail "backup $src ended before it could be interrupted: $(cat "$T/backup.err")"
        sleep 0.1
    done
    [ "$(running_backups position)" -gt 0 ] || fail "backup $src never got under way"
    # a yielding backup's threads run at nice 19 (backup_job.c)
    [ "$(niced_threads)" -gt 0 ] || fail "no thread of the daemon runs at nice 19 during a yielding backup"
    kill "-$sig" "$pid"
    { wait "$pid"; } 2>/dev/null || rc=$?
    BG_PIDS=()   # reaped: its pid is no longer ours to signal
    [ "$rc" != 0 ] || fail "backup $src exited 0 after SIG$sig"
    [ ! -e "$T/out/img.raw" ] || fail "backup $src interrupted by SIG$sig left $T/out/img.raw"
    [ "$(listing)" = "$before" ] ||
        fail "backup $src interrupted by SIG$sig left files behind: $(diff <(echo "$before") <(listing) | grep '^>')"
    # the daemon notices the client went away: the backup ends and lets go
    # of its output (a bounded wait, not a timing assertion)
    for i in $(seq 300); do
        [ "$(running_backups count)" = 0 ] && [ "$(nfds)" -le "$fds0" ] && break
        sleep 0.1
    done
    [ "$(running_backups count)" = 0 ] || fail "the daemon still runs the backup of $src its client abandoned (SIG$sig)"
    [ "$(nfds)" -le "$fds0" ] || fail "the daemon holds $(($(nfds) - fds0)) more descriptors after the abandoned backup of $src"
    # and give back what they took: the job runs on a thread the daemon keeps
    [ "$(niced_threads)" = 0 ] || fail "$(niced_threads) daemon threads stay at nice 19 after the backup of $src"
}
niced_threads() {   # how many of the daemon's threads run at nice 19
    /usr/bin/python3 -c '
import glob, sys
n = 0
for f in glob.glob("/proc/%s/task/*/stat" % sys.argv[1]):
    try:
        s = open(f).read()
    except OSError:
        continue    # a thread that ended meanwhile
    n += int(s[s.rindex(")") + 2:].split()[16]) == 19
print(n)' "$DAEMON_PID"
}
running_backups() {   # count | position (of the first)
    hs --json status | /usr/bin/python3 -c '
import json, sys
b = [x for v in json.load(sys.stdin)["volumes"] for x in v["backups"]]
print(len(b) if sys.argv[1] == "count" else (b[0]["position"] if b else 0))' "$1"
}
snap_state() {
    hs --json snapshot list | /usr/bin/python3 -c '
import json, sys
print(*[s["state"] for s in json.load(sys.stdin)["snapshots"] if s["snapshot"] == sys.argv[1]])' "$1"
}

# --- VOLUME@SNAPSHOT: SIGINT, then SIGKILL
interrupted_backup INT vol@s
[ "$(snap_state vol@s)" = active ] || fail "vol@s is '$(snap_state vol@s)' after an interrupted backup"
interrupted_backup KILL vol@s
[ "$(snap_state vol@s)" = active ] || fail "vol@s is '$(snap_state vol@s)' after a killed backup"
hs backup vol@s -o "$T/out/img.raw" --no-progress >/dev/null
[ "$(sha_file "$T/out/img.raw")" = "$ref" ] || fail "the backup after two interrupted ones is not exact"
rm "$T/out/img.raw"

# --- VOLUME: the temporary snapshot goes with the abandoned backup
for sig in KILL INT; do
    interrupted_backup "$sig" vol
    for i in $(seq 300); do
        [ "$(hs --json snapshot list | json_get '["snapshots"].__len__()')" = 1 ] && break
        sleep 0.1
    done
    [ "$(hs --json snapshot list | json_get '["snapshots"].__len__()')" = 1 ] ||
        fail "a backup of vol interrupted by SIG$sig left its temporary snapshot: $(hs snapshot list | tail -n +2)"
done
[ "$(snap_state vol@s)" = active ] || fail "vol@s is not active after the temporary snapshots went"

# --- --consume interrupted: later backups are exact or refused, never wrong
hs snapshot create vol --name c >/dev/null
hs backup vol@c -o "$T/c-ref.raw" --no-progress >/dev/null
refc=$(sha_file "$T/c-ref.raw")
rm "$T/c-ref.raw"
interrupted_backup KILL vol@c --consume
dd if=/dev/urandom of="$dev" bs=1M count=8 seek=0 oflag=direct status=none
rc=0
err=$(hs backup vol@c -o "$T/out/img.raw" --no-progress 2>&1 >/dev/null) || rc=$?
if [ "$rc" = 0 ]; then
    [ "$(sha_file "$T/out/img.raw")" = "$refc" ] ||
        fail "after an interrupted --consume backup, a new backup of vol@c succeeded with a wrong image"
    rm "$T/out/img.raw"
else
    [ "$rc" = 1 ] && [ "$(wc -l <<<"$err")" = 1 ] && grep -q "consumed" <<<"$err" ||
        fail "after an interrupted --consume backup, a new backup of vol@c failed unclearly (exit $rc): $err"
    [ ! -e "$T/out/img.raw" ] || fail "a failed backup left $T/out/img.raw"
    log "after an interrupted --consume backup: $err"
fi
hs snapshot delete vol@c
hs snapshot delete vol@s
[ "$(hs --json status | json_get '["volumes"][0]["diff_bytes"]')" = 0 ] ||
    fail "the diff store is not empty after every snapshot was deleted"
log "interrupted backups left nothing; the snapshot stayed exact ($ref)"
