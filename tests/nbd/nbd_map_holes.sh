#!/bin/bash
# nbdinfo --map (base:allocation) on a snapshot shows holes exactly where the
# volume was sparse at the snapshot instant, and a read of the whole snapshot
# (structured replies, holes sent as NBD_REPLY_TYPE_OFFSET_HOLE) is correct.
. "$(dirname "$0")/functions.sh"
requires nbdinfo nbdcopy sha256sum

start_server vol vol0 16M write vol0 0 1M 0x11 write vol0 8M 1M 0x22 \
	dump vol0 "$tmp/frozen.img" snap vol0 s1

nbdinfo --map "$(uri vol0@s1)" | awk '{ print $1, $2, $3 }' >"$tmp/map"
cat >"$tmp/want" <<END
0 1048576 0
1048576 7340032 3
8388608 1048576 0
9437184 7340032 3
END
diff -u "$tmp/want" "$tmp/map" || fail "snapshot map differs"

# the same on the volume itself
nbdinfo --map "$(uri vol0)" | awk '{ print $1, $2, $3 }' >"$tmp/vmap"
diff -u "$tmp/want" "$tmp/vmap" || fail "volume map differs"

nbdcopy "$(uri vol0@s1)" "$tmp/copy.img"
[ "$(sha256sum <"$tmp/copy.img")" = "$(sha256sum <"$tmp/frozen.img")" ] ||
	fail "snapshot content differs from the frozen image"
stop_server
