#!/usr/bin/python3
"""`funnel demo --semantic`: item embeddings and the leakage-free user-item cosines.

Runs the demo conversion of MovieLens-100k with the encoder, then recomputes, from the
written files alone, every test row's and a sample of training rows' cosines between the
item's embedding and three profiles of the user's ratings in train.tfrecord strictly
earlier: `user_item_cosine` (the mean embedding of the items rated 4 or more),
`user_item_disliked_cosine` (of those rated below 4) and `user_item_taste_cosine` (the
embeddings weighted by rating minus the user's mean rating over those ratings). Checks the
item embeddings are unit vectors of the model's dimension and that features-semantic.json
adds the derived columns.
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

import numpy as np


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
    rated = defaultdict(list)  # user -> [(timestamp, item, rating)] of training ratings
    train = list(rows(args.funnel, os.path.join(out, "train.tfrecord")))
    for f in train:
        rated[text(f, "user_id")].append((int(f["timestamp"]["int64List"]["value"][0]),
                                          text(f, "item_id"), f["rating"]["floatList"]["value"][0]))
    test = list(rows(args.funnel, os.path.join(out, "test.tfrecord")))

    vec = {k: np.array(v, dtype=np.float64) for k, v in vec.items()}

    def cosine(profile, v):
        norm = np.linalg.norm(profile)
        return float(profile @ v / norm) if norm > 0 else None

    def expected(f):
        """{feature: cosine or None} for the three profiles."""
        t = int(f["timestamp"]["int64List"]["value"][0])
        earlier = [(vec[i], r) for ts, i, r in rated[text(f, "user_id")] if ts < t]
        v = vec[text(f, "item_id")]
        want = dict.fromkeys(("user_item_cosine", "user_item_disliked_cosine",
                              "user_item_taste_cosine"))
        if not earlier:
            return want
        e = np.array([x for x, _ in earlier])
        r = np.array([x for _, x in earlier])
        if (r >= 4).any():
            want["user_item_cosine"] = cosine(e[r >= 4].sum(0), v)
        if (r < 4).any():
            want["user_item_disliked_cosine"] = cosine(e[r < 4].sum(0), v)
        if r.max() > r.min():  # all ratings alike: no taste
            want["user_item_taste_cosine"] = cosine(((r - r.mean())[:, None] * e).sum(0), v)
        return want

    bad = checked = 0
    for f in test[::2] + train[::80]:
        for key, want in expected(f).items():
            got = f.get(key, {}).get("floatList", {}).get("value", [None])[0]
            checked += 1
            if (want is None) != (got is None) or (want is not None and abs(want - got) > 1e-4):
                bad += 1
                if bad < 5:
                    print("user %s item %s %s: want %s got %s" %
                          (text(f, "user_id"), text(f, "item_id"), key, want, got))
    spec = json.load(open(os.path.join(out, "features-semantic.json")))
    names = [c["name"] for c in spec["columns"]]
    for key in ("user_item_cosine", "user_item_disliked_cosine", "user_item_taste_cosine"):
        assert key in names and key + "_bucket" in names, names
    subprocess.run(["rm", "-rf", out])
    print("semantic features: %d values checked, %d wrong" % (checked, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
