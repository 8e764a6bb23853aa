#!/usr/bin/python3
"""CTR model quality: funnel's FM, FFM and DeepFM against scikit-learn's LogisticRegression
and xgboost on the same features, on the Criteo libffm sample and on MovieLens-100k.

MovieLens: `funnel demo` (label = rating >= 4, each user's last 20% of ratings by time in
the test set); funnel's models read the TFRecord files through features.json (and, with
--semantic, features-semantic.json, which adds the user-item cosine from MiniLM); the
baselines read the same examples as the libffm lines `funnel features` prints, one-hot
encoded (index -> column, value as given). Criteo: the libffm files as they are.

  bench/ctr_quality.py --funnel build/src/tools/funnel --data ../shared/data [--model DIR]
"""
import argparse
import json
import os
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


def baselines(train, test, rows):
    xtr, ytr = train
    xte, yte = test
    n = max(xtr.shape[1], xte.shape[1])
    xtr = sp.csr_matrix((xtr.data, xtr.indices, xtr.indptr), shape=(xtr.shape[0], n))
    xte = sp.csr_matrix((xte.data, xte.indices, xte.indptr), shape=(xte.shape[0], n))
    t = time.time()
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


def funnel_models(funnel, tmp, data_args, train, test, rows, kinds, extra=()):
    for kind in kinds:
        model = os.path.join(tmp, "%s.safetensors" % kind)
        t = time.time()
        subprocess.run([funnel, "train", "--model", kind, "--train", train, "--valid", test,
                        "--out", model] + data_args + list(extra), check=True,
                       capture_output=True)
        elapsed = time.time() - t
        out = subprocess.run([funnel, "eval", "--model", model, "--data", test, "--json"] +
                             data_args, check=True, capture_output=True, text=True).stdout
        r = json.loads(out)
        rows.append(("funnel %s" % kind.upper() if kind != "deepfm" else "funnel DeepFM",
                     r["auc"], r["logloss"], elapsed))


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
    args = ap.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    tmp = tempfile.mkdtemp(prefix="funnel-ctr-")
    results = {}

    # Criteo sample (libffm).
    tr = os.path.join(args.data, "criteo-ffm", "small_train.txt")
    te = os.path.join(args.data, "criteo-ffm", "small_test.txt")
    rows = []
    baselines(read_libffm(tr), read_libffm(te), rows)
    funnel_models(args.funnel, tmp, ["--format", "libffm"], tr, te, rows, kinds)
    table("Criteo sample (criteo-ffm: 200 train / 200 test rows, 18 fields)", rows)
    results["criteo"] = rows

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
        funnel_models(args.funnel, tmp, ["--spec", spec], os.path.join(ml, "train.tfrecord"),
                      os.path.join(ml, "test.tfrecord"), rows, kinds)
        table("MovieLens-100k, %s (80000 train / 20000 test, label rating >= 4)" % spec_name,
              rows)
        results["movielens " + spec_name] = rows
    subprocess.run(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())
