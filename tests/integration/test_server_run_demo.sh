#!/usr/bin/env bash
# scripts/run-demo, what `make run` does, end to end: it prepares the demo data
# (MovieLens-100k when the path given holds it, else synthetic data), loads the
# feature store, trains the CTR model, builds the co-occurrence table and the
# index, trains the reranker on the pipeline's own lists, then runs funneld in
# the foreground and answers a reranked Rank call; a second run finds
# everything up to date. The server is always stopped.
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

# run: starts run-demo (which execs funneld, keeping the pid) and waits for the port.
run() {
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

run
grep -q "demo data in .* is up to date" "$tmp/log" || fail "second run remade the data"
grep -q "CTR model .* is up to date" "$tmp/log" || fail "second run retrained the CTR model"
grep -q "ANN index .* is up to date" "$tmp/log" || fail "second run rebuilt the index"
grep -q "reranker .* is up to date" "$tmp/log" || fail "second run retrained the reranker"
echo "ok"
