#!/bin/bash
# qemu-img convert of a snapshot export to qcow2 is identical to the image
# frozen at the snapshot, although the volume changed after the snapshot.
. "$(dirname "$0")/functions.sh"
requires qemu-img

start_server vol vol0 32M write vol0 0 2M 0x11 write vol0 20M 3M 0x22 \
	dump vol0 "$tmp/frozen.img" snap vol0 s1 write vol0 1M 4M 0x33 write vol0 30M 1M 0x44

qemu-img convert -f raw -O qcow2 "$(uri vol0@s1)" "$tmp/snap.qcow2"
qemu-img compare -f raw -F qcow2 "$tmp/frozen.img" "$tmp/snap.qcow2" ||
	fail "the qcow2 of the snapshot differs from the frozen image"
# sanity: the live volume did change
if qemu-img compare -q -f raw -F raw "$tmp/frozen.img" "$(uri vol0)"; then
	fail "the volume should differ from the frozen image"
fi
stop_server
