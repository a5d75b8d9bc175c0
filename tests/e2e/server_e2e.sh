#!/usr/bin/env bash
# End-to-end: sluice serve on a free loopback port with the tiny model, the official OpenAI
# client (npm), curl for malformed input, a soak run, and a clean shutdown.
#   tests/e2e/server_e2e.sh BUILD_DIR MODEL
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:?build dir}/sluice
model=${2:?model}
command -v node >/dev/null || { echo "node is required for the server e2e test"; exit 1; }
[ -d "$here/node/node_modules/openai" ] || (cd "$here/node" && npm ci --no-audit --no-fund >/dev/null)

log=$(mktemp)
"$bin" serve -m "$model" --port 0 --ctx 2048 > "$log" 2>&1 &
pid=$!
trap 'kill -9 $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do grep -q 'listening on' "$log" && break; sleep 0.1; done
url=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1)
[ -n "$url" ] || { cat "$log"; exit 1; }
echo "server at $url (pid $pid)"

fail() { echo "FAIL: $*"; cat "$log"; exit 1; }
expect() {  # expect STATUS CURL-ARGS...
  local want=$1; shift
  local got
  got=$(curl -s -H "Content-Type: application/json" -o /tmp/sluice-e2e-body -w "%{http_code}" "$@")
  [ "$got" = "$want" ] || fail "curl $* -> $got, want $want: $(cat /tmp/sluice-e2e-body)"
  if [ "$want" = 400 ]; then grep -q '"error"' /tmp/sluice-e2e-body || fail "no error object: $(cat /tmp/sluice-e2e-body)"; fi
}
C="$url/v1/chat/completions"
expect 200 "$url/health"
expect 400 -d '{not json' "$C"
expect 400 -d '[1,2,3]' "$C"
expect 400 -d '{"messages":"hi"}' "$C"
expect 400 -d '{"messages":[{"role":"wizard","content":"x"}]}' "$C"
expect 400 -d '{"messages":[{"role":"user","content":"x"}],"max_tokens":-5}' "$C"
expect 400 -d '{"messages":[{"role":"user","content":"x"}],"max_tokens":99999999}' "$C"
expect 400 -d '{"messages":[{"role":"user","content":"x"}],"stop":[1,2]}' "$C"
expect 400 -d '{"messages":[{"role":"user","content":"x"}],"stream":"yes"}' "$C"
expect 400 -d '{"prompt":42}' "$url/v1/completions"
expect 400 --data-binary "{\"prompt\":\"$(printf '\\udcff')\"}" "$url/v1/completions"
long=$(python3 -c 'print("word " * 3000)')
expect 400 -d "{\"prompt\":\"$long\"}" "$url/v1/completions"
head -c 2000000 /dev/zero | tr '\0' 'a' > /tmp/sluice-e2e-big
expect 413 --data-binary @/tmp/sluice-e2e-big "$C"
expect 404 "$url/v1/nothing"
expect 200 "$url/metrics"

SLUICE_URL=$url node --test "$here/node/openai.test.mjs"
SLUICE_URL=$url SLUICE_PID=$pid node "$here/node/soak.mjs"
expect 200 "$url/health"

kill -TERM $pid
wait $pid
rc=$?
trap - EXIT
rm -f "$log"
[ $rc -eq 0 ] || { echo "server exit code $rc"; exit 1; }
echo "server e2e passed"
