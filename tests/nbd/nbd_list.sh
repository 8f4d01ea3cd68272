#!/bin/bash
# nbdinfo --list shows every export, volumes and snapshots, with descriptions.
. "$(dirname "$0")/functions.sh"
requires nbdinfo

start_server vol vol0 8M vol vol1 4M mem snap vol0 s1 snap vol0 s2

nbdinfo --list "$(uri '')" >"$tmp/list"
cat "$tmp/list"
for want in "export=\"vol0\"" "export=\"vol1\"" "export=\"vol0@s1\"" "export=\"vol0@s2\"" \
	"description: volume vol0 of 8388608 bytes" "description: volume vol1 of 4194304 bytes" \
	"description: snapshot s1 of volume vol0" "description: snapshot s2 of volume vol0"; do
	grep -qF "$want" "$tmp/list" || fail "nbdinfo --list lacks: $want"
done
[ "$(grep -c '^export=' "$tmp/list")" -eq 4 ] || fail "expected exactly 4 exports"
# one export's lines of the listing
section() {
	awk -v e="export=\"$1\":" '$0 == e { p = 1; next } /^export=/ { p = 0 } p' "$tmp/list"
}
section vol0@s1 | grep -q 'is_read_only: true' || fail "the snapshot is not read-only"
section vol0@s1 | grep -q 'hotsnap:changed' || fail "no hotsnap:changed on the snapshot"
section vol0@s1 | grep -q 'base:allocation' || fail "no base:allocation on the snapshot"
section vol1 | grep -q 'is_read_only: false' || fail "the volume is read-only"
section vol1 | grep -q 'base:allocation' || fail "no base:allocation on the volume"
if section vol1 | grep -q 'hotsnap:changed'; then fail "hotsnap:changed on a volume"; fi
section vol1 | grep -q 'can_multi_conn: true' || fail "no multi-conn on the volume"
stop_server
