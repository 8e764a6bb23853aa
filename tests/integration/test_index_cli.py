#!/usr/bin/python3
"""`funnel index build|search` end to end on generated vectors.

Writes base and query vectors as .fvecs (unit vectors with a low intrinsic dimension, like
text embeddings) and their true neighbours by cosine as .ivecs, computed with numpy. Then:
an exact Flat index finds exactly numpy's neighbours (--ids checked row by row); HNSW reaches
recall@10 >= 0.95 and efSearch trades recall; IVF reaches 1.0 with every list probed; --exact
agrees with the numpy truth; the JSON output has k, qps and recall@k; usage errors exit 2;
a damaged or truncated index, queries of another dimension and a bad factory string exit 1
with a message saying what is wrong, and a failed build leaves no file behind.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

N, NQ, DIM, K = 4000, 100, 32, 10


def write_fvecs(path, x):
    x = np.asarray(x, dtype=np.float32)
    rows = np.empty((x.shape[0], x.shape[1] + 1), dtype=np.float32)
    rows[:, 0] = np.array([x.shape[1]], dtype=np.int32).view(np.float32)[0]
    rows[:, 1:] = x
    rows.tofile(path)


def write_ivecs(path, x):
    x = np.asarray(x, dtype=np.int32)
    rows = np.empty((x.shape[0], x.shape[1] + 1), dtype=np.int32)
    rows[:, 0] = x.shape[1]
    rows[:, 1:] = x
    rows.tofile(path)


def read_ivecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    d = raw[0]
    return raw.reshape(-1, d + 1)[:, 1:]


class Funnel:
    def __init__(self, binary):
        self.binary = binary

    def run(self, *args, rc=0, err=None):
        p = subprocess.run([self.binary, "index", *args], capture_output=True, text=True)
        cmd = " ".join(args)
        assert p.returncode == rc, f"index {cmd}: exit {p.returncode}, expected {rc}\n{p.stderr}"
        if err is not None:
            assert err in p.stderr, f"index {cmd}: stderr lacks {err!r}:\n{p.stderr}"
        return p.stdout

    def json(self, *args):
        return json.loads(self.run(*args, "--json"))


def recall(ids, truth, k):
    return np.mean([len(set(ids[i, :k]) & set(truth[i, :k])) / k for i in range(len(ids))])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--funnel", required=True)
    args = ap.parse_args()
    f = Funnel(args.funnel)
    tmp = tempfile.mkdtemp(prefix="funnel-index-")
    p = lambda name: os.path.join(tmp, name)

    rng = np.random.default_rng(7)
    mix = rng.standard_normal((12, DIM))

    def vectors(n):
        x = rng.standard_normal((n, 12)) @ mix + 0.3 * rng.standard_normal((n, DIM))
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    base, queries = vectors(N), vectors(NQ)
    write_fvecs(p("base.fvecs"), base)
    write_fvecs(p("queries.fvecs"), queries)
    truth = np.argsort(-(queries.astype(np.float32) @ base.astype(np.float32).T), axis=1)[:, :100]
    write_ivecs(p("truth.ivecs"), truth)

    # ---- help and usage errors ----
    out = f.run("--help")
    assert "funnel index build" in out and "--ground-truth" in out and "recall@k" in out
    f.run(rc=2, err="give a subcommand")
    f.run("frobnicate", rc=2, err="unknown subcommand 'frobnicate'")
    f.run("search", "--index", p("x"), "--queries", p("q"), "-k", "0", rc=2,
          err="-k must be from 1 to 100000, got 0")
    f.run("build", "--vectors", p("base.fvecs"), "--factory", "Flat", "--out", p("x"),
          "--threads", "5000", rc=2, err="--threads must be from 0 to 4096, got 5000")
    f.run("add", "--index", p("x"), "--store", p("s"), "--threads", "x", rc=2, err="--threads")
    f.run("build", "--vectors", p("base.fvecs"), "--out", p("x"), rc=2, err="--factory and --out")
    f.run("build", "--factory", "Flat", "--out", p("x"), rc=2, err="--vectors FILE.fvecs or --store")
    f.run("build", "--vectors", p("base.fvecs"), "--store", tmp, "--factory", "Flat", "--out",
          p("x"), rc=2, err="--vectors FILE.fvecs or --store")
    f.run("build", "--vectors", p("base.fvecs"), "--factory", "Flat", "--out", p("x"), "-k", "3",
          rc=2, err="apply to search only")
    f.run("search", "--index", p("x"), "--queries", p("queries.fvecs"), rc=2,
          err="--index, --queries and -k")
    f.run("search", "--index", p("x"), "--queries", p("queries.fvecs"), "-k", "0", rc=2,
          err="-k must be from 1")
    f.run("search", "--index", p("x"), "--queries", p("queries.fvecs"), "-k", "5", "--exact",
          "--ground-truth", p("truth.ivecs"), rc=2, err="not both")
    f.run("search", "--index", p("x"), "--queries", p("queries.fvecs"), "-k", "5", "--vectors",
          p("base.fvecs"), rc=2, err="--vectors goes with build")
    f.run("build", "--vectors", p("base.fvecs"), "--factory", "Flat", "--out", p("x"), "--ef",
          "0", rc=2, err="--ef must be from 1")
    f.run("search", "--index", p("x"), "--queries", p("queries.fvecs"), "-k", "5", "--threads",
          "2", rc=2, err="apply to build only")
    f.run("build", "--store", tmp, "--factory", "Flat", "--out", p("x"), rc=1,
          err="not a store")

    # ---- Flat: exactly numpy's neighbours ----
    built = f.json("build", "--vectors", p("base.fvecs"), "--factory", "Flat", "--out",
                   p("flat.idx"))
    assert built["vectors"] == N and built["dim"] == DIM and built["factory"] == "Flat", built
    r = f.json("search", "--index", p("flat.idx"), "--queries", p("queries.fvecs"), "-k",
               str(K), "--ground-truth", p("truth.ivecs"), "--ids", p("flat-ids.ivecs"))
    assert r["k"] == K and r["queries"] == NQ and r["qps"] > 0 and r["recall@k"] == 1.0, r
    ids = read_ivecs(p("flat-ids.ivecs"))
    assert ids.shape == (NQ, K), ids.shape
    assert (ids == truth[:, :K]).all(), "Flat result ids differ from numpy's ranking"
    r = f.json("search", "--index", p("flat.idx"), "--queries", p("queries.fvecs"), "-k", "3",
               "--exact")
    assert r["recall@k"] == 1.0 and r["k"] == 3, r
    # Without truth there is no recall, and the text output names the figures.
    r = f.json("search", "--index", p("flat.idx"), "--queries", p("queries.fvecs"), "-k", "5")
    assert "recall@k" not in r and r["qps"] > 0, r
    out = f.run("search", "--index", p("flat.idx"), "--queries", p("queries.fvecs"), "-k", "5",
                "--exact")
    assert "queries/s" in out and "recall@5 1.0000" in out, out

    # ---- HNSW: recall, efSearch, --exact agrees with numpy ----
    built = f.json("build", "--vectors", p("base.fvecs"), "--factory", "HNSW32,Flat", "--out",
                   p("hnsw.idx"), "--ef", "48", "--threads", "1")
    assert built["ef_search"] == 48, built
    r = f.json("search", "--index", p("hnsw.idx"), "--queries", p("queries.fvecs"), "-k",
               str(K), "--ground-truth", p("truth.ivecs"), "--ids", p("hnsw-ids.ivecs"))
    print(f"HNSW32,Flat ef 48: recall@10 {r['recall@k']:.4f}, {r['qps']:.0f} queries/s")
    assert r["recall@k"] >= 0.95 and r["ef_search"] == 48, r
    got = recall(read_ivecs(p("hnsw-ids.ivecs")), truth, K)
    assert abs(got - r["recall@k"]) < 1e-9, (got, r)
    ex = f.json("search", "--index", p("hnsw.idx"), "--queries", p("queries.fvecs"), "-k", str(K),
                "--exact")
    assert abs(ex["recall@k"] - r["recall@k"]) < 0.002, (ex, r)
    low = f.json("search", "--index", p("hnsw.idx"), "--queries", p("queries.fvecs"), "-k",
                 str(K), "--ground-truth", p("truth.ivecs"), "--ef", "4")
    high = f.json("search", "--index", p("hnsw.idx"), "--queries", p("queries.fvecs"), "-k",
                  str(K), "--ground-truth", p("truth.ivecs"), "--ef", "256")
    assert low["recall@k"] < high["recall@k"] and high["recall@k"] >= 0.99, (low, high)
    f.run("search", "--index", p("hnsw.idx"), "--queries", p("queries.fvecs"), "-k", "5",
          "--nprobe", "4", rc=1, err="--nprobe applies to IVF")

    # ---- IVF: nprobe; every list probed over Flat codes is exact ----
    built = f.json("build", "--vectors", p("base.fvecs"), "--factory", "IVF64,Flat", "--out",
                   p("ivf.idx"), "--nprobe", "4")
    assert built["nprobe"] == 4 and "ef_search" not in built, built
    few = f.json("search", "--index", p("ivf.idx"), "--queries", p("queries.fvecs"), "-k", str(K),
                 "--ground-truth", p("truth.ivecs"), "--nprobe", "1")
    every = f.json("search", "--index", p("ivf.idx"), "--queries", p("queries.fvecs"), "-k",
                   str(K), "--ground-truth", p("truth.ivecs"), "--nprobe", "64")
    assert every["recall@k"] == 1.0 and few["recall@k"] < every["recall@k"], (few, every)
    f.run("search", "--index", p("ivf.idx"), "--queries", p("queries.fvecs"), "-k", "5", "--ef",
          "10", rc=1, err="--ef applies to HNSW")
    # Product quantisation: --exact over the original vectors with --vectors.
    f.json("build", "--vectors", p("base.fvecs"), "--factory", "IVF16,PQ8x4", "--out",
           p("pq.idx"))
    pq = f.json("search", "--index", p("pq.idx"), "--queries", p("queries.fvecs"), "-k", str(K),
                "--exact", "--vectors", p("base.fvecs"), "--nprobe", "16")
    gt_pq = f.json("search", "--index", p("pq.idx"), "--queries", p("queries.fvecs"), "-k",
                   str(K), "--ground-truth", p("truth.ivecs"), "--nprobe", "16")
    assert abs(pq["recall@k"] - gt_pq["recall@k"]) < 0.002 and pq["recall@k"] > 0.2, (pq, gt_pq)

    # ---- delete and rebuild: tombstones left out of results, then compacted ----
    f.json("build", "--vectors", p("base.fvecs"), "--factory", "HNSW16,Flat", "--out",
           p("edit.idx"))
    gone = list(range(0, N, 10))  # every tenth vector
    rep = f.json("delete", "--index", p("edit.idx"), "--ids", ",".join(map(str, gone)))
    assert rep["deleted"] == len(gone) and rep["live"] == N - len(gone) and \
        rep["tombstones"] == len(gone), rep
    again = f.json("delete", "--index", p("edit.idx"), "--ids", "0,%d" % (N + 5))
    assert again["deleted"] == 0 and again["tombstones"] == len(gone), again
    keep = np.ones(N, dtype=bool)
    keep[gone] = False
    scores = queries.astype(np.float32) @ base.astype(np.float32).T
    scores[:, ~keep] = -np.inf
    live_truth = np.argsort(-scores, axis=1)[:, :K]
    for name in ("edit.idx", "compact.idx"):
        if name == "compact.idx":
            rb = f.json("rebuild", "--index", p("edit.idx"), "--out", p("compact.idx"))
            assert rb["live"] == N - len(gone) and rb["tombstones_before"] == len(gone), rb
        got = f.json("search", "--index", p(name), "--queries", p("queries.fvecs"), "-k", str(K),
                     "--ef", "128", "--ids", p(name + ".ivecs"))
        ids = read_ivecs(p(name + ".ivecs"))
        assert got["vectors"] == N - len(gone), got
        assert not set(ids.ravel()) & set(gone), "%s: a deleted id came back" % name
        assert (ids >= 0).all(), "%s: fewer than k results" % name
        assert recall(ids, live_truth, K) >= 0.95, (name, recall(ids, live_truth, K))
    # a rebuild in place drops the tombstones of the file itself
    rb = f.json("rebuild", "--index", p("edit.idx"))
    assert rb["tombstones_before"] == len(gone), rb
    assert f.json("rebuild", "--index", p("edit.idx"))["tombstones_before"] == 0
    f.run("delete", "--index", p("edit.idx"), rc=2, err="give --ids or --items")
    f.run("delete", "--index", p("edit.idx"), "--ids", "1,x", rc=2, err="'x' is not an index id")
    f.run("delete", "--index", p("edit.idx"), "--ids", "1,,2", rc=2, err="empty entry")
    f.run("delete", "--index", p("edit.idx"), "--items", "a", rc=2,
          err="--items goes with --store")
    f.run("rebuild", "--index", p("nothing.idx"), rc=1, err="nothing.idx")

    # ---- failures: messages, exit 1, nothing half-written ----
    f.run("build", "--vectors", p("base.fvecs"), "--factory", "Bogus99", "--out", p("bad.idx"),
          rc=1, err="factory string 'Bogus99'")
    f.run("build", "--vectors", p("base.fvecs"), "--factory", "IVF8192,Flat", "--out",
          p("bad.idx"), rc=1, err="training")
    assert not [n for n in os.listdir(tmp) if n.startswith("bad.idx")], os.listdir(tmp)
    f.run("build", "--vectors", p("none.fvecs"), "--factory", "Flat", "--out", p("bad.idx"), rc=1,
          err="none.fvecs")
    data = bytearray(open(p("hnsw.idx"), "rb").read())
    data[len(data) // 2] ^= 0x40
    open(p("damaged.idx"), "wb").write(data)
    f.run("search", "--index", p("damaged.idx"), "--queries", p("queries.fvecs"), "-k", "5",
          rc=1, err="damaged.idx: checksum mismatch")
    open(p("cut.idx"), "wb").write(open(p("hnsw.idx"), "rb").read()[:-100])
    f.run("search", "--index", p("cut.idx"), "--queries", p("queries.fvecs"), "-k", "5", rc=1,
          err="cut.idx: not a funnel ANN index")
    write_fvecs(p("q16.fvecs"), vectors(3)[:, :16])
    f.run("search", "--index", p("hnsw.idx"), "--queries", p("q16.fvecs"), "-k", "5", rc=1,
          err="queries of dimension 16, the index has 32")
    f.run("search", "--index", p("hnsw.idx"), "--queries", p("queries.fvecs"), "-k", "200",
          "--ground-truth", p("truth.ivecs"), rc=1, err="100 neighbours")
    print("index CLI: all checks passed")
    subprocess.run(["rm", "-rf", tmp], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
