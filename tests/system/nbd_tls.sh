#!/bin/bash
# NBD over TLS (issue 12), with real clients and keys made here by psktool
# and certtool:
#  1. a TCP listener without credentials is refused at start, naming the
#     options that would fix it;
#  2. PSK: nbdinfo over nbds:// sees vol0 read-only; nbdcopy of a snapshot
#     under write load equals the frozen image; the daemon logs the
#     client's PSK identity;
#  3. X.509: qemu-img convert from an nbds:// snapshot (qemu's tls-creds-x509)
#     equals it too; nbdinfo with a client certificate signed by the CA;
#  4. refused: a wrong key, a client certificate not signed by the CA or
#     expired (the daemon says which), an
#     X.509 client without a certificate, a client without TLS (it gets no
#     export list either), a write to a volume over TCP;
#  5. the unix socket still serves without TLS, writable;
#  6. hotsnap backup nbds://...: a remote pull of a snapshot under write load
#     equals the frozen image, raw and qcow2; with --consume the remote diff
#     store lets go of what was read; a wrong key fails with a message and
#     leaves no file; a remote that closes mid-backup leaves no image under
#     the final name (nor a temporary one);
#  7. an incremental pull over a pulled parent reads only the clusters that
#     changed since the parent's bookmark and its chain equals the snapshot;
#     without the bookmark on the remote it fails and says what to do.
. "$(dirname "$0")/lib.sh"
require_block
require nbdinfo nbdcopy qemu-img qemu-io certtool psktool
setup
PORT=$((20000 + ($$ + 7) % 20000))

make_tls_keys "$T"

# 1. no plain text over a network unless asked
expect_fail 1 "tcp:127.0.0.1:$PORT serves volumes over the network and needs TLS: give --tls-psk FILE or --tls-certificates DIR" \
    "$HOTSNAP" --state-dir "$STATE" daemon --nbd "tcp:127.0.0.1:$PORT"

start_daemon --nbd "unix:$STATE/nbd.sock" --nbd "tcp:127.0.0.1:$PORT" \
    --tls-psk "$T/keys.psk" --tls-certificates "$T/pki"
hs volume create vol0 --backing "$T/vol0.img" --size 64M --diff-limit 64M >/dev/null
dev=$(hs volume attach vol0)
dd if=/dev/urandom of="$dev" bs=1M count=64 oflag=direct status=none
ref=$(sha_dev "$dev")
snap=$(hs snapshot create vol0 --no-freeze)
[ "$(hs --json status | json_eval "[x['nbd_uri'] for x in v['snapshots']][0]")" = "nbd+unix:///$snap?socket=$STATE/nbd.sock" ] ||
    fail "status gives the unix URI first"

# 2. PSK
psk_uri() { echo "nbds://alice@127.0.0.1:$PORT/$1?tls-psk-file=$2"; }
info=$(nbdinfo "$(psk_uri vol0 "$T/keys.psk")") || fail "nbdinfo over nbds:// with the PSK failed"
grep -q "export-size: 67108864" <<<"$info" || fail "nbdinfo over TLS: $info"
grep -q "is_read_only: true" <<<"$info" || fail "vol0 is writable over TCP: $info"
bg bash -c "while :; do dd if=/dev/urandom of='$dev' bs=64k count=16 seek=\$((RANDOM % 1000)) oflag=direct conv=notrunc status=none; done"
nbdcopy --connections=4 "$(psk_uri "$snap" "$T/keys.psk")" "$T/psk.raw" || fail "nbdcopy over TLS failed"
stop_bg
[ "$(sha_file "$T/psk.raw")" = "$ref" ] || fail "nbdcopy over TLS (PSK) differs from the frozen image"
[ "$(sha_dev "$dev")" != "$ref" ] || fail "the writers changed nothing: the test tested nothing"
grep -q "TLS on tcp:127.0.0.1:$PORT with PSK identity 'alice'" "$T/daemon.log" ||
    fail "the daemon did not log the PSK identity"

# 3. X.509: qemu-img, and nbdinfo with a client certificate
qemu-img convert -O raw --object "tls-creds-x509,id=tls0,dir=$T/client,endpoint=client" \
    --image-opts "driver=nbd,host=127.0.0.1,port=$PORT,export=$snap,tls-creds=tls0" "$T/x509.raw" ||
    fail "qemu-img convert from nbds:// failed"
[ "$(sha_file "$T/x509.raw")" = "$ref" ] || fail "qemu-img convert over TLS (X.509) differs from the frozen image"
nbdinfo "nbds://127.0.0.1:$PORT/vol0?tls-certificates=$T/client" >/dev/null ||
    fail "nbdinfo with a client certificate failed"
grep -q "TLS on tcp:127.0.0.1:$PORT with certificate 'CN=backup-server'" "$T/daemon.log" ||
    fail "the daemon did not log the client certificate's DN"

# 4. refused
nbdinfo "$(psk_uri vol0 "$T/wrong.psk")" >/dev/null 2>"$T/e1" && fail "a wrong PSK was accepted"
n0=$(grep -c "TLS handshake failed" "$T/daemon.log" || true)
nbdinfo "nbds://127.0.0.1:$PORT/vol0?tls-certificates=$T/rogue" >/dev/null 2>"$T/e2" &&
    fail "a client certificate not signed by the CA was accepted"
nbdinfo "nbds://127.0.0.1:$PORT/vol0?tls-certificates=$T/nocert" >/dev/null 2>"$T/e2" &&
    fail "an X.509 client without a certificate was served"
[ "$(grep -c "TLS handshake failed" "$T/daemon.log")" -ge $((n0 + 2)) ] ||
    fail "the daemon did not log the refused handshakes"
nbdinfo "nbds://127.0.0.1:$PORT/vol0?tls-certificates=$T/expired" >/dev/null 2>"$T/e4" &&
    fail "an expired client certificate was accepted"
grep -qi "client certificate refused: .*expired" "$T/daemon.log" ||
    fail "the daemon did not say the client's certificate expired: $(grep -i refused "$T/daemon.log" | tail -2)"
nbdinfo "nbd://127.0.0.1:$PORT/vol0" >/dev/null 2>"$T/e3" && fail "a client without TLS was served"
nbdinfo --list "nbd://127.0.0.1:$PORT" >"$T/list" 2>&1 && fail "a client without TLS got the export list"
grep -q "vol0" "$T/list" && fail "a client without TLS saw the export names: $(cat "$T/list")"
if qemu-io -f raw --object "tls-creds-x509,id=tls0,dir=$T/client,endpoint=client" \
    --image-opts "driver=nbd,host=127.0.0.1,port=$PORT,export=vol0,tls-creds=tls0" \
    -c "write -P 1 0 4k" 2>/dev/null | grep -q wrote; then
    fail "a write to vol0 over TCP succeeded"
fi

# 5. the unix socket: no TLS needed, writable
qemu-io -f raw -c "write -P 0x5a 0 64k" "nbd+unix:///vol0?socket=$STATE/nbd.sock" | grep -q wrote ||
    fail "the unix socket no longer serves vol0 writable without TLS"
# 6. hotsnap backup from an NBD URI (no local daemon takes part)
bg bash -c "while :; do dd if=/dev/urandom of='$dev' bs=64k count=16 seek=\$((RANDOM % 1000)) oflag=direct conv=notrunc status=none; done"
"$HOTSNAP" --state-dir "$T/none" backup "$(psk_uri "$snap" "$T/keys.psk")" -o "$T/pull.raw" --no-progress >"$T/pull.out" ||
    fail "a remote pull failed: $(cat "$T/pull.out")"
grep -q "over 4 connections" "$T/pull.out" || fail "the pull did not use 4 connections: $(cat "$T/pull.out")"
# a stream takes the windows in order
[ "$("$HOTSNAP" backup "nbd+unix:///$snap?socket=$STATE/nbd.sock" -o - --no-progress 2>/dev/null | sha256sum | cut -d' ' -f1)" = "$ref" ] ||
    fail "a pull streamed to standard output differs from the frozen image"
"$HOTSNAP" backup "$(psk_uri "$snap" "$T/keys.psk")" -o "$T/pull.qcow2" --format qcow2 --consume --no-progress >/dev/null ||
    fail "a remote pull to qcow2 with --consume failed"
stop_bg
[ "$(sha_file "$T/pull.raw")" = "$ref" ] || fail "the remote pull (raw) differs from the frozen image"
qemu-img compare -q -f qcow2 -F raw "$T/pull.qcow2" "$T/pull.raw" || fail "the remote pull (qcow2) differs"
[ "$(hs --json snapshot list | json_eval "[x['consumed_bytes'] for x in v['snapshots']][0]")" = 67108864 ] ||
    fail "--consume over the network did not release the snapshot: $(hs --json snapshot list)"
[ "$(hs --json snapshot list | json_eval "[x['held_bytes'] for x in v['snapshots']][0]")" = 0 ] ||
    fail "the remote diff store still holds originals after a consuming pull"
expect_fail 1 "backup of .* failed: cannot read .*" \
    "$HOTSNAP" backup "$(psk_uri "$snap" "$T/wrong.psk")" -o "$T/wrongkey.raw" --no-progress
[ -e "$T/wrongkey.raw" ] && fail "a failed pull left an image"
/usr/bin/python3 "$HERE/nbd_dying_server.py" "$T/dying.sock" $((64 << 20)) 3 >"$T/dying.out" 2>&1 &
dying=$!
BG_PIDS+=("$dying")
for i in $(seq 100); do grep -q listening "$T/dying.out" && break; sleep 0.05; done
expect_fail 1 "reading the export at offset [0-9]+ failed" \
    "$HOTSNAP" backup "nbd+unix:///x?socket=$T/dying.sock" -o "$T/dying.raw" --no-progress
wait "$dying" 2>/dev/null || true; bg_forget "$dying"
[ -e "$T/dying.raw" ] && fail "a pull cut short left an image under the final name"
ls -a "$T" | grep -q 'dying.raw.hotsnap' && fail "a pull cut short left its temporary file"
# 7. incrementals over the network
hs snapshot create vol0 --name i1 --no-freeze >/dev/null
"$HOTSNAP" backup "$(psk_uri vol0@i1 "$T/keys.psk")" -o "$T/i1.qcow2" --format qcow2 --no-progress >/dev/null ||
    fail "a full pull of vol0@i1 failed"
hs bookmark create vol0@i1 >/dev/null
for off in 3 300 3000; do
    dd if=/dev/urandom of="$dev" bs=4k count=1 seek=$off oflag=direct conv=notrunc status=none
done
hs snapshot create vol0 --name i2 --no-freeze >/dev/null
out=$("$HOTSNAP" --json backup "$(psk_uri vol0@i2 "$T/keys.psk")" -o "$T/i2.qcow2" \
    --incremental "$T/i1.qcow2" --no-progress) || fail "an incremental pull failed"
[ "$(echo "$out" | json_get '["since"]')" = "vol0#i1" ] || fail "the incremental did not start from vol0#i1: $out"
[ "$(echo "$out" | json_get '["bytes_read"]')" -le $((3 * 65536)) ] ||
    fail "the incremental read more than the 3 changed clusters: $out"
"$HOTSNAP" backup "$(psk_uri vol0@i2 "$T/keys.psk")" -o "$T/i2.raw" --no-progress >/dev/null
qemu-img compare -q "$T/i2.qcow2" "$T/i2.raw" || fail "the incremental chain differs from vol0@i2"
[ "$(qemu-img info --output=json "$T/i2.qcow2" | json_get '["backing-filename"]')" = "i1.qcow2" ] ||
    fail "the incremental's backing file is not its parent, named relative to it"
expect_fail 1 "the remote keeps no bookmark vol0#i2 .*bookmark create vol0@i2" \
    "$HOTSNAP" backup "$(psk_uri vol0@i2 "$T/keys.psk")" -o "$T/i3.qcow2" --incremental "$T/i2.qcow2" --no-progress
[ -e "$T/i3.qcow2" ] && fail "a refused incremental left an image"
kill -0 "$DAEMON_PID" || fail "the daemon died"
log "NBD over TLS: PSK and X.509 with nbdinfo, nbdcopy, qemu-img and hotsnap backup nbds:// (full and incremental); wrong keys, rogue certificates, clear text and a dying remote handled"
