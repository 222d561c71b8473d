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
# it into and reuse across runs; a new temporary one by default), REPEATS (3), and everything the
# harness reads (DURATION, CONNECTIONS, GATEWAY_CPU, LOAD_CPU, ...). Needs wrk, node and npm.
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
