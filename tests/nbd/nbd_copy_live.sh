#!/bin/bash
# nbdcopy of a snapshot export equals the volume frozen at the snapshot
# instant while a writer keeps overwriting the whole volume over NBD; the
# writer's data does land on the volume.
. "$(dirname "$0")/functions.sh"
requires nbdcopy qemu-io sha256sum

start_server vol vol0 64M write vol0 0 8M 0x11 write vol0 16M 8M 0x22 \
	write vol0 40M 4M 0x33 write vol0 63M 1M 0x44 dump vol0 "$tmp/frozen.img" snap vol0 s1

# The writer: passes over the whole volume, each with its own pattern.  It
# starts first, so the copy below runs while it writes (whatever the
# interleaving, the snapshot must not move).
(
	for p in 1 2 3 4 5 6; do
		qemu-io -f raw -c "write -P 0x6$p 0 64M" "$(uri vol0)" >/dev/null
	done
) &
bg_pids=$!

nbdcopy "$(uri vol0@s1)" "$tmp/copy.img"
nbdcopy --connections=4 "$(uri vol0@s1)" "$tmp/copy4.img"
wait "$bg_pids" || fail "the writer failed"
bg_pids=

want=$(sha256sum <"$tmp/frozen.img")
[ "$(sha256sum <"$tmp/copy.img")" = "$want" ] || fail "snapshot copy differs from frozen"
[ "$(sha256sum <"$tmp/copy4.img")" = "$want" ] || fail "4-connection copy differs"

# and the volume holds the writer's last pass
qemu-io -r -f raw -c "read -P 0x66 0 64M" "$(uri vol0)" >"$tmp/qio" 2>&1 ||
	fail "the volume lacks the last pattern: $(cat "$tmp/qio")"
grep -q "Pattern verification failed" "$tmp/qio" && fail "pattern mismatch on the volume"
stop_server
