#!/bin/bash
# Malformed clients (nbd_malformed.py): each case gets an error reply or a
# closed connection, the server stays up, other clients are unaffected and
# the data is unchanged.
. "$(dirname "$0")/functions.sh"

start_server vol vol0 4M write vol0 0 1M 0x11 write vol0 2M 1M 0x22 snap vol0 s1
"$PYTHON" "$NBD_TESTS_DIR/nbd_malformed.py" "$sock"
stop_server
