#!/usr/bin/env bash
# The main job on the embedded default data (no download), on 2 ranks:
#   1. a resnet20 teacher trained with labels          (configs/quickstart-teacher.yaml)
#   2. a resnet8 student distilled without labels (PRG) (configs/quickstart-prg.yaml)
#   3. the same student trained with labels, no teacher (configs/quickstart-baseline.yaml)
# then a table of held-out accuracies. Extra arguments are passed to every `kdgraph train`
# (e.g. --set train.epochs=1; --overwrite to rerun into the same OUT, since an output folder holding a
# run's checkpoints is refused otherwise). Environment: RANKS (default 2), OUT (default runs/quickstart),
# KDGRAPH_STOP_GRACE (seconds the ranks get to checkpoint after Ctrl-C; default 30).
set -euo pipefail
# Ctrl-C or SIGTERM to mpirun: OpenMPI sends the ranks SIGCONT, then SIGTERM after
# odls_base_sigkill_timeout seconds, then SIGKILL after as many again (default 1: too short to finish a
# step and write its checkpoint). KDGRAPH_STOP_GRACE (default 30) sets it (docs/launch.md).
grace="${KDGRAPH_STOP_GRACE:-30}"
[[ "$grace" =~ ^[0-9]+$ ]] || { echo "$0: KDGRAPH_STOP_GRACE must be whole seconds, got '$grace'" >&2; exit 2; }
export OMPI_MCA_odls_base_sigkill_timeout="$grace"
cd "$(dirname "$0")/.."
source launch/ensure-deps.sh
ranks="${RANKS:-2}"
[[ "$ranks" =~ ^[1-9][0-9]*$ ]] || { echo "$0: RANKS must be a number of ranks ≥ 1, got '$ranks'" >&2; exit 2; }
out="${OUT:-runs/quickstart}"
# The README's build (launch/test.sh builds the same products the same way; its unit tests build in
# their own scratch folder), so switching between the commands recompiles nothing.
swift build -c release --product kdgraph
bin=.build/release/kdgraph
mpi=(mpirun -np "$ranks" -x OPENBLAS_NUM_THREADS=1)
if [ "$ranks" -gt "$(nproc)" ]; then mpi+=(--oversubscribe --bind-to none); else mpi+=(--bind-to core); fi

# Each run is checked first in this process (`train --check`: the config, an output folder holding an earlier
# run), so a refusal takes a second instead of mpirun's kill sequence (twice odls_base_sigkill_timeout); its
# warnings are left to the run, which logs them once.
run() {
  echo; echo "== $1"; shift
  local refusal
  if ! refusal=$("$bin" train "$@" --check 2>&1 >/dev/null); then printf '%s\n' "$refusal" >&2; return 1; fi
  "${mpi[@]}" "$bin" train "$@"
}
run "teacher: resnet20, supervised" --config configs/quickstart-teacher.yaml --set output.dir="$out/teacher" "$@"
run "student: resnet8, PRG distillation, no labels" --config configs/quickstart-prg.yaml \
  --set output.dir="$out/prg" --set teacher.checkpoint="$out/teacher/checkpoints/final.safetensors" "$@"
run "baseline: resnet8, supervised, no teacher" --config configs/quickstart-baseline.yaml \
  --set output.dir="$out/baseline" "$@"

# Held-out top-1 of a run's final checkpoint: eval rebuilds the run from the checkpoint's own config
# (kdgraph.config: model, data and the normalisation it recorded), so nothing is re-derived here.
acc() { "$bin" eval --checkpoint "$1/checkpoints/final.safetensors" --set output.dir="$1" \
          --set teacher.checkpoint="$out/teacher/checkpoints/final.safetensors" \
        | sed -n 's/.*"top1": *\([0-9.]*\).*/\1/p'; }
t=$(acc "$out/teacher"); s=$(acc "$out/prg"); b=$(acc "$out/baseline")
row() { printf "| %-51s | %5.1f%% |\n" "$1" "$(awk "BEGIN{print $2*100}")"; }
echo
printf "| %-51s | %-6s |\n" "model (held-out split)" "top-1"
echo "|-----------------------------------------------------|--------|"
row "teacher  resnet20, labels" "$t"
row "student  resnet8, PRG from the teacher, no labels" "$s"
row "baseline resnet8, labels, no teacher" "$b"
