#!/bin/bash
# scripts/check.sh - what `make check` runs: the unit tests, the unit tests
# again under AddressSanitizer + UndefinedBehaviorSanitizer, and the system
# tests (on the sanitized build too when SANITIZE=1).  Ends with one line
# "N passed, N failed" (after a line with the skipped count, if any) and fails
# if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

SANITIZE=${SANITIZE:-0}
fail=0

setup() {   # setup DIR [meson options]
    local dir=$1
    shift
    [ -f "$dir/build.ninja" ] || meson setup "$dir" "$@" >/dev/null || exit 1
    ninja -C "$dir" >/dev/null || { ninja -C "$dir"; exit 1; }
}

setup build
setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dsystem_tests=false
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

rm -f build*/meson-logs/testlog-*.json
run() {   # run DIR SUITE...: keeps each run's log for the summary
    local dir=$1 s
    shift
    local args=()
    for s in "$@"; do args+=(--suite "$s"); done
    meson test -C "$dir" --print-errorlogs --num-processes 2 "${args[@]}" || fail=1
    cp "$dir/meson-logs/testlog.json" "$dir/meson-logs/testlog-$1.json" 2>/dev/null
}

run build-asan unit nbd
run build unit
if [ "$SANITIZE" = 1 ]; then
    setup build-san -Db_sanitize=address,undefined -Db_lundef=false
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 run build-san system nbd
else
    run build system nbd
fi

/usr/bin/python3 - build-asan build build-san <<'PY'
import json, os, sys
counts = {"OK": 0, "FAIL": 0, "SKIP": 0}
failed = []
for d in sys.argv[1:]:
    logs = os.path.join(d, "meson-logs")
    if not os.path.isdir(logs):
        continue
    for f in sorted(os.listdir(logs)):
        if not (f.startswith("testlog-") and f.endswith(".json")):
            continue
        for line in open(os.path.join(logs, f)):
            t = json.loads(line)
            t["__dir"] = d
            r = t.get("result")
            if r in ("OK", "EXPECTEDFAIL"):
                counts["OK"] += 1
            elif r == "SKIP":
                counts["SKIP"] += 1
            else:
                counts["FAIL"] += 1
                failed.append(t)
# The failures again, just above the summary, so that the tail of a CI log
# names them: which build, which test, and the last lines it printed (a
# randomized test's seed among them).
for t in failed:
    print("FAILED %s in %s (%s)" % (t.get("name"), t.get("__dir"), t.get("result")))
    lines = ((t.get("stdout") or "") + (t.get("stderr") or "")).splitlines()
    tail = lines[-12:]
    seeds = [l for l in lines[:-12] if "seed" in l][:2]
    for l in seeds + tail:
        print("    " + l[:300])
if counts["SKIP"]:
    print("%d skipped (a tool or device this machine lacks; see the log)" % counts["SKIP"])
print("%d passed, %d failed" % (counts["OK"], counts["FAIL"]))
sys.exit(1 if counts["FAIL"] else 0)
PY
summary=$?
[ "$fail" = 0 ] && [ "$summary" = 0 ]
