#!/bin/bash
# Writes, zeroes and fast zeroes to a snapshot export are refused with EPERM
# and change nothing; qemu-io cannot open the snapshot for writing; the same
# writes to the volume succeed.
. "$(dirname "$0")/functions.sh"
requires qemu-io

start_server vol vol0 8M write vol0 0 1M 0x11 snap vol0 s1

before=$(raw vol0@s1 read 0 2097152)
"$PYTHON" - "$sock" "$NBD_TESTS_DIR" <<'END'
import sys
sys.path.insert(0, sys.argv[2])
import nbd_raw as n

c = n.Client(sys.argv[1])
c.connect_export("vol0@s1", structured=True)
assert c.tflags & n.FLAG_READ_ONLY, "READ_ONLY not advertised"
assert c.write(0, b"\xee" * 65536) == n.EPERM, "write not refused"
assert c.write(0, b"\xee" * 512, n.FLAG_FUA) == n.EPERM, "FUA write not refused"
assert c.command(n.CMD_WRITE_ZEROES, 0, 65536) == n.EPERM, "zero not refused"
assert c.command(n.CMD_WRITE_ZEROES, 0, 65536, n.FLAG_FAST_ZERO) == n.EPERM
assert c.command(n.CMD_WRITE_ZEROES, 0, 65536, n.FLAG_NO_HOLE) == n.EPERM
assert c.command(n.CMD_FLUSH) == 0, "flush of a snapshot fails"
# past the end is EINVAL even on a read-only export
assert c.write(8 << 20, b"\xee" * 512) == n.EINVAL
c.disconnect()

v = n.Client(sys.argv[1])
v.connect_export("vol0", structured=True)
assert v.write(4 << 20, b"\xee" * 65536) == 0, "volume write failed"
assert v.command(n.CMD_WRITE_ZEROES, 4 << 20, 4096) == 0
v.disconnect()
print("ok")
END
after=$(raw vol0@s1 read 0 2097152)
[ "$before" = "$after" ] || fail "the snapshot changed: $before -> $after"

if qemu-io -f raw -c 'write -P 0xee 0 64k' "$(uri vol0@s1)" >"$tmp/qio" 2>&1; then
	fail "qemu-io wrote to a snapshot: $(cat "$tmp/qio")"
fi
qemu-io -r -f raw -c 'read -P 0x11 0 1M' "$(uri vol0@s1)" | grep -q "read 1048576" ||
	fail "snapshot content changed"
stop_server
