#!/usr/bin/python3
"""TFRecord and tf.Example interoperability between funnel and Python.

Python's protobuf (python3-protobuf) builds the Examples and prints their JSON;
an independent TFRecord reader and writer here frames them with crcmod's
CRC-32C. Both directions must agree byte for byte and message for message:

  Python writes TFRecord  -> funnel tfrecord cat     -> same messages, same JSON text
  Python writes JSON      -> funnel tfrecord from-jsonl -> Python reads the same messages
  TensorFlow's own file   -> funnel and Python agree
  damaged files           -> funnel fails naming the file and the byte offset
"""
import argparse
import gzip
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile

import crcmod.predefined

crc32c = crcmod.predefined.mkCrcFun("crc-32c")


def masked_crc(data):
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def write_tfrecord(path, records, compress=False):
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        for r in records:
            header = struct.pack("<Q", len(r))
            f.write(header + struct.pack("<I", masked_crc(header)))
            f.write(r + struct.pack("<I", masked_crc(r)))


def read_tfrecord(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    out, pos = [], 0
    while pos < len(raw):
        header = raw[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (crc,) = struct.unpack("<I", raw[pos + 8:pos + 12])
        assert crc == masked_crc(header), "length CRC mismatch at %d" % pos
        data = raw[pos + 12:pos + 12 + length]
        (dcrc,) = struct.unpack("<I", raw[pos + 12 + length:pos + 16 + length])
        assert dcrc == masked_crc(data), "data CRC mismatch at %d" % pos
        out.append(data)
        pos += 16 + length
    return out


def random_examples(example_pb2, n, seed):
    rng = random.Random(seed)
    specials = [0.0, -0.0, 1.0, 0.1, 1e-5, 3.4e38, -3.4e38, 1e-45, 1e16, 123456789.0,
                float("inf"), float("-inf"), float("nan")]
    words = [b"", b"a", "caf\u00e9".encode(), "\u4e2d\u6587".encode(), "\U0001F600".encode(),
             b"\x00\xff\xfe binary", b'quote " backslash \\ newline \n tab \t', b"x" * 300]
    keys = ["label", "user_id", "title", "genres", "age", "emb", "caf\u00e9", "k\"q", "\u4e2d",
            "ctrl\x01", "empty_bytes", "empty_float", "none"]
    examples = []
    for i in range(n):
        ex = example_pb2.Example()
        feat = ex.features.feature
        for key in rng.sample(keys, rng.randint(0, len(keys))):
            kind = rng.choice(["bytes", "float", "int64", "empty", "none"])
            if key == "none" or kind == "none":
                feat[key].SetInParent()  # a Feature with no list set
            elif kind == "bytes":
                feat[key].bytes_list.value.extend(
                    rng.choice(words) for _ in range(rng.randint(1, 4)))
            elif kind == "float":
                vals = [rng.choice(specials) if rng.random() < 0.3 else rng.uniform(-1e6, 1e6)
                        for _ in range(rng.randint(1, 8))]
                feat[key].float_list.value.extend(vals)
            elif kind == "int64":
                vals = [rng.choice([0, 1, -1, 2**63 - 1, -2**63, rng.randint(-2**40, 2**40)])
                        for _ in range(rng.randint(1, 5))]
                feat[key].int64_list.value.extend(vals)
            else:
                feat[key].float_list.SetInParent()
        examples.append(ex)
    examples.append(example_pb2.Example())  # no features at all
    return examples


def same_message(a, b):
    # Bytes compare NaN payloads too; deterministic serialization orders map entries.
    return a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)


def python_json_in_order(json_format, ex, line):
    """Python's JSON of ex with map keys in the order funnel printed them."""
    ours = json.loads(line)
    theirs = json.loads(json_format.MessageToJson(ex, indent=None))
    if "features" in theirs and "feature" in theirs["features"]:
        order = list(ours["features"]["feature"].keys())
        m = theirs["features"]["feature"]
        theirs["features"]["feature"] = {k: m[k] for k in order}
    return json.dumps(theirs)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--funnel", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--data", default="")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="funnel-interop-")
    subprocess.run(["protoc", "--proto_path=" + args.proto_dir, "--python_out=" + tmp,
                    "tensorflow/feature.proto", "tensorflow/example.proto"], check=True)
    sys.path.insert(0, tmp)
    from google.protobuf import json_format
    from tensorflow import example_pb2

    examples = random_examples(example_pb2, 400, seed=20261122)
    failures = 0

    # 1. Python writes TFRecord (plain and gzip); funnel prints the same JSON Python does.
    for compress in (False, True):
        path = os.path.join(tmp, "py.tfrecord" + (".gz" if compress else ""))
        write_tfrecord(path, [e.SerializeToString() for e in examples], compress)
        res = run([args.funnel, "tfrecord", "cat", path])
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert len(lines) == len(examples), (len(lines), len(examples))
        for i, (ex, line) in enumerate(zip(examples, lines)):
            back = json_format.Parse(line, example_pb2.Example())
            if not same_message(ex, back):
                print("record %d: message differs after funnel cat" % i)
                failures += 1
            want = python_json_in_order(json_format, ex, line)
            if want != line:
                print("record %d: JSON text differs\n  python: %s\n  funnel: %s" % (i, want, line))
                failures += 1
        print("python -> funnel cat (%s): %d records checked" %
              ("gzip" if compress else "plain", len(examples)))

    # 2. Python prints JSON; funnel writes TFRecord; Python reads the same messages.
    jsonl = os.path.join(tmp, "py.jsonl")
    with open(jsonl, "w") as f:
        for ex in examples:
            f.write(json_format.MessageToJson(ex, indent=None) + "\n")
    for flag in ([], ["--gzip"]):
        out = os.path.join(tmp, "funnel.tfrecord" + (".gz" if flag else ""))
        res = run([args.funnel, "tfrecord", "from-jsonl", jsonl, out] + flag)
        assert res.returncode == 0, res.stderr
        records = read_tfrecord(out)
        assert len(records) == len(examples)
        for i, (ex, rec) in enumerate(zip(examples, records)):
            back = example_pb2.Example.FromString(rec)
            if not same_message(ex, back):
                print("record %d: message differs after funnel from-jsonl %s" % (i, flag))
                failures += 1
        print("python JSON -> funnel from-jsonl %s -> python: %d records checked" %
              (" ".join(flag) or "(plain)", len(records)))

    # 3. A file TensorFlow wrote: funnel and Python read the same records.
    tf_file = os.path.join(args.data, "deepctr-samples", "criteo_sample.tr.tfrecords")
    if args.data and os.path.exists(tf_file):
        records = read_tfrecord(tf_file)
        res = run([args.funnel, "tfrecord", "cat", tf_file])
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert len(lines) == len(records) == 160
        for i, (rec, line) in enumerate(zip(records, lines)):
            ex = example_pb2.Example.FromString(rec)
            if not same_message(ex, json_format.Parse(line, example_pb2.Example())):
                print("TensorFlow record %d differs" % i)
                failures += 1
            if python_json_in_order(json_format, ex, line) != line:
                print("TensorFlow record %d: JSON text differs" % i)
                failures += 1
        print("TensorFlow file: %d records agree" % len(records))
    else:
        print("TensorFlow file: skipped (public data sets not found)")

    # 4. Damage is reported with the file and the byte offset, never skipped silently.
    good = os.path.join(tmp, "py.tfrecord")
    raw = bytearray(open(good, "rb").read())
    first_len = struct.unpack("<Q", raw[:8])[0]
    second = 16 + first_len
    raw[second + 12] ^= 0x01  # first data byte of record 1
    bad = os.path.join(tmp, "bad.tfrecord")
    open(bad, "wb").write(bytes(raw))
    res = run([args.funnel, "tfrecord", "cat", bad])
    expect = "record 1 at byte offset %d: data CRC mismatch" % second
    if res.returncode != 1 or expect not in res.stderr or "bad.tfrecord" not in res.stderr:
        print("damaged file: rc=%d stderr=%r" % (res.returncode, res.stderr))
        failures += 1
    if len(res.stdout.splitlines()) != 1:
        print("damaged file: expected exactly the record before the damage on stdout")
        failures += 1
    res = run([args.funnel, "tfrecord", "cat", "--skip-corrupt", bad])
    if res.returncode != 0 or len(res.stdout.splitlines()) != len(examples) - 1 or \
            "skipped 1 damaged records" not in res.stderr:
        print("--skip-corrupt: rc=%d stderr=%r" % (res.returncode, res.stderr))
        failures += 1
    open(bad, "wb").write(bytes(raw[:second + 5]))
    res = run([args.funnel, "tfrecord", "cat", bad])
    if res.returncode != 1 or ("byte offset %d: truncated header" % second) not in res.stderr:
        print("truncated file: rc=%d stderr=%r" % (res.returncode, res.stderr))
        failures += 1
    res = run([args.funnel, "tfrecord", "from-jsonl", "-", os.path.join(tmp, "x.tfrecord")],
              input='{"features": {}}\n{"features": {"feature": {"a": {"int64List": '
                    '{"value": ["nope"]}}}}}\n')
    if res.returncode != 1 or "line 2" not in res.stderr or \
            os.path.exists(os.path.join(tmp, "x.tfrecord")):
        print("bad JSON line: rc=%d stderr=%r" % (res.returncode, res.stderr))
        failures += 1
    print("damage and bad input: checked")

    subprocess.run(["rm", "-rf", tmp])
    if failures:
        print("FAILED: %d mismatches" % failures)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
