# shellcheck shell=bash
# tests/system/lib.sh - sourced by every system test.
#
# Each test gets a private directory $T (state dir $STATE inside), runs its
# own daemon, and cleans up on any exit: it thaws and unmounts what it
# mounted under $T, stops its daemon by pid, detaches loop devices whose
# backing file lies under $T, unmounts the FUSE directory and removes $T.
# Nothing is ever killed by name.  A test exits 77 (skip) when a tool or root
# is missing, and on failure prints the daemon's log and how to rerun it.
set -euo pipefail
export LC_ALL=C

TEST_NAME=$(basename "$0" .sh)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HOTSNAP=${HOTSNAP:-$HERE/../../build/hotsnap}
T=""
STATE=""
DAEMON_PID=""
BG_PIDS=()
AT_EXIT=()

log() { printf '[%s] %s\n' "$TEST_NAME" "$*"; }
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

require_root() { [ "$(id -u)" = 0 ] || skip "needs root"; }
require() {
    local c
    for c in "$@"; do command -v "$c" >/dev/null 2>&1 || skip "needs $c"; done
}
require_block() {
    require_root
    [ -c /dev/fuse ] || skip "needs /dev/fuse"
    [ -c /dev/loop-control ] || skip "needs loop devices"
    [ -x "$HOTSNAP" ] || fail "no hotsnap binary at $HOTSNAP (build first)"
}

# Mount points under $T, deepest first.
_mounts_under_t() {
    awk -v t="$T" '{ gsub(/\\040/, " ", $5); if (index($5, t "/") == 1) print $5 }' \
        /proc/self/mountinfo | sort -r
}

cleanup() {
    local rc=$? m p dev back i
    set +e
    if [ -n "$WATCHDOG_PID" ]; then
        pkill -TERM -P "$WATCHDOG_PID" 2>/dev/null
        kill -TERM "$WATCHDOG_PID" 2>/dev/null
    fi
    # a job held at a pause point goes on (opening a FIFO read-write does
    # not block, and wakes a reader waiting for a writer)
    exec 3>&-
    if [ -n "$T" ] && [ -d "$T/holds" ]; then
        for p in "$T"/holds/*; do [ -p "$p" ] && { exec 4<>"$p"; exec 4>&-; rm -f "$p"; }; done
    fi
    for p in "${BG_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    # our loop devices, listed now: once a mount under $T is gone (lazily),
    # a loop device on a file inside it no longer shows a path under $T
    local our_loops=()
    if [ -n "$T" ]; then
        mapfile -t our_loops < <(losetup -n -O NAME,BACK-MAJ:MIN,BACK-INO,BACK-FILE 2>/dev/null |
            awk -v t="$T/" 'index($4, t) == 1 { print $1, $2, $3 }')
        # file systems on our volumes first (thawed, in case a test froze one)
        for m in $(_mounts_under_t); do
            [ "$m" = "$STATE/mnt" ] && continue
            fsfreeze -u "$m" 2>/dev/null
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
        done
    fi
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null
        for i in $(seq 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DAEMON_PID" 2>/dev/null
        wait "$DAEMON_PID" 2>/dev/null
    fi
    if [ -n "$T" ]; then
        # loop devices on files of ours (the daemon's, or the test's own)
        local l id
        for l in "${our_loops[@]}"; do   # "NAME MAJ:MIN INO": still the same file?
            id=$(losetup -n -O NAME,BACK-MAJ:MIN,BACK-INO "${l%% *}" 2>/dev/null | xargs)
            [ "$id" = "$l" ] && losetup -d "${l%% *}" 2>/dev/null
        done
        for m in $(_mounts_under_t); do umount -l "$m" 2>/dev/null; done
        if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
            echo "--- $TEST_NAME failed (exit $rc); daemon log:" >&2
            tail -n 40 "$T/daemon.log" >&2 2>/dev/null
            echo "--- rerun: sudo $0   (HOTSNAP=$HOTSNAP; keep files: KEEP=1)" >&2
        fi
        if [ "${KEEP:-0}" = 1 ]; then echo "kept $T" >&2; else rm -rf "$T"; fi
    fi
    for ((i = ${#AT_EXIT[@]} - 1; i >= 0; i--)); do eval "${AT_EXIT[i]}" 2>/dev/null; done
    exit "$rc"
}

setup() {
    T=$(mktemp -d "/tmp/hs-$TEST_NAME.XXXXXX")
    STATE=$T/state
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    # meson ends a test past its timeout (600 s) with SIGKILL, which no trap
    # sees: the test's loop devices and mounts would outlive it.  Before
    # that, the watchdog ends the test's own children (by parent pid) and
    # the test itself with SIGTERM, so cleanup runs.  A safety net, not a
    # measure: no test is meant to come near it.
    local deadline=${HS_TEST_DEADLINE:-560} self=$$
    (
        sleep "$deadline" || exit 0
        echo "[$TEST_NAME] still running after $deadline s: ending it so it cleans up" >&3
        kill -TERM "$self"
        sleep 1
        pkill -TERM -P "$self"
    ) </dev/null >/dev/null 3>&2 2>/dev/null &   # quiet when it is ended
    WATCHDOG_PID=$!
    disown "$WATCHDOG_PID"   # its end is no news
}

hs() { "$HOTSNAP" --state-dir "$STATE" "$@"; }

# _ca_signed_client DIR SUB TEMPLATE: DIR/SUB/client-key.pem and a
# client-cert.pem from TEMPLATE, signed by make_tls_keys' CA.
_ca_signed_client() {
    certtool --generate-privkey --outfile "$1/$2/client-key.pem" 2>/dev/null
    certtool --generate-certificate --load-privkey "$1/$2/client-key.pem" \
        --load-ca-certificate "$1/pki/ca-cert.pem" --load-ca-privkey "$1/ca-key.pem" \
        --template "$3" --outfile "$1/$2/client-cert.pem" 2>/dev/null
}

# make_tls_keys DIR: what TLS tests need, made with GnuTLS's tools:
# DIR/keys.psk (user alice) and DIR/wrong.psk (alice, another key); a CA
# that signs DIR/pki (server: localhost, 127.0.0.1) and DIR/client (CN
# backup-server), as qemu and libnbd read them; DIR/rogue, a client whose
# certificate signs itself; DIR/nocert, a client with the CA alone;
# DIR/expired, a client whose CA-signed certificate expired in 2020.
make_tls_keys() {
    local k=$1
    mkdir -p "$k/pki" "$k/client" "$k/rogue" "$k/nocert"
    psktool -u alice -p "$k/keys.psk" >/dev/null 2>&1
    psktool -u alice -p "$k/wrong.psk" >/dev/null 2>&1
    certtool --generate-privkey --outfile "$k/ca-key.pem" 2>/dev/null
    printf 'cn = hotsnap test CA\nca\ncert_signing_key\nexpiration_days = 2\n' >"$k/ca.info"
    certtool --generate-self-signed --load-privkey "$k/ca-key.pem" --template "$k/ca.info" \
        --outfile "$k/pki/ca-cert.pem" 2>/dev/null
    certtool --generate-privkey --outfile "$k/pki/server-key.pem" 2>/dev/null
    printf 'cn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 2\n' >"$k/server.info"
    certtool --generate-certificate --load-privkey "$k/pki/server-key.pem" \
        --load-ca-certificate "$k/pki/ca-cert.pem" --load-ca-privkey "$k/ca-key.pem" \
        --template "$k/server.info" --outfile "$k/pki/server-cert.pem" 2>/dev/null
    chmod 600 "$k/pki/server-key.pem" "$k/keys.psk"
    cp "$k/pki/ca-cert.pem" "$k/client/ca-cert.pem"
    cp "$k/pki/ca-cert.pem" "$k/nocert/ca-cert.pem"
    cp "$k/pki/ca-cert.pem" "$k/rogue/ca-cert.pem"
    printf 'cn = backup-server\ntls_www_client\nsigning_key\nexpiration_days = 2\n' >"$k/client.info"
    _ca_signed_client "$k" client "$k/client.info"
    # a client whose certificate, signed by the CA, has expired
    mkdir -p "$k/expired"
    cp "$k/pki/ca-cert.pem" "$k/expired/ca-cert.pem"
    printf 'cn = old-backup-server\ntls_www_client\nsigning_key\nactivation_date = "2020-01-01 00:00:00 UTC"\nexpiration_date = "2020-02-01 00:00:00 UTC"\n' >"$k/expired.info"
    _ca_signed_client "$k" expired "$k/expired.info"
    certtool --generate-privkey --outfile "$k/rogue/client-key.pem" 2>/dev/null
    certtool --generate-self-signed --load-privkey "$k/rogue/client-key.pem" \
        --template "$k/client.info" --outfile "$k/rogue/client-cert.pem" 2>/dev/null
}

# at_exit CMD: cleanup runs CMD (last registered first), even when the test
# fails: for what a test makes outside $T.
at_exit() { AT_EXIT+=("$*"); }

# Starts a daemon in the background and waits until it answers.  Its test
# pause points (src/common/test_hold.h) look in $T/holds: see hold_arm.
start_daemon() {
    HOTSNAP_TEST_HOLD=$T/holds "$HOTSNAP" --state-dir "$STATE" daemon "$@" >>"$T/daemon.log" 2>&1 &
    DAEMON_PID=$!
    local i
    for i in $(seq 200); do
        hs status >/dev/null 2>&1 && return 0
        kill -0 "$DAEMON_PID" 2>/dev/null || fail "the daemon exited at start: $(tail -3 "$T/daemon.log")"
        sleep 0.05
    done
    fail "the daemon did not answer"
}

stop_daemon() {
    [ -n "$DAEMON_PID" ] || return 0
    kill -TERM "$DAEMON_PID"
    wait "$DAEMON_PID" || fail "the daemon exited with status $? on SIGTERM"
    DAEMON_PID=""
}

# A job of the daemon made to stand still at pause point NAME, without
# timing: hold_arm NAME before starting the job; hold_wait NAME returns once
# the job stands there (it has opened the FIFO); hold_release lets it go on.
hold_arm() {
    mkdir -p "$T/holds"
    HOLD_SEEN=$(grep -c "test hold: waiting at $1\$" "$T/daemon.log" || true)
    mkfifo "$T/holds/$1"
}
hold_wait() {
    local i
    for i in $(seq 400); do
        [ "$(grep -c "test hold: waiting at $1\$" "$T/daemon.log" || true)" -gt "$HOLD_SEEN" ] && break
        [ "$i" = 400 ] && fail "the daemon never reached pause point $1"
        sleep 0.05
    done
    exec 3>"$T/holds/$1"
    rm "$T/holds/$1"
}
hold_release() { exec 3>&-; }

bg() { "$@" & BG_PIDS+=("$!"); }

stop_bg() {
    local p
    for p in "${BG_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    BG_PIDS=()
}

# Forgets a background pid the test has waited for itself.
bg_forget() {
    local p keep=()
    for p in "${BG_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    BG_PIDS=("${keep[@]}")
}

# sha256 of a device or file, read with O_DIRECT (past any page cache).
sha_dev() { dd if="$1" iflag=direct bs=1M status=none | sha256sum | cut -d' ' -f1; }
sha_file() { sha256sum "$1" | cut -d' ' -f1; }

# Checksums of every regular file under a directory, sorted by path.
tree_sums() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum); }

# A value from a JSON document on stdin: json_get '["volumes"][0]["name"]'
json_get() { /usr/bin/python3 -c 'import json,sys; v=json.load(sys.stdin); print(eval("v"+sys.argv[1]))' "$1"; }
# An expression over the document v on stdin: json_eval 'len(v["snapshots"])'
json_eval() { /usr/bin/python3 -c 'import json,sys; v=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

# Creates a volume on a sparse file, attaches it, makes ext4 and mounts it.
# Sets VOL_DEV and VOL_MNT.
make_ext4_volume() {
    local name=$1 size=$2
    shift 2
    hs volume create "$name" --backing "$T/$name.img" --size "$size" "$@" >/dev/null
    VOL_DEV=$(hs volume attach "$name")
    mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 "$VOL_DEV"
    VOL_MNT=$T/mnt-$name
    mkdir -p "$VOL_MNT"
    mount -o nodiscard "$VOL_DEV" "$VOL_MNT"
}

# Fills a directory with files of known content (a few sizes).
fill_files() {
    local dir=$1 n=${2:-20} i
    mkdir -p "$dir"
    for i in $(seq "$n"); do
        head -c $((i * 37 * 1024 + 123)) /dev/urandom >"$dir/file$i"
    done
    dd if=/dev/urandom of="$dir/big" bs=1M count="${3:-32}" status=none
    sync
}

expect_fail() {   # expect_fail STATUS WORDS [--] CMD... : exit STATUS, stderr has WORDS
    local want=$1 words=$2 rc=0 err
    shift 2
    [ "$1" = -- ] && shift
    err=$("$@" 2>&1 >/dev/null) || rc=$?
    [ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want (stderr: $err)"
    echo "$err" | grep -qiE -- "$words" || fail "'$*': message '$err' does not say '$words'"
    [ "$(echo "$err" | wc -l)" -le 2 ] || fail "'$*': message is not one clear line: $err"
}
