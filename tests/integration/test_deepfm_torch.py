#!/usr/bin/python3
"""DeepFM in PyTorch and in funnel, on the Criteo libffm sample.

1. A DeepFM trained in PyTorch (python3-torch) with funnel's tensor names, saved in the
   safetensors layout with funnel's metadata, loads in `funnel eval` and gives the same
   probabilities as PyTorch (1e-5).
2. funnel's training is the same computation as PyTorch's: from the same start (a funnel
   model file) and the same batch order (funnel's shuffle, replayed here), one epoch of
   mini-batches with Adam (lazy on the embedding rows, as funnel's) ends at the same
   weights and predictions; and so it does with `--sparse-optimizer adagrad` (the bias,
   linear weights and embeddings by AdaGrad on the batch's summed gradient, the MLP by
   Adam).

  test_deepfm_torch.py --funnel build/src/tools/funnel --data ../shared/data
Exit 77 (skipped) when the data sets are absent.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

M64 = (1 << 64) - 1


def read_libffm(path):
    rows, labels = [], []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            labels.append(1.0 if float(parts[0]) > 0 else 0.0)
            rows.append([(int(a), int(b), float(c)) for a, b, c in
                         (t.split(":") for t in parts[1:])])
    return rows, np.array(labels, dtype=np.float32)


class DeepFM(torch.nn.Module):
    """funnel's DeepFM: FM over the embeddings plus an MLP over the per-field sums."""

    def __init__(self, fields, features, k, hidden, act):
        super().__init__()
        self.fields, self.k = fields, k
        self.bias = torch.nn.Parameter(torch.zeros(1))
        self.linear = torch.nn.Parameter(torch.randn(features) * 0.01)
        self.embedding = torch.nn.Parameter(torch.randn(features, k) * 0.05)
        self.hidden = torch.nn.ModuleList()
        width = fields * k
        for h in hidden:
            self.hidden.append(torch.nn.Linear(width, h))
            width = h
        self.out = torch.nn.Linear(width, 1)
        self.act = torch.nn.ReLU() if act == "relu" else torch.nn.GELU()

    def forward(self, batch):
        rows, fields, idx, val = batch["rows"], batch["fields"], batch["idx"], batch["val"]
        n = batch["n"]
        lin = torch.zeros(n).index_add(0, rows, self.linear[idx] * val)
        vx = self.embedding[idx] * val[:, None]
        S = torch.zeros(n, self.k).index_add(0, rows, vx)
        Q = torch.zeros(n, self.k).index_add(0, rows, vx * vx)
        fm = self.bias + lin + 0.5 * (S * S - Q).sum(1)
        e = torch.zeros(n * self.fields, self.k).index_add(0, rows * self.fields + fields, vx)
        h = e.view(n, self.fields * self.k)
        for layer in self.hidden:
            h = self.act(layer(h))
        return fm + self.out(h)[:, 0]

    def named_tensors(self):
        """funnel's names, in its order."""
        out = [("bias", self.bias), ("linear", self.linear), ("embedding", self.embedding)]
        for i, layer in enumerate(self.hidden):
            out += [("mlp.%d.weight" % i, layer.weight), ("mlp.%d.bias" % i, layer.bias)]
        return out + [("mlp.out.weight", self.out.weight), ("mlp.out.bias", self.out.bias)]


def make_batch(rows, sel):
    r, f, i, v = [], [], [], []
    for b, row in enumerate(sel):
        for field, index, value in rows[row]:
            r.append(b), f.append(field), i.append(index), v.append(value)
    return {"rows": torch.tensor(r, dtype=torch.long), "fields": torch.tensor(f, dtype=torch.long),
            "idx": torch.tensor(i, dtype=torch.long), "val": torch.tensor(v, dtype=torch.float32),
            "n": len(sel)}


def save_safetensors(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name, t in tensors:
        a = t.detach().numpy().astype("<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (hl,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + hl])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[8 + hl + a:8 + hl + b], dtype="<f4").reshape(t["shape"])
    return out, header["__metadata__"]


def funnel(args, *cmd):
    r = subprocess.run([args.funnel] + list(cmd), capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("funnel %s failed (%d): %s" % (" ".join(cmd), r.returncode, r.stderr))
    return r.stdout


def predictions(args, model, data, tmp):
    out = os.path.join(tmp, "pred.txt")
    funnel(args, "eval", "--model", model, "--format", "libffm", "--data", data,
           "--predictions", out)
    return np.loadtxt(out, dtype=np.float64)


def torch_trained_loads(args, tmp, tr_path, te_path):
    train, ytr = read_libffm(tr_path)
    test, _ = read_libffm(te_path)
    fields = 1 + max(f for rows in (train, test) for row in rows for f, _, _ in row)
    features = 1 + max(i for rows in (train, test) for row in rows for _, i, _ in row)
    torch.manual_seed(3)
    k, hidden = 6, [24, 12]
    model = DeepFM(fields, features, k, hidden, "gelu")
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    y = torch.tensor(ytr)
    for _ in range(30):
        b = make_batch(train, range(len(train)))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(b), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    meta = {"funnel.model": "deepfm", "funnel.format": "1", "funnel.feature_spec_sha256": "",
            "funnel.fields": str(fields), "funnel.features": str(features), "funnel.k": str(k),
            "funnel.lr": "0.01", "funnel.l2": "0", "funnel.epochs": "30", "funnel.seed": "3",
            "funnel.normalize": "0", "funnel.hidden": ",".join(map(str, hidden)),
            "funnel.activation": "gelu", "funnel.dropout": "0"}
    path = os.path.join(tmp, "torch.safetensors")
    save_safetensors(path, model.named_tensors(), meta)
    with torch.no_grad():
        want = torch.sigmoid(model(make_batch(test, range(len(test))))).double().numpy()
    got = predictions(args, path, te_path, tmp)
    diff = np.abs(got - want).max()
    print("PyTorch-trained DeepFM in funnel: %d test rows, largest difference %.3g "
          "(probabilities span %.3f..%.3f)" % (len(test), diff, want.min(), want.max()))
    assert want.max() - want.min() > 0.3, "the PyTorch model did not learn"
    assert diff < 1e-5, "funnel's scores differ from PyTorch's by %g" % diff


def splitmix(state):
    state = (state + 0x9e3779b97f4a7c15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return state, z ^ (z >> 31)


def funnel_order(n, seed):
    """fn_rank_shuffle's first epoch: Fisher-Yates driven by splitmix64."""
    state = seed ^ 0x5f0e1d2c3b4a6978
    idx = list(range(n))
    for i in range(n, 1, -1):
        state, r = splitmix(state)
        j = r % i
        idx[i - 1], idx[j] = idx[j], idx[i - 1]
    return idx


def training_matches(args, tmp, tr_path, te_path, sparse_opt="adam"):
    train, ytr = read_libffm(tr_path)
    seed, batch, lr, slr, hidden = 7, 16, 0.01, 0.1, "20,10"
    common = ["train", "--model", "deepfm", "--format", "libffm", "--train", tr_path,
              "--epochs", "1", "--batch", str(batch), "--hidden", hidden, "--seed", str(seed),
              "--threads", "1", "--l2", "0", "--k", "4"]
    init = os.path.join(tmp, "init.safetensors")
    done = os.path.join(tmp, "done.safetensors")
    # The smallest learning rate funnel takes (1e-12), with Adam for every part, moves no
    # weight by more than ~1e-11: the file is the initialisation the real run starts from.
    funnel(args, *(common + ["--lr", "1e-12", "--sparse-optimizer", "adam", "--out", init]))
    trained = ["--lr", str(lr), "--out", done, "--sparse-optimizer", sparse_opt]
    if sparse_opt == "adagrad":
        trained += ["--sparse-lr", str(slr)]
    funnel(args, *(common + trained))
    start, meta = load_safetensors(init)
    fields, features = int(meta["funnel.fields"]), int(meta["funnel.features"])
    model = DeepFM(fields, features, 4, [20, 10], "relu")
    with torch.no_grad():
        for name, p in model.named_tensors():
            p.copy_(torch.from_numpy(start[name].copy()))
    params = [p for _, p in model.named_tensors()]
    sparse = {id(model.linear), id(model.embedding)}
    adagrad = {id(model.bias), id(model.linear), id(model.embedding)} \
        if sparse_opt == "adagrad" else set()
    m = [torch.zeros_like(p) for p in params]
    v = [torch.ones_like(p) if id(p) in adagrad else torch.zeros_like(p) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-8
    order = funnel_order(len(train), seed)
    y = torch.tensor(ytr)
    for step, lo in enumerate(range(0, len(order), batch), 1):
        sel = order[lo:lo + batch]
        b = make_batch(train, sel)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(b), y[sel])
        model.zero_grad()
        loss.backward()
        touched = torch.unique(b["idx"])
        c1, c2 = 1 - b1 ** step, 1 - b2 ** step
        with torch.no_grad():
            for p, mm, vv in zip(params, m, v):
                g = p.grad
                rows = touched if id(p) in sparse else slice(None)
                if id(p) in adagrad:
                    # AdaGrad from accumulators of 1 on the batch's sum (the loss is its mean).
                    gs = g[rows] * len(sel)
                    vv[rows] += gs * gs
                    p[rows] -= slr * gs / vv[rows].sqrt()
                    continue
                mm[rows] = b1 * mm[rows] + (1 - b1) * g[rows]
                vv[rows] = b2 * vv[rows] + (1 - b2) * g[rows] * g[rows]
                p[rows] -= lr * (mm[rows] / c1) / ((vv[rows] / c2).sqrt() + eps)
    got, _ = load_safetensors(done)
    worst = 0.0
    for name, p in model.named_tensors():
        d = np.abs(got[name] - p.detach().numpy()).max()
        moved = np.abs(got[name] - start[name]).max()
        print("  %-15s moved %.3g, funnel vs PyTorch %.3g" % (name, moved, d))
        assert moved > 1e-3, "%s did not train" % name
        worst = max(worst, d)
    # Test rows may use features the training rows never did: funnel skips those, and so must
    # the reference.
    test, _ = read_libffm(te_path)
    test = [[t for t in row if t[0] < fields and t[1] < features] for row in test]
    with torch.no_grad():
        want = torch.sigmoid(model(make_batch(test, range(len(test))))).double().numpy()
    pred = predictions(args, done, te_path, tmp)
    print("funnel training (sparse part by %s) vs PyTorch after %d steps: weights within %.3g, "
          "test probabilities within %.3g" % (sparse_opt, step, worst, np.abs(pred - want).max()))
    assert worst < 1e-4, "funnel's training differs from PyTorch's by %g" % worst
    assert np.abs(pred - want).max() < 1e-4


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--funnel", required=True)
    ap.add_argument("--data", required=True)
    args = ap.parse_args()
    tr = os.path.join(args.data, "criteo-ffm", "small_train.txt")
    te = os.path.join(args.data, "criteo-ffm", "small_test.txt")
    if not (os.path.exists(tr) and os.path.exists(te)):
        print("skipped: %s not found" % tr)
        return 77
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="funnel-deepfm-") as tmp:
        torch_trained_loads(args, tmp, tr, te)
        training_matches(args, tmp, tr, te)
        training_matches(args, tmp, tr, te, "adagrad")
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
