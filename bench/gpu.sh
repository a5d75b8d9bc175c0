#!/usr/bin/env bash
# sluice bench --backend cuda in the three settings of the CUDA issue, on one model:
#   (a) every weight in VRAM                       -> vs device-memory bandwidth
#   (b) --gpu-mem 4GiB, model file in page cache   -> vs pinned host->device bandwidth
#   (c) host memory cgroup smaller than the model, caches dropped, --gpu-mem 4GiB
#                                                  -> vs the disk
# Usage: bench/gpu.sh MODEL.gguf [HOST_CAP (default 8G)]  (root, cgroup v2 for (c))
# SLUICE=path/to/sluice overrides build/sluice. Prints one JSON line per setting.
set -euo pipefail
model=$1
cap=${2:-8G}
sluice=${SLUICE:-build/sluice}
common=(bench -m "$model" --backend cuda --prefill "${PREFILL:-32}" --decode "${DECODE:-64}" --json)
echo "== (a) all in VRAM"
"$sluice" "${common[@]}"
echo "== (b) --gpu-mem 4GiB, file in page cache"
cat "$model" >/dev/null
"$sluice" "${common[@]}" --gpu-mem 4GiB
echo "== (c) host cgroup memory.max=$cap, caches dropped, --gpu-mem 4GiB --mem-budget"
cg=/sys/fs/cgroup/sluice-bench
mkdir -p "$cg"
echo "$cap" >"$cg/memory.max"
sync
echo 3 >/proc/sys/vm/drop_caches
budget=$(( $(numfmt --from=iec "$cap") * 3 / 4 ))
(echo $BASHPID >"$cg/cgroup.procs"; exec "$sluice" "${common[@]}" --gpu-mem 4GiB \
  --mem-budget "$budget" --io direct --probe-experts 256)
