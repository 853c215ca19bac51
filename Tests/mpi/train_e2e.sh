#!/usr/bin/env bash
# End-to-end trainer tests with the real `kdgraph` binary under a real mpirun:
#   - world-size invariance, step by step (supervised, distillation, feature matrices): step 1 (same
#     initial weights) agrees with the one-process run, and at several later steps the one-process run
#     resumed from the N-rank run's checkpoint takes the same next step (loss to 1e-4 relative). The
#     free-running trajectories are not compared: they drift apart chaotically by amounts that depend on
#     the CPU's BLAS kernels (docs/training.md, "World-size invariance");
#   - resume: 30 straight steps vs 15 + --resume + 15 give the same losses (rtol 1e-6) and weights,
#     and the same checkpoint resumed on 4 ranks takes the same step 16;
#   - an mlp student on .npy feature matrices distilled from an embeddings+prompts teacher;
#   - a resume in the run's own folder moving the later steps' records aside;
#   - `kdgraph bench` / `kdgraph scaling` (JSON fields, byte counts, report files, projection, --reuse),
#     and the shipped bench config on a fresh clone (teacher.init: random, no teacher file);
#   - resuming at or past train.steps is refused, nothing rewritten;
#   - `kdgraph eval --checkpoint` without a config and `kdgraph predict` agree (weights carry their metadata);
#   - a run's results: summary.md, curves.svg, the summary logged, one TensorBoard event file (rank 0),
#     read by TensorBoard's EventAccumulator where tensorboard is installed (SKIP otherwise);
#   - bad configs fail on every rank with the file and key, non-zero exit, nothing written.
# Needs a release build (launch/test.sh makes it). Prints PASS/FAIL lines and "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
source Tests/mpi/harness.sh
teacher="$tmp/teacher/checkpoints/final.safetensors"

# Tolerance of a world-size comparison of ONE step taken from identical state: the runs differ only in
# the order of float32 sums (GEMMs over each rank's samples, SyncBN statistics, loss shares, all-reduce).
# n float32 terms summed in another order differ by at most n·u relative to Σ|x| (u = 6e-8): ≤ 6e-5 for
# the longest sums here (n ≤ 1000); the loss itself is accumulated in Double. Several free-running steps
# are not compared: a last-bit difference flips a ReLU near zero and training amplifies it.
step_rtol=1e-4
# One step from the same state: `kdgraph train` on 1 rank, resumed from run DIR's checkpoint at step K,
# must report DIR's loss at step K+1. Usage: resync DIR K config-args…
resync() {
  local run=$1 k=$2; shift 2
  local ck out; ck=$(printf '%s/checkpoints/step_%08d.safetensors' "$run" "$k"); out="$run-resync$k"
  mpi 1 train "$@" --set output.dir="$out" --set train.steps=$((k + 1)) --resume "$ck" >"$out.log" 2>&1 \
    || { echo "np 1 resumed from $ck failed: $(tail -3 "$out.log")"; return 1; }
  python3 Tests/mpi/compare_metrics.py "$out/metrics.jsonl" "$run/metrics.jsonl" "$step_rtol" $((k + 1)) 1 skip skip
}
# Step 1 of run A and run B (both from the seed's initial weights), then steps K+1 for each K given.
# Usage: invariance LABEL DIR_N DIR_1 "K…" config-args…
invariance() {
  local label=$1 run=$2 ref=$3 ks=$4; shift 4
  local out k msg=""
  if ! out=$(python3 Tests/mpi/compare_metrics.py "$run/metrics.jsonl" "$ref/metrics.jsonl" "$step_rtol" 1 1 \
               skip skip 2>&1); then
    ko "$label" "step 1: $out"; return
  fi
  for k in $ks; do
    out=$(resync "$run" "$k" "$@" 2>&1) || { ko "$label" "from step $k: $out"; return; }
    msg+=" ${out#*agree: };"
  done
  ok "$label: step 1 and the next step from the N-rank state at steps $ks agree to $step_rtol;$msg"
}

if mpi 2 train --config Tests/mpi/configs/tiny-teacher.yaml --set output.dir="$tmp/teacher" >"$tmp/teacher.log" 2>&1 \
   && [ -f "$teacher" ]; then
  ok "teacher checkpoint (supervised, 2 ranks)"
else
  ko "teacher checkpoint" "$(tail -5 "$tmp/teacher.log")"
fi

for n in 1 2 4; do
  if mpi "$n" train --config Tests/mpi/configs/tiny-distill.yaml --set teacher.checkpoint="$teacher" \
       --set output.dir="$tmp/np$n" >"$tmp/np$n.log" 2>&1; then ok "distill 30 steps on $n rank(s)"
  else ko "distill on $n ranks" "$(tail -5 "$tmp/np$n.log")"; fi
done
dset=(--config Tests/mpi/configs/tiny-distill.yaml --set teacher.checkpoint="$teacher")
for n in 2 4; do
  invariance "world-size invariance np$n vs np1 (distill)" "$tmp/np$n" "$tmp/np1" "5 15 25" "${dset[@]}"
done

# Supervised training (SyncBN, global batch 64): the same criterion.
for n in 1 2 4; do
  mpi "$n" train --config Tests/mpi/configs/invariance-supervised.yaml --set output.dir="$tmp/sup$n" \
    --set train.checkpoint_every=10 >"$tmp/sup$n.log" 2>&1 \
    || ko "supervised 30 steps on $n rank(s)" "$(tail -3 "$tmp/sup$n.log")"
done
for n in 2 4; do
  invariance "supervised world-size invariance np$n vs np1" "$tmp/sup$n" "$tmp/sup1" "10 20" \
    --config Tests/mpi/configs/invariance-supervised.yaml
done

# Resume: the straight run wrote a checkpoint at step 15; resuming from it must reproduce steps 16-30
# (losses to 1e-6) and the straight run's final weights.
if mpi 2 train --config Tests/mpi/configs/tiny-distill.yaml --set teacher.checkpoint="$teacher" \
     --set output.dir="$tmp/straight" >"$tmp/straight.log" 2>&1 \
   && mpi 2 train --config Tests/mpi/configs/tiny-distill.yaml --set teacher.checkpoint="$teacher" \
     --set output.dir="$tmp/resumed" --resume "$tmp/straight/checkpoints/step_00000015.safetensors" \
     >"$tmp/resumed.log" 2>&1; then
  if out=$(python3 Tests/mpi/compare_metrics.py "$tmp/resumed/metrics.jsonl" "$tmp/straight/metrics.jsonl" 1e-6 16 \
             2>&1) \
     && out2=$(python3 Tests/mpi/compare_safetensors.py "$tmp/resumed/checkpoints/final.safetensors" \
                 "$tmp/straight/checkpoints/final.safetensors" 1e-6 2>&1); then
    ok "resume at 15 reproduces steps 16-30: $out; $out2"
  else ko "resume" "$out ${out2:-}"; fi
else
  ko "resume runs" "$(tail -3 "$tmp/resumed.log" 2>/dev/null)"
fi

# Resume in the run's own folder (a copy of the straight run): the records of steps 16-30 move to
# metrics.superseded-after-step-15.jsonl, each step then has one record, and the steps are the straight run's.
cp -r "$tmp/straight" "$tmp/inplace"
if mpi 2 train --config Tests/mpi/configs/tiny-distill.yaml --set teacher.checkpoint="$teacher" \
     --set output.dir="$tmp/inplace" --resume "$tmp/inplace/checkpoints/step_00000015.safetensors" \
     >"$tmp/inplace.log" 2>&1 \
   && out=$(python3 - "$tmp/inplace" "$tmp/straight" <<'PY' 2>&1
import json, sys
def records(path): return [json.loads(l) for l in open(path)]
mine, straight = records(sys.argv[1] + "/metrics.jsonl"), records(sys.argv[2] + "/metrics.jsonl")
aside = records(sys.argv[1] + "/metrics.superseded-after-step-15.jsonl")
assert aside == [r for r in straight if r["step"] > 15], (len(aside), "records moved aside")
keys = [(r["step"], "loss" in r) for r in mine]
assert len(keys) == len(set(keys)) and len(mine) == len(straight), (len(mine), len(straight), "one record per step")
for a, b in zip(mine, straight):
    assert a["step"] == b["step"] and abs(a.get("loss", 0) - b.get("loss", 0)) <= 1e-6 * abs(b.get("loss", 1)), (a, b)
print(f"{len(aside)} records moved aside, {len(mine)} records, one per step, the straight run's losses")
PY
) && grep -q "moved to metrics.superseded-after-step-15.jsonl" "$tmp/inplace.log"; then
  ok "resume in the run's folder: $out"
else ko "resume in the run's folder" "${out:-} $(tail -3 "$tmp/inplace.log")"; fi

# Resume at or past the end (issue 18 item 7): refused with a message, non-zero exit, the run's files untouched.
if [ -f "$tmp/straight/checkpoints/final.safetensors" ]; then
  snap() { (cd "$tmp/straight" && md5sum checkpoints/* metrics.jsonl metrics.csv config.yaml); }
  before=$(snap)
  mpi 2 train "${dset[@]}" --set output.dir="$tmp/straight" --set train.steps=20 \
    --resume "$tmp/straight/checkpoints/step_00000025.safetensors" >"$tmp/past.log" 2>&1; rc1=$?
  mpi 2 train "${dset[@]}" --set output.dir="$tmp/straight" \
    --resume "$tmp/straight/checkpoints/final.safetensors" >"$tmp/atend.log" 2>&1; rc2=$?
  past="checkpoint at step 25 is past the end of this run (train.steps = 20): nothing to resume"
  atend="checkpoint at step 30 is already at the end of this run (train.steps = 30): nothing to do"
  if [ "$rc1" != 0 ] && grep -q "$past" "$tmp/past.log" \
     && [ "$rc2" != 0 ] && grep -q "$atend" "$tmp/atend.log" \
     && [ "$(snap)" = "$before" ]; then
    ok "resume past the end (exit $rc1) and at the end (exit $rc2) refused, nothing rewritten"
  else
    ko "resume past/at the end" "exit $rc1/$rc2: $(grep -m1 rank "$tmp/past.log") $(grep -m1 rank "$tmp/atend.log")"
  fi
fi

# Weights usable without the run's config (issue 18 item 11): a teacher trained on an .npy folder; then
# `kdgraph eval --checkpoint` alone (config from the metadata) and `kdgraph predict` on test_images.npy
# give the same top-1, and the same mean cross-entropy up to float32 summation order (the two runs use
# different batch sizes, so GEMM blocking differs: ~1e-6 relative per logit; 1e-4 bounds it).
npyd="$tmp/npydata"
if python3 - "$npyd" <<'PY'
import os, sys, numpy as np
d = sys.argv[1]; os.makedirs(d, exist_ok=True); rng = np.random.default_rng(3)
for split, n in (("train", 128), ("test", 48)):
    y = rng.integers(0, 5, n)
    x = rng.integers(0, 60, (n, 16, 16, 3)) + (y[:, None, None, None] * 40)   # class-dependent brightness
    np.save(f"{d}/{split}_images.npy", x.astype(np.uint8)); np.save(f"{d}/{split}_labels.npy", y.astype(np.int64))
PY
then
  if mpi 2 train --config Tests/mpi/configs/tiny-teacher.yaml --set data.source=npy --set data.path="$npyd" \
       --set output.dir="$tmp/npyrun" >"$tmp/npyrun.log" 2>&1 \
     && ev=$("$bin" eval --checkpoint "$tmp/npyrun/checkpoints/final.safetensors" 2>"$tmp/npyeval.log") \
     && "$bin" predict --checkpoint "$tmp/npyrun/checkpoints/final.safetensors" --images "$npyd/test_images.npy" \
          --out "$tmp/logits.npy" >/dev/null 2>"$tmp/predict.log" \
     && out=$(python3 - "$ev" "$tmp/logits.npy" "$npyd/test_labels.npy" <<'PY' 2>&1
import json, sys, numpy as np
ev, z, y = json.loads(sys.argv[1]), np.load(sys.argv[2]).astype(np.float64), np.load(sys.argv[3])
assert z.shape == (len(y), 5) and ev["samples"] == len(y), (z.shape, ev)
top1 = float(np.mean(z.argmax(1) == y))
m = z.max(1, keepdims=True); ce = float(np.mean(np.log(np.exp(z - m).sum(1)) + m[:, 0] - z[np.arange(len(y)), y]))
assert abs(top1 - ev["top1"]) < 1e-9, (top1, ev["top1"])
assert abs(ce - ev["loss"]) <= 1e-4 * abs(ev["loss"]), (ce, ev["loss"])
print(f"top-1 {top1:.4f} (eval {ev['top1']:.4f}), loss {ce:.6f} (eval {ev['loss']:.6f})")
PY
     ); then ok "eval --checkpoint alone and predict agree on test_images.npy: $out"
  else
    ko "eval without config / predict" \
       "${out:-} $(tail -2 "$tmp/npyrun.log") $(tail -2 "$tmp/npyeval.log" "$tmp/predict.log")"
  fi
  # The data moved since training: eval says the path came from the checkpoint and how to name the new place.
  mv "$npyd" "$npyd-moved"
  "$bin" eval --checkpoint "$tmp/npyrun/checkpoints/final.safetensors" >/dev/null 2>"$tmp/moved.log"; rc=$?
  if [ "$rc" != 0 ] && grep -q "recorded in $tmp/npyrun/checkpoints/final.safetensors (kdgraph.config); name where" \
       "$tmp/moved.log" && ev=$("$bin" eval --checkpoint "$tmp/npyrun/checkpoints/final.safetensors" \
       --set data.path="$npyd-moved" 2>/dev/null); then ok "eval after the data moved: named, then --set data.path"
  else ko "eval after the data moved" "exit $rc: $(tail -1 "$tmp/moved.log")"; fi
  mv "$npyd-moved" "$npyd"
else ko "npy fixture" "numpy"; fi

# Resume on another world size: the 2-rank step-15 checkpoint continued on 4 ranks takes the same step 16.
if mpi 4 train --config Tests/mpi/configs/tiny-distill.yaml --set teacher.checkpoint="$teacher" \
     --set output.dir="$tmp/resumed4" --resume "$tmp/straight/checkpoints/step_00000015.safetensors" \
     >"$tmp/resumed4.log" 2>&1 \
   && out=$(python3 Tests/mpi/compare_metrics.py "$tmp/resumed4/metrics.jsonl" "$tmp/straight/metrics.jsonl" \
              "$step_rtol" 16 1 skip skip 2>&1); then
  ok "resume a 2-rank checkpoint on 4 ranks: $out"
else
  ko "resume on 4 ranks" "${out:-$(tail -3 "$tmp/resumed4.log")}"
fi

# Feature matrices + a foundation-model teacher (embeddings and prompts, .npy), no labels read:
# np 1 and np 2 agree, and the student learns (hold-out top-1 ≥ 0.8 on 5 classes).
mkdir -p "$tmp/features"
if python3 Tests/mpi/make_feature_data.py "$tmp/features" 2>"$tmp/features.log"; then
  fset=(--set data.path="$tmp/features" --set teacher.embeddings="$tmp/features/teacher_embeddings.npy"
        --set teacher.prompts="$tmp/features/prompts.npy")
  fcfg=(--config Tests/mpi/configs/features-prg-embeddings.yaml "${fset[@]}")
  for n in 1 2; do
    mpi "$n" train "${fcfg[@]}" --set output.dir="$tmp/feat$n" --set train.checkpoint_every=10 \
      >"$tmp/feat$n.log" 2>&1 || ko "features + embeddings teacher on $n rank(s)" "$(tail -3 "$tmp/feat$n.log")"
  done
  top1=$(grep -o '"eval.top1": [0-9.]*' "$tmp/feat2/metrics.jsonl" | tail -1 | awk '{print $2}')
  if awk "BEGIN{exit !(${top1:-0} >= 0.8)}"; then
    ok "mlp on feature matrices from an embeddings+prompts teacher (PRG+RKD, no labels): top-1 $top1"
  else ko "features + embeddings teacher" "top-1 '${top1:-}' < 0.8"; fi
  invariance "world-size invariance np2 vs np1 (features)" "$tmp/feat2" "$tmp/feat1" "10 20" "${fcfg[@]}"
else
  ko "feature fixture" "$(tail -3 "$tmp/features.log")"
fi

# Bench and scaling report under a real mpirun (1 and 2 ranks, weak scaling, projection to 4 and 8):
# the JSON keys and phases, the per-step byte counts (at 2 ranks each rank receives the other's 10
# samples' rows), report.md / report.csv / projection.csv / scaling.svg, --reuse rebuilding the same
# report from the bench files (and refusing one of another run), --dry-run printing the mpirun lines, and bad
# --project-ranks refused.
sc="$tmp/scaling"
if "$bin" scaling --config Tests/mpi/configs/tiny-distill.yaml --set teacher.checkpoint="$teacher" --ranks 1,2 \
     --project 4,8 --warmup 1 --steps 3 --out "$sc" >"$tmp/scaling.log" 2>&1; then
  if out=$(python3 - "$sc" <<'PY' 2>&1
import json, sys, os
d = sys.argv[1]
b1, b2 = (json.load(open(os.path.join(d, f"bench_{n}.json"))) for n in (1, 2))
for b, n in ((b1, 1), (b2, 2)):
    assert b["ranks"] == n and b["global_batch"] == 10 * n, (b["ranks"], b["global_batch"])
    assert abs(b["samples_per_s_per_rank"] * n - b["samples_per_s"]) < 1e-3 * b["samples_per_s"]
    assert abs(b["samples_per_s"] - b["global_batch"] / b["step_median_s"]) < 1e-3 * b["samples_per_s"]
    phases = {"data", "teacher", "student_forward", "gather_loss", "backward", "allreduce", "optimizer", "gather_wait"}
    assert set(b["phases"]) == phases, sorted(b["phases"])
    assert all(0 <= v["median_s"] <= v["p90_s"] for v in b["phases"].values())
    assert len(b["peak_rss_bytes_per_rank"]) == n and b["peak_rss_bytes"] == max(b["peak_rss_bytes_per_rank"]) > 0
assert b1["bytes_gathered_per_step"] == 0
assert b2["bytes_gathered_per_step"] == 10 * b2["gathered_bytes_per_sample"] > 0, \
    (b2["bytes_gathered_per_step"], b2["gathered_bytes_per_sample"])
assert b1["bytes_allreduced_per_step"] == b2["bytes_allreduced_per_step"] > 0
assert b1["statistics_allreduces_per_step"] == 18 and b1["gathers_per_step"] == 5 \
    and b1["reduce_scatters_per_step"] == 3
assert [(p["ranks"], p["global_batch"]) for p in b1["loss_projection"]] == [(1, 10), (2, 20), (4, 40), (8, 80)], \
    b1["loss_projection"]
assert b2["loss_projection"] == []
# The loss's memory at each projected global batch: gathered inputs linear in it, working memory counted.
pts = b1["loss_projection"]
assert all(p["input_bytes"] > 0 and p["peak_bytes"] > 0 for p in pts), pts
assert all(abs(p["input_bytes"] / p["global_batch"] - pts[0]["input_bytes"] / 10) < 1e-9 for p in pts), pts
assert "spectral_solves" not in b1
md = open(os.path.join(d, "report.md")).read()
assert "| 1 | 10 |" in md and "| 2 | 20 |" in md and "Weak-scaling projection" in md and "| 8 | 80 |" in md, md
assert len(open(os.path.join(d, "report.csv")).read().strip().splitlines()) == 3
assert len(open(os.path.join(d, "projection.csv")).read().strip().splitlines()) == 5
assert open(os.path.join(d, "scaling.svg")).read().startswith("<svg")
print(f"np1 {b1['samples_per_s']:.0f} samples/s, np2 {b2['samples_per_s']:.0f}, "
      f"gathered {b2['bytes_gathered_per_step']} B/step")
PY
  ); then ok "bench + scaling report (np 1, 2): $out"; else ko "bench + scaling report" "$out"; fi
  cp "$sc/report.md" "$tmp/report-first.md"
  if "$bin" scaling --config Tests/mpi/configs/tiny-distill.yaml --set teacher.checkpoint="$teacher" --ranks 1,2 \
       --project 4,8 --out "$sc" --reuse >"$tmp/reuse.log" 2>&1 && cmp -s "$sc/report.md" "$tmp/report-first.md" \
     && [ "$(grep -c 'reusing' "$tmp/reuse.log")" = 2 ]; then
    ok "scaling --reuse rebuilds the same report from bench_N.json"
  else ko "scaling --reuse" "$(tail -3 "$tmp/reuse.log")"; fi
  # A bench_N.json of another run (here: another per-rank batch) is refused naming it, the report untouched.
  "$bin" scaling --config Tests/mpi/configs/tiny-distill.yaml --set teacher.checkpoint="$teacher" --ranks 1,2 \
    --project 4,8 --per-rank-batch 20 --out "$sc" --reuse >"$tmp/reuse-other.log" 2>&1; rc=$?
  if [ $rc != 0 ] && grep -q "bench_1.json: global_batch is 10, but this report's 1-rank bench has 20" \
       "$tmp/reuse-other.log" && cmp -s "$sc/report.md" "$tmp/report-first.md"; then
    ok "scaling --reuse refuses a bench of another run (exit $rc): $(grep -o 'global_batch is .*' \
      "$tmp/reuse-other.log" | cut -c1-100)…"
  else ko "scaling --reuse of another run" "exit $rc: $(tail -3 "$tmp/reuse-other.log")"; fi
else
  ko "kdgraph scaling" "$(tail -5 "$tmp/scaling.log")"
fi
dry=$("$bin" scaling --config configs/bench-distill-resnet32x4-resnet8x4.yaml --ranks 1,2 --out "$tmp/dry" \
        --dry-run 2>&1)
want="-np 1 .*-x OPENBLAS_NUM_THREADS=1 .*bench --config .*data.global_batch=64 .*--project-ranks 1,2,4,8,16,64"
if echo "$dry" | grep -q -- "$want" \
   && echo "$dry" | grep -q -- "-np 2 .*data.global_batch=128" && [ ! -e "$tmp/dry" ]; then
  ok "scaling --dry-run prints the mpirun lines"
else ko "scaling --dry-run" "$dry"; fi
# The shipped benchmark config on a fresh clone (issue 18 item 13): no runs/ folder, no teacher file;
# teacher.init: random runs it, and rank 0 says so.
mkdir -p "$tmp/fresh"
cp configs/bench-distill-resnet32x4-resnet8x4.yaml "$tmp/fresh/"
abs_bin="$(pwd)/$bin"
if (cd "$tmp/fresh" && "$abs_bin" bench --config bench-distill-resnet32x4-resnet8x4.yaml --warmup 0 --steps 1 \
      --set runtime.conv_algorithm=direct >"$tmp/fresh.json" 2>"$tmp/fresh.log") \
   && grep -q '"samples_per_s"' "$tmp/fresh.json" \
   && grep -q "teacher resnet32x4 has RANDOM weights (teacher.init: random)" "$tmp/fresh.log"; then
  ok "bench with the shipped bench-distill config on a fresh clone: runs, random teacher announced"
else ko "bench on a fresh clone" "$(tail -3 "$tmp/fresh.log")"; fi
# The spectral term's eigensolves are reported by the bench (2 ranks, the iterative solver forced: it
# converges on 20 rows: a solve per step and per loss timing, no fallback, no dense solve).
if mpi 2 bench --config Tests/mpi/configs/tiny-distill.yaml --set teacher.checkpoint="$teacher" --warmup 1 \
     --steps 2 --pytorch off --set 'loss=[{kind: spectral, k: 3, solver: iterative}]' \
     --set data.global_batch=20 >"$tmp/spectral.json" 2>"$tmp/spectral.log" \
   && out=$(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["spectral_solves"]
assert s["iterative"] >= 3 and s["dense"] == 0 and s["fallbacks"] == 0 and s["cycles"] >= 3, s
print(s)' "$tmp/spectral.json" 2>&1); then
  ok "bench reports the spectral solves: $out"
else ko "bench spectral solves" "${out:-$(tail -3 "$tmp/spectral.log")}"; fi
# Block BatchNorm: the step reduces the running statistics of all 9 BatchNorm layers once, after the student's
# forward, not once per layer inside it (docs/training.md "BatchNorm"); SyncBN above needs 18 (9 forward, 9
# backward). 2 and 4 ranks.
for n in 2 4; do
  if mpi "$n" bench --config Tests/mpi/configs/tiny-distill.yaml --set teacher.checkpoint="$teacher" --warmup 1 \
       --steps 2 --pytorch off --set student.batch_norm=block --set data.global_batch=$((4 * n)) \
       >"$tmp/block-bn-$n.json" 2>"$tmp/block-bn-$n.log" \
     && out=$(python3 -c '
import json, sys
b = json.load(open(sys.argv[1]))
assert b["ranks"] == int(sys.argv[2]) and b["statistics_allreduces_per_step"] == 1, b["statistics_allreduces_per_step"]
# 9 layers of 16, 16, 16, 32, 32, 32, 64, 64 and 64 channels: 2C + 1 Doubles each.
assert b["statistics_bytes_per_step"] == 8 * sum(2 * c + 1 for c in (16,) * 3 + (32,) * 3 + (64,) * 3), b
print(b["statistics_allreduces_per_step"], "reduction,", b["statistics_bytes_per_step"], "bytes")
' "$tmp/block-bn-$n.json" "$n" 2>&1); then
    ok "block BatchNorm: one running-statistics reduction per step at np $n: $out"
  else ko "block BatchNorm reductions at np $n" "${out:-$(tail -3 "$tmp/block-bn-$n.log")}"; fi
done
if msg=$("$bin" bench --config Tests/mpi/configs/tiny-distill.yaml --project-ranks 4,0 2>&1); then
  ko "bad --project-ranks" "exit 0"
elif echo "$msg" | grep -q "project-ranks: bad entry '0'"; then ok "bad --project-ranks refused with the entry named"
else ko "bad --project-ranks" "$msg"; fi

# bench --pytorch: a step the PyTorch script cannot reproduce (SyncBN, PRG) is refused naming the key
# under `on` (exit non-zero) and skipped with the reason under `auto` (exit 0), torch installed or not.
pt=(bench --config Tests/mpi/configs/tiny-distill.yaml --set teacher.checkpoint="$teacher" --warmup 0 --steps 1)
if msg=$("$bin" "${pt[@]}" --pytorch on 2>&1); then ko "bench --pytorch on refuses SyncBN" "exit 0"
elif echo "$msg" | grep -q "no PyTorch comparison: student.batch_norm"; then
  ok "bench --pytorch on refuses a step without a twin"
else ko "bench --pytorch on refuses SyncBN" "$(echo "$msg" | tail -2)"; fi
if msg=$("$bin" "${pt[@]}" --set student.batch_norm=block --pytorch auto 2>&1) \
   && echo "$msg" | grep -q "no PyTorch comparison: loss\[0\].kind: prg has no twin" && echo "$msg" | grep -q '^{'; then
  ok "bench --pytorch auto skips with the reason and still prints the result"
else ko "bench --pytorch auto" "$(echo "$msg" | tail -2)"; fi

# Results of a run (docs/training.md): summary.md, curves.svg, the summary in the log, and with
# output.tensorboard exactly one event file (rank 0's), which TensorBoard's own reader loads where it
# is installed (it is not installed for this test: SKIP otherwise).
tb="$tmp/tb"
if mpi 2 train --config Tests/mpi/configs/tiny-teacher.yaml --set output.dir="$tb" --set train.steps=10 \
     --set output.tensorboard=true --set comm.link_probe_every=4 >"$tmp/tb.log" 2>&1; then
  # One host: the probe period the run was given is named once (by rank 0), not dropped without a word.
  if [ "$(grep -c "comm.link_probe_every is set but not used: the link probe measures the links between hosts" \
       "$tmp/tb.log")" = 1 ]; then ok "comm.link_probe_every on one host: named once"
  else ko "comm.link_probe_every on one host" "$(grep -c link_probe "$tmp/tb.log") lines"; fi
  events=("$tb"/tensorboard/events.out.tfevents.*)
  if [ "${#events[@]}" != 1 ] || [ ! -s "${events[0]}" ]; then
    ko "tensorboard: one event file" "found: $(ls "$tb/tensorboard" 2>&1 | tr '\n' ' ')"
  elif ! grep -q "| final eval top-1 | " "$tb/summary.md" || ! grep -q "<svg " "$tb/curves.svg" \
       || ! grep -q "eval top-1: final " "$tmp/tb.log" || ! grep -q "results in $tb/: summary.md" "$tmp/tb.log"; then
    ko "run results" "summary.md, curves.svg or the summary lines missing: $(tail -3 "$tmp/tb.log")"
  else
    ok "2-rank run: summary.md, curves.svg, the summary logged, exactly one TensorBoard event file (rank 0)"
    if python3 -c "import tensorboard" 2>/dev/null; then
      if out=$(python3 - "$tb/tensorboard" <<'PY' 2>&1
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1])
acc.Reload()
loss = acc.Scalars("loss")
steps = [e.step for e in loss]
assert steps == [5, 10], steps
assert "eval.top1" in acc.Tags()["scalars"], acc.Tags()
print(f"loss at steps {steps}: {[round(e.value, 4) for e in loss]}")
PY
      ); then ok "TensorBoard's EventAccumulator reads the event file: $out"
      else ko "TensorBoard's EventAccumulator" "$out"; fi
    else
      echo "SKIP TensorBoard's EventAccumulator: python3 cannot import tensorboard"
    fi
  fi
else
  ko "2-rank run with output.tensorboard" "$(tail -3 "$tmp/tb.log")"
fi

# Issue 29 item 2: a resnet8 trained in PyTorch, evaluated and predicted by kdgraph from the command line
# (launch/pytorch_trained_check.py: the normalisation from the files, the same top-1, logits to 1e-4), where
# the interpreter $KDGRAPH_PYTHON (default python3) imports torch and safetensors (SKIP otherwise: CI).
py=${KDGRAPH_PYTHON:-python3}
if "$py" -c "import torch, safetensors" 2>/dev/null; then
  if "$bin" export-data --out "$tmp/digits" >/dev/null 2>&1 \
     && out=$("$py" launch/pytorch_trained_check.py --data "$tmp/digits" --out "$tmp/pt" --epochs 3 --kdgraph "$bin" \
              2>&1); then
    ok "PyTorch-trained resnet8 through kdgraph eval/predict: $(echo "$out" | tail -1 | cut -c1-200)"
  else ko "PyTorch-trained resnet8" "$(echo "${out:-export-data failed}" | tail -2)"; fi
else
  echo "SKIP PyTorch-trained resnet8 through kdgraph eval/predict: $py cannot import torch and safetensors"
fi

# Issue 29 item 3: a run that names no output.dir gets the next runs/<config>/version_N (two runs under
# mpirun -np 2: version_0 then version_1, both complete); a resume from version_0's checkpoint continues
# in version_0; and launch/local.sh refuses a folder holding an earlier run before mpirun starts (its
# `train --check`), printed once, in well under mpirun's kill sequence (2 × KDGRAPH_STOP_GRACE = 60 s).
here=$PWD
# vrun LOG args…: the tiny teacher on 2 ranks from $tmp (runs/ relative to it), logging every step.
vrun() {
  local log=$1; shift
  timeout 300 mpirun --oversubscribe --bind-to none -np 2 "$here/$bin" train --config vcfg/tiny-teacher.yaml \
    --set train.log_every=1 "$@" >"$log" 2>&1
}
v=runs/tiny-teacher
if (cd "$tmp" && mkdir -p vcfg \
      && grep -v "^output:" "$here/Tests/mpi/configs/tiny-teacher.yaml" >vcfg/tiny-teacher.yaml \
      && vrun v1.log --set train.steps=4 && vrun v2.log --set train.steps=4 \
      && [ -f $v/version_0/checkpoints/final.safetensors ] && [ -f $v/version_1/checkpoints/final.safetensors ] \
      && [ ! -e $v/version_2 ] && grep -q "output.dir: $v/version_1 (none named" v2.log \
      && vrun v3.log --set train.steps=6 --resume $v/version_0/checkpoints/final.safetensors \
      && [ "$(grep -c '"loss"' $v/version_0/metrics.jsonl)" = 6 ] && [ ! -e $v/version_2 ])
then
  ok "no output.dir: runs/<config>/version_0, version_1 in turn; --resume continues in version_0"
else
  ko "versioned output folders" "$(ls -R "$tmp/runs" 2>&1 | head -5); $(tail -n 2 "$tmp"/v*.log)"
fi
start=$(date +%s)
KDGRAPH_STOP_GRACE=30 bash launch/local.sh 2 train --config Tests/mpi/configs/tiny-teacher.yaml \
  --set output.dir="$tmp/teacher" >"$tmp/again.log" 2>&1; rc=$?
took=$(( $(date +%s) - start ))
if [ "$rc" != 0 ] && [ "$took" -lt 10 ] && [ "$(grep -c 'already holds an earlier run' "$tmp/again.log")" = 1 ] \
   && ! grep -q "MPI_ABORT\|mpirun" "$tmp/again.log"; then
  ok "local.sh into a folder holding a run: refused once in ${took} s before mpirun (exit $rc)"
else
  ko "local.sh refusal" "exit $rc after ${took} s: $(tail -3 "$tmp/again.log")"
fi
# A rank count that is not one: mpirun -np 0 would have started a rank per slot.
bash launch/local.sh 0 selftest >"$tmp/np0.log" 2>&1; rc0=$?
bash launch/local.sh two selftest >"$tmp/np2.log" 2>&1; rc2=$?
if [ "$rc0" = 2 ] && [ "$rc2" = 2 ] && grep -q "N must be a number of ranks ≥ 1, got '0'" "$tmp/np0.log" \
   && grep -q "got 'two'" "$tmp/np2.log" && ! grep -q '"ok"' "$tmp/np0.log"; then
  ok "local.sh 0 and local.sh two: refused (exit 2), nothing started"
else
  ko "local.sh rank count" "exit $rc0/$rc2: $(cat "$tmp/np0.log" "$tmp/np2.log" | tail -3)"
fi
# A grace period mpirun cannot read (it was passed on as it was).
KDGRAPH_STOP_GRACE=abc bash launch/local.sh 2 selftest >"$tmp/grace.log" 2>&1; rc=$?
if [ "$rc" = 2 ] && grep -q "KDGRAPH_STOP_GRACE must be whole seconds, got 'abc'" "$tmp/grace.log" \
   && ! grep -q '"ok"' "$tmp/grace.log"; then ok "local.sh with KDGRAPH_STOP_GRACE=abc: refused (exit 2)"
else ko "KDGRAPH_STOP_GRACE=abc" "exit $rc: $(tail -2 "$tmp/grace.log")"; fi

# Bad input: every rank fails with the file and the key, non-zero exit, no output written.
bad="$tmp/bad.yaml"
printf 'data: {global_batch: 0}\n' > "$bad"
start=$(date +%s)
if mpi 2 train --config "$bad" --set output.dir="$tmp/bad-out" >"$tmp/bad.log" 2>&1; then
  ko "bad config" "exit 0"
elif grep -q "bad.yaml: data.global_batch: must be ≥ 1, got 0" "$tmp/bad.log" && [ ! -e "$tmp/bad-out" ] \
     && [ $(( $(date +%s) - start )) -lt 10 ]; then
  ok "bad config: message names file and key, non-zero exit, nothing written"
else
  ko "bad config" "$(tail -3 "$tmp/bad.log")"
fi
if mpi 2 train --config Tests/mpi/configs/tiny-distill.yaml --set teacher.checkpoint="$tmp/missing.safetensors" \
     --set output.dir="$tmp/bad-teacher" >"$tmp/badt.log" 2>&1; then
  ko "missing teacher checkpoint" "exit 0"
elif grep -q "teacher.checkpoint: .*missing.safetensors: cannot open" "$tmp/badt.log"; then
  ok "missing teacher checkpoint: the error names teacher.checkpoint and the file (no random fallback)"
else ko "missing teacher checkpoint" "$(tail -3 "$tmp/badt.log")"; fi
if mpi 4 train --config Tests/mpi/configs/tiny-distill.yaml --set teacher.checkpoint="$teacher" \
     --set data.global_batch=3 --set train.block_size=1 --set output.dir="$tmp/too-many" >"$tmp/toomany.log" 2>&1
then
  ko "more ranks than samples" "exit 0"
elif grep -q "data.global_batch: .*4 ranks but only 3 samples" "$tmp/toomany.log"; then
  ok "more ranks than samples per batch: clear error"
else ko "more ranks than samples" "$(tail -3 "$tmp/toomany.log")"; fi

finish
