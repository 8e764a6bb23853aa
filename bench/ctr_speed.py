#!/usr/bin/python3
"""CTR model speed: funnel's FM, FFM and DeepFM (bench_rank) and the same DeepFM in PyTorch,
side by side in one run, one thread each.

Inference: one request with 1, 100, 1,000 and 10,000 candidates, 24 fields (8 shared by the
request, 16 per candidate), one triple per field; candidates per second per core. PyTorch
scores the candidates as a batch with the shared fields repeated, as a plain DeepFM module
does (embedding bag per field, FM term, MLP 200-200-1, ReLU), in inference mode.
Training: examples/s over one epoch of 50,000 examples with 1 and 2 threads, funnel's three
kinds and the same DeepFM (batch 256, Adam, lr 0.001) in PyTorch, its embeddings sparse
(nn.Embedding(sparse=True) with SparseAdam: only the rows a batch uses are updated, as
funnel's lazy Adam does; dense Adam would update all 100,000 rows every step).

  bench/ctr_speed.py --funnel-bench build/bench/bench_rank
"""
import argparse
import json
import subprocess
import sys
import time


def torch_deepfm(fields, k, hidden, sizes, features):
    import torch
    from blas_threads import set_blas_threads
    torch.set_num_threads(1)
    set_blas_threads(1)  # its GEMMs run in OpenBLAS, whose threads torch does not set

    class DeepFM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.zeros(1))
            self.linear = torch.nn.Parameter(torch.randn(features) * 0.01)
            self.embedding = torch.nn.Parameter(torch.randn(features, k) * 0.01)
            layers, width = [], fields * k
            for h in hidden:
                layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
                width = h
            layers.append(torch.nn.Linear(width, 1))
            self.mlp = torch.nn.Sequential(*layers)

        def forward(self, idx):  # idx [n, fields], values 1
            e = self.embedding[idx]  # [n, fields, k]
            fm = 0.5 * (e.sum(1).pow(2) - e.pow(2).sum(1)).sum(1)
            lin = self.linear[idx].sum(1)
            return torch.sigmoid(self.bias + lin + fm + self.mlp(e.flatten(1)).squeeze(1))

    model = DeepFM().eval()
    per = features // fields
    rows = []
    for n in sizes:
        idx = torch.stack([torch.randint(0, per // 8, (n,)) + f * per for f in range(fields)], 1)
        runs = 50 if n >= 10000 else 300 if n >= 1000 else 2000
        with torch.inference_mode():
            for _ in range(5):
                model(idx)
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                model(idx)
                times.append((time.perf_counter() - t) * 1e3)
        times.sort()
        p50 = times[len(times) // 2]
        rows.append({"candidates": n, "p50_ms": p50, "candidates_per_s": n / (p50 / 1e3)})
    return {"torch": torch.__version__, "score": rows}


def torch_deepfm_train(fields, k, hidden, features, threads, n=50000, batch=256):
    import torch
    from blas_threads import set_blas_threads
    torch.set_num_threads(threads)
    set_blas_threads(threads)
    torch.manual_seed(1)
    emb = torch.nn.Embedding(features, k, sparse=True)
    lin = torch.nn.Embedding(features, 1, sparse=True)
    bias = torch.nn.Parameter(torch.zeros(1))
    layers, width = [], fields * k
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
    layers.append(torch.nn.Linear(width, 1))
    mlp = torch.nn.Sequential(*layers)
    sparse = torch.optim.SparseAdam(list(emb.parameters()) + list(lin.parameters()), lr=1e-3)
    dense = torch.optim.Adam(list(mlp.parameters()) + [bias], lr=1e-3)
    per = features // fields
    idx = torch.stack([torch.randint(0, per // 8, (n,)) + f * per for f in range(fields)], 1)
    y = torch.randint(0, 2, (n,)).float()
    order = torch.randperm(n)
    t = time.perf_counter()
    for lo in range(0, n, batch):
        sel = order[lo:lo + batch]
        x = idx[sel]
        e = emb(x)
        fm = 0.5 * (e.sum(1).pow(2) - e.pow(2).sum(1)).sum(1)
        logit = bias + lin(x).sum((1, 2)) + fm + mlp(e.flatten(1)).squeeze(1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y[sel])
        sparse.zero_grad()
        dense.zero_grad()
        loss.backward()
        sparse.step()
        dense.step()
    return n / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--funnel-bench", default="build/bench/bench_rank")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = subprocess.run([args.funnel_bench, "--json"], check=True, capture_output=True,
                         text=True).stdout
    funnel = json.loads(out)
    sizes = [r["candidates"] for r in funnel["models"][0]["score"]]
    torch = torch_deepfm(funnel["fields"], 8, [200, 200], sizes, 100000)
    torch["train_examples_per_s"] = [
        torch_deepfm_train(funnel["fields"], 8, [200, 200], 100000, t) for t in (1, 2)]
    if args.json:
        print(json.dumps({"funnel": funnel, "pytorch_deepfm": torch}))
        return 0
    print("CTR inference, one thread, %d fields (%d shared per request): candidates/s "
          "(ms per request)" % (funnel["fields"], funnel["shared"]))
    print("| model | " + " | ".join("%d cand." % n for n in sizes) + " |")
    print("| --- |" + " ---: |" * len(sizes))
    for m in funnel["models"]:
        print("| funnel %s | " % m["model"] + " | ".join(
            "%.0f (%.3f)" % (r["candidates_per_s"], r["p50_ms"]) for r in m["score"]) + " |")
    print("| PyTorch %s DeepFM | " % torch["torch"] + " | ".join(
        "%.0f (%.3f)" % (r["candidates_per_s"], r["p50_ms"]) for r in torch["score"]) + " |")
    dfm = [m for m in funnel["models"] if m["model"] == "deepfm"]
    if dfm:
        print("\nfunnel DeepFM / PyTorch DeepFM: " + ", ".join(
            "%.1fx at %d" % (a["candidates_per_s"] / b["candidates_per_s"], a["candidates"])
            for a, b in zip(dfm[0]["score"], torch["score"])))
    print("\nTraining, examples/s: " + ", ".join(
        "%s %.0f (1 thread) %.0f (2 threads)" % (m["model"], *m["train_examples_per_s"])
        for m in funnel["models"]) + "; PyTorch DeepFM %.0f (1 thread) %.0f (2 threads)" %
        tuple(torch["train_examples_per_s"]))
    if dfm:
        print("funnel DeepFM / PyTorch DeepFM training: %.1fx (1 thread), %.1fx (2 threads)" %
              tuple(a / b for a, b in zip(dfm[0]["train_examples_per_s"],
                                          torch["train_examples_per_s"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
