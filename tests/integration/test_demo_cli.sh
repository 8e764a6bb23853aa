#!/usr/bin/env bash
# funnel demo from the command line: MovieLens-100k converted end to end (the
# summary and the files agree on the counts, the output is reproducible and
# usable with its spec), a corrupted copy fails naming file and line, and
# --synthetic is labelled as such. Exits 77 (skipped) without the data.
#   test_demo_cli.sh FUNNEL_BIN ML100K_DIR
set -euo pipefail
funnel=${1:?usage: test_demo_cli.sh FUNNEL_BIN ML100K_DIR}
data=${2:?usage: test_demo_cli.sh FUNNEL_BIN ML100K_DIR}
if [[ ! -f $data/ml-100k.inter ]]; then
  echo "SKIP: MovieLens-100k not found in $data (configure with -DFUNNEL_DATA_DIR=...)"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# expect RC PATTERN CMD...: runs CMD, checks its exit code and that stderr matches PATTERN.
expect() {
  local rc=$1 pattern=$2
  shift 2
  set +e
  "$@" >"$tmp/stdout" 2>"$tmp/stderr"
  local got=$?
  set -e
  [[ $got == "$rc" ]] || fail "$* exited $got, expected $rc: $(cat "$tmp/stderr")"
  [[ -z $pattern ]] || grep -qF -- "$pattern" "$tmp/stderr" ||
    fail "$*: stderr lacks '$pattern': $(cat "$tmp/stderr")"
}

expect 0 "" "$funnel" demo --help
grep -q -- "--synthetic" "$tmp/stdout" || fail "demo --help lacks --synthetic"
expect 2 "--out is required" "$funnel" demo --data "$data"
expect 2 "--seed applies to synthetic data only" "$funnel" demo --data "$data" --seed 3 --out x

expect 0 "" "$funnel" demo --data "$data" --out "$tmp/a" --json
json=$(cat "$tmp/stdout")
for want in '"users": 943' '"items": 1682' '"interactions": 100000' '"synthetic": false'; do
  [[ $json == *"$want"* ]] || fail "summary lacks $want: $json"
done
records() { "$funnel" tfrecord stat "$1" --decode --json | sed 's/.*"records": \([0-9]*\).*/\1/'; }
[[ $(records "$tmp/a/users.tfrecord") == 943 ]] || fail "users.tfrecord count"
[[ $(records "$tmp/a/items.tfrecord") == 1682 ]] || fail "items.tfrecord count"
[[ $(records "$tmp/a/interactions.tfrecord") == 100000 ]] || fail "interactions.tfrecord count"
train=$(records "$tmp/a/train.tfrecord")
test=$(records "$tmp/a/test.tfrecord")
((train + test == 100000)) || fail "train $train + test $test != 100000"
[[ $json == *"\"train\": $train,"* && $json == *"\"test\": $test,"* ]] ||
  fail "summary and files disagree: $json vs train $train test $test"
# fit + valid is train again, record for record: the same bytes, sorted, and about a tenth
# held out (each user's last tenth by time).
fit=$(records "$tmp/a/fit.tfrecord") valid=$(records "$tmp/a/valid.tfrecord")
((fit + valid == train && valid * 10 > train * 9 / 10 && valid * 10 < train * 11 / 10)) ||
  fail "fit $fit + valid $valid against train $train"
[[ $json == *"\"fit\": $fit,"* && $json == *"\"valid\": $valid,"* ]] || fail "summary: $json"
"$funnel" tfrecord cat "$tmp/a/train.tfrecord" 2>/dev/null | sort >"$tmp/train.sorted" &&
  cat <("$funnel" tfrecord cat "$tmp/a/fit.tfrecord") \
    <("$funnel" tfrecord cat "$tmp/a/valid.tfrecord") | sort | cmp -s - "$tmp/train.sorted" ||
  fail "fit + valid are not the rows of train"
grep -q "MovieLens-100k" "$tmp/a/SOURCE.txt" || fail "SOURCE.txt does not name the data"
! grep -q "SYNTHETIC" "$tmp/a/SOURCE.txt" || fail "real data labelled synthetic"

# The same input gives the same bytes.
expect 0 "" "$funnel" demo --data "$data" --out "$tmp/b"
for f in users items interactions train test fit valid; do
  cmp -s "$tmp/a/$f.tfrecord" "$tmp/b/$f.tfrecord" || fail "$f.tfrecord differs between runs"
done

# The spec it writes turns its examples into libffm lines, 11 fields each.
expect 0 "" "$funnel" features --spec "$tmp/a/features.json" --input "$tmp/a/train.tfrecord" \
  --limit 100
[[ $(wc -l <"$tmp/stdout") == 100 ]] || fail "features printed $(wc -l <"$tmp/stdout") lines"
awk '{ for (i = 2; i <= NF; i++) { split($i, p, ":"); if (p[1] > 10) exit 1 } }' "$tmp/stdout" ||
  fail "a libffm field beyond the spec's 11 columns"

# A damaged copy of the data: the error names the file and the line.
mkdir "$tmp/bad"
cp "$data"/ml-100k.user "$data"/ml-100k.item "$tmp/bad/"
sed '5000s/\t[0-9]*$/\tsoon/' "$data/ml-100k.inter" >"$tmp/bad/ml-100k.inter"
expect 1 "ml-100k.inter: line 5000: timestamp 'soon' is not a whole number" \
  "$funnel" demo --data "$tmp/bad" --out "$tmp/c"
[[ ! -e $tmp/c/SOURCE.txt ]] || fail "a failed run left a complete-looking folder"

# Synthetic data says so, loudly.
expect 0 "SYNTHETIC DATA" "$funnel" demo --synthetic --seed 3 --out "$tmp/syn"
head -1 "$tmp/syn/SOURCE.txt" | grep -q "^SYNTHETIC DATA" || fail "SOURCE.txt of synthetic data"
echo "ok"
