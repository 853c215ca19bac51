#!/usr/bin/env bash
# The teacher cache under a real mpirun (docs/training.md, "Teacher cache"):
#   - `kdgraph teacher-cache` on 2 ranks fills every record; training at np 1, 2 and 4 that reads it takes
#     bit-identical steps to the same world size filling its own cache on the fly, and every fill (on the
#     fly at np 1, 2, 4, or by the command) stores the same bytes: a record does not depend on who computed it;
#   - and bit-identical to running the teacher on every step (no cache, the same round schedule);
#   - with train.deterministic, a 4-rank run reading the 2-rank cache is bit-identical to the 2-rank run;
#   - a fill resumes after damage (a lost checksum: that record's block is computed again, same bytes);
#   - float16 records: the run's first step within the float16 rounding of the float32 run's;
#   - `kdgraph export-views` writes the same views on 1 and 2 ranks, and refuses a used folder;
#   - a cache made for other settings is refused on every rank naming the field, the cache untouched;
#   - a fill for a config whose loss terms read nothing of the teacher is refused on every rank;
#   - a complete cache on a read-only file system is read; a cache of changed training images is refused.
# Needs a release build (launch/test.sh makes it). Prints PASS/FAIL lines and "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
source Tests/mpi/harness.sh
teacher="$tmp/teacher/checkpoints/final.safetensors"
mpi 2 train --config Tests/mpi/configs/tiny-teacher.yaml --set output.dir="$tmp/teacher" --set train.steps=4 \
  >"$tmp/teacher.log" 2>&1 || ko "teacher checkpoint" "$(tail -3 "$tmp/teacher.log")"
cfg=(--config Tests/mpi/configs/teacher-cache.yaml --set teacher.checkpoint="$teacher")
# Usage: same_cache A B — the round files of caches A and B are byte-identical.
same_cache() { local f; for f in "$1"/round-*; do cmp -s "$f" "$2/$(basename "$f")" || return 1; done; }

if out=$(mpi 2 teacher-cache "${cfg[@]}" --set teacher.cache.path="$tmp/filled" 2>"$tmp/fill.err") \
   && echo "$out" | grep -q '"records_computed": 128, "records_present": 0' \
   && grep -q "round 2/2" "$tmp/fill.err"; then
  ok "teacher-cache on 2 ranks: 2 rounds × 64 records computed ($(echo "$out" | tr -d '{}'))"
else
  ko "teacher-cache fill" "$out $(tail -3 "$tmp/fill.err")"
fi

for n in 1 2 4; do
  mpi "$n" train "${cfg[@]}" --set teacher.cache.path="$tmp/own$n" --set output.dir="$tmp/own$n-run" \
    >"$tmp/own$n.log" 2>&1 || { ko "np$n filling its own cache" "$(tail -3 "$tmp/own$n.log")"; continue; }
  mpi "$n" train "${cfg[@]}" --set teacher.cache.path="$tmp/filled" --set output.dir="$tmp/read$n-run" \
    >"$tmp/read$n.log" 2>&1 || { ko "np$n reading the filled cache" "$(tail -3 "$tmp/read$n.log")"; continue; }
  if out=$(python3 Tests/mpi/compare_metrics.py "$tmp/read$n-run/metrics.jsonl" "$tmp/own$n-run/metrics.jsonl" 0 \
             2>&1) \
     && out2=$(python3 Tests/mpi/compare_safetensors.py "$tmp/read$n-run/checkpoints/final.safetensors" \
                 "$tmp/own$n-run/checkpoints/final.safetensors" 0 2>&1) \
     && same_cache "$tmp/own$n" "$tmp/filled"; then
    ok "np$n: reading the 2-rank fill = filling its own cache, bit for bit ($out; $out2); the caches' bytes agree"
  else
    ko "np$n cache exactness" "$out ${out2:-} (or the caches' bytes differ)"
  fi
done

# Against no cache (the same round schedule, the teacher run on every step): the same bits, at np 1, 2, 4
# (the fused teacher's GEMMs are row-invariant: a record has the bits the teacher gives it in any batch).
for n in 1 2 4; do
  mpi "$n" train "${cfg[@]}" --set teacher.cache.path="" --set output.dir="$tmp/replay$n-run" \
    >"$tmp/replay$n.log" 2>&1 || { ko "np$n without a cache" "$(tail -3 "$tmp/replay$n.log")"; continue; }
  if out=$(python3 Tests/mpi/compare_metrics.py "$tmp/read$n-run/metrics.jsonl" "$tmp/replay$n-run/metrics.jsonl" 0 \
             2>&1) \
     && out2=$(python3 Tests/mpi/compare_safetensors.py "$tmp/read$n-run/checkpoints/final.safetensors" \
                 "$tmp/replay$n-run/checkpoints/final.safetensors" 0 2>&1); then
    ok "np$n: reading the 2-rank cache = running the teacher every step, bit for bit ($out; $out2)"
  else ko "np$n cache vs no cache" "$out ${out2:-}"; fi
done

# Deterministic training (the default; docs/training.md): the 2-rank cache read by a 4-rank run takes the
# 2-rank run's steps, bit for bit (losses, terms, evaluations, every final tensor).
det=(--set teacher.cache.path="$tmp/filled" --set train.block_size=4)   # deterministic: the default
if mpi 2 train "${cfg[@]}" "${det[@]}" --set output.dir="$tmp/det2" >"$tmp/det2.log" 2>&1 \
   && mpi 4 train "${cfg[@]}" "${det[@]}" --set output.dir="$tmp/det4" >"$tmp/det4.log" 2>&1 \
   && out=$(python3 Tests/mpi/compare_exact.py "$tmp/det4" "$tmp/det2" 2>&1); then
  ok "deterministic: the 2-rank cache read on 4 ranks = the 2-rank run: $out"
else
  ko "deterministic 2-rank cache on 4 ranks" "${out:-} $(tail -3 "$tmp/det4.log" "$tmp/det2.log")"
fi

# Damage: one lost checksum (an interrupted write) → the fill recomputes that record's block of 16, same bytes.
cp -r "$tmp/filled" "$tmp/damaged"
python3 - "$tmp/damaged/round-0001.sums.npy" <<'PY'
import sys, numpy as np
sums = np.load(sys.argv[1], mmap_mode="r+"); sums[21] = 0; sums.flush()
PY
if out=$(mpi 2 teacher-cache "${cfg[@]}" --set teacher.cache.path="$tmp/damaged" 2>/dev/null) \
   && echo "$out" | grep -q '"records_computed": 16, "records_present": 112' && same_cache "$tmp/damaged" "$tmp/filled"
then ok "a fill after a lost checksum recomputes one block of 16 records, to the same bytes"
else ko "resumed fill" "$out"; fi

# float16: step 1 (same initial weights) within the records' rounding: 2⁻¹¹ relative per teacher value moves
# the loss by well under 2e-3 of its value.
if mpi 2 train "${cfg[@]}" --set teacher.cache.path="$tmp/half" --set teacher.cache.dtype=float16 \
     --set output.dir="$tmp/half-run" >"$tmp/half.log" 2>&1 \
   && out=$(python3 Tests/mpi/compare_metrics.py "$tmp/half-run/metrics.jsonl" "$tmp/own2-run/metrics.jsonl" 2e-3 1 1 \
              skip skip 2>&1) \
   && python3 -c "import json,sys; m=json.load(open(sys.argv[1])); assert m['layout']['dtype']=='float16'" \
        "$tmp/half/manifest.json"; then
  ok "float16 cache: $out"
else ko "float16 cache" "${out:-$(tail -3 "$tmp/half.log")}"; fi

# export-views: the same bytes from 1 and 2 ranks, the documented shape, and a second export refused.
if mpi 2 export-views "${cfg[@]}" --rounds 2 --out "$tmp/views2" >"$tmp/views2.out" 2>&1 \
   && mpi 1 export-views "${cfg[@]}" --rounds 2 --out "$tmp/views1" >"$tmp/views1.out" 2>&1 \
   && same_cache "$tmp/views1" "$tmp/views2" \
   && python3 -c "import numpy as np, sys; assert np.load(sys.argv[1], mmap_mode='r').shape == (64, 2, 16, 16, 3)" \
        "$tmp/views2/round-0001.npy"; then
  if mpi 2 export-views "${cfg[@]}" --rounds 2 --out "$tmp/views2" >"$tmp/again.log" 2>&1; then
    ko "export-views into a used folder" "not refused"
  elif grep -q "already holds exported views" "$tmp/again.log" && same_cache "$tmp/views1" "$tmp/views2"; then
    ok "export-views: [64, 2, 16, 16, 3] per round, the same bytes on 1 and 2 ranks; a second export refused"
  else ko "export-views refusal" "$(tail -2 "$tmp/again.log")"; fi
else
  ko "export-views" "$(tail -3 "$tmp/views2.out") $(tail -3 "$tmp/views1.out" 2>/dev/null)"
fi

# Other settings: refused on every rank, naming the field; the cache untouched.
before=$(cd "$tmp/filled" && md5sum ./*)
mpi 2 train "${cfg[@]}" --set teacher.cache.path="$tmp/filled" --set data.crop_padding=2 \
  --set output.dir="$tmp/other" >"$tmp/other.log" 2>&1; rc=$?
ranks=$(grep -c "data.crop_padding: 4 → 2" "$tmp/other.log")
if [ "$rc" != 0 ] && [ "$ranks" -ge 1 ] && grep -q "teacher.cache.path" "$tmp/other.log" \
   && [ "$(cd "$tmp/filled" && md5sum ./*)" = "$before" ]; then
  ok "a cache for other settings refused (exit $rc): $(grep -m1 -o 'this cache was made[^;]*' "$tmp/other.log")"
else
  ko "cache for other settings" "exit $rc: $(tail -3 "$tmp/other.log")"
fi

# A config whose loss terms read nothing of the teacher (ce alone): the fill is refused on every rank before the
# cache's files are made (training would skip the teacher, and never read them).
sed 's/^  - {kind: rkd.*$/  - {kind: ce}/; /^  - {kind: kd/d' Tests/mpi/configs/teacher-cache.yaml >"$tmp/ce.yaml"
mpi 2 teacher-cache --config "$tmp/ce.yaml" --set teacher.checkpoint="$teacher" \
  --set teacher.cache.path="$tmp/unread" >"$tmp/unread.log" 2>&1; rc=$?
ranks=$(grep -c "^rank [01]: .*loss: no loss term reads the teacher's outputs (loss: ce)" "$tmp/unread.log")
if [ "$rc" != 0 ] && [ "$ranks" = 2 ] && [ ! -e "$tmp/unread" ]; then
  ok "a fill no loss term would read refused on both ranks (exit $rc), no cache made: \
$(grep -m1 -o 'loss: no loss term.*' "$tmp/unread.log")"
else
  ko "fill of an unread cache" "exit $rc, $ranks ranks named it: $(tail -3 "$tmp/unread.log")"
fi

# A complete cache on a read-only file system is read as it is (a shared cache on a cluster file
# system), giving the writable cache's bits (issue 24 item 9: it was refused, "Read-only file system").
mkdir -p "$tmp/rofs"
if mount -t tmpfs -o size=64m tmpfs "$tmp/rofs" 2>"$tmp/mount.err"; then
  cp -r "$tmp/filled" "$tmp/rofs/cache" && mount -o remount,ro "$tmp/rofs"
  mpi 2 train "${cfg[@]}" --set teacher.cache.path="$tmp/rofs/cache" --set output.dir="$tmp/ro-run" \
    >"$tmp/ro.log" 2>&1; rc=$?
  if [ "$rc" = 0 ] && out=$(python3 Tests/mpi/compare_metrics.py "$tmp/ro-run/metrics.jsonl" \
                              "$tmp/read2-run/metrics.jsonl" 0 2>&1); then
    ok "a complete cache on a read-only file system is read: $out"
  else ko "read-only cache" "exit $rc: ${out:-} $(tail -3 "$tmp/ro.log")"; fi
  umount "$tmp/rofs"
else
  echo "SKIP read-only cache: cannot mount a tmpfs here ($(head -1 "$tmp/mount.err"))"
fi

# A file where a folder is expected (export-views --out, teacher.cache.path): refused on every rank with
# the reason, no NSCocoaErrorDomain dump, the file untouched.
echo keep >"$tmp/afile"
mpi 2 export-views "${cfg[@]}" --rounds 2 --out "$tmp/afile" >"$tmp/outfile.log" 2>&1; rc1=$?
mpi 2 train "${cfg[@]}" --set teacher.cache.path="$tmp/afile" --set output.dir="$tmp/cachefile" \
  >"$tmp/cachefile.log" 2>&1; rc2=$?
in_way="afile: --out: cannot create the folder (a file of that name is in the way)"
if [ "$rc1" != 0 ] && [ "$rc2" != 0 ] && grep -q "$in_way" "$tmp/outfile.log" \
   && grep -q "teacher.cache.path: $tmp/afile: is a file, not a folder" "$tmp/cachefile.log" \
   && ! grep -q NSCocoaErrorDomain "$tmp/outfile.log" "$tmp/cachefile.log" && [ "$(cat "$tmp/afile")" = keep ]; then
  ok "a file as export-views --out and as teacher.cache.path: refused naming it (exit $rc1, $rc2)"
else ko "file in the way" "exit $rc1/$rc2: $(tail -2 "$tmp/outfile.log" "$tmp/cachefile.log")"; fi

# Training images changed in place (rows shuffled: same count, shape and statistics): the cache filled
# on the old rows is refused on every rank naming the data file, never read (issue 24 item 2).
mkdir -p "$tmp/npy"
python3 - "$tmp/npy" <<'PY'
import sys, numpy as np
d = sys.argv[1]; rng = np.random.default_rng(7)
for split, n in (("train", 64), ("test", 16)):
    np.save(f"{d}/{split}_images.npy", rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8))
    np.save(f"{d}/{split}_labels.npy", (np.arange(n) % 5).astype(np.int64))
PY
npy=(--set data.source=npy --set data.path="$tmp/npy" --set data.image_size=~ --set teacher.cache.path="$tmp/npycache")
mpi 2 teacher-cache "${cfg[@]}" "${npy[@]}" >"$tmp/npyfill.log" 2>&1
python3 -c "import numpy as np, sys; a = np.load(sys.argv[1]); \
np.save(sys.argv[1], a[np.random.default_rng(1).permutation(len(a))])" "$tmp/npy/train_images.npy"
mpi 2 train "${cfg[@]}" "${npy[@]}" --set output.dir="$tmp/shuffled" >"$tmp/shuffled.log" 2>&1; rc=$?
ranks=$(grep -c "training data content: sha256:.* of $tmp/npy/train_images.npy → sha256:" "$tmp/shuffled.log")
if [ "$rc" != 0 ] && [ "$ranks" -ge 1 ] && [ ! -e "$tmp/shuffled/metrics.jsonl" ]; then
  ok "a cache of other training images (rows shuffled in place) refused (exit $rc), naming the data file"
else
  ko "cache of shuffled images" "exit $rc: $(tail -3 "$tmp/npyfill.log" "$tmp/shuffled.log")"
fi

finish
