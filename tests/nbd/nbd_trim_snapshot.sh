#!/bin/bash
# TRIM on a snapshot export consumes the range (the backup is done with it):
# reads of the whole chunks inside it then fail with EIO, base:allocation
# shows them as holes without ZERO, and the rest still reads correctly.  A
# trim that covers no whole chunk (64 KiB here) consumes nothing.
. "$(dirname "$0")/functions.sh"
requires nbdinfo

start_server vol vol0 8M write vol0 0 8M 0x11 snap vol0 s1

m=$((1 << 20))
ok_read=$(raw vol0@s1 read $m 65536)
[ "${ok_read%% *}" = ok ] || fail "read before trim: $ok_read"
[ "$(raw vol0@s1 trim $m $m)" = ok ] || fail "trim failed"
[ "$(raw vol0@s1 read $m 65536)" = "error 5" ] || fail "read of a consumed range did not fail"
[ "$(raw vol0@s1 read $((2 * m - 512)) 1024)" = "error 5" ] || fail "read across into consumed"
[ "$(raw vol0@s1 read $((2 * m)) 65536)" = "$ok_read" ] || fail "the range after changed"
[ "$(raw vol0@s1 read 0 65536)" = "$ok_read" ] || fail "the range before changed"

# less than a chunk: nothing consumed
[ "$(raw vol0@s1 trim $((4 * m + 512)) 65536)" = ok ] || fail "small trim failed"
[ "$(raw vol0@s1 read $((4 * m)) 65536)" = "$ok_read" ] || fail "a partial chunk was consumed"

nbdinfo --map "$(uri vol0@s1)" | awk '{ print $1, $2, $3 }' >"$tmp/map"
cat >"$tmp/want" <<END
0 1048576 0
1048576 1048576 1
2097152 6291456 0
END
diff -u "$tmp/want" "$tmp/map" || fail "map after trim differs"
# the volume itself is untouched
[ "$(raw vol0 read $m 65536)" = "$ok_read" ] || fail "the volume changed"
stop_server
