#!/usr/bin/env bash
# funnel train / funnel eval from the command line: FFM, FM and DeepFM trained on the
# MovieLens-100k demo data (funnel demo) through its feature spec, evaluated
# on the held-out ratings (JSON report, predictions file, AUC > 0.75, the
# model kept is the one whose validation loss was reported); libffm input on
# the Criteo sample; the usage errors; a model refused with another spec or
# when damaged. Exits 77 (skipped) without the public data sets.
#   test_train_cli.sh FUNNEL_BIN DATA_DIR
set -euo pipefail
funnel=${1:?usage: test_train_cli.sh FUNNEL_BIN DATA_DIR}
data=${2:?usage: test_train_cli.sh FUNNEL_BIN DATA_DIR}
if [[ ! -f $data/ml-100k/ml-100k.inter ]]; then
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

# json_get KEY: the value of the top-level KEY of the JSON object in $tmp/stdout (null: "null").
json_get() {
  /usr/bin/python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))[sys.argv[2]]
print("null" if v is None else v)' "$tmp/stdout" "$1"
}

# A comparison of floating-point numbers through awk: check "A > B".
check() {
  awk "BEGIN { exit !($1) }" || fail "$2"
}

expect 0 "" "$funnel" demo --data "$data/ml-100k" --out "$tmp/demo"
spec=$tmp/demo/features.json
train=$tmp/demo/train.tfrecord
test=$tmp/demo/test.tfrecord

# ---- usage errors ----
expect 0 "" "$funnel" train --help
grep -qF -- "--model fm|ffm|deepfm" "$tmp/stdout" || fail "train --help lacks --model"
expect 0 "" "$funnel" eval --help
grep -qF -- "--predictions" "$tmp/stdout" || fail "eval --help lacks --predictions"
expect 2 "give --spec SPEC.json (TFRecord input) or --format libffm" "$funnel" train --model ffm \
  --train "$train" --out "$tmp/x"
expect 2 "--model fm|ffm|deepfm is required" "$funnel" train --spec "$spec" --train "$train" \
  --out "$tmp/x"
expect 2 "--model is fm, ffm or deepfm, not 'svm'" "$funnel" train --model svm --spec "$spec" \
  --train "$train" --out "$tmp/x"
expect 2 "--train and --out are required" "$funnel" train --model ffm --spec "$spec" \
  --train "$train"
expect 2 "give --spec or --format, not both" "$funnel" train --model ffm --spec "$spec" \
  --format libffm --train "$train" --out "$tmp/x"
expect 2 "--format knows only libffm, not 'csv'" "$funnel" train --model ffm --format csv \
  --train "$train" --out "$tmp/x"
expect 2 "--k must be from 1 to 1024" "$funnel" train --model ffm --spec "$spec" --k 0 \
  --train "$train" --out "$tmp/x"
expect 2 "--lr expects a number" "$funnel" train --model ffm --spec "$spec" --lr fast \
  --train "$train" --out "$tmp/x"
expect 2 "unexpected argument 'extra'" "$funnel" train --model ffm --spec "$spec" \
  --train "$train" --out "$tmp/x" extra
expect 2 "--label-range expects LO,HI with LO < HI (e.g. 2.5,4.5), not '4,3'" "$funnel" train \
  --model ffm --spec "$spec" --label rating --label-range 4,3 --train "$train" --out "$tmp/x"
expect 2 "--label-range expects LO,HI" "$funnel" train --model ffm --spec "$spec" \
  --label-range 2.5 --train "$train" --out "$tmp/x"
expect 2 "--label-range goes with --spec (TFRecord input)" "$funnel" train --model ffm \
  --format libffm --label-range 0,1 --train "$train" --out "$tmp/x"
expect 2 "--valid-metric is logloss or auc, not 'ndcg'" "$funnel" train --model ffm \
  --spec "$spec" --valid-metric ndcg --train "$train" --out "$tmp/x"
expect 2 "--sparse-optimizer is adam or adagrad, not 'sgd'" "$funnel" train --model deepfm \
  --spec "$spec" --sparse-optimizer sgd --train "$train" --out "$tmp/x"
expect 2 "--sparse-optimizer and --sparse-lr are DeepFM's" "$funnel" train --model fm \
  --spec "$spec" --sparse-lr 0.1 --train "$train" --out "$tmp/x"
expect 2 "--sparse-lr expects a number" "$funnel" train --model deepfm --spec "$spec" \
  --sparse-lr -1 --train "$train" --out "$tmp/x"
expect 2 "--model and --data are required" "$funnel" eval --spec "$spec" --data "$test"
# Each command refuses the other's options rather than ignore them.
expect 2 "--epochs is funnel train's option, not eval's" "$funnel" eval --model "$tmp/x" \
  --spec "$spec" --data "$test" --epochs 3
expect 2 "--out is funnel train's option, not eval's" "$funnel" eval --model "$tmp/x" \
  --spec "$spec" --data "$test" --out "$tmp/y"
expect 2 "--predictions is funnel eval's option, not train's" "$funnel" train --model ffm \
  --spec "$spec" --train "$train" --out "$tmp/x" --predictions "$tmp/p"
expect 1 "$tmp/missing.tfrecord" "$funnel" train --model ffm --spec "$spec" \
  --train "$tmp/missing.tfrecord" --out "$tmp/x"
[[ ! -e $tmp/x ]] || fail "a failed train wrote a model"

# ---- FFM, FM and DeepFM on MovieLens-100k ----
n_test=$("$funnel" tfrecord stat "$test" --decode --json | sed 's/.*"records": \([0-9]*\).*/\1/')
for kind in ffm fm deepfm; do
  model=$tmp/$kind.safetensors
  expect 0 "" "$funnel" train --model $kind --spec "$spec" --train "$train" --valid "$test" \
    --out "$model" --json --threads 2
  [[ $(json_get model) == "$kind" ]] || fail "$kind train JSON: $(cat "$tmp/stdout")"
  [[ $(json_get train_examples) == $((100000 - n_test)) ]] || fail "train_examples"
  [[ $(json_get valid_examples) == "$n_test" ]] || fail "valid_examples"
  runs=$(json_get epochs_run) best=$(json_get best_epoch) valid_ll=$(json_get valid_logloss)
  ((best >= 1 && best <= runs && runs <= 10)) || fail "$kind epochs: best $best of $runs"
  # Every epoch's figures are listed, in order; the kept one's are the report's, the last
  # one's training loss is the report's.
  /usr/bin/python3 - "$tmp/stdout" <<'PY' || fail "$kind train JSON epochs: $(cat "$tmp/stdout")"
import json, sys
r = json.load(open(sys.argv[1]))
e = r["epochs"]
assert [x["epoch"] for x in e] == list(range(1, r["epochs_run"] + 1)), e
kept = e[r["best_epoch"] - 1]
assert kept["valid_logloss"] == r["valid_logloss"] and kept["valid_auc"] == r["valid_auc"], kept
assert min(x["valid_logloss"] for x in e) == r["valid_logloss"], e
assert abs(e[-1]["train_loss"] - r["train_loss"]) < 1e-8 * r["train_loss"], e[-1]
assert all(0.5 < x["valid_auc"] < 1 and 0 < x["train_loss"] < 1 for x in e), e
PY
  check "$(json_get examples_per_s) > 0" "$kind examples_per_s"
  check "$(json_get train_loss) < 0.6" "$kind train loss $(json_get train_loss)"

  expect 0 "" "$funnel" eval --model "$model" --spec "$spec" --data "$test" --json \
    --predictions "$tmp/$kind.txt"
  auc=$(json_get auc) ll=$(json_get logloss)
  [[ $(json_get n) == "$n_test" ]] || fail "$kind eval n: $(cat "$tmp/stdout")"
  echo "$kind: AUC $auc, log loss $ll (best epoch $best of $runs)"
  check "$auc > 0.75" "$kind AUC $auc"
  check "$ll < 0.6" "$kind log loss $ll"
  # The model written is the best epoch's: eval finds the validation loss train reported.
  check "($ll - $valid_ll)^2 < 1e-10" "$kind: eval log loss $ll, train reported $valid_ll"
  [[ $(wc -l <"$tmp/$kind.txt") == "$n_test" ]] || fail "$kind predictions: line count"
  awk '!($1 > 0 && $1 < 1) { exit 1 }' "$tmp/$kind.txt" || fail "$kind predictions outside (0, 1)"
done

# Graded labels (the rating's grade, not whether it reaches 4), epochs judged by the validation
# AUC: evaluated on the binary label like the models above, and with the same rule, where the
# grades above 0.5 are exactly the ratings of 4 and 5, the same AUC.
expect 0 "" "$funnel" train --model fm --spec "$spec" --train "$train" --valid "$test" \
  --label rating --label-range 2.5,4.5 --valid-metric auc --out "$tmp/graded.safetensors" \
  --json --threads 1 --epochs 6
valid_auc=$(json_get valid_auc)
expect 0 "" "$funnel" eval --model "$tmp/graded.safetensors" --spec "$spec" --data "$test" --json
auc=$(json_get auc)
echo "fm, graded labels: AUC $auc (the kept epoch's validation AUC $valid_auc)"
check "($auc - $valid_auc)^2 < 1e-18" "graded: eval AUC $auc, train reported $valid_auc"
check "$auc > 0.78" "graded fm AUC $auc"
expect 0 "" "$funnel" eval --model "$tmp/graded.safetensors" --spec "$spec" --data "$test" --json \
  --label rating --label-range 2.5,4.5
check "($(json_get auc) - $auc)^2 < 1e-18" "graded eval AUC $(json_get auc), binary $auc"
expect 1 "label feature 'rating' is missing" "$funnel" train --model fm --spec "$spec" \
  --train "$tmp/demo/items.tfrecord" --label rating --label-range 2.5,4.5 --out "$tmp/x"

# Another spec (one hash bucket count changed) is refused; so are a damaged and a missing model.
sed 's/"hash_bucket_size": 10000/"hash_bucket_size": 9999/' "$spec" >"$tmp/other.json"
expect 1 "trained on feature spec" "$funnel" eval --model "$tmp/ffm.safetensors" \
  --spec "$tmp/other.json" --data "$test"
size=$(wc -c <"$tmp/ffm.safetensors")
head -c $((size - 100)) "$tmp/ffm.safetensors" >"$tmp/cut.safetensors"
expect 1 "$tmp/cut.safetensors: tensor 'embedding'" "$funnel" eval \
  --model "$tmp/cut.safetensors" --spec "$spec" --data "$test"
expect 1 "$tmp/none.safetensors" "$funnel" eval --model "$tmp/none.safetensors" --spec "$spec" \
  --data "$test"

# ---- libffm input: the Criteo sample ----
if [[ -f $data/criteo-ffm/small_train.txt ]]; then
  for kind in ffm fm deepfm; do
    # DeepFM on 200 rows: small batches for enough steps, dropout against overfitting.
    opts=()
    [[ $kind == deepfm ]] && opts=(--batch 16 --dropout 0.5)
    expect 0 "" "$funnel" train --model $kind --format libffm \
      --train "$data/criteo-ffm/small_train.txt" --valid "$data/criteo-ffm/small_test.txt" \
      --out "$tmp/c-$kind.safetensors" --epochs 20 --threads 1 --json "${opts[@]}"
    expect 0 "" "$funnel" eval --model "$tmp/c-$kind.safetensors" --format libffm \
      --data "$data/criteo-ffm/small_test.txt" --json
    [[ $(json_get n) == 200 ]] || fail "criteo eval n: $(cat "$tmp/stdout")"
    echo "criteo-ffm $kind: AUC $(json_get auc), log loss $(json_get logloss)"
    min=0.6
    [[ $kind == deepfm ]] && min=0.57
    check "$(json_get auc) > $min" "criteo $kind AUC $(json_get auc)"
  done
  # Without --valid every epoch is listed all the same, its validation figures null.
  expect 0 "" "$funnel" train --model fm --format libffm --train "$data/criteo-ffm/small_train.txt" \
    --out "$tmp/c-alone.safetensors" --epochs 3 --threads 1 --json
  /usr/bin/python3 - "$tmp/stdout" <<'PY' || fail "train JSON epochs without --valid: $(cat "$tmp/stdout")"
import json, sys
r = json.load(open(sys.argv[1]))
e = r["epochs"]
assert r["epochs_run"] == 3 and [x["epoch"] for x in e] == [1, 2, 3], e
assert all(x["valid_logloss"] is None and x["valid_auc"] is None for x in e), e
assert all(0 < x["train_loss"] < 1 for x in e), e
PY
fi
echo "ok"
