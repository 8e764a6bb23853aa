#!/usr/bin/env bash
# funneld over real HTTP/1.1: started on a free port (--http-port 0, the port
# read from its output), /healthz and /readyz answer 200, an unknown path 404,
# a wrong method 405 with Allow; SIGTERM and SIGINT stop it with exit 0 and
# close its socket; bad flags and a taken port fail with a message.
#   test_server_health.sh FUNNELD_BIN
set -euo pipefail
funneld=${1:?usage: test_server_health.sh FUNNELD_BIN}
tmp=$(mktemp -d)
pid=""
# Whatever happens, no server outlives the test.
cleanup() {
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  [[ ! -f $tmp/err ]] || sed 's/^/funneld: /' "$tmp/err" >&2
  exit 1
}

# start ARGS...: starts funneld in the background and sets pid and port.
start() {
  # --grpc-port 0 too: a fixed gRPC port could be taken by another test running alongside.
  # The files exist before the background job opens them: sed reading a missing file
  # would stop the test under set -e.
  : >"$tmp/out"
  : >"$tmp/err"
  "$funneld" --http-port 0 --grpc-port 0 "$@" >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  port=""
  for _ in $(seq 100); do
    port=$(sed -n 's|^funneld listening on http://127\.0\.0\.1:\([0-9][0-9]*\)$|\1|p' "$tmp/out")
    [[ -z $port ]] || return 0
    kill -0 "$pid" 2>/dev/null || fail "funneld exited at startup"
    sleep 0.1
  done
  fail "funneld printed no port within 10 s"
}

# stop SIGNAL: sends it and checks a clean exit 0 and a closed port.
stop() {
  kill "-$1" "$pid"
  local rc=0
  wait "$pid" || rc=$?
  pid=""
  ((rc == 0)) || fail "funneld exited $rc after SIG$1"
  grep -q "SIG$1 received" "$tmp/err" || fail "no shutdown log line after SIG$1"
  ! curl -s --max-time 2 "http://127.0.0.1:$port/healthz" >/dev/null ||
    fail "port $port still answers after SIG$1"
}

# check METHOD PATH CODE [BODY]: one request, its status and (given BODY) its exact body.
check() {
  local method=$1 path=$2 code=$3 body=${4-} got
  got=$(curl -s --max-time 5 -X "$method" -D "$tmp/headers" -o "$tmp/body" -w '%{http_code}' \
    "http://127.0.0.1:$port$path") || fail "curl $method $path failed"
  [[ $got == "$code" ]] || fail "$method $path: status $got, expected $code"
  # The body exactly, with its newline ("ok\n").
  [[ -z $body ]] || printf '%s\n' "$body" | cmp -s - "$tmp/body" ||
    fail "$method $path: body '$(cat "$tmp/body")', expected '$body' and a newline"
}

"$funneld" --help | grep -q -- "--http-port" || fail "--help lacks --http-port"
"$funneld" --version | grep -q "^funneld [0-9]" || fail "--version"
set +e
"$funneld" --http-port 70000 2>"$tmp/usage"
rc=$?
set -e
((rc == 2)) || fail "--http-port 70000 exited $rc, expected 2"
grep -q -- "--http-port expects a whole number from 0 to 65535" "$tmp/usage" || fail "usage message"

start
grep -q "listening on 127.0.0.1:$port" "$tmp/err" || fail "no startup log line with the address"
check GET /healthz 200 ok
check GET /readyz 200 ready
check GET /healthz?probe=1 200 ok
check GET /nope 404
check DELETE /nope 404
check POST /healthz 405
grep -qi "^Allow: GET, HEAD" "$tmp/headers" || fail "405 without an Allow header"
check PUT /readyz 405
code=$(curl -s --max-time 5 -I -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")
[[ $code == 200 ]] || fail "HEAD /healthz: $code"

# A second server on the same port fails, naming the problem.
set +e
"$funneld" --http-port "$port" --grpc-port 0 2>"$tmp/busy"
rc=$?
set -e
((rc == 1)) || fail "a second funneld on port $port exited $rc, expected 1"
grep -q "cannot listen for HTTP on 127.0.0.1 port $port" "$tmp/busy" || fail "$(cat "$tmp/busy")"

stop TERM
start --host 127.0.0.1
check GET /healthz 200 ok
stop INT
echo "ok"
