#!/bin/bash
# Build a tiny Linux guest for the VM tests: OUTDIR/vmlinuz and
# OUTDIR/initrd.img (gzip'd newc cpio: static busybox, ./init as /init and
# the modules that mount an ext4 on virtio-blk on QEMU's `pc` machine).
#   build-guest.sh OUTDIR   build, or do nothing if OUTDIR is up to date
#   build-guest.sh --accel  print QEMU's accelerator arguments for this host
# Everything comes from Debian's archive through `apt-get download`; nothing
# is installed on the host.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# modules we load by name; their dependencies come from modules.dep.
# crc32c_generic is only a soft dependency (ext4 and jbd2 ask the crypto API
# for "crc32c" at mount time, for metadata_csum, which mkfs.ext4 turns on);
# the generic one because crc32c-intel needs SSE4.2, which TCG's default CPU
# lacks.
WANT="virtio_pci virtio_blk crc32c_generic ext4"

die() { echo "build-guest: $*" >&2; exit 1; }

if [ "${1:-}" = --accel ]; then
    # KVM only if the CPU has it and we may open /dev/kvm read-write
    if grep -qwE 'vmx|svm' /proc/cpuinfo && (: <>/dev/kvm) 2>/dev/null; then
        echo "-accel kvm -cpu host"
    else
        echo "-accel tcg"
    fi
    exit 0
fi

if [ $# -ne 1 ] || [ -z "$1" ]; then die "usage: $0 OUTDIR | --accel"; fi
OUT=$1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# the guest changes only when this script or the init changes (the kernel
# version in the archive moves too, but a cached older kernel serves as well)
HASH=$(cat "$0" "$HERE/init" | sha256sum | cut -d' ' -f1)
cached() {
    [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.img" ] && [ -f "$OUT/.stamp" ] &&
        [ "$(cut -d' ' -f1 "$OUT/.stamp")" = "$HASH" ]
}
report() { echo "guest: $OUT (kernel $(cut -d' ' -f2 "$OUT/.stamp"))"; }
cached && { report; exit 0; }

# tests running in parallel share OUTDIR: one builds, the others wait for it
exec 9>"$OUT/.lock"
flock 9
cached && { report; exit 0; }

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

for c in apt-get apt-cache dpkg-deb gzip sha256sum flock; do
    command -v "$c" >/dev/null || die "needs $c"
done

KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }') || true
[ -n "$KPKG" ] ||
    die "apt-cache knows no linux-image-amd64 dependency (no Debian package lists? run apt-get update)"
KVER=${KPKG#linux-image-}

# apt-get download is chatty (and warns when _apt cannot write to $T):
# keep its output for the failure message only
mkdir "$T/debs"
(cd "$T/debs" && apt-get download "$KPKG" busybox-static) >"$T/apt.log" 2>&1 || {
    grep -v unsandboxed "$T/apt.log" | tail -n 5 >&2 || true
    die "apt-get download $KPKG busybox-static failed: no access to the Debian archive?"
}
for d in "$T"/debs/*.deb; do dpkg-deb -x "$d" "$T/root"; done

BB=$T/root/bin/busybox
MODDIR=$T/root/lib/modules/$KVER
[ -x "$BB" ] || die "busybox-static has no /bin/busybox"
[ -f "$T/root/boot/vmlinuz-$KVER" ] || die "$KPKG has no /boot/vmlinuz-$KVER"
[ -d "$MODDIR" ] || die "$KPKG has no /lib/modules/$KVER"
# Debian makes modules.dep in the package's postinst, so usually it is not in
# the .deb: make it with the host's depmod (kmod), on the extracted tree
if [ ! -f "$MODDIR/modules.dep" ]; then
    command -v depmod >/dev/null || PATH=$PATH:/sbin:/usr/sbin
    command -v depmod >/dev/null || die "needs depmod (kmod) to make $KVER's modules.dep"
    depmod -b "$T/root" "$KVER" || die "depmod failed for $KVER"
fi

# order the modules: each one's dependencies (depth first) before it
declare -A SEEN=()
ORDER=()
add() { # $1: a module's path as modules.dep names it
    [ -n "${SEEN[$1]:-}" ] && return 0
    SEEN[$1]=1
    local d
    for d in $(awk -v m="$1:" '$1 == m { $1 = ""; print }' "$MODDIR/modules.dep"); do
        add "$d"
    done
    ORDER+=("$1")
}
for m in $WANT; do
    # built into this kernel: nothing to load
    grep -qE "/$m\.ko$" "$MODDIR/modules.builtin" 2>/dev/null && continue
    p=$(grep -oE "^([^:]*/)?$m\.ko(\.[a-z]+)?:" "$MODDIR/modules.dep" | head -n 1) ||
        die "module $m is not in $KVER's modules.dep"
    add "${p%:}"
done

# the initramfs: busybox insmod loads plain .ko files only, so decompress
R=$T/initrd
mkdir -p "$R"/{bin,dev,proc,sys,mnt,modules}
cp "$BB" "$R/bin/busybox"
install -m 755 "$HERE/init" "$R/init"
for p in "${ORDER[@]}"; do
    b=$(basename "$p")
    case $p in
        *.ko.xz)  xz -dc "$MODDIR/$p" ;;
        *.ko.zst) zstd -qdc "$MODDIR/$p" ;;
        *.ko.gz)  gzip -dc "$MODDIR/$p" ;;
        *.ko)     cat "$MODDIR/$p" ;;
        *)        false ;;
    esac >"$R/modules/${b%.ko*}.ko" || die "cannot unpack module $p"
    echo "/modules/${b%.ko*}.ko" >>"$R/modules.order"
done

# busybox's own cpio: the host may have none (it reports "N blocks")
(cd "$R" && find . | LC_ALL=C sort | "$BB" cpio -o -H newc -R 0:0 2>"$T/cpio.log") |
    gzip -9n >"$OUT/.initrd.img.tmp" || { cat "$T/cpio.log" >&2; die "cpio failed"; }
cp "$T/root/boot/vmlinuz-$KVER" "$OUT/.vmlinuz.tmp"
mv -f "$OUT/.initrd.img.tmp" "$OUT/initrd.img"
mv -f "$OUT/.vmlinuz.tmp" "$OUT/vmlinuz"
echo "$HASH $KVER" >"$OUT/.stamp"   # last: marks a complete build
report
