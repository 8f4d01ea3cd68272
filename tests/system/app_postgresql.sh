#!/bin/bash
# PostgreSQL under pgbench, snapshotted with hooks/postgresql, backed up,
# restored and started: crash recovery brings it up, pg_amcheck finds every
# table and index sound, and pgbench's invariant holds.
#  - a private cluster (initdb as postgres, unix socket under $T, no TCP)
#    keeps its data directory on an ext4 on a hotsnap volume;
#  - pgbench's TPC-B-like transactions run while the snapshot is taken:
#    each adds one delta to an account, its teller and its branch and
#    writes it to the history, so the sums of abalance, tbalance, bbalance
#    and delta agree after any instant that recovery starts from;
#  - the volume's hook runs prepare (a CHECKPOINT the server counts),
#    freeze (nothing to hold) and thaw, with the contract's environment;
#  - the image, restored into a new volume, starts as a second cluster.
. "$(dirname "$0")/lib.sh"
require_block
require mkfs.ext4 runuser
# the server's own programs (Debian: postgresql-15, postgresql-client-15)
PGBIN=${PGBIN:-$( (ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true) | sort -V | tail -n 1)}
for p in initdb pg_ctl psql pgbench pg_amcheck; do
    [ -x "$PGBIN/$p" ] || skip "needs $p of a PostgreSQL server (PGBIN=$PGBIN)"
done
id -u postgres >/dev/null 2>&1 || skip "needs the user postgres"
HOOK=$HERE/../../hooks/postgresql
[ -x "$HOOK" ] || fail "no executable hook at $HOOK"
setup

DATADIRS=()  # data directories of the clusters we start
PGBENCH_PID=""

as_pg() { runuser -u postgres -- "$@"; }

alive() {   # a process that exists and is not a zombie
    local s
    s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    case $s in Z*) return 1 ;; esac
}

# Stops the postmaster of a data directory we started, by the pid in its
# postmaster.pid when that process still runs on it (fast shutdown).
stop_server() {
    local data=$1 pid
    pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null) || return 0
    [ -n "$pid" ] && alive "$pid" || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-D $data " || return 0
    kill -INT "$pid" 2>/dev/null
    for _ in $(seq 600); do alive "$pid" || return 0; sleep 0.1; done
    echo "postgres $pid did not stop on SIGINT; killed" >&2
    kill -KILL "$pid" 2>/dev/null
}

app_cleanup() {
    local p
    set +e
    if [ -n "$PGBENCH_PID" ]; then kill -TERM "$PGBENCH_PID" 2>/dev/null; wait "$PGBENCH_PID" 2>/dev/null; fi
    for p in "${DATADIRS[@]}"; do stop_server "$p"; done
}
trap 'rc=$?; app_cleanup; (exit $rc); cleanup' EXIT

# start_cluster NAME DATADIR: pg_ctl start, the socket in $T/NAME; sets SOCK.
start_cluster() {
    local name=$1 data=$2
    SOCK=$T/$name
    mkdir -p "$SOCK"
    chown postgres: "$SOCK"
    DATADIRS+=("$data")
    as_pg "$PGBIN/pg_ctl" start -w -t 120 -D "$data" -l "$SOCK/postgres.log" \
        -o "-c listen_addresses='' -c unix_socket_directories=$SOCK -c max_wal_size=128MB" >/dev/null ||
        fail "pg_ctl start $name: $(tail -n 3 "$SOCK/postgres.log")"
}

q() {   # q SOCKET [DB] SQL: one value
    local sock=$1 db=postgres
    [ $# = 3 ] && { db=$2; shift; }
    "$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$sock" -U postgres -d "$db" -c "$2"
}

# The sums that TPC-B-like transactions keep equal, and the history's length.
sums() {
    q "$1" bench "SELECT (SELECT sum(abalance) FROM pgbench_accounts) || ' ' ||
        (SELECT sum(tbalance) FROM pgbench_tellers) || ' ' ||
        (SELECT sum(bbalance) FROM pgbench_branches) || ' ' ||
        (SELECT coalesce(sum(delta), 0) FROM pgbench_history) || ' ' ||
        (SELECT count(*) FROM pgbench_history)"
}

checkpoints() { q "$SOCK1" "SELECT checkpoints_req FROM pg_stat_bgwriter"; }

start_daemon
chmod 711 "$T"   # the user postgres reaches its directories under $T

# --- the cluster and its load
make_ext4_volume pgvol 512M
mkdir "$VOL_MNT/pg"
chown postgres: "$VOL_MNT/pg"
chmod 700 "$VOL_MNT/pg"
as_pg "$PGBIN/initdb" -D "$VOL_MNT/pg" -U postgres -A trust >"$T/initdb.log" 2>&1 ||
    fail "initdb: $(tail -n 3 "$T/initdb.log")"
start_cluster pg1 "$VOL_MNT/pg"
SOCK1=$SOCK
q "$SOCK1" "CREATE DATABASE bench" >/dev/null
"$PGBIN/pgbench" -h "$SOCK1" -U postgres -i -s 2 -q bench >"$T/pgbench-init.log" 2>&1 ||
    fail "pgbench -i: $(tail -n 3 "$T/pgbench-init.log")"
"$PGBIN/pgbench" -h "$SOCK1" -U postgres -n -c 4 -j 2 -T 600 bench >"$T/pgbench.log" 2>&1 &
PGBENCH_PID=$!
for _ in $(seq 600); do
    [ "$(q "$SOCK1" bench "SELECT count(*) FROM pgbench_history")" -ge 200 ] && break
    alive "$PGBENCH_PID" || fail "pgbench ended: $(tail -n 3 "$T/pgbench.log")"
    sleep 0.1
done
[ "$(q "$SOCK1" bench "SELECT count(*) FROM pgbench_history")" -ge 200 ] || fail "pgbench does not commit"

# --- the volume's hook, a snapshot under load, its backup
mkdir "$T/hooks"
cp "$HOOK" "$T/hooks/postgresql"
cat >"$T/hooks/postgresql.conf" <<EOF
PGHOST=$SOCK1
# a trace of every run, for the test
echo "\$1|\$HOTSNAP_PHASE|\$HOTSNAP_SNAPSHOT|\$HOTSNAP_VOLUMES|\$HOTSNAP_MOUNTS|\$HOTSNAP_DEVICES|\$HOTSNAP_VOLUME|\$HOTSNAP_MOUNT|\$HOTSNAP_TIMEOUT|\$(pwd)" >>"$T/hook.calls"
EOF
hs volume set pgvol --hook "$T/hooks/postgresql" >/dev/null
c0=$(checkpoints)
hs --json snapshot create pgvol --name app >"$T/snap.out" || fail "snapshot with the volume's hook failed"
got=$(json_eval '"%d %d" % (v["hooks"], v.get("hooks_failed", 0))' <"$T/snap.out")
[ "$got" = "1 0" ] || fail "the snapshot ran hooks and failed hooks: $got, not 1 0"
got=$(grep -F "|app|" "$T/hook.calls" | cut -d'|' -f1,2 | tr '\n' ' ')
[ "$got" = "prepare|prepare freeze|freeze thaw|thaw " ] ||
    fail "the hook's runs were '$got', not prepare, freeze, thaw: $(cat "$T/hook.calls")"
while IFS='|' read -r _ _ _ vols mnts devs v m tmo cwd; do
    [ "$vols|$mnts|$devs|$v|$m|$cwd" = "pgvol|$VOL_MNT|$VOL_DEV|pgvol|$VOL_MNT|/" ] ||
        fail "the hook's environment: HOTSNAP_VOLUMES '$vols' MOUNTS '$mnts' DEVICES '$devs' VOLUME '$v' MOUNT '$m', cwd '$cwd'"
    [ "$tmo" -gt 0 ] 2>/dev/null || fail "HOTSNAP_TIMEOUT was '$tmo'"
done < <(grep -F "|app|" "$T/hook.calls")
# the checkpointer reports a finished checkpoint a moment after it wakes the caller
for _ in $(seq 100); do [ "$(checkpoints)" -gt "$c0" ] && break; sleep 0.1; done
[ "$(checkpoints)" -gt "$c0" ] || fail "the server counted no CHECKPOINT during the snapshot"
hs backup pgvol@app -o "$T/img.qcow2" --format qcow2 --no-progress >/dev/null || fail "backup of pgvol@app failed"
hs snapshot delete pgvol@app
log "a snapshot under pgbench with the volume's hook (a CHECKPOINT first), backed up"

# --- the image as a second cluster
hs restore "$T/img.qcow2" --new rst --backing "$T/rst.img" --no-progress >/dev/null || fail "restore failed"
rdev=$(hs volume attach rst)
mkdir -p "$T/mnt-rst"
mount -o nodiscard "$rdev" "$T/mnt-rst" || fail "the restored volume does not mount"
# the copy names the first cluster's postmaster, which still runs here
rm -f "$T/mnt-rst/pg/postmaster.pid"
start_cluster pg2 "$T/mnt-rst/pg"
SOCK2=$SOCK
grep -q "database system was interrupted" "$SOCK2/postgres.log" ||
    fail "the restored cluster did not start from an interrupted state: $(head -n 5 "$SOCK2/postgres.log")"
"$PGBIN/pg_amcheck" -h "$SOCK2" -U postgres --install-missing --heapallindexed --all >"$T/amcheck.log" 2>&1 ||
    fail "pg_amcheck on the restored cluster: $(tail -n 5 "$T/amcheck.log")"
log "restored and started after crash recovery; pg_amcheck --heapallindexed finds every relation sound"

read -r ab tb bb delta n < <(sums "$SOCK2")
[ "$n" -gt 0 ] && [ "$ab" = "$tb" ] && [ "$tb" = "$bb" ] && [ "$bb" = "$delta" ] ||
    fail "pgbench's sums differ in the image: accounts $ab, tellers $tb, branches $bb, history $delta ($n rows)"
log "pgbench's invariant holds in the image: $n transactions, every sum $ab"

# the load went on after the snapshot
kill -TERM "$PGBENCH_PID" 2>/dev/null || fail "pgbench ended early: $(tail -n 3 "$T/pgbench.log")"
wait "$PGBENCH_PID" 2>/dev/null || true
PGBENCH_PID=""
read -r _ _ _ _ n1 < <(sums "$SOCK1")
[ "$n1" -gt "$n" ] || fail "the load stopped at the snapshot ($n1 transactions, $n in the image)"
log "pgbench ran on after the snapshot ($n1 transactions)"
