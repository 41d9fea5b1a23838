#!/usr/bin/env bash
# Builds the CUDA binary on a machine without a GPU (or without a system CUDA toolkit).
#
#   scripts/build-cuda.sh              # release binary: target/cuda/release/gender-classifier
#   scripts/build-cuda.sh --check      # only `cargo check -p gc-engine --features cuda` (the rot check)
#
# The CUDA toolkit comes from PyPI (NVIDIA's wheels) into .cuda-toolkit/ at the repository root:
# nvcc, the runtime headers, CCCL, NVRTC, cuBLAS and cuRAND. Candle compiles its kernels to PTX with
# nvcc at build time; at run time cudarc loads libcuda, libnvrtc, libcublas(Lt), libcurand and
# libcudart from the GPU machine's driver and CUDA libraries (see README, "GPU").
#
# Environment: CUDA_COMPUTE_CAP (default 90, an H100; 80 for an A100, 89 for an L4/RTX 40xx),
# CUDA_WHEEL_VERSION (default 13.4.92: cudarc 0.19 knows CUDA up to 13.4).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=build
[ "${1:-}" = "--check" ] && mode=check

root="$PWD/.cuda-toolkit"
ver="${CUDA_WHEEL_VERSION:-13.4.92}"
if [ ! -x "$root/venv/bin/python" ]; then
  python3 -m venv "$root/venv"
fi
"$root/venv/bin/pip" install -q --disable-pip-version-check \
  "nvidia-cuda-nvcc==$ver" "nvidia-nvvm==$ver" "nvidia-cuda-runtime==$ver" "nvidia-cuda-crt==$ver" "nvidia-cuda-nvrtc==$ver" \
  "nvidia-cuda-cccl>=13.0,<14" "nvidia-cublas>=13,<14" "nvidia-curand>=10.4,<11"

site="$("$root/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cuda="$site/nvidia/cu13"
[ -x "$cuda/bin/nvcc" ] || { echo "error: nvcc not found under $cuda/bin (the wheel layout changed?)" >&2; exit 1; }

# The linker wants unversioned names (libcudart.so); the wheels ship versioned ones only.
# libcuda comes with the GPU driver: link against a stub that has its symbols, load the real one.
lib="$root/lib"
mkdir -p "$lib"
for so in "$cuda"/lib/lib*.so.*; do
  base="$(basename "$so")"
  ln -sf "$so" "$lib/${base%%.so.*}.so"
done
if [ -f "$cuda/lib/stubs/libcuda.so" ]; then
  ln -sf "$cuda/lib/stubs/libcuda.so" "$lib/libcuda.so"
elif [ ! -e "$lib/libcuda.so" ]; then
  # The wheels ship no driver stub: make one that defines every driver API name in cuda.h (and the
  # _v2/_v3 names its macros map to), with the driver's soname, so the binary needs libcuda.so.1.
  grep -ohE '\bcu[A-Z][A-Za-z0-9_]*' "$cuda/include/cuda.h" "$cuda/include/cudaGL.h" "$cuda/include/cudaEGL.h" \
    "$cuda/include/cudaVDPAU.h" "$cuda/include/cudaProfilerTypedefs.h" 2>/dev/null | sort -u |
    sed 's/.*/void &(void) {}/' > "$lib/cuda_stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$lib/libcuda.so" "$lib/cuda_stub.c"
fi

export PATH="$cuda/bin:$PATH"
export CUDA_ROOT="$cuda" CUDA_PATH="$cuda" CUDA_HOME="$cuda"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13040}"
export LIBRARY_PATH="$lib:$cuda/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$lib -L native=$cuda/lib"

start=$(date +%s)
if [ "$mode" = check ]; then
  CARGO_TARGET_DIR=target/cuda cargo check -p gc-engine --features cuda
else
  CARGO_TARGET_DIR=target/cuda cargo build --release --features cuda
  # What a GPU machine gets: the binary without symbols, compressed (xz: about 14 MB, from 94 MB).
  strip -o target/cuda/gender-classifier target/cuda/release/gender-classifier
  xz -T0 -6 -f -k target/cuda/gender-classifier
  ls -l target/cuda/release/gender-classifier target/cuda/gender-classifier target/cuda/gender-classifier.xz >&2
fi
echo "cuda $mode finished in $(( $(date +%s) - start )) s (CUDA $ver, compute capability $CUDA_COMPUTE_CAP)" >&2
