#!/bin/bash
# The unix socket: created mode 0600, a stale socket file is replaced, a
# regular file in the way is left alone (the server refuses to start), a
# live server's socket is not stolen, and the file is removed at stop.
# Also serves on TCP (127.0.0.1, port chosen by the kernel).
. "$(dirname "$0")/functions.sh"
requires nbdinfo

# a stale socket: bound by a process that is gone
"$PYTHON" -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$sock"
[ -S "$sock" ] || fail "no stale socket made"
start_server vol vol0 1M
[ "$(stat -c %a "$sock")" = 600 ] || fail "socket mode is $(stat -c %a "$sock")"
nbdinfo --size "$(uri vol0)" | grep -qx 1048576 || fail "the server does not answer"

# a second server on the same path must not take it over
if "$NBD_TESTSERVER" --socket "$sock" vol v 1M mem >"$tmp/second.out" 2>&1; then
	fail "a second server started on a live socket"
fi
grep -q "another server" "$tmp/second.out" || fail "unexpected error: $(cat "$tmp/second.out")"
nbdinfo --size "$(uri vol0)" | grep -qx 1048576 || fail "the first server lost its socket"
stop_server   # checks the socket file is gone

# a regular file in the way stays as it is
echo precious >"$sock"
if "$NBD_TESTSERVER" --socket "$sock" vol v 1M mem >"$tmp/third.out" 2>&1; then
	fail "the server started over a regular file"
fi
[ "$(cat "$sock")" = precious ] || fail "the regular file was touched"
rm -f "$sock"

# tcp: the ready line names the first listen address
coproc TCP { exec "$NBD_TESTSERVER" --listen tcp:127.0.0.1:0 --socket "$sock" vol vol0 1M mem 2>"$tmp/tcp.log"; }
server_pid=$TCP_PID
IFS= read -r line <&"${TCP[0]}" || fail "the tcp server did not start: $(cat "$tmp/tcp.log")"
tcp_uri=${line#ready }
case $tcp_uri in nbd://127.0.0.1:*/vol0) ;; *) fail "unexpected URI $tcp_uri" ;; esac
nbdinfo --size "$tcp_uri" | grep -qx 1048576 || fail "no answer over tcp"
stop_server
