#!/usr/bin/env python3
"""ANN recall and speed: funnel's index (FAISS through its C API) against FAISS's own Python API
and hnswlib, on MiniLM embeddings of real texts, one run side by side.

Run it with Debian's Python (python3-faiss, python3-hnswlib, python3-numpy; scripts/install-deps):

  /usr/bin/python3 bench/ann.py --funnel BUILD/src/tools/funnel [--model models/all-MiniLM-L6-v2]
      [--overhead-bench BUILD/bench/bench_ann_overhead] [--n 50000] [--queries 1000] [--json]

Corpus. The Debian package descriptions of the machine's apt lists: every package that
`apt-cache dumpavail` lists, its Description-md5 looked up in the lists' Translation-en files
(the long descriptions; Debian images often leave them out: fetch them with
`apt-get update -o Acquire::Languages=en`). A text is the summary line and the long description
joined into one line (paragraph dots dropped, whitespace collapsed). Texts are deduplicated,
sorted, and shuffled with random.Random(--seed); the first --n are the indexed items, and the
summary lines (first line only) of the next --queries descriptions are the queries: short
search-like texts of packages that are not in the index (held out), so no query is a copy of an
item. How many descriptions the lists gave is printed (the lists read: in the --json output).

Vectors. `funnel encode --model DIR --fvecs OUT --threads T --batch 64 --max-len L` (texts fed
in order of length so batches pad little, then put back in order), L2-normalised, dimension 384.
Cached under bench/.cache/ann/ (git-ignored) by a hash of the texts, the model and the options,
together with the exact ground truth: the top 100 of every query by inner product over all
items, numpy float32 (.ivecs).

Engines, every search one query at a time on one thread, k = 10, QPS: the best of --rounds
loops over all queries (the Python and C loops after 50 warm-up queries); recall@10 = share of
the 10 true neighbours among the 10 results:
  funnel          `funnel index build` (--threads T) then `funnel index search --ground-truth
                  --json` per parameter (HNSW32,Flat: efSearch; IVF<nlist>,Flat: nprobe)
  faiss-py        Debian's python3-faiss on the very index file funnel wrote (faiss.read_index
                  ignores funnel's trailer): same graph, so recall must match funnel's; its QPS
                  is that of Debian's build (reported: Debian ships the GENERIC, non-AVX2 one)
  faiss-py built  the same factory string built by python3-faiss itself (its own graph / k-means)
  hnswlib         Debian's python3-hnswlib, space 'ip', M=32 (HNSW32's graph: 32 links per
                  upper level, 64 at level 0, in both libraries) and M=16 (half of it),
                  ef_construction=40 (FAISS's HNSW default), set_ef per efSearch
  faiss-c         with --overhead-bench: a C loop over FAISS's C API (the same AVX2 libfaiss
                  funnel links) on funnel's index file, beside funnel's fn_ann_search on it, in
                  one process (bench/bench_ann_overhead.c: blocks of 50 queries, the sides
                  alternating, per query the fastest of --rounds): funnel's per-query overhead
                  over raw FAISS. --aa adds an A/A run per parameter (two raw copies of the
                  file), the noise floor of that comparison; and the same comparison on a
                  16-vector Flat index (20 rounds), where FAISS's own search is ~3 us, gives
                  funnel's fixed cost per call in microseconds.
The QPS of the faiss-c / funnel fn_ann rows is over all rounds; the overhead table uses the
per-query minima.
"""

import argparse
import glob
import hashlib
import json
import os
import random
import re
import shlex
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
CACHE_VERSION = 1
K = 10
GT_K = 100



def faiss_threads(faiss, n):
    """FAISS's OpenMP threads and those of the OpenBLAS it does flat search's products in."""
    from blas_threads import set_blas_threads
    faiss.omp_set_num_threads(n)
    set_blas_threads(n)

def die(msg):
    sys.exit("ann: " + msg)


def log(msg):
    print("ann: " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# corpus

def read_lines(cmd):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE).stdout.decode("utf-8", "replace")


def clean(s):
    return re.sub(r"\s+", " ", s).strip()


def corpus(n, nq, seed):
    """(items, queries, info): n item texts and nq query texts, see the module doc."""
    md5s = set()
    for line in read_lines(["apt-cache", "dumpavail"]).splitlines():
        if line.startswith("Description-md5:"):
            md5s.add(line.split(":", 1)[1].strip())
    files = sorted(glob.glob("/var/lib/apt/lists/*_i18n_Translation-en*"))
    if not files:
        die("no Translation-en files in /var/lib/apt/lists (the long descriptions): run "
            "'apt-get update -o Acquire::Languages=en' first")
    full = {}  # md5 -> (summary, text)
    for f in files:
        md5, lines = None, []
        data = read_lines(["/usr/lib/apt/apt-helper", "cat-file", f])
        for line in data.splitlines() + [""]:
            if line.startswith("Description-md5:"):
                md5 = line.split(":", 1)[1].strip()
            elif line.startswith("Description-en:"):
                lines = [line.split(":", 1)[1]]
            elif line.startswith(" ") and lines:
                lines.append("" if line.strip() == "." else line)
            elif not line.strip():
                if md5 and lines and md5 in md5s:
                    full[md5] = (clean(lines[0]), clean(" ".join(lines)))
                md5, lines = None, []
    texts = {}
    for summary, text in full.values():
        texts.setdefault(text, summary)
    order = sorted(texts)
    random.Random(seed).shuffle(order)
    if len(order) < n + nq:
        die(f"only {len(order)} distinct descriptions, {n} + {nq} needed")
    items = order[:n]
    queries = [texts[t] for t in order[n:n + nq]]
    info = {"packages_with_md5": len(md5s), "descriptions": len(full), "distinct": len(order),
            "lists": [os.path.basename(f) for f in files]}
    return items, queries, info


# ---------------------------------------------------------------------------------------------
# vectors

def write_vecs(path, arr, dtype):
    import numpy as np
    arr = np.ascontiguousarray(arr, dtype=dtype)
    n, d = arr.shape
    out = np.empty((n, d + 1), dtype=dtype)
    out.view(np.int32)[:, 0] = d
    out[:, 1:] = arr
    out.tofile(path + ".tmp")
    os.replace(path + ".tmp", path)


def read_vecs(path, dtype):
    import numpy as np
    raw = np.fromfile(path, dtype=np.int32)
    d = int(raw[0])
    return raw.reshape(-1, d + 1)[:, 1:].copy().view(dtype)


def encode(funnel, model, texts, out, threads, batch, max_len):
    """Encodes texts with funnel encode into out (.fvecs), longest first, in input order."""
    import numpy as np
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    cmd = [funnel, "encode", "--model", model, "--fvecs", out + ".part", "--threads", str(threads),
           "--batch", str(batch), "--max-len", str(max_len)]
    log(f"encoding {len(texts)} texts: {' '.join(map(shlex.quote, cmd))}")
    t0 = time.time()
    data = "".join(texts[i] + "\n" for i in order).encode()
    subprocess.run(cmd, input=data, check=True, stdout=subprocess.DEVNULL)
    log(f"  {len(texts) / (time.time() - t0):.0f} texts/s")
    v = read_vecs(out + ".part", np.float32)
    if len(v) != len(texts):
        die(f"funnel encode wrote {len(v)} vectors for {len(texts)} texts")
    back = np.empty_like(v)
    back[np.array(order)] = v
    write_vecs(out, back, np.float32)
    os.remove(out + ".part")


def normalise(x):
    import numpy as np
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def ground_truth(xb, xq, k):
    import numpy as np
    gt = np.empty((len(xq), k), dtype=np.int32)
    for i in range(0, len(xq), 256):
        s = xq[i:i + 256] @ xb.T
        top = np.argpartition(-s, k, axis=1)[:, :k]
        ts = np.take_along_axis(s, top, axis=1)
        gt[i:i + 256] = np.take_along_axis(top, np.argsort(-ts, axis=1, kind="stable"), axis=1)
    return gt


def prepare(args):
    """The cache folder with base.fvecs, queries.fvecs, gt.ivecs, and the corpus info."""
    items, queries, info = corpus(args.n, args.queries, args.seed)
    h = hashlib.sha256()
    for t in items + ["\0"] + queries:
        h.update(t.encode() + b"\n")
    st = os.stat(os.path.join(args.model, "model.safetensors"))
    h.update(json.dumps([CACHE_VERSION, os.path.abspath(args.model), st.st_size, st.st_mtime,
                         args.max_len]).encode())
    d = os.path.join(args.cache, h.hexdigest()[:16])
    os.makedirs(d, exist_ok=True)
    info["cache"] = os.path.relpath(d, ROOT)
    base, qv, gt = (os.path.join(d, f) for f in ("base.fvecs", "queries.fvecs", "gt.ivecs"))
    if not os.path.exists(base):
        encode(args.funnel, args.model, items, base, args.threads, args.batch, args.max_len)
    if not os.path.exists(qv):
        encode(args.funnel, args.model, queries, qv, args.threads, args.batch, args.max_len)
    import numpy as np
    xb, xq = normalise(read_vecs(base, np.float32)), normalise(read_vecs(qv, np.float32))
    if not os.path.exists(gt):
        write_vecs(gt, ground_truth(xb, xq, GT_K), np.int32)
    with open(os.path.join(d, "samples.json"), "w") as f:
        json.dump({"items": items[:5], "queries": queries[:5]}, f, indent=1)
    info["item_chars_mean"] = sum(map(len, items)) / len(items)
    info["query_chars_mean"] = sum(map(len, queries)) / len(queries)
    info["sample_query"] = queries[0]
    return d, base, qv, gt, xb, xq, read_vecs(gt, np.int32)[:, :K], info


# ---------------------------------------------------------------------------------------------
# engines

def recall_at(res, gt):
    hits = 0
    for r, g in zip(res, gt):
        hits += len(set(int(x) for x in r[:K]) & set(int(x) for x in g[:K]))
    return hits / (len(gt) * K)


def timed_loop(search_one, xq, warm=50):
    for i in range(min(warm, len(xq))):
        search_one(xq[i:i + 1])
    res = [None] * len(xq)
    t0 = time.perf_counter()
    for i in range(len(xq)):
        res[i] = search_one(xq[i:i + 1])
    secs = time.perf_counter() - t0
    return res, len(xq) / secs


def run_json(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        die(f"{' '.join(map(shlex.quote, cmd))} failed:\n{p.stderr.decode(errors='replace')}")
    return json.loads(p.stdout.decode().strip().splitlines()[-1])


def funnel_build(args, d, base, factory):
    out = os.path.join(d, factory.replace(",", "_") + ".faiss")
    t0 = time.time()
    b = run_json([args.funnel, "index", "build", "--vectors", base, "--factory", factory,
                  "--out", out, "--threads", str(args.threads), "--json"])
    log(f"funnel index build {factory}: train {b['train_s']} s, add {b['add_s']} s "
        f"({time.time() - t0:.1f} s)")
    return out, b


def funnel_search(args, index, qv, gt, flag, val):
    return run_json([args.funnel, "index", "search", "--index", index, "--queries", qv,
                     "--ground-truth", gt, "-k", str(K), flag, str(val), "--json"])


def faiss_params(faiss, index, name, val):
    inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else index
    inner = faiss.downcast_index(inner)
    if name == "efSearch":
        inner.hnsw.efSearch = val
    else:
        inner.nprobe = val


def best_of(rounds, search_one, xq, gt):
    """(recall@10, best QPS of rounds timed loops)."""
    best, res = 0, None
    for _ in range(rounds):
        res, qps = timed_loop(search_one, xq)
        best = max(best, qps)
    return recall_at(res, gt), best


def faiss_run(faiss, index, xq, gt, rounds):
    return best_of(rounds, lambda q: index.search(q, K)[1][0], xq, gt)


def overhead_run(args, index, qv, gt, flag, val, extra=()):
    cmd = shlex.split(args.overhead_bench) + ["--index", index, "--queries", qv, "--ground-truth",
                                              gt, "-k", str(K), flag, str(val),
                                              "--rounds", str(args.rounds)] + list(extra)
    return run_json(cmd)


# ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--funnel", required=True, help="BUILD/src/tools/funnel")
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--overhead-bench", help="BUILD/bench/bench_ann_overhead (a command)")
    ap.add_argument("--cache", default=os.path.join(HERE, ".cache", "ann"))
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2, help="encoding and index build threads")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--ef", default="16,32,64,128,256")
    ap.add_argument("--nlist", type=int, default=1024)
    ap.add_argument("--nprobe", default="1,4,16,64")
    ap.add_argument("--rounds", type=int, default=3,
                    help="timed rounds per engine and parameter (the best counts)")
    ap.add_argument("--hnswlib-m", default="32,16", help="hnswlib graphs (M values)")
    ap.add_argument("--aa", action="store_true",
                    help="also an A/A run of the overhead bench per parameter (two raw FAISS "
                    "copies): the comparison's noise floor")
    ap.add_argument("--no-faiss-build", action="store_true",
                    help="skip the indexes python3-faiss builds itself")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not os.path.exists(args.funnel):
        die(f"{args.funnel} not found")
    import numpy as np
    import faiss
    import hnswlib
    faiss_threads(faiss, 1)
    efs = [int(x) for x in args.ef.split(",") if x]
    nprobes = [int(x) for x in args.nprobe.split(",") if x]

    d, base, qv, gtf, xb, xq, gt, info = prepare(args)
    log(f"corpus: {info['distinct']} distinct descriptions; {len(xb)} items, {len(xq)} queries, "
        f"dim {xb.shape[1]}")
    rows = []  # engine, index, param name, value, recall, qps, note

    def add(engine, factory, pname, val, rec, qps):
        rows.append({"engine": engine, "index": factory, "param": pname, "value": val,
                     "recall@10": rec, "qps": qps})
        log(f"  {engine:16s} {factory:14s} {pname} {val:4d}: recall@10 {rec:.4f}, {qps:.0f} q/s")

    hnsw = "HNSW32,Flat"
    ivf = f"IVF{args.nlist},Flat"
    builds = {}
    overhead = []
    for factory, pname, flag, vals in ((hnsw, "efSearch", "--ef", efs),
                                       (ivf, "nprobe", "--nprobe", nprobes)):
        index_file, b = funnel_build(args, d, base, factory)
        builds[factory] = {"funnel_s": b["train_s"] + b["add_s"]}
        for v in vals:
            rs = [funnel_search(args, index_file, qv, gtf, flag, v) for _ in range(args.rounds)]
            add("funnel", factory, pname, v, rs[0]["recall@k"], max(r["qps"] for r in rs))
        if args.overhead_bench:
            for v in vals:
                r = overhead_run(args, index_file, qv, gtf, flag, v)
                # QPS over all rounds (as the loops of the other engines count them); the
                # overhead table below compares the per-query minima
                add("faiss-c (raw)", factory, pname, v, r["faiss_recall"], 1e6 / r["mean_faiss_us"])
                add("funnel fn_ann", factory, pname, v, r["funnel_recall"],
                    1e6 / r["mean_funnel_us"])
                overhead.append(dict(r, index=factory, param=pname, value=v))
                if args.aa:
                    a = overhead_run(args, index_file, qv, gtf, flag, v, ["--aa"])
                    overhead[-1]["aa_pct"] = a["overhead_pct"]
        # python3-faiss on funnel's own file
        faiss_threads(faiss, 1)
        index = faiss.read_index(index_file)
        for v in vals:
            faiss_params(faiss, index, pname, v)
            add("faiss-py (file)", factory, pname, v, *faiss_run(faiss, index, xq, gt, args.rounds))
        del index
        if not args.no_faiss_build:
            faiss_threads(faiss, args.threads)
            t0 = time.time()
            index = faiss.index_factory(xb.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
            index.train(xb)
            index.add(xb)
            builds[factory]["faiss_py_s"] = time.time() - t0
            log(f"python3-faiss build {factory}: {builds[factory]['faiss_py_s']:.1f} s")
            faiss_threads(faiss, 1)
            for v in vals:
                if pname == "efSearch":
                    faiss.downcast_index(index).hnsw.efSearch = v
                else:
                    faiss.extract_index_ivf(index).nprobe = v
                add("faiss-py (built)", factory, pname, v, *faiss_run(faiss, index, xq, gt, args.rounds))
            del index

    # funnel's fixed cost per call: the same comparison on a 16-vector Flat index, whose own
    # search takes ~3 µs, so that the difference is funnel's work alone
    fixed = None
    if args.overhead_bench:
        tiny = os.path.join(d, "tiny16.fvecs")
        write_vecs(tiny, xb[:16], np.float32)
        tiny_index = os.path.join(d, "tiny16_Flat.faiss")
        run_json([args.funnel, "index", "build", "--vectors", tiny, "--factory", "Flat", "--out",
                  tiny_index, "--threads", "1", "--json"])
        cmd = shlex.split(args.overhead_bench) + ["--index", tiny_index, "--queries", qv, "-k",
                                                  str(K), "--rounds", "20"]
        fixed = run_json(cmd)
        fixed["aa"] = run_json(cmd + ["--aa"])
        log(f"fixed cost per call (16-vector Flat): FAISS {fixed['faiss_us']:.2f} µs, funnel "
            f"{fixed['funnel_us']:.2f} µs (A/A: {fixed['aa']['faiss_us']:.2f} / "
            f"{fixed['aa']['funnel_us']:.2f})")

    # hnswlib: M=32 is HNSW32's graph (FAISS: M links per upper level, 2*M at level 0; hnswlib
    # the same), M=16 the half-size graph often used with hnswlib
    for m in [int(x) for x in args.hnswlib_m.split(",") if x]:
        t0 = time.time()
        h = hnswlib.Index(space="ip", dim=xb.shape[1])
        h.init_index(max_elements=len(xb), M=m, ef_construction=40, random_seed=100)
        h.add_items(xb, np.arange(len(xb)), num_threads=args.threads)
        builds[f"hnswlib M={m}"] = {"s": time.time() - t0}
        log(f"hnswlib M={m} build: {time.time() - t0:.1f} s")
        h.set_num_threads(1)
        for v in efs:
            h.set_ef(max(v, K))
            add("hnswlib", f"M={m},efC=40", "efSearch", v,
                *best_of(args.rounds, lambda q: h.knn_query(q, k=K, num_threads=1)[0][0], xq, gt))
        del h

    compile_opts = faiss.get_compile_options() if hasattr(faiss, "get_compile_options") else "?"
    meta = {"corpus": info, "builds": builds, "faiss_py_version": faiss.__version__,
            "faiss_py_compile_options": compile_opts, "hnswlib": deb_version("python3-hnswlib"),
            "machine": machine()}
    if args.json:
        print(json.dumps({"rows": rows, "overhead": overhead, "fixed": fixed, "meta": meta},
                         indent=1))
        return
    print(f"ANN: {len(xb)} Debian package descriptions (all-MiniLM-L6-v2, dim {xb.shape[1]}), "
          f"{len(xq)} held-out package summaries as queries, k={K}, one query at a time, "
          f"one thread, best of {args.rounds} rounds")
    print(f"machine: {meta['machine']}; python3-faiss {faiss.__version__} ({compile_opts}), "
          f"hnswlib {meta['hnswlib']}")
    print()
    print("| index | param | engine | recall@10 | QPS | QPS vs funnel |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    engines = ["funnel", "faiss-c (raw)", "funnel fn_ann", "faiss-py (file)", "faiss-py (built)",
               "hnswlib"]
    ref = {(r["param"], r["value"]): r["qps"] for r in rows if r["engine"] == "funnel"}
    for r in sorted(rows, key=lambda r: (r["param"], r["value"], engines.index(r["engine"]),
                                         -len(r["index"]), r["index"])):
        f = ref.get((r["param"], r["value"]))
        ratio = f"{r['qps'] / f:.2f}×" if f and r["engine"] != "funnel" else ""
        print(f"| {r['index']} | {r['param']} {r['value']} | {r['engine']} | "
              f"{r['recall@10']:.4f} | {r['qps']:,.0f} | {ratio} |")
    if overhead:
        print()
        print("funnel's per-query overhead over raw FAISS (same AVX2 libfaiss, same file, "
              "one process):")
        print()
        print("| index | param | raw FAISS C API µs/query | funnel fn_ann_search µs/query | "
              "overhead | A/A (raw vs raw copy) | identical results |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for o in overhead:
            aa = f"{o['aa_pct']:+.1f}%" if "aa_pct" in o else ""
            print(f"| {o['index']} | {o['param']} {o['value']} | {o['faiss_us']:.1f} | "
                  f"{o['funnel_us']:.1f} | {o['overhead_pct']:+.1f}% | {aa} | "
                  f"{o['same_results'] * 100:.1f}% |")
    if fixed:
        print()
        print(f"funnel's fixed cost per call (16-vector Flat index, 20 rounds): raw FAISS "
              f"{fixed['faiss_us']:.2f} µs, funnel {fixed['funnel_us']:.2f} µs, difference "
              f"{fixed['funnel_us'] - fixed['faiss_us']:.2f} µs per query; A/A (two raw copies): "
              f"{fixed['aa']['faiss_us']:.2f} / {fixed['aa']['funnel_us']:.2f} µs")
    print()
    print("builds, seconds: " + ", ".join(
        f"{k}: " + " / ".join(f"{kk} {vv:.1f}" for kk, vv in v.items()) for k, v in builds.items()))
    c = meta["corpus"]
    print(f"corpus: {c.get('distinct')} distinct descriptions of {c.get('packages_with_md5')} "
          f"package descriptions; mean item {c.get('item_chars_mean', 0):.0f} chars, "
          f"query {c.get('query_chars_mean', 0):.0f} chars; cache {c.get('cache')}")


def deb_version(pkg):
    p = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
    return p.stdout.decode().strip() or "?"


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {model}"


if __name__ == "__main__":
    main()
