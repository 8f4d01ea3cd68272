#!/bin/bash
# scripts/stress.sh - what `make stress` runs: the long variants of the
# reliability tests.  `make check` runs the same tests in a bounded form.
#   STRESS_ROUNDS (10)   SIGKILL rounds per scenario in kill_daemon
#   STRESS_SECONDS (60)  overflow churn duration
#   STRESS_MODELS (400)  runs of each randomized engine model
set -uo pipefail
cd "$(dirname "$0")/.."
export HOTSNAP=$PWD/build/hotsnap
fail=0
run() { echo "== $*"; "$@" || { echo "FAILED: $*"; fail=1; }; }
run build/tests/test_engine_model "${STRESS_MODELS:-400}"
run build/tests/test_engine_crash "${STRESS_MODELS:-400}"
run env ROUNDS="${STRESS_ROUNDS:-10}" tests/system/kill_daemon.sh
run env DURATION="${STRESS_SECONDS:-60}" tests/system/overflow_churn.sh
[ "$fail" = 0 ] && echo "stress: all passed" || echo "stress: FAILED"
exit "$fail"
