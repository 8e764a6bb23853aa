#!/usr/bin/python3
"""Reranker quality: funnel's listwise reranker against gradient-boosted rankers on the LETOR
sample LightGBM ships (letor-lambdarank: rank.train, 201 queries, rank.test, 50 queries,
300 features, grades 0..4, groups from the .query files).

Peers, each trained on rank.train and scored on rank.test, no early stopping (none sees
rank.test before its predictions):
- xgboost (Debian python3-xgboost) with objective rank:ndcg and its documented defaults,
  100 rounds; and the tuned setting max_depth 4, eta 0.1, 200 rounds. It reads the files
  as its svmlight loader does: an absent feature is missing, not 0.
- LightGBM (PyPI; bench/setup-peers installs it into bench/.venv) with objective
  lambdarank and its defaults, 100 rounds. It runs in a child process of the venv's
  Python (this file again, with --lightgbm-child), since the system Python lacks it.
- funnel (--funnel PATH): `funnel rerank train` with --funnel-args passed through, then
  `funnel rerank eval --model --predictions --json`. With --select, the options are
  chosen first on rank.train alone: 5-fold cross-validation over the lists for each
  setting of GRID (early stopping on the held-out fold), the setting with the best mean
  validation NDCG@10 wins; the final model is trained with it on rank.train, its last 20%
  of lists held out for early stopping (the best epoch kept), once per seed (--seeds);
  the table gives the mean and each seed's NDCG@10.

Every figure comes from ranking_metrics() below, the definition in src/rerank/rerank.h:
items by score, highest first, ties in input order; gain 2^label - 1, discount
log2(position + 1); NDCG@k over the ideal DCG@k, 1 for a query with no relevant item;
average precision with label > 0 relevant (1 without any). funnel's own figures, as
`funnel rerank eval --json` prints them, are checked against it.

  bench/rerank_quality.py --data ../shared/data [--funnel build/src/tools/funnel]
      [--funnel-args "--loss lambdarank --epochs 30"] [--threads 2]

--train FILE --test FILE compare the same models on other svmrank lists (groups from
FILE.query, else from the qid: tokens), e.g. the serving pipeline's own lists from
`funnel rerank lists` (BENCHMARKS.md, "Listwise reranker in the serving pipeline").
"""
import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np

KS = (1, 3, 5, 10)
N_FEATURES = 0  # the widest row read so far (300 in the LETOR sample)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_PY = os.path.join(ROOT, "bench", ".venv", "bin", "python")


def read_letor(path):
    """(rows as {column: value} dicts, labels, group sizes) of svmrank text and path.query
    (else runs of equal qid:)."""
    global N_FEATURES
    rows, labels, qids = [], [], []
    with open(path) as f:
        for line in f:
            parts = line.split("#", 1)[0].split()
            if not parts:
                continue
            labels.append(float(parts[0]))
            if parts[1].startswith("qid:"):
                qids.append(parts.pop(1))
            rows.append({int(i) - 1: float(v) for i, v in (t.split(":") for t in parts[1:])})
            N_FEATURES = max(N_FEATURES, max(rows[-1], default=-1) + 1)
    if os.path.exists(path + ".query"):
        with open(path + ".query") as f:
            groups = [int(line) for line in f if line.strip()]
    else:
        groups = []
        for i, q in enumerate(qids):
            if i and q == qids[i - 1]:
                groups[-1] += 1
            else:
                groups.append(1)
    if sum(groups) != len(rows):
        sys.exit("%s.query: counts add up to %d, the file has %d rows" %
                 (path, sum(groups), len(rows)))
    return rows, np.array(labels), np.array(groups)


def dense(rows):
    x = np.zeros((len(rows), N_FEATURES), dtype=np.float64)
    for r, row in enumerate(rows):
        for c, v in row.items():
            x[r, c] = v
    return x


def ranking_metrics(scores, labels, groups):
    """Means over the queries of NDCG@1/3/5/10 and average precision (see the top)."""
    out = {"ndcg@%d" % k: [] for k in KS}
    out["map"] = []
    at = 0
    for g in groups:
        s, y = list(scores[at:at + g]), list(labels[at:at + g])
        at += g
        ranked = [y[i] for i in sorted(range(g), key=lambda i: -s[i])]  # stable: ties in order
        ideal = sorted(y, reverse=True)
        for k in KS:
            dcg = sum((2.0 ** l - 1) / math.log2(p + 2) for p, l in enumerate(ranked[:k]))
            best = sum((2.0 ** l - 1) / math.log2(p + 2) for p, l in enumerate(ideal[:k]))
            out["ndcg@%d" % k].append(dcg / best if best > 0 else 1.0)
        hits, total = 0, 0.0
        for p, l in enumerate(ranked):
            if l > 0:
                hits += 1
                total += hits / (p + 1)
        out["map"].append(total / hits if hits else 1.0)
    return {key: float(np.mean(v)) for key, v in out.items()}


# ---- peers ----

def xgboost_rows(train, test, threads, rows):
    try:
        import scipy.sparse as sp
        import xgboost as xgb
    except ImportError as e:
        print("xgboost: skipped (%s; on Debian: apt-get install python3-xgboost)" % e)
        return

    def matrix(data):
        feats, y, groups = data
        ind, val, ptr = [], [], [0]
        for row in feats:
            for c in sorted(row):
                ind.append(c)
                val.append(row[c])
            ptr.append(len(ind))
        x = sp.csr_matrix((val, ind, ptr), shape=(len(feats), N_FEATURES))
        d = xgb.DMatrix(x, label=y)
        d.set_group(groups)
        return d

    dtrain, dtest = matrix(train), matrix(test)
    settings = (
        ("xgboost %s rank:ndcg, defaults, 100 rounds" % xgb.__version__, {}, 100),
        ("xgboost %s rank:ndcg, max_depth 4, eta 0.1, 200 rounds" % xgb.__version__,
         {"max_depth": 4, "eta": 0.1}, 200),
    )
    for name, extra, rounds in settings:
        params = {"objective": "rank:ndcg", "nthread": threads, "seed": 0, **extra}
        t = time.time()
        booster = xgb.train(params, dtrain, num_boost_round=rounds)
        seconds = time.time() - t
        rows.append((name, ranking_metrics(booster.predict(dtest), test[1], test[2]), seconds))


def lightgbm_child(args):
    """In bench/.venv: train LightGBM lambdarank, write predictions, print name and seconds."""
    import lightgbm as lgb
    tr_rows, tr_y, tr_g = read_letor(args.train)
    te_rows, _, _ = read_letor(args.test)
    params = {"objective": "lambdarank", "num_threads": args.threads, "verbosity": -1}
    t = time.time()
    booster = lgb.train(params, lgb.Dataset(dense(tr_rows), label=tr_y, group=tr_g),
                        num_boost_round=100)
    seconds = time.time() - t
    np.savetxt(args.lightgbm_child, booster.predict(dense(te_rows)), fmt="%.17g")
    print(json.dumps({"name": "LightGBM %s lambdarank, defaults, 100 rounds" % lgb.__version__,
                      "seconds": seconds}))
    return 0


def lightgbm_rows(args, test, tmp, rows):
    if not os.path.exists(VENV_PY):
        print("LightGBM: skipped: %s is missing (run bench/setup-peers)" %
              os.path.relpath(VENV_PY, os.getcwd()))
        return
    if subprocess.run([VENV_PY, "-c", "import lightgbm"], capture_output=True).returncode:
        print("LightGBM: skipped: lightgbm is not installed in bench/.venv (run bench/setup-peers)")
        return
    preds = os.path.join(tmp, "lightgbm.txt")
    p = subprocess.run([VENV_PY, os.path.abspath(__file__), "--data", args.data, "--threads",
                        str(args.threads), "--train", args.train, "--test", args.test,
                        "--lightgbm-child", preds],
                       capture_output=True, text=True)
    if p.returncode:
        print("LightGBM: failed (exit %d): %s" % (p.returncode, p.stderr.strip()[-2000:]))
        return
    info = json.loads(p.stdout.strip().splitlines()[-1])
    rows.append((info["name"], ranking_metrics(np.loadtxt(preds), test[1], test[2]),
                 info["seconds"]))


# ---- funnel ----

def funnel_once(args, tmp, extra):
    """Trains with extra options on rank.train, scores rank.test: (metrics, seconds) or None."""
    funnel = args.funnel
    train, test = args.train, args.test
    model = os.path.join(tmp, "reranker.safetensors")
    preds = os.path.join(tmp, "funnel.txt")
    cmd = [funnel, "rerank", "train", "--data", train, "--out", model] + extra
    t = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.time() - t
    if p.returncode:
        print("funnel: `%s` failed (exit %d):\n%s" % (" ".join(cmd), p.returncode,
                                                      p.stderr.strip()[-2000:]))
        return None
    cmd = [funnel, "rerank", "eval", "--model", model, "--data", test, "--predictions", preds,
           "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        print("funnel: `%s` failed (exit %d):\n%s" % (" ".join(cmd), p.returncode,
                                                      p.stderr.strip()[-2000:]))
        return None
    _, y, groups = read_letor(test)
    ours = ranking_metrics(np.loadtxt(preds), y, groups)
    try:
        printed = json.loads(p.stdout)
    except ValueError:
        printed = {}
        print("funnel: `funnel rerank eval --json` printed no JSON: %r" % p.stdout[:200])
    for key, v in ours.items():
        if key in printed and abs(printed[key] - v) > 1e-9:
            print("funnel: %s here %.12f, `funnel rerank eval --json` %.12f (the predictions "
                  "file and the command disagree)" % (key, v, printed[key]))
    if not all(key in printed for key in ours):
        print("funnel: `funnel rerank eval --json` lacks some figures: %r" % printed)
    return ours, seconds


def funnel_rows(args, tmp, rows):
    funnel = args.funnel
    if not os.path.exists(funnel):
        print("funnel: skipped: %s does not exist" % funnel)
        return
    probe = subprocess.run([funnel, "rerank"], capture_output=True, text=True)
    if "unknown command" in probe.stderr:
        print("funnel: skipped: this binary has no `rerank` command yet (%s)" %
              probe.stderr.strip().splitlines()[0])
        return
    extra = shlex.split(args.funnel_args)
    if not args.select:
        got = funnel_once(args, tmp, extra)
        if got:
            name = "funnel reranker" + (" (%s)" % args.funnel_args if args.funnel_args else "")
            rows.append((name, got[0], got[1]))
        return
    opts, epochs, report = select_options(args, tmp)
    print("funnel: 5-fold cross-validation on rank.train (NDCG@10 of the held-out folds):")
    print()
    print("| options | mean valid NDCG@10 | mean best epoch |")
    print("| --- | ---: | ---: |")
    print("\n".join(report))
    print()
    runs = []
    for seed in range(1, args.seeds + 1):
        got = funnel_once(args, tmp, extra + shlex.split(opts) +
                          ["--holdout", "0.2", "--epochs", "60", "--seed", str(seed)])
        if not got:
            return
        runs.append(got)
    mean = {k: float(np.mean([r[0][k] for r in runs])) for k in runs[0][0]}
    print("funnel: chosen `%s` (folds' best epoch %d); trained on rank.train with the last 20%% "
          "of its lists for early stopping; test NDCG@10 per seed: %s" %
          (opts or "(defaults)", epochs, " ".join("%.4f" % r[0]["ndcg@10"] for r in runs)))
    rows.append(("funnel reranker (%s; mean of %d seeds)" % (opts or "defaults", len(runs)), mean,
                 float(np.mean([r[1] for r in runs]))))


GRID = [
    "",
    "--d-model 128 --ff 256",
    "--d-model 128 --ff 256 --lambda-k 10",
    "--d-model 128 --ff 256 --loss listnet",
    "--d-model 256 --ff 512 --heads 8",
]


def write_lists(lines, groups, picks, path):
    """The lists numbered in picks (of lines grouped by groups) as svmrank text + .query."""
    starts = np.concatenate([[0], np.cumsum(groups)])
    with open(path, "w") as f, open(path + ".query", "w") as q:
        for g in picks:
            f.writelines(lines[starts[g]:starts[g + 1]])
            q.write("%d\n" % groups[g])


def select_options(args, tmp):
    """(options, epochs, table lines) chosen by 5-fold cross-validation on rank.train."""
    lines = [l for l in open(args.train) if l.split("#", 1)[0].strip()]
    groups = list(read_letor(args.train)[2])
    order = np.random.default_rng(7).permutation(len(groups))
    folds = [sorted(order[i::5]) for i in range(5)]
    paths = []
    for i, fold in enumerate(folds):
        rest = sorted(g for j, f in enumerate(folds) if j != i for g in f)
        fit, valid = (os.path.join(tmp, "fold%d.%s" % (i, n)) for n in ("fit", "valid"))
        write_lists(lines, groups, rest, fit)
        write_lists(lines, groups, fold, valid)
        paths.append((fit, valid))
    best, report = None, []
    for opts in GRID:
        ndcgs, epochs = [], []
        for fit, valid in paths:
            model = os.path.join(tmp, "cv.safetensors")
            cmd = [args.funnel, "rerank", "train", "--data", fit, "--valid", valid, "--out",
                   model, "--epochs", "60", "--patience", "10", "--ndcg-k", "10", "--json"]
            cmd += shlex.split(opts)
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode:
                raise SystemExit("funnel: `%s` failed:\n%s" % (" ".join(cmd), p.stderr[-2000:]))
            rep = json.loads(p.stdout.strip().splitlines()[-1])
            ndcgs.append(rep["valid_ndcg@10"])
            epochs.append(rep["best_epoch"])
        mean = float(np.mean(ndcgs))
        report.append("| %s | %.4f | %.1f |" % (opts or "(defaults)", mean, np.mean(epochs)))
        if best is None or mean > best[0]:
            best = (mean, opts, max(1, int(round(np.mean(epochs)))))
    return best[1], best[2], report


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the public data sets folder")
    ap.add_argument("--funnel", help="the funnel binary; without it only the peers run")
    ap.add_argument("--funnel-args", default="", help="options for `funnel rerank train`")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--select", action="store_true",
                    help="choose funnel's options by 5-fold cross-validation on rank.train")
    ap.add_argument("--seeds", type=int, default=5, help="final models trained with --select")
    ap.add_argument("--train", help="training lists (default: the LETOR sample's rank.train)")
    ap.add_argument("--test", help="test lists (default: the LETOR sample's rank.test)")
    ap.add_argument("--lightgbm-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    data = os.path.join(args.data, "letor-lambdarank")
    args.train = args.train or os.path.join(data, "rank.train")
    args.test = args.test or os.path.join(data, "rank.test")
    if args.lightgbm_child:
        return lightgbm_child(args)
    for path in (args.train, args.test):
        if not os.path.exists(path):
            print("skipped: %s not found" % path)
            return 77
    train = read_letor(args.train)
    test = read_letor(args.test)
    print("%s: train %d rows, %d queries; test %d rows, %d queries; %d features; %d threads" %
          (os.path.basename(args.train), len(train[0]), len(train[2]), len(test[0]),
           len(test[2]), N_FEATURES, args.threads))
    rows = []
    with tempfile.TemporaryDirectory(prefix="funnel-rerank-bench-") as tmp:
        xgboost_rows(train, test, args.threads, rows)
        lightgbm_rows(args, test, tmp, rows)
        if args.funnel:
            funnel_rows(args, tmp, rows)
    print()
    print("| model | NDCG@1 | NDCG@3 | NDCG@5 | NDCG@10 | MAP | train s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, m, seconds in rows:
        print("| %s | %.4f | %.4f | %.4f | %.4f | %.4f | %.2f |" %
              (name, m["ndcg@1"], m["ndcg@3"], m["ndcg@5"], m["ndcg@10"], m["map"], seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
