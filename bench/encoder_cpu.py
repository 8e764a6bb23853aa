#!/usr/bin/env python3
"""Text encoder on CPU: funnel against ONNX Runtime, all-MiniLM-L6-v2, one run side by side.

Run it with the peers' virtualenv (bench/setup-peers makes bench/.venv):

  bench/.venv/bin/python bench/encoder_cpu.py --data DATA_DIR [--threads 2]
      [--funnel-bench BUILD/bench/bench_encoder] [--model DIR] [--json]

What it measures, with --threads threads on every side:
  (a) throughput: sentences/s at batch 32 of real sentences that tokenize to exactly 32 ids
      ([CLS] and [SEP] included; Cranfield abstract sentences and queries, MS MARCO
      queries; no padding, no truncation), median time of --batch-runs batches;
  (b) latency: one real MS MARCO query of exactly 16 ids, p50 and p99 over --latency-runs
      runs after warm-up;
  both in --rounds rounds that interleave the engines (so that other load on the machine
  hits them alike); each engine's figures are its best round's. The load average before
  and after is reported, with a note when the machine was busy before;
  (c) the machine's sgemm peak: numpy (its OpenBLAS) C = A @ B, float32, 2048^3, with
      OPENBLAS_NUM_THREADS=--threads, best of 5, before and after the engines (the higher
      counts); every side's GFLOP/s is also given as a fraction of it.
FLOPs of one forward pass are computed from config.json: per layer, for S tokens, hidden H,
FFN width I: Q/K/V/output projections 8*S*H^2, attention scores and weighted sum 4*S^2*H,
FFN 4*S*H*I (2 FLOPs per multiply-add; embeddings, layer norms, softmax, GELU, pooling --
under 1% -- are not counted).  At S=32: 0.689 GFLOP per sentence.

The peer: ONNX Runtime (CPU execution provider; intra_op_num_threads=--threads,
inter_op_num_threads=1, sequential, graph optimization level ALL). The ONNX graph is built
here directly from model.safetensors and config.json (no PyTorch needed): BERT (as
PyTorch's exporter writes it: MatMul+Add projections, Reshape/Transpose heads,
Div/Add-mask/Softmax attention, Erf GELU, LayerNormalization) + mean pooling over the
attention mask + L2 normalization, inputs input_ids and attention_mask (int64, dynamic
batch and sequence axes), output sentence_embedding, opset 17. It is cached under
bench/.cache/ (git-ignored) by the sha256 of model.safetensors. Two variants are timed:
  ort        the graph as built; ORT's own level-ALL optimizer fuses what it recognizes
  ort-fused  the graph first rewritten by onnxruntime.transformers.optimizer (model type
             bert) into ORT's contrib kernels (Attention, SkipLayerNormalization,
             BiasGelu, ...), the recommended way to run BERT on ORT
The operator types of each session's optimized graph are reported, so it is visible which
fused kernels ORT actually runs. Before any timing every variant is checked against the
parity fixture (tests/fixtures/embedding_parity.*, sentence-transformers' vectors):
cosine >= 0.9999 for every text, or the script stops with an error.

funnel's side -- the interface a benchmark binary must implement. --funnel-bench is the
command (a path, optionally followed by words, e.g. build/bench/bench_encoder, which
implements it, or "build/src/tools/funnel encode-bench"); in every round it is run as

  CMD --model DIR --threads N --batch 32 --tokens 32 --runs R --json
  CMD --model DIR --threads N --batch 1  --tokens 16 --runs R --json

and must: load the model folder DIR; encode batches of --batch sequences of exactly --tokens
ids each (any ids: [CLS] + --tokens-2 word-piece ids + [SEP]; the cost does not depend on
them) with all attention-mask entries 1, through the whole encoder (embeddings, 6 layers,
mean pooling, L2 normalization); warm up, then time --runs batches, each alone; and print on
stdout one JSON object (its last line is read):

  {"sentences_per_s": float,   # batch / seconds per batch (median or mean)
   "p50_ms": float, "p99_ms": float,   # per batch, milliseconds
   "gflops": float}            # its own estimate of GFLOP/s achieved (informational)

exiting 0. When the command's executable does not exist, funnel's side is reported as not
run and the script still exits 0; when it exists but fails, the script exits 1.

Output: a Markdown table for BENCHMARKS.md, or one JSON object with --json.
"""

import argparse
import hashlib
import json
import os
import random
import shlex
import statistics
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
GRAPH_VERSION = 2  # bump when build_onnx changes, to invalidate the cache
OPSET = 17


def die(msg):
    sys.exit("encoder_cpu: " + msg)


# ---------------------------------------------------------------------------------------------
# model files

def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_safetensors(path):
    """name -> numpy array (float32), from a safetensors file, without the safetensors package."""
    import numpy as np
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = np.fromfile(f, dtype=np.uint8)  # the tensors, from byte 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        arr = np.frombuffer(data[a:b].tobytes(), dtype=dtypes[t["dtype"]]).reshape(t["shape"])
        out[name[5:] if name.startswith("bert.") else name] = arr.astype(np.float32)
    return out


def flops_per_sentence(cfg, s):
    h, i, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    return layers * (8 * s * h * h + 4 * s * s * h + 4 * s * h * i)


# ---------------------------------------------------------------------------------------------
# the ONNX graph

def build_onnx(model_dir, cfg, path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = load_safetensors(os.path.join(model_dir, "model.safetensors"))
    h = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    dh = h // heads
    eps = float(cfg["layer_norm_eps"])
    nodes, inits = [], []
    counter = [0]

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def const(arr, name=None):
        counter[0] += 1
        return init(name or "const_%d" % counter[0], np.asarray(arr))

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name + "_node", **attrs))
        return name

    def linear(x, prefix, out):
        mm = node("MatMul", [x, init(prefix + ".weight_t", w[prefix + ".weight"].T)], out + "_mm")
        return node("Add", [init(prefix + ".bias", w[prefix + ".bias"]), mm], out)

    def layernorm(x, prefix, out):
        return node("LayerNormalization",
                    [x, init(prefix + ".weight", w[prefix + ".weight"]),
                     init(prefix + ".bias", w[prefix + ".bias"])], out, axis=-1, epsilon=eps)

    # embeddings: word + position (0..S-1) + token type 0
    seq_len = node("Shape", ["input_ids"], "seq_len", start=1, end=2)  # [S]
    we = node("Gather", [init("embeddings.word_embeddings.weight",
                              w["embeddings.word_embeddings.weight"]), "input_ids"], "word_emb")
    pe = node("Slice", [init("embeddings.position_embeddings.weight",
                             w["embeddings.position_embeddings.weight"]),
                        const(np.array([0], np.int64)), seq_len, const(np.array([0], np.int64))],
              "pos_emb")  # rows 0..S-1
    x = node("Add", [we, pe], "emb_wp")
    x = node("Add", [x, init("embeddings.token_type_0",
                             w["embeddings.token_type_embeddings.weight"][0])], "emb_sum")
    x = layernorm(x, "embeddings.LayerNorm", "emb_out")

    # extended attention mask: (1 - mask[:, None, None, :]) * float32 min
    m = node("Unsqueeze", ["attention_mask", const(np.array([1], np.int64))], "mask_u1")
    m = node("Unsqueeze", [m, const(np.array([2], np.int64))], "mask_u2")
    m = node("Cast", [m], "mask_f", to=TensorProto.FLOAT)
    m = node("Sub", [const(np.array(1.0, np.float32)), m], "mask_inv")
    ext_mask = node("Mul", [m, const(np.array(np.finfo(np.float32).min, np.float32))],
                    "mask_ext")

    split = const(np.array([0, 0, heads, dh], np.int64), "shape_heads")
    merge = const(np.array([0, 0, h], np.int64), "shape_merge")
    scale = const(np.array(np.sqrt(dh), np.float32), "attn_scale")
    sqrt2 = const(np.array(np.sqrt(2.0), np.float32), "gelu_sqrt2")
    one = const(np.array(1.0, np.float32), "gelu_one")
    half = const(np.array(0.5, np.float32), "gelu_half")
    for l in range(cfg["num_hidden_layers"]):
        p = "encoder.layer.%d." % l
        t = "l%d_" % l
        q = linear(x, p + "attention.self.query", t + "q")
        k = linear(x, p + "attention.self.key", t + "k")
        v = linear(x, p + "attention.self.value", t + "v")
        q = node("Transpose", [node("Reshape", [q, split], t + "q_r")], t + "q_t", perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [k, split], t + "k_r")], t + "k_t", perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [v, split], t + "v_r")], t + "v_t", perm=[0, 2, 1, 3])
        s = node("Div", [node("MatMul", [q, k], t + "qk"), scale], t + "qk_s")
        s = node("Add", [s, ext_mask], t + "qk_m")
        a = node("Softmax", [s], t + "probs", axis=-1)
        c = node("MatMul", [a, v], t + "ctx")
        c = node("Reshape", [node("Transpose", [c], t + "ctx_t", perm=[0, 2, 1, 3]), merge],
                 t + "ctx_r")
        o = linear(c, p + "attention.output.dense", t + "attn_out")
        x = layernorm(node("Add", [o, x], t + "attn_res"), p + "attention.output.LayerNorm",
                      t + "attn_ln")
        f = linear(x, p + "intermediate.dense", t + "ffn_in")
        g = node("Erf", [node("Div", [f, sqrt2], t + "gelu_div")], t + "gelu_erf")
        g = node("Add", [g, one], t + "gelu_add")
        g = node("Mul", [node("Mul", [f, g], t + "gelu_mul"), half], t + "gelu")
        o = linear(g, p + "output.dense", t + "ffn_out")
        x = layernorm(node("Add", [o, x], t + "ffn_res"), p + "output.LayerNorm", t + "out")

    # mean pooling over the mask, then L2 normalization (eps 1e-12 as torch's F.normalize)
    mf = node("Unsqueeze", [node("Cast", ["attention_mask"], "pool_mask", to=TensorProto.FLOAT),
                            const(np.array([2], np.int64))], "pool_mask_u")
    summed = node("ReduceSum", [node("Mul", [x, mf], "pool_masked"),
                                const(np.array([1], np.int64))], "pool_sum", keepdims=0)
    count = node("ReduceSum", [mf, const(np.array([1], np.int64))], "pool_count", keepdims=0)
    count = node("Max", [count, const(np.array(1e-9, np.float32))], "pool_count_c")
    mean = node("Div", [summed, count], "pool_mean")
    norm = node("ReduceL2", [mean], "l2", axes=[1], keepdims=1)
    norm = node("Max", [norm, const(np.array(1e-12, np.float32))], "l2_c")
    node("Div", [mean, norm], "sentence_embedding")

    graph = helper.make_graph(
        nodes, "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", h])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="funnel bench/encoder_cpu.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    tmp = path + ".tmp"
    onnx.save(model, tmp)
    os.replace(tmp, path)


def fuse_onnx(src, dst, cfg):
    """Rewrites the graph with onnxruntime.transformers' BERT fusions; returns their counts."""
    import logging
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    from onnxruntime.transformers import optimizer
    for name in ("optimizer", "onnx_model", "fusion_base", "onnx_model_bert"):
        logging.getLogger(name).setLevel(logging.ERROR)
    m = optimizer.optimize_model(src, model_type="bert", num_heads=cfg["num_attention_heads"],
                                 hidden_size=cfg["hidden_size"], opt_level=0)
    stats = m.get_fused_operator_statistics()
    tmp = dst + ".tmp"
    m.save_model_to_file(tmp)
    os.replace(tmp, dst)
    return {k: v for k, v in stats.items() if v}


def onnx_models(model_dir, cfg, cache):
    sha = sha256_of(os.path.join(model_dir, "model.safetensors"))
    os.makedirs(cache, exist_ok=True)
    base = os.path.join(cache, "minilm-%s-g%d" % (sha[:16], GRAPH_VERSION))
    plain, fused = base + ".onnx", base + "-fused.onnx"
    info = {"model_safetensors_sha256": sha}
    if not os.path.exists(plain):
        build_onnx(model_dir, cfg, plain)
    stats_path = fused + ".json"
    if not (os.path.exists(fused) and os.path.exists(stats_path)):
        try:
            stats = fuse_onnx(plain, fused, cfg)
            with open(stats_path, "w") as f:
                json.dump(stats, f)
        except Exception as e:  # the plain graph is still a valid peer
            print("encoder_cpu: onnxruntime.transformers fusion failed: %r" % (e,), file=sys.stderr)
            fused = None
    if fused:
        with open(stats_path) as f:
            info["python_fusions"] = json.load(f)
    return plain, fused, info


# ---------------------------------------------------------------------------------------------
# ONNX Runtime

def ort_session(path, threads, cache):
    import onnxruntime as ort
    ort.set_default_logger_severity(3)  # errors only
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opt_path = os.path.join(cache, os.path.basename(path)[:-5] + ".ort-optimized.onnx")
    so.optimized_model_filepath = opt_path
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess, op_counts(opt_path)


def op_counts(path):
    import onnx
    m = onnx.load(path, load_external_data=False)
    counts = {}
    for n in m.graph.node:
        key = n.op_type if n.domain in ("", "ai.onnx") else "%s:%s" % (n.domain, n.op_type)
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def run_ort(sess, ids, mask):
    return sess.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})[0]


def pad_batch(seqs):
    import numpy as np
    n = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), n), np.int64)
    mask = np.zeros((len(seqs), n), np.int64)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = s
        mask[i, :len(s)] = 1
    return ids, mask


def read_fixture(fixture_dir):
    import numpy as np
    with open(os.path.join(fixture_dir, "embedding_parity.jsonl"), encoding="utf-8") as f:
        lines = [json.loads(l) for l in f.read().split("\n") if l]
    meta, texts = lines[0]["_meta"], [l["text"] for l in lines[1:]]
    raw = open(os.path.join(fixture_dir, "embedding_parity.fvecs"), "rb").read()
    vecs, off = [], 0
    while off < len(raw):
        (d,) = struct.unpack_from("<i", raw, off)
        vecs.append(np.frombuffer(raw, "<f4", d, off + 4))
        off += 4 + 4 * d
    return meta, texts, np.array(vecs, np.float32)


def verify(sess, tok, fixture, batch=16):
    """Cosine of the session's vectors with the fixture's, texts in padded batches."""
    import numpy as np
    meta, texts, ref = fixture
    seqs = [e.ids for e in tok.encode_batch([t.strip() for t in texts])]
    got = np.zeros_like(ref)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for a in range(0, len(order), batch):
        idx = order[a:a + batch]
        got[idx] = run_ort(sess, *pad_batch([seqs[i] for i in idx]))
    cos = np.sum(got.astype(np.float64) * ref, 1) / (np.linalg.norm(got, axis=1) *
                                                      np.linalg.norm(ref, axis=1))
    return float(cos.min()), texts[int(cos.argmin())]


def time_batches(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return ts


def pct(ts, p):
    s = sorted(ts)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


# ---------------------------------------------------------------------------------------------
# inputs: real sentences of an exact token count

def pick_sentences(data, tok, rng):
    def lines(path):
        with open(path, encoding="utf-8") as f:
            return f.read().split("\n")
    ms = []
    for name in ("topics.msmarco-passage.dev-subset.txt", "topics.msmarco-passage.test-subset.txt"):
        ms += [l.split("\t", 1)[1].strip() for l in lines(os.path.join(data, "msmarco-queries", name))
               if "\t" in l]
    cran = []
    for name in ("cran.all.1400", "cran.qry"):
        with open(os.path.join(data, "cranfield", name), encoding="utf-8") as f:
            recs = f.read().split("\n.I ")
        for r in recs:
            if "\n.W\n" in r:
                body = " ".join(r.split("\n.W\n", 1)[1].split())
                cran += [s.strip() + " ." for s in body.split(" . ") if s.strip()]
    pool = sorted(set(ms + cran))
    lens = [len(e.ids) for e in tok.encode_batch(pool)]
    n32 = [t for t, n in zip(pool, lens) if n == 32]
    ms16 = sorted(set(q for q, n in zip(ms, [len(e.ids) for e in tok.encode_batch(ms)]) if n == 16))
    if len(n32) < 32 or not ms16:
        die("not enough sentences of 32 (found %d) or 16 (found %d) tokens" % (len(n32), len(ms16)))
    return rng.sample(n32, 32), rng.choice(ms16)


# ---------------------------------------------------------------------------------------------
# sgemm peak

SGEMM = r'''
import ctypes, ctypes.util, sys, time, numpy as np
n, repeat, which = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
a = rng.standard_normal((n, n), dtype=np.float32)
b = rng.standard_normal((n, n), dtype=np.float32)
c = np.empty((n, n), np.float32)
if which == "numpy":
    def gemm():
        np.matmul(a, b, out=c)
    blas = "unknown"
    try:
        d = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = "numpy %s, %s %s" % (np.__version__, d.get("name"), d.get("version"))
        import glob, os
        libs = glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*openblas*"))
        lib = ctypes.CDLL(libs[0])
        for name in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
                     "openblas_get_corename64_", "openblas_get_corename"):
            if hasattr(lib, name):
                getattr(lib, name).restype = ctypes.c_char_p
                blas += ", core " + getattr(lib, name)().decode()
                break
    except Exception:
        pass
else:  # the system's libopenblas (what a C program linking -lopenblas gets)
    lib = ctypes.CDLL(ctypes.util.find_library("openblas") or "libopenblas.so.0")
    lib.openblas_get_corename.restype = ctypes.c_char_p
    lib.openblas_get_config.restype = ctypes.c_char_p
    f = ctypes.c_float
    p = lambda x: x.ctypes.data_as(ctypes.c_void_p)
    def gemm():  # row-major, no transposes
        lib.cblas_sgemm(101, 111, 111, n, n, n, f(1.0), p(a), n, p(b), n, f(0.0), p(c), n)
    blas = "system %s, core %s" % (lib.openblas_get_config().decode(),
                                   lib.openblas_get_corename().decode())
gemm()
best = None
for _ in range(repeat):
    t = time.perf_counter(); gemm(); dt = time.perf_counter() - t
    best = dt if best is None or dt < best else best
print(2.0 * n ** 3 / best / 1e9, blas, sep="\t")
'''


def sgemm_peak(threads, which="numpy", n=2048, repeat=5):
    # which: "numpy" (numpy's bundled OpenBLAS), or "system" (libopenblas.so, as funnel links)
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    p = subprocess.run([sys.executable, "-c", SGEMM, str(n), str(repeat), which], env=env,
                       capture_output=True, text=True)
    if p.returncode != 0:
        if which == "system":
            return None  # no libopenblas on this machine
        die("sgemm measurement failed: " + p.stderr[-1000:])
    out = p.stdout.strip().split("\t")
    return {"gflops": round(float(out[0]), 1), "n": n, "blas": out[1]}


# ---------------------------------------------------------------------------------------------
# funnel

def run_funnel(cmd, model_dir, threads, batch, tokens, runs):
    argv = shlex.split(cmd) + ["--model", model_dir, "--threads", str(threads), "--batch",
                               str(batch), "--tokens", str(tokens), "--runs", str(runs), "--json"]
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        die("funnel benchmark failed (exit %d): %s\n%s" % (p.returncode, " ".join(argv),
                                                            p.stderr[-2000:]))
    last = [l for l in p.stdout.strip().split("\n") if l.strip()][-1]
    return json.loads(last)


# ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="the shared data folder")
    ap.add_argument("--model", default=os.environ.get("FUNNEL_MODEL_DIR") or
                    os.path.join(ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--fixture-dir", default=os.path.join(ROOT, "tests", "fixtures"))
    ap.add_argument("--cache", default=os.path.join(HERE, ".cache"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--funnel-bench", metavar="CMD",
                    help="funnel's encoder benchmark command (see the top of this file)")
    ap.add_argument("--batch-runs", type=int, default=30)
    ap.add_argument("--latency-runs", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved rounds per engine; the best round counts")
    ap.add_argument("--seed", type=int, default=20240612)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.latency_runs < 200:
        die("--latency-runs must be at least 200")
    try:
        import numpy as np
        import onnxruntime as ort
        from tokenizers import Tokenizer
    except ImportError as e:
        die("%s; run bench/setup-peers and use bench/.venv/bin/python" % e)
    model_dir = os.path.abspath(args.model)
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(model_dir, "sentence_bert_config.json")) as f:
        max_len = json.load(f)["max_seq_length"]
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_len)  # as sentence-transformers does (tokenizer.json says 128)

    fixture = read_fixture(args.fixture_dir)
    plain, fused, info = onnx_models(model_dir, cfg, args.cache)
    rng = random.Random(args.seed)
    sents, query = pick_sentences(args.data, tok, rng)
    b_ids, b_mask = pad_batch([e.ids for e in tok.encode_batch(sents)])
    q_ids, q_mask = pad_batch([tok.encode(query).ids])
    assert b_ids.shape == (32, 32) and b_mask.all() and q_ids.shape == (1, 16)

    f32, f16 = flops_per_sentence(cfg, 32), flops_per_sentence(cfg, 16)
    rows = []
    variants = [("ONNX Runtime %s" % ort.__version__, "ort", plain)]
    if fused:
        variants.append(("ONNX Runtime %s, BERT fusions" % ort.__version__, "ort-fused", fused))
    engines = []
    for label, key, path in variants:
        sess, ops = ort_session(path, args.threads, args.cache)
        cos, worst = verify(sess, tok, fixture)
        if cos < 0.9999:
            die("%s: cosine with the fixture %.6f < 0.9999 for %r" % (key, cos, worst))
        time_batches(lambda: run_ort(sess, b_ids, b_mask), 0, args.warmup)
        time_batches(lambda: run_ort(sess, q_ids, q_mask), 0, args.warmup * 5)
        fused_ops = {k: v for k, v in ops.items() if k.startswith("com.microsoft:")
                     or k in ("LayerNormalization", "Gelu")}
        engines.append({"engine": label, "key": key, "sess": sess, "fixture_min_cosine": round(cos, 7),
                        "optimized_graph_ops": ops, "fused_kernels": fused_ops, "rounds": []})

    funnel_note = None
    if args.funnel_bench:
        exe = shlex.split(args.funnel_bench)[0]
        if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            funnel_note = "funnel's side was not run: %s not found" % exe
    else:
        funnel_note = "funnel's side was not run: no --funnel-bench given"
    if funnel_note is None:
        engines.append({"engine": "funnel", "key": "funnel", "rounds": []})

    load_before = os.getloadavg()
    peaks = [sgemm_peak(args.threads)]
    # Rounds interleave the engines, so that other load on the machine hits them alike; each
    # engine's figures are those of its best round (highest throughput, lowest query p50).
    for _ in range(args.rounds):
        for e in engines:
            if e["key"] == "funnel":
                fb = run_funnel(args.funnel_bench, model_dir, args.threads, 32, 32, args.batch_runs)
                fl = run_funnel(args.funnel_bench, model_dir, args.threads, 1, 16, args.latency_runs)
                e["rounds"].append({"sentences_per_s": float(fb["sentences_per_s"]),
                                    "batch_p50_ms": float(fb["p50_ms"]),
                                    "p50_ms": float(fl["p50_ms"]), "p99_ms": float(fl["p99_ms"]),
                                    "self_reported_gflops": {"batch": fb.get("gflops"),
                                                             "query": fl.get("gflops")}})
                continue
            sess = e["sess"]
            tb = time_batches(lambda: run_ort(sess, b_ids, b_mask), args.batch_runs, 1)
            tl = time_batches(lambda: run_ort(sess, q_ids, q_mask), args.latency_runs, 5)
            e["rounds"].append({"sentences_per_s": 32 / statistics.median(tb),
                                "batch_p50_ms": 1e3 * statistics.median(tb),
                                "p50_ms": 1e3 * pct(tl, 50), "p99_ms": 1e3 * pct(tl, 99)})
    peaks.append(sgemm_peak(args.threads))
    load_after = os.getloadavg()
    peak = max(peaks, key=lambda p: p["gflops"])
    peak["all_runs_gflops"] = [p["gflops"] for p in peaks]
    system_blas = sgemm_peak(args.threads, "system")

    rows = []
    for e in engines:
        rb = max(e["rounds"], key=lambda r: r["sentences_per_s"])
        rl = min(e["rounds"], key=lambda r: r["p50_ms"])
        r = {k: v for k, v in e.items() if k not in ("sess", "rounds")}
        r.update({"sentences_per_s": rb["sentences_per_s"], "batch_p50_ms": rb["batch_p50_ms"],
                  "p50_ms": rl["p50_ms"], "p99_ms": rl["p99_ms"],
                  "rounds_sentences_per_s": [round(x["sentences_per_s"], 1) for x in e["rounds"]],
                  "rounds_p50_ms": [round(x["p50_ms"], 3) for x in e["rounds"]]})
        if "self_reported_gflops" in rb:
            r["self_reported_gflops"] = rb["self_reported_gflops"]
        rows.append(r)
    for e in engines:
        e.pop("sess", None)
    for r in rows:
        r["batch_gflops"] = r["sentences_per_s"] * f32 / 1e9
        r["batch_peak_fraction"] = r["batch_gflops"] / peak["gflops"]
        r["latency_gflops"] = f16 / (r["p50_ms"] / 1e3) / 1e9
        r["latency_peak_fraction"] = r["latency_gflops"] / peak["gflops"]
    best = {"sentences_per_s": max((r for r in rows if r["key"] != "funnel"),
                                   key=lambda r: r["sentences_per_s"]),
            "p50_ms": min((r for r in rows if r["key"] != "funnel"), key=lambda r: r["p50_ms"])}
    fun = [r for r in rows if r["key"] == "funnel"]
    if fun:
        fun[0]["throughput_vs_best_ort"] = fun[0]["sentences_per_s"] / best["sentences_per_s"]["sentences_per_s"]
        fun[0]["p50_vs_best_ort"] = fun[0]["p50_ms"] / best["p50_ms"]["p50_ms"]
    for r in rows:
        for k, v in list(r.items()):
            if isinstance(v, float):
                r[k] = round(v, 4 if "fraction" in k or "vs" in k else 2)

    result = {"threads": args.threads, "cpus": os.cpu_count(), "sgemm_peak": peak,
              "system_openblas_sgemm": system_blas,
              "flops_per_sentence": {"32_tokens": f32, "16_tokens": f16},
              "inputs": {"batch": "32 real sentences of exactly 32 ids (Cranfield/MS MARCO)",
                         "query": query, "batch_runs": args.batch_runs,
                         "latency_runs": args.latency_runs, "warmup": args.warmup},
              "onnx": dict(info, opset=OPSET), "rows": rows, "funnel_note": funnel_note,
              "rounds": args.rounds, "loadavg_before": load_before[0],
              "loadavg_after": load_after[0]}
    if args.json:
        print(json.dumps(result))
        return 0
    print("Text encoder (all-MiniLM-L6-v2) on CPU, %d threads (%d cores); sgemm peak %.1f GFLOP/s "
          "(%s; %d^3 float32, best of 5, before and after)" % (
              args.threads, os.cpu_count(), peak["gflops"], peak["blas"], peak["n"]))
    if system_blas:
        print("The system's libopenblas (what funnel links): %.1f GFLOP/s (%s)." %
              (system_blas["gflops"], system_blas["blas"]))
    print("Throughput: batch 32 of real sentences of exactly 32 tokens (%.3f GFLOP each), median "
          "of %d batches. Latency: one 16-token MS MARCO query (%.3f GFLOP), p50/p99 of %d runs. "
          "Best of %d interleaved rounds." %
          (f32 / 1e9, args.batch_runs, f16 / 1e9, args.latency_runs, args.rounds))
    if load_before[0] > 0.5 * (os.cpu_count() or 1):  # after: includes this benchmark's own
        print("Note: the machine was busy (1-minute load average %.1f before the timing): "
              "figures may be noisy." % load_before[0])
    print()
    print("| engine | sentences/s (32×32) | GFLOP/s | % sgemm peak | query p50 ms | p99 ms "
          "| GFLOP/s | % peak |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        name = r["engine"]
        if r["key"] == "funnel":
            name += " (%.2f× ORT throughput, %.2f× ORT p50)" % (r["throughput_vs_best_ort"],
                                                               r["p50_vs_best_ort"])
        print("| %s | %.1f | %.1f | %.1f%% | %.2f | %.2f | %.1f | %.1f%% |" % (
            name, r["sentences_per_s"], r["batch_gflops"], 100 * r["batch_peak_fraction"],
            r["p50_ms"], r["p99_ms"], r["latency_gflops"], 100 * r["latency_peak_fraction"]))
    print()
    for r in rows:
        if "fused_kernels" in r:
            print("%s: fixture cosine min %.7f; kernels after ORT's optimizer: %s" % (
                r["key"], r["fixture_min_cosine"],
                ", ".join("%s×%d" % (k.replace("com.microsoft:", ""), v)
                          for k, v in r["optimized_graph_ops"].items())))
    if funnel_note:
        print()
        print(funnel_note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
