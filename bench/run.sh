#!/bin/bash
# bench/run.sh - what `make bench` runs, as root.  Prints one table with
# ratios and writes every figure as JSON to bench/results/RUN.json.
#
#   engine      the write path on a memory device (ns/write: no snapshot,
#               first write after a snapshot, rewrite), snapshot creation
#               and map memory at 100 GiB
#   frontend    fio 4k random write QD16, 1M sequential read, and 1M
#               sequential write QD64 (then the daemon's RSS), on a loop
#               device straight on a file (raw) and on hotsnap's FUSE file
#   backup      1 GiB of data, caches dropped: hotsnap backup vs a plain
#               copy of the file
#   memory      daemon RSS while backing up a 100 GiB sparse volume with a
#               snapshot active, beyond the configured RAM buffer
#   cowmemory   daemon RSS while a snapshot holds 1 GiB of 4k copies (a 2 GiB
#               volume written whole, then 1 GiB of 4k random rewrites): peak
#               and after, and where the copy records are (BENCH_COW_GIB=N:
#               N GiB of copies)
#   diffpeak    diff store peak during a backup of a 1 GiB volume while a
#               writer rewrites random blocks: consuming vs not consuming
#   latency     p99 of 4k random writes right after a snapshot, default
#               buffer vs 1 MiB buffer with a slow diff store
#   chains      backup chains: an incremental after 1% random 4k rewrites of
#               a 4 GiB volume (daemon up throughout, then after a kill -9):
#               bytes read against bytes changed, time against the full;
#               a full qcow2+zstd backup against qemu-img convert -c of the
#               same snapshot over NBD (speed, size); restore of the chain
#               against qemu-img convert onto a raw backing; 4k random
#               writes with change tracking against a volume without
#   tls         a remote pull of a 1 GiB snapshot with nbdcopy over TCP on the
#               loopback: TLS (PSK) against clear text, 4 connections; and
#               into a raw file: nbdcopy (then sync) against hotsnap backup nbds://
#   transport   fio 4k random write QD16 on a raw loop device over a plain
#               file against hotsnap volumes served over FUSE io_uring
#               (daemon --fuse-transport io-uring) and over /dev/fuse
#               (--fuse-transport dev): three interleaved rounds, median and
#               range of IOPS and p99; a transport the daemon cannot serve
#               is reported as skipped, with the reason
#   peers       ../shared/peers/bench.sh -b raw,qsd,hotsnap (the harness)
#
# BENCH_ONLY="engine frontend ..." runs a subset; BENCH_SECONDS sets fio
# runtimes (default 10).
set -uo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
ROOT=$PWD
HOTSNAP=${HOTSNAP:-$ROOT/build/hotsnap} # another build, for an A/B
PY=/usr/bin/python3
SECS=${BENCH_SECONDS:-10}
ONLY=${BENCH_ONLY:-engine frontend transport backup memory cowmemory diffpeak latency chains tls peers}
RUN=$(date +%Y%m%dT%H%M%S)
OUTDIR=$ROOT/bench/results
mkdir -p "$OUTDIR"
JSON=$OUTDIR/$RUN.jsonl
: >"$JSON"

[ "$(id -u)" = 0 ] || { echo "bench/run.sh needs root" >&2; exit 1; }
W=$(mktemp -d /tmp/hotsnap-bench.XXXXXX)
DAEMON=""
BG=()

cleanup() {
    local m dev back p
    set +e
    for p in "${BG[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    for m in $(awk -v w="$W" 'index($5, w "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
        fsfreeze -u "$m" 2>/dev/null; umount "$m" 2>/dev/null || umount -l "$m"
    done
    stop_daemon
    losetup -n -O NAME,BACK-FILE | while read -r dev back; do
        case $back in "$W"/*) losetup -d "$dev" ;; esac
    done
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

emit() { echo "$1" >>"$JSON"; }
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
jget() { $PY -c 'import json,sys; v=json.load(sys.stdin); print(eval("v"+sys.argv[1]))' "$1"; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

start_daemon() {   # start_daemon STATEDIR [daemon options]
    S=$1
    shift
    "$HOTSNAP" --state-dir "$S" daemon "$@" >"$W/daemon.log" 2>&1 &
    DAEMON=$!
    for _ in $(seq 200); do "$HOTSNAP" --state-dir "$S" status >/dev/null 2>&1 && return; sleep 0.05; done
    echo "daemon did not start" >&2; exit 1
}
stop_daemon() {
    [ -n "$DAEMON" ] || return 0
    kill -TERM "$DAEMON" 2>/dev/null; wait "$DAEMON" 2>/dev/null; DAEMON=""
}
hs() { "$HOTSNAP" --state-dir "$S" "$@"; }

fio_json() {   # fio_json NAME FILE [args] -> prints iops, p99_us, mb_s
    local name=$1 file=$2
    shift 2
    fio --name="$name" --filename="$file" --direct=1 --ioengine=libaio --time_based \
        --runtime="$SECS" --output-format=json "$@" 2>/dev/null |
        $PY -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; k="write" if j["write"]["io_bytes"] else "read"; d=j[k]; p=d["clat_ns"]["percentile"]; print("%.0f %.1f %.1f" % (d["iops"], p["99.000000"]/1000, d["bw_bytes"]/1e6))'
}

bench_engine() {
    log "engine: write path on a memory device"
    local r
    r=$("$ROOT/build/bench/bench_engine")
    emit "{\"test\":\"engine\",\"result\":$r}"
}

bench_frontend() {
    log "frontend: fio on a raw loop device vs on hotsnap's FUSE file"
    truncate -s 2G "$W/raw.img"
    dd if=/dev/zero of="$W/raw.img" bs=4M count=512 oflag=direct conv=notrunc status=none
    local raw
    raw=$(losetup -f --show --direct-io=on "$W/raw.img")
    read -r rw_iops rw_p99 _ < <(fio_json raw "$raw" --rw=randwrite --bs=4k --iodepth=16 --size=1G)
    read -r rr_iops rr_p99 rr_mb < <(fio_json raw "$raw" --rw=read --bs=1M --iodepth=4 --size=2G)
    read -r _ _ rsw_mb < <(fio_json raw "$raw" --rw=write --bs=1M --iodepth=64 --size=2G)
    losetup -d "$raw"
    start_daemon "$W/state-fe"
    hs volume create fe --backing "$W/raw.img" >/dev/null
    local dev
    dev=$(hs volume attach fe)
    read -r hw_iops hw_p99 _ < <(fio_json hot "$dev" --rw=randwrite --bs=4k --iodepth=16 --size=1G)
    read -r hr_iops hr_p99 hr_mb < <(fio_json hot "$dev" --rw=read --bs=1M --iodepth=4 --size=2G)
    # a deep queue of large requests wakes every FUSE worker: what they hold
    read -r _ _ hsw_mb < <(fio_json hot "$dev" --rw=write --bs=1M --iodepth=64 --size=2G)
    local rss_io
    rss_io=$(rss_now)
    hs snapshot create fe --no-freeze >/dev/null
    read -r hs_iops hs_p99 _ < <(fio_json cow "$dev" --rw=randwrite --bs=4k --iodepth=16 --size=1G)
    hs volume detach fe >/dev/null
    stop_daemon
    emit "{\"test\":\"frontend\",\"raw_randwrite_iops\":$rw_iops,\"raw_randwrite_p99_us\":$rw_p99,\"raw_seqread_mb_s\":$rr_mb,\"hotsnap_randwrite_iops\":$hw_iops,\"hotsnap_randwrite_p99_us\":$hw_p99,\"hotsnap_seqread_mb_s\":$hr_mb,\"hotsnap_cow_randwrite_iops\":$hs_iops,\"hotsnap_cow_randwrite_p99_us\":$hs_p99,\"raw_seqwrite_mb_s\":$rsw_mb,\"hotsnap_seqwrite_mb_s\":$hsw_mb,\"hotsnap_rss_after_io_bytes\":$rss_io}"
    rm -f "$W/raw.img"
}

# transport: hotsnap over FUSE io_uring and over /dev/fuse against the disk.
# One state dir and one backing file serve both transports: each round
# starts the daemon with the transport it measures and stops it after, so
# both see the same extents and neither keeps a warm daemon the other lacks.
TR_WHY=""
TR_IOPS=""
TR_P99=""
TR_REQ=""
TR_VOL=""
tr_fio() {   # tr_fio NAME DEV -> iops p99_us mb_s
    fio_json "$1" "$2" --rw=randwrite --bs=4k --iodepth=16 --numjobs=1 --size=1G --ramp_time=1
}
tr_start() {   # tr_start TRANSPORT ROUND -> 0 when the daemon serves TRANSPORT, else 1 (TR_WHY)
    local want=$1 log=$W/tr-daemon-$1-$2.log name why
    TR_WHY=""
    S=$W/state-tr
    "$HOTSNAP" --state-dir "$S" daemon --fuse-transport "$want" >"$log" 2>&1 &
    DAEMON=$!
    for _ in $(seq 200); do
        hs status >/dev/null 2>&1 && break
        kill -0 "$DAEMON" 2>/dev/null || break
        sleep 0.05
    done
    if ! hs status >/dev/null 2>&1; then
        stop_daemon
        why=$(grep -m1 -iE 'error|unrecognized|invalid|unknown|cannot|not supported|refus' "$log")
        [ -n "$why" ] || why=$(tail -n1 "$log")
        TR_WHY="daemon --fuse-transport $want did not start: ${why:-no message}"
        return 1
    fi
    IFS=$'\t' read -r name why < <(hs --json status | $PY -c '
import json, sys
try:
    t = json.load(sys.stdin)["fuse_transport"]
    print("%s\t%s" % (t.get("name") or "?", str(t.get("why_not_io_uring") or "").replace("\t", " ").replace("\n", " ")))
except Exception as e:
    print("?\tno fuse_transport in status --json (%s)" % e)')
    if [ "$name" != "$want" ]; then
        TR_WHY="asked for $want, the daemon serves ${name:-?}${why:+: $why}"
        stop_daemon
        return 1
    fi
}
tr_round() {   # tr_round TRANSPORT ROUND -> 0 and TR_IOPS, TR_P99, TR_REQ; else 1 (TR_WHY)
    local t=$1 r=$2 dev
    TR_IOPS="" TR_P99="" TR_REQ=""
    tr_start "$t" "$r" || return 1
    if [ -z "$TR_VOL" ]; then
        if ! hs volume create tr --backing "$W/tr-hs.img" >/dev/null 2>"$W/tr.err"; then
            TR_WHY="volume create: $(head -n1 "$W/tr.err")"
            stop_daemon
            return 1
        fi
        TR_VOL=1
    fi
    if ! dev=$(hs volume attach tr 2>"$W/tr.err"); then
        TR_WHY="volume attach with --fuse-transport $t: $(head -n1 "$W/tr.err")"
        stop_daemon
        return 1
    fi
    read -r TR_IOPS TR_P99 _ < <(tr_fio "$t" "$dev")
    # which path the requests took: "ring/dev" requests the daemon answered
    TR_REQ=$(hs --json status | $PY -c '
import json, sys
t = json.load(sys.stdin).get("fuse_transport") or {}
print("%d/%d" % (t.get("ring_requests", 0), t.get("dev_requests", 0)))' 2>/dev/null)
    hs volume detach tr >/dev/null
    stop_daemon
    [ -n "$TR_IOPS" ] || { TR_WHY="fio failed on $dev (--fuse-transport $t)"; return 1; }
}

bench_transport() {
    log "transport: 4k randwrite QD16, raw loop vs hotsnap over FUSE io_uring vs /dev/fuse, 3 rounds"
    # same size, same file system, each written once sequentially, so no
    # case pays the first-touch allocation the others do not
    local f raw r t
    truncate -s 1G "$W/tr-raw.img" "$W/tr-hs.img"
    for f in "$W/tr-raw.img" "$W/tr-hs.img"; do
        dd if=/dev/zero of="$f" bs=4M count=256 oflag=direct conv=notrunc status=none
        sync -f "$f"
    done
    raw=$(losetup -f --show --direct-io=on "$W/tr-raw.img")
    local raw_io=() raw_p=() ring_io=() ring_p=() dev_io=() dev_p=()
    local ring_why="" dev_why="" io p ring_req=() dev_req=()
    TR_VOL=""
    for r in 1 2 3; do   # interleaved: this machine drifts
        read -r io p _ < <(tr_fio raw "$raw")
        [ -n "$io" ] || { echo "transport: fio failed on the raw loop device $raw" >&2; exit 1; }
        raw_io+=("$io"); raw_p+=("$p")
        for t in io-uring dev; do
            if [ "$t" = io-uring ]; then [ -z "$ring_why" ] || continue; else [ -z "$dev_why" ] || continue; fi
            if tr_round "$t" "$r"; then
                if [ "$t" = io-uring ]; then ring_io+=("$TR_IOPS"); ring_p+=("$TR_P99"); ring_req+=("${TR_REQ:-?/?}")
                else dev_io+=("$TR_IOPS"); dev_p+=("$TR_P99"); dev_req+=("${TR_REQ:-?/?}"); fi
            else
                log "transport: $t skipped: round $r: $TR_WHY"
                if [ "$t" = io-uring ]; then ring_why="round $r: $TR_WHY"; else dev_why="round $r: $TR_WHY"; fi
            fi
        done
    done
    losetup -d "$raw"
    [ -e /sys/module/fuse/parameters/enable_uring ] && [ -n "$ring_why" ] &&
        ring_why="$ring_why (fuse enable_uring=$(cat /sys/module/fuse/parameters/enable_uring))"
    emit "$(TR_SECS=$SECS TR_RAW_IO="${raw_io[*]}" TR_RAW_P="${raw_p[*]}" \
        TR_RING_IO="${ring_io[*]}" TR_RING_P="${ring_p[*]}" TR_RING_WHY="$ring_why" TR_RING_REQ="${ring_req[*]}" TR_DEV_REQ="${dev_req[*]}" \
        TR_DEV_IO="${dev_io[*]}" TR_DEV_P="${dev_p[*]}" TR_DEV_WHY="$dev_why" $PY -c '
import json, os, statistics
e = os.environ
def case(io, p, why, served, req=None):
    io = [float(x) for x in e[io].split()]
    p = [float(x) for x in e[p].split()]
    c = {}
    if served and not why:
        c["served_by"] = served
    if why:
        c["skipped"] = why
    c["iops_runs"] = io
    c["p99_us_runs"] = p
    if req:   # per round, the requests answered over the ring and over /dev/fuse
        c["ring_dev_requests_runs"] = [[int(n) if n.isdigit() else None for n in x.split("/")]
                                       for x in e[req].split()]
    if io and not why:
        c.update(iops_median=statistics.median(io), iops_min=min(io), iops_max=max(io),
                 p99_us_median=statistics.median(p), p99_us_min=min(p), p99_us_max=max(p))
    return c
r = {"test": "transport", "rounds": 3, "seconds": int(e["TR_SECS"]), "region_bytes": 1 << 30,
     "fio": "randwrite bs=4k iodepth=16 numjobs=1 direct=1 libaio ramp_time=1",
     "raw": case("TR_RAW_IO", "TR_RAW_P", "", None),
     "io_uring": case("TR_RING_IO", "TR_RING_P", e["TR_RING_WHY"], "io-uring", "TR_RING_REQ"),
     "dev": case("TR_DEV_IO", "TR_DEV_P", e["TR_DEV_WHY"], "dev", "TR_DEV_REQ")}
for k in ("io_uring", "dev"):
    c, b = r[k], r["raw"]
    ok = "iops_median" in c and b["iops_median"] and b["p99_us_median"]
    r[k + "_raw_iops_ratio"] = round(c["iops_median"] / b["iops_median"], 3) if ok else None
    r[k + "_raw_p99_ratio"] = round(c["p99_us_median"] / b["p99_us_median"], 3) if ok else None
print(json.dumps(r))')"
    rm -f "$W/tr-raw.img" "$W/tr-hs.img" "$W/tr.err"
}

bench_backup() {
    log "backup: 1 GiB of data, caches dropped, hotsnap vs cp"
    head -c $((64 << 20)) /dev/urandom >"$W/seed"
    for _ in $(seq 16); do cat "$W/seed"; done >"$W/data.img"
    drop_caches
    local t0 t1 cp_s hs_s
    t0=$(date +%s%N); cp --sparse=never "$W/data.img" "$W/copy.raw"; sync "$W/copy.raw"; t1=$(date +%s%N)
    cp_s=$(( t1 - t0 ))
    rm -f "$W/copy.raw"
    start_daemon "$W/state-bk"
    hs volume create bk --backing "$W/data.img" >/dev/null
    local snap res
    snap=$(hs snapshot create bk --no-freeze --all-blocks)
    drop_caches
    res=$(hs --json backup "$snap" -o "$W/hs.raw" --no-progress)
    hs_s=$(echo "$res" | jget '["seconds"]')
    stop_daemon
    emit "{\"test\":\"backup\",\"bytes\":$((1 << 30)),\"cp_seconds\":$($PY -c "print($cp_s/1e9)"),\"hotsnap_seconds\":$hs_s,\"cp_mb_s\":$($PY -c "print(round(2**30/($cp_s/1e9)/1e6,1))"),\"hotsnap_mb_s\":$($PY -c "print(round(2**30/$hs_s/1e6,1))")}"
    rm -f "$W/hs.raw" "$W/data.img" "$W/seed"
}

rss_now() { awk '/^VmRSS/ { print $2 * 1024 }' "/proc/$DAEMON/status"; }
rss_peak_while() {   # rss_peak_while PID: the daemon's peak RSS (bytes) while PID runs
    local peak=0 rss
    while kill -0 "$1" 2>/dev/null; do
        rss=$(rss_now)
        [ "$rss" -gt "$peak" ] && peak=$rss
        sleep 0.05
    done
    echo "$peak"
}

bench_memory() {
    log "memory: RSS while backing up a 100 GiB sparse volume with a snapshot active"
    truncate -s 100G "$W/big.img"
    for i in $(seq 0 15); do   # 1 GiB of data spread over the volume
        dd if=/dev/urandom of="$W/big.img" bs=1M count=64 seek=$((i * 6400)) conv=notrunc status=none
    done
    start_daemon "$W/state-mem"
    hs volume create big --backing "$W/big.img" >/dev/null
    local snap peak st map
    snap=$(hs snapshot create big --no-freeze)
    st=$(hs --json status)
    map=$(echo "$st" | jget '["volumes"][0]["map_memory_bytes"]')
    hs backup "$snap" -o "$W/big.raw" --no-progress >/dev/null &
    local b=$!
    peak=$(rss_peak_while "$b")
    wait "$b"
    stop_daemon
    local buf=$((8 << 20))
    emit "{\"test\":\"memory\",\"volume_bytes\":$((100 << 30)),\"rss_peak_bytes\":$peak,\"cow_buffer_bytes\":$buf,\"rss_beyond_buffer_bytes\":$((peak - buf)),\"map_bytes_snapshot_active\":$map,\"map_bytes_per_gib\":$((map / 100))}"
    rm -f "$W/big.img" "$W/big.raw"
}

# cowmemory: the daemon's RSS while copies pile up.  Each copy has a record;
# settled ones rest in a file beside the diff file, so memory should stay
# near the RAM buffer however many copies a snapshot holds.
bench_cowmemory() {
    local g=${BENCH_COW_GIB:-1}
    log "cowmemory: RSS while a snapshot holds $g GiB of 4k copies"
    truncate -s $((2 * g))G "$W/cm.img"
    start_daemon "$W/state-cm"
    hs volume create cm --backing "$W/cm.img" --diff-limit $((2 * g))G >/dev/null
    local dev rss0 rss1 peak st
    dev=$(hs volume attach cm)
    fio --name=fill --filename="$dev" --rw=write --bs=1M --iodepth=16 --direct=1 \
        --ioengine=libaio --size=$((2 * g))G >/dev/null 2>&1
    rss0=$(rss_now)
    hs snapshot create cm --no-freeze >/dev/null
    # fio's random map writes each 4k block of the first GiB's worth once
    fio --name=cow --filename="$dev" --rw=randwrite --bs=4k --iodepth=16 --direct=1 \
        --ioengine=libaio --size=$((2 * g))G --io_size=${g}G >/dev/null 2>&1 &
    local writer=$!
    peak=$(rss_peak_while "$writer")
    wait "$writer"
    sleep 1 # the flusher's last passes
    rss1=$(rss_now)
    [ "$rss1" -gt "$peak" ] && peak=$rss1
    st=$(hs --json status)
    local inmem atrest map held
    # -1: a build from before copy records could rest
    inmem=$(echo "$st" | jget '["volumes"][0].get("copy_records_in_memory", -1)')
    atrest=$(echo "$st" | jget '["volumes"][0].get("copy_records_at_rest", -1)')
    map=$(echo "$st" | jget '["volumes"][0]["map_memory_bytes"]')
    held=$(echo "$st" | jget '["volumes"][0]["diff_bytes"]')
    hs volume detach cm >/dev/null
    stop_daemon
    emit "{\"test\":\"cowmemory\",\"held_bytes\":$held,\"cow_buffer_bytes\":$((8 << 20)),\"rss_before_bytes\":$rss0,\"rss_peak_bytes\":$peak,\"rss_after_bytes\":$rss1,\"records_in_memory\":$inmem,\"records_at_rest\":$atrest,\"map_memory_bytes\":$map}"
    rm -f "$W/cm.img"
}

diffpeak_run() {   # diffpeak_run consume|keep -> prints diff peak bytes and backup MB/s
    local mode=$1
    start_daemon "$W/state-dp-$mode"
    hs volume create dp --backing "$W/dp.img" --diff-limit 1G >/dev/null
    local dev snap args=()
    dev=$(hs volume attach dp)
    snap=$(hs snapshot create dp --no-freeze)
    [ "$mode" = consume ] && args=(--consume)
    fio --name=rw --filename="$dev" --rw=randwrite --bs=4k --direct=1 --ioengine=libaio \
        --iodepth=8 --size=1G --time_based --runtime=600 >/dev/null 2>&1 &
    local f=$!
    local res
    res=$(hs --json backup "$snap" -o "$W/dp.raw" --no-progress --rate 100 "${args[@]}")
    kill "$f"; wait "$f" 2>/dev/null
    echo "$(hs --json status | jget '["volumes"][0]["diff_peak_bytes"]') $(echo "$res" | jget '["read_mb_per_s"]') $(echo "$res" | jget '["cow_bytes"]')"
    hs volume detach dp >/dev/null
    stop_daemon
    rm -f "$W/dp.raw"
}

bench_diffpeak() {
    log "diffpeak: 1 GiB volume, writer rewriting random blocks during the backup"
    dd if=/dev/urandom of="$W/dp.img" bs=4M count=256 status=none
    read -r keep_peak keep_mb keep_cow < <(diffpeak_run keep)
    read -r cons_peak cons_mb cons_cow < <(diffpeak_run consume)
    emit "{\"test\":\"diffpeak\",\"volume_bytes\":$((1 << 30)),\"not_consuming_peak_bytes\":$keep_peak,\"not_consuming_cow_bytes\":$keep_cow,\"consuming_peak_bytes\":$cons_peak,\"consuming_cow_bytes\":$cons_cow,\"backup_rate_cap_mb_s\":100}"
    rm -f "$W/dp.img"
}

latency_run() {   # latency_run LABEL [volume create args] -> iops p99
    local label=$1
    shift
    start_daemon "$W/state-lat-$label"
    hs volume create lat --backing "$W/lat.img" --diff-limit 1G "$@" >/dev/null
    local dev
    dev=$(hs volume attach lat)
    read -r n_iops n_p99 _ < <(fio_json n "$dev" --rw=randwrite --bs=4k --iodepth=16 --size=1G)
    hs snapshot create lat --no-freeze >/dev/null
    read -r s_iops s_p99 _ < <(fio_json s "$dev" --rw=randwrite --bs=4k --iodepth=16 --size=1G)
    local waits
    waits=$(hs --json status | jget '["volumes"][0]["writer_waits"]')
    hs volume detach lat >/dev/null
    stop_daemon
    echo "$n_iops $n_p99 $s_iops $s_p99 $waits"
}

bench_latency() {
    log "latency: p99 of 4k random writes right after a snapshot"
    dd if=/dev/urandom of="$W/lat.img" bs=4M count=256 status=none
    read -r dn di ds dsp dw < <(latency_run default)
    # the slow diff store: a diff dir on a file system whose device is a
    # loop device on a FUSE-free, O_SYNC-written file, throttled by the
    # kernel's own loop queue at queue depth 1
    truncate -s 2G "$W/slow.img"
    local sl
    sl=$(losetup -f --show "$W/slow.img")
    mkfs.ext4 -q "$sl"
    mkdir -p "$W/slow"
    mount -o sync "$sl" "$W/slow"
    read -r sn si ss ssp sw < <(latency_run slow --cow-buffer 1M --diff-dir "$W/slow")
    umount "$W/slow"
    losetup -d "$sl"
    emit "{\"test\":\"latency\",\"default_nosnap_iops\":$dn,\"default_nosnap_p99_us\":$di,\"default_snap_iops\":$ds,\"default_snap_p99_us\":$dsp,\"default_writer_waits\":$dw,\"slow_nosnap_iops\":$sn,\"slow_nosnap_p99_us\":$si,\"slow_snap_iops\":$ss,\"slow_snap_p99_us\":$ssp,\"slow_writer_waits\":$sw}"
    rm -f "$W/lat.img" "$W/slow.img"
}

median() { $PY -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
secs() { $PY -c "import sys; print(($2 - $1) / 1e9)" ; }

bench_chains() {
    log "chains: incrementals, qcow2+zstd against qemu-img, restore, tracking cost"
    start_daemon "$W/state-ch"
    # 1. a 4 GiB volume of data, a full qcow2, 1% random 4k rewrites, an incremental
    head -c $((64 << 20)) /dev/urandom >"$W/seed"
    for _ in $(seq 64); do cat "$W/seed"; done >"$W/inc.img"
    rm -f "$W/seed"
    hs volume create inc --backing "$W/inc.img" >/dev/null
    local dev res full_s inc_read inc_changed inc_s crash_read crash_changed crash_s n
    n=$(( (4 << 30) / 4096 / 100 ))   # 1% of the 4 KiB blocks
    hs snapshot create inc --name c0 --no-freeze >/dev/null
    res=$(hs --json backup inc@c0 -o "$W/c0.qcow2" --format qcow2 --no-progress)
    full_s=$(echo "$res" | jget '["seconds"]')
    hs snapshot delete inc@c0
    dev=$(hs volume attach inc)
    fio --name=w --filename="$dev" --rw=randwrite --bs=4k --direct=1 --ioengine=libaio \
        --iodepth=16 --number_ios=$n --size=4G --randseed=1 >/dev/null 2>&1
    hs snapshot create inc --name c1 --no-freeze >/dev/null
    res=$(hs --json backup inc@c1 -o "$W/c1.qcow2" --incremental "$W/c0.qcow2" --no-progress)
    inc_read=$(echo "$res" | jget '["bytes_read"]')
    inc_changed=$(echo "$res" | jget '["changed_bytes"]')
    inc_s=$(echo "$res" | jget '["seconds"]')
    hs snapshot delete inc@c1
    # the same after a kill -9: the changes come from the region map on disk
    fio --name=w --filename="$dev" --rw=randwrite --bs=4k --direct=1 --ioengine=libaio \
        --iodepth=16 --number_ios=$n --size=4G --randseed=2 >/dev/null 2>&1
    kill -KILL "$DAEMON"; wait "$DAEMON" 2>/dev/null; DAEMON=""
    start_daemon "$W/state-ch"
    hs snapshot create inc --name c2 --no-freeze >/dev/null
    res=$(hs --json backup inc@c2 -o "$W/c2.qcow2" --incremental "$W/c1.qcow2" --no-progress)
    crash_read=$(echo "$res" | jget '["bytes_read"]')
    crash_changed=$(echo "$res" | jget '["changed_bytes"]')
    crash_s=$(echo "$res" | jget '["seconds"]')
    hs snapshot delete inc@c2
    # 2. restore of the chain against qemu-img convert onto a raw file
    local rs=() qs=() t0 t1 i
    for i in 1 2 3; do
        drop_caches
        res=$(hs --json restore "$W/c2.qcow2" --new r$i --backing "$W/r.img" --no-progress)
        rs+=("$(echo "$res" | jget '["seconds"]')")
        hs volume remove r$i >/dev/null; rm -f "$W/r.img"
        truncate -s 4G "$W/q.img"
        drop_caches
        t0=$(date +%s%N); qemu-img convert -n -O raw "$W/c2.qcow2" "$W/q.img"; sync; t1=$(date +%s%N)
        qs+=("$(secs "$t0" "$t1")")
        rm -f "$W/q.img"
    done
    local restore_s qemu_restore_s
    restore_s=$(median "${rs[@]}"); qemu_restore_s=$(median "${qs[@]}")
    hs volume remove inc >/dev/null; rm -f "$W/inc.img" "$W"/c[0-2].qcow2
    # 3. compressible data: qcow2+zstd against qemu-img convert -c over NBD
    hs volume create cz --backing "$W/cz.img" --size 1G >/dev/null
    dev=$(hs volume attach cz)
    mkfs.ext4 -q -F -E nodiscard "$dev"
    mkdir -p "$W/czm"; mount "$dev" "$W/czm"
    cp -a /usr/share "$W/czm/" 2>/dev/null; cp -a /usr/lib "$W/czm/" 2>/dev/null
    umount "$W/czm"; hs volume detach cz >/dev/null
    hs snapshot create cz --name z --no-freeze --all-blocks >/dev/null
    local hz=() qz=() hz_size qz_size
    for i in 1 2 3; do
        drop_caches
        res=$(hs --json backup cz@z -o "$W/hz.qcow2" --format qcow2 --no-progress)
        hz+=("$(echo "$res" | jget '["seconds"]')")
        hz_size=$(stat -c %s "$W/hz.qcow2"); rm -f "$W/hz.qcow2"
        drop_caches
        t0=$(date +%s%N)
        qemu-img convert -c -O qcow2 -o compression_type=zstd \
            "nbd+unix:///cz@z?socket=$W/state-ch/nbd.sock" "$W/qz.qcow2"
        sync; t1=$(date +%s%N)
        qz+=("$(secs "$t0" "$t1")")
        qz_size=$(stat -c %s "$W/qz.qcow2"); rm -f "$W/qz.qcow2"
    done
    hs snapshot delete cz@z; hs volume remove cz >/dev/null; rm -f "$W/cz.img"
    # 4. 4k random writes with change tracking, against a volume without
    truncate -s 2G "$W/t1.img" "$W/t2.img"
    dd if=/dev/zero of="$W/t1.img" bs=4M count=512 oflag=direct conv=notrunc status=none
    dd if=/dev/zero of="$W/t2.img" bs=4M count=512 oflag=direct conv=notrunc status=none
    hs volume create tr --backing "$W/t1.img" >/dev/null
    hs volume create nt --backing "$W/t2.img" --no-tracking >/dev/null
    local d1 d2 on=() off=() io p
    d1=$(hs volume attach tr); d2=$(hs volume attach nt)
    for i in 1 2 3 4; do   # alternating which goes first: this machine drifts
        if [ $((i % 2)) = 1 ]; then
            read -r io p _ < <(fio_json on "$d1" --rw=randwrite --bs=4k --iodepth=16 --size=1G); on+=("$io")
            read -r io p _ < <(fio_json off "$d2" --rw=randwrite --bs=4k --iodepth=16 --size=1G); off+=("$io")
        else
            read -r io p _ < <(fio_json off "$d2" --rw=randwrite --bs=4k --iodepth=16 --size=1G); off+=("$io")
            read -r io p _ < <(fio_json on "$d1" --rw=randwrite --bs=4k --iodepth=16 --size=1G); on+=("$io")
        fi
    done
    hs volume detach tr >/dev/null; hs volume detach nt >/dev/null
    stop_daemon
    rm -f "$W/t1.img" "$W/t2.img"
    emit "{\"test\":\"chains\",\"volume_bytes\":$((4 << 30)),\"written_bytes\":$((n * 4096)),\"full_seconds\":$full_s,\"inc_read_bytes\":$inc_read,\"inc_changed_bytes\":$inc_changed,\"inc_seconds\":$inc_s,\"crash_read_bytes\":$crash_read,\"crash_changed_bytes\":$crash_changed,\"crash_seconds\":$crash_s,\"restore_seconds\":$restore_s,\"qemu_convert_restore_seconds\":$qemu_restore_s,\"restore_runs\":[$(IFS=,; echo "${rs[*]}")],\"qemu_restore_runs\":[$(IFS=,; echo "${qs[*]}")],\"zstd_seconds\":$(median "${hz[@]}"),\"qemu_zstd_seconds\":$(median "${qz[@]}"),\"zstd_runs\":[$(IFS=,; echo "${hz[*]}")],\"qemu_zstd_runs\":[$(IFS=,; echo "${qz[*]}")],\"zstd_image_bytes\":$hz_size,\"qemu_zstd_image_bytes\":$qz_size,\"tracking_on_iops\":$(median "${on[@]}"),\"tracking_off_iops\":$(median "${off[@]}"),\"tracking_on_runs\":[$(IFS=,; echo "${on[*]}")],\"tracking_off_runs\":[$(IFS=,; echo "${off[*]}")]}"
}

bench_tls() {
    log "tls: nbdcopy of a 1 GiB snapshot over TCP, TLS (PSK) against clear text"
    local port=$((30000 + $$ % 20000)) plain=() tls=() pulls=() files=() t0 t1 i
    psktool -u bench -p "$W/keys.psk" >/dev/null 2>&1
    start_daemon "$W/tls" --nbd "tcp:127.0.0.1:$port" --tls on --tls-psk "$W/keys.psk"
    hs volume create tv --backing "$W/tv.img" --size 1G >/dev/null
    dd if=/dev/urandom of="$S/mnt/tv" bs=1M count=1024 conv=notrunc status=none
    hs snapshot create tv --name s --no-freeze >/dev/null
    for i in 1 2 3; do
        t0=$(date +%s%N); nbdcopy --connections=4 "nbd://127.0.0.1:$port/tv@s" null: ; t1=$(date +%s%N)
        plain+=("$(secs "$t0" "$t1")")
        t0=$(date +%s%N)
        nbdcopy --connections=4 "nbds://bench@127.0.0.1:$port/tv@s?tls-psk-file=$W/keys.psk" null:
        t1=$(date +%s%N)
        tls+=("$(secs "$t0" "$t1")")
        t0=$(date +%s%N)
        nbdcopy --connections=4 "nbds://bench@127.0.0.1:$port/tv@s?tls-psk-file=$W/keys.psk" "$W/nc.raw" && sync
        t1=$(date +%s%N)
        files+=("$(secs "$t0" "$t1")")
        rm -f "$W/nc.raw" "$W/pull.raw"
        t0=$(date +%s%N)
        "$HOTSNAP" backup "nbds://bench@127.0.0.1:$port/tv@s?tls-psk-file=$W/keys.psk" -o "$W/pull.raw" --no-progress >/dev/null
        t1=$(date +%s%N)
        pulls+=("$(secs "$t0" "$t1")")
    done
    rm -f "$W/pull.raw"
    hs snapshot delete tv@s >/dev/null
    stop_daemon
    emit "{\"test\":\"tls\",\"bytes\":$((1 << 30)),\"plain_seconds\":$(median "${plain[@]}"),\"tls_seconds\":$(median "${tls[@]}"),\"plain_runs\":[$(IFS=,; echo "${plain[*]}")],\"tls_runs\":[$(IFS=,; echo "${tls[*]}")],\"pull_seconds\":$(median "${pulls[@]}"),\"pull_runs\":[$(IFS=,; echo "${pulls[*]}")],\"nbdcopy_file_seconds\":$(median "${files[@]}"),\"nbdcopy_file_runs\":[$(IFS=,; echo "${files[*]}")]}"
}

bench_peers() {
    log "peers: ../shared/peers/bench.sh -b raw,qsd,hotsnap"
    local out=$W/peers.jsonl
    (cd "$ROOT" && BENCH_RESULTS=$out "$ROOT/../shared/peers/bench.sh" -b raw,qsd,hotsnap \
        >"$W/peers.table" 2>"$W/peers.log") || log "the peer harness reported a failure (see below)"
    cat "$W/peers.table"
    cp "$W/peers.table" "$OUTDIR/$RUN-peers.txt"
    emit "{\"test\":\"peers\",\"table\":\"bench/results/$RUN-peers.txt\"}"
    cat "$out" >>"$OUTDIR/$RUN-peers.jsonl" 2>/dev/null
}

for b in $ONLY; do "bench_$b"; done

$PY - "$JSON" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows[r["test"]] = r
def ratio(a, b):
    return "%.2f" % (a / b) if a and b else "-"
out = []
if "engine" in rows:
    e = rows["engine"]["result"]
    out.append(("engine: ns per 4k write, no snapshot / first write after snapshot / rewrite",
                "%d / %d / %d" % (e["ns_per_write_nosnap"], e["ns_per_write_cow"], e["ns_per_write_rewrite"]), ""))
    out.append(("engine: ns per 4k write, no snapshot: untracked | tracked",
                "%d | %d" % (e["ns_per_write_nosnap"], e["ns_per_write_tracked"]), ""))
    out.append(("engine: snapshot of 100 GiB: create / map memory",
                "%.1f us / %d KiB" % (e["snapshot_create_us_100g"], e["map_bytes_100g_snapshot"] // 1024), ""))
if "frontend" in rows:
    f = rows["frontend"]
    out.append(("frontend 4k randwrite QD16 IOPS: raw loop | hotsnap (ratio)",
                "%d | %d" % (f["raw_randwrite_iops"], f["hotsnap_randwrite_iops"]),
                ratio(f["hotsnap_randwrite_iops"], f["raw_randwrite_iops"])))
    out.append(("frontend 4k randwrite p99 us: raw | hotsnap",
                "%.0f | %.0f" % (f["raw_randwrite_p99_us"], f["hotsnap_randwrite_p99_us"]), ""))
    out.append(("frontend 4k randwrite after a snapshot: IOPS (ratio to no snapshot)",
                "%d" % f["hotsnap_cow_randwrite_iops"],
                ratio(f["hotsnap_cow_randwrite_iops"], f["hotsnap_randwrite_iops"])))
    out.append(("frontend 1M seq read MB/s: raw | hotsnap",
                "%.0f | %.0f" % (f["raw_seqread_mb_s"], f["hotsnap_seqread_mb_s"]),
                ratio(f["hotsnap_seqread_mb_s"], f["raw_seqread_mb_s"])))
    out.append(("frontend 1M seq write QD64 MB/s: raw | hotsnap",
                "%.0f | %.0f" % (f["raw_seqwrite_mb_s"], f["hotsnap_seqwrite_mb_s"]),
                ratio(f["hotsnap_seqwrite_mb_s"], f["raw_seqwrite_mb_s"])))
    out.append(("daemon RSS after those runs (every FUSE worker busy)",
                "%.1f MiB" % (f["hotsnap_rss_after_io_bytes"] / 2**20), ""))
if "transport" in rows:
    t = rows["transport"]
    cases = (("raw", "raw loop on a plain file"), ("io_uring", "hotsnap, FUSE over io_uring"),
             ("dev", "hotsnap, FUSE over /dev/fuse"))
    for what, key, fmt in (("IOPS", "iops", "%d (%d-%d)"), ("p99 us", "p99_us", "%.0f (%.0f-%.0f)")):
        out.append(("transport 4k randwrite QD16, %s, median (range) of %d rounds (ratio to raw)"
                    % (what, t["rounds"]), "", ""))
        for k, label in cases:
            c = t[k]
            if "skipped" in c:
                out.append(("  " + label, "skipped: " + c["skipped"], ""))
                continue
            out.append(("  " + label,
                        fmt % (c[key + "_median"], c[key + "_min"], c[key + "_max"]),
                        "" if k == "raw" else ratio(c[key + "_median"], t["raw"][key + "_median"])))
if "backup" in rows:
    b = rows["backup"]
    out.append(("backup 1 GiB, caches dropped, MB/s: cp | hotsnap",
                "%.0f | %.0f" % (b["cp_mb_s"], b["hotsnap_mb_s"]), ratio(b["hotsnap_mb_s"], b["cp_mb_s"])))
if "memory" in rows:
    m = rows["memory"]
    out.append(("RSS backing up 100 GiB sparse: peak / beyond the 8 MiB buffer",
                "%.1f / %.1f MiB" % (m["rss_peak_bytes"] / 2**20, m["rss_beyond_buffer_bytes"] / 2**20), ""))
    out.append(("map memory with a snapshot active: total / per GiB",
                "%d / %d bytes" % (m["map_bytes_snapshot_active"], m["map_bytes_per_gib"]), ""))
if "cowmemory" in rows:
    m = rows["cowmemory"]
    out.append(("RSS, snapshot holding %.0f MiB of 4k copies: before / peak / after" % (m["held_bytes"] / 2**20),
                "%.1f / %.1f / %.1f MiB" % (m["rss_before_bytes"] / 2**20, m["rss_peak_bytes"] / 2**20, m["rss_after_bytes"] / 2**20),
                "%.2fx of 16 MiB + buffer" % (m["rss_peak_bytes"] / (16 * 2**20 + m["cow_buffer_bytes"]))))
    out.append(("copy records: in memory / at rest; map memory",
                "%d / %d; %.1f MiB" % (m["records_in_memory"], m["records_at_rest"], m["map_memory_bytes"] / 2**20), ""))
if "diffpeak" in rows:
    d = rows["diffpeak"]
    out.append(("diff store peak, 1 GiB, writer during backup: not consuming | consuming",
                "%.1f | %.1f MiB" % (d["not_consuming_peak_bytes"] / 2**20, d["consuming_peak_bytes"] / 2**20), ""))
if "chains" in rows:
    c = rows["chains"]
    w = c["written_bytes"]
    out.append(("incremental after 1%% 4k rewrites of 4 GiB: read / written (%.0f MiB), s | full s" % (w / 2**20),
                "%.2fx, %.2f s | %.2f s" % (c["inc_read_bytes"] / w, c["inc_seconds"], c["full_seconds"]),
                ratio(c["inc_read_bytes"], w)))
    out.append(("the same after a kill -9 (the 64K region map): read / written, s",
                "%.2fx, %.2f s" % (c["crash_read_bytes"] / w, c["crash_seconds"]),
                ratio(c["crash_read_bytes"], w)))
    out.append(("full qcow2+zstd of 1 GiB ext4 (/usr): s, qemu-img convert -c | hotsnap (speed)",
                "%.2f | %.2f" % (c["qemu_zstd_seconds"], c["zstd_seconds"]),
                ratio(c["qemu_zstd_seconds"], c["zstd_seconds"])))
    out.append(("  image size: qemu-img | hotsnap (size ratio)",
                "%.1f | %.1f MiB" % (c["qemu_zstd_image_bytes"] / 2**20, c["zstd_image_bytes"] / 2**20),
                ratio(c["zstd_image_bytes"], c["qemu_zstd_image_bytes"])))
    out.append(("restore of the 3-image chain (4 GiB), s: qemu-img convert | hotsnap restore (speed)",
                "%.2f | %.2f (with its check)" % (c["qemu_convert_restore_seconds"], c["restore_seconds"]),
                ratio(c["qemu_convert_restore_seconds"], c["restore_seconds"])))
    out.append(("4k randwrite QD16 IOPS: no tracking | tracking",
                "%d | %d" % (c["tracking_off_iops"], c["tracking_on_iops"]),
                ratio(c["tracking_on_iops"], c["tracking_off_iops"])))
if "tls" in rows:
    t = rows["tls"]
    out.append(("remote pull of 1 GiB, nbdcopy x4 on loopback, MB/s: clear text | TLS (PSK)",
                "%.0f | %.0f" % (t["bytes"] / t["plain_seconds"] / 1e6, t["bytes"] / t["tls_seconds"] / 1e6),
                ratio(t["plain_seconds"], t["tls_seconds"])))
    out.append(("  into a raw file (TLS), MB/s: nbdcopy + sync | hotsnap backup nbds:// (speed)",
                "%.0f | %.0f" % (t["bytes"] / t["nbdcopy_file_seconds"] / 1e6, t["bytes"] / t["pull_seconds"] / 1e6),
                ratio(t["nbdcopy_file_seconds"], t["pull_seconds"])))
if "latency" in rows:
    l = rows["latency"]
    out.append(("4k randwrite p99 us, default buffer: no snapshot | after snapshot",
                "%.0f | %.0f" % (l["default_nosnap_p99_us"], l["default_snap_p99_us"]), ""))
    out.append(("4k randwrite p99 us, 1 MiB buffer + slow diff store: no snapshot | after",
                "%.0f | %.0f (writer waits %d)" % (l["slow_nosnap_p99_us"], l["slow_snap_p99_us"], l["slow_writer_waits"]), ""))
print()
print("%-78s %-28s %s" % ("measurement", "value", "ratio"))
for name, val, r in out:
    print("%-78s %-28s %s" % (name, val, r))
summary = {k: v for k, v in rows.items()}
json.dump(summary, open(sys.argv[1].replace(".jsonl", ".json"), "w"), indent=1)
print("\nJSON: %s" % sys.argv[1].replace(".jsonl", ".json"))
PY
