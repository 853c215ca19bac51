#!/usr/bin/env bash
# launch/slurm.sbatch without a cluster (issue 28 item 5): its syntax (bash -n), its #SBATCH directives
# (--signal=TERM@120 among them), and what it runs, with stub `srun` and `mpirun` first on PATH and the
# variables SLURM sets inside a job (SLURM_SUBMIT_DIR, SLURM_NTASKS): the command line, the environment
# the ranks get, and that the script execs the launcher, so a SIGTERM to the batch shell (scancel
# --batch, --signal=B:…) reaches srun/mpirun itself (the stub records it). Not tested here: sbatch, srun
# or PMIx themselves, the signal's timing, several nodes (docs/launch.md, "SLURM").
# Prints PASS/FAIL lines and "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
ko() { echo "FAIL $1: $2"; fail=$((fail + 1)); }
script=launch/slurm.sbatch
if bash -n "$script"; then ok "bash -n $script"; else ko "bash -n $script" "syntax error"; fi
if grep -qx '#SBATCH --signal=TERM@120' "$script"; then ok "#SBATCH --signal=TERM@120 (SIGTERM 120 s before the limit)"
else ko "--signal directive" "$(grep -n 'SBATCH --signal' "$script")"; fi
# A stub launcher: records its arguments and OPENBLAS_NUM_THREADS, then waits for SIGTERM and records it.
mkdir -p "$tmp/bin"
for l in srun mpirun; do
  cat >"$tmp/bin/$l" <<STUB
#!/usr/bin/env bash
echo "\$0 \$*" >"$tmp/$l.args"; echo "OPENBLAS_NUM_THREADS=\$OPENBLAS_NUM_THREADS" >>"$tmp/$l.args"
trap 'echo "SIGTERM to $l" >>"$tmp/$l.args"; exit 143' TERM
touch "$tmp/$l.ready"; while :; do sleep 0.1; done
STUB
  chmod +x "$tmp/bin/$l"
done
for l in srun mpirun; do
  PATH="$tmp/bin:$PATH" SLURM_SUBMIT_DIR=/submit SLURM_NTASKS=32 KDGRAPH_LAUNCHER=$l \
    bash "$script" train --config C.yaml &
  job=$!
  i=0; while [ ! -e "$tmp/$l.ready" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  kill -TERM "$job"; wait "$job"; rc=$?
  want_srun="$tmp/bin/srun --mpi=pmix --cpu-bind=cores /submit/.build/release/kdgraph train --config C.yaml"
  want_mpirun="$tmp/bin/mpirun -np 32 --bind-to core --mca odls_base_sigkill_timeout 30 -x OPENBLAS_NUM_THREADS=1"
  want_mpirun+=" /submit/.build/release/kdgraph train --config C.yaml"
  want=want_$l
  got=$(cat "$tmp/$l.args" 2>/dev/null)
  if [ "$(echo "$got" | head -1)" = "${!want}" ] && echo "$got" | grep -qx "OPENBLAS_NUM_THREADS=1" \
     && echo "$got" | grep -qx "SIGTERM to $l" && [ "$rc" = 143 ]; then
    ok "KDGRAPH_LAUNCHER=$l: '$(echo "$got" | head -1 | sed "s|$tmp/bin/||")', one BLAS thread, SIGTERM to the batch shell reaches $l"
  else ko "KDGRAPH_LAUNCHER=$l" "exit $rc, got: $got"; fi
done
# A launcher or grace it cannot use was taken as mpirun, or passed on to mpirun as it was: refused.
for bad in "KDGRAPH_LAUNCHER=mpiexec|KDGRAPH_LAUNCHER must be srun or mpirun, got 'mpiexec'" \
           "KDGRAPH_STOP_GRACE=30s|KDGRAPH_STOP_GRACE must be whole seconds, got '30s'"; do
  out=$(env "${bad%%|*}" PATH="$tmp/bin:$PATH" SLURM_SUBMIT_DIR=/submit SLURM_NTASKS=32 bash "$script" train 2>&1)
  rc=$?
  if [ "$rc" = 2 ] && echo "$out" | grep -qF "${bad#*|}"; then ok "${bad%%|*}: refused (exit 2)"
  else ko "${bad%%|*}" "exit $rc: $out"; fi
done
# Without SLURM_SUBMIT_DIR (run outside a job) the script refuses instead of guessing the binary.
out=$(env -u SLURM_SUBMIT_DIR PATH="$tmp/bin:$PATH" bash "$script" train 2>&1); rc=$?
if [ "$rc" != 0 ] && echo "$out" | grep -q "SLURM_SUBMIT_DIR"; then ok "outside a job: refused naming SLURM_SUBMIT_DIR (exit $rc)"
else ko "outside a job" "exit $rc: $out"; fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
