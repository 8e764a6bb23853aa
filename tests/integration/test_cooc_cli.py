#!/usr/bin/python3
"""`funnel cooc build|neighbours|candidates` end to end on MovieLens-100k.

Runs `funnel demo` on the public data set, builds the co-occurrence table from its
interactions.tfrecord and checks it against the same counts made here in Python from the
records (read back with `funnel tfrecord cat`): the summary's counts, Star Wars' (item 50)
neighbours and their cosine scores c(i,j)/sqrt(n_i n_j), ties by id; --label-key keeps
only liked interactions and --window shrinks the pairs; candidates exclude the recent
items and sum their scores; every --json output parses; usage errors exit 2; a truncated
or damaged table and an unknown item exit 1 naming the file or the item. Exits 77
(skipped) without the data.
"""
import argparse
import json
import math
import os
import sys
import tempfile
from collections import defaultdict

from funnel_cli import check, interactions, run


def expected_neighbours(rows, item, k):
    """Top-k cosine neighbours of item over all pairs of each user's items."""
    users_of = defaultdict(set)
    for u, i, _, _ in rows:
        users_of[i].add(u)
    mine = users_of[item]
    scores = []
    for j, us in users_of.items():
        c = len(mine & us)
        if j != item and c:
            scores.append((-(c / math.sqrt(len(mine) * len(us))), j.encode(), j))
    scores.sort()
    return [(j, -s) for s, _, j in scores[:k]], len(mine)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--funnel", required=True)
    ap.add_argument("--data", required=True)
    a = ap.parse_args()
    ml = os.path.join(a.data, "ml-100k")
    if not os.path.exists(os.path.join(ml, "ml-100k.inter")):
        print(f"SKIP: MovieLens-100k not found in {ml}")
        return 77
    f = a.funnel
    with tempfile.TemporaryDirectory() as tmp:
        demo = os.path.join(tmp, "demo")
        run(f, "demo", "--data", ml, "--out", demo)
        inter = os.path.join(demo, "interactions.tfrecord")
        table = os.path.join(tmp, "ml.cooc")
        rows = interactions(f, inter)
        check(len(rows) == 100000, f"{len(rows)} interactions")

        # Usage.
        check("--window" in run(f, "cooc", "--help"), "cooc --help lacks --window")
        run(f, "cooc", rc=2, stderr_has="give a subcommand")
        run(f, "cooc", "build", "--interactions", inter, rc=2, stderr_has="--out")
        run(f, "cooc", "build", "--interactions", inter, "--out", table, "--min-label", "1",
            rc=2, stderr_has="--label-key")
        run(f, "cooc", "build", "--interactions", inter, "--out", table, "--top", "0", rc=2)
        run(f, "cooc", "build", "--interactions", inter, "--out", table, "-k", "3", rc=2)
        run(f, "cooc", "neighbours", "--cooc", table, rc=2, stderr_has="--item")
        run(f, "cooc", "neighbours", "--item", "50", rc=2, stderr_has="--cooc")
        run(f, "cooc", "frobnicate", rc=2, stderr_has="unknown subcommand")
        run(f, "cooc", "build", "--interactions", inter, "--out", table, "--item-key", "nope",
            rc=1, stderr_has="'nope' is missing")
        check(not os.path.exists(table), "a failed build left a file")

        # The whole table against Python's counts.
        s = json.loads(run(f, "cooc", "build", "--interactions", inter, "--out", table,
                           "--top", "50", "--json"))
        check(s["records"] == 100000 and s["kept"] == 100000, f"summary {s}")
        check(s["users"] == 943 and s["items"] == 1682, f"summary {s}")
        check(s["top"] == 50 and s["window"] == 0 and s["out"] == table, f"summary {s}")
        users_of = defaultdict(set)
        for u, i, _, _ in rows:
            users_of[u].add(i)
        pairs = set()
        for items in users_of.values():
            items = sorted(items)
            pairs.update((x, y) for n, x in enumerate(items) for y in items[n + 1:])
        check(s["pairs"] == len(pairs), f"pairs {s['pairs']}, Python counts {len(pairs)}")

        for item in ["50", "1", "100"]:
            got = json.loads(run(f, "cooc", "neighbours", "--cooc", table, "--item", item,
                                 "-k", "20", "--json"))
            want, users = expected_neighbours(rows, item, 20)
            check(got["item"] == item and got["users"] == users, f"neighbours of {item}: {got}")
            nb = got["neighbours"]
            check(len(nb) == 20, f"{item}: {len(nb)} neighbours")
            for g, (wid, wscore) in zip(nb, want):
                check(abs(g["score"] - wscore) < 1e-6, f"{item}: {g} against {wid} {wscore}")
            # float32 scores may merge near-ties, so compare ids where scores clearly differ.
            check([g["id"] for g in nb[:5]] == [w[0] for w in want[:5]],
                  f"{item}: top 5 {[g['id'] for g in nb[:5]]} against {want[:5]}")
        star = json.loads(run(f, "cooc", "neighbours", "--cooc", table, "--item", "50",
                              "--json"))
        check(len(star["neighbours"]) == 10, "default -k 10")
        ids = [g["id"] for g in star["neighbours"]]
        check("181" in ids[:3] and "172" in ids[:3], f"Star Wars neighbours {ids}")
        text = run(f, "cooc", "neighbours", "--cooc", table, "--item", "50", "-k", "3")
        check(len(text.splitlines()) == 3 and text.startswith("181\t"), f"text output {text!r}")
        run(f, "cooc", "neighbours", "--cooc", table, "--item", "no-such-movie", rc=1,
            stderr_has="'no-such-movie'")

        c = json.loads(run(f, "cooc", "candidates", "--cooc", table, "--recent", "50,181,172",
                           "-k", "15", "--json"))
        check(c["recent"] == ["50", "181", "172"], f"candidates {c}")
        cids = [x["id"] for x in c["candidates"]]
        check(len(cids) == 15 and not {"50", "181", "172"} & set(cids), f"candidates {cids}")
        sc = [x["score"] for x in c["candidates"]]
        check(sc == sorted(sc, reverse=True) and sc[0] > 1, f"candidate scores {sc}")

        # Liked interactions only, and a window: fewer pairs.
        liked = os.path.join(tmp, "liked.cooc")
        l = json.loads(run(f, "cooc", "build", "--interactions", inter, "--out", liked,
                           "--label-key", "label", "--json"))
        n_liked = sum(1 for r in rows if r[3] >= 1)
        check(l["kept"] == n_liked and l["records"] == 100000, f"liked {l} ({n_liked})")
        check(l["items"] == len({r[1] for r in rows if r[3] >= 1}), f"liked {l}")
        w = json.loads(run(f, "cooc", "build", "--interactions", inter, "--out",
                           os.path.join(tmp, "w.cooc"), "--window", "5", "--json"))
        check(0 < w["pairs"] < s["pairs"] and w["window"] == 5, f"window 5 {w}")

        # Damage: truncated and bit-flipped tables are refused, naming the file.
        data = open(table, "rb").read()
        bad = os.path.join(tmp, "bad.cooc")
        open(bad, "wb").write(data[:len(data) // 2])
        run(f, "cooc", "neighbours", "--cooc", bad, "--item", "50", rc=1, stderr_has="truncated")
        flipped = bytearray(data)
        flipped[len(data) // 3] ^= 0x10
        open(bad, "wb").write(bytes(flipped))
        run(f, "cooc", "neighbours", "--cooc", bad, "--item", "50", rc=1, stderr_has=bad)
        run(f, "cooc", "neighbours", "--cooc", os.path.join(tmp, "none.cooc"), "--item", "50",
            rc=1)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
