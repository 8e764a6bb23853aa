#!/usr/bin/python3
"""The listwise reranker in funneld's pipeline, end to end on MovieLens-100k.

Prepares the demo pipeline (funnel demo, store, FFM, co-occurrence), then:
- `funnel rerank lists` with the history cut at the fit/valid split: one list per user with
  a graded item, 50 rows of 16 features each, grades that match what the user did in
  valid.tfrecord (2 liked, 1 rated, 0 not met), no item the user had already met;
- a reranker trained on those lists beats the rank stage's own order on the lists of the
  later test split (NDCG@10, graded by test.tfrecord) by a clear margin;
- funneld serving that reranker: the debug output's reranker scores are the scores
  `funnel rerank eval --predictions` gives for the lists made with the serving history (so
  serving builds the very rows the model learnt from), the page follows them, timings and
  model versions name the stage, a request with a query is not reranked (the model never
  saw one), a tight budget skips rerank with rank;
- --check names each broken rerank setting; bad `rerank lists` input is a clear error.
Exits 77 (skipped) without the data.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import urllib.request

from funnel_cli import check, interactions, run
from funneld_util import Funneld, prepare_pipeline, write_config

FEATURES = 16
TOP = 50


def read_lists(path):
    """[(qid, user, [(grade, item, features)])] from svmrank text with '# user item' comments."""
    lists = []
    with open(path) as f:
        for line in f:
            body, comment = line.rstrip("\n").split(" # ")
            user, item = comment.split(" ")
            tok = body.split(" ")
            qid = int(tok[1].split(":")[1])
            feats = [float(t.split(":")[1]) for t in tok[2:]]
            check([int(t.split(":")[0]) for t in tok[2:]] == list(range(1, FEATURES + 1)),
                  "%s: columns of %r" % (path, line[:200]))
            if not lists or lists[-1][0] != qid:
                check(not lists or qid == lists[-1][0] + 1, "%s: qid %d out of order" % (path, qid))
                lists.append((qid, user, []))
            check(lists[-1][1] == user, "%s: list %d mixes users" % (path, qid))
            lists[-1][2].append((float(tok[0]), item, feats))
    return lists


def lists_json(funnel, *args):
    return json.loads(run(funnel, "rerank", "lists", *args, "--json").strip().splitlines()[-1])


def rank(port, req, timeout_ms=None):
    headers = {"Content-Type": "application/json"}
    if timeout_ms is not None:
        headers["X-Request-Timeout-Ms"] = str(timeout_ms)
    r = urllib.request.Request("http://127.0.0.1:%d/funnel.v1.Ranking/Rank" % port,
                               data=json.dumps(req).encode(), headers=headers)
    with urllib.request.urlopen(r, timeout=60) as resp:
        return json.loads(resp.read())


def check_lists(lists, history, labels, n_events, what):
    """Each list: TOP distinct items the user had not met, grades from the labels, its
    feature columns as pipeline.h describes them."""
    for _, user, items in lists:
        ids = [i for _, i, _ in items]
        check(len(ids) == TOP and len(set(ids)) == TOP, "%s: user %s list %r" % (what, user, ids))
        met = history.get(user, set()) & set(ids)
        check(not met, "%s: user %s's list holds items met before: %r" % (what, user, met))
        for grade, item, feats in items:
            want = labels.get((user, item), 0)
            check(grade == want, "%s: user %s item %s grade %g, labels say %g" %
                  (what, user, item, grade, want))
            check(all(abs(v) < 1e6 for v in feats), "%s: %r" % (what, feats))
        check(any(g > 0 for g, _, _ in items), "%s: user %s's list has no graded item" %
              (what, user))
        pos = [feats[1] for _, _, feats in items]
        check(pos == sorted(pos) and pos[0] == 0 and pos[-1] == 1, "%s: positions %r" % (what, pos))
        # the columns (src/server/pipeline.h): CTR logit and CTR against the list's best agree;
        # flags are 0/1; no query; the history's length; no vectors in this pipeline (no ANN)
        ctr = [1 / (1 + math.exp(-feats[0])) for _, _, feats in items]
        for (_, item, feats), c in zip(items, ctr):
            check(abs(feats[2] - c / max(ctr)) < 1e-3, "%s: %s CTR columns %r" % (what, item, feats))
            check(all(feats[i] in (0, 1) for i in (4, 6, 8, 10)) and feats[12] == 0,
                  "%s: %s flags %r" % (what, item, feats))
            check(abs(feats[13] - math.log1p(n_events[user])) < 1e-4,
                  "%s: user %s history column %g, %d events" % (what, user, feats[13],
                                                                n_events[user]))
            check(feats[9] == feats[11] == feats[14] == feats[15] == 0,
                  "%s: cosines without vectors %r" % (what, feats))


def grades(recs):
    g = {}
    for u, i, _, label in recs:
        g[(u, i)] = max(g.get((u, i), 0), 2 if label >= 1 else 1)
    return g


def histories(recs):
    h = {}
    for u, i, _, _ in recs:
        h.setdefault(u, set()).add(i)
    return h


def events(recs):
    n = {}
    for u, _, _, _ in recs:
        n[u] = n.get(u, 0) + 1
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--funnel", required=True)
    ap.add_argument("--funneld", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--proto", help="not used: the pipeline tests share one command line")
    args = ap.parse_args()
    f = args.funnel
    ml = os.path.join(args.data, "ml-100k")
    if not os.path.isdir(ml):
        print("SKIPPED: %s not found" % ml)
        return 77
    with tempfile.TemporaryDirectory(prefix="funnel-rerank-") as tmp:
        d = os.path.join(tmp, "demo")
        cpath, conf = prepare_pipeline(f, ml, d, diversity="none", max_per_category=0)
        p = lambda name: os.path.join(d, name)

        # bad input first: each a clear error
        run(f, "rerank", "lists", "--labels", p("valid.tfrecord"), "--out", p("x"), rc=2,
            stderr_has="--config")
        run(f, "rerank", "lists", "--config", cpath, "--labels", p("nothing.tfrecord"), "--out",
            p("x"), rc=1, stderr_has="nothing.tfrecord")
        run(f, "rerank", "lists", "--config", cpath, "--labels", p("valid.tfrecord"), "--out",
            p("x"), "--item-key", "no_such_key", rc=1, stderr_has="no_such_key")
        check(not os.path.exists(p("x")), "a failed run left its output")

        # training lists: history to the fit/valid split, labels from valid
        for part in ("fit", "train"):
            run(f, "cooc", "build", "--interactions", p(part + ".tfrecord"), "--out",
                p(part + ".cooc"), "--label-key", "label", "--min-label", "1")
        fit, valid = interactions(f, p("fit.tfrecord")), interactions(f, p("valid.tfrecord"))
        train, test = interactions(f, p("train.tfrecord")), interactions(f, p("test.tfrecord"))
        rep = lists_json(f, "--config", cpath, "--interactions", p("fit.tfrecord"), "--cooc",
                         p("fit.cooc"), "--labels", p("valid.tfrecord"), "--out", p("rl.svm"))
        lists = read_lists(p("rl.svm"))
        n_users = len({u for u, _, _, _ in valid})
        check(rep["users"] == n_users and rep["features"] == FEATURES and
              rep["lists"] == len(lists) >= 200 and rep["items"] == TOP * len(lists) and
              0 < rep["ndcg10"] < 1, "rerank lists report %r (%d users)" % (rep, n_users))
        check(rep["graded"] == sum(g > 0 for _, _, it in lists for g, _, _ in it),
              "graded count %r" % rep)
        check_lists(lists, histories(fit), grades(valid), events(fit), "fit/valid lists")

        # the later split: history to train/test, labels from test
        trep = lists_json(f, "--config", cpath, "--interactions", p("train.tfrecord"), "--cooc",
                          p("train.cooc"), "--labels", p("test.tfrecord"), "--out", p("test.svm"))
        check_lists(read_lists(p("test.svm")), histories(train), grades(test), events(train),
                    "train/test lists")

        run(f, "rerank", "train", "--data", p("rl.svm"), "--holdout", "0.2", "--out",
            p("rr.safetensors"), "--layers", "1", "--d-model", "32", "--heads", "4", "--ff", "64",
            "--max-items", str(TOP), "--seed", "42", "--epochs", "15")
        ev = json.loads(run(f, "rerank", "eval", "--model", p("rr.safetensors"), "--data",
                            p("test.svm"), "--json").strip().splitlines()[-1])
        print("test split NDCG@10: rank stage %.4f, reranker %.4f (%d lists)" %
              (trep["ndcg10"], ev["ndcg@10"], ev["lists"]))
        check(ev["lists"] == trep["lists"] and ev["ndcg@10"] > trep["ndcg10"] + 0.05,
              "the reranker does not beat the rank stage's order on the test split: %r vs %r" %
              (ev, trep))

        # --check: broken rerank settings named
        run(f, "rerank", "train", "--data", p("rl.svm"), "--holdout", "0.2", "--out", p("rr-short.safetensors"), "--layers", "0",
            "--d-model", "8", "--ff", "8", "--max-items", "20", "--epochs", "1")
        with open(p("narrow.svm"), "w") as o:
            for q in range(1, 4):
                for k in range(3):
                    o.write("%d qid:%d 1:%d 2:%g 3:1\n" % (k == 0, q, k, 0.5 * k))
        run(f, "rerank", "train", "--data", p("narrow.svm"), "--out", p("rr-narrow.safetensors"),
            "--holdout", "0.34", "--epochs", "1", "--layers", "0", "--d-model", "8", "--ff", "8")
        broken = [({"model": "rr.safetensors", "top": TOP, "speed": 1}, "rerank.speed"),
                  ({"model": "missing.safetensors"}, "missing.safetensors"),
                  ({"model": "rr-narrow.safetensors"}, "reads 3 features"),
                  ({"model": "rr-short.safetensors", "top": 50}, "rerank.top"),
                  ({"model": "rr.safetensors", "searches": "yes"}, "rerank.searches"),
                  ({"model": "rr.safetensors", "top": 0}, "rerank.top")]
        for section, needle in broken:
            bad = dict(conf, rerank=section)
            write_config(p("bad.json"), bad)
            pr = subprocess.run([args.funneld, "--config", p("bad.json"), "--check"],
                                capture_output=True, text=True)
            check(pr.returncode != 0 and needle in pr.stderr,
                  "--check with rerank %r: rc %d, stderr %r lacks %r" %
                  (section, pr.returncode, pr.stderr, needle))

        # serving: the rows funneld scores are the rows the lists hold
        run(f, "rerank", "lists", "--config", cpath, "--labels", p("valid.tfrecord"), "--out",
            p("now.svm"), "--max-users", "40", "--all")
        now = read_lists(p("now.svm"))
        run(f, "rerank", "eval", "--model", p("rr.safetensors"), "--data", p("now.svm"),
            "--predictions", p("now.pred"))
        with open(p("now.pred")) as pf:
            preds = [float(x) for x in pf.read().split()]
        rconf = dict(conf, rerank={"model": "rr.safetensors", "top": TOP})
        rpath = p("rerank.json")
        write_config(rpath, rconf)
        srv = Funneld(args.funneld, rpath, os.path.join(tmp, "funneld.log"))
        try:
            k = 0
            for _, user, items in now[:10]:
                want = {item: preds[k + j] for j, (_, item, _) in enumerate(items)}
                k += len(items)
                r = rank(srv.http_port, {"userId": user, "pageSize": 10, "debug": True})
                stages = {s["stage"]: s["items"] for s in r["debug"]}
                got = {it["id"]: it["score"] for it in stages.get("rerank", [])}
                check(set(got) == set(want), "user %s: reranked %r, lists %r" %
                      (user, sorted(got), sorted(want)))
                worst = max(abs(got[i] - want[i]) for i in want)
                check(worst < 1e-4, "user %s: serving scores differ from the lists' by %g" %
                      (user, worst))
                ranked = stages["rank"]
                check([it["id"] for it in ranked[:TOP]] == [i for _, i, _ in items],
                      "user %s: the list is not the rank stage's top %d" % (user, TOP))
                check(all(it["score"] == it["ctr"] for it in ranked) and
                      [it["score"] for it in ranked] == sorted((it["score"] for it in ranked),
                                                               reverse=True),
                      "user %s: the rank stage's debug is not by CTR" % user)
                check(len(stages["recall"]) == len(ranked) and
                      {it["id"] for it in stages["recall"]} == {it["id"] for it in ranked},
                      "user %s: recall and rank debug differ" % user)
                order = [it["id"] for it in stages["rerank"]]
                check(order == sorted(want, key=lambda i: -want[i]),
                      "user %s: the reranked order is not by score" % user)
                check([it["id"] for it in r["items"]] == order[:10],
                      "user %s: the page %r does not follow the reranker %r" %
                      (user, [it["id"] for it in r["items"]], order[:10]))
                check(all(1 <= it["score"] <= 2 for it in r["items"]), "scores %r" % r["items"])
                t = {x["stage"]: x.get("candidates", 0) for x in r["timings"]}
                check(t.get("rerank") == TOP and "reranker" in r["modelVersions"],
                      "timings %r, versions %r" % (r["timings"], r["modelVersions"]))
            # a new user is reranked too (popularity candidates); a query is not
            r = rank(srv.http_port, {"userId": "no-such-user", "pageSize": 5})
            check(any(x["stage"] == "rerank" for x in r["timings"]), "new user: %r" % r)
            r = rank(srv.http_port, {"userId": "196", "query": "space", "pageSize": 5})
            check(not any(x["stage"] == "rerank" for x in r["timings"]) and
                  "rerank" not in r.get("degraded", []), "a query was reranked: %r" % r)
            # a budget far below the rank stage's time skips rank and rerank with it
            r = rank(srv.http_port, {"userId": "196", "pageSize": 5}, timeout_ms=0.01)
            check("rank" in r.get("degraded", []) and "rerank" in r["degraded"] and
                  len(r["items"]) == 5, "tight budget: %r" % r)
        finally:
            srv.stop()
    print("ok: reranker lists, training, serving parity and settings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
