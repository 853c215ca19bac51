#!/usr/bin/env bash
# Several nodes with an OpenMPI hostfile (see launch/hostfile.example):
#   launch/hostfile.sh HOSTFILE N kdgraph-args...
# The kdgraph binary and the data must be at the same path on every node (shared filesystem).
# Environment: KDGRAPH (binary path), IFACE (network interface or subnet for MPI traffic, e.g. eth0, ib0
# or 10.1.0.0/16),
# MPIRUN_ARGS (extra mpirun flags), KDGRAPH_STOP_GRACE (seconds the ranks get to checkpoint after Ctrl-C;
# default 30: OpenMPI's odls_base_sigkill_timeout, on the command line so every node's daemon gets it).
set -euo pipefail
# mpirun refuses to run as root (containers, CI) unless told twice.
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
if [ $# -lt 3 ]; then echo "usage: $0 HOSTFILE N kdgraph-subcommand [args...]" >&2; exit 2; fi
hosts="$1"; n="$2"; shift 2
# mpirun -np 0 would start one rank per slot of the hostfile, not none: N must be a count.
if ! [[ "$n" =~ ^[1-9][0-9]*$ ]]; then echo "$0: N must be a number of ranks ≥ 1, got '$n'" >&2; exit 2; fi
[ -r "$hosts" ] || { echo "$0: no readable hostfile at '$hosts'" >&2; exit 2; }
grace="${KDGRAPH_STOP_GRACE:-30}"
[[ "$grace" =~ ^[0-9]+$ ]] || { echo "$0: KDGRAPH_STOP_GRACE must be whole seconds, got '$grace'" >&2; exit 2; }
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${KDGRAPH:-$here/.build/release/kdgraph}"
net=()
if [ -n "${IFACE:-}" ]; then net+=(--mca btl_tcp_if_include "$IFACE" --mca oob_tcp_if_include "$IFACE"); fi
# Forward the library path to the other nodes when one is set (e.g. a non-system OpenBLAS).
if [ -n "${LD_LIBRARY_PATH:-}" ]; then net+=(-x LD_LIBRARY_PATH); fi
# A config error or an output folder holding an earlier run is refused here, in a second, not after mpirun's
# kill sequence (docs/launch.md, "One node").
# Its warnings (keys the run does not use) are left to the run, which logs them once; a refusal is printed.
if [ "$1" = train ] && ! refusal=$("$bin" "$@" --check 2>&1 >/dev/null); then printf '%s\n' "$refusal" >&2; exit 1; fi
exec mpirun --hostfile "$hosts" -np "$n" --map-by core --bind-to core "${net[@]}" \
  --mca odls_base_sigkill_timeout "$grace" -x OPENBLAS_NUM_THREADS=1 ${MPIRUN_ARGS:-} "$bin" "$@"
