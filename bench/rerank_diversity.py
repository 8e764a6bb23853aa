#!/usr/bin/python3
"""Diversity of the final page on MovieLens-100k: NDCG@10 and the intra-list diversity of
genres (mean 1 - Jaccard over the page's pairs) of a 10-item page, without and with MMR
(several lambda), greedy DPP and a cap per genre, all made by funnel's page maker.

The lists: for each user with at least --min-items ratings in the demo's test split (the
last 20% of each user's ratings by time), those items, relevance max(rating - 3, 0) (so 4
and 5 stars are graded hits). The scores: a CTR model (`funnel train --model ffm` on the
demo's fit/valid split by default) scored by `funnel eval --predictions`. The page:
`funnel rerank eval --scores --page 10 --categories --diversity ...`.

  bench/rerank_diversity.py --funnel build/src/tools/funnel --data ../shared/data
"""
import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit("rerank_diversity: `%s` failed (exit %d):\n%s" %
                         (" ".join(cmd), p.returncode, p.stderr.strip()[-2000:]))
    return p.stdout


def text(feature):
    return [base64.b64decode(v).decode() for v in feature["bytesList"]["value"]]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--funnel", required=True)
    ap.add_argument("--data", required=True, help="the public data sets folder")
    ap.add_argument("--model", default="ffm", help="CTR model kind for the scores")
    ap.add_argument("--min-items", type=int, default=20)
    ap.add_argument("--page", type=int, default=10)
    args = ap.parse_args()
    ml = os.path.join(args.data, "ml-100k")
    if not os.path.isdir(ml):
        print("rerank_diversity: skipped: %s not found" % ml)
        return 77
    f = args.funnel
    with tempfile.TemporaryDirectory(prefix="funnel-diversity-") as tmp:
        demo = os.path.join(tmp, "demo")
        run([f, "demo", "--data", ml, "--out", demo])
        spec = os.path.join(demo, "features.json")
        model = os.path.join(tmp, "ctr.safetensors")
        run([f, "train", "--model", args.model, "--train", os.path.join(demo, "fit.tfrecord"),
             "--valid", os.path.join(demo, "valid.tfrecord"), "--spec", spec, "--out", model])
        preds = os.path.join(tmp, "ctr.txt")
        test = os.path.join(demo, "test.tfrecord")
        auc = json.loads(run([f, "eval", "--model", model, "--data", test, "--spec", spec,
                              "--predictions", preds, "--json"]))["auc"]
        scores = [float(x) for x in open(preds)]
        rows = []
        for i, line in enumerate(run([f, "tfrecord", "cat", test]).splitlines()):
            feat = json.loads(line)["features"]["feature"]
            rating = feat["rating"]["floatList"]["value"][0]
            rows.append((text(feat["user_id"])[0], i, max(rating - 3, 0),
                         text(feat["genres"]) if "genres" in feat else []))
        by_user = {}
        for r in rows:
            by_user.setdefault(r[0], []).append(r)
        lists = [v for _, v in sorted(by_user.items()) if len(v) >= args.min_items]
        svm, cats, sc = (os.path.join(tmp, n) for n in ("lists.svm", "cats.txt", "scores.txt"))
        with open(svm, "w") as fs, open(cats, "w") as fc, open(sc, "w") as fp:
            for q, items in enumerate(lists):
                for user, i, rel, genres in items:
                    fs.write("%d qid:%d 1:%.9g\n" % (rel, q + 1, scores[i]))
                    fc.write("|".join(genres) + "\n")
                    fp.write("%.9g\n" % scores[i])
        n_items = sum(len(v) for v in lists)
        print("rerank_diversity: MovieLens-100k test split, %d users with >= %d test ratings "
              "(%d items, %.1f per list); scores: %s (test AUC %.4f); page of %d" %
              (len(lists), args.min_items, n_items, n_items / len(lists), args.model, auc,
               args.page))
        base = [f, "rerank", "eval", "--data", svm, "--scores", sc, "--categories", cats,
                "--page", str(args.page), "--json"]
        settings = [("by score (no diversity)", [])]
        for lam in (0.9, 0.7, 0.5, 0.3):
            settings.append(("MMR lambda %.1f" % lam, ["--diversity", "mmr", "--lambda",
                                                       str(lam)]))
        for alpha in (3, 1):
            settings.append(("DPP alpha %g" % alpha, ["--diversity", "dpp", "--dpp-alpha",
                                                      str(alpha)]))
        settings.append(("by score, at most 3 per genre", ["--max-per-category", "3"]))
        settings.append(("MMR lambda 0.7, at most 3 per genre",
                         ["--diversity", "mmr", "--lambda", "0.7", "--max-per-category", "3"]))
        print()
        print("| page of %d | NDCG@10 | genre diversity |" % args.page)
        print("| --- | ---: | ---: |")
        for name, extra in settings:
            m = json.loads(run(base + extra))
            print("| %s | %.4f | %.4f |" % (name, m["ndcg@10"], m["diversity"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
