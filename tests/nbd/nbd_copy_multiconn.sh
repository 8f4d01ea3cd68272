#!/bin/bash
# nbdcopy --connections=8 into a volume and back out of it, and out of a
# snapshot taken while serving, copies every byte, sparse parts included.
. "$(dirname "$0")/functions.sh"
requires nbdcopy cmp

start_server vol vol0 48M

# source: random data with a hole in the middle and at the end
truncate -s 48M "$tmp/src.img"
head -c $((16 << 20)) /dev/urandom | dd of="$tmp/src.img" conv=notrunc status=none
head -c $((8 << 20)) /dev/urandom | dd of="$tmp/src.img" bs=1M seek=24 conv=notrunc status=none

nbdcopy --connections=8 --requests=16 "$tmp/src.img" "$(uri vol0)"
nbdcopy --connections=8 "$(uri vol0)" "$tmp/back.img"
cmp "$tmp/src.img" "$tmp/back.img" || fail "round trip through the volume differs"

take_snapshot
# overwrite the volume, then copy the snapshot with 8 connections
[ "$(raw vol0 write 0 $((32 << 20)) 0x5c)" = ok ] || fail "overwrite failed"
nbdcopy --connections=8 "$(uri "vol0@$snapshot")" "$tmp/snap.img"
cmp "$tmp/src.img" "$tmp/snap.img" || fail "the snapshot copy differs"
nbdcopy --connections=8 "$(uri vol0)" "$tmp/now.img"
cmp -s "$tmp/src.img" "$tmp/now.img" && fail "the overwrite did not land on the volume"
stop_server
