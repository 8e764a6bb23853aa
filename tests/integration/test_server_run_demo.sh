#!/usr/bin/env bash
# scripts/run-demo, what `make run` does, end to end: it prepares the demo data
# (MovieLens-100k when the path given holds it, else synthetic data), loads the
# feature store, trains the CTR model, builds the co-occurrence table and the
# index, trains the reranker on the pipeline's own lists, then runs funneld in
# the foreground and answers a reranked Rank call; a second run finds
# everything up to date, and takes a new item while it serves (store load,
# index add, reload: a search finds it). The server is always stopped.
#   test_server_run_demo.sh SOURCE_DIR BUILD_DIR ML100K_DIR
set -euo pipefail
src=${1:?usage: test_server_run_demo.sh SOURCE_DIR BUILD_DIR ML100K_DIR}
build=${2:?}
data=${3:?}
tmp=$(mktemp -d)
pid=""
cleanup() {
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  [[ ! -f $tmp/log ]] || sed 's/^/run-demo: /' "$tmp/log" >&2
  exit 1
}
export FUNNEL_DEMO_OUT=$tmp/demo
if [[ -f $data/ml-100k.inter ]]; then
  export FUNNEL_DATA=$data
  want="MovieLens-100k"
else
  # An empty FUNNEL_DATA is "not set": run-demo looks in data/ml-100k and beside the checkout.
  export FUNNEL_DATA=""
  want=""
fi

# add_item: while funneld serves, a new item goes into the store (with its text's embedding)
# and into the index (funnel index add, no rebuild); after /admin/reload a search for its
# text recalls it from the query channel.
add_item() {
  local funnel=$build/src/tools/funnel model=${FUNNEL_MODEL_DIR:-$src/models/all-MiniLM-L6-v2}
  local text="a quantum pastry heist on the rings of saturn"
  "$funnel" encode --model "$model" <<<"$text" >"$tmp/new.json" || fail "funnel encode"
  /usr/bin/python3 - "$tmp/new.json" "$text" >"$tmp/new.jsonl" <<'PY' || fail "new item json"
import base64, json, sys
vec = json.load(open(sys.argv[1]))["embedding"]
b = lambda s: base64.b64encode(s.encode()).decode()
print(json.dumps({"features": {"feature": {
    "item_id": {"bytesList": {"value": [b("new-item-1")]}},
    "title": {"bytesList": {"value": [b(sys.argv[2])]}},
    "embedding": {"floatList": {"value": vec}}}}}))
PY
  "$funnel" tfrecord from-jsonl "$tmp/new.jsonl" "$tmp/new.tfrecord" || fail "tfrecord"
  "$funnel" store load --store "$tmp/demo/store" --family items --input "$tmp/new.tfrecord" \
    --id-key item_id --vector-key embedding 2>>"$tmp/log" || fail "store load while serving"
  local added
  added=$("$funnel" index add --index "$tmp/demo/items.faiss" --store "$tmp/demo/store" --json) ||
    fail "index add while serving"
  grep -q '"added": 1, ' <<<"$added" || fail "index add: $added"
  [[ $(curl -s --max-time 120 -o /dev/null -w '%{http_code}' -X POST \
    "http://127.0.0.1:$port/admin/reload") == 200 ]] || fail "/admin/reload after index add"
  local page
  page=$(curl -s --max-time 60 -H 'Content-Type: application/json' \
    -d "{\"userId\": \"1\", \"query\": \"$text\", \"pageSize\": 5, \"debug\": true}" \
    "http://127.0.0.1:$port/funnel.v1.Ranking/Rank")
  grep -q '"new-item-1"' <<<"$page" || fail "the added item was not recalled: ${page:0:600}"
}

# run: starts run-demo (which execs funneld, keeping the pid) and waits for the port.
run() {
  # The files exist before the background job opens them: sed reading a missing file
  # would stop the test under set -e.
  : >"$tmp/out"
  : >"$tmp/log"
  "$src/scripts/run-demo" "$build" 0 >"$tmp/out" 2>"$tmp/log" &
  pid=$!
  port=""
  # Preparing the demo (embedding, training) takes minutes under the sanitizers; the test's
  # own timeout bounds the whole run, and a run-demo that fails is noticed at once.
  local deadline=$((SECONDS + 1000))
  while ((SECONDS < deadline)); do
    port=$(sed -n 's|^funneld listening on http://127\.0\.0\.1:\([0-9][0-9]*\)$|\1|p' "$tmp/out")
    [[ -z $port ]] || break
    kill -0 "$pid" 2>/dev/null || fail "run-demo exited before funneld started"
    sleep 0.2
  done
  [[ -n $port ]] || fail "funneld printed no port within 1000 s"
  [[ $(curl -s --max-time 5 "http://127.0.0.1:$port/healthz") == ok ]] || fail "/healthz"
  grep -q "curl http://127.0.0.1:PORT/readyz" "$tmp/log" || fail "run-demo does not say how to check"
  grep -q "funnel.v1.Ranking/Rank" "$tmp/log" || fail "run-demo does not show a Rank call"
  # The demo serves the pipeline: a recommendation page for a user.
  local page
  page=$(curl -s --max-time 30 -H 'Content-Type: application/json' \
    -d '{"userId": "1", "pageSize": 5}' "http://127.0.0.1:$port/funnel.v1.Ranking/Rank")
  [[ $(grep -o '"id"' <<<"$page" | wc -l) == 5 ]] || fail "Rank did not give 5 items: $page"
  grep -q '"stage": "rerank"' <<<"$page" && grep -q '"reranker": "reranker.safetensors' <<<"$page" ||
    fail "the page was not reranked by the demo's reranker: $page"
  # A search: the query is encoded and its channel fills the candidates.
  page=$(curl -s --max-time 60 -H 'Content-Type: application/json' \
    -d '{"userId": "1", "query": "space adventure", "pageSize": 5}' \
    "http://127.0.0.1:$port/funnel.v1.Ranking/Rank")
  [[ $(grep -o '"query_ann"' <<<"$page" | wc -l) == 5 ]] || fail "a search page not from the query: $page"
  # Encode: the served encoder's vectors, the same as the offline tool's.
  local served offline
  served=$(curl -s --max-time 60 -H 'Content-Type: application/json' \
    -d '{"texts": ["space adventure"]}' "http://127.0.0.1:$port/funnel.v1.Ranking/Encode")
  offline=$("$build/src/tools/funnel" encode --model "${FUNNEL_MODEL_DIR:-$src/models/all-MiniLM-L6-v2}" <<<"space adventure")
  [[ $(grep -o '[-0-9.e]*' <<<"${served#*values}" | head -3) == $(grep -o '[-0-9.e]*' <<<"${offline#*embedding}" | head -3) ]] ||
    fail "Encode differs from funnel encode: ${served:0:200} / ${offline:0:200}"
  [[ ${1:-} != add-item ]] || add_item
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  pid=""
  ((rc == 0)) || fail "funneld exited $rc after SIGTERM"
}

run
[[ -f $tmp/demo/SOURCE.txt ]] || fail "no SOURCE.txt in the demo folder"
[[ -z $want ]] || grep -q "$want" "$tmp/demo/SOURCE.txt" || fail "SOURCE.txt lacks $want"
for f in users items interactions train test; do
  [[ -s $tmp/demo/$f.tfrecord ]] || fail "$f.tfrecord missing"
done
grep -q "loading users and items into the feature store" "$tmp/log" || fail "no store step"
grep -q "training the CTR model" "$tmp/log" || fail "no CTR model step"
grep -q "building the item co-occurrence table" "$tmp/log" || fail "no co-occurrence step"
grep -q "training it into .*reranker.safetensors" "$tmp/log" || fail "no reranker step"
[[ -s $tmp/demo/ctr.safetensors && -s $tmp/demo/items.cooc && -s $tmp/demo/items.faiss &&
  -s $tmp/demo/reranker.safetensors && -s $tmp/demo/rerank-lists.svm ]] ||
  fail "model, table, index or reranker missing"

run add-item
grep -q "demo data in .* is up to date" "$tmp/log" || fail "second run remade the data"
grep -q "CTR model .* is up to date" "$tmp/log" || fail "second run retrained the CTR model"
grep -q "ANN index .* is up to date" "$tmp/log" || fail "second run rebuilt the index"
grep -q "reranker .* is up to date" "$tmp/log" || fail "second run retrained the reranker"

# An index whose ids are not the store's item numbers (one built from other vectors) is
# refused at load, naming the cause, rather than served with other items.
/usr/bin/python3 - "$tmp" <<'PY' || fail "foreign index setup"
import json, sys, numpy as np
tmp = sys.argv[1]
x = np.random.default_rng(1).standard_normal((5000, 384)).astype(np.float32)
rows = np.empty((5000, 385), np.float32)
rows[:, 0] = np.array([384], np.int32).view(np.float32)[0]
rows[:, 1:] = x
rows.tofile(tmp + "/other.fvecs")
conf = json.load(open(tmp + "/demo/funneld.json"))
conf["recall"]["ann"]["index"] = tmp + "/other.faiss"
json.dump(conf, open(tmp + "/demo/other.json", "w"))
PY
"$build/src/tools/funnel" index build --vectors "$tmp/other.fvecs" --factory Flat \
  --out "$tmp/other.faiss" >/dev/null || fail "foreign index build"
rc=0
"$build/src/server/funneld" --config "$tmp/demo/other.json" --check 2>"$tmp/check.err" || rc=$?
((rc == 1)) && grep -q "built from another store" "$tmp/check.err" ||
  fail "a foreign index was not refused (exit $rc): $(cat "$tmp/check.err")"
echo "ok"
