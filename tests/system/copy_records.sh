#!/bin/bash
# Copy records at rest: a snapshot that holds more copies than the daemon
# keeps records of in memory (16384) puts the others in a file beside the
# diff file.  Backups that read those copies back, in diff-file order and in
# block order, still equal the frozen volume; a consuming one lets go of
# every copy (records at rest included), and the diff store ends empty.
. "$(dirname "$0")/lib.sh"
require_block
require fio sha256sum
setup
start_daemon

hs volume create rec --backing "$T/rec.img" --size 256M >/dev/null
dev=$(hs volume attach rec)
dd if=/dev/urandom of="$dev" bs=1M count=256 oflag=direct status=none
ref=$(sha_dev "$dev")
snap=$(hs snapshot create rec --no-freeze)

# 32768 chunks of 4 KiB, each rewritten once (fio's random map)
fio --name=cow --filename="$dev" --rw=randwrite --bs=4k --iodepth=16 --direct=1 \
    --ioengine=libaio --size=256M --io_size=128M --randseed=7 >"$T/fio.log" 2>&1 ||
    fail "fio: $(tail -3 "$T/fio.log")"
records() { hs --json status | json_eval '"%d %d %d" % (v["volumes"][0]["copy_records_in_memory"], v["volumes"][0]["copy_records_at_rest"], v["volumes"][0]["diff_bytes"])'; }
# the flusher puts records to rest behind the writers: wait for it to get
# under its target (a condition, however long it takes)
for _ in $(seq 600); do
    read -r mem rest held < <(records)
    [ "$mem" -le 18432 ] && break
    sleep 0.1
done
log "copy records: $mem in memory, $rest at rest; $held bytes held"
rested=$rest
[ "$rest" -gt 0 ] || fail "no copy record went to rest ($mem in memory)"
[ "$mem" -le 18432 ] || fail "$mem copy records stay in memory, more than the 16384 kept plus the buffer's"
[ $((mem + rest)) -ge 32768 ] || fail "records for $((mem + rest)) copies, 32768 were made"
# the same counts reach Prometheus; every record at rest was written there once
hs status --prometheus >"$T/metrics.prom"
metric() { awk -v m="$1{volume=\"rec\"}" '$1 == m { print $2 }' "$T/metrics.prom"; }
prom_rest=$(metric hotsnap_copy_records_at_rest)
prom_mem=$(metric hotsnap_copy_records_in_memory)
prom_rested=$(metric hotsnap_copy_records_rested_total)
[ -n "$prom_rest" ] && [ "$prom_rest" -gt 0 ] && [ -n "$prom_mem" ] ||
    fail "no copy record gauges in status --prometheus: $(grep copy_records "$T/metrics.prom")"
[ $((prom_mem + prom_rest)) -ge 32768 ] ||
    fail "Prometheus counts records for $((prom_mem + prom_rest)) copies, 32768 were made"
[ -n "$prom_rested" ] && [ "$prom_rested" -ge "$prom_rest" ] ||
    fail "hotsnap_copy_records_rested_total is '$prom_rested', below the $prom_rest records at rest"

hs backup "$snap" -o "$T/plain.raw" --no-progress >/dev/null
[ "$(sha_file "$T/plain.raw")" = "$ref" ] || fail "the backup differs from the frozen volume"
hs backup "$snap" --consume -o "$T/consumed.raw" --no-progress >/dev/null
[ "$(sha_file "$T/consumed.raw")" = "$ref" ] || fail "the consuming backup differs from the frozen volume"
read -r mem rest held < <(records)
[ "$rest" = 0 ] && [ "$held" = 0 ] ||
    fail "after a consuming backup: $rest records at rest, $held bytes held (want none)"
hs snapshot delete "$snap"
hs volume detach rec >/dev/null
log "backups equal the frozen volume with $rested records at rest; a consuming one emptied the store"
