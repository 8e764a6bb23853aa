#!/usr/bin/python3
"""`funnel recall eval` end to end on MovieLens-100k.

Runs `funnel demo` on the public data set, then `funnel recall eval` on its temporal split,
and recomputes here in Python, from the records alone (read back with `funnel tfrecord
cat`), recall@100 and recall@500 of the popularity channel (decayed counts, ties by id),
the co-occurrence channel (cosine over the training positives, top 100 per item, seeded
with each user's last 20 training positives) and of their round-robin merge: the figures
must agree. Then sanity: popularity recall@100 above 0.05, recall@500 at least recall@100,
the merge at 500 at least as good as any channel alone. With the encoder model present,
the run with item embeddings (`funnel demo --semantic`) adds the ann_user channel and
leaves the others unchanged. --weights 0,1 makes the merge cooc's list. Usage errors exit 2, a missing file exits 1. Exits 77
(skipped) without the data.
"""
import argparse
import json
import math
import os
import struct
import sys
import tempfile
from collections import defaultdict

from funnel_cli import check, interactions, run

HALF_LIFE = 30 * 86400
RECENT = 20
TOP = 100
KS = (100, 500)


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def expected(train, test):
    """Per-channel and merge recall@K as funnel recall eval defines them."""
    t_max = max(t for _, _, t, _ in train)
    pop = defaultdict(float)
    for _, i, t, _ in train:
        pop[i] += 2.0 ** (-(t_max - t) / HALF_LIFE)
    pop_rank = sorted(pop, key=lambda i: (-pop[i], i.encode()))

    pos_users = defaultdict(set)  # item -> users with a training positive
    liked = defaultdict(set)
    for u, i, _, l in train:
        if l:
            pos_users[i].add(u)
            liked[u].add(i)
    pairs = defaultdict(int)
    for its in liked.values():
        s = sorted(its)
        for a in range(len(s)):
            for b in range(a + 1, len(s)):
                pairs[(s[a], s[b])] += 1
    nb = defaultdict(list)
    for (a, b), c in pairs.items():
        sc = f32(c / math.sqrt(len(pos_users[a]) * len(pos_users[b])))
        nb[a].append((sc, b))
        nb[b].append((sc, a))
    for i in nb:
        nb[i] = sorted(nb[i], key=lambda x: (-x[0], x[1].encode()))[:TOP]

    hist = defaultdict(list)
    for u, i, t, l in train:
        hist[u].append((t, i.encode(), i, l))
    targets = defaultdict(set)
    for u, i, _, l in test:
        if l:
            targets[u].add(i)
    sums = {c: [0.0] * len(KS) for c in ("popularity", "cooc", "merge")}
    users = 0
    for u in sorted(targets):
        h = sorted(hist[u])
        seen = {x[2] for x in h}
        tg = targets[u] - seen
        if not tg:
            continue
        users += 1
        any_pos = any(x[3] for x in h)
        seed = [x[2] for x in reversed(h) if x[3] or not any_pos][:RECENT]
        kmax = max(KS)
        lists = {"popularity": [i for i in pop_rank if i not in seen][:kmax]}
        cand = defaultdict(float)
        for s in seed:
            for sc, j in nb.get(s, []):
                cand[j] += sc
        ranked = sorted((j for j in cand if j not in seed), key=lambda j: (-cand[j], j.encode()))
        lists["cooc"] = [j for j in ranked if j not in seen][:kmax]
        for n, k in enumerate(KS):
            for c in ("popularity", "cooc"):
                sums[c][n] += len(set(lists[c][:k]) & tg) / len(tg)
            chans = [lists["popularity"][:k], lists["cooc"][:k]]
            pos, taken, merged, mset = [0, 0], [0, 0], [], set()
            progress = True
            while progress and len(merged) < k:
                progress = False
                for c in range(2):
                    if len(merged) >= k or taken[c] >= k:
                        continue
                    while pos[c] < len(chans[c]):
                        i = chans[c][pos[c]]
                        pos[c] += 1
                        if i not in mset:
                            mset.add(i)
                            merged.append(i)
                            taken[c] += 1
                            progress = True
                            break
            sums["merge"][n] += len(mset & tg) / len(tg)
    return users, {c: {f"recall@{k}": v[n] / users for n, k in enumerate(KS)}
                   for c, v in sums.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--funnel", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", required=True)
    a = ap.parse_args()
    ml = os.path.join(a.data, "ml-100k")
    if not os.path.exists(os.path.join(ml, "ml-100k.inter")):
        print(f"SKIP: MovieLens-100k not found in {ml}")
        return 77
    f = a.funnel
    with tempfile.TemporaryDirectory() as tmp:
        demo = os.path.join(tmp, "demo")
        run(f, "demo", "--data", ml, "--out", demo)
        tr, te = os.path.join(demo, "train.tfrecord"), os.path.join(demo, "test.tfrecord")

        # Usage errors and a missing file.
        run(f, "recall", rc=2)
        run(f, "recall", "eval", "--train", tr, rc=2, stderr_has="--test")
        run(f, "recall", "eval", "--train", tr, "--test", te, "-k", "0", rc=2)
        run(f, "recall", "eval", "--train", tr, "--test", te, "-k", "100,x", rc=2)
        run(f, "recall", "frobnicate", rc=2, stderr_has="unknown subcommand")
        run(f, "recall", "eval", "--train", tr, "--test", os.path.join(tmp, "nope"), rc=1,
            stderr_has="nope")
        check("recall@K" in run(f, "recall", "--help"), "--help describes recall@K")

        got = json.loads(run(f, "recall", "eval", "--train", tr, "--test", te, "--json"))
        print("funnel:", json.dumps(got))
        users, want = expected(interactions(f, tr), interactions(f, te))
        print("python:", users, json.dumps(want))
        check(got["users"] == users, f"users {got['users']} != {users}")
        check(got["k"] == list(KS), f"k {got['k']}")
        check(set(got["channels"]) == {"popularity", "cooc", "merge"},
              f"channels {sorted(got['channels'])}")
        for c, tol in (("popularity", 2e-4), ("cooc", 2e-3), ("merge", 2e-3)):
            for k in KS:
                g, w = got["channels"][c][f"recall@{k}"], want[c][f"recall@{k}"]
                check(abs(g - w) <= tol, f"{c} recall@{k}: funnel {g}, python {w:.4f}")
        ch = got["channels"]
        check(ch["popularity"]["recall@100"] > 0.05, "popularity recall@100 above 0.05")
        for c, r in ch.items():
            check(0 <= r["recall@100"] <= r["recall@500"] <= 1, f"{c}: {r}")
        check(ch["merge"]["recall@500"] >= max(r["recall@500"] for r in ch.values()),
              f"merge@500 at least every channel's: {ch}")
        # --weights: quotas in proportion; weight 0 only marks, so the merge is cooc's list.
        run(f, "recall", "eval", "--train", tr, "--test", te, "--weights", "1,2,3", rc=2,
            stderr_has="one weight per channel")
        run(f, "recall", "eval", "--train", tr, "--test", te, "--weights", "0,0", rc=2)
        w = json.loads(run(f, "recall", "eval", "--train", tr, "--test", te, "--weights", "0,1",
                           "--json"))
        check(w["weights"] == [0, 1], f"weights {w['weights']}")
        check(w["channels"]["merge"] == ch["cooc"], f"merge at 0:1 {w['channels']['merge']}")

        # With item embeddings: the ann_user channel joins, the others stay as they were.
        if not os.path.exists(os.path.join(a.model, "model.safetensors")):
            print("encoder model missing: ann_user not checked")
            return 0
        sem = os.path.join(tmp, "sem")
        run(f, "demo", "--data", ml, "--out", sem, "--semantic", a.model)
        g2 = json.loads(run(f, "recall", "eval", "--train", os.path.join(sem, "train.tfrecord"),
                            "--test", os.path.join(sem, "test.tfrecord"), "--items",
                            os.path.join(sem, "items.tfrecord"), "--json"))
        print("funnel with embeddings:", json.dumps(g2))
        c2 = g2["channels"]
        check(g2["embedded_items"] == 1682, f"embedded items {g2['embedded_items']}")
        for c in ("popularity", "cooc"):
            check(c2[c] == ch[c], f"{c} changed with embeddings: {c2[c]} vs {ch[c]}")
        check(c2["ann_user"]["recall@100"] > 0.05, f"ann_user {c2['ann_user']}")
        check(0 <= c2["ann_user"]["recall@100"] <= c2["ann_user"]["recall@500"] <= 1,
              f"ann_user {c2['ann_user']}")
        check(c2["merge"]["recall@500"] >= max(r["recall@500"] for r in c2.values()),
              f"merge@500 at least every channel's: {c2}")
    print("recall eval: funnel and python agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
