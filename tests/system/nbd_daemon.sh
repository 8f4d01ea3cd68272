#!/bin/bash
# NBD through the daemon, beside FUSE, on the same engine:
#  - nbdinfo --list on the daemon's socket shows volumes and snapshots (with
#    descriptions), and status shows each export's NBD URI;
#  - nbdcopy of a snapshot export equals the frozen image while writers keep
#    going on the volume through FUSE (the loop device) and through NBD at
#    the same time, and with --connections=8;
#  - qemu-io writes patterns to the volume over NBD, and they read back
#    through the FUSE file and through the loop device;
#  - qemu-img convert of the snapshot export to qcow2 compares identical;
#  - writes to a snapshot export are refused; a TCP listener on 127.0.0.1
#    (in clear text only when asked: --tls off) serves the same exports,
#    volumes read-only.
. "$(dirname "$0")/lib.sh"
require_block
require nbdinfo nbdcopy qemu-io qemu-img
setup
PORT=$((20000 + $$ % 20000))
start_daemon --nbd "unix:$STATE/nbd.sock" --nbd "tcp:127.0.0.1:$PORT" --tls off
SOCK=$STATE/nbd.sock
uri() { echo "nbd+unix:///$1?socket=$SOCK"; }

hs volume create vol0 --backing "$T/vol0.img" --size 128M --diff-limit 128M >/dev/null
dev=$(hs volume attach vol0)
dd if=/dev/urandom of="$dev" bs=1M count=128 oflag=direct status=none
ref=$(sha_dev "$dev")
snap=$(hs snapshot create vol0 --no-freeze)

list=$(nbdinfo --list "nbd+unix:///?socket=$SOCK")
grep -q "export=\"vol0\"" <<<"$list" || grep -q "vol0" <<<"$list" || fail "nbdinfo --list lacks vol0: $list"
grep -q "$snap" <<<"$list" || fail "nbdinfo --list lacks $snap"
grep -qi "hotsnap snapshot of vol0" <<<"$list" || fail "the snapshot has no description: $list"
[ "$(hs --json status | json_get '["snapshots"][0]["nbd_uri"]')" = "$(uri "$snap")" ] ||
    fail "status does not give the snapshot's NBD URI"

# writers through FUSE and through NBD at once, while nbdcopy reads
bg bash -c "while :; do dd if=/dev/urandom of='$dev' bs=64k count=16 seek=\$((RANDOM % 2000)) oflag=direct conv=notrunc status=none; done"
bg bash -c "while :; do qemu-io -f raw -c \"write -P \$((RANDOM % 250)) \$((RANDOM % 120))M 1M\" '$(uri vol0)' >/dev/null; done"
nbdcopy "$(uri "$snap")" "$T/copy1.raw"
nbdcopy --connections=8 "$(uri "$snap")" "$T/copy8.raw"
stop_bg
[ "$(sha_file "$T/copy1.raw")" = "$ref" ] || fail "nbdcopy of the snapshot differs from the frozen image"
[ "$(sha_file "$T/copy8.raw")" = "$ref" ] || fail "nbdcopy --connections=8 of the snapshot differs"
[ "$(sha_dev "$dev")" != "$ref" ] || fail "the writers changed nothing: the test tested nothing"

# qemu-img convert to qcow2, compared with the frozen image
qemu-img convert -f raw -O qcow2 "$(uri "$snap")" "$T/snap.qcow2"
qemu-img compare -f qcow2 -F raw "$T/snap.qcow2" "$T/copy1.raw" >/dev/null || fail "qemu-img compare: the qcow2 differs"

# patterns over NBD, read back through FUSE and the loop device
qemu-io -f raw -c "write -P 0xab 1M 1M" -c "write -P 0x5c 7M 64k" "$(uri vol0)" >/dev/null
cmp <(head -c 1048576 /dev/zero | tr '\0' '\253') \
    <(dd if="$STATE/mnt/vol0" bs=1M skip=1 count=1 iflag=direct status=none) ||
    fail "the pattern written over NBD does not read back through the FUSE file"
cmp <(head -c 65536 /dev/zero | tr '\0' '\134') \
    <(dd if="$dev" bs=64k skip=112 count=1 iflag=direct status=none) ||
    fail "the pattern written over NBD does not read back through the loop device"
qemu-io -f raw -c "read -P 0xab 1M 1M" "$(uri vol0)" | grep -q "read 1048576" ||
    fail "qemu-io cannot read its own pattern back"

# a snapshot export is read-only
if qemu-io -f raw -c "write -P 1 0 4k" "$(uri "$snap")" 2>"$T/ro.err" | grep -q "wrote"; then
    fail "a write to the snapshot export succeeded"
fi
# TCP serves the same exports, volumes read-only without --nbd-writable
info=$(nbdinfo "nbd://127.0.0.1:$PORT/vol0")
grep -q "export-size: 134217728" <<<"$info" || fail "the TCP listener does not serve vol0"
grep -q "is_read_only: true" <<<"$info" || fail "vol0 is writable over TCP: $info"
if qemu-io -f raw -c "write -P 1 0 4k" "nbd://127.0.0.1:$PORT/vol0" 2>"$T/tcp.err" | grep -q "wrote"; then
    fail "a write to vol0 over TCP succeeded"
fi
log "nbd through the daemon: list, concurrent FUSE+NBD writers, copies exact, patterns shared, TCP"
