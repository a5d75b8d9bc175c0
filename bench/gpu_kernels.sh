#!/usr/bin/env bash
# Per-kernel device time of decode steps under Nsight Compute, for side-by-side switch settings:
#   [PREFILL=N] [DECODE=N] [NCU_ARGS=...] bench/gpu_kernels.sh SLUICE MODEL ["VAR=VALUE ..." ...]
# (with PREFILL > 1 the prompt's kernels count in the per-token totals: filter with NCU_ARGS)
# Launches one kernel at a time (SLUICE_GPU_GRAPH=0), caches not flushed between kernels
# (--cache-control none), clocks not locked; prints per variant: kernel name (template
# arguments cut), launches, mean µs, total µs per decode token.
set -uo pipefail
sluice=$1 model=$2
shift 2
[ $# -eq 0 ] && set -- ""
steps=${DECODE:-3}
for v in "$@"; do
  # shellcheck disable=SC2086  # "A=1 B=2": one variant of two assignments; NCU_ARGS: options
  env SLUICE_GPU_GRAPH=0 $v ncu --clock-control none --cache-control none ${NCU_ARGS:-} \
    --metrics gpu__time_duration.sum --csv "$sluice" bench -m "$model" --backend cuda \
    --prefill "${PREFILL:-1}" --decode "$steps" --probe-experts 0 >/tmp/ncu.csv 2>/tmp/ncu.err ||
    { echo "== $v: ncu failed"; tail -5 /tmp/ncu.err; continue; }
  echo "== ${v:-defaults}"
  python3 - "$steps" <<'PY'
import csv, sys, collections, re
steps = int(sys.argv[1])
rows = [r for r in csv.reader(open('/tmp/ncu.csv')) if len(r) > 10]
h = rows[0]; rows = rows[1:]
ki, vi = h.index('Kernel Name'), h.index('Metric Value')
ui = h.index('Metric Unit')
d = collections.defaultdict(list)
for r in rows:
    try: v = float(r[vi].replace(',', ''))
    except ValueError: continue
    v *= {'ns': 1e-3, 'nsecond': 1e-3, 'ms': 1e3, 'msecond': 1e3}.get(r[ui], 1.0)
    name = re.sub(r'<.*', '', r[ki]).split('(')[0].split('::')[-1]
    d[name].append(v)
tot = 0
for k, v in sorted(d.items(), key=lambda kv: -sum(kv[1])):
    # the prompt token's launches are counted too: per-token totals divide by steps + 1
    print(f"{k:40s} {len(v):6d} {sum(v)/len(v):8.2f} {sum(v)/(steps+1):9.1f}")
    tot += sum(v)
print(f"{'total per token':40s} {'':6s} {'':8s} {tot/(steps+1):9.1f}")
PY
done
