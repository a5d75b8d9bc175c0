#!/usr/bin/env bash
# What each phase of a one-token decode step adds to the step, on the GPU machine: decode
# runs with every phase, then with each phase left out (SLUICE_GPU_REPEAT=PHASE:0, timing
# only: outputs are wrong), setting (a) of the CUDA issue (every weight in VRAM):
#   bench/gpu_phases.sh SLUICE MODEL [PROMPT (default 32)]
# Prints per phase: decode tok/s without it and its µs per layer, (t_all - t_without) /
# n_layer. The runs with every phase come first and last (their spread is the noise).
set -uo pipefail
sluice=$1
model=$2
prompt=${3:-32}
run() { # [VAR=VALUE...] -> the bench JSON line
  env "$@" timeout "${RUN_TIMEOUT_S:-90}" "$sluice" bench -m "$model" --backend cuda \
    --prefill "$prompt" --decode 64 --probe-experts 0 --json 2>/dev/null | tail -1
}
{
  echo "all $(run)"
  for ph in qkv attention attn_out router gate_up down; do
    echo "$ph $(run SLUICE_GPU_REPEAT=$ph:0)"
  done
  echo "all $(run)"
} | python3 -c '
import json, sys
rows = []
for line in sys.stdin:
    name, _, js = line.partition(" ")
    try:
        d = json.loads(js)
    except ValueError:
        print(name, "failed"); continue
    rows.append((name, d["decode_tok_s"], d["n_layer"]))
alls = [r[1] for r in rows if r[0] == "all"]
if not alls: sys.exit("no run with every phase finished")
t_all = 1e6 / (sum(alls) / len(alls))
print("every phase: %s tok/s (%.1f us per token)" % (", ".join("%.1f" % a for a in alls), t_all))
for name, tok_s, n_layer in rows:
    if name != "all":
        print("%-10s %7.1f tok/s without it: %5.1f us per layer" %
              (name, tok_s, (t_all - 1e6 / tok_s) / n_layer))
'
