#!/bin/bash
# MariaDB under load, snapshotted with hooks/mariadb, backed up, restored and
# started: every table checks OK and the application's invariants hold.
#  - a private mariadbd (root, no networking, socket under $T) keeps its
#    datadir on an ext4 on a hotsnap volume;
#  - two client sessions write without a pause: one inserts 20 rows per
#    statement into a MyISAM table (whole statements only: ids 1..N, N a
#    multiple of 20); the other, under LOCK TABLES, puts row N into a MyISAM,
#    an Aria and an InnoDB table and sets a MyISAM counter to N (all four
#    agree).  FLUSH TABLES WITH READ LOCK waits for both statements and
#    LOCK TABLES to end, and closes the MyISAM tables cleanly; a snapshot
#    without it can cut a batch or leave a MyISAM table marked in use;
#  - the hook, from the hooks directory once (a .hidden file, a backup~
#    file and the hook's .conf beside it are not run), then as the volume's
#    own hook: it runs prepare, freeze, thaw with the contract's environment
#    and the server counts its two FLUSH statements;
#  - the image, restored into a new volume, starts as a second server
#    (crash recovery for InnoDB and Aria; MyISAM not repaired): CHECK TABLE
#    ... EXTENDED says OK with no warning for every table, and the
#    invariants hold.
. "$(dirname "$0")/lib.sh"
require_block
require mkfs.ext4 mariadb mariadb-install-db
MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)
[ -x "$MARIADBD" ] || skip "needs mariadbd"
HOOK=$HERE/../../hooks/mariadb
[ -x "$HOOK" ] || fail "no executable hook at $HOOK"
setup

SERVERS=()   # pids of the mariadbd we started
NAMES=()     # and their names, for a pid the trap came too early to see
LOADS=()     # pids of the load pipelines

alive() {   # a process that exists and is not a zombie
    local s
    s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    case $s in Z*) return 1 ;; esac
}

# Stops one of our mariadbd (its command line names a path under $T).
stop_server() {
    local pid=$1
    alive "$pid" || { wait "$pid" 2>/dev/null; return 0; }
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--datadir=$T/" || return 0
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 300); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && { echo "mariadbd $pid did not stop on SIGTERM; killed" >&2; kill -KILL "$pid"; }
    wait "$pid" 2>/dev/null || true
}

app_cleanup() {
    local p
    set +e
    rm -f "$T/load.run"
    for p in "${NAMES[@]}"; do
        p=$(cat "$T/$p.pid" 2>/dev/null) && [ -n "$p" ] && SERVERS+=("$p")
    done
    for p in "${SERVERS[@]}"; do stop_server "$p"; done
    for p in "${LOADS[@]}"; do wait "$p" 2>/dev/null; done
}
trap 'rc=$?; app_cleanup; (exit $rc); cleanup' EXIT

# sql SOCKET ARGS... : a client on one of our servers
sql() {
    local sock=$1
    shift
    mariadb --no-defaults --socket="$sock" --user=root --batch --skip-column-names "$@"
}

# start_server NAME DATADIR [OPTION...]: a mariadbd on DATADIR, socket
# $T/NAME.sock; waits until it answers.  Sets SOCK.
start_server() {
    local name=$1 datadir=$2 pid i
    shift 2
    SOCK=$T/$name.sock
    NAMES+=("$name")
    "$MARIADBD" --no-defaults --user=root --datadir="$datadir" --socket="$SOCK" \
        --pid-file="$T/$name.pid" --log-error="$T/$name.err" --skip-networking \
        --innodb-buffer-pool-size=32M --innodb-log-file-size=16M "$@" </dev/null >/dev/null 2>&1 &
    pid=$!
    SERVERS+=("$pid")
    for i in $(seq 600); do
        sql "$SOCK" -e 'SELECT 1' >/dev/null 2>&1 && return 0
        alive "$pid" || fail "mariadbd $name exited at start: $(tail -n 3 "$T/$name.err")"
        sleep 0.1
    done
    fail "mariadbd $name did not answer: $(tail -n 3 "$T/$name.err")"
}

com_flush() { sql "$SOCK1" -e "SHOW GLOBAL STATUS LIKE 'Com_flush'" | cut -f2; }

start_daemon --hooks-dir "$T/hooks.d"

# --- the server, its schema, its load
make_ext4_volume db 512M
mariadb-install-db --no-defaults --user=root --datadir="$VOL_MNT/mysql" --skip-test-db \
    --auth-root-authentication-method=socket >"$T/install.log" 2>&1 ||
    fail "mariadb-install-db: $(tail -n 3 "$T/install.log")"
start_server my1 "$VOL_MNT/mysql"
SOCK1=$SOCK
sql "$SOCK1" <<'EOF'
CREATE DATABASE app;
CREATE TABLE app.seq (n INT NOT NULL PRIMARY KEY, pad CHAR(100) NOT NULL) ENGINE=MyISAM;
CREATE TABLE app.a (n INT NOT NULL PRIMARY KEY, v CHAR(40) NOT NULL) ENGINE=MyISAM;
CREATE TABLE app.b (n INT NOT NULL PRIMARY KEY, v CHAR(40) NOT NULL) ENGINE=Aria TRANSACTIONAL=1;
CREATE TABLE app.c (n INT NOT NULL PRIMARY KEY, v CHAR(40) NOT NULL) ENGINE=InnoDB;
CREATE TABLE app.counter (id INT NOT NULL PRIMARY KEY, total INT NOT NULL) ENGINE=MyISAM;
INSERT INTO app.counter VALUES (1, 0);
EOF

# Whole multi-row statements into app.seq, as long as $T/load.run exists.
seq_load() {
    local n=0 i rows
    while [ -e "$T/load.run" ]; do
        rows=""
        for i in $(seq 20); do rows+="${rows:+,}($((n + i)),REPEAT('x',100))"; done
        n=$((n + 20))
        echo "INSERT INTO app.seq VALUES $rows;"
    done | sql "$SOCK1"
}
# Row N into a, b and c and the counter to N, under one LOCK TABLES.
batch_load() {
    local n=0
    while [ -e "$T/load.run" ]; do
        n=$((n + 1))
        echo "LOCK TABLES app.a WRITE, app.b WRITE, app.c WRITE, app.counter WRITE;
INSERT INTO app.a VALUES ($n, SHA1('$n'));
INSERT INTO app.b VALUES ($n, SHA1('$n'));
INSERT INTO app.c VALUES ($n, SHA1('$n'));
UPDATE app.counter SET total = $n WHERE id = 1;
UNLOCK TABLES;"
    done | sql "$SOCK1"
}
count() { sql "$1" -e "SELECT COUNT(*) FROM app.$2"; }
touch "$T/load.run"
seq_load &
LOADS+=("$!")
batch_load &
LOADS+=("$!")
for _ in $(seq 600); do
    [ "$(count "$SOCK1" seq)" -ge 400 ] && [ "$(count "$SOCK1" a)" -ge 50 ] && break
    sleep 0.1
done
[ "$(count "$SOCK1" a)" -ge 50 ] || fail "the load does not write"

# --- the hook in the hooks directory: run once, and only it
mkdir -p "$T/hooks.d" "$T/hooks"
cp "$HOOK" "$T/hooks.d/50-mariadb"
cp "$HOOK" "$T/hooks/mariadb"
for conf in "$T/hooks.d/50-mariadb.conf" "$T/hooks/mariadb.conf"; do
    cat >"$conf" <<EOF
MARIADB_CLIENT_ARGS="--no-defaults --socket=$SOCK1 --user=root"
# a trace of every run, for the test
echo "\$1|\$HOTSNAP_PHASE|\$HOTSNAP_SNAPSHOT|\$HOTSNAP_VOLUMES|\$HOTSNAP_MOUNTS|\$HOTSNAP_DEVICES|\$HOTSNAP_VOLUME|\$HOTSNAP_MOUNT|\$HOTSNAP_TIMEOUT|\$(pwd)" >>"$T/hook.calls"
EOF
done
printf '#!/bin/sh\necho "%s must not run" >&2\nexit 1\n' "$T/hooks.d/.hidden" >"$T/hooks.d/.hidden"
printf '#!/bin/sh\necho "%s must not run" >&2\nexit 1\n' "$T/hooks.d/50-mariadb~" >"$T/hooks.d/50-mariadb~"
chmod 755 "$T/hooks.d/.hidden" "$T/hooks.d/50-mariadb~"

# check_calls SNAPSHOT VOLUME MOUNT: one hook ran, none failed (also not
# the holder at its release); it ran prepare, freeze, thaw for SNAPSHOT,
# once each, with the contract's environment
check_calls() {
    local snap=$1 vol=$2 mnt=$3 got want
    got=$(json_eval '"%d %d" % (v["hooks"], v.get("hooks_failed", 0))' <"$T/snap.out")
    [ "$got" = "1 0" ] || fail "snapshot $snap ran hooks and failed hooks: $got, not 1 0"
    got=$(grep -F "|$snap|" "$T/hook.calls" | cut -d'|' -f1,2 | tr '\n' ' ')
    want="prepare|prepare freeze|freeze thaw|thaw "
    [ "$got" = "$want" ] || fail "the hook's runs for $snap were '$got', not '$want': $(cat "$T/hook.calls")"
    while IFS='|' read -r _ _ _ vols mnts devs v m tmo cwd; do
        [ "$vols" = db ] || fail "HOTSNAP_VOLUMES was '$vols', not 'db'"
        [ "$mnts" = "$VOL_MNT" ] || fail "HOTSNAP_MOUNTS was '$mnts', not '$VOL_MNT'"
        [ "$devs" = "$VOL_DEV" ] || fail "HOTSNAP_DEVICES was '$devs', not '$VOL_DEV'"
        [ "$v" = "$vol" ] || fail "HOTSNAP_VOLUME was '$v', not '$vol'"
        [ "$m" = "$mnt" ] || fail "HOTSNAP_MOUNT was '$m', not '$mnt'"
        [ "$tmo" -gt 0 ] 2>/dev/null || fail "HOTSNAP_TIMEOUT was '$tmo'"
        [ "$cwd" = / ] || fail "the hook ran in '$cwd', not in /"
    done < <(grep -F "|$snap|" "$T/hook.calls")
}

f0=$(com_flush)
hs --json snapshot create db --name dirhook >"$T/snap.out" || fail "snapshot with the directory hook failed"
f1=$(com_flush)
check_calls dirhook "" ""
[ $((f1 - f0)) = 2 ] || fail "the server counted $((f1 - f0)) FLUSH statements during the snapshot, not 2 (FLUSH TABLES, FLUSH TABLES WITH READ LOCK)"
hs snapshot delete db@dirhook
chmod -x "$T/hooks.d/50-mariadb"
log "the hooks directory: 50-mariadb ran prepare, freeze, thaw; .hidden, 50-mariadb~ and the .conf did not run"

# --- the volume's own hook, a snapshot under load, its backup
hs volume set db --hook "$T/hooks/mariadb" >/dev/null
f0=$(com_flush)
hs --json snapshot create db --name app >"$T/snap.out" || fail "snapshot with the volume's hook failed"
f1=$(com_flush)
check_calls app db "$VOL_MNT"
[ $((f1 - f0)) = 2 ] || fail "the server counted $((f1 - f0)) FLUSH statements during the snapshot, not 2"
hs backup db@app -o "$T/img.qcow2" --format qcow2 --no-progress >/dev/null || fail "backup of db@app failed"
hs snapshot delete db@app
log "a snapshot under load with the volume's hook (FLUSH TABLES WITH READ LOCK held across it), backed up"

# --- the image as a second server
hs restore "$T/img.qcow2" --new rst --backing "$T/rst.img" --no-progress >/dev/null || fail "restore failed"
rdev=$(hs volume attach rst)
mkdir -p "$T/mnt-rst"
mount -o nodiscard "$rdev" "$T/mnt-rst" || fail "the restored volume does not mount"
# MyISAM is not repaired at open: CHECK TABLE sees it as the image has it
start_server my2 "$T/mnt-rst/mysql" --myisam-recover-options=OFF
SOCK2=$SOCK
tables=$(sql "$SOCK2" -e "SELECT GROUP_CONCAT(CONCAT('\`', table_schema, '\`.\`', table_name, '\`'))
    FROM information_schema.tables WHERE table_schema IN ('app', 'mysql') AND table_type = 'BASE TABLE'
    AND engine IN ('MyISAM', 'Aria', 'InnoDB')")
sql "$SOCK2" -e "CHECK TABLE $tables EXTENDED" >"$T/check.out" || fail "CHECK TABLE failed: $(tail -n 3 "$T/check.out")"
ntab=$(wc -l <"$T/check.out")
[ "$ntab" -ge 10 ] || fail "CHECK TABLE checked only $ntab tables: $(cat "$T/check.out")"
bad=$(awk -F'\t' '$3 != "status" || $4 != "OK"' "$T/check.out")
[ -z "$bad" ] || fail "CHECK TABLE on the restored image: $bad"
log "restored and started: CHECK TABLE EXTENDED says OK, with no warning, for all $ntab tables"

read -r sn smax smin < <(sql "$SOCK2" -e "SELECT COUNT(*), COALESCE(MAX(n), 0), COALESCE(MIN(n), 1) FROM app.seq")
[ "$sn" -gt 0 ] && [ "$sn" = "$smax" ] && [ "$smin" = 1 ] && [ $((sn % 20)) = 0 ] ||
    fail "app.seq is not whole statements 1..N: $sn rows, ids $smin..$smax"
read -r na nb nc nabc total badv < <(sql "$SOCK2" -e "SELECT
    (SELECT COUNT(*) FROM app.a), (SELECT COUNT(*) FROM app.b), (SELECT COUNT(*) FROM app.c),
    (SELECT COUNT(*) FROM app.a JOIN app.b USING (n) JOIN app.c USING (n) WHERE n BETWEEN 1 AND (SELECT total FROM app.counter)),
    (SELECT total FROM app.counter),
    (SELECT COUNT(*) FROM (SELECT n, v FROM app.a UNION ALL SELECT n, v FROM app.b UNION ALL SELECT n, v FROM app.c) x WHERE v <> SHA1(n))")
[ "$na" -gt 0 ] && [ "$na" = "$nb" ] && [ "$nb" = "$nc" ] && [ "$nc" = "$nabc" ] && [ "$nabc" = "$total" ] ||
    fail "the LOCK TABLES batches were cut: a $na, b $nb, c $nc rows, $nabc rows 1..counter in all three, counter $total"
[ "$badv" = 0 ] || fail "$badv rows of a, b, c hold a wrong value"
log "the invariants hold in the image: $sn rows of whole statements; $total batches whole in MyISAM, Aria, InnoDB and the counter"

# the load went on through the snapshot and the backup, and ends cleanly
for _ in $(seq 600); do [ "$(count "$SOCK1" a)" -gt "$total" ] && break; sleep 0.1; done
[ "$(count "$SOCK1" a)" -gt "$total" ] || fail "the load stopped at the snapshot"
rm -f "$T/load.run"
for p in "${LOADS[@]}"; do wait "$p" || fail "a load session failed (status $?)"; done
LOADS=()
log "the load ran on after the snapshot ($(count "$SOCK1" a) batches) and ended without an error"
