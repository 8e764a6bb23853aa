#!/usr/bin/python3
"""`funnel rerank train|eval` end to end on the LETOR sample, and the page options.

Trains on rank.train with a holdout and with --valid, checks the --json report, evaluates
on rank.test (the keys, NDCG@10 well above the file order's, --predictions with one finite
score per line whose metrics, recomputed from the file by `--scores`, are the same);
LightGBM's group file next to the data and qid: tokens give the same lists; the model
file scores the same after a copy; usage errors exit 2 and bad files exit 1 naming the
problem. The page: on lists written here with known genres, MMR and a genre cap raise
the page's diversity (over categories or embeddings), and bad category and embedding files
are named.
Exits 77 (skipped) without the data.
"""
import argparse
import json
import math
import os
import shutil
import struct
import sys
import tempfile

from funnel_cli import check, run


def read_groups(path):
    return [int(x) for x in open(path + ".query")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--funnel", required=True)
    ap.add_argument("--data", required=True)
    args = ap.parse_args()
    f = args.funnel
    letor = os.path.join(args.data, "letor-lambdarank")
    if not os.path.exists(os.path.join(letor, "rank.train.query")):
        print("SKIPPED: %s not found" % letor)
        return 77
    train, test = os.path.join(letor, "rank.train"), os.path.join(letor, "rank.test")
    with tempfile.TemporaryDirectory(prefix="funnel-rerank-cli-") as tmp:
        model = os.path.join(tmp, "r.safetensors")
        rep = json.loads(run(f, "rerank", "train", "--data", train, "--holdout", "0.2", "--out",
                             model, "--epochs", "8", "--patience", "3", "--json"))
        check(rep["train_lists"] == 161 and rep["valid_lists"] == 40, "holdout split: %r" % rep)
        check(1 <= rep["best_epoch"] <= rep["epochs_run"] <= 8, "epochs: %r" % rep)
        check(0 < rep["valid_ndcg@10"] <= 1 and rep["loss"] == "lambdarank", "report: %r" % rep)
        # every epoch's figures, in order; the kept epoch's NDCG is the best and the report's
        curve = rep["epochs"]
        check([e["epoch"] for e in curve] == list(range(1, rep["epochs_run"] + 1)),
              "epochs list: %r" % curve)
        check(curve[rep["best_epoch"] - 1]["valid_ndcg@10"] == rep["valid_ndcg@10"] ==
              max(e["valid_ndcg@10"] for e in curve), "kept epoch: %r" % curve)
        check(curve[-1]["train_loss"] == rep["train_loss"], "last loss: %r" % curve)
        check(os.path.getsize(model) > 10000, "model file written")

        preds = os.path.join(tmp, "p.txt")
        m = json.loads(run(f, "rerank", "eval", "--model", model, "--data", test,
                           "--predictions", preds, "--json"))
        check(set(m) == {"ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "map", "lists", "items"},
              "eval keys: %r" % sorted(m))
        check(m["lists"] == 50 and m["items"] == 768, "test counts: %r" % m)
        scores = [float(x) for x in open(preds)]
        check(len(scores) == 768 and all(math.isfinite(s) for s in scores), "predictions")
        order = os.path.join(tmp, "order.txt")
        with open(order, "w") as o:
            o.writelines("%d\n" % -i for i in range(768))
        base = json.loads(run(f, "rerank", "eval", "--scores", order, "--data", test, "--json"))
        check(m["ndcg@10"] > base["ndcg@10"] + 0.05,
              "trained NDCG@10 %.4f vs file order %.4f" % (m["ndcg@10"], base["ndcg@10"]))
        again = json.loads(run(f, "rerank", "eval", "--scores", preds, "--data", test, "--json"))
        check(again == m, "metrics of the predictions file differ: %r vs %r" % (again, m))
        table = run(f, "rerank", "eval", "--model", model, "--data", test)
        check("NDCG@10" in table and "MAP" in table, "table output: %r" % table)

        # qid: tokens instead of the group file: the same lists, the same figures
        qid = os.path.join(tmp, "test.qid")
        lines = open(test).read().splitlines()
        with open(qid, "w") as out:
            at = 0
            for q, n in enumerate(read_groups(test)):
                for line in lines[at:at + n]:
                    label, rest = line.split(" ", 1)
                    out.write("%s qid:%d %s\n" % (label, q + 1, rest))
                at += n
        by_qid = json.loads(run(f, "rerank", "eval", "--model", model, "--data", qid, "--json"))
        check(by_qid == m, "qid lists differ: %r vs %r" % (by_qid, m))

        # --valid, listnet, and a copied model scores the same
        m2 = os.path.join(tmp, "r2.safetensors")
        rep = json.loads(run(f, "rerank", "train", "--data", train, "--valid", test, "--out", m2,
                             "--epochs", "3", "--loss", "listnet", "--layers", "2", "--json"))
        check(rep["valid_lists"] == 50 and rep["loss"] == "listnet", "valid report: %r" % rep)
        copy = os.path.join(tmp, "copy.safetensors")
        shutil.copy(m2, copy)
        a = run(f, "rerank", "eval", "--model", m2, "--data", test, "--json")
        b = run(f, "rerank", "eval", "--model", copy, "--data", test, "--json")
        check(a == b, "a copied model scores differently")

        # without validation every epoch is still listed, its NDCG null
        rep = json.loads(run(f, "rerank", "train", "--data", train, "--out", m2, "--epochs", "2",
                             "--json"))
        check([(e["epoch"], e["valid_ndcg@10"]) for e in rep["epochs"]] == [(1, None), (2, None)]
              and rep["epochs"][-1]["train_loss"] == rep["train_loss"] > 0,
              "epochs without validation: %r" % rep)

        # usage errors (exit 2) and bad files (exit 1)
        run(f, "rerank", rc=2)
        check("funnel rerank train" in run(f, "rerank", "--help"), "--help")
        run(f, "rerank", "fit", rc=2, stderr_has="unknown subcommand")
        run(f, "rerank", "train", "--data", train, rc=2, stderr_has="--out")
        run(f, "rerank", "train", "--data", train, "--out", m2, "--loss", "hinge", rc=2,
            stderr_has="hinge")
        run(f, "rerank", "train", "--data", train, "--out", m2, "--d-model", "30", "--heads",
            "4", rc=2, stderr_has="--heads")
        run(f, "rerank", "train", "--data", train, "--out", m2, "--valid", test, "--holdout",
            "0.2", rc=2, stderr_has="not both")
        run(f, "rerank", "eval", "--data", test, rc=2, stderr_has="--model")
        run(f, "rerank", "eval", "--data", test, "--model", m2, "--page", "0", rc=2,
            stderr_has="--page")
        nogroups = os.path.join(tmp, "nogroups.svm")
        shutil.copy(test, nogroups)
        run(f, "rerank", "eval", "--data", nogroups, "--model", model, rc=1,
            stderr_has="nogroups.svm")
        damaged = os.path.join(tmp, "damaged.safetensors")
        with open(model, "rb") as src, open(damaged, "wb") as dst:
            dst.write(src.read()[:-100])
        run(f, "rerank", "eval", "--data", test, "--model", damaged, rc=1,
            stderr_has="damaged.safetensors")
        run(f, "rerank", "eval", "--data", test, "--model", os.path.join(tmp, "missing"), rc=1,
            stderr_has="missing")

        # the page: 30 lists of 12 items, two items per genre, scores highest on genre 0
        svm, cats, sc = (os.path.join(tmp, n) for n in ("l.svm", "c.txt", "s.txt"))
        with open(svm, "w") as fs, open(cats, "w") as fc, open(sc, "w") as fp:
            for q in range(30):
                for i in range(12):
                    fs.write("%d qid:%d 1:0.5\n" % (1 if i % 3 == 0 else 0, q + 1))
                    fc.write("g%d|all\n" % (i // 4) if i % 2 else "g%d\n" % (i // 4))
                    fp.write("%f\n" % (1.0 - i / 24.0 + q / 1000.0))
        page = ["rerank", "eval", "--data", svm, "--scores", sc, "--categories", cats, "--page",
                "6", "--json"]
        plain = json.loads(run(f, *page))
        check(plain["page"] == 6 and 0 < plain["diversity"] < 1, "page report: %r" % plain)
        mmr = json.loads(run(f, *page, "--diversity", "mmr", "--lambda", "0.3"))
        dpp = json.loads(run(f, *page, "--diversity", "dpp", "--dpp-alpha", "0.5"))
        capped = json.loads(run(f, *page, "--max-per-category", "2"))
        for name, r in (("mmr", mmr), ("dpp", dpp), ("cap", capped)):
            check(r["diversity"] > plain["diversity"] + 0.05,
                  "%s diversity %.3f vs %.3f" % (name, r["diversity"], plain["diversity"]))
        # embeddings instead: one unit vector per genre, so cosine is 1 within a genre
        fv = os.path.join(tmp, "e.fvecs")
        with open(fv, "wb") as o:
            for q in range(30):
                for i in range(12):
                    v = [0.0] * 4
                    v[i // 4] = 1.0
                    o.write(struct.pack("<i4f", 4, *v))
        eplain = json.loads(run(f, "rerank", "eval", "--data", svm, "--scores", sc, "--page", "6",
                                "--embeddings", fv, "--json"))
        emmr = json.loads(run(f, "rerank", "eval", "--data", svm, "--scores", sc, "--page", "6",
                              "--embeddings", fv, "--diversity", "mmr", "--lambda", "0.3",
                              "--json"))
        check(emmr["diversity"] > eplain["diversity"] + 0.05,
              "embedding MMR diversity %.3f vs %.3f" % (emmr["diversity"], eplain["diversity"]))
        with open(fv, "rb") as src:
            head = src.read(20 * 10)
        with open(fv, "wb") as o:
            o.write(head)
        run(f, "rerank", "eval", "--data", svm, "--scores", sc, "--page", "6", "--embeddings", fv,
            rc=1, stderr_has="10 vectors of 4 floats for the 360 items")
        short = os.path.join(tmp, "short.txt")
        with open(short, "w") as o:
            o.write("a\n")
        run(f, *page[:-1], "--categories", short, rc=1, stderr_has="1 lines for the 360 items")
        run(f, "rerank", "eval", "--data", svm, "--scores", sc, "--page", "5", "--diversity",
            "mmr", rc=1, stderr_has="similarity")
    print("rerank cli: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
