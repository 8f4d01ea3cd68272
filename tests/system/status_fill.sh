#!/bin/bash
# Seeing an overflow coming: while a writer keeps overwriting a snapshotted
# volume, `status` reports the diff store's fill rate and the time left until
# the diff limit at that rate, for the volume and for each snapshot, and the
# human status says it in words.  When the writer stops, the estimate goes
# away (no rate, no time to full).
. "$(dirname "$0")/lib.sh"
require_block
setup
start_daemon

hs volume create vol0 --backing "$T/vol0.img" --size 2G --diff-limit 1G >/dev/null
dev=$(hs volume attach vol0)
# data first: an original of zeros is a zero record and fills nothing
dd if=/dev/urandom of="$dev" bs=1M count=256 oflag=direct status=none
hs snapshot create vol0 --no-freeze --all-blocks >/dev/null

# a steady writer: 1 MiB of new copies per step, through the loop device; it
# would take minutes to reach the limit, far longer than the polls below
writer() {
    local i=0
    while :; do
        dd if=/dev/urandom of="$dev" bs=1M count=1 seek=$((i % 256)) oflag=direct conv=notrunc \
           status=none
        i=$((i + 1))
        sleep 0.05
    done
}
bg writer

# poll (no timing asserted: at most 600 polls) until the daemon has a rate
snap_rate=0 vol_stf=null
for _ in $(seq 600); do
    hs --json status >"$T/st.json"
    snap_rate=$(json_get '["snapshots"][0]["fill_rate_bytes_per_s"]' <"$T/st.json")
    vol_stf=$(json_get '["volumes"][0]["seconds_to_full"]' <"$T/st.json")
    awk -v r="$snap_rate" 'BEGIN{exit !(r > 0)}' && [ "$vol_stf" != null ] && [ "$vol_stf" != None ] && break
    sleep 0.1
done
awk -v r="$snap_rate" 'BEGIN{exit !(r > 0)}' || fail "no fill rate while a writer fills the diff store"
/usr/bin/python3 - "$T/st.json" <<'PY' || fail "the time to full does not follow from the rate and the room left"
import json, sys
st = json.load(open(sys.argv[1]))
for o in (st["volumes"][0], st["snapshots"][0]):
    rate, stf = o["fill_rate_bytes_per_s"], o["seconds_to_full"]
    assert rate > 0 and stf is not None and stf > 0, o
v = st["volumes"][0]
room = v["diff_limit"] - v["diff_bytes"]
assert abs(v["seconds_to_full"] * v["fill_rate_bytes_per_s"] - room) <= 0.01 * room + 4096, v
PY
hs status | grep -q "full in [0-9]* s at this rate" || fail "the human status does not say when the diff store fills"

stop_bg
for _ in $(seq 600); do
    stf=$(hs --json status | json_get '["volumes"][0]["seconds_to_full"]')
    [ "$stf" = null ] || [ "$stf" = None ] && break
    sleep 0.1
done
[ "$stf" = null ] || [ "$stf" = None ] || fail "a time to full is still reported after the writer stopped ($stf s)"
log "fill rate and time to full reported while filling, gone when idle"
