#!/bin/bash
# scripts/deps.sh GROUP... - installs the Debian packages a make target needs,
# only those missing.  Groups: build, test, bench, fuzz.
set -euo pipefail

declare -A GROUP=(
    [build]="gcc make meson ninja-build pkg-config libfuse3-dev liburing-dev fuse3 libjson-c-dev libext2fs-dev libzstd-dev zlib1g-dev libxxhash-dev libsystemd-dev libsmartcols-dev libgnutls28-dev libnbd-dev"
    [test]="e2fsprogs xfsprogs btrfs-progs util-linux fio qemu-utils libnbd-bin python3-libnbd python3 kmod mariadb-server-core mariadb-client-core postgresql-15 postgresql-client-15 gnutls-bin qemu-system-x86"
    [bench]="fio qemu-utils qemu-system-common libnbd-bin valgrind python3 e2fsprogs util-linux"
    [fuzz]="clang libclang-rt-14-dev"
    [deb]="debhelper lintian dpkg-dev"
)

want=()
for g in "$@"; do
    [ -n "${GROUP[$g]+x}" ] || { echo "deps.sh: unknown group '$g'" >&2; exit 2; }
    for p in ${GROUP[$g]}; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            want+=("$p")
    done
done
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: missing packages: ${want[*]} (run as root to install them)" >&2
    exit 1
fi
echo "installing: ${want[*]}"
export DEBIAN_FRONTEND=noninteractive
# Database servers the hook tests need are installed, not started: the tests
# run their own instances, and a machine should not be left serving one.
# policy-rc.d refuses service starts during the install (ours only: one the
# admin put there stays as it is).
own_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
fi
trap 'if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
