#!/usr/bin/env python3
"""Text encoder on the GPU: funnel against PyTorch, side by side in one run.

PyTorch runs the same architecture (Hugging Face BertModel from the model's config.json,
the real weights when --model has them, else random ones) in bf16 with scaled-dot-product
attention, plus mean pooling and L2 normalisation, timed with CUDA events after warm-up:

  (a) latency of one 16-token query (p50 / p99 over --runs calls);
  (b) a batch of 1024 sequences of 64 tokens: tokens/s (median of --runs batches).

funnel's side is bench_encoder (bench/bench_encoder.c) with --device cuda, which prints
{"sentences_per_s", "p50_ms", "p99_ms", ...}. Prints a Markdown table and, with --json, one
JSON object. Needs a CUDA GPU, torch and transformers.

  bench/encoder_gpu.py --model models/all-MiniLM-L6-v2 --funnel-bench build/bench/bench_encoder
"""
import argparse
import json
import os
import subprocess
import sys


def torch_side(args):
    import torch
    from transformers import BertConfig, BertModel

    cfg = BertConfig.from_pretrained(args.model)
    weights = os.path.join(args.model, "model.safetensors")
    if os.path.exists(weights):
        model = BertModel.from_pretrained(args.model, attn_implementation="sdpa")
    else:
        model = BertModel(cfg, attn_implementation="sdpa")
    model = model.to("cuda", dtype=torch.bfloat16).eval()

    def encode(ids, mask):
        out = model(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(out.dtype)
        pooled = (out * m).sum(1) / m.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(pooled.float(), dim=-1)

    def timed(batch, tokens, runs):
        ids = torch.randint(1000, cfg.vocab_size, (batch, tokens), device="cuda")
        mask = torch.ones_like(ids)
        with torch.inference_mode():
            for _ in range(10):
                encode(ids, mask)
            torch.cuda.synchronize()
            times = []
            for _ in range(runs):
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                encode(ids, mask)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
        times.sort()
        return times[len(times) // 2], times[min(len(times) - 1, len(times) * 99 // 100)]

    q50, q99 = timed(1, 16, args.runs)
    b50, _ = timed(1024, 64, max(5, args.runs // 20))
    return {"engine": "PyTorch %s bf16 + SDPA" % torch.__version__, "query_p50_ms": q50,
            "query_p99_ms": q99, "batch_ms": b50, "tokens_per_s": 1024 * 64 / (b50 / 1e3),
            "device": torch.cuda.get_device_name()}


def funnel_side(args):
    def run(batch, tokens, runs):
        out = subprocess.run([args.funnel_bench, "--model", args.model, "--device", "cuda",
                              "--precision", args.precision, "--batch", str(batch), "--tokens",
                              str(tokens), "--runs", str(runs), "--json"],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    q = run(1, 16, args.runs)
    b = run(1024, 64, max(5, args.runs // 20))
    return {"engine": "funnel %s (%s)" % (args.precision, q.get("device", "cuda")),
            "query_p50_ms": q["p50_ms"], "query_p99_ms": q["p99_ms"], "batch_ms": b["p50_ms"],
            "tokens_per_s": 1024 * 64 * b["sentences_per_s"] / 1024}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/all-MiniLM-L6-v2")
    ap.add_argument("--funnel-bench", default="build/bench/bench_encoder")
    ap.add_argument("--precision", default="bf16", choices=["bf16", "f16", "f32"])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [torch_side(args), funnel_side(args)]
    if args.json:
        print(json.dumps({"rows": rows}))
        return 0
    print("Text encoder on %s: one 16-token query; 1024 x 64 tokens" % rows[0]["device"])
    print("| engine | query p50 ms | p99 ms | 1024x64 ms | M tokens/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print("| %s | %.3f | %.3f | %.2f | %.2f |" % (r["engine"], r["query_p50_ms"],
                                                  r["query_p99_ms"], r["batch_ms"],
                                                  r["tokens_per_s"] / 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
