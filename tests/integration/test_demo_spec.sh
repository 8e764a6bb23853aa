#!/usr/bin/env bash
# configs/features/movielens.json is the spec funnel demo writes for
# MovieLens-100k: the same bytes, hence the same hash that models record.
# When the conversion changes on purpose, regenerate the config with
#   funnel demo --data ML100K_DIR --out DIR && cp DIR/features.json configs/features/movielens.json
#   test_demo_spec.sh FUNNEL_BIN ML100K_DIR CONFIG
set -euo pipefail
funnel=${1:?usage: test_demo_spec.sh FUNNEL_BIN ML100K_DIR CONFIG}
data=${2:?}
config=${3:?}
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
"$funnel" demo --data "$data" --out "$tmp/out" >/dev/null || fail "funnel demo failed"
diff -u "$config" "$tmp/out/features.json" || fail "the committed spec differs from funnel demo's"
sha() { "$funnel" features --spec "$1" --describe --json | grep -o '"sha256": "[0-9a-f]*"'; }
a=$(sha "$config") || fail "the committed spec does not load"
b=$(sha "$tmp/out/features.json")
[[ -n $a && $a == "$b" ]] || fail "spec hashes differ: $a vs $b"
echo "ok: $a"
