#!/usr/bin/python3
"""`funnel index build --store` and `funnel index add` end to end.

Loads generated items with vectors into a feature store with `funnel store load`, builds
indexes from it and checks: the item count and dimension, that the index ids are the store's
item numbers (given in the order the items arrived, shown by `funnel store get`), that every
item's own vector finds it first (through --ids and through --results --store, which prints
the item ids, odd bytes included), --vector-key, clear errors for vectors of mismatched
dimension, an item without a vector, a store without items (nothing written) and results
read against another store. `funnel index add` adds the items loaded later (to Flat and to
HNSW), leaves the ones it holds alone and keeps deleted ones out; `funnel index delete
--items` finds items through the store. When the encoder model folder exists, the
--text-key path encodes a few titles (at build and at add) and each title's own embedding
(from `funnel encode`) finds its item first; otherwise that part is skipped.
"""
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

N, DIM, DIM2 = 300, 16, 8


def write_fvecs(path, x):
    x = np.asarray(x, dtype=np.float32)
    rows = np.empty((x.shape[0], x.shape[1] + 1), dtype=np.float32)
    rows[:, 0] = np.array([x.shape[1]], dtype=np.int32).view(np.float32)[0]
    rows[:, 1:] = x
    rows.tofile(path)


def read_ivecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    d = raw[0]
    return raw.reshape(-1, d + 1)[:, 1:]


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def item_json(item_id, vec=None, vec2=None, title=None):
    feat = {"item_id": {"bytesList": {"value": [b64(item_id)]}}}
    if vec is not None:
        feat["emb"] = {"floatList": {"value": [float(v) for v in vec]}}
    if vec2 is not None:
        feat["emb2"] = {"floatList": {"value": [float(v) for v in vec2]}}
    if title is not None:
        feat["title"] = {"bytesList": {"value": [b64(title)]}}
    return json.dumps({"features": {"feature": feat}})


class Funnel:
    def __init__(self, binary):
        self.binary = binary

    def run(self, *args, rc=0, err=None, stdin=None):
        p = subprocess.run([self.binary, *args], capture_output=True, text=True, input=stdin)
        cmd = " ".join(args)
        assert p.returncode == rc, f"{cmd}: exit {p.returncode}, expected {rc}\n{p.stderr}"
        if err is not None:
            assert err in p.stderr, f"{cmd}: stderr lacks {err!r}:\n{p.stderr}"
        return p.stdout

    def store(self, tmp, name, lines, family="items"):
        """A store at tmp/name loaded with the JSON lines (item_id, vector emb)."""
        src = os.path.join(tmp, name + ".jsonl")
        with open(src, "w") as f:
            f.write("\n".join(lines) + "\n")
        rec = os.path.join(tmp, name + ".tfrecord")
        self.run("tfrecord", "from-jsonl", src, rec)
        db = os.path.join(tmp, name)
        self.run("store", "load", "--store", db, "--family", family, "--input", rec,
                 "--id-key", "item_id", "--vector-key", "emb", "--version", "1")
        return db


def results(path):
    return [json.loads(line) for line in open(path)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--funnel", required=True)
    ap.add_argument("--model", required=True)
    args = ap.parse_args()
    f = Funnel(args.funnel)
    tmp = tempfile.mkdtemp(prefix="funnel-index-store-")
    p = lambda name: os.path.join(tmp, name)
    rng = np.random.default_rng(11)

    # Items in shuffled order; ids of several widths so byte order differs from arrival.
    ids = [f"item-{i}" for i in range(N)]
    vecs = rng.standard_normal((N, DIM)) * rng.uniform(0.5, 3.0, (N, 1))  # not normalised
    vecs2 = rng.standard_normal((N, DIM2))
    order = rng.permutation(N)
    first = order[: N - 40]  # loaded now; the last 40 come later, for `index add`
    later = order[N - 40:]
    db = f.store(tmp, "db", [item_json(ids[i], vecs[i], vecs2[i]) for i in first])
    # the store numbers items in the order they arrive
    got = json.loads(f.run("store", "get", "--store", db, "--family", "items", ids[first[7]]))
    assert got["number"] == 7, got
    assert "up to date" in subprocess.run([args.funnel, "store", "upgrade", "--store", db],
                                          capture_output=True, text=True, check=True).stderr

    # ---- usage ----
    out = f.run("index", "--help")
    assert "--text-key" in out and "--vector-key" in out and "store's number" in out, out
    assert "deleted ones stay out" in f.run("index", "add", "--help")
    f.run("index", "build", "--vectors", p("x.fvecs"), "--factory", "Flat", "--out", p("x"),
          "--text-key", "title", rc=2, err="go with --store")
    f.run("index", "build", "--store", db, "--factory", "Flat", "--out", p("x"), "--model",
          args.model, rc=2, err="--model goes with --text-key")
    f.run("index", "search", "--index", p("x"), "--queries", p("x.fvecs"), "-k", "1",
          "--text-key", "t", rc=2, err="apply to build only")
    f.run("index", "search", "--index", p("x"), "--queries", p("x.fvecs"), "-k", "1",
          "--store", db, rc=2, err="--store with --results only")
    f.run("index", "add", "--index", p("x"), rc=2, err="--store DIR is required")
    f.run("index", "rebuild", "--index", p("x"), "--store", db, rc=2, err="goes with add and")
    f.run("index", "rebuild", "--index", p("x"), "--text-key", "t", rc=2, err="go with add")

    # ---- Flat from the store: count, dimension, ids = store numbers, own vector first ----
    n0 = len(first)
    built = json.loads(f.run("index", "build", "--store", db, "--factory", "Flat", "--out",
                             p("flat.idx"), "--json"))
    assert built["vectors"] == n0 and built["dim"] == DIM and built["encoded"] == 0, built
    write_fvecs(p("own.fvecs"), vecs[first])
    r = json.loads(f.run("index", "search", "--index", p("flat.idx"), "--queries",
                         p("own.fvecs"), "-k", "3", "--ids", p("own.ivecs"), "--results",
                         p("own.jsonl"), "--store", db, "--json"))
    assert r["vectors"] == n0 and r["queries"] == n0, r
    got = read_ivecs(p("own.ivecs"))
    assert (got[:, 0] == np.arange(n0)).all(), "an item's own vector did not find its number"
    res = results(p("own.jsonl"))
    assert [x["ids"][0] for x in res] == [ids[i] for i in first], res[:3]
    assert all(len(x["ids"]) == 3 and abs(x["scores"][0] - 1) < 1e-4 for x in res), res[:3]
    # without --store, --results prints the index ids
    f.run("index", "search", "--index", p("flat.idx"), "--queries", p("own.fvecs"), "-k", "1",
          "--results", p("num.jsonl"))
    assert [x["ids"][0] for x in results(p("num.jsonl"))] == list(range(n0))

    # Ids with odd bytes (newline, '%', DEL, not UTF-8) come back as they were.
    odd_ids = ["a%41b", "line\nbreak", "sp ace", "x\x7fy"]
    odd = f.store(tmp, "odd", [item_json(i, vecs[k]) for k, i in enumerate(odd_ids)])
    f.run("index", "build", "--store", odd, "--factory", "Flat", "--out", p("odd.idx"))
    write_fvecs(p("odd.fvecs"), vecs[:4])
    f.run("index", "search", "--index", p("odd.idx"), "--queries", p("odd.fvecs"), "-k", "1",
          "--results", p("odd.jsonl"), "--store", odd)
    assert [x["ids"][0] for x in results(p("odd.jsonl"))] == odd_ids
    # Results read against another store: numbers it does not have are an error, not a guess.
    f.run("index", "search", "--index", p("flat.idx"), "--queries", p("own.fvecs"), "-k", "1",
          "--results", p("r.jsonl"), "--store", odd, rc=1, err="built from another store")

    # ---- HNSW from the store ----
    built = json.loads(f.run("index", "build", "--store", db, "--factory", "HNSW16,Flat",
                             "--out", p("hnsw.idx"), "--threads", "1", "--json"))
    assert built["vectors"] == n0, built
    f.run("index", "search", "--index", p("hnsw.idx"), "--queries", p("own.fvecs"), "-k", "1",
          "--ids", p("hnsw.ivecs"))
    assert (read_ivecs(p("hnsw.ivecs"))[:, 0] == np.arange(n0)).mean() >= 0.99

    # ---- index add: the items loaded since, and an update of one already there ----
    rec = os.path.join(tmp, "later.tfrecord")
    with open(p("later.jsonl"), "w") as fh:
        fh.write("\n".join(item_json(ids[i], vecs[i], vecs2[i]) for i in later) + "\n")
        fh.write(item_json(ids[first[0]], vecs[first[0]], vecs2[first[0]]) + "\n")
    f.run("tfrecord", "from-jsonl", p("later.jsonl"), rec)
    f.run("store", "load", "--store", db, "--family", "items", "--input", rec, "--id-key",
          "item_id", "--vector-key", "emb", "--version", "2")
    for name in ("flat.idx", "hnsw.idx"):
        add = json.loads(f.run("index", "add", "--index", p(name), "--store", db, "--out",
                               p("more-" + name), "--json"))
        assert add["added"] == 40 and add["already"] == n0 and add["live"] == N, add
        write_fvecs(p("all.fvecs"), vecs[order])
        f.run("index", "search", "--index", p("more-" + name), "--queries", p("all.fvecs"),
              "-k", "1", "--ids", p("all.ivecs"), "--results", p("all.jsonl"), "--store", db)
        hits = read_ivecs(p("all.ivecs"))[:, 0] == np.arange(N)
        assert hits.mean() >= (1.0 if name == "flat.idx" else 0.99), (name, hits.mean())
        assert [x["ids"][0] for x in results(p("all.jsonl"))][-40:] == [ids[i] for i in later]
    # nothing new: nothing written
    before = os.path.getmtime(p("more-flat.idx"))
    add = json.loads(f.run("index", "add", "--index", p("more-flat.idx"), "--store", db,
                           "--json"))
    assert add["added"] == 0 and add["already"] == N, add
    assert os.path.getmtime(p("more-flat.idx")) == before
    # a deleted item (found through the store) stays out of later adds until a rebuild
    gone = ids[later[3]]
    d = json.loads(f.run("index", "delete", "--index", p("more-flat.idx"), "--items",
                         gone + ",no-such-item", "--store", db, "--json"))
    assert d["deleted"] == 1 and d["live"] == N - 1, d
    add = json.loads(f.run("index", "add", "--index", p("more-flat.idx"), "--store", db,
                           "--json"))
    assert add["added"] == 0 and add["deleted_kept_out"] == 1, add
    f.run("index", "delete", "--index", p("more-flat.idx"), "--items", gone, rc=2,
          err="--items goes with --store")
    # an item deleted from the store for good (on a copy, the store is used below): the index
    # delete still finds its number, and a build from the store leaves it out
    pruned = p("pruned-store")
    shutil.copytree(db, pruned)
    for_good = ids[later[5]]
    d = json.loads(f.run("store", "delete", "--store", pruned, "--family", "items", for_good,
                         "--json"))
    assert d == {"ids": 1, "deleted": 1, "absent": 0}, d
    d = json.loads(f.run("index", "delete", "--index", p("more-flat.idx"), "--out",
                         p("pruned.idx"), "--items", for_good, "--store", pruned, "--json"))
    assert d["deleted"] == 1 and d["live"] == N - 2, d
    built = json.loads(f.run("index", "build", "--store", pruned, "--factory", "Flat", "--out",
                             p("pruned-rebuilt.idx"), "--json"))
    assert built["vectors"] == N - 1, built
    # an add from that store to the index of the first items passes over the deleted one
    add = json.loads(f.run("index", "add", "--index", p("flat.idx"), "--store", pruned, "--out",
                           p("pruned-add.idx"), "--json"))
    assert add["added"] == 39 and add["already"] == n0 and add["live"] == N - 1, add
    # a store of other vectors is refused
    f.run("index", "add", "--index", p("flat.idx"), "--store", db, "--vector-key", "emb2",
          "--out", p("bad.idx"), rc=1, err="dimension 8, the index 16")

    # ---- --vector-key: a float_list feature instead of the stored vector ----
    built = json.loads(f.run("index", "build", "--store", db, "--factory", "Flat", "--out",
                             p("emb2.idx"), "--vector-key", "emb2", "--json"))
    assert built["vectors"] == N and built["dim"] == DIM2, built
    write_fvecs(p("own2.fvecs"), vecs2[order])
    f.run("index", "search", "--index", p("emb2.idx"), "--queries", p("own2.fvecs"), "-k", "1",
          "--ids", p("own2.ivecs"))
    assert (read_ivecs(p("own2.ivecs"))[:, 0] == np.arange(N)).all()

    # ---- errors: mismatched dimension, no vector, no items; nothing written ----
    bad = f.store(tmp, "bad", [item_json("a-first", vecs[0]), item_json("b-short", vecs[1][:15]),
                               item_json("c-third", vecs[2])])
    f.run("index", "build", "--store", bad, "--factory", "Flat", "--out", p("bad.idx"), rc=1,
          err="item 'b-short': stored vector of dimension 15, but item 'a-first' has dimension 16")
    novec = f.store(tmp, "novec", [item_json("a", vecs[0]), item_json("b")])
    f.run("index", "build", "--store", novec, "--factory", "Flat", "--out", p("bad.idx"), rc=1,
          err="item 'b' has no vector")
    f.run("index", "build", "--store", novec, "--factory", "Flat", "--out", p("bad.idx"),
          "--text-key", "title", "--model", args.model, rc=1,
          err="item 'b' has neither a vector nor a text feature 'title'")
    built = json.loads(f.run("index", "build", "--store", novec, "--factory", "Flat", "--out",
                             p("skip.idx"), "--skip-missing", "--json"))
    assert built["vectors"] == 1 and built["skipped"] == 1, built
    write_fvecs(p("a.fvecs"), vecs[:1])
    f.run("index", "search", "--index", p("skip.idx"), "--queries", p("a.fvecs"), "-k", "2",
          "--results", p("a.jsonl"), "--store", novec)
    assert results(p("a.jsonl"))[0]["ids"] == ["a"]
    users = f.store(tmp, "users", [item_json("u1", vecs[0])], family="users")
    f.run("index", "build", "--store", users, "--factory", "Flat", "--out", p("bad.idx"), rc=1,
          err="has no items to index")
    f.run("index", "build", "--store", p("nostore"), "--factory", "Flat", "--out", p("bad.idx"),
          rc=1, err="no store there")
    assert not [n for n in os.listdir(tmp) if n.startswith("bad.idx")], os.listdir(tmp)

    # ---- --text-key through the encoder ----
    if not os.path.isfile(os.path.join(args.model, "model.safetensors")):
        print(f"SKIP --text-key: no encoder model in {args.model} (scripts/fetch-model)")
    else:
        titles = {"m-1": "Toy Story (1995)", "m-2": "GoldenEye (1995)",
                  "m-3": "Four Rooms (1995)", "m-4": "Get Shorty (1995)",
                  "m-5": "Copycat (1995)", "m-6": "Twelve Monkeys (1995)"}
        texts = f.store(tmp, "texts", [item_json(i, title=t) for i, t in titles.items()])
        built = json.loads(f.run("index", "build", "--store", texts, "--factory", "Flat",
                                 "--out", p("texts.idx"), "--text-key", "title", "--model",
                                 args.model, "--threads", "2", "--json"))
        assert built["vectors"] == 6 and built["dim"] == 384 and built["encoded"] == 6, built
        # two more titles, encoded by index add
        more = {"m-7": "Babe (1995)", "m-8": "Dead Man Walking (1995)"}
        src = p("more-titles.jsonl")
        with open(src, "w") as fh:
            fh.write("".join(item_json(i, title=t) + "\n" for i, t in more.items()))
        f.run("tfrecord", "from-jsonl", src, p("more-titles.tfrecord"))
        f.run("store", "load", "--store", texts, "--family", "items", "--input",
              p("more-titles.tfrecord"), "--id-key", "item_id", "--version", "1")
        add = json.loads(f.run("index", "add", "--index", p("texts.idx"), "--store", texts,
                               "--text-key", "title", "--model", args.model, "--threads", "2",
                               "--json"))
        assert add["added"] == 2 and add["encoded"] == 2 and add["live"] == 8, add
        titles.update(more)
        f.run("encode", "--model", args.model, "--threads", "2", "--fvecs", p("titles.fvecs"),
              stdin="".join(titles[i] + "\n" for i in sorted(titles)))
        f.run("index", "search", "--index", p("texts.idx"), "--queries", p("titles.fvecs"),
              "-k", "2", "--results", p("texts.jsonl"), "--store", texts)
        res = results(p("texts.jsonl"))
        assert [x["ids"][0] for x in res] == sorted(titles), res
        assert all(x["scores"][0] > 0.999 for x in res), res
        # A store mixing stored vectors of another dimension with texts names both items.
        mixed = f.store(tmp, "mixed", [item_json("a-vec", vecs[0]),
                                       item_json("b-text", title="Toy Story")])
        f.run("index", "build", "--store", mixed, "--factory", "Flat", "--out", p("bad.idx"),
              "--text-key", "title", "--model", args.model, rc=1,
              err="item 'b-text': encoded text of dimension 384, but item 'a-vec' has "
                  "dimension 16")
        # index add to an index of other vectors stops at the encoder, before any text
        f.run("index", "build", "--store", mixed, "--factory", "Flat", "--out",
              p("vec16.idx"), "--skip-missing")
        f.run("index", "add", "--index", p("vec16.idx"), "--store", mixed, "--text-key",
              "title", "--model", args.model, "--out", p("bad.idx"), rc=1,
              err="gives vectors of dimension 384, the index 16")
        assert not os.path.exists(p("bad.idx"))
        print("--text-key: 6 titles encoded at build and 2 at add, each found first by its own "
              "embedding")

    print("index --store CLI: all checks passed")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
