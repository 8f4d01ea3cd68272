#!/bin/bash
# hotsnap as a service (issue 14):
#  1. install into a DESTDIR: the file list, and systemd-analyze verify
#     passes on the unit;
#  2. a volume attached stays attached: a restarted daemon attaches it again
#     under its stable name STATE/dev/NAME, and under a test NOTIFY_SOCKET
#     says READY=1 only once that name reads; the data is the same;
#  3. --config: options from the file, the command line wins, a bad key is
#     refused with its line; the defaults for new volumes apply, and what
#     volume create says wins;
#  4. SIGHUP makes a detached daemon open its log file again (logrotate);
#  5. bash completion offers volume and snapshot names;
#  6. with --json, errors are JSON on stdout and delete/shutdown print JSON;
#     sizes take fractions; log lines carry the date;
#  7. under the journal, entries with VOLUME=, SNAPSHOT=, HOTSNAP_EVENT= and
#     PRIORITY=, and "<N>" priority lines on stderr when no journal listens.
. "$(dirname "$0")/lib.sh"
require_block
require mkfs.ext4
setup
BUILD=$(dirname "$HOTSNAP")

# 1. install
if command -v meson >/dev/null; then
    DESTDIR=$T/root meson install -C "$BUILD" --no-rebuild --quiet >/dev/null ||
        fail "meson install into a DESTDIR failed"
    prefix=$(meson introspect "$BUILD" --buildoptions |
        /usr/bin/python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"]=="prefix"][0])')
    (cd "$T/root" && find . -type f | sort) >"$T/files"
    for f in sbin/hotsnap lib/systemd/system/hotsnap.service share/man/man8/hotsnap.8 \
             share/bash-completion/completions/hotsnap share/hotsnap/hooks/mariadb \
             share/hotsnap/hooks/postgresql share/hotsnap/hooks/README.md; do
        grep -qx "\./${prefix#/}/$f" "$T/files" || fail "not installed: $prefix/$f ($(cat "$T/files"))"
    done
    grep -q "/hotsnap/hotsnap.conf$" "$T/files" || fail "no default config installed"
    for g in volume snapshot backup restore image bookmark status events shutdown daemon; do
        grep -q "/man8/hotsnap-$g.8$" "$T/files" || fail "no man page hotsnap-$g(8)"
    done
    man -l "$T/root$prefix/share/man/man8/hotsnap-volume.8" 2>/dev/null | grep -q -- "--diff-limit" ||
        fail "hotsnap-volume(8) does not describe --diff-limit"
    [ -x "$T/root$prefix/sbin/hotsnap" ] || fail "the installed binary is not executable"
    if command -v systemd-analyze >/dev/null; then
        unit=$T/root$prefix/lib/systemd/system/hotsnap.service
        grep -q "^Type=notify" "$unit" || fail "the unit is not Type=notify"
        # verified where it will run from: ExecStart pointed into the DESTDIR
        sed "s|^ExecStart=$prefix/sbin/hotsnap|ExecStart=$T/root$prefix/sbin/hotsnap|" "$unit" >"$T/hotsnap.service"
        systemd-analyze verify --man=no "$T/hotsnap.service" >"$T/verify.log" 2>&1 ||
            fail "systemd-analyze verify: $(cat "$T/verify.log")"
    fi
    log "installed $(wc -l <"$T/files") files; the unit verifies"
else
    log "no meson: install not checked"
fi

# 2. attached volumes come back, named, before READY
start_daemon
make_ext4_volume vol0 64M
fill_files "$VOL_MNT/data" 5 4
ref=$(tree_sums "$VOL_MNT")
[ "$(readlink "$STATE/dev/vol0")" = "$VOL_DEV" ] || fail "no stable name $STATE/dev/vol0 -> $VOL_DEV"
hs snapshot create vol0 --name s1 >/dev/null
sdev=$(hs snapshot attach vol0@s1)
[ "$(readlink "$STATE/dev/vol0@s1")" = "$sdev" ] || fail "no stable name for vol0@s1"
hs volume create spare --backing "$T/spare.img" --size 16M >/dev/null   # never attached
umount "$VOL_MNT"
stop_daemon
[ ! -e "$STATE/dev/vol0" ] || fail "the stopped daemon left $STATE/dev/vol0"
[ ! -e "$STATE/dev/vol0@s1" ] || fail "the stopped daemon left $STATE/dev/vol0@s1"
/usr/bin/python3 "$HERE/notify_ready.py" "$T/notify" "$STATE" vol0 -- \
    "$HOTSNAP" --state-dir "$STATE" daemon >"$T/notify.out" 2>&1 || rc=$?
DAEMON_PID=$(awk '/^pid /{print $2; exit}' "$T/notify.out")
[ "${rc:-0}" = 0 ] || fail "READY: $(cat "$T/notify.out")"
grep -q "notify: READY=1 | STATUS=serving 2 volumes, 1 attached" "$T/notify.out" ||
    fail "READY without its status: $(cat "$T/notify.out")"
dev=$(readlink "$STATE/dev/vol0")
[ "$(hs --json volume list | json_eval "[x.get('device') for x in v['volumes'] if x['name']=='vol0'][0]")" = "$dev" ] ||
    fail "volume list and the stable name disagree"
[ "$(hs --json volume list | json_eval "[x.get('device') for x in v['volumes'] if x['name']=='spare'][0]")" = None ] ||
    fail "a volume never attached was attached"
mount "$STATE/dev/vol0" "$VOL_MNT"
[ "$(tree_sums "$VOL_MNT")" = "$ref" ] || fail "the files differ after the restart"
umount "$VOL_MNT"
hs volume detach vol0 >/dev/null
[ ! -e "$STATE/dev/vol0" ] || fail "detach left the stable name"
hs shutdown >/dev/null   # not our child (the notify script started it): shutdown waits
DAEMON_PID=""
start_daemon
[ "$(hs --json volume list | json_eval "[x.get('device') for x in v['volumes'] if x['name']=='vol0'][0]")" = None ] ||
    fail "a volume detached by request was attached again"
stop_daemon
log "attached again under its stable name before READY; detached stays detached"

# 3. the config file
cat >"$T/hotsnap.conf" <<CONF
# a comment
hook-timeout = 7
dev-dir = $T/names
no-nbd = yes
default-chunk-size = 64K
default-cow-buffer = 2M
default-diff-limit = 25%
default-diff-dir = $T/diffs
default-cache = none
CONF
start_daemon --config "$T/hotsnap.conf" --hook-timeout 9 --default-cow-buffer 1.5M
[ "$(hs --json status | json_get '["hook_timeout_s"]')" = 9 ] || fail "the command line did not win over the file"
[ "$(hs --json status | json_get '["nbd_listen"]')" = "[]" ] || fail "no-nbd from the file was not applied"
dev=$(hs volume attach vol0)
[ "$(readlink "$T/names/vol0")" = "$dev" ] || fail "dev-dir from the file was not applied"
hs volume detach vol0 >/dev/null
# what a new volume gets: the file's defaults, the command line's over them,
# and what volume create says over both
truncate -s 64M "$T/d1.img" "$T/d2.img"
hs volume create d1 --backing "$T/d1.img" >/dev/null
got=$(hs --json volume list | json_eval "[(x['chunk_size'], x['cow_buffer'], x['diff_limit'], x['diff_dir'], x['cache']) for x in v['volumes'] if x['name'] == 'd1'][0]")
[ "$got" = "(65536, 1572864, 16777216, '$T/diffs', 'none')" ] ||
    fail "a new volume did not get the configured defaults: $got"
hs volume create d2 --backing "$T/d2.img" --chunk-size 4K --diff-limit 8M --cache auto >/dev/null
got=$(hs --json volume list | json_eval "[(x['chunk_size'], x['diff_limit'], x['cache']) for x in v['volumes'] if x['name'] == 'd2'][0]")
[ "$got" = "(4096, 8388608, 'auto')" ] || fail "volume create's own values did not win over the defaults: $got"
hs volume remove d1 && hs volume remove d2
stop_daemon
expect_fail 2 "default-chunk-size is not a power of two" \
    "$HOTSNAP" --state-dir "$STATE" daemon --default-chunk-size 3K
printf 'default-diff-limit = 150%%\n' >"$T/bad-limit.conf"
expect_fail 2 "bad-limit.conf.*default-diff-limit '150%' *: a share is 1% to 100%" \
    "$HOTSNAP" --state-dir "$STATE" daemon --config "$T/bad-limit.conf"
printf 'hook-timeout = 7\nhooks-dri = /x\n' >"$T/bad.conf"
expect_fail 2 "bad.conf, line 2: 'hooks-dri' is not a daemon option" \
    "$HOTSNAP" --state-dir "$STATE" daemon --config "$T/bad.conf"

# 4. SIGHUP: the log file opened again
"$HOTSNAP" --state-dir "$STATE" daemon --detach
DAEMON_PID=$(cat "$STATE/daemon.lock")
mv "$STATE/daemon.log" "$STATE/daemon.log.1"
kill -HUP "$DAEMON_PID"
for i in $(seq 100); do grep -qs "opened again" "$STATE/daemon.log" && break; sleep 0.05; done
grep -qs "opened again" "$STATE/daemon.log" || fail "SIGHUP did not open the log again"
kill -0 "$DAEMON_PID" || fail "SIGHUP stopped the daemon"

# 5. completion offers names
hs snapshot create vol0 --name s2 >/dev/null
comp=$(PATH=$BUILD:$PATH bash -c '
    . "$1"
    COMP_WORDS=(hotsnap --state-dir "$2" snapshot delete "")
    COMP_CWORD=5
    _hotsnap
    echo "${COMPREPLY[@]}"
    COMP_WORDS=(hotsnap --state-dir "$2" volume attach "v")
    _hotsnap
    echo "${COMPREPLY[@]}"' _ "$HERE/../../dist/hotsnap.bash-completion" "$STATE")
echo "$comp" | head -1 | grep -qw "vol0@s2" || fail "completion does not offer vol0@s2: $comp"
echo "$comp" | tail -1 | grep -qx "vol0" || fail "completion does not offer vol0: $comp"

# 6. machine-readable always; fractions; the log's dates and priorities
out=$(hs --json snapshot delete vol0@nope 2>/dev/null) && fail "deleting a missing snapshot succeeded"
[ "$(echo "$out" | json_get '["error"]')" = "snapshot vol0@nope does not exist (see 'hotsnap snapshot list')" ] ||
    fail "no JSON error: $out"
out=$(hs --json volume create bad --backing "$T/bad.img" --size 1.5Q 2>/dev/null) && fail "1.5Q accepted"
[ "$(echo "$out" | json_get '["usage"]')" = True ] || fail "no JSON usage error: $out"
[ "$(hs --json snapshot delete vol0@s2 | json_get '["deleted"]')" = "['vol0@s2']" ] || fail "delete printed no JSON"
hs volume create frac --backing "$T/frac.img" --size 1.5M >/dev/null
[ "$(hs --json volume list | json_eval "[x['size'] for x in v['volumes'] if x['name']=='frac'][0]")" = 1572864 ] ||
    fail "--size 1.5M is not 1572864 bytes"
grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3} hotsnapd info: ' "$STATE/daemon.log" ||
    fail "log lines carry no date: $(head -1 "$STATE/daemon.log")"
[ "$(hs --json shutdown | json_get '["stopped"]')" = True ] || fail "shutdown printed no JSON"
DAEMON_PID=""
: >"$T/journal.log"
# 7. under systemd (stderr is the journal's stream): entries with the fields
# VOLUME=, SNAPSHOT=, HOTSNAP_EVENT= and PRIORITY= go to the journal's
# socket; when no journal takes them, "<N>" lines on stderr.  A fake journal
# listens at the journal's socket path when none runs here.
JSOCK=/run/systemd/journal/socket
fake=""
if [ ! -e "$JSOCK" ]; then
    for dir in /run/systemd /run/systemd/journal; do
        [ -d "$dir" ] || { mkdir "$dir" && at_exit "rmdir $dir"; }
    done
    at_exit "rm -f $JSOCK"
    /usr/bin/python3 "$HERE/journal_fake.py" "$JSOCK" "$T/entries" >"$T/fake.out" 2>&1 &
    fake=$!
    BG_PIDS+=("$fake")
    for i in $(seq 200); do grep -q listening "$T/fake.out" && break; sleep 0.05; done
fi
truncate -s 8M "$T/j.img"
JOURNAL_STREAM=$(stat -c '%d:%i' "$T/journal.log") "$HOTSNAP" --state-dir "$T/s2" daemon 2>>"$T/journal.log" &
DAEMON_PID=$!
for i in $(seq 200); do "$HOTSNAP" --state-dir "$T/s2" status >/dev/null 2>&1 && break; sleep 0.05; done
"$HOTSNAP" --state-dir "$T/s2" volume create j --backing "$T/j.img" >/dev/null
"$HOTSNAP" --state-dir "$T/s2" snapshot create j --name s --no-freeze >/dev/null
if [ -n "$fake" ]; then
    want='{"VOLUME": "j", "SNAPSHOT": "j@s", "HOTSNAP_EVENT": "snapshot.created", "PRIORITY": "6", "SYSLOG_IDENTIFIER": "hotsnapd"}'
    check='import json, sys
want = json.loads(sys.argv[1])
for line in open(sys.argv[2]):
    e = json.loads(line)
    if all(e.get(k) == v for k, v in want.items()) and e["MESSAGE"].startswith("event snapshot.created: snapshot j@s"):
        sys.exit(0)
sys.exit(1)'
    for i in $(seq 200); do /usr/bin/python3 -c "$check" "$want" "$T/entries" 2>/dev/null && break; sleep 0.05; done
    /usr/bin/python3 -c "$check" "$want" "$T/entries" ||
        fail "the journal got no snapshot.created entry with its fields: $(cat "$T/entries")"
    grep -q 'snapshot.created' "$T/journal.log" && fail "a line the journal took also went to stderr"
    kill "$fake"; wait "$fake" 2>/dev/null || true; bg_forget "$fake"
    rm -f "$JSOCK"   # none listens now: lines go to stderr, with priorities
fi
"$HOTSNAP" --state-dir "$T/s2" snapshot delete j@s >/dev/null
stop_daemon
if [ -n "$fake" ]; then
    grep -q '^<6>hotsnapd info: event snapshot.deleted' "$T/journal.log" ||
        fail "no <6> line on stderr when no journal listens: $(cat "$T/journal.log")"
fi
log "ok"
