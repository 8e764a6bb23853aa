#!/usr/bin/python3
"""funneld's hot reload and deadlines on the MovieLens demo pipeline.

Reload: while a client thread sends Rank requests without pause, the configuration is
replaced (page default size 10 -> 7) and funneld gets SIGHUP: pages of 7 follow, and no
request fails meanwhile; then a broken configuration and SIGHUP: the log says the reload
failed and the previous pipeline keeps serving; POST /admin/reload answers 500 naming the
broken part, and 200 once the configuration is good again (pages of 10). Deadlines: a gRPC call without one is not
degraded; an HTTP call whose X-Request-Timeout-Ms budget is far below the rank stage's
time is answered from the recall stage with "rank" and "page" named in `degraded`, a
roomy budget is not degraded, and a malformed one is a 400. The server is
stopped at the end (SIGTERM, exit 0). Exits 77 (skipped) without the data.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from funnel_cli import check
from funneld_util import Funneld, prepare_pipeline, write_config


def rank_http(port, req):
    r = urllib.request.Request("http://127.0.0.1:%d/funnel.v1.Ranking/Rank" % port,
                               data=json.dumps(req).encode(),
                               headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(r, timeout=30) as resp:
        return json.loads(resp.read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--funnel", required=True)
    ap.add_argument("--funneld", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--proto", required=True)
    args = ap.parse_args()
    ml = os.path.join(args.data, "ml-100k")
    if not os.path.isdir(ml):
        print("SKIPPED: %s not found" % ml)
        return 77
    with tempfile.TemporaryDirectory(prefix="funnel-reload-") as tmp:
        d = os.path.join(tmp, "demo")
        cpath, conf = prepare_pipeline(args.funnel, ml, d)
        srv = Funneld(args.funneld, cpath, os.path.join(tmp, "funneld.log"))
        try:
            port = srv.http_port
            check(len(rank_http(port, {"userId": "196"})["items"]) == 10, "default page of 10")

            sizes, failures, stop = [], [], threading.Event()

            def client():
                while not stop.is_set():
                    try:
                        sizes.append(len(rank_http(port, {"userId": "196"})["items"]))
                    except Exception as e:  # any failure during the reload is the bug
                        failures.append(repr(e))

            t = threading.Thread(target=client)
            t.start()
            time.sleep(0.5)
            conf["page"]["default_size"] = 7
            write_config(cpath, conf)
            srv.signal(signal.SIGHUP)
            end = time.time() + 60
            while time.time() < end and (not sizes or sizes[-1] != 7):
                time.sleep(0.1)
            check(sizes and sizes[-1] == 7, "no page of 7 after the reload: %r" % sizes[-5:])
            check("SIGHUP received" in srv.log() and "loaded in" in srv.log(), "reload logged")
            # a broken configuration: logged, the running pipeline stays
            broken = dict(conf, ctr_model="missing.safetensors")
            write_config(cpath, broken)
            n_before = len(sizes)
            srv.signal(signal.SIGHUP)
            end = time.time() + 30
            while time.time() < end and "reload failed" not in srv.log():
                time.sleep(0.1)
            check("reload failed" in srv.log() and "missing.safetensors" in srv.log(),
                  "failed reload not logged: %s" % srv.log()[-800:])
            # the admin call: the broken configuration is refused with its reason
            try:
                urllib.request.urlopen(urllib.request.Request(
                    "http://127.0.0.1:%d/admin/reload" % port, data=b"", method="POST"),
                    timeout=60)
                check(False, "a broken configuration reloaded")
            except urllib.error.HTTPError as e:
                body = e.read()
                check(e.code == 500 and b"missing.safetensors" in body, "admin reload: %r" % body)
            time.sleep(0.5)
            stop.set()
            t.join(timeout=60)
            check(not failures, "requests failed during reloads: %r" % failures[:3])
            check(len(sizes) > n_before and all(s == 7 for s in sizes[n_before:]),
                  "the previous pipeline did not keep serving: %r" % sizes[n_before:][:5])
            check(len(sizes) > 20, "too few requests during the reloads: %d" % len(sizes))
            # and a good one: back to 10 items by the admin call
            conf["page"]["default_size"] = 10
            write_config(cpath, conf)
            with urllib.request.urlopen(urllib.request.Request(
                    "http://127.0.0.1:%d/admin/reload" % port, data=b"", method="POST"),
                    timeout=60) as resp:
                check(resp.status == 200, "admin reload")
            check(len(rank_http(port, {"userId": "196"})["items"]) == 10, "reloaded by the call")

            # deadlines over gRPC: a deadline shorter than the rank stage skips it
            gen = os.path.join(tmp, "gen")
            os.makedirs(gen)
            subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", args.proto,
                            "--python_out", gen, "--grpc_python_out", gen,
                            "funnel/v1/funnel.proto", "tensorflow/feature.proto"], check=True)
            sys.path.insert(0, gen)
            import grpc
            from funnel.v1 import funnel_pb2, funnel_pb2_grpc
            with grpc.insecure_channel("127.0.0.1:%d" % srv.grpc_port) as ch:
                stub = funnel_pb2_grpc.RankingStub(ch)
                req = funnel_pb2.RankRequest(user_id="196", page_size=5)
                full = stub.Rank(req, timeout=30)
                check(not full.degraded and len(full.items) == 5, "no deadline: %s" % full)
            # over HTTP the client waits whatever the budget, so a budget far below the rank
            # stage's time shows the skip deterministically: recall always runs (there is
            # nothing to answer without it), rank and page are skipped and named
            r = urllib.request.Request(
                "http://127.0.0.1:%d/funnel.v1.Ranking/Rank" % port,
                data=json.dumps({"userId": "196", "pageSize": 5}).encode(),
                headers={"Content-Type": "application/json", "X-Request-Timeout-Ms": "0.01"})
            with urllib.request.urlopen(r, timeout=30) as resp:
                degraded = json.loads(resp.read())
            check("rank" in degraded.get("degraded", []) and len(degraded["items"]) == 5 and
                  all(i.get("ctr", 0) == 0 for i in degraded["items"]),
                  "degraded answer: %r" % degraded)
            check([t["stage"] for t in degraded["timings"]] == ["recall"],
                  "degraded timings: %r" % degraded["timings"])
            roomy = dict(r.headers)
            r = urllib.request.Request(r.full_url, data=r.data,
                                       headers=dict(roomy, **{"X-request-timeout-ms": "10000"}))
            with urllib.request.urlopen(r, timeout=30) as resp:
                check(not json.loads(resp.read()).get("degraded"), "a roomy budget degraded")
            try:
                bad = urllib.request.Request(r.full_url, data=r.data, headers=dict(
                    roomy, **{"X-request-timeout-ms": "soon"}))
                urllib.request.urlopen(bad, timeout=30)
                check(False, "a bad X-Request-Timeout-Ms was accepted")
            except urllib.error.HTTPError as e:
                check(e.code == 400 and b"X-Request-Timeout-Ms" in e.read(), "bad budget")
        finally:
            srv.stop()
    print("server reload: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
