#!/bin/bash
# nbdinfo --map=hotsnap:changed on a snapshot shows exactly the chunks (64 KiB
# here) written on the volume after the snapshot, whoever wrote them: the
# server itself before serving, and a client over NBD.
. "$(dirname "$0")/functions.sh"
requires nbdinfo

# volume data before the snapshot; one write after it, in the server
start_server vol vol0 16M write vol0 0 4M 0x11 snap vol0 s1 write vol0 12M 128K 0x44

# over NBD: an aligned 64 KiB write, a 192 KiB one, and 100 bytes inside a chunk
raw vol0 write $((1 << 20)) 65536 0x55 | grep -qx ok || fail "write 1"
raw vol0 write $((6 << 20)) $((192 << 10)) 0x66 | grep -qx ok || fail "write 2"
raw vol0 write $(((10 << 20) + 5)) 100 0x77 | grep -qx ok || fail "write 3"

nbdinfo --map=hotsnap:changed "$(uri vol0@s1)" | awk '{ print $1, $2, $3 }' >"$tmp/map"
cat >"$tmp/want" <<END
0 1048576 0
1048576 65536 1
1114112 5177344 0
6291456 196608 1
6488064 3997696 0
10485760 65536 1
10551296 2031616 0
12582912 131072 1
12713984 4063232 0
END
diff -u "$tmp/want" "$tmp/map" || fail "changed map differs"

# a snapshot taken after all that has nothing changed yet
stop_server
