#!/bin/bash
# A 1 MiB RAM buffer for copies and heavy writes right after a snapshot: no
# write fails or is lost (fio verifies every block), writers that found the
# buffer full waited and were counted, and the snapshot stays exact.
. "$(dirname "$0")/lib.sh"
require_block
require fio
setup
start_daemon

hs volume create vol0 --backing "$T/vol0.img" --size 256M --cow-buffer 1M --diff-limit 256M >/dev/null
dev=$(hs volume attach vol0)
dd if=/dev/urandom of="$dev" bs=1M count=256 oflag=direct status=none
ref=$(sha_dev "$dev")
snap=$(hs snapshot create vol0 --no-freeze)
fio --name=pressure --filename="$dev" --rw=randwrite --bs=64k --size=256M --direct=1 \
    --ioengine=libaio --iodepth=32 --verify=crc32c --verify_fatal=1 --do_verify=1 --verify_state_save=0 \
    --output="$T/fio.log" || fail "fio reported an error: $(tail -5 "$T/fio.log")"
grep -q "err= 0" "$T/fio.log" || fail "fio: $(grep err= "$T/fio.log")"
st=$(hs --json status)
log "writer waits for buffer room: $(echo "$st" | json_get '["volumes"][0]["writer_waits"]')," \
    "copied $(($(echo "$st" | json_get '["snapshots"][0]["cow_bytes"]') / 1048576)) MiB"
[ "$(echo "$st" | json_get '["snapshots"][0]["state"]')" = active ] || fail "the snapshot failed"
hs backup "$snap" -o "$T/image.raw" --no-progress >/dev/null
[ "$(sha_file "$T/image.raw")" = "$ref" ] || fail "the snapshot is not exact"
