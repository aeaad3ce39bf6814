#!/usr/bin/env bash
# The GPU check: proves a CUDA build of polyepo on a real card, in one call, with no Rust
# toolchain and no network on the GPU machine. Build the binary here first:
#
#   scripts/cuda-build.sh                                # writes target/gpu-check/polyepo.gz
#   scripts/gpu-check.sh target/gpu-check/polyepo.gz     # on the GPU machine
#
# (The `device` tool carries target/gpu-check, an ignored path; the whole carry must stay
# under 64 MiB, hence the gzipped binary. A plain binary is taken as well.) Results go to $OUT (default gpu-check-out/): one log per step and
# summary.txt. Steps, each timed, each allowed to fail without stopping the rest:
#   1. nvidia-smi, and the CUDA libraries the binary needs (found on the machine).
#   2. `polyepo device-check --device cuda`: logits, token log-probs and the gradients of a
#      training loss against the CPU, a gradient for every trainable tensor, and a KV-cache
#      decode equal to a full recompute, on four tiny model variants.
#   3. `polyepo train` (the built-in synthetic run, 60 steps) on the GPU and on this
#      machine's CPU, same seed: wall time of each and the final rewards.
#   4. `polyepo bench` on the model step 3 trained: sampling, training forward+backward and
#      AdamW, on the GPU in f32 and bf16 and on the CPU.
# SmolLM2's GGUF (about 94 MB) is over the carry limit, so the real-model rows wait for a
# machine that has it.
set -uo pipefail
bin=$(realpath "${1:-target/gpu-check/polyepo.gz}")
out=${OUT:-gpu-check-out}
mkdir -p "$out"
out=$(realpath "$out")
work=$(mktemp -d)
if [[ $bin == *.gz ]]; then
  gunzip -c "$bin" > "$work/polyepo" && chmod +x "$work/polyepo"
  bin=$work/polyepo
fi
summary=$out/summary.txt
: > "$summary"

note() { echo "$*" | tee -a "$summary"; }

# Runs one named step with its log in $out/NAME.log, and notes its status and wall time.
step() {
  local name=$1
  shift
  local start end rc
  start=$(date +%s%N)
  "$@" > "$out/$name.log" 2>&1
  rc=$?
  end=$(date +%s%N)
  note "$(printf '%-28s rc=%-3s %6d ms' "$name" "$rc" $(((end - start) / 1000000)))"
  tail -n 25 "$out/$name.log"
  return $rc
}

# The CUDA 13 libraries the binary links (cuBLAS, cuRAND, NVRTC, the runtime): from a CUDA
# install or from PyTorch's wheels, wherever this machine has them.
dirs=""
for lib in libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
  found=$(find /usr/local/cuda* /usr/lib/x86_64-linux-gnu /usr/local/lib /opt /usr/lib/python3* \
    /usr/local/lib/python3* /root/.local "$HOME" -name "$lib" 2>/dev/null | head -n 1)
  if [ -n "$found" ]; then
    note "found $lib: $found"
    dirs="$dirs:$(dirname "$found")"
  else
    note "MISSING $lib"
  fi
done
export LD_LIBRARY_PATH="${dirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ldd "$bin" > "$out/ldd.txt" 2>&1
grep "not found" "$out/ldd.txt" | sed 's/^/unresolved: /' | tee -a "$summary"

step nvidia-smi nvidia-smi
step version "$bin" --version
step device-check "$bin" device-check --device cuda

cd "$work" || exit 1
steps=60
step train-cuda "$bin" train --quiet --set run.steps=$steps --set model.device=cuda --out "$work/gpu"
step train-cpu "$bin" train --quiet --set run.steps=$steps --set model.device=cpu --out "$work/cpu"
for run in gpu cpu; do
  if [ -f "$work/$run/metrics.jsonl" ]; then
    note "$run: last step $(tail -n 1 "$work/$run/metrics.jsonl" | grep -o '"reward/mean":[0-9.e-]*')"
  fi
done

model=$work/gpu/final
[ -d "$model" ] || model=$work/cpu/final
if [ -d "$model" ]; then
  common=(bench --model "$model" --only sample,train,adamw --batches 1,8,32 --new-tokens 32 --train-len 64)
  step bench-cuda-f32 "$bin" "${common[@]}" --device cuda --dtype f32
  step bench-cuda-bf16 "$bin" "${common[@]}" --device cuda --dtype bf16
  step bench-cpu-f32 "$bin" "${common[@]}" --device cpu --dtype f32
fi
cp -r "$work/gpu/metrics.jsonl" "$out/train-gpu-metrics.jsonl" 2>/dev/null
cp -r "$work/cpu/metrics.jsonl" "$out/train-cpu-metrics.jsonl" 2>/dev/null
echo "---- summary ($summary)"
cat "$summary"
