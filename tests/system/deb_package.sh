#!/bin/bash
# The Debian package (issue 14): `scripts/deb.sh` builds it from this tree
# and lintian finds no error; it holds the binary, the unit, the config (a
# conffile), logrotate, hooks, man page and completion; and it installs,
# runs, removes and purges cleanly on this machine, leaving nothing behind.
# The install step is skipped when a hotsnap package is installed already
# (a real one is never touched), and no service is started meanwhile.
. "$(dirname "$0")/lib.sh"
require_root
require dpkg-buildpackage lintian dh
setup
ROOT=$HERE/../..

bash "$ROOT/scripts/deb.sh" >"$T/deb.log" 2>&1 || fail "make deb: $(tail -15 "$T/deb.log")"
deb=$(ls "$ROOT"/build-deb/hotsnap_*.deb)
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$T/files"
for f in /usr/sbin/hotsnap /lib/systemd/system/hotsnap.service /etc/hotsnap/hotsnap.conf \
         /etc/logrotate.d/hotsnap /usr/share/hotsnap/hooks/mariadb /usr/share/hotsnap/hooks/postgresql \
         /usr/share/man/man8/hotsnap.8.gz /usr/share/man/man8/hotsnap-backup.8.gz \
         /usr/share/bash-completion/completions/hotsnap; do
    grep -qx "$f" "$T/files" || fail "the package lacks $f"
done
dpkg-deb -e "$deb" "$T/ctl"
grep -qx /etc/hotsnap/hotsnap.conf "$T/ctl/conffiles" || fail "hotsnap.conf is not a conffile"
log "built $(basename "$deb"), lintian without errors, $(wc -l <"$T/files") paths"

if dpkg-query -W -f='${Status}' hotsnap 2>/dev/null | grep -q "installed"; then
    log "a hotsnap package is installed already: install and removal not tried"
    exit 0
fi
# no service starts during the test's install (ours only; an admin's stays)
own_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
fi
undo() {
    dpkg -P hotsnap >/dev/null 2>&1 || true
    if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
}
trap 'rc=$?; undo; (exit $rc); cleanup' EXIT
DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" >"$T/install.log" 2>&1 || fail "dpkg -i: $(tail -5 "$T/install.log")"
/usr/sbin/hotsnap --help >/dev/null || fail "the installed hotsnap does not run"
S=$T/state
/usr/sbin/hotsnap --state-dir "$S" daemon --config /etc/hotsnap/hotsnap.conf --detach ||
    fail "the installed daemon does not start with the installed config"
DAEMON_PID=$(cat "$S/daemon.lock")
/usr/sbin/hotsnap --state-dir "$S" shutdown >/dev/null || fail "the installed daemon does not stop"
DAEMON_PID=""
dpkg -r hotsnap >"$T/remove.log" 2>&1 || fail "dpkg -r: $(tail -5 "$T/remove.log")"
[ ! -e /usr/sbin/hotsnap ] || fail "dpkg -r left /usr/sbin/hotsnap"
[ -e /etc/hotsnap/hotsnap.conf ] || fail "dpkg -r removed the conffile (only purge should)"
dpkg -P hotsnap >"$T/purge.log" 2>&1 || fail "dpkg -P: $(tail -5 "$T/purge.log")"
for f in /etc/hotsnap /etc/logrotate.d/hotsnap /etc/systemd/system/multi-user.target.wants/hotsnap.service \
         /lib/systemd/system/hotsnap.service; do
    [ ! -e "$f" ] || fail "purge left $f"
done
log "installed, ran, removed and purged cleanly"
