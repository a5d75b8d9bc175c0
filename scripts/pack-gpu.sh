#!/usr/bin/env bash
# Copies a CUDA build's binaries and the shared libraries they need beyond glibc and the CUDA
# driver into DEST (DEST/lib), for running on a GPU machine that lacks the Debian packages:
#   scripts/pack-gpu.sh BUILD_DIR DEST
#   then there: LD_LIBRARY_PATH=DEST/lib:/usr/local/cuda/lib64 DEST/sluice ...
#   (tests: SLUICE_GPU_BIN=DEST tests/gpu/run.sh)
set -euo pipefail
build=$1
dest=$2
mkdir -p "$dest/lib"
bins=()
for b in sluice sluice-synth tests/test_cuda sluice-gpu-kbench sluice-gpu-floor sluice-gpu-gateup sluice-gpu-matvec; do
  [ -x "$build/$b" ] && bins+=("$build/$b")
done
cp "${bins[@]}" "$dest/"
# glibc, libstdc++ and the CUDA runtime come from the GPU machine's own installation.
ldd "${bins[@]}" | awk '/=> \// {print $3}' | sort -u |
  grep -Ev '/(libc|libm|libdl|librt|libpthread|ld-linux[^/]*|libstdc\+\+|libgcc_s|libcuda|libcudart)\.so' |
  xargs -r cp -L -t "$dest/lib/"
du -sh "$dest"
