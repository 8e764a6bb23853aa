#!/usr/bin/python3
"""funnel rerank eval's NDCG agrees with scikit-learn's, and its MAP with a plain AP.

Random scores for the LETOR sample's test split (rank.test, groups from rank.test.query)
are written one per line and given to `funnel rerank eval --scores --json`. Every figure
must agree to 1e-9 with:
- NDCG@1/3/5/10: scikit-learn's ndcg_score per query with y_true = 2**label - 1 (funnel's
  gains are exponential, scikit-learn takes y_true as linear gains), averaged over the
  queries, a query with no relevant item counting 1 (scikit-learn gives it 0);
- MAP: average precision written out below, label > 0 relevant, 1 for no relevant item.

The scores are continuous and distinct within every query: scikit-learn averages the
gains of tied items (ignore_ties=False), while funnel keeps tied items in input order, so
ties would compare two different definitions. A run with many ties is compared with
ndcg() below instead, which implements funnel's documented definition (stable order).
Scores are float32 values, as funnel reads them, so both sides rank the same numbers.

Also checks the command's errors: a scores file with the wrong number of lines exits
nonzero naming both counts.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
from sklearn.metrics import ndcg_score

from funnel_cli import check

KS = (1, 3, 5, 10)
TOL = 1e-9


def read_letor(path, query_path):
    """Labels per query, from svmrank text and a LightGBM group file."""
    with open(path) as f:
        labels = [float(line.split()[0]) for line in f if line.strip()]
    with open(query_path) as f:
        counts = [int(line) for line in f if line.strip()]
    check(sum(counts) == len(labels), "%s: counts add up to %d, %d rows" %
          (query_path, sum(counts), len(labels)))
    out, at = [], 0
    for c in counts:
        out.append(np.array(labels[at:at + c]))
        at += c
    return out


def order(scores):
    """Highest score first, equal scores in input order (a stable sort)."""
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def ndcg(scores, labels, k):
    """funnel's definition: gains 2^label - 1, discount log2(position + 1), 1 without relevance."""
    def dcg(ls):
        return sum((2.0 ** l - 1) / math.log2(p + 2) for p, l in enumerate(ls[:k]))
    ideal = dcg(sorted(labels, reverse=True))
    return dcg([labels[i] for i in order(scores)]) / ideal if ideal > 0 else 1.0


def average_precision(scores, labels):
    hits, total = 0, 0.0
    for p, i in enumerate(order(scores)):
        if labels[i] > 0:
            hits += 1
            total += hits / (p + 1)
    return total / hits if hits else 1.0


def sklearn_ndcg(scores, labels, k):
    if not np.any(labels > 0):
        return 1.0
    gains = 2.0 ** labels - 1
    return float(ndcg_score(gains[None, :], np.asarray(scores, dtype=np.float64)[None, :], k=k))


def expected(groups, scores, with_sklearn):
    out, at = {}, 0
    per = {k: [] for k in KS}
    aps = []
    for y in groups:
        s = scores[at:at + len(y)]
        at += len(y)
        for k in KS:
            per[k].append(sklearn_ndcg(s, y, k) if with_sklearn else ndcg(list(s), list(y), k))
        aps.append(average_precision(list(s), list(y)))
    for k in KS:
        out["ndcg@%d" % k] = float(np.mean(per[k]))
    out["map"] = float(np.mean(aps))
    return out


def write_scores(path, scores):
    with open(path, "w") as f:
        for v in scores:
            f.write(repr(float(v)) + "\n")  # a float32 value, exactly


def funnel_eval(funnel, data, scores_path, extra=()):
    p = subprocess.run([funnel, "rerank", "eval", "--data", data, "--scores", scores_path,
                        "--json", *extra], capture_output=True, text=True)
    check(p.returncode == 0, "funnel rerank eval exited %d: %s" % (p.returncode, p.stderr))
    return json.loads(p.stdout)


def compare(name, ours, want, n_lists, n_items):
    failures = 0
    check(ours.get("lists") == n_lists and ours.get("items") == n_items,
          "%s: lists/items %r/%r, expected %d/%d" % (name, ours.get("lists"), ours.get("items"),
                                                     n_lists, n_items))
    for key, v in want.items():
        got = ours.get(key)
        if not isinstance(got, (int, float)) or abs(got - v) > TOL:
            print("FAIL %s %s: funnel %r, expected %.15f" % (name, key, got, v))
            failures += 1
    print("%s: %s" % (name, "  ".join("%s %.12f" % (k, ours.get(k, float("nan")))
                                      for k in want)))
    return failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--funnel", required=True)
    ap.add_argument("--data", required=True)
    args = ap.parse_args()
    data = os.path.join(args.data, "letor-lambdarank", "rank.test")
    query = data + ".query"
    if not os.path.exists(data) or not os.path.exists(query):
        print("skipped: public data sets not found")
        return 77
    groups = read_letor(data, query)
    n_items = sum(len(g) for g in groups)
    tmp = tempfile.mkdtemp(prefix="funnel-rerank-metrics-")
    failures = 0
    try:
        path = os.path.join(tmp, "scores.txt")
        for seed in (1, 2, 3):
            rng = np.random.default_rng(seed)
            scores = rng.random(n_items).astype(np.float32)
            if seed == 3:  # signed and spread over magnitudes, as model outputs are
                scores = (rng.standard_normal(n_items) * 10.0 ** rng.integers(-3, 4, n_items)
                          ).astype(np.float32)
            at = 0
            for g in groups:  # distinct within each query, so that ties cannot differ
                s = scores[at:at + len(g)]
                check(len(set(s.tolist())) == len(s), "seed %d: tied scores" % seed)
                at += len(g)
            write_scores(path, scores)
            want = expected(groups, scores.astype(np.float64), with_sklearn=True)
            # The reference below is the one the tie run relies on: it must agree here too.
            mine = expected(groups, scores.astype(np.float64), with_sklearn=False)
            for key in want:
                check(abs(want[key] - mine[key]) <= TOL,
                      "reference %s %.15f != scikit-learn %.15f" % (key, mine[key], want[key]))
            ours = funnel_eval(args.funnel, data, path)
            failures += compare("seed %d vs scikit-learn" % seed, ours, want, len(groups),
                                n_items)
            if seed == 1:  # the group file named explicitly reads the same lists
                again = funnel_eval(args.funnel, data, path, ("--query", query))
                check(again == ours, "--query %s changed the figures: %r vs %r" %
                      (query, again, ours))

        # Many ties (scores in {0, 0.5, 1}): funnel keeps input order among them.
        rng = np.random.default_rng(7)
        tied = (rng.integers(0, 3, n_items) / 2.0).astype(np.float32)
        write_scores(path, tied)
        want = expected(groups, tied.astype(np.float64), with_sklearn=False)
        failures += compare("ties vs the documented definition", funnel_eval(args.funnel, data,
                                                                              path),
                            want, len(groups), n_items)

        # The human table: no JSON, but the same run succeeds and prints something.
        p = subprocess.run([args.funnel, "rerank", "eval", "--data", data, "--scores", path],
                           capture_output=True, text=True)
        check(p.returncode == 0 and p.stdout.strip(),
              "funnel rerank eval without --json: exit %d, output %r, %s" %
              (p.returncode, p.stdout, p.stderr))

        # Errors: a line too few or too many names both counts.
        for n in (n_items - 1, n_items + 1):
            write_scores(path, np.zeros(n, dtype=np.float32))
            p = subprocess.run([args.funnel, "rerank", "eval", "--data", data, "--scores",
                                path, "--json"], capture_output=True, text=True)
            check(p.returncode != 0, "%d scores for %d items: exit 0" % (n, n_items))
            check(str(n) in p.stderr and str(n_items) in p.stderr,
                  "%d scores for %d items: the message lacks a count: %r" % (n, n_items,
                                                                             p.stderr))
        # A score that is not a number.
        with open(path, "w") as f:
            f.write("0.5\n" * (n_items - 1) + "high\n")
        p = subprocess.run([args.funnel, "rerank", "eval", "--data", data, "--scores", path,
                            "--json"], capture_output=True, text=True)
        check(p.returncode != 0 and p.stderr.strip(),
              "a score 'high': exit %d, stderr %r" % (p.returncode, p.stderr))
    finally:
        subprocess.run(["rm", "-rf", tmp])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
