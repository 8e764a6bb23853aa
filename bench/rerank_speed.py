#!/usr/bin/python3
"""Reranker speed: one request of N items through funnel's list-aware reranker against the
same model in PyTorch (Debian's python3-torch), one thread each, side by side.

The model is trained by `funnel rerank train` on the LETOR sample (300 features; the options
in --train-args) and loaded into PyTorch from its safetensors file: standardisation, a
Linear input projection, nn.TransformerEncoderLayer (post-LN, GELU, batch_first: the same
tensor layout as funnel's), a Linear score head. Before timing, both score rank.test and
the largest difference is printed, so the two sides are the same model.

  bench/rerank_speed.py --funnel build/src/tools/funnel --bench build/bench/bench_rerank \
      --data ../shared/data [--items 100] [--runs 3000] [--train-args "--epochs 5"]
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np


def load_safetensors(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            f.seek(base + info["data_offsets"][0])
            size = info["data_offsets"][1] - info["data_offsets"][0]
            out[name] = np.frombuffer(f.read(size), dtype=np.float32).reshape(info["shape"])
        return out, header.get("__metadata__", {})


def torch_model(path):
    import torch

    w, meta = load_safetensors(path)
    d, heads, layers = int(meta["funnel.d_model"]), int(meta["funnel.n_heads"]), \
        int(meta["funnel.n_layers"])
    ff = int(meta["funnel.d_ff"])
    if meta.get("funnel.positions") == "1":
        raise SystemExit("rerank_speed: train without --positions (the PyTorch side has none)")
    t = lambda name: torch.from_numpy(w[name].copy())

    class Reranker(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", t("input.mean"))
            self.register_buffer("scale", t("input.scale"))
            self.inp = torch.nn.Linear(w["input.weight"].shape[1], d)
            self.layers = torch.nn.ModuleList([
                torch.nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, activation="gelu",
                                                 batch_first=True, norm_first=False)
                for _ in range(layers)])
            self.score = torch.nn.Linear(d, 1)

        def forward(self, x):  # [1, n, F]
            h = self.inp((x - self.mean) * self.scale)
            for layer in self.layers:
                h = layer(h)
            return self.score(h).squeeze(-1)

    m = Reranker()
    with torch.no_grad():
        m.inp.weight.copy_(t("input.weight"))
        m.inp.bias.copy_(t("input.bias"))
        m.score.weight.copy_(t("score.weight"))
        m.score.bias.copy_(t("score.bias"))
        for i, layer in enumerate(m.layers):
            p = "layers.%d." % i
            layer.self_attn.in_proj_weight.copy_(t(p + "qkv.weight"))
            layer.self_attn.in_proj_bias.copy_(t(p + "qkv.bias"))
            layer.self_attn.out_proj.weight.copy_(t(p + "out.weight"))
            layer.self_attn.out_proj.bias.copy_(t(p + "out.bias"))
            layer.linear1.weight.copy_(t(p + "ff1.weight"))
            layer.linear1.bias.copy_(t(p + "ff1.bias"))
            layer.linear2.weight.copy_(t(p + "ff2.weight"))
            layer.linear2.bias.copy_(t(p + "ff2.bias"))
            layer.norm1.weight.copy_(t(p + "ln1.weight"))
            layer.norm1.bias.copy_(t(p + "ln1.bias"))
            layer.norm2.weight.copy_(t(p + "ln2.weight"))
            layer.norm2.bias.copy_(t(p + "ln2.bias"))
    return m.eval()


def read_letor_dense(path, n_features):
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.split("#", 1)[0].split()
            x = np.zeros(n_features, dtype=np.float32)
            for tok in parts[1:]:
                if tok.startswith("qid:"):
                    continue
                i, v = tok.split(":")
                x[int(i) - 1] = float(v)
            rows.append(x)
    groups = [int(l) for l in open(path + ".query")]
    return np.stack(rows), groups


def truncated(letor, tmp, n):
    """rank.train/rank.test (and .query) with only features 1..n, in tmp."""
    for name in ("rank.train", "rank.test"):
        with open(os.path.join(letor, name)) as src, open(os.path.join(tmp, name), "w") as dst:
            for line in src:
                parts = line.split()
                keep = [p for p in parts[1:] if int(p.split(":")[0]) <= n]
                # the last column present in every file keeps the width the same
                dst.write(" ".join([parts[0]] + keep + (["%d:0" % n] if not keep or
                                    int(keep[-1].split(":")[0]) < n else [])) + "\n")
        with open(os.path.join(letor, name + ".query")) as src, \
                open(os.path.join(tmp, name + ".query"), "w") as dst:
            dst.write(src.read())
    return tmp


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--funnel", required=True)
    ap.add_argument("--bench", required=True, help="build/bench/bench_rerank")
    ap.add_argument("--data", required=True)
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3000)
    ap.add_argument("--train-args", default="--epochs 5")
    ap.add_argument("--features", type=int, default=0,
                    help="keep only the first N LETOR features (0: all 300)")
    args = ap.parse_args()
    import torch
    from blas_threads import set_blas_threads

    torch.set_num_threads(1)
    set_blas_threads(1)  # its GEMMs run in OpenBLAS, whose threads torch does not set
    letor = os.path.join(args.data, "letor-lambdarank")
    with tempfile.TemporaryDirectory(prefix="funnel-rerank-speed-") as tmp:
        if args.features:
            letor = truncated(letor, tmp, args.features)
        model = os.path.join(tmp, "reranker.safetensors")
        subprocess.run([args.funnel, "rerank", "train", "--data",
                        os.path.join(letor, "rank.train"), "--out", model, "--threads", "1"] +
                       shlex.split(args.train_args), check=True, capture_output=True)
        preds = os.path.join(tmp, "preds.txt")
        subprocess.run([args.funnel, "rerank", "eval", "--model", model, "--data",
                        os.path.join(letor, "rank.test"), "--predictions", preds],
                       check=True, capture_output=True)
        ours = np.loadtxt(preds)
        m = torch_model(model)
        x, groups = read_letor_dense(os.path.join(letor, "rank.test"), m.inp.in_features)
        theirs, at = [], 0
        with torch.inference_mode():
            for g in groups:
                theirs.append(m(torch.from_numpy(x[None, at:at + g])).numpy()[0])
                at += g
        diff = float(np.max(np.abs(np.concatenate(theirs) - ours)))
        print("rerank_speed: funnel and PyTorch score rank.test alike: largest difference %.2e"
              % diff)
        if diff > 1e-3:
            raise SystemExit("rerank_speed: the two sides are not the same model")

        out = subprocess.run([args.bench, "--model", model, "--items", str(args.items),
                              "--runs", str(args.runs), "--json"], check=True,
                             capture_output=True, text=True)
        ours = json.loads(out.stdout)
        rng = np.random.default_rng(1)
        req = torch.from_numpy(rng.random((1, args.items, m.inp.in_features),
                                          dtype=np.float32))
        times = []
        with torch.inference_mode():
            for _ in range(args.runs // 10 + 10):
                m(req)
            for _ in range(args.runs):
                t0 = time.perf_counter()
                m(req)
                times.append((time.perf_counter() - t0) * 1e3)
        times.sort()
        theirs = {"p50_ms": times[len(times) // 2], "p99_ms": times[int(len(times) * 0.99)],
                  "mean_ms": sum(times) / len(times)}
    print("rerank_speed: one request of %d items x %d features, d_model %d, %d layer(s), "
          "one thread (torch %s)" % (args.items, ours["features"], ours["d_model"],
                                     ours["layers"], torch.__version__))
    print()
    print("| reranker, %d items | p50 ms | p99 ms | mean ms |" % args.items)
    print("| --- | ---: | ---: | ---: |")
    print("| funnel (CPU, 1 thread) | %.3f | %.3f | %.3f |" %
          (ours["p50_ms"], ours["p99_ms"], ours["mean_ms"]))
    print("| PyTorch nn.TransformerEncoderLayer (1 thread) | %.3f | %.3f | %.3f |" %
          (theirs["p50_ms"], theirs["p99_ms"], theirs["mean_ms"]))
    print("| ratio (PyTorch / funnel) | %.2f | %.2f | %.2f |" %
          tuple(theirs[k] / ours[k] for k in ("p50_ms", "p99_ms", "mean_ms")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
