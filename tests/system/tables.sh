#!/bin/bash
# The listings as tables (issue 14), read as a script would read them:
#  1. --raw --noheadings -o picks columns in the order given, --bytes
#     prints sizes as numbers; a row splits on spaces even when a cell
#     (a failed snapshot's reason) has spaces in it;
#  2. +COL adds to the usual columns; -o help lists the columns and needs no
#     daemon; an unknown column is a usage error that names it;
#  3. the usual table has a header, human sizes, and no ERROR or REASON
#     column while nothing has failed;
#  4. the bash completion offers a listing's columns after -o.
. "$(dirname "$0")/lib.sh"
require_block
setup
start_daemon

truncate -s 8M "$T/a.img" "$T/b.img"
hs volume create a --backing "$T/a.img" >/dev/null
hs volume create b --backing "$T/b.img" --chunk-size 64K >/dev/null
hs snapshot create a --name s1 --no-freeze >/dev/null

# 1. scripts
out=$(hs volume list --raw --noheadings --bytes -o SIZE,name,CHUNK)
[ "$out" = "$(printf '8388608 a 4096\n8388608 b 65536')" ] ||
    fail "volume list --raw --noheadings --bytes -o SIZE,name,CHUNK printed: $out"
# a snapshot that failed (its volume removed under it is refused, so fail
# it by restarting the daemon: snapshots live only as long as the daemon)
stop_daemon
start_daemon
row=$(hs snapshot list --raw --noheadings -o SNAPSHOT,STATE,REASON,HELD)
read -r -a cells <<<"$row"
[ "${#cells[@]}" = 4 ] || fail "a --raw row does not split into its 4 cells: $row"
[ "${cells[0]} ${cells[1]} ${cells[3]}" = "a@s1 failed -" ] ||
    fail "snapshot list --raw cells are wrong: $row"
reason=$(printf '%b' "${cells[2]}")   # raw cells escape spaces as \x20
echo "$reason" | grep -q "lost when the daemon stopped" ||
    fail "the REASON cell does not read back as the reason: $reason"
hs snapshot delete a@s1

# 2. +COL, -o help, unknown columns
hdr=$(hs volume list -o +DIFF-LIMIT,LINK | head -n 1)
[ "$(echo $hdr)" = "NAME SIZE CHUNK DEVICE SNAPS BACKING DIFF-LIMIT LINK" ] ||
    fail "-o +DIFF-LIMIT,LINK: header is '$hdr'"
hs volume attach a >/dev/null
[ "$(hs volume list --raw --noheadings -o name,link | grep '^a ')" = "a $STATE/dev/a" ] ||
    fail "the LINK column does not show a's stable name: $(hs volume list -o name,link)"
hs volume detach a
"$HOTSNAP" --state-dir "$T/nowhere" snapshot list -o help | grep -q '^ \* SNAPSHOT' ||
    fail "-o help does not list the columns without a daemon"
expect_fail 2 "unknown column 'BOGUS'.*SNAPSHOT, STATE" -- hs snapshot list -o SNAPSHOT,BOGUS
expect_fail 2 "names no column" -- hs volume list -o +

# 3. people
out=$(hs volume list)
[ "$(echo "$out" | head -n 1 | xargs)" = "NAME SIZE CHUNK DEVICE SNAPS BACKING" ] ||
    fail "volume list header: $(echo "$out" | head -n 1)"
echo "$out" | grep -qE '^b +8 MiB +64 KiB +- +0 ' || fail "volume list row for b: $out"
hs snapshot create b --name s2 --no-freeze >/dev/null
hs snapshot list | head -n 1 | grep -q REASON && fail "snapshot list shows REASON though nothing failed"
hs snapshot delete b@s2

# 4. completion
comp=$(PATH=$(dirname "$HOTSNAP"):$PATH bash -c '. "$1"; COMP_WORDS=(hotsnap volume list -o NAME,DI); COMP_CWORD=4; _hotsnap; printf "%s\n" "${COMPREPLY[@]}"' _ "$HERE/../../dist/hotsnap.bash-completion")
[ "$(echo $comp)" = "NAME,DIFF-LIMIT NAME,DIFF-DIR" ] || fail "completion after -o NAME,DI offers: $comp"
log "listings as tables: columns, bytes, raw rows, headers and completion as expected"
