# functions.sh - sourced by every tests/nbd/*.sh scenario.
#
# Gives: requires CMD... (skip with 77 when missing), a temp dir $tmp that is
# always removed, start_server ACTION... (nbd_testserver on $sock, waited for
# by reading its "ready" line: no polling, no sleeps), uri NAME, raw ... (the
# raw Python client), and a cleanup trap that stops only the processes this
# script started (by pid) and prints how to reproduce a failure.
set -euo pipefail

: "${NBD_TESTSERVER:?set by meson: path of nbd_testserver}"
: "${NBD_TESTS_DIR:?set by meson: tests/nbd in the source tree}"
PYTHON=/usr/bin/python3

requires() {
	local c
	for c in "$@"; do
		if ! command -v "$c" >/dev/null 2>&1; then
			echo "SKIP: $c is not installed"
			exit 77
		fi
	done
}

tmp=$(mktemp -d /tmp/hotsnap-nbd.XXXXXX)
sock=$tmp/nbd.sock
server_pid=
bg_pids=

stop_server() {
	local pid=$server_pid rc=0
	server_pid=
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" || rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "nbd_testserver exited with $rc; its log:"
		cat "$tmp/server.log" || true
		return 1
	fi
	if [ -e "$sock" ]; then
		echo "the socket $sock is still there after stop"
		return 1
	fi
}

cleanup() {
	local rc=$?
	set +e
	for p in $bg_pids; do
		kill -TERM "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	stop_server || rc=1
	rm -rf "$tmp"
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
		echo "FAILED with $rc: reproduce with: NBD_TESTSERVER=$NBD_TESTSERVER" \
			"NBD_TESTS_DIR=$NBD_TESTS_DIR bash -x $0"
	fi
	exit "$rc"
}
trap cleanup EXIT

start_server() {
	local line
	coproc SRV { exec "$NBD_TESTSERVER" --socket "$sock" --dir "$tmp" "$@" 2>"$tmp/server.log"; }
	server_pid=$SRV_PID
	if ! IFS= read -r line <&"${SRV[0]}" || [ "${line%% *}" != ready ]; then
		echo "nbd_testserver did not start; its log:"
		cat "$tmp/server.log"
		exit 1
	fi
}

# Takes snapshot "uN" of every volume now (SIGUSR1) and waits until it exists.
take_snapshot() {
	local line
	kill -USR1 "$server_pid"
	IFS= read -r line <&"${SRV[0]}" || fail "no answer to SIGUSR1"
	snapshot=${line#snapshot }
}

uri() {
	echo "nbd+unix:///$1?socket=$sock"
}

raw() {
	"$PYTHON" "$NBD_TESTS_DIR/nbd_raw.py" "$sock" "$@"
}

fail() {
	echo "FAIL: $*"
	exit 1
}
