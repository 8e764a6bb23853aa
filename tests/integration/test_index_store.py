#!/usr/bin/python3
"""`funnel index build --store` end to end.

Loads generated items with vectors into a feature store with `funnel store load`, builds
indexes from it and checks: the item count and dimension, the ids sidecar (INDEX.ids: item
ids in the store's byte order, ANN id = line), that every item's own vector finds it first
(through --ids and through --results, which prints the item ids), --vector-key, clear errors
for vectors of mismatched dimension, an item without a vector and a store without items
(nothing written), a --vectors build removing a stale sidecar, and a damaged sidecar. When
the encoder model folder exists, the --text-key path encodes a few titles and each title's
own embedding (from `funnel encode`) finds its item first; otherwise that part is skipped.
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


def read_sidecar(path):
    lines = open(path, "rb").read().split(b"\n")
    assert lines[-1] == b"" and lines[-2].startswith(b"end "), lines[-3:]
    head = lines[0].split()
    assert head[:2] == [b"funnel-ann-ids", b"1"], head
    ids = lines[1:-2]
    assert int(head[2]) == len(ids), (head, len(ids))
    return [i.decode() for i in ids]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--funnel", required=True)
    ap.add_argument("--model", required=True)
    args = ap.parse_args()
    f = Funnel(args.funnel)
    tmp = tempfile.mkdtemp(prefix="funnel-index-store-")
    p = lambda name: os.path.join(tmp, name)
    rng = np.random.default_rng(11)

    # Items in shuffled order; ids of several widths so byte order differs from numbers.
    ids = [f"item-{i}" for i in range(N)]
    vecs = rng.standard_normal((N, DIM)) * rng.uniform(0.5, 3.0, (N, 1))  # not normalised
    vecs2 = rng.standard_normal((N, DIM2))
    order = rng.permutation(N)
    db = f.store(tmp, "db", [item_json(ids[i], vecs[i], vecs2[i]) for i in order])
    byte_order = sorted(range(N), key=lambda i: ids[i].encode())
    want_ids = [ids[i] for i in byte_order]

    # ---- usage ----
    out = f.run("index", "--help")
    assert "--text-key" in out and "--vector-key" in out and ".ids" in out, out
    f.run("index", "build", "--vectors", p("x.fvecs"), "--factory", "Flat", "--out", p("x"),
          "--text-key", "title", rc=2, err="go with --store")
    f.run("index", "build", "--store", db, "--factory", "Flat", "--out", p("x"), "--model",
          args.model, rc=2, err="--model goes with --text-key")
    f.run("index", "search", "--index", p("x"), "--queries", p("x.fvecs"), "-k", "1",
          "--text-key", "t", rc=2, err="apply to build only")

    # ---- Flat from the store: count, dimension, sidecar, own vector first ----
    built = json.loads(f.run("index", "build", "--store", db, "--factory", "Flat", "--out",
                             p("flat.idx"), "--json"))
    assert built["vectors"] == N and built["dim"] == DIM and built["encoded"] == 0, built
    assert built["ids"] == p("flat.idx.ids"), built
    assert read_sidecar(p("flat.idx.ids")) == want_ids, "sidecar ids are not in byte order"
    write_fvecs(p("own.fvecs"), vecs[byte_order])
    r = json.loads(f.run("index", "search", "--index", p("flat.idx"), "--queries",
                         p("own.fvecs"), "-k", "3", "--ids", p("own.ivecs"), "--results",
                         p("own.jsonl"), "--json"))
    assert r["vectors"] == N and r["queries"] == N, r
    got = read_ivecs(p("own.ivecs"))
    assert (got[:, 0] == np.arange(N)).all(), "an item's own vector did not find it first"
    res = [json.loads(line) for line in open(p("own.jsonl"))]
    assert len(res) == N
    assert [x["ids"][0] for x in res] == want_ids, res[:3]
    assert all(len(x["ids"]) == 3 and abs(x["scores"][0] - 1) < 1e-4 for x in res), res[:3]
    # Deterministic: a rebuild writes the same sidecar.
    f.run("index", "build", "--store", db, "--factory", "Flat", "--out", p("flat2.idx"))
    assert open(p("flat2.idx.ids"), "rb").read() == open(p("flat.idx.ids"), "rb").read()

    # Ids with bytes the sidecar escapes (newline, '%', DEL) come back as they were.
    odd_ids = ["a%41b", "line\nbreak", "sp ace", "x\x7fy"]
    odd = f.store(tmp, "odd", [item_json(i, vecs[k]) for k, i in enumerate(odd_ids)])
    f.run("index", "build", "--store", odd, "--factory", "Flat", "--out", p("odd.idx"))
    side = open(p("odd.idx.ids"), "rb").read()
    assert b"a%2541b\nline%0Abreak\nsp ace\nx%7Fy\n" in side, side
    write_fvecs(p("odd.fvecs"), vecs[:4])
    f.run("index", "search", "--index", p("odd.idx"), "--queries", p("odd.fvecs"), "-k", "1",
          "--results", p("odd.jsonl"))
    assert [json.loads(line)["ids"][0] for line in open(p("odd.jsonl"))] == odd_ids

    # ---- HNSW from the store ----
    built = json.loads(f.run("index", "build", "--store", db, "--factory", "HNSW16,Flat",
                             "--out", p("hnsw.idx"), "--threads", "1", "--json"))
    assert built["vectors"] == N, built
    f.run("index", "search", "--index", p("hnsw.idx"), "--queries", p("own.fvecs"), "-k", "1",
          "--ids", p("hnsw.ivecs"))
    assert (read_ivecs(p("hnsw.ivecs"))[:, 0] == np.arange(N)).mean() >= 0.99

    # ---- --vector-key: a float_list feature instead of the stored vector ----
    built = json.loads(f.run("index", "build", "--store", db, "--factory", "Flat", "--out",
                             p("emb2.idx"), "--vector-key", "emb2", "--json"))
    assert built["vectors"] == N and built["dim"] == DIM2, built
    write_fvecs(p("own2.fvecs"), vecs2[byte_order])
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
    assert read_sidecar(p("skip.idx.ids")) == ["a"]
    users = f.store(tmp, "users", [item_json("u1", vecs[0])], family="users")
    f.run("index", "build", "--store", users, "--factory", "Flat", "--out", p("bad.idx"), rc=1,
          err="has no items to index")
    f.run("index", "build", "--store", p("nostore"), "--factory", "Flat", "--out", p("bad.idx"),
          rc=1, err="no store there")
    assert not [n for n in os.listdir(tmp) if n.startswith("bad.idx")], os.listdir(tmp)

    # ---- a damaged sidecar is refused; a --vectors build removes a stale one ----
    data = bytearray(open(p("flat.idx.ids"), "rb").read())
    data[len(data) // 2] ^= 0x01
    open(p("flat2.idx.ids"), "wb").write(data)
    f.run("index", "search", "--index", p("flat2.idx"), "--queries", p("own.fvecs"), "-k", "1",
          "--results", p("r.jsonl"), rc=1, err="flat2.idx.ids: checksum mismatch")
    open(p("flat2.idx.ids"), "wb").write(open(p("flat.idx.ids"), "rb").read()[:-5])
    f.run("index", "search", "--index", p("flat2.idx"), "--queries", p("own.fvecs"), "-k", "1",
          "--results", p("r.jsonl"), rc=1, err="flat2.idx.ids: not a funnel item id file")
    f.run("index", "build", "--vectors", p("own.fvecs"), "--factory", "Flat", "--out",
          p("flat2.idx"))
    assert not os.path.exists(p("flat2.idx.ids")), "a --vectors build left a stale .ids"
    f.run("index", "search", "--index", p("flat2.idx"), "--queries", p("own.fvecs"), "-k", "1",
          "--results", p("r.jsonl"))
    assert json.loads(open(p("r.jsonl")).readline())["ids"] == [0]

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
        assert read_sidecar(p("texts.idx.ids")) == sorted(titles), "text sidecar order"
        f.run("encode", "--model", args.model, "--threads", "2", "--fvecs", p("titles.fvecs"),
              stdin="".join(titles[i] + "\n" for i in sorted(titles)))
        f.run("index", "search", "--index", p("texts.idx"), "--queries", p("titles.fvecs"),
              "-k", "2", "--results", p("texts.jsonl"))
        res = [json.loads(line) for line in open(p("texts.jsonl"))]
        assert [x["ids"][0] for x in res] == sorted(titles), res
        assert all(x["scores"][0] > 0.999 for x in res), res
        # A store mixing stored vectors of another dimension with texts names both items.
        mixed = f.store(tmp, "mixed", [item_json("a-vec", vecs[0]),
                                       item_json("b-text", title="Toy Story")])
        f.run("index", "build", "--store", mixed, "--factory", "Flat", "--out", p("bad.idx"),
              "--text-key", "title", "--model", args.model, rc=1,
              err="item 'b-text': encoded text of dimension 384, but item 'a-vec' has "
                  "dimension 16")
        print("--text-key: 6 titles encoded, each found first by its own embedding")

    print("index --store CLI: all checks passed")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
