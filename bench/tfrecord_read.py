#!/usr/bin/python3
"""TFRecord read throughput: funnel against `cat` (and zcat, and Python) on one file.

The file is TensorFlow's own Criteo sample repeated until it reaches --mb
megabytes (TFRecord files concatenate). Every reader runs on a warm page
cache, best of --repeat runs:

  cat FILE > /dev/null                 the ceiling: bytes through a pipe, no parsing
  funnel tfrecord stat FILE            framing + CRC32C of every length and record
  funnel tfrecord stat --decode FILE   ... and every record parsed as a tf.Example
  python3 (crcmod + protobuf, C/C++)   the same work as --decode, in Python
and the same for a gzip copy against `zcat`.
"""
import argparse
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time


def best_time(cmd, repeat):
    best = None
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
        dt = time.perf_counter() - t
        best = dt if best is None or dt < best else best
    return best


PY_READER = r'''
import gzip, struct, sys
import crcmod.predefined
sys.path.insert(0, sys.argv[2])
from tensorflow import example_pb2
crc = crcmod.predefined.mkCrcFun("crc-32c")
def masked(b):
    c = crc(b)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF
path = sys.argv[1]
f = gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb", buffering=1 << 20)
n = 0
while True:
    h = f.read(12)
    if not h:
        break
    (length,) = struct.unpack("<Q", h[:8])
    assert struct.unpack("<I", h[8:])[0] == masked(h[:8])
    d = f.read(length + 4)
    assert struct.unpack("<I", d[length:])[0] == masked(d[:length])
    example_pb2.Example.FromString(d[:length])
    n += 1
print(n)
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--funnel", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--mb", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    src = os.path.join(args.data, "deepctr-samples", "criteo_sample.tr.tfrecords")
    tmp = tempfile.mkdtemp(prefix="funnel-bench-")
    try:
        subprocess.run(["protoc", "--proto_path=" + args.proto_dir, "--python_out=" + tmp,
                        "tensorflow/feature.proto", "tensorflow/example.proto"], check=True)
        py = os.path.join(tmp, "reader.py")
        open(py, "w").write(PY_READER)
        chunk = open(src, "rb").read()
        big = os.path.join(tmp, "big.tfrecord")
        with open(big, "wb") as f:
            for _ in range(args.mb * 1000000 // len(chunk) + 1):
                f.write(chunk)
        size = os.path.getsize(big)
        gz = big + ".gz"
        subprocess.run("gzip -1 -c %s > %s" % (big, gz), shell=True, check=True)
        mb = size / 1e6
        rows = []

        def row(name, cmd, peer):
            t = best_time(cmd, args.repeat)
            rows.append({"reader": name, "seconds": round(t, 4), "mb_per_s": round(mb / t, 1),
                         "peer": peer})

        row("cat", "cat %s > /dev/null" % big, None)
        row("funnel stat (framing + CRC)", "%s tfrecord stat %s" % (args.funnel, big), "cat")
        row("funnel stat --decode", "%s tfrecord stat --decode %s" % (args.funnel, big), "cat")
        small = min(args.mb, 64)
        part = os.path.join(tmp, "part.tfrecord")
        with open(part, "wb") as f:
            for _ in range(small * 1000000 // len(chunk) + 1):
                f.write(chunk)
        t = best_time("/usr/bin/python3 %s %s %s" % (py, part, tmp), 1)
        rows.append({"reader": "python crcmod + protobuf (decode)", "seconds": round(t, 4),
                     "mb_per_s": round(os.path.getsize(part) / 1e6 / t, 1), "peer": None})
        row("zcat (gzip -1)", "zcat %s > /dev/null" % gz, None)
        row("funnel stat, gzip", "%s tfrecord stat %s" % (args.funnel, gz), "zcat (gzip -1)")

        by = {r["reader"]: r for r in rows}
        for r in rows:
            if r["peer"]:
                r["ratio_to_peer"] = round(r["mb_per_s"] / by[r["peer"]]["mb_per_s"], 2)
        if args.json:
            print(json.dumps({"file_mb": round(mb, 1), "rows": rows}))
        else:
            print("TFRecord read, %.0f MB file (TensorFlow's Criteo sample repeated), warm cache, "
                  "best of %d" % (mb, args.repeat))
            print("| reader | MB/s | vs peer |")
            print("| --- | ---: | ---: |")
            for r in rows:
                ratio = "%.2f× %s" % (r["ratio_to_peer"], r["peer"]) if r["peer"] else ""
                print("| %s | %.0f | %s |" % (r["reader"], r["mb_per_s"], ratio))
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    sys.exit(main())
