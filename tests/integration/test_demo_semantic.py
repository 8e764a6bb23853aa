#!/usr/bin/python3
"""`funnel demo --semantic`: item embeddings and the leakage-free user-item cosine.

Runs the demo conversion of MovieLens-100k with the encoder, then recomputes, from the
written files alone, every test row's and a sample of training rows' `user_item_cosine`:
the cosine between the item's embedding and the mean embedding of the items the user rated
4 or more in train.tfrecord strictly earlier. Checks the item embeddings are unit vectors
of the model's dimension and that features-semantic.json adds the two derived columns.
"""
import argparse
import base64
import json
import math
import os
import subprocess
import sys
import tempfile
from collections import defaultdict


def rows(funnel, path):
    out = subprocess.run([funnel, "tfrecord", "cat", path], check=True, capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        f = json.loads(line)["features"]["feature"]
        yield f


def text(f, key):
    return base64.b64decode(f[key]["bytesList"]["value"][0]).decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--funnel", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", required=True)
    args = ap.parse_args()
    ml = os.path.join(args.data, "ml-100k")
    if not os.path.isdir(ml) or not os.path.exists(os.path.join(args.model, "model.safetensors")):
        print("skipped: MovieLens or the encoder model is missing")
        return 77
    out = tempfile.mkdtemp(prefix="funnel-semantic-")
    subprocess.run([args.funnel, "demo", "--data", ml, "--out", out, "--semantic", args.model],
                   check=True, capture_output=True)
    vec = {}
    for f in rows(args.funnel, os.path.join(out, "items.tfrecord")):
        v = f["embedding"]["floatList"]["value"]
        assert len(v) == 384, len(v)
        assert abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-4
        vec[text(f, "item_id")] = v
    assert len(vec) == 1682
    liked = defaultdict(list)  # user -> [(timestamp, item)] of training positives
    train = list(rows(args.funnel, os.path.join(out, "train.tfrecord")))
    for f in train:
        if f["rating"]["floatList"]["value"][0] >= 4:
            liked[text(f, "user_id")].append((int(f["timestamp"]["int64List"]["value"][0]),
                                              text(f, "item_id")))
    test = list(rows(args.funnel, os.path.join(out, "test.tfrecord")))

    def expected(f):
        t = int(f["timestamp"]["int64List"]["value"][0])
        prof = [vec[i] for ts, i in liked[text(f, "user_id")] if ts < t]
        if not prof:
            return None
        mean = [sum(col) / len(prof) for col in zip(*prof)]
        v = vec[text(f, "item_id")]
        return sum(a * b for a, b in zip(mean, v)) / math.sqrt(sum(a * a for a in mean))

    bad = checked = 0
    for f in test + train[::40]:
        want = expected(f)
        got = f.get("user_item_cosine", {}).get("floatList", {}).get("value", [None])[0]
        checked += 1
        if (want is None) != (got is None) or (want is not None and abs(want - got) > 1e-4):
            bad += 1
            if bad < 5:
                print("user %s item %s: want %s got %s" % (text(f, "user_id"),
                                                          text(f, "item_id"), want, got))
    spec = json.load(open(os.path.join(out, "features-semantic.json")))
    names = [c["name"] for c in spec["columns"]]
    assert "user_item_cosine" in names and "user_item_cosine_bucket" in names, names
    subprocess.run(["rm", "-rf", out])
    print("semantic features: %d rows checked, %d wrong" % (checked, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
