#!/usr/bin/env bash
# funnel store from the command line: help and usage errors exit 2 with a
# message naming the problem; a load prints its counts; get and dump print the
# records as JSON lines; delete removes records (an item keeping its number);
# a reload with a lower version changes nothing; a
# record without its id and a missing store fail naming them and leave the
# store as it was. With MovieLens-100k present, its 943 users are loaded and
# read back.
#   test_store_cli.sh FUNNEL_BIN ML100K_DIR
set -euo pipefail
funnel=${1:?usage: test_store_cli.sh FUNNEL_BIN ML100K_DIR}
data=${2:?usage: test_store_cli.sh FUNNEL_BIN ML100K_DIR}
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

db=$tmp/db

# ---- help and usage ----
expect 0 "" "$funnel" store --help
for opt in --store --family --input --id-key --version --version-key --vector-key --ids; do
  grep -q -- "$opt" "$tmp/stdout" || fail "store --help lacks $opt"
done
expect 2 "" "$funnel" store
expect 2 "unknown subcommand 'put'" "$funnel" store put --store "$db" --family users
expect 2 "--store is required" "$funnel" store get --family users 1
expect 2 "--family is required" "$funnel" store dump --store "$db"
expect 2 "--family must be users or items, not 'movies'" "$funnel" store dump --store "$db" \
  --family movies
expect 2 "load needs --input FILE" "$funnel" store load --store "$db" --family users --id-key k
expect 2 "load needs --id-key KEY" "$funnel" store load --store "$db" --family users --input x
expect 2 "--version and --version-key exclude each other" "$funnel" store load --store "$db" \
  --family users --input x --id-key k --version 3 --version-key v
expect 2 "--version expects a non-negative whole number, got '-1'" "$funnel" store load \
  --store "$db" --family users --input x --id-key k --version -1
expect 2 "get takes one ID" "$funnel" store get --store "$db" --family users
expect 2 "apply to load only" "$funnel" store dump --store "$db" --family users --id-key k
expect 2 "Run 'funnel store --help'" "$funnel" store get --store "$db" --family users --nope 1

# ---- a missing store: get and dump say so and create nothing ----
expect 1 "open: store $tmp/nostore: no store there" "$funnel" store get --store "$tmp/nostore" \
  --family users 1
expect 1 "no store there" "$funnel" store dump --store "$tmp/nostore" --family items
[[ ! -e $tmp/nostore ]] || fail "get created the store folder"
mkdir "$tmp/notastore"
echo hello >"$tmp/notastore/file.txt"
expect 1 "not a store" "$funnel" store dump --store "$tmp/notastore" --family items

# ---- load, get, dump ----
# Ids: int64 1 (printed as "1"), bytes "u-two", int64 -7; "emb" becomes the vector.
cat >"$tmp/small.jsonl" <<'JSON'
{"features": {"feature": {"uid": {"int64List": {"value": ["1"]}}, "age": {"int64List": {"value": ["31"]}}, "emb": {"floatList": {"value": [0.5, 1.0, -0.25]}}}}}
{"features": {"feature": {"uid": {"bytesList": {"value": ["dS10d28="]}}, "age": {"int64List": {"value": ["45"]}}, "occupation": {"bytesList": {"value": ["ZG9jdG9y"]}}}}}
{"features": {"feature": {"uid": {"int64List": {"value": ["-7"]}}, "emb": {"floatList": {"value": [0.1]}}}}}
JSON
expect 0 "wrote 3 records" "$funnel" tfrecord from-jsonl "$tmp/small.jsonl" "$tmp/small.tfrecord"
expect 0 "loaded 3 into $db (family users), ignored 0" "$funnel" store load --store "$db" \
  --family users --input "$tmp/small.tfrecord" --id-key uid --vector-key emb --version 10 --json
[[ $(cat "$tmp/stdout") == '{"records": 3, "loaded": 3, "ignored_older": 0, "seconds": '* ]] ||
  fail "load --json: $(cat "$tmp/stdout")"

expect 0 "" "$funnel" store get --store "$db" --family users 1
want='{"id": "1", "version": 10, "features": {"feature": {"uid": {"int64List": {"value": ["1"]}}, "age": {"int64List": {"value": ["31"]}}}}, "vector": [0.5, 1.0, -0.25]}'
[[ $(cat "$tmp/stdout") == "$want" ]] || fail "get 1: $(cat "$tmp/stdout")"
expect 0 "" "$funnel" store get --store "$db" --family users u-two
want='{"id": "u-two", "version": 10, "features": {"feature": {"uid": {"bytesList": {"value": ["dS10d28="]}}, "age": {"int64List": {"value": ["45"]}}, "occupation": {"bytesList": {"value": ["ZG9jdG9y"]}}}}}'
[[ $(cat "$tmp/stdout") == "$want" ]] || fail "get u-two: $(cat "$tmp/stdout")"
expect 0 "" "$funnel" store get --store "$db" --family users -- -7
[[ $(cat "$tmp/stdout") == '{"id": "-7", "version": 10, '*'"vector": [0.1]}' ]] ||
  fail "get -7: $(cat "$tmp/stdout")"

expect 1 "family users, id \"404\": no record" "$funnel" store get --store "$db" --family users 404
[[ ! -s $tmp/stdout ]] || fail "get of a missing id printed something"
expect 1 "no record" "$funnel" store get --store "$db" --family items 1

expect 0 "" "$funnel" store dump --store "$db" --family users
cp "$tmp/stdout" "$tmp/dump1"
[[ $(wc -l <"$tmp/dump1") == 3 ]] || fail "dump printed $(wc -l <"$tmp/dump1") lines"
[[ $(cut -c1-16 "$tmp/dump1" | tr '\n' ' ') == '{"id": "-7", "ve {"id": "1", "ver {"id": "u-two",  ' ]] ||
  fail "dump order: $(cut -c1-16 "$tmp/dump1")"
expect 0 "" "$funnel" store dump --store "$db" --family items
[[ ! -s $tmp/stdout ]] || fail "dump of an empty family printed something"

# ---- the version rule: a lower version changes nothing, a higher one wins ----
sed 's/"31"/"32"/; s/"45"/"46"/' "$tmp/small.jsonl" >"$tmp/small2.jsonl"
expect 0 "" "$funnel" tfrecord from-jsonl "$tmp/small2.jsonl" "$tmp/small2.tfrecord"
expect 0 "loaded 0 into $db (family users), ignored 3 older" "$funnel" store load \
  --store "$db" --family users --input "$tmp/small2.tfrecord" --id-key uid --vector-key emb \
  --version 9
expect 0 "" "$funnel" store dump --store "$db" --family users
cmp -s "$tmp/stdout" "$tmp/dump1" || fail "a lower version changed the store: $(cat "$tmp/stdout")"
# The default version is the time in ms, so a plain reload wins.
expect 0 "loaded 3" "$funnel" store load --store "$db" --family users \
  --input "$tmp/small2.tfrecord" --id-key uid --vector-key emb
expect 0 "" "$funnel" store get --store "$db" --family users 1
grep -qF '"age": {"int64List": {"value": ["32"]}}' "$tmp/stdout" || fail "reload: $(cat "$tmp/stdout")"
version=$(sed 's/.*"version": \([0-9]*\),.*/\1/' "$tmp/stdout")
((version > 1600000000000)) || fail "default version $version is not the time in ms"
expect 0 "" "$funnel" store dump --store "$db" --family users
cp "$tmp/stdout" "$tmp/dump2"

# --version-key takes each record's version from a feature.
cat >"$tmp/versioned.jsonl" <<'JSON'
{"features": {"feature": {"id": {"bytesList": {"value": ["YQ=="]}}, "v": {"int64List": {"value": ["5"]}}}}}
{"features": {"feature": {"id": {"bytesList": {"value": ["YQ=="]}}, "v": {"int64List": {"value": ["4"]}}}}}
JSON
expect 0 "" "$funnel" tfrecord from-jsonl "$tmp/versioned.jsonl" "$tmp/versioned.tfrecord"
expect 0 "loaded 1 into $db (family items), ignored 1 older" "$funnel" store load --store "$db" \
  --family items --input "$tmp/versioned.tfrecord" --id-key id --version-key v
expect 0 "" "$funnel" store get --store "$db" --family items a
# Items carry their number: the first item of the store is number 0.
[[ $(cat "$tmp/stdout") == '{"id": "a", "number": 0, "version": 5, '* ]] ||
  fail "version-key: $(cat "$tmp/stdout")"
expect 0 "is up to date (format 2; item numbers given: 1)" "$funnel" store upgrade --store "$db"
expect 2 "upgrade takes --store DIR only" "$funnel" store upgrade --store "$db" --family items

# ---- delete: by arguments or --ids FILE; absent ids are counted; an item keeps its number ----
expect 2 "delete takes the IDs as arguments or --ids FILE" "$funnel" store delete --store "$db" \
  --family users
echo 1 >"$tmp/ids.txt"
expect 2 "delete takes the IDs as arguments or --ids FILE" "$funnel" store delete --store "$db" \
  --family users --ids "$tmp/ids.txt" 1
expect 2 "--ids applies to delete only" "$funnel" store get --store "$db" --family users \
  --ids "$tmp/ids.txt" 1
expect 2 "--json applies to load and delete only" "$funnel" store dump --store "$db" \
  --family users --json
expect 1 "cannot open $tmp/none.txt" "$funnel" store delete --store "$db" --family users \
  --ids "$tmp/none.txt"
expect 1 "no store there" "$funnel" store delete --store "$tmp/nostore" --family users 1
printf '\n\n' >"$tmp/blank.txt"
expect 2 "--ids $tmp/blank.txt holds no ids" "$funnel" store delete --store "$db" --family users \
  --ids "$tmp/blank.txt"
[[ ! -e $tmp/nostore ]] || fail "delete created the store folder"
cp -r "$db" "$tmp/db-before-delete"
expect 0 "deleted 1 users records from $db (1 of the 2 ids had none)" "$funnel" store delete \
  --store "$db" --family users 1 nope --json
[[ $(cat "$tmp/stdout") == '{"ids": 2, "deleted": 1, "absent": 1}' ]] ||
  fail "delete --json: $(cat "$tmp/stdout")"
expect 1 "no record" "$funnel" store get --store "$db" --family users 1
expect 0 "" "$funnel" store get --store "$db" --family users u-two
# --ids: one per line, blank lines and CR line ends allowed, - is stdin
printf '\r\n-7\r\n\n' >"$tmp/ids.txt"
expect 0 "deleted 1 users records" "$funnel" store delete --store "$db" --family users \
  --ids "$tmp/ids.txt"
expect 1 "no record" "$funnel" store get --store "$db" --family users -- -7
set +e
echo u-two | "$funnel" store delete --store "$db" --family users --ids - --json >"$tmp/stdout" 2>"$tmp/stderr"
rc=$?
set -e
((rc == 0)) && [[ $(cat "$tmp/stdout") == '{"ids": 1, "deleted": 1, "absent": 0}' ]] ||
  fail "delete --ids -: exit $rc: $(cat "$tmp/stdout" "$tmp/stderr")"
expect 0 "" "$funnel" store dump --store "$db" --family users
[[ ! -s $tmp/stdout ]] || fail "users left after deleting all three: $(cat "$tmp/stdout")"
# An item deleted and loaded again gets its number back.
expect 0 "deleted 1 items records" "$funnel" store delete --store "$db" --family items a
expect 1 "no record" "$funnel" store get --store "$db" --family items a
expect 0 "loaded 1 into $db (family items)" "$funnel" store load --store "$db" \
  --family items --input "$tmp/versioned.tfrecord" --id-key id --version-key v
expect 0 "" "$funnel" store get --store "$db" --family items a
[[ $(cat "$tmp/stdout") == '{"id": "a", "number": 0, "version": 5, '* ]] ||
  fail "reloaded item: $(cat "$tmp/stdout")"
# The rest of this test goes on from the store as it was before the deletes.
rm -rf "$db"
mv "$tmp/db-before-delete" "$db"

# ---- bad records fail naming the record, and nothing is written ----
cat >"$tmp/noid.jsonl" <<'JSON'
{"features": {"feature": {"uid": {"int64List": {"value": ["1"]}}, "age": {"int64List": {"value": ["99"]}}}}}
{"features": {"feature": {"user": {"int64List": {"value": ["2"]}}}}}
JSON
expect 0 "" "$funnel" tfrecord from-jsonl "$tmp/noid.jsonl" "$tmp/noid.tfrecord"
head -1 "$tmp/noid.jsonl" | "$funnel" tfrecord from-jsonl - "$tmp/first.tfrecord" 2>/dev/null
offset=$(wc -c <"$tmp/first.tfrecord")
expect 1 "noid.tfrecord: record 1 at byte offset $offset: id feature 'uid' is missing" \
  "$funnel" store load --store "$db" --family users --input "$tmp/noid.tfrecord" --id-key uid
expect 0 "" "$funnel" store dump --store "$db" --family users
cmp -s "$tmp/stdout" "$tmp/dump2" || fail "a failed load changed the store"
expect 1 "record 0 at byte offset 0: id feature 'emb' holds a float_list" "$funnel" store load \
  --store "$db" --family users --input "$tmp/small.tfrecord" --id-key emb
expect 1 "record 0 at byte offset 0: vector feature 'age' holds an int64_list" "$funnel" store load \
  --store "$db" --family users --input "$tmp/small.tfrecord" --id-key uid --vector-key age
expect 1 "version feature 'v' is missing" "$funnel" store load --store "$db" --family users \
  --input "$tmp/small.tfrecord" --id-key uid --version-key v
expect 1 "cannot open $tmp/missing.tfrecord" "$funnel" store load --store "$db" --family users \
  --input "$tmp/missing.tfrecord" --id-key uid
expect 1 "not a store" "$funnel" store load --store "$tmp/notastore" --family users \
  --input "$tmp/small.tfrecord" --id-key uid

# ---- MovieLens-100k users, end to end ----
if [[ ! -f $data/ml-100k.user ]]; then
  echo "store CLI: ok (MovieLens part skipped: no $data/ml-100k.user)"
  exit 0
fi
# user_id:token age:token gender:token occupation:token zip_code:token; bytes values are base64,
# computed once per distinct value.
b64map=$(tail -n +2 "$data/ml-100k.user" | cut -f3,4 | tr '\t' '\n' | sort -u |
  while read -r v; do printf '%s\t%s\n' "$v" "$(printf '%s' "$v" | base64)"; done)
tail -n +2 "$data/ml-100k.user" | awk -F'\t' -v map="$b64map" '
  BEGIN { n = split(map, lines, "\n"); for (i = 1; i <= n; i++) { split(lines[i], kv, "\t"); b[kv[1]] = kv[2] } }
  { printf "{\"features\": {\"feature\": {\"user_id\": {\"int64List\": {\"value\": [\"%s\"]}}, \"age\": {\"int64List\": {\"value\": [\"%s\"]}}, \"gender\": {\"bytesList\": {\"value\": [\"%s\"]}}, \"occupation\": {\"bytesList\": {\"value\": [\"%s\"]}}, \"taste\": {\"floatList\": {\"value\": [%s, %s]}}}}}\n", $1, $2, b[$3], b[$4], $2 / 100, ($3 == "M") }' \
  >"$tmp/users.jsonl"
expect 0 "wrote 943 records" "$funnel" tfrecord from-jsonl "$tmp/users.jsonl" "$tmp/users.tfrecord"
ml=$tmp/ml
expect 0 "943 records from $tmp/users.tfrecord: loaded 943" "$funnel" store load --store "$ml" \
  --family users --input "$tmp/users.tfrecord" --id-key user_id --vector-key taste --version 1
# User 196 is 49, male, a writer (the first line of ml-100k.inter is one of his ratings).
line=$(awk -F'\t' '$1 == 196' "$data/ml-100k.user")
expect 0 "" "$funnel" store get --store "$ml" --family users 196
want='{"id": "196", "version": 1, "features": {"feature": {"user_id": {"int64List": {"value": ["196"]}}, "age": {"int64List": {"value": ["49"]}}, "gender": {"bytesList": {"value": ["TQ=="]}}, "occupation": {"bytesList": {"value": ["d3JpdGVy"]}}}}, "vector": [0.49, 1.0]}'
[[ $line == $'196\t49\tM\twriter\t'* ]] || fail "ml-100k.user changed: $line"
[[ $(cat "$tmp/stdout") == "$want" ]] || fail "get 196: $(cat "$tmp/stdout")"
expect 0 "" "$funnel" store dump --store "$ml" --family users
[[ $(wc -l <"$tmp/stdout") == 943 ]] || fail "dump printed $(wc -l <"$tmp/stdout") users"
# Every user's age comes back as it is in the file.
sed 's/^{"id": "\([0-9]*\)".*"age": {"int64List": {"value": \["\([0-9]*\)"\]}}.*/\1\t\2/' \
  "$tmp/stdout" | sort -n >"$tmp/ages.got"
tail -n +2 "$data/ml-100k.user" | cut -f1,2 | sort -n >"$tmp/ages.want"
cmp -s "$tmp/ages.got" "$tmp/ages.want" || fail "ages differ: $(diff "$tmp/ages.want" "$tmp/ages.got" | head -5)"
expect 0 "loaded 0 into $ml (family users), ignored 943 older" "$funnel" store load \
  --store "$ml" --family users --input "$tmp/users.tfrecord" --id-key user_id --version 0
echo "store CLI: ok"
