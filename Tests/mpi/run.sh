#!/usr/bin/env bash
# Multi-rank checks under a real mpirun (see docs/communication.md).
#
#   Tests/mpi/run.sh [NAME-FILTER ...]
#
# Builds kdgraph-mpi-checks (release; SKIP_BUILD=1 skips, CONFIG=debug uses the debug build), then:
#   1. runs every registered check (or those matching the filters) with mpirun -np 2 and -np 4;
#   2. runs `--selftest` with -np 2 (one JSON line with "ok": true);
#   3. fault test: `--fail-rank 1` makes rank 1 throw inside the self-test; the job must end with a
#      non-zero exit in < 10 s and stderr must contain "rank 1:";
#      then KDGRAPH_FAIL_RANK=1 with the check comm.fault_injection: rank 1 fails that check alone and
#      rank 0 must report it (exit non-zero, "0 passed, 1 failed");
#   4. watchdog test: `--hang-rank 1 --timeout 3` leaves rank 0 alone in a barrier; the watchdog must
#      abort the job (non-zero exit, < 10 s, "did not complete within 3s of --timeout" on stderr) and name rank 1,
#      which answers the stall probe from outside any collective.
# Prints each run's result and a final "N passed, M failed" line; exits non-zero on any failure.
#
# Environment: NP_LIST (default "2 4"), MPIRUN_ARGS (default "--oversubscribe --mca btl self,vader"),
# CHECK_TIMEOUT (seconds per mpirun, default 300), KDGRAPH_LOSS_FIXTURES (the loss fixture manifests the
# `losses.<kind>.fixtures` checks read; default the bundled Tests/KDLossesTests/Fixtures and its sets).
set -u
cd "$(dirname "$0")/../.."

CONFIG="${CONFIG:-release}"
NP_LIST="${NP_LIST:-2 4}"
MPIRUN_ARGS="${MPIRUN_ARGS:---oversubscribe --mca btl self,vader}"
CHECK_TIMEOUT="${CHECK_TIMEOUT:-300}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1   # containers run as root
export OPENBLAS_NUM_THREADS=1                                     # one BLAS thread per rank
export OMPI_MCA_rmaps_base_oversubscribe=1
export KDGRAPH_LOSS_FIXTURES="${KDGRAPH_LOSS_FIXTURES:-$PWD/Tests/KDLossesTests/Fixtures}"

if [ "${SKIP_BUILD:-0}" != "1" ]; then
    echo "== swift build -c $CONFIG --product kdgraph-mpi-checks"
    swift build -c "$CONFIG" --product kdgraph-mpi-checks || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
fi
BIN="$(swift build -c "$CONFIG" --show-bin-path)/kdgraph-mpi-checks"
[ -x "$BIN" ] || { echo "missing $BIN (build it or unset SKIP_BUILD)"; echo "0 passed, 1 failed"; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
under10() { awk -v t="$1" 'BEGIN { exit !(t < 10) }'; }

# 1. the registered checks
for np in $NP_LIST; do
    echo "== mpirun -np $np kdgraph-mpi-checks $*"
    timeout "$CHECK_TIMEOUT" mpirun $MPIRUN_ARGS -np "$np" "$BIN" "$@" >"$TMP/out" 2>"$TMP/err"
    rc=$?
    cat "$TMP/out"
    summary="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$TMP/out" | tail -1)"
    if [ -z "$summary" ]; then
        tail -20 "$TMP/err"
        fail "np=$np: no summary line (exit $rc)"
        continue
    fi
    p=$(echo "$summary" | cut -d' ' -f1)
    f=$(echo "$summary" | cut -d' ' -f3)
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        tail -20 "$TMP/err"
        fail "np=$np: exit $rc although every check passed"
    fi
    echo "-- np=$np: $summary (exit $rc)"
done

# 2. the self-test
echo "== mpirun -np 2 kdgraph-mpi-checks --selftest"
timeout "$CHECK_TIMEOUT" mpirun $MPIRUN_ARGS -np 2 "$BIN" --selftest >"$TMP/out" 2>"$TMP/err"
rc=$?
cat "$TMP/out"
if [ "$rc" -eq 0 ] && grep -q '^{"ok": true, "ranks": 2' "$TMP/out"; then pass "selftest np=2"
else tail -20 "$TMP/err"; fail "selftest np=2 (exit $rc)"; fi

# 3. fault test: rank 1 throws, the whole job must end quickly with a message naming rank 1
echo "== mpirun -np 2 kdgraph-mpi-checks --fail-rank 1"
t0=$(now)
timeout 60 mpirun $MPIRUN_ARGS -np 2 "$BIN" --fail-rank 1 >"$TMP/out" 2>"$TMP/err"
rc=$?
dt=$(elapsed "$t0" "$(now)")
grep -m1 '^rank 1:' "$TMP/err"
if [ "$rc" -ne 0 ] && grep -q '^rank 1:' "$TMP/err" && under10 "$dt"; then
    pass "fault: rank 1 failure ended the job (exit $rc, ${dt}s)"
else
    tail -20 "$TMP/err"
    fail "fault: exit $rc after ${dt}s (want non-zero, < 10 s, stderr with 'rank 1:')"
fi

# 3b. failure agreement: a check failing on rank 1 only is reported as failed by rank 0
echo "== KDGRAPH_FAIL_RANK=1 mpirun -np 2 kdgraph-mpi-checks comm.fault_injection"
KDGRAPH_FAIL_RANK=1 timeout 60 mpirun $MPIRUN_ARGS -np 2 "$BIN" comm.fault_injection >"$TMP/out" 2>"$TMP/err"
rc=$?
sed 's/^/  | /' "$TMP/out"     # indented: this run is expected to report a failure
if [ "$rc" -ne 0 ] && grep -q '^FAIL comm.fault_injection: rank 1: injected failure' "$TMP/out" \
    && grep -q '^0 passed, 1 failed$' "$TMP/out"; then
    pass "agreement: rank 1's failed check reported by rank 0 (exit $rc)"
else
    tail -20 "$TMP/err"
    fail "agreement: exit $rc (want non-zero, 'FAIL comm.fault_injection: rank 1: ...', '0 passed, 1 failed')"
fi

# 4. watchdog test: rank 1 never joins a barrier
echo "== mpirun -np 2 kdgraph-mpi-checks --hang-rank 1 --timeout 3"
t0=$(now)
timeout 60 mpirun $MPIRUN_ARGS -np 2 "$BIN" --hang-rank 1 --timeout 3 >"$TMP/out" 2>"$TMP/err"
rc=$?
dt=$(elapsed "$t0" "$(now)")
grep -m1 'did not complete' "$TMP/err"
want='rank 0: collective MPI_Barrier did not complete within 3s of --timeout (step 0); '
want+='stalled: rank 1 (not in a collective, at step 0)'
if [ "$rc" -ne 0 ] && grep -qxF "$want" "$TMP/err" && under10 "$dt"; then
    pass "watchdog: hung barrier aborted (exit $rc, ${dt}s)"
else
    tail -20 "$TMP/err"
    fail "watchdog: exit $rc after ${dt}s (want non-zero, < 10 s, '$want')"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
