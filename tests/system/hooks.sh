#!/bin/bash
# Application hooks, events and a diff store changed while live (issue 11).
#  1. a directory hook and a volume's own hook see every phase in order,
#     with the set's volumes, mount points and snapshot name;
#  2. a freeze hook holds across the instant: a file it makes before saying
#     ready and removes after thaw is in the snapshot and not on the volume;
#  3. a failing prepare aborts the snapshot with the hook's name and last
#     stderr line, runs abort, and leaves nothing frozen; a freeze hook that
#     never says ready is killed with what it started; one that ignores
#     thaw is killed, the snapshot stands and a warning says so;
#  4. --no-freeze runs no hooks; a bad --hook is refused, '' removes it;
#  5. volume set --diff-limit under a live snapshot: shrinking below what is
#     held is refused with the figures, growing works at once;
#  6. events --recent shows what happened; status --prometheus has the
#     figures, and hotsnap_up 0 when no daemon answers.
. "$(dirname "$0")/lib.sh"
require_block
require mkfs.ext4
setup
mkdir -p "$STATE/hooks.d" "$T/hooks"
start_daemon --hook-timeout 3

make_ext4_volume vol0 64M --diff-limit 16M
dd if=/dev/urandom of="$VOL_MNT/base" bs=1M count=24 status=none   # data every snapshot keeps
sync
PHASES=$T/phases.log

# 1. every phase, in order, with the environment
cat >"$STATE/hooks.d/10-record" <<HOOK
#!/bin/bash
echo "dir \$1 \$HOTSNAP_PHASE snap=\$HOTSNAP_SNAPSHOT vols=\$HOTSNAP_VOLUMES mounts=\$HOTSNAP_MOUNTS vol=\$HOTSNAP_VOLUME" >>"$PHASES"
[ -e "$T/fail-prepare" ] && [ "\$1" = prepare ] && { echo "database not reachable at /run/db.sock" >&2; exit 3; }
exit 0
HOOK
echo "this file is the hook's configuration" >"$STATE/hooks.d/10-record.conf"
chmod +x "$STATE/hooks.d/10-record"
cat >"$T/hooks/holder" <<HOOK
#!/bin/bash
mount=\$HOTSNAP_MOUNT
case "\$1" in
freeze)
    echo "held at the instant" >"\$mount/while-held"; sync
    echo "vol \$1 \$HOTSNAP_VOLUME" >>"$PHASES"
    echo ready
    read -r word
    rm -f "\$mount/while-held"
    echo "vol released-after-\$word" >>"$PHASES"
    ;;
*)  echo "vol \$1 \$HOTSNAP_VOLUME" >>"$PHASES" ;;
esac
HOOK
chmod +x "$T/hooks/holder"
hs volume set vol0 --hook "$T/hooks/holder" >/dev/null
[ "$(hs --json volume list | json_eval "v['volumes'][0]['hook']")" = "$T/hooks/holder" ] ||
    fail "volume list does not show the hook"

out=$(hs --json snapshot create vol0 --name s1)
[ "$(echo "$out" | json_get '["hooks"]')" = 2 ] || fail "2 hooks should have run: $out"
want="dir prepare prepare snap=s1 vols=vol0 mounts=$VOL_MNT vol=
vol prepare vol0
dir freeze freeze snap=s1 vols=vol0 mounts=$VOL_MNT vol=
vol freeze vol0
vol released-after-thaw
dir thaw thaw snap=s1 vols=vol0 mounts=$VOL_MNT vol=
vol thaw vol0"
got=$(cat "$PHASES")
[ "$got" = "$want" ] || fail "phases: expected
$want
got
$got"
log "phases in order: prepare, freeze (held), thaw"

# 2. the holder's file is in the snapshot, not on the volume
[ ! -e "$VOL_MNT/while-held" ] || fail "the holder did not clean up"
sdev=$(hs snapshot attach vol0@s1)
mkdir "$T/snap"
mount -o ro,noload "$sdev" "$T/snap"
[ -e "$T/snap/while-held" ] || fail "the snapshot was not taken while the hook held"
umount "$T/snap"
hs snapshot detach vol0@s1 >/dev/null

# 3a. a failing prepare aborts, names the hook and its message, runs abort
: >"$PHASES"
touch "$T/fail-prepare"
expect_fail 1 "10-record.*prepare.*status 3.*database not reachable at /run/db.sock" \
    hs snapshot create vol0 --name s2
rm "$T/fail-prepare"
grep -q "^dir abort" "$PHASES" || fail "abort did not run: $(cat "$PHASES")"
grep -q "^vol freeze" "$PHASES" && fail "freeze ran after a failed prepare"
[ "$(hs --json snapshot list | json_eval "len([s for s in v['snapshots'] if s['name']=='s2'])")" = 0 ] ||
    fail "a snapshot was made after a failed prepare"
timeout 10 touch "$VOL_MNT/not-frozen" || fail "the file system was left frozen"

# 3b. a freeze hook that never says ready: killed with what it started
cat >"$T/hooks/mute" <<HOOK
#!/bin/bash
[ "\$1" = freeze ] || exit 0
sleep 1000 & echo \$! >"$T/mute-child"
echo "waiting for a lock that never comes" >&2
wait
HOOK
chmod +x "$T/hooks/mute"
hs volume set vol0 --hook "$T/hooks/mute" >/dev/null
expect_fail 1 "mute.*did not say ready within 3 s.*never comes" hs snapshot create vol0 --name s3
child=$(cat "$T/mute-child")
ended() { ! [ -e "/proc/$1" ] || awk '{ exit !($3 == "Z") }' "/proc/$1/stat" 2>/dev/null; }
for i in $(seq 100); do ended "$child" && break; sleep 0.05; done   # SIGKILL lands soon
ended "$child" || fail "the hook's child $child is still running"
timeout 10 touch "$VOL_MNT/not-frozen" || fail "the file system was left frozen"

# 3c. a holder that ignores thaw is killed; the snapshot stands, with a warning
cat >"$T/hooks/stubborn" <<'HOOK'
#!/bin/bash
[ "$1" = freeze ] || exit 0
echo ready
exec sleep 1000
HOOK
chmod +x "$T/hooks/stubborn"
hs volume set vol0 --hook "$T/hooks/stubborn" >/dev/null
hs snapshot create vol0 --name s4 >/dev/null 2>"$T/s4.err" || fail "s4: $(cat "$T/s4.err")"
grep -q "did not end within 3 s" "$T/daemon.log" || fail "no word of the killed holder in the log"
grep -q "application hook(s) failed" "$T/s4.err" || fail "no warning: $(cat "$T/s4.err")"
[ "$(hs --json snapshot list | json_eval "[s['state'] for s in v['snapshots'] if s['name']=='s4'][0]")" = active ] ||
    fail "snapshot s4 did not stand"

# 4. --no-freeze and --no-hooks run none; status lists them; bad hooks are
# refused; '' removes
: >"$PHASES"
hs snapshot create vol0 --name s5 --no-freeze >/dev/null
hs snapshot create vol0 --name s6 --no-hooks >/dev/null
[ ! -s "$PHASES" ] || fail "hooks ran for a --no-freeze or --no-hooks snapshot: $(cat "$PHASES")"
hs snapshot delete vol0@s6 >/dev/null
hs status | grep -q "application hooks in $STATE/hooks.d (3 s a phase): 10-record$" ||
    fail "status does not list the hooks: $(hs status | head -3)"
hs status | grep -q "application hook: $T/hooks/stubborn" || fail "status does not show the volume's hook"
expect_fail 1 "not an executable file" hs volume set vol0 --hook "$STATE/hooks.d/10-record.conf"
expect_fail 2 "absolute path" hs volume set vol0 --hook relative/hook
hs volume set vol0 --hook '' >/dev/null
[ "$(hs --json volume list | json_eval "v['volumes'][0].get('hook')")" = None ] || fail "--hook '' did not remove it"

# 5. the diff limit of a live snapshot
dd if=/dev/urandom of="$VOL_MNT/base" bs=1M count=6 oflag=direct conv=notrunc status=none
sync
held=$(hs --json status | json_eval "v['volumes'][0]['diff_bytes']")
[ "$held" -gt $((4 << 20)) ] || fail "expected more than 4 MiB held, got $held"
expect_fail 1 "holds .* now; a limit of 4 MiB would be below it" hs volume set vol0 --diff-limit 4M
hs volume set vol0 --diff-limit 64M >/dev/null
[ "$(hs --json status | json_eval "v['volumes'][0]['diff_limit']")" = $((64 << 20)) ] || fail "the limit did not change"
dd if=/dev/urandom of="$VOL_MNT/base" bs=1M seek=6 count=18 oflag=direct conv=notrunc status=none
[ "$(hs --json status | json_eval "v['volumes'][0]['diff_bytes']")" -gt $((16 << 20)) ] ||
    fail "the store should hold more than the old limit now"
sync
for s in s1 s4 s5; do
    [ "$(hs --json snapshot list | json_eval "[s['state'] for s in v['snapshots'] if s['name']=='$s'][0]")" = active ] ||
        fail "snapshot $s failed under the raised limit"
done
hs volume set vol0 --diff-limit 40M >/dev/null   # 24 of 40 MiB held: past 50%
hs volume set vol0 --diff-dir "$T" >/dev/null
[ "$(hs --json status | json_eval "v['volumes'][0]['diff_dir']")" = "$T" ] || fail "--diff-dir not kept"

# 6. events and prometheus
hs events --recent 100 --no-follow >"$T/events.txt"
for e in snapshot.created hook.done hook.failed volume.attached volume.changed diff.level; do
    grep -q " $e " "$T/events.txt" || fail "no $e event: $(cat "$T/events.txt")"
done
grep -q "diff.level .*past 50%" "$T/events.txt" || fail "no 50% level event"
hs --json events --recent 5 --no-follow | while read -r line; do
    echo "$line" | json_get '["event"]' >/dev/null || fail "not JSON: $line"
done
hs status --prometheus >"$T/metrics.prom"
grep -q '^hotsnap_up 1$' "$T/metrics.prom" || fail "no hotsnap_up 1"
grep -q '^hotsnap_diff_limit_bytes{volume="vol0"} 41943040$' "$T/metrics.prom" || fail "no diff limit metric"
grep -q '^hotsnap_snapshot_active{volume="vol0",snapshot="s1"} 1$' "$T/metrics.prom" || fail "no snapshot metric"
# an events follower sees a new event as it happens, and ends with the daemon
hs events >"$T/follow.txt" &
FOLLOW=$!
BG_PIDS+=("$FOLLOW")
for i in $(seq 100); do grep -q . "$T/follow.txt" 2>/dev/null && break; hs snapshot delete vol0@s5 >/dev/null 2>&1 || true; sleep 0.1; done
grep -q "snapshot.deleted.*vol0@s5" "$T/follow.txt" || fail "the follower did not see the delete"
umount "$VOL_MNT"
stop_daemon
wait "$FOLLOW" || fail "the events follower did not end cleanly with the daemon"
hs status --prometheus >"$T/down.prom" 2>/dev/null || fail "status --prometheus failed without a daemon"
grep -q '^hotsnap_up 0$' "$T/down.prom" || fail "no hotsnap_up 0 without a daemon"
log "ok"
