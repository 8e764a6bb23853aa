#!/usr/bin/python3
"""CTR model quality: funnel's FM, FFM and DeepFM against scikit-learn's LogisticRegression
and xgboost on the same features, on the Criteo libffm sample and on MovieLens-100k.

funnel's hyperparameters come from a small grid per model, picked on the training data alone
(MovieLens: `funnel demo`'s fit/valid split, each user's last tenth of training ratings by
time, by validation AUC; Criteo: five folds of the 200 training rows, by the validation log
loss averaged over the folds epoch by epoch), never on the test file, with the number of
epochs; the model is then trained on the whole training file (MovieLens: seeds 1-3, the row
gives the means). The baselines fit the whole training file with their defaults. The Criteo
sample is also measured by nested cross-validation over its 400 rows (`--sets
criteo-nested`): 200 test rows are too few to rank models whose AUC differs by a few
hundredths.

MovieLens: `funnel demo` (label = rating >= 4, each user's last 20% of ratings by time in
the test set); funnel's models read the TFRecord files through features.json (and, with
--semantic, features-semantic.json, which adds the user-item cosine from MiniLM); the
baselines read the same examples as the libffm lines `funnel features` prints, one-hot
encoded (index -> column, value as given). Criteo: the libffm files as they are.

MovieLens also has rows trained on graded labels (`funnel train --label rating --label-range
2.5,4.5`: ratings 1-2 train as 0, 3 as 0.25, 4 as 0.75, 5 as 1), evaluated like every other
row on the binary label rating >= 4, with logistic regression given the same targets (each
row twice, as a positive weighted by its grade and a negative weighted by the rest, which is
the cross-entropy against the grade).

  bench/ctr_quality.py --funnel build/src/tools/funnel --data ../shared/data [--model DIR]
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score


def read_libffm(path, n_features=None):
    rows, cols, vals, y = [], [], [], []
    with open(path) as f:
        for i, line in enumerate(f):
            parts = line.split()
            if not parts:
                continue
            y.append(1.0 if float(parts[0]) > 0 else 0.0)
            for tok in parts[1:]:
                _, idx, val = tok.split(":")
                rows.append(len(y) - 1)
                cols.append(int(idx))
                vals.append(float(val))
    n = max(cols) + 1 if cols else 1
    if n_features:
        n = max(n, n_features)
    return sp.csr_matrix((vals, (rows, cols)), shape=(len(y), n)), np.array(y)


def widen(x, n):
    return sp.csr_matrix((x.data, x.indices, x.indptr), shape=(x.shape[0], n))


def baselines(train, test, rows, grades=None):
    """LogisticRegression and xgboost on the training rows; with grades (a target in [0, 1] per
    training row), only LogisticRegression, on the graded targets."""
    xtr, ytr = train
    xte, yte = test
    n = max(xtr.shape[1], xte.shape[1])
    xtr, xte = widen(xtr, n), widen(xte, n)
    t = time.time()
    if grades is not None:
        w = np.concatenate([grades, 1 - grades])
        keep = w > 0
        x2 = sp.vstack([xtr, xtr]).tocsr()[keep]
        y2 = np.concatenate([np.ones(len(grades)), np.zeros(len(grades))])[keep]
        lr = LogisticRegression(max_iter=2000).fit(x2, y2, sample_weight=w[keep])
        p = lr.predict_proba(xte)[:, 1]
        rows.append(("scikit-learn LogisticRegression, graded labels", roc_auc_score(yte, p),
                     log_loss(yte, p), time.time() - t))
        return
    lr = LogisticRegression(max_iter=2000).fit(xtr, ytr)
    p = lr.predict_proba(xte)[:, 1]
    rows.append(("scikit-learn LogisticRegression", roc_auc_score(yte, p), log_loss(yte, p),
                 time.time() - t))
    try:
        import xgboost
        t = time.time()
        xg = xgboost.XGBClassifier(tree_method="hist", n_jobs=2).fit(xtr, ytr)
        p = xg.predict_proba(xte)[:, 1]
        rows.append(("xgboost %s (defaults)" % xgboost.__version__, roc_auc_score(yte, p),
                     log_loss(yte, p), time.time() - t))
    except ImportError:
        rows.append(("xgboost (not installed)", float("nan"), float("nan"), 0))


def split_records(path, out_train, out_valid, every=10, which=None):
    """Record i of a TFRecord file (framing copied as it is) or of a text file goes to
    out_valid when i % every == which (default: every - 1), else to out_train."""
    which = every - 1 if which is None else which
    tfrecord = path.endswith(".tfrecord")
    with open(path, "rb") as f, open(out_train, "wb") as tr, open(out_valid, "wb") as va:
        i = 0
        while True:
            if tfrecord:
                head = f.read(12)
                if not head:
                    break
                (n,) = struct.unpack("<Q", head[:8])
                rec = head + f.read(n + 4)
            else:
                rec = f.readline()
                if not rec:
                    break
            (va if i % every == which else tr).write(rec)
            i += 1


def train(funnel, args):
    out = subprocess.run([funnel, "train", "--json"] + args, check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def evaluate(funnel, model, test, data_args):
    out = subprocess.run([funnel, "eval", "--model", model, "--data", test, "--json"] +
                         data_args, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def select(funnel, tmp, data_args, train_file, kind, grid, folds, holdout, train_args=(),
           metric="logloss"):
    """The grid point, and its number of epochs, with the best validation metric (the lowest
    log loss, or with metric "auc" the highest AUC): over `folds` folds of the training file
    held out in turn, or (folds 1) on the holdout (fit, valid) pair. The test file plays no
    part. With folds, every fold trains to the grid's epoch cap and the epochs picked are
    those whose metric, averaged over the folds, is best (as xgboost's cv picks its round):
    the final model trains for one number of epochs, so the folds are judged at one. Scoring
    each fold at its own best epoch instead takes the minimum of every fold's noisy curve, an
    optimistic figure that favours the grid points whose curves wander most."""
    ext = os.path.splitext(train_file)[1]
    fit, valid = os.path.join(tmp, "cv-fit" + ext), os.path.join(tmp, "cv-valid" + ext)
    if folds == 1:
        fit, valid = holdout
    whole_curve = ["--patience", "100000"] if folds > 1 else []
    key, sign = ("valid_logloss", 1) if metric == "logloss" else ("valid_auc", -1)
    best = None
    for flags in grid:
        curves = []
        for fold in range(folds):
            if folds > 1:
                split_records(train_file, fit, valid, every=folds, which=fold)
            r = train(funnel, ["--model", kind, "--train", fit, "--valid", valid, "--out",
                               os.path.join(tmp, "cv.safetensors"), "--valid-metric", metric] +
                      data_args + flags + list(train_args) + whole_curve)
            # lower is better; an epoch without a figure (one class: no AUC) is never picked
            curves.append([float("inf") if e[key] is None else sign * e[key]
                           for e in r["epochs"]])
        n = min(len(c) for c in curves)  # a run that diverged stops early
        mean = [sum(c[e] for c in curves) / len(curves) for e in range(n)]
        loss = min(mean)
        if best is None or loss < best[0]:
            best = (loss, flags, mean.index(loss) + 1)
    return best[1], best[2]


def ratings_of(funnel, path):
    """The rating feature of every record of a TFRecord file, in order."""
    out = subprocess.run([funnel, "tfrecord", "cat", path], check=True, capture_output=True,
                         text=True).stdout
    return np.array([json.loads(line)["features"]["feature"]["rating"]["floatList"]["value"][0]
                     for line in out.splitlines() if line.strip()])


def funnel_models(funnel, tmp, data_args, train_file, test, rows, kinds, grids, folds=1,
                  seeds=(1,), holdout=None, train_args=(), suffix="", metric="logloss"):
    """Each kind with the hyperparameters and the number of epochs select() picks from
    grids[kind] on the training data alone (folds 1: trained on holdout[0], validated on
    holdout[1], by default the training file's every tenth row; folds > 1: cross-validated),
    then trained on the whole training file for that many epochs: the latest training rows
    are the most telling about the test rows that follow them in time, and the baselines
    see them too. With several seeds, the row holds the mean AUC and log loss and notes
    their range. train_args go to training only (graded labels: the test file is evaluated on
    its binary label, as every other row)."""
    if holdout is None:
        ext = os.path.splitext(train_file)[1]
        holdout = (os.path.join(tmp, "fit" + ext), os.path.join(tmp, "valid" + ext))
        split_records(train_file, *holdout)
    fit, valid = holdout
    for kind in kinds:
        grid = grids.get(kind, [[]])
        flags, epochs = select(funnel, tmp, data_args, train_file, kind, grid, folds, holdout,
                               train_args, metric)
        model = os.path.join(tmp, "%s.safetensors" % kind)
        aucs, lls, secs = [], [], []
        for seed in seeds:
            t = time.time()
            args = ["--train", train_file, "--epochs", str(epochs)]
            args += [f for i, f in enumerate(flags)
                     if f != "--epochs" and (i == 0 or flags[i - 1] != "--epochs")]
            train(funnel, ["--model", kind, "--out", model, "--seed", str(seed)] + args +
                  data_args + list(train_args))
            secs.append(time.time() - t)
            r = evaluate(funnel, model, test, data_args)
            aucs.append(r["auc"])
            lls.append(r["logloss"])
        shown = [f for f in args if f not in ("--train", "--valid", train_file, fit, valid)]
        name = "funnel %s" % (kind.upper() if kind != "deepfm" else "DeepFM")
        if shown:
            name += " (%s)" % " ".join(shown)
        name += suffix
        if len(seeds) > 1:
            name += ", mean of seeds %d-%d (AUC %.4f-%.4f)" % (seeds[0], seeds[-1], min(aucs),
                                                              max(aucs))
        rows.append((name, sum(aucs) / len(aucs), sum(lls) / len(lls), sum(secs) / len(secs)))


def criteo_grids():
    """The Criteo sample's models: (kind, name, grid) per row. 200 rows: DeepFM needs small
    batches for enough steps, and regularisation. Epochs are capped at 30; select() picks how
    many."""
    cap = ["--epochs", "30"]
    return [
        ("fm", "FM", [cap, cap + ["--lr", "0.1"], cap + ["--lr", "0.02"], cap + ["--l2", "1e-3"]]),
        ("ffm", "FFM", [cap, cap + ["--lr", "0.3"], cap + ["--lr", "0.1"]]),
        # DeepFM with its sparse part by lazy Adam, as the MLP.
        ("deepfm", "DeepFM, sparse part by Adam",
         [cap + ["--sparse-optimizer", "adam", "--batch", "16", "--lr", lr, "--dropout", p,
                 "--l2", l2, "--k", k, "--hidden", h]
          for lr in ("0.003", "0.01") for p in ("0", "0.5") for l2 in ("1e-3", "3e-3")
          for k in ("2", "4") for h in ("32", "200,200")]),
        # DeepFM with its sparse part trained as FM's (AdaGrad, the default), the MLP by Adam.
        ("deepfm", "DeepFM, sparse part by AdaGrad",
         [cap + ["--sparse-optimizer", "adagrad", "--sparse-lr", slr, "--batch", "16", "--lr",
                 lr, "--dropout", p, "--l2", l2, "--k", k, "--hidden", h]
          for slr in ("0.05", "0.1", "0.2") for lr in ("0.001", "0.003") for p in ("0", "0.5")
          for l2 in ("0", "1e-3") for k in ("2", "4") for h in ("32", "200,200")]),
    ]


def criteo_models(funnel, tmp, train_file, test, rows, kinds):
    """Each of criteo_grids()'s models of the given kinds, picked by 5-fold cross-validation
    of train_file, as the mean over seeds 1-5 (the spread over seeds is as large as the gaps
    between models)."""
    for kind, _, grid in criteo_grids():
        if kind in kinds:
            funnel_models(funnel, tmp, ["--format", "libffm"], train_file, test, rows, [kind],
                          {kind: grid}, folds=5, seeds=range(1, 6))


def criteo_nested(funnel, tmp, data, kinds, folds=5):
    """Nested cross-validation over both files of the Criteo sample (400 rows): each fifth in
    turn is the test set and the other 320 rows train, every model picked on them as on the
    fixed split. A row is the mean AUC and log loss over the outer folds; the split of 200
    test rows alone cannot tell models apart whose AUC differs by less than about 0.05."""
    lines = []
    for name in ("small_train.txt", "small_test.txt"):
        with open(os.path.join(data, "criteo-ffm", name)) as f:
            lines += [line for line in f if line.strip()]
    tr, te = os.path.join(tmp, "outer-train.txt"), os.path.join(tmp, "outer-test.txt")
    names, sums = [], []
    for fold in range(folds):
        with open(tr, "w") as a, open(te, "w") as b:
            for i, line in enumerate(lines):
                (b if i % folds == fold else a).write(line)
        rows = []
        baselines(read_libffm(tr), read_libffm(te), rows)
        n_baselines = len(rows)
        criteo_models(funnel, tmp, tr, te, rows, kinds)
        if not names:
            # The funnel rows name their picks, which differ by fold: name them by their grid.
            names = [r[0].split(" (")[0] for r in rows[:n_baselines]]
            names += ["funnel " + name for kind, name, _ in criteo_grids() if kind in kinds]
            sums = [[0.0, 0.0, 0.0] for _ in rows]
        for acc, r in zip(sums, rows):
            for j in range(3):
                acc[j] += r[j + 1] / folds
    return [(n,) + tuple(acc) for n, acc in zip(names, sums)]


def table(title, rows):
    print("\n%s\n" % title)
    print("| model | AUC | log loss | train s |")
    print("| --- | ---: | ---: | ---: |")
    for name, auc, ll, s in rows:
        print("| %s | %.4f | %.4f | %.1f |" % (name, auc, ll, s))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--funnel", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="models/all-MiniLM-L6-v2",
                    help="encoder model folder for the semantic features (skipped if absent)")
    ap.add_argument("--kinds", default="fm,ffm,deepfm")
    ap.add_argument("--sets", default="criteo,criteo-nested,movielens")
    args = ap.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    tmp = tempfile.mkdtemp(prefix="funnel-ctr-")
    results = {}

    sets = args.sets.split(",")
    if "criteo" in sets:
        # Criteo sample (libffm).
        tr = os.path.join(args.data, "criteo-ffm", "small_train.txt")
        te = os.path.join(args.data, "criteo-ffm", "small_test.txt")
        rows = []
        baselines(read_libffm(tr), read_libffm(te), rows)
        criteo_models(args.funnel, tmp, tr, te, rows, kinds)
        table("Criteo sample (criteo-ffm: 200 train / 200 test rows, 18 fields)", rows)
        results["criteo"] = rows
    if "criteo-nested" in sets:
        rows = criteo_nested(args.funnel, tmp, args.data, kinds)
        table("Criteo sample, nested 5-fold cross-validation over its 400 rows", rows)
        results["criteo-nested"] = rows

    if "movielens" in sets:
        # MovieLens-100k, with and without the semantic features.
        ml = os.path.join(tmp, "ml")
        semantic = os.path.exists(os.path.join(args.model, "model.safetensors"))
        cmd = [args.funnel, "demo", "--data", os.path.join(args.data, "ml-100k"), "--out", ml]
        if semantic:
            cmd += ["--semantic", args.model]
        subprocess.run(cmd, check=True, capture_output=True)
        for spec_name in ["features.json"] + (["features-semantic.json"] if semantic else []):
            spec = os.path.join(ml, spec_name)
            feats = {}
            for part in ("train", "test"):
                path = os.path.join(tmp, "%s-%s.ffm" % (spec_name, part))
                with open(path, "w") as f:
                    subprocess.run([args.funnel, "features", "--spec", spec, "--input",
                                    os.path.join(ml, part + ".tfrecord")], check=True, stdout=f)
                feats[part] = read_libffm(path)
            rows = []
            baselines(feats["train"], feats["test"], rows)
            # DeepFM with its sparse part by lazy Adam, as the MLP...
            adam = ["--epochs", "20", "--sparse-optimizer", "adam"]
            grids = {"deepfm": [adam + ["--l2", l2] for l2 in ("1e-5", "1e-4", "3e-4")] +
                     [adam + ["--dropout", "0.3", "--k", k] for k in ("8", "16")]}
            # ... and by AdaGrad (--sparse-lr; the default), the MLP by Adam.
            adagrad = {"deepfm": [["--epochs", "20", "--dropout", "0.3", "--k", k,
                                   "--sparse-optimizer", "adagrad", "--sparse-lr", slr]
                                  for slr in ("0.02", "0.05", "0.1") for k in ("8", "16")]}
            dfm = [k for k in kinds if k == "deepfm"]
            holdout = (os.path.join(ml, "fit.tfrecord"), os.path.join(ml, "valid.tfrecord"))
            # Binary labels, then the same models on graded labels (the grade of a rating, not
            # whether it reaches 4), selected the same way: by the valid split's AUC, where
            # the grades above 0.5 are the ratings of 4 and 5.
            graded = ["--label", "rating", "--label-range", "2.5,4.5"]
            for train_args, suffix in (([], ""), (graded, ", graded labels")):
                if train_args:
                    grades = np.clip((ratings_of(args.funnel, os.path.join(ml, "train.tfrecord"))
                                      - 2.5) / 2.0, 0, 1)
                    baselines(feats["train"], feats["test"], rows, grades=grades)
                for ks, g in ((kinds, grids), (dfm, adagrad)):
                    funnel_models(args.funnel, tmp, ["--spec", spec],
                                  os.path.join(ml, "train.tfrecord"),
                                  os.path.join(ml, "test.tfrecord"), rows, ks, g, holdout=holdout,
                                  train_args=train_args, suffix=suffix, metric="auc",
                                  seeds=range(1, 4))
            table("MovieLens-100k, %s (80000 train / 20000 test, label rating >= 4)" % spec_name,
                  rows)
            results["movielens " + spec_name] = rows
    subprocess.run(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())
