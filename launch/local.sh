#!/usr/bin/env bash
# One node, N ranks: one rank per core, one BLAS thread per rank, ranks bound to cores.
#   launch/local.sh N kdgraph-args...      e.g.  launch/local.sh 4 train --config configs/quickstart-teacher.yaml
# Environment: KDGRAPH (the binary; default .build/release/kdgraph), MPIRUN_ARGS (extra mpirun flags),
# KDGRAPH_STOP_GRACE (seconds the ranks get to checkpoint after Ctrl-C; default 30).
set -euo pipefail
# Ctrl-C or SIGTERM to mpirun: OpenMPI sends the ranks SIGCONT, then SIGTERM after
# odls_base_sigkill_timeout seconds, then SIGKILL after as many again (default 1: too short to finish a
# step and write its checkpoint). KDGRAPH_STOP_GRACE (default 30) sets it (docs/launch.md).
grace="${KDGRAPH_STOP_GRACE:-30}"
[[ "$grace" =~ ^[0-9]+$ ]] || { echo "$0: KDGRAPH_STOP_GRACE must be whole seconds, got '$grace'" >&2; exit 2; }
export OMPI_MCA_odls_base_sigkill_timeout="$grace"
# mpirun refuses to run as root (containers, CI) unless told twice.
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
if [ $# -lt 2 ]; then echo "usage: $0 N kdgraph-subcommand [args...]" >&2; exit 2; fi
n="$1"; shift
# mpirun -np 0 would start one rank per slot, not none: N must be a count.
if ! [[ "$n" =~ ^[1-9][0-9]*$ ]]; then echo "$0: N must be a number of ranks ≥ 1, got '$n'" >&2; exit 2; fi
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${KDGRAPH:-$here/.build/release/kdgraph}"
[ -x "$bin" ] || { echo "no kdgraph binary at $bin: run 'swift build -c release' first" >&2; exit 1; }
extra=()
cores=$(nproc)
if [ "$n" -gt "$cores" ]; then extra+=(--oversubscribe); bind=none; else bind=core; fi
# A config error or an output folder holding an earlier run is refused here, in a second: under mpirun a rank
# that exits non-zero costs OpenMPI's kill sequence (two odls_base_sigkill_timeout waits, 60 s with ours).
# Its warnings (keys the run does not use) are left to the run, which logs them once; a refusal is printed.
if [ "$1" = train ] && ! refusal=$("$bin" "$@" --check 2>&1 >/dev/null); then printf '%s\n' "$refusal" >&2; exit 1; fi
exec mpirun -np "$n" --bind-to "$bind" "${extra[@]}" -x OPENBLAS_NUM_THREADS=1 ${MPIRUN_ARGS:-} "$bin" "$@"
