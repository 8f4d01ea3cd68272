#!/bin/bash
# qemu-io writes patterns to a volume over NBD and reads them back, in the
# same connection and in a new one; untouched ranges read as zeros.
. "$(dirname "$0")/functions.sh"
requires qemu-io

start_server vol vol0 8M

q() {
	qemu-io -f raw "$@" "$(uri vol0)" >"$tmp/qio" 2>&1 || fail "qemu-io $*: $(cat "$tmp/qio")"
	if grep -qE "Pattern verification failed|failed" "$tmp/qio"; then
		fail "qemu-io $*: $(cat "$tmp/qio")"
	fi
}
q -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M'
q -c 'write -P 0xcd 3M 512k' -c 'write -z 5M 1M' -c 'write -P 0xef 7M 4k' -c 'flush'
q -c 'write -f -P 0x12 6M 64k'
# a new connection sees all of it
q -r -c 'read -P 0xab 0 1M' -c 'read -P 0 1M 2M' -c 'read -P 0xcd 3M 512k' \
	-c 'read -P 0 5M 1M' -c 'read -P 0x12 6M 64k' -c 'read -P 0xef 7M 4k'
# unaligned I/O goes through too
q -c 'write -P 0x99 1052673 3000' -c 'read -P 0x99 1052673 3000'
q -r -c 'read -P 0 1052672 1' -c 'read -P 0x99 1052673 3000' -c 'read -P 0 1055673 1'
stop_server
