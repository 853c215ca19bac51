# Shared by the end-to-end scripts (train_e2e.sh, teacher_cache.sh), sourced from the repository root:
# the release binary, the environment a root container needs, a temporary folder removed on exit, the
# PASS/FAIL counters, and `mpi N args…` (the binary on N ranks, oversubscribed, one BLAS thread each).
# The script ends with `finish`, which prints "N passed, M failed" and sets the exit status.
bin=.build/release/kdgraph
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
ko() { echo "FAIL $1: $2"; fail=$((fail + 1)); }
mpi() {
  local n=$1; shift
  timeout 600 mpirun --oversubscribe --bind-to none -np "$n" -x OPENBLAS_NUM_THREADS=1 "$bin" "$@"
}
finish() { echo "$pass passed, $fail failed"; [ "$fail" = 0 ]; }
