#!/bin/bash
# Two volumes snapshotted together: one command, one instant.  Each volume
# is written after the set, and each snapshot reads as its volume was.
. "$(dirname "$0")/lib.sh"
require_block
setup
start_daemon

hs volume create a --backing "$T/a.img" --size 64M --diff-limit 64M >/dev/null
hs volume create b --backing "$T/b.img" --size 32M --chunk-size 64K --cache none >/dev/null
[ "$(hs --json volume list | json_get '["volumes"][1]["cache_mode"]')" = none ] || fail "--cache none not in effect"
[ "$(hs --json volume list | json_get '["volumes"][0]["cache_mode"]')" = writeback ] || fail "a file volume is not writeback by default"
da=$(hs volume attach a)
db=$(hs volume attach b)
dd if=/dev/urandom of="$da" bs=1M count=64 oflag=direct status=none
dd if=/dev/urandom of="$db" bs=1M count=32 oflag=direct status=none
ra=$(sha_dev "$da")
rb=$(sha_dev "$db")
out=$(hs snapshot create a b --name pair)
[ "$out" = $'a@pair\nb@pair' ] || fail "snapshot create printed '$out'"
dd if=/dev/urandom of="$da" bs=1M count=8 seek=3 oflag=direct status=none
dd if=/dev/urandom of="$db" bs=4k count=100 seek=77 oflag=direct status=none
[ "$(sha_dev "$da")" != "$ra" ] || fail "the writes did not change volume a"
hs backup a@pair -o "$T/a.raw" --no-progress >/dev/null
hs backup b@pair -o "$T/b.raw" --no-progress >/dev/null
[ "$(sha_file "$T/a.raw")" = "$ra" ] || fail "a@pair differs from a at the snapshot"
[ "$(sha_file "$T/b.raw")" = "$rb" ] || fail "b@pair differs from b at the snapshot"
# a set is all or nothing: a name taken on one volume refuses the whole set
hs snapshot create a --name only-a >/dev/null
expect_fail 1 "exists" hs snapshot create a b --name only-a
[ "$(hs --json snapshot list | json_get '["snapshots"].__len__()')" = 3 ] || fail "a refused set left a snapshot behind"
log "both snapshots exact"
