#!/bin/bash
# A read past the end of an export gets EINVAL (nbdsh with libnbd's own
# bounds check turned off when nbdsh is there, the raw client always), and
# the connection stays usable.
. "$(dirname "$0")/functions.sh"
requires nbdinfo

start_server vol vol0 4M write vol0 0 4M 0x11

# nbdsh runs "python3 -m nbd": make sure that is the system one with libnbd
if command -v nbdsh >/dev/null 2>&1 && "$PYTHON" -c 'import nbd' 2>/dev/null; then
	PATH=$(dirname "$PYTHON"):$PATH nbdsh -c 'import errno' -c 'h.set_strict_mode(0)' -c "h.connect_uri('$(uri vol0)')" -c '
size = h.get_size()
for off, n in ((size - 512, 1024), (size, 512), (size + 4096, 512), (2**63, 512)):
    try:
        h.pread(n, off)
        raise SystemExit("read at %d of %d did not fail" % (off, n))
    except nbd.Error as e:
        assert e.errnum == errno.EINVAL, "got %s for %d+%d" % (e, off, n)
assert h.pread(512, size - 512) == b"\x11" * 512
h.shutdown()
print("nbdsh: ok")'
else
	echo "nbdsh not installed: raw client only"
fi

size=$((4 << 20))
[ "$(raw vol0 read $((size - 512)) 1024)" = "error 22" ] || fail "read across the end"
[ "$(raw vol0 read $size 512)" = "error 22" ] || fail "read at the end"
[ "$(raw vol0 read $((size + 512)) 512)" = "error 22" ] || fail "read beyond the end"
[ "$(raw vol0 read 0xfffffffffffffe00 1024)" = "error 22" ] || fail "offset+length overflow"
[ "$(raw vol0 trim $((size - 512)) 1024)" = "error 22" ] || fail "trim across the end"
[ "$(raw vol0 cache $size 512)" = "error 22" ] || fail "cache beyond the end"
raw vol0 read $((size - 512)) 512 | grep -q '^ok ' || fail "last sector unreadable"
stop_server
