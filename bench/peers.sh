#!/usr/bin/env bash
# The peers harness (../shared/peers: Apollo Server, Hive Gateway, Python floors, one fake Plivo)
# run against this checkout's gateway in production configuration: an API key checked on every
# request, limits, metrics, JSON access lines. Adds one target of its own, `gateway-docid`: the
# same gateway on port 4041 answering the Apollo body's document sent by its id (trusted
# documents) instead of its text.
#
#   bench/peers.sh [TARGET...]   default: gateway gateway-docid apollo apollo-respcache
#
# Env: PEERS (the harness to copy; ../shared/peers beside the project), SCRATCH (a folder to copy
# it into and reuse across runs; a new temporary one by default), REPEATS (3), RSS_SECONDS (60:
# after the harness, S2 that long on a new gateway, its RSS every 10 s; 0: none), and everything
# the harness reads (DURATION, CONNECTIONS, GATEWAY_CPU, LOAD_CPU, ...). Needs wrk, node, npm.
set -euo pipefail
project="$(cd "$(dirname "$0")/.." && pwd)"
source_dir="${PEERS:-$project/../shared/peers}"
scratch="${SCRATCH:-$(mktemp -d)}"
[[ -d "$scratch/peers" ]] || cp -r "$source_dir" "$scratch/"
cd "$scratch/peers"
[[ -d node_modules ]] || npm ci --no-audit --no-fund --loglevel=error
[[ -x .venv/bin/python ]] || { python3 -m venv .venv && .venv/bin/pip install -q -r requirements.txt; }

# The documentId target: a manifest of the Apollo body's document, and the body naming it by id.
python3 - <<'PY'
import hashlib
import json

body = json.load(open("bodies/apollo.json"))
text = body["query"]
document_id = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
json.dump({document_id: text}, open("bodies/gateway-manifest.json", "w"))
by_id = {"operationName": body["operationName"], "documentId": document_id, "variables": body["variables"]}
open("bodies/gateway-docid.json", "w").write(json.dumps(by_id, separators=(",", ":")))
PY
cat > gateway/start-docid.sh <<'SH'
#!/usr/bin/env bash
# The project's gateway on port 4041 with the Apollo body's document as a trusted document.
HERE="$(cd "$(dirname "$0")" && pwd)"
export GATEWAY_PORT=4041 GATEWAY_TRUSTED_DOCUMENTS="$HERE/../bodies/gateway-manifest.json"
exec "$HERE/start.sh" "$@"
SH
chmod +x gateway/start-docid.sh
grep -q '^gateway-docid ' targets.txt \
  || echo "gateway-docid     gateway/start-docid.sh default http://127.0.0.1:4041/graphql bodies/gateway-docid.json" >> targets.txt

key=peers-bench-key
export GATEWAY_API_KEYS="bench:$(printf %s "$key" | sha256sum | cut -d' ' -f1):read"
export GATEWAY_ENV=production BENCH_HEADER="Authorization: Bearer $key"
export PLIVO_BUDGET_REQUESTS=100000000 # the fake upstream has no account limit
targets=("$@")
((${#targets[@]})) || targets=(gateway gateway-docid apollo apollo-respcache)
echo "peers harness in $scratch/peers; results in $scratch/peers/results"
PROJECT_DIR="$project" REPEATS="${REPEATS:-3}" ./run-all.sh "${targets[@]}"

# RSS over a long S2: a new gateway (production configuration), new uuids throughout.
rss_seconds="${RSS_SECONDS:-60}"
((rss_seconds > 0)) || exit 0
. ./common.sh
upstream/start.sh > run/upstream-rss.log 2>&1 &
upstream=$!
for _ in $(seq 1 40); do curl -sf -o /dev/null "$UPSTREAM_URL/__stats" && break; sleep 0.25; done
PROJECT_DIR="$project" gateway/start.sh default > run/gateway-rss.log 2>&1 &
gateway=$!
trap 'kill "$gateway" "$upstream" 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do curl -sf -o /dev/null http://127.0.0.1:4040/readyz && break; sleep 0.5; done
gateway_pid="$(pgrep -P "$gateway" -f 'serve' || echo "$gateway")"
run_id=$(((RANDOM << 15 | RANDOM) % 0x70000000 + 0x10000000))
taskset -c "$LOAD_CPU" wrk -t1 -c"${CONNECTIONS:-50}" -d"${rss_seconds}s" -s driver/bench.lua \
  http://127.0.0.1:4040/graphql -- bodies/apollo.json cold "$run_id" > run/rss-wrk.log &
load=$!
samples=()
for ((t = 0; t <= rss_seconds; t += 10)); do
  samples+=("${t}s $(($(awk '/^VmRSS/{print $2}' "/proc/$gateway_pid/status") / 1024)) MiB")
  ((t < rss_seconds)) && sleep 10
done
wait "$load"
echo "RSS of the gateway over ${rss_seconds} s of S2: ${samples[*]}"
echo "S2 over that time: $(grep -o '"rps":[0-9.]*,' run/rss-wrk.log) $(grep -o '"bad_body":[0-9]*' run/rss-wrk.log)"
