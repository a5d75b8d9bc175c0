#!/usr/bin/env bash
# The CUDA tests, on a machine with an NVIDIA GPU: every weight op vs the CPU reference for
# each dtype, and the whole model CUDA vs CPU (tests/gpu/test_cuda.cpp).
#   tests/gpu/run.sh              configure + build build-gpu/ (needs the Debian packages of
#                                 scripts/install-deps.sh and nvcc), then run
#   SLUICE_GPU_BIN=DIR tests/gpu/run.sh   run a test_cuda built elsewhere (DIR/test_cuda,
#                                 shared libraries it needs in DIR/lib)
set -euo pipefail
cd "$(dirname "$0")/../.."
export SLUICE_SOURCE_DIR=$PWD
if [ -n "${SLUICE_GPU_BIN:-}" ]; then
  export LD_LIBRARY_PATH="$SLUICE_GPU_BIN/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
  test_bin="$SLUICE_GPU_BIN/test_cuda"
else
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLUICE_CUDA=ON >/dev/null
  cmake --build build-gpu --target test_cuda sluice
  test_bin=build-gpu/tests/test_cuda
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# Every pass runs even when one fails (a failure of the first hid the others in session 20).
rc=0
"$test_bin" || rc=1
# Paths behind switches are checked too: Q8_0 kept in the file layout (the fallback for rows
# that are not whole 8-block groups), attention chunks not capped at one wave, and (off until
# measured) the expert gate/up pair kernel bounded to 6 blocks per SM.
for sw in SLUICE_GPU_Q8G8=0 SLUICE_GPU_ATTN_WAVE=0 SLUICE_GPU_GATEUP_6=1; do
  echo "== with $sw"
  env "$sw" "$test_bin" --gtest_filter='CudaOps.*:CudaModel.LogitsAndGreedyTokensMatchCpu:CudaModel.Q8_0WeightsMatchCpu' || rc=1
done
exit $rc
