#!/usr/bin/env bash
# The whole test suite: release build + all tests (incl. perplexity vs llama.cpp),
# ASan/UBSan build + all but the perplexity group, and a short libFuzzer run per parser.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)

cmake --preset release >/dev/null
cmake --build build -j "$jobs"
(cd build && ctest --output-on-failure -j1)

cmake --preset asan >/dev/null
cmake --build build-asan -j "$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 SLUICE_RSS_GROWTH_LIMIT=10 \
  ctest --output-on-failure -j1 -LE ppl)

cmake --preset fuzz >/dev/null
cmake --build build-fuzz -j "$jobs" --target fuzz_gguf fuzz_safetensors
for f in gguf safetensors; do
  mkdir -p "build-fuzz/corpus-$f"
  "build-fuzz/tests/fuzz/fuzz_$f" -max_total_time="${SLUICE_FUZZ_SECONDS:-30}" -rss_limit_mb=4096 \
    "build-fuzz/corpus-$f" "tests/fuzz/corpus/$f"
done
echo "all tests passed"
