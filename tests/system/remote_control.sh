#!/bin/bash
# The control channel over the network (issue 12): `daemon --control
# tcp:HOST:PORT` and `hotsnap --remote HOST:PORT --tls-psk FILE |
# --tls-certificates DIR COMMAND`:
#  1. without TLS credentials the daemon does not start, and says why;
#  2. over PSK: status, volume list, snapshot create / list / delete and
#     bookmark list run remotely and match what the local socket says; the
#     daemon logs each remote command with the client's identity;
#  3. over X.509 with a client certificate the same; a certificate the CA
#     did not sign, and a wrong key, are refused with a message;
#  4. what works on the host's paths and devices (volume create, attach,
#     shutdown) is refused remotely, changes nothing, and says how to do it;
#     a backup to a local file is refused by the client;
#  5. `events` over the network sees a snapshot taken locally.
. "$(dirname "$0")/lib.sh"
require_block
require certtool psktool
setup
PORT=$((20000 + ($$ + 11) % 20000))
make_tls_keys "$T"

# 1.
expect_fail 1 "--control tcp:127.0.0.1:$PORT .*needs TLS: give --tls-psk FILE or --tls-certificates DIR" \
    "$HOTSNAP" --state-dir "$STATE" daemon --no-nbd --control "tcp:127.0.0.1:$PORT"

start_daemon --no-nbd --control "tcp:127.0.0.1:$PORT" --tls-psk "$T/keys.psk" \
    --tls-certificates "$T/pki"
truncate -s 32M "$T/v.img"
hs volume create v --backing "$T/v.img" >/dev/null
psk() { "$HOTSNAP" --remote "127.0.0.1:$PORT" --tls-psk "$T/keys.psk" "$@"; }
x509() { "$HOTSNAP" --remote "127.0.0.1:$PORT" --tls-certificates "$T/client" "$@"; }

# 2. PSK
[ "$(psk --json status | json_get '["pid"]')" = "$DAEMON_PID" ] || fail "remote status is not this daemon's"
[ "$(psk volume list --raw --noheadings -o NAME,SIZE --bytes)" = "v 33554432" ] ||
    fail "remote volume list: $(psk volume list)"
[ "$(psk snapshot create v --name r1 --no-freeze)" = "v@r1" ] || fail "remote snapshot create"
[ "$(hs snapshot list --raw --noheadings -o SNAPSHOT,STATE)" = "v@r1 active" ] ||
    fail "the remote snapshot is not in the local list"
[ "$(psk snapshot list --raw --noheadings -o SNAPSHOT)" = "v@r1" ] || fail "remote snapshot list"
psk bookmark list >/dev/null || fail "remote bookmark list"
grep -q "remote PSK identity 'alice': snapshot.create" "$T/daemon.log" ||
    fail "the daemon did not log the remote command with its identity"

# 3. X.509
[ "$(x509 snapshot list --raw --noheadings -o SNAPSHOT)" = "v@r1" ] || fail "remote snapshot list over X.509"
grep -q "remote certificate 'CN=backup-server': snapshot.list" "$T/daemon.log" ||
    fail "the daemon did not log the certificate's name"
# (TLS 1.3: the client is through its handshake before the server checks
# its certificate; the server then hangs up and logs why)
expect_fail 1 "127.0.0.1:$PORT (closed the connection without an answer: it refused this client|: TLS handshake failed)" \
    "$HOTSNAP" --remote "127.0.0.1:$PORT" --tls-certificates "$T/rogue" status
grep -q "remote control: a client was refused: TLS handshake failed" "$T/daemon.log" ||
    fail "the daemon did not log why it refused the rogue certificate"
expect_fail 1 "127.0.0.1:$PORT: TLS handshake failed.*is the key the server's" \
    "$HOTSNAP" --remote "127.0.0.1:$PORT" --tls-psk "$T/wrong.psk" status
expect_fail 2 "needs --tls-psk FILE or --tls-certificates DIR" \
    "$HOTSNAP" --remote "127.0.0.1:$PORT" status

# 4. host-local commands
before=$(hs --json volume list)
expect_fail 1 "'volume.create' is not run over the network" \
    psk volume create x --backing "$T/x.img" --size 1M
expect_fail 1 "'volume.attach' is not run over the network" psk volume attach v
expect_fail 1 "'shutdown' is not run over the network" psk shutdown
[ "$(hs --json volume list)" = "$before" ] || fail "a refused remote command changed something"
[ -e "$T/x.img" ] && fail "a refused remote volume create made its backing file"
kill -0 "$DAEMON_PID" || fail "a remote shutdown stopped the daemon"
expect_fail 1 "hands a file of this machine to the daemon" psk backup v@r1 -o "$T/out.raw"
[ -e "$T/out.raw" ] && fail "a refused remote backup left a file"

# 5. events across the network
# (--recent: what happened before it connected is shown too, so the order
# of the two does not matter)
hs snapshot create v --name local1 --no-freeze >/dev/null
psk events --recent 50 --json >"$T/events" 2>&1 &
ev=$!
BG_PIDS+=("$ev")
for i in $(seq 200); do grep -q 'v@local1' "$T/events" && break; sleep 0.05; done
grep -q '"snapshot.created".*v@local1\|v@local1.*"snapshot.created"' "$T/events" ||
    fail "remote events did not see the local snapshot: $(cat "$T/events")"
kill "$ev"; wait "$ev" 2>/dev/null || true; bg_forget "$ev"
psk snapshot delete v@r1 >/dev/null && psk snapshot delete v@local1 >/dev/null
[ -z "$(hs snapshot list --raw --noheadings -o SNAPSHOT)" ] || fail "remote delete left snapshots"
log "remote control over TLS: PSK and X.509, identities logged, host-local commands refused, events followed"
