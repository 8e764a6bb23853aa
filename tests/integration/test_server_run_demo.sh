#!/usr/bin/env bash
# scripts/run-demo, what `make run` does, end to end: it prepares the demo data
# (MovieLens-100k when the path given holds it, else synthetic data), tries to
# load the feature store, then runs funneld in the foreground; a second run
# finds the data up to date. The server is always stopped.
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
  for _ in $(seq 600); do
    port=$(sed -n 's|^funneld listening on http://127\.0\.0\.1:\([0-9][0-9]*\)$|\1|p' "$tmp/out")
    [[ -z $port ]] || break
    kill -0 "$pid" 2>/dev/null || fail "run-demo exited before funneld started"
    sleep 0.1
  done
  [[ -n $port ]] || fail "funneld printed no port within 60 s"
  [[ $(curl -s --max-time 5 "http://127.0.0.1:$port/healthz") == ok ]] || fail "/healthz"
  grep -q "curl http://127.0.0.1:PORT/healthz" "$tmp/log" || fail "run-demo does not say how to check"
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
# The store load either worked or said clearly that it did not.
grep -q "loading users and items into the feature store" "$tmp/log" || fail "no store step"
if grep -q "WARNING: 'funnel store load' failed" "$tmp/log"; then
  echo "note: funnel store load failed; run-demo said so and went on"
fi

run
grep -q "is up to date" "$tmp/log" || fail "second run remade the data"
echo "ok"
