#!/usr/bin/env bash
# Honest streaming benchmark: each run in a memory cgroup that caps the process INCLUDING
# its page cache, after dropping caches, so "model larger than RAM" is real.
#   sudo bench/streaming.sh MODEL.gguf [CAPS...]      e.g. bench/streaming.sh q30b.gguf 8GiB 12GiB
# Environment: MODES="direct page-cache mmap", PREFILL, DECODE, EXTRA (more bench flags).
# Needs root (cgroup v1 memory controller at /sys/fs/cgroup/memory, or cgroup v2).
set -euo pipefail
model=${1:?usage: streaming.sh MODEL [CAPS...]}
shift
caps=("${@:-8GiB}")
modes=(${MODES:-direct page-cache mmap})
bin=${SLUICE:-$(dirname "$0")/../build/sluice}
out=${OUT:-$(dirname "$0")/out}
mkdir -p "$out"

to_bytes() { numfmt --from=iec-i "${1%B}"; }  # 8GiB -> 8589934592

run_capped() {  # run_capped BYTES CMD... : runs CMD in a fresh memory cgroup capped at BYTES
  local bytes=$1; shift
  local cg
  if [ -d /sys/fs/cgroup/memory ]; then
    cg=/sys/fs/cgroup/memory/sluice-bench-$$
    mkdir -p "$cg"
    echo "$bytes" > "$cg/memory.limit_in_bytes"
  else
    cg=/sys/fs/cgroup/sluice-bench-$$
    mkdir -p "$cg"
    echo "$bytes" > "$cg/memory.max"
  fi
  sync; echo 3 > /proc/sys/vm/drop_caches
  sh -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' sh "$cg" "$@"
  local rc=$?
  rmdir "$cg" 2>/dev/null || true
  return $rc
}

printf '| cap | io | prefill tok/s | first token s | prefill ÷ disk time | decode tok/s | disk MB/tok | hit rate | disk GB/s | bound tok/s | efficiency | disk busy in decode, GB/s while busy | peak RSS GiB |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for cap in "${caps[@]}"; do
  bytes=$(to_bytes "$cap")
  # sluice's own budget sits below the cap: the cap also has to hold the binary, libc and
  # the page cache of whatever else the process touches.
  budget=$((bytes - 256 * 1024 * 1024))
  for mode in "${modes[@]}"; do
    j="$out/bench-$cap-$mode.json"
    run_capped "$bytes" "$bin" bench -m "$model" --mem-budget "$budget" --io "$mode" \
      --prefill "${PREFILL:-16}" --decode "${DECODE:-32}" ${EXTRA:-} --json > "$j"
    python3 - "$j" "$cap" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); cap = sys.argv[2]
hit = j["decode"]["hit_rate"] if j["io"] == "direct" else j["page_cache_hit_rate"]
print(f'| {cap} | {j["io"]} | {j["prefill_tok_s"]:.2f} | {j["first_token_s"]:.2f} | {j["prefill_vs_read"]:.2f}x | {j["decode_tok_s"]:.3f} | '
      f'{j["disk_bytes_per_token"]/1e6:.0f} | {100*hit:.0f}% | {j["disk_bw_bytes_per_s"]/1e9:.2f} | '
      f'{j["bound_tok_s"]:.3f} | {100*j["efficiency"]:.0f}% | '
      f'{100*j["decode_disk_busy_fraction"]:.0f}% at {j["decode_disk_busy_bytes_per_s"]/1e9:.2f} | '
      f'{j["peak_rss_bytes"]/2**30:.2f} |')
PY
  done
done
