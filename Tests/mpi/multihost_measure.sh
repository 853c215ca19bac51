#!/usr/bin/env bash
# Measurements across namespace "hosts" for docs/scaling.md (not a test; not run by the test command):
#   1. the all-reduce sweep of `kdgraph bench` over 2 hosts whose links are shaped (tbf) to each RATE given
#      (default: 1gbit 10gbit), and the bandwidth `kdgraph scaling` fits to it beside the shaped rate;
#   2. `kdgraph scaling` across hosts, weak mode, from benches of CONFIG at 1, 2 and 3 hosts (one rank each,
#      unshaped links, MPI over TCP): the measured communication share beside the projection's.
# Usage (root): bash Tests/mpi/multihost_measure.sh OUT [RATE…]; the report lands in OUT/scaling/.
# Environment: CONFIG (default configs/bench-distill-resnet32x4-resnet8x4.yaml), STEPS (default 5), PER_RANK
# (samples per rank, default 64).
# This machine's hosts share its cores: with more ranks than cores a rank waits for a core, which the
# report's measured efficiency shows and the projection does not.
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: $0 OUT [RATE…]" >&2; exit 2; }
out=$(realpath -m "$1"); shift
rates=("$@"); [ ${#rates[@]} -gt 0 ] || rates=(1gbit 10gbit)
cd "$(dirname "$0")/../.."
source Tests/mpi/harness.sh
source Tests/mpi/netns_world.sh
if why=$(world_unavailable); then :; else echo "multihost_measure: cannot build hosts: $why" >&2; exit 1; fi
trap 'world_down; rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
export WORLD_TIMEOUT=900
config=${CONFIG:-configs/bench-distill-resnet32x4-resnet8x4.yaml}
steps=${STEPS:-5}
per_rank=${PER_RANK:-64}   # weak scaling: samples per rank (the config's global batch is per rank here)
mkdir -p "$out/scaling"
world_up 3 || { echo "the hosts could not be built" >&2; exit 1; }
bin=$PWD/.build/release/kdgraph

for rate in "${rates[@]}"; do
  shape 0 "$rate"; shape 1 "$rate"
  mkdir -p "$out/shaped-$rate"
  if hostfile_run 2 2 bench --config "$config" --set data.global_batch=$((2 * per_rank)) --pytorch off \
       --warmup 1 --steps 2 \
       --json-out "$out/shaped-$rate/bench_2.json" >"$out/shaped-$rate.log" 2>&1 \
     && "$bin" scaling --config "$config" --ranks 2 --per-rank-batch "$per_rank" --project "" --reuse \
       --out "$out/shaped-$rate" \
       --machine "2 namespace hosts, links shaped to $rate" >/dev/null 2>&1; then
    echo "shaped $rate: $(grep -m1 'All-reduce cost model' "$out/shaped-$rate/report.md")"
  else
    echo "shaped $rate: failed: $(tail -3 "$out/shaped-$rate.log")"
  fi
  unshape 0; unshape 1
done

for k in 1 2 3; do
  extra=(); [ "$k" = 1 ] && extra=(--project-ranks 1,2,3,16)
  if ! hostfile_run "$k" "$k" bench --config "$config" --set data.global_batch=$((k * per_rank)) --pytorch off \
         --warmup 2 --steps "$steps" "${extra[@]}" \
         --json-out "$out/scaling/bench_$k.json" >"$out/scaling/bench_$k.log" 2>&1; then
    echo "bench over $k host(s) failed: $(tail -3 "$out/scaling/bench_$k.log")"; exit 1
  fi
done
"$bin" scaling --config "$config" --ranks 1,2,3 --mode weak --per-rank-batch "$per_rank" --reuse --out "$out/scaling" \
  --machine "3 namespace hosts on one 2-core machine, MPI over TCP (veth, bridge)" >/dev/null
sed -n '/^| ranks | global batch | samples/,/^$/p; /^## Weak-scaling projection/,/^Measured loss share/p' \
  "$out/scaling/report.md"
