#!/bin/bash
# Restart: volumes survive the daemon, snapshots do not, and say so.
# Two volumes with known data and snapshots; the daemon stops on SIGTERM and
# a new one starts on the same state dir: the same volumes (names, sizes,
# chunk sizes, backings, limits), the same bytes, and every snapshot listed
# as failed and lost "when the daemon stopped", refused by backup, attach and
# NBD with that reason, deletable.  Then the same after SIGKILL: the dead
# FUSE mount and the loop devices on it are left behind; the next daemon
# must start anyway, detach them, and serve data written with
# O_DIRECT|O_SYNC before the kill.
. "$(dirname "$0")/lib.sh"
require_block
require nbdcopy
setup
start_daemon

hs volume create a --backing "$T/a.img" --size 64M --chunk-size 64K --diff-limit 16M >/dev/null
hs volume create b --backing "$T/b.img" --size 32M >/dev/null
da=$(hs volume attach a)
db=$(hs volume attach b)
dd if=/dev/urandom of="$da" bs=1M count=64 oflag=direct status=none
dd if=/dev/urandom of="$db" bs=1M count=32 oflag=direct status=none
hs snapshot create a b --name pair >/dev/null
hs snapshot create a --name solo >/dev/null
# changes after the snapshots: the diff store holds something at the stop
dd if=/dev/urandom of="$da" bs=64k count=16 seek=100 oflag=direct status=none
dd if=/dev/urandom of="$db" bs=4k count=16 seek=7 oflag=direct status=none
ra=$(sha_dev "$da")
rb=$(sha_dev "$db")

# what must survive: the definition of each volume
volumes() {
    hs --json volume list | /usr/bin/python3 -c '
import json, sys
for v in json.load(sys.stdin)["volumes"]:
    print(v["name"], v["size"], v["chunk_size"], v["cow_buffer"], v["diff_limit"], v["backing"], v["state"])'
}
before=$(volumes)

# every snapshot of the previous run: failed, lost, with the reason
check_lost() {   # check_lost SNAPSHOT...
    local s doc
    for doc in snapshot-list status; do
        if [ $doc = status ]; then hs --json status; else hs --json snapshot list; fi >"$T/$doc.json"
    done
    for s in "$@"; do
        for doc in snapshot-list status; do
            /usr/bin/python3 - "$T/$doc.json" "$s" <<'PY' || fail "$doc does not report $s as lost"
import json, sys
doc, name = json.load(open(sys.argv[1])), sys.argv[2]
found = [x for x in doc["snapshots"] if x["snapshot"] == name]
if len(found) != 1:
    sys.exit(f"{name}: listed {len(found)} times")
x = found[0]
ok = x["state"] == "failed" and x.get("lost") is True and "lost when the daemon stopped" in x.get("reason", "")
if not ok:
    sys.exit(f"{name}: {x}")
PY
        done
        hs snapshot list | grep "^$s " | grep -q "failed .*lost when the daemon stopped" ||
            fail "snapshot list does not show $s as lost: $(hs snapshot list | grep "^$s ")"
        expect_fail 1 "snapshot $s is gone: lost when the daemon stopped" \
            hs backup "$s" -o "$T/lost.raw" --no-progress
        [ ! -e "$T/lost.raw" ] || fail "a refused backup of $s left $T/lost.raw"
        expect_fail 1 "snapshot $s is gone: lost when the daemon stopped" hs snapshot attach "$s"
        if nbdcopy "nbd+unix:///$s?socket=$STATE/nbd.sock" "$T/lost.raw" 2>/dev/null; then
            fail "NBD serves the lost snapshot $s"
        fi
        rm -f "$T/lost.raw"
    done
}

# --- SIGTERM: a clean stop leaves nothing attached or mounted
stop_daemon
losetup -n -O NAME,BACK-FILE | grep -F "$STATE/mnt/" &&
    fail "the stopped daemon left loop devices on its FUSE files"
findmnt "$STATE/mnt" >/dev/null && fail "the stopped daemon left its FUSE mount"
start_daemon
[ "$(volumes)" = "$before" ] || fail "the volumes changed over a restart: $(diff <(echo "$before") <(volumes))"
# attached by request before: attached again, under the same stable names
for v in a b; do
    dev=$(hs --json volume list | json_eval "[x.get('device','') for x in v['volumes'] if x['name']=='$v'][0]")
    [ -n "$dev" ] || fail "volume $v, attached before the restart, is not attached again"
    [ "$(readlink "$STATE/dev/$v")" = "$dev" ] || fail "$STATE/dev/$v does not point at $dev"
done
da=$(hs volume attach a)
db=$(hs volume attach b)
[ "$(sha_dev "$STATE/dev/a")" = "$ra" ] || fail "volume a's data changed over a SIGTERM restart (by its stable name)"
[ "$(sha_dev "$da")" = "$ra" ] || fail "volume a's data changed over a SIGTERM restart"
[ "$(sha_dev "$db")" = "$rb" ] || fail "volume b's data changed over a SIGTERM restart"
check_lost a@pair b@pair a@solo
hs status | grep -q "snapshot a@solo: failed: lost when the daemon stopped" ||
    fail "status does not say a@solo was lost"
hs volume detach b
expect_fail 1 "volume 'b' has snapshots: delete them first.*b@pair" hs volume remove b
db=$(hs volume attach b)
hs snapshot delete a@pair
hs snapshot list | grep -q "^a@pair " && fail "a@pair is still listed after delete"
hs --json snapshot list | grep -q '"a@pair"' && fail "a@pair is still in snapshot list --json after delete"
check_lost b@pair a@solo
# a new snapshot may take a lost one's name, and is an ordinary snapshot
hs snapshot create b --name pair >/dev/null
[ "$(hs --json snapshot list | /usr/bin/python3 -c '
import json, sys
print(*[s["state"] for s in json.load(sys.stdin)["snapshots"] if s["snapshot"] == "b@pair"])')" = active ] ||
    fail "b@pair, taken again, is not one active snapshot"
hs snapshot delete b@pair

# --- SIGKILL: data written with O_DIRECT|O_SYNC survives; the next daemon
# starts over the dead mount and the stale loop devices
dd if=/dev/urandom of="$T/pattern" bs=1M count=3 status=none
dd if="$T/pattern" of="$da" bs=1M seek=17 oflag=direct,sync status=none
dd if="$T/pattern" of="$db" bs=4k seek=1001 oflag=direct,sync status=none
ra=$(sha_dev "$da")
rb=$(sha_dev "$db")
hs snapshot create a --name k >/dev/null
kill -KILL "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null || true
DAEMON_PID=""
[ "$(losetup -n -O BACK-FILE "$da")" = "$STATE/mnt/a" ] ||
    fail "after SIGKILL, $da is not left on the dead FUSE file (the test tests nothing)"
if stat "$STATE/mnt/a" >/dev/null 2>&1; then fail "the FUSE mount of a killed daemon still answers"; fi
start_daemon
for dev in "$da" "$db"; do
    back=$(losetup -n -O BACK-FILE "$dev" 2>/dev/null || true)
    # the volumes are attached again, maybe under a freed number: those are not stale
    now=$(hs --json volume list | json_eval "' '.join(x.get('device','') for x in v['volumes'])")
    case " $now " in *" $dev "*) continue ;; esac
    case $back in "$STATE"/mnt/*) fail "the new daemon left the stale $dev on $back" ;; esac
done
[ "$(hs --json status | json_get '["fuse_mounted"]')" = True ] || fail "the new daemon has no FUSE mount"
[ "$(volumes)" = "$before" ] || fail "the volumes changed over a SIGKILL restart: $(diff <(echo "$before") <(volumes))"
da=$(hs volume attach a)
db=$(hs volume attach b)
[ "$(sha_dev "$da")" = "$ra" ] || fail "volume a lost data written with O_DIRECT|O_SYNC before SIGKILL"
[ "$(sha_dev "$db")" = "$rb" ] || fail "volume b lost data written with O_DIRECT|O_SYNC before SIGKILL"
cmp -s "$T/pattern" <(dd if="$da" iflag=direct bs=1M skip=17 count=3 status=none) ||
    fail "the pattern written to a before SIGKILL is not there"
check_lost a@k a@solo
hs snapshot delete a@k
hs snapshot delete a@solo
[ "$(hs --json snapshot list | json_get '["snapshots"].__len__()')" = 0 ] ||
    fail "deleted lost snapshots are still listed"

# --- shutdown returns once the daemon is gone, mounts and loop devices with
# it (a script may remove the state dir next); volumes still attached
hs shutdown || fail "hotsnap shutdown failed"
if kill -0 "$DAEMON_PID" 2>/dev/null && [ "$(ps -o stat= -p "$DAEMON_PID" | cut -c1)" != Z ]; then
    fail "hotsnap shutdown returned while the daemon still runs"
fi
wait "$DAEMON_PID" || fail "the daemon exited with status $? after hotsnap shutdown"
DAEMON_PID=""
losetup -n -O NAME,BACK-FILE | grep -F "$STATE/mnt/" &&
    fail "hotsnap shutdown returned with loop devices left on the FUSE files"
findmnt "$STATE/mnt" >/dev/null && fail "hotsnap shutdown returned with the FUSE mount left"
log "volumes and data survived SIGTERM and SIGKILL; snapshots reported lost, refused, deleted; shutdown waits for the daemon"
