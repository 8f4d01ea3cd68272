#!/bin/bash
# A consuming backup while a writer rewrites every block: the backup drains
# each copy into the image as soon as it is made, so the diff store never
# holds more than the RAM buffer (the bound hotsnap guarantees; asserted
# here with the buffer at 8 MiB while the writer rewrites hundreds of MiB),
# and the image is exact.
. "$(dirname "$0")/lib.sh"
require_block
require mkfs.ext4 e2fsck fio fsfreeze
setup
start_daemon

MiB=$((1024 * 1024))
make_ext4_volume vol0 512M --cow-buffer 8M --diff-limit 512M
fio --name=fill --filename="$VOL_MNT/data" --size=300M --rw=write --bs=1M --direct=1 \
    --output="$T/fill.log" >/dev/null
sync
fsfreeze -f "$VOL_MNT"
ref=$(sha_dev "$VOL_DEV")
snap=$(hs snapshot create vol0 --no-freeze)
fsfreeze -u "$VOL_MNT"

bg hs backup "$snap" -o "$T/image.raw" --consume --rate 40 --no-progress >"$T/backup.out"
BACKUP=${BG_PIDS[-1]}
# the writer starts once the backup runs, so everything copied is drained
until [ "$(hs --json status | json_get '["volumes"][0]["backups"].__len__()')" = 1 ]; do
    kill -0 "$BACKUP" 2>/dev/null || fail "the backup ended before the writer started"
    sleep 0.05
done
bg fio --name=rewrite --filename="$VOL_MNT/data" --size=300M --rw=randwrite --bs=4k \
    --direct=1 --ioengine=libaio --iodepth=8 --time_based --runtime=600 \
    --output-format=json --output="$T/fio.json"
wait "$BACKUP" || fail "the backup failed"
bg_forget "$BACKUP"
stop_bg

st=$(hs --json status)
peak=$(echo "$st" | json_get '["volumes"][0]["diff_peak_bytes"]')
cow=$(echo "$st" | json_get '["snapshots"][0]["cow_bytes"]')
log "copied on write $((cow / MiB)) MiB during the backup, diff store peak $((peak / 1024)) KiB"
[ "$cow" -gt $((32 * MiB)) ] || fail "the writer caused only $cow bytes of copies: nothing was tested"
[ "$peak" -le $((8 * MiB)) ] || fail "the diff store peaked at $peak bytes, above the 8 MiB buffer"
[ "$(sha_file "$T/image.raw")" = "$ref" ] || fail "the image differs from the frozen volume"
