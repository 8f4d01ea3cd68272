#!/bin/bash
# scripts/deb.sh - `make deb`: builds the Debian package from the working
# tree in a scratch copy (dpkg-buildpackage writes beside the source), puts
# hotsnap_*.deb in build-deb/ and runs lintian on it (errors fail).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/build-deb
WORK=$(mktemp -d /tmp/hotsnap-deb.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/hotsnap" "$OUT"
(cd "$ROOT" && tar --exclude='./build*' --exclude=./.git --exclude='./fuzz/corpus-*' -c .) |
    tar -x -C "$WORK/hotsnap"
(cd "$WORK/hotsnap" && dpkg-buildpackage -us -uc -b >"$WORK/build.log" 2>&1) ||
    { tail -30 "$WORK/build.log"; echo "deb.sh: dpkg-buildpackage failed" >&2; exit 1; }
rm -f "$OUT"/hotsnap_*.deb
cp "$WORK"/hotsnap_*.deb "$OUT"/
deb=$(ls "$OUT"/hotsnap_*.deb)
echo "$deb"
if command -v lintian >/dev/null; then
    # errors fail; warnings are shown
    lintian --fail-on error "$deb"
fi
