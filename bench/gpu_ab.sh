#!/usr/bin/env bash
# Side-by-side decode runs of two sluice builds on the GPU machine, setting (a) of the CUDA
# issue (every weight in VRAM), alternating so both see the same host state; then the GPU tests
# of the second build. Binaries come packed by scripts/pack-gpu.sh, built on a CPU machine:
#   scripts/pack-gpu.sh build-base PACK/base; scripts/pack-gpu.sh build-gpu PACK/new
#   tar cJf .dev/bins.tar.xz -C PACK base new      (carry .dev; the tree travels)
#   bench/gpu_ab.sh .dev/bins.tar.xz [ROUNDS] ["VAR=VALUE [VAR=VALUE]" ...]   (each argument:
#                            one more run of the new build per round with that environment)
# SKIP_TESTS=1 leaves the tests out (a second call in one session). P sets the prompt length.
# Results: one line per run in $OUT/ab.log (name, prompt, decode tok/s, bound, efficiency),
# the JSON in $OUT/ab.jsonl. Stops starting runs after $BUDGET_S seconds (default 420).
set -uo pipefail
pack=$1
rounds=${2:-3}
shift 2 || shift $#
out=${OUT:-/tmp}
t0=$(date +%s)
el() { echo $(($(date +%s) - t0)); }
mkdir -p /tmp/p && tar xJf "$pack" -C /tmp/p
export LD_LIBRARY_PATH=/tmp/p/base/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
model=/tmp/q30b.gguf
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if [ ! -f "$model" ]; then
  /tmp/p/base/sluice-synth --shape qwen3-30b-a3b --tokenizer-from models/tiny-qwen3moe-Q4_K_M.gguf \
    -o "$model" >"$out/synth.log" 2>&1 &
  synth=$!
fi
[ -n "${SKIP_TESTS:-}" ] ||
  SLUICE_GPU_BIN=/tmp/p/new timeout "${TEST_TIMEOUT_S:-150}" tests/gpu/run.sh 2>&1 | tee "$out/tests_full.log" | tail -60 |
  tee "$out/tests.log"
[ -n "${synth:-}" ] && wait "$synth"
run() { # name binary [VAR=VALUE...]
  local name=$1 bin=$2
  shift 2
  [ "$(el)" -gt "${BUDGET_S:-420}" ] && return
  env "$@" timeout "${RUN_TIMEOUT_S:-90}" "$bin" bench -m "$model" --backend cuda --prefill "${P:-32}" --decode 64 \
    --probe-experts 0 --json 2>/tmp/r.err | tail -1 >/tmp/r.json
  { echo "== $name $*"; tail -12 /tmp/r.err; } >>"$out/stderr.log"
  echo "$name P=${P:-32} $(cat /tmp/r.json)" >>"$out/ab.jsonl"
  python3 -c "import json; d=json.load(open('/tmp/r.json')); print('$name P=${P:-32}', \
round(d['decode_tok_s'], 1), round(d.get('bound_tok_s', 0), 1), d.get('efficiency'))" |
    tee -a "$out/ab.log"
}
for ((i = 0; i < rounds; ++i)); do
  run base /tmp/p/base/sluice
  run new /tmp/p/new/sluice
  # shellcheck disable=SC2086  # "A=1 B=2" is one variant of two assignments
  for v in "$@"; do run "new:$v" /tmp/p/new/sluice $v; done
done
echo "done after $(el) s"
