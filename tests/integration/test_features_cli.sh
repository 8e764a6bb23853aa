#!/usr/bin/env bash
# funnel features and funnel tfrecord from the command line: help, usage errors,
# spec errors and data errors each give the right exit code and a message that
# names the problem; good input gives libffm lines.
#   test_features_cli.sh FUNNEL_BIN
set -euo pipefail
funnel=${1:?usage: test_features_cli.sh FUNNEL_BIN}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# expect RC PATTERN CMD...: runs CMD, checks its exit code and that stderr matches PATTERN.
expect() {
  local rc=$1 pattern=$2
  shift 2
  set +e
  "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  set -e
  [[ $got == "$rc" ]] || fail "$* exited $got, expected $rc: $(cat "$tmp/err")"
  [[ -z $pattern ]] || grep -qF -- "$pattern" "$tmp/err" || fail "$*: stderr lacks '$pattern': $(cat "$tmp/err")"
}

expect 0 "" "$funnel" --help
grep -q "tfrecord" "$tmp/out" || fail "funnel --help lists no commands"
expect 2 "unknown command 'nope'" "$funnel" nope
expect 0 "" "$funnel" features --help
grep -q -- "--spec" "$tmp/out" || fail "features --help lacks --spec"
expect 2 "--spec is required" "$funnel" features --input x
expect 2 "unknown subcommand 'dog'" "$funnel" tfrecord dog x
expect 2 "--limit expects a non-negative whole number" "$funnel" tfrecord cat x --limit -3

cat >"$tmp/examples.jsonl" <<'JSON'
{"features": {"feature": {"label": {"int64List": {"value": ["1"]}}, "age": {"floatList": {"value": [31.0]}}, "genres": {"bytesList": {"value": ["Q29tZWR5", "RHJhbWE="]}}}}}
{"features": {"feature": {"label": {"int64List": {"value": ["0"]}}, "genres": {"bytesList": {"value": ["V2VzdGVybg=="]}}}}}
JSON
expect 0 "wrote 2 records" "$funnel" tfrecord from-jsonl "$tmp/examples.jsonl" "$tmp/ex.tfrecord"

cat >"$tmp/spec.json" <<'JSON'
{"columns": [
  {"name": "age", "type": "numeric", "source": "user", "key": "age", "default": 30},
  {"name": "age_b", "type": "bucketized", "source": "user", "key": "age", "boundaries": [18, 31, 50]},
  {"name": "genre", "type": "categorical_vocabulary", "source": "item", "key": "genres",
   "vocabulary": ["Comedy", "Drama"], "num_oov_buckets": 0}
]}
JSON
expect 0 "" "$funnel" features --spec "$tmp/spec.json" --input "$tmp/ex.tfrecord"
want=$'1 0:0:31 1:3:1 2:5:0.5 2:6:0.5\n0 0:0:30'
[[ "$(cat "$tmp/out")" == "$want" ]] || fail "libffm output: $(cat "$tmp/out")"
expect 0 "" "$funnel" features --spec "$tmp/spec.json" --describe --json
grep -q '"sha256": "[0-9a-f]\{64\}"' "$tmp/out" || fail "describe --json lacks the hash"

sed 's/\[18, 31, 50\]/[18, 50, 31]/' "$tmp/spec.json" >"$tmp/bad.json"
expect 1 "column 'age_b' (#1): boundaries must be strictly increasing (50 then 31)" \
  "$funnel" features --spec "$tmp/bad.json" --input "$tmp/ex.tfrecord"
expect 1 "record 0 at byte offset 0: label feature 'rating' is missing" \
  "$funnel" features --spec "$tmp/spec.json" --input "$tmp/ex.tfrecord" --label rating

# A bytes value where the spec expects a number names the column and the key.
echo '{"features": {"feature": {"label": {"floatList": {"value": [1]}}, "age": {"bytesList": {"value": ["MzE="]}}}}}' |
  "$funnel" tfrecord from-jsonl - "$tmp/wrong.tfrecord" 2>/dev/null
expect 1 "column 'age': feature 'age' holds a bytes_list where a float_list or int64_list is expected" \
  "$funnel" features --spec "$tmp/spec.json" --input "$tmp/wrong.tfrecord"
expect 1 "cannot open $tmp/missing.tfrecord" \
  "$funnel" features --spec "$tmp/spec.json" --input "$tmp/missing.tfrecord"
echo "features CLI: ok"
