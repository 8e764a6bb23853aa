#!/usr/bin/python3
"""funneld's Rank over HTTP/1.1, end to end on MovieLens-100k, with curl as the client.

Prepares what the demo serves (funnel demo, store load, an FFM CTR model, the item
co-occurrence table, a pipeline configuration), checks `funneld --config --check` on the
good configuration and on broken ones (each error names the key or the file), then starts
funneld and sends: JSON and protobuf Rank requests (page size, items not in the user's
history, channels, CTR in (0, 1), timings per stage, model versions, the same answer twice),
a new user (popularity only), exclusions, debug, and every kind of bad input (page_size
over the maximum, malformed JSON, an unknown field, a field of the wrong type, a too long
query, invalid UTF-8 in a protobuf request, an oversized body, a wrong content type, a
wrong method), each answered with the right status and a message naming the problem while
the server keeps serving. The server is stopped at the end (SIGTERM, exit 0). Exits 77
(skipped) without the data.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

from funnel_cli import check, interactions
from funneld_util import Funneld, prepare_pipeline


def curl(port, path, body, ctype="application/json", method="POST"):
    """(status, body bytes) of one request with curl."""
    cmd = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-X", method,
           "http://127.0.0.1:%d%s" % (port, path)]
    if body is not None:
        cmd += ["-H", "Content-Type: " + ctype, "--data-binary", "@-"]
    p = subprocess.run(cmd, input=body if isinstance(body, bytes) else (body or "").encode(),
                       capture_output=True, timeout=60)
    out = p.stdout
    i = out.rindex(b"\n")
    return int(out[i + 1:]), out[:i]


def rank(port, req, status=200, has=None):
    code, body = curl(port, "/funnel.v1.Ranking/Rank", json.dumps(req))
    check(code == status, "Rank %r: HTTP %d, expected %d: %r" % (req, code, status, body[:300]))
    if has:
        check(has.encode() in body, "Rank %r: %r lacks %r" % (req, body[:300], has))
    return json.loads(body) if code == 200 else body.decode(errors="replace")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--funnel", required=True)
    ap.add_argument("--funneld", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--proto", required=True, help="the proto/ folder")
    args = ap.parse_args()
    f = args.funnel
    ml = os.path.join(args.data, "ml-100k")
    if not os.path.isdir(ml):
        print("SKIPPED: %s not found" % ml)
        return 77
    with tempfile.TemporaryDirectory(prefix="funnel-rank-") as tmp:
        d = os.path.join(tmp, "demo")
        cpath, conf = prepare_pipeline(f, ml, d)

        # --check: the good configuration, then broken ones named
        p = subprocess.run([args.funneld, "--config", cpath, "--check"], capture_output=True,
                           text=True)
        check(p.returncode == 0 and "usable" in p.stdout, "--check: %r %r" % (p.stdout, p.stderr))
        broken = [({"recall": {"cap": 300, "speed": 1}}, "recall.speed"),
                  ({"ctr_model": "missing.safetensors"}, "missing.safetensors"),
                  ({"page": {"max_size": 5, "default_size": 10}}, "page.default_size"),
                  ({"spec": "features-semantic.json"}, "ctr_model")]
        if not os.path.exists(os.path.join(d, "features-semantic.json")):
            broken.pop()
        for change, needle in broken:
            bad = json.loads(json.dumps(conf))
            for k, v in change.items():
                bad[k] = v
            bp = os.path.join(d, "bad.json")
            with open(bp, "w") as o:
                json.dump(bad, o)
            p = subprocess.run([args.funneld, "--config", bp, "--check"], capture_output=True,
                               text=True)
            check(p.returncode == 1 and needle in p.stderr,
                  "--check of %r: exit %d, %r" % (change, p.returncode, p.stderr))
        with open(os.path.join(d, "bad.json"), "w") as o:
            o.write("{\"store\": ")
        p = subprocess.run([args.funneld, "--config", os.path.join(d, "bad.json"), "--check"],
                           capture_output=True, text=True)
        check(p.returncode == 1 and "bad.json:1" in p.stderr, "truncated JSON: %r" % p.stderr)

        history = {}
        for u, i, t, label in interactions(f, os.path.join(d, "interactions.tfrecord")):
            history.setdefault(u, set()).add(i)

        srv = Funneld(args.funneld, cpath, os.path.join(tmp, "funneld.log"))
        try:
            port, grpc_port = srv.http_port, srv.grpc_port

            r = rank(port, {"requestId": "r1", "userId": "196", "pageSize": 5})
            items = r["items"]
            check(r["requestId"] == "r1" and len(items) == 5, "page of 5: %r" % r)
            check(not (set(i["id"] for i in items) & history["196"]), "seen items shown")
            check(all(0 < i["ctr"] < 1 and i["channels"] for i in items), "items: %r" % items)
            check([t["stage"] for t in r["timings"]] == ["recall", "rank", "page"],
                  "timings: %r" % r["timings"])
            check("ctr" in r["modelVersions"] and "feature_spec" in r["modelVersions"],
                  "model versions: %r" % r.get("modelVersions"))
            check(rank(port, {"requestId": "r1", "userId": "196", "pageSize": 5})["items"] ==
                  items, "the same request answered differently")
            check(any("cooc" in i["channels"] for i in rank(port, {"userId": "196",
                                                                   "pageSize": 50})["items"]),
                  "no co-occurrence candidate for a user with history")
            default = rank(port, {"userId": "196"})
            check(len(default["items"]) == 10, "default page size")
            new = rank(port, {"userId": "no-such-user", "pageSize": 8})["items"]
            check(len(new) == 8 and all(i["channels"] == ["popularity"] for i in new),
                  "a new user: %r" % new)
            anon = rank(port, {"pageSize": 3})["items"]
            check(len(anon) == 3, "no user id")
            top = [i["id"] for i in items[:2]]
            ex = rank(port, {"userId": "196", "pageSize": 5, "excludeIds": top})["items"]
            check(not set(top) & set(i["id"] for i in ex) and len(ex) == 5, "exclusions: %r" % ex)
            dbg = rank(port, {"userId": "196", "pageSize": 5, "debug": True})
            check(dbg["debug"][0]["stage"] == "recall" and len(dbg["debug"][0]["items"]) > 5,
                  "debug: %r" % dbg.get("debug", [])[:1])
            ctx = rank(port, {"userId": "196", "pageSize": 5,
                              "context": {"feature": {"hour": {"int64List": {"value": ["9"]}}}}})
            check(len(ctx["items"]) == 5, "context features")

            # protobuf in and out, with messages generated by protoc from our proto
            gen = os.path.join(tmp, "gen")
            os.makedirs(gen)
            subprocess.run(["protoc", "-I", args.proto, "--python_out", gen,
                            "funnel/v1/funnel.proto", "tensorflow/feature.proto"], check=True)
            sys.path.insert(0, gen)
            from funnel.v1 import funnel_pb2
            req = funnel_pb2.RankRequest(request_id="pb", user_id="196", page_size=5)
            code, body = curl(port, "/funnel.v1.Ranking/Rank", req.SerializeToString(),
                              "application/protobuf")
            check(code == 200, "protobuf Rank: %d %r" % (code, body[:200]))
            resp = funnel_pb2.RankResponse.FromString(body)
            check([i.id for i in resp.items] == [i["id"] for i in items],
                  "protobuf and JSON answers differ")
            code, body = curl(port, "/twirp/funnel.v1.Ranking/Rank", req.SerializeToString(),
                              "application/protobuf")
            check(code == 200, "twirp path: %d" % code)

            # gRPC with a real client (python3-grpcio, stubs from our proto)
            subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", args.proto,
                            "--grpc_python_out", gen, "funnel/v1/funnel.proto"], check=True)
            import grpc
            from funnel.v1 import funnel_pb2_grpc
            with grpc.insecure_channel("127.0.0.1:%d" % grpc_port) as ch:
                stub = funnel_pb2_grpc.RankingStub(ch)
                got = stub.Rank(req, timeout=30)
                check([i.id for i in got.items] == [i["id"] for i in items],
                      "gRPC and JSON answers differ")
                try:
                    stub.Rank(funnel_pb2.RankRequest(user_id="196", page_size=51), timeout=30)
                    check(False, "gRPC page_size 51 accepted")
                except grpc.RpcError as e:
                    check(e.code() == grpc.StatusCode.INVALID_ARGUMENT and
                          "page_size" in e.details(), "gRPC bad input: %s" % e)

            # Encode needs an encoder, which this pipeline does not configure
            code, body = curl(port, "/funnel.v1.Ranking/Encode", '{"texts": ["hi"]}')
            check(code == 503 and b"encoder" in body, "Encode without an encoder: %d %r" %
                  (code, body))

            # bad input: a status and a message naming the problem, then still serving
            rank(port, {"userId": "196", "pageSize": 51}, 400, "page_size")
            code, body = curl(port, "/funnel.v1.Ranking/Rank", '{"userId": "196",')
            check(code == 400, "malformed JSON: %d %r" % (code, body))
            rank(port, {"userId": "196", "colour": "red"}, 400, "colour")
            rank(port, {"userId": "196", "pageSize": "many"}, 400, "pageSize")
            rank(port, {"userId": "196", "query": "x" * 2000}, 400, "query")
            badutf = funnel_pb2.RankRequest(user_id="196").SerializeToString() + \
                b"\x1a\x02\xc3\x28"  # field 3 (query): invalid UTF-8
            code, body = curl(port, "/funnel.v1.Ranking/Rank", badutf, "application/protobuf")
            check(code == 400 and (b"UTF-8" in body or b"protobuf" in body),
                  "invalid UTF-8: %d %r" % (code, body))
            code, body = curl(port, "/funnel.v1.Ranking/Rank", b"\xff\xff\xff",
                              "application/protobuf")
            check(code == 400 and b"RankRequest" in body, "garbage protobuf: %d %r" % (code, body))
            code, _ = curl(port, "/funnel.v1.Ranking/Rank",
                           json.dumps({"query": "q" * (2 << 20)}))
            check(code == 413, "oversized body: %d" % code)
            code, body = curl(port, "/funnel.v1.Ranking/Rank", "{}", "text/plain")
            check(code == 415, "content type: %d" % code)
            code, _ = curl(port, "/funnel.v1.Ranking/Rank", None, method="GET")
            check(code == 405, "GET Rank: %d" % code)
            check(len(rank(port, {"userId": "196", "pageSize": 5})["items"]) == 5,
                  "still serving after bad input")
        finally:
            srv.stop()
    print("server rank: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
