#!/usr/bin/env bash
# Builds polyepo with `--features cuda` on a machine without a GPU or a CUDA install, from
# NVIDIA's wheels on PyPI, so the CUDA code paths compile on every CI run.
#
#   scripts/cuda-build.sh                  # release binary: target/cuda/release/polyepo,
#                                          # and target/gpu-check/polyepo.gz to carry
#   scripts/cuda-build.sh check            # cargo check only (no kernels linked)
#   CUDA_COMPUTE_CAP=80 scripts/cuda-build.sh   # kernels for another card (default 90: H100/H200)
#
# What it sets up, under .cuda/ (git-ignored, reused by later runs):
# - the CUDA 13.0 toolkit pieces candle 0.11 needs: nvcc (+ nvvm's cicc, the crt and cccl
#   headers) to compile candle's kernels, and the runtime, cuBLAS, cuRAND and NVRTC
#   libraries it links. 13.0, not the newest 13.x: the GPU machines' driver supports CUDA
#   13.0, and PTX from a newer nvcc would not load there.
# - unversioned link names (libcublas.so -> libcublas.so.13, ...), which the wheels lack.
# - a stub libcuda.so (soname libcuda.so.1) that defines the driver API's symbols: the real
#   libcuda comes with the GPU driver, never from a wheel. The binary records only the
#   soname, so on a GPU machine it loads the driver's own library.
# The resulting binary needs libcuda.so.1 and the CUDA 13 libraries to start: it runs on a
# GPU machine (scripts/gpu-check.sh), not here.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
sdk=$root/.cuda
cu=$sdk/nvidia/cu13

# The versions CUDA 13.0 shipped with (its release notes' component table).
wheels=(
  nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88
  nvidia-cuda-cccl==13.0.85 nvidia-cuda-runtime==13.0.88 nvidia-cuda-nvrtc==13.0.88
  "nvidia-cublas>=13.0,<13.1" nvidia-curand==10.4.0.35
)
stamp=$sdk/.installed
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${wheels[*]}" ]; then
  echo "cuda-build: installing the CUDA 13.0 wheels into .cuda/ (about 700 MB to download, 1.2 GB installed)"
  rm -rf "$sdk"
  PIP_NO_CACHE_DIR=1 python3 -m pip install --quiet --no-deps --target "$sdk" "${wheels[@]}"
  echo "${wheels[*]}" > "$stamp"
fi

# Link names and the driver stub, in lib/stubs (one of the folders cudarc searches).
stubs=$cu/lib/stubs
mkdir -p "$stubs"
for lib in cudart cublas cublasLt curand nvrtc; do
  versioned=$(cd "$cu/lib" && ls "lib$lib.so."* 2>/dev/null | sort | head -n 1)
  [ -n "$versioned" ] || { echo "cuda-build: lib$lib.so.* missing from $cu/lib" >&2; exit 1; }
  ln -sf "../$versioned" "$stubs/lib$lib.so"
done
cargo fetch --locked --quiet
cudarc_version=$(grep -A1 '^name = "cudarc"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$cudarc_version" | head -n 1)
driver_api=$cudarc/src/driver/sys/mod.rs
if [ ! -f "$stubs/libcuda.so" ] || [ "$driver_api" -nt "$stubs/libcuda.so" ]; then
  grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$driver_api" | sort -u | sed 's/^pub unsafe fn \(.*\)/void \1(void) {}/' \
    > "$stubs/libcuda-stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stubs/libcuda.so" "$stubs/libcuda-stub.c"
fi

export CUDA_ROOT=$cu CUDA_PATH=$cu
export PATH=$cu/bin:$PATH
export CUDARC_CUDA_VERSION=13000
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
# A target folder of its own: the CPU build's artifacts stay valid beside it.
export CARGO_TARGET_DIR=$root/target/cuda
nvcc --version | tail -n 2

if [ "${1:-build}" = check ]; then
  cargo check --locked --release --features cuda --bin polyepo
else
  cargo build --locked --release --features cuda --bin polyepo
  # Stripped and gzipped for the GPU machine: about 19 MB against 74 MB stripped (candle's
  # quantized-matmul kernels are compiled in), under the 64 MiB a device call carries.
  mkdir -p "$root/target/gpu-check"
  strip -o "$root/target/gpu-check/polyepo" "$CARGO_TARGET_DIR/release/polyepo"
  gzip -9 -f "$root/target/gpu-check/polyepo"
  echo "cuda-build: $CARGO_TARGET_DIR/release/polyepo (kernels for sm_$CUDA_COMPUTE_CAP);"
  echo "  to carry: target/gpu-check/polyepo.gz ($(du -h "$root/target/gpu-check/polyepo.gz" | cut -f1))"
fi
