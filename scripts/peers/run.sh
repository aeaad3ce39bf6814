#!/usr/bin/env bash
# polyepo and its PyTorch/transformers peer, one after the other on this machine, same model,
# same work, same threads: the figures README's performance table compares; then llama.cpp on
# the same Q4_1 file for single-stream sampling. Creates .venv-peers (torch, transformers, gguf,
# accelerate, and llama-cpp-python, which pip builds from source on this machine: ~10 min on 2 cores the first
# time) on first use; needs the model (scripts/fetch-model.sh) and a release build
# (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${THREADS:-2}
if [ ! -x .venv-peers/bin/python ]; then
  python3 -m venv .venv-peers
fi
# transformers needs gguf and accelerate to load a GGUF file; a no-op once installed.
.venv-peers/bin/python -m pip install --quiet "torch==2.15.0" "transformers==5.10.4" "gguf==0.19.0" "accelerate==1.15.0"
# llama-cpp-python is compiled for the CPU it is built on (-march=native), so it is never
# taken from pip's cache: the first install builds it on this machine. Without AMX: on a
# Sapphire Rapids VM here ggml's AMX matmul crashed in its first product (SIGSEGV in
# ggml_backend_amx_mul_mat); its AVX-512 kernels are kept.
no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
CMAKE_ARGS="-DCMAKE_C_FLAGS='$no_amx' -DCMAKE_CXX_FLAGS='$no_amx'" \
  .venv-peers/bin/python -m pip install --quiet --no-cache-dir "llama-cpp-python==0.3.36"
echo "== polyepo (RAYON_NUM_THREADS=$threads)"
RAYON_NUM_THREADS=$threads target/release/polyepo bench
echo "== peer"
.venv-peers/bin/python scripts/peers/transformers_bench.py --threads "$threads"
echo "== llama.cpp peer"
.venv-peers/bin/python scripts/peers/llamacpp_bench.py --threads "$threads"
