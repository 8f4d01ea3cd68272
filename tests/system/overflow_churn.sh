#!/bin/bash
# Overflow churn: for DURATION seconds (15 here, 60 in make stress)
# snapshots are created and deleted while fio writes with verification and
# the diff limit is tiny, so most snapshots fail.  fio reports no error;
# every snapshot that has not failed backs up exactly as the volume was
# when it was taken (hashed under a freeze); every failed one says the
# limit; the daemon's RSS stays bounded.
. "$(dirname "$0")/lib.sh"
require_block
require fio fsfreeze mkfs.ext4
setup
DURATION=${DURATION:-15}
SEED=${HOTSNAP_SEED:-$$}
RANDOM=$SEED
log "seed $SEED, $DURATION s (replay with HOTSNAP_SEED=$SEED)"
start_daemon
make_ext4_volume vol0 256M --diff-limit 8M --cow-buffer 2M
fio --name=prep --filename="$VOL_MNT/data" --size=128M --rw=write --bs=1M --direct=1 \
    --output="$T/prep.log" >/dev/null
bg fio --name=churn --filename="$VOL_MNT/data" --size=128M --rw=randwrite --bs=4k \
    --direct=1 --ioengine=libaio --iodepth=4 --rate_iops=400 --verify=crc32c \
    --verify_backlog=512 --verify_fatal=1 --do_verify=1 --verify_state_save=0 \
    --time_based --runtime=$((DURATION + 30)) --output="$T/fio.log"
FIO=${BG_PIDS[-1]}

created=0 failed=0 exact=0 peak_rss=0
end=$((SECONDS + DURATION))
while [ $SECONDS -lt $end ]; do
    fsfreeze -f "$VOL_MNT"
    ref=$(sha_dev "$VOL_DEV")
    snap=$(hs snapshot create vol0 --no-freeze)
    fsfreeze -u "$VOL_MNT"
    created=$((created + 1))
    sleep "$((RANDOM % 3)).$((RANDOM % 10))"
    st=$(hs --json snapshot list | json_eval '[s for s in v["snapshots"] if s["snapshot"] == "'"$snap"'"][0]["state"]')
    if [ "$st" = active ] && hs --json backup "$snap" -o "$T/img.raw" --no-progress --no-yield >"$T/backup.json" 2>"$T/backup.err"; then
        log "backup: $(json_get "[\"seconds\"]" <"$T/backup.json") s, $(json_get "[\"yields\"]" <"$T/backup.json") yields"
        [ "$(sha_file "$T/img.raw")" = "$ref" ] || fail "$snap is not exact"
        exact=$((exact + 1))
    else
        reason=$(hs --json snapshot list | json_eval '[s for s in v["snapshots"] if s["snapshot"] == "'"$snap"'"][0].get("reason", "")')
        grep -q "diff limit" <<<"$reason" || fail "$snap failed without naming the limit: '$reason' $(cat "$T/backup.err")"
        failed=$((failed + 1))
    fi
    rm -f "$T/img.raw"
    hs snapshot delete "$snap"
    rss=$(hs --json status | json_get '["rss_bytes"]')
    [ "$rss" -gt "$peak_rss" ] && peak_rss=$rss
done
kill -0 "$FIO" 2>/dev/null || fail "fio stopped early: $(tail -5 "$T/fio.log")"
stop_bg
grep -qE "err= *0" "$T/fio.log" || fail "fio reported errors: $(grep -E 'err=' "$T/fio.log")"
log "$created snapshots: $exact exact, $failed failed on the limit; daemon RSS peak $((peak_rss / 1048576)) MiB"
[ "$peak_rss" -lt $((128 * 1048576)) ] || fail "the daemon's RSS reached $peak_rss bytes"
[ "$created" -ge 3 ] || fail "only $created snapshots in $DURATION s: nothing was tested"
