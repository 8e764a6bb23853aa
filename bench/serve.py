#!/usr/bin/python3
"""funneld under load: latency at a fixed request rate and throughput, with h2load (Debian's
nghttp2-client) as the load generator, on the MovieLens demo (scripts/run-demo prepares it).

Scenarios (each bounded in time, --seconds):
  (a) recommendation, no query: HTTP/1.1 JSON Rank at --rate-rec requests/s (goal p99 <= 10 ms
      at 200/s), and the same over gRPC (h2c, protobuf);
  (b) search: a query at --rate-search requests/s (goal p99 <= 30 ms at 50/s) with a cold
      cache (a funneld whose query cache holds nothing, so every request runs the encoder)
      and a warm one (the query repeated, its vector cached);
  and the throughput of (a) with closed-loop clients (wrk, --connections).
Latency percentiles come from h2load's per-request log (client side). Where the time goes:
each stage's mean time from the responses' timings of sampled requests.

  bench/serve.py --build build [--seconds 10] [--rate-rec 200] [--rate-search 50]
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(cmd, env=None):
    """Starts funneld (or run-demo, which execs it); returns (process, HTTP port, gRPC port)."""
    log = tempfile.NamedTemporaryFile(prefix="funneld-", suffix=".log", delete=False)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    http = grpc = None
    end = time.time() + 900
    while time.time() < end and not (http and grpc):
        line = p.stdout.readline()
        if not line:
            sys.exit("serve: %s exited: %s" % (cmd[0], open(log.name).read()[-2000:]))
        m = re.match(r"funneld listening on http://[^:]+:(\d+)", line)
        http = int(m.group(1)) if m else http
        m = re.match(r"funneld gRPC listening on .*:(\d+)", line)
        grpc = int(m.group(1)) if m else grpc
    return p, http, grpc


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()


def rank(port, body):
    r = urllib.request.Request("http://127.0.0.1:%d/funnel.v1.Ranking/Rank" % port,
                               data=json.dumps(body).encode(),
                               headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(r, timeout=60) as resp:
        return json.loads(resp.read())


def percentiles(log_path):
    """(n, ok, p50 ms, p99 ms) from h2load's --log-file (start us, status, duration us)."""
    lat, ok = [], 0
    with open(log_path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3:
                continue
            lat.append(int(parts[2]) / 1000.0)
            ok += parts[1] in ("200", "0")
    lat.sort()
    if not lat:
        return 0, 0, float("nan"), float("nan")
    return len(lat), ok, lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]


def h2load(url, body_path, headers, rate, seconds, h1, tmp, clients=1):
    """Fixed-rate load: `clients` connections at rate/clients requests/s each. h2load's
    clients fire on the same clock, so n clients send bursts of n at once; one client (an
    HTTP/1.1 connection carries one request at a time) is a steady stream as long as a
    request takes less than 1/rate."""
    log = os.path.join(tmp, "h2load.log")
    if os.path.exists(log):
        os.unlink(log)  # h2load appends
    cmd = ["h2load", "-c", str(clients), "--rps", str(rate / clients), "-D", str(seconds),
           "-d", body_path, "--log-file", log, url]
    if h1:
        cmd.insert(1, "--h1")
    for h in headers:
        cmd[1:1] = ["-H", h]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120).stdout
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    n, ok, p50, p99 = percentiles(log)
    return {"requests": n, "ok": ok, "p50_ms": p50, "p99_ms": p99,
            "req_s": float(m.group(3)) if m else float("nan")}


def grpc_frame(msg):
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


def stage_means(port, body, n=50):
    sums, counts = {}, {}
    for _ in range(n):
        for t in rank(port, body).get("timings", []):
            sums[t["stage"]] = sums.get(t["stage"], 0) + t["millis"]
            counts[t["stage"]] = counts.get(t["stage"], 0) + 1
    return {s: sums[s] / counts[s] for s in sums}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rate-rec", type=int, default=200)
    ap.add_argument("--rate-search", type=int, default=50)
    ap.add_argument("--connections", type=int, default=8)
    args = ap.parse_args()
    for tool in ("h2load", "wrk"):
        if subprocess.run(["sh", "-c", "command -v " + tool], capture_output=True).returncode:
            print("serve: skipped: %s not found (apt-get install nghttp2-client wrk)" % tool)
            return 0
    build = os.path.abspath(args.build)
    funneld = os.path.join(build, "src", "server", "funneld")
    env = dict(os.environ, FUNNEL_GRPC_PORT="0")
    srv, port, gport = start([os.path.join(ROOT, "scripts", "run-demo"), build, "0"], env)
    demo = os.environ.get("FUNNEL_DEMO_OUT", os.path.join(ROOT, "out", "demo"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="funnel-serve-") as tmp:
        try:
            rec = {"userId": "196", "pageSize": 10}
            search = {"userId": "196", "query": "a funny movie about a dog", "pageSize": 10}
            rank(port, rec), rank(port, search)  # warm the pages, the encoder and the cache
            rec_path, search_path = os.path.join(tmp, "rec.json"), os.path.join(tmp, "s.json")
            json.dump(rec, open(rec_path, "w"))
            json.dump(search, open(search_path, "w"))
            url = "http://127.0.0.1:%d/funnel.v1.Ranking/Rank" % port
            ctype = "content-type: application/json"
            rows.append(("(a) recommendation, HTTP/1.1 JSON", args.rate_rec,
                         h2load(url, rec_path, [ctype], args.rate_rec, args.seconds, True, tmp)))
            rows.append(("(a) recommendation, HTTP/1.1 JSON, 4 clients in step (bursts of 4)",
                         args.rate_rec, h2load(url, rec_path, [ctype], args.rate_rec,
                                               args.seconds, True, tmp, clients=4)))
            sys.path.insert(0, os.path.join(tmp, "gen"))
            os.makedirs(os.path.join(tmp, "gen"))
            subprocess.run(["protoc", "-I", os.path.join(ROOT, "proto"), "--python_out",
                            os.path.join(tmp, "gen"), "funnel/v1/funnel.proto",
                            "tensorflow/feature.proto"], check=True)
            from funnel.v1 import funnel_pb2
            g_path = os.path.join(tmp, "rec.grpc")
            with open(g_path, "wb") as o:
                o.write(grpc_frame(funnel_pb2.RankRequest(user_id="196", page_size=10)
                                   .SerializeToString()))
            gurl = "http://127.0.0.1:%d/funnel.v1.Ranking/Rank" % gport
            rows.append(("(a) recommendation, gRPC (h2c, protobuf)", args.rate_rec,
                         h2load(gurl, g_path, ["content-type: application/grpc", "te: trailers"],
                                args.rate_rec, args.seconds, False, tmp)))
            rows.append(("(b) search, warm cache (the query's vector cached)", args.rate_search,
                         h2load(url, search_path, [ctype], args.rate_search, args.seconds, True,
                                tmp, clients=2)))
            stages_rec = stage_means(port, rec)
            stages_warm = stage_means(port, search)
            wrk = subprocess.run(["wrk", "-t", "2", "-c", str(args.connections), "-d",
                                  "%ds" % args.seconds, "--latency", "-s",
                                  os.path.join(ROOT, "bench", "serve_wrk.lua"), url],
                                 capture_output=True, text=True,
                                 env=dict(os.environ, FUNNEL_BODY=json.dumps(rec))).stdout
        finally:
            stop(srv)
        # cold: a funneld whose query cache keeps nothing, so every search runs the encoder
        conf = json.load(open(os.path.join(demo, "funneld.json")))
        conf.setdefault("encoder", {})["cache_size"] = 0
        cold_conf = os.path.join(demo, "funneld-cold.json")
        json.dump(conf, open(cold_conf, "w"))
        srv, port, gport = start([funneld, "--config", cold_conf, "--http-port", "0",
                                  "--grpc-port", "0"])
        try:
            rank(port, search)
            url = "http://127.0.0.1:%d/funnel.v1.Ranking/Rank" % port
            rows.append(("(b) search, cold cache (every query encoded)", args.rate_search,
                         h2load(url, search_path, [ctype], args.rate_search, args.seconds, True,
                                tmp, clients=2)))
            stages_cold = stage_means(port, search, 20)
        finally:
            stop(srv)
            os.unlink(cold_conf)
    print("serve: funneld on the MovieLens demo, %d s per scenario, h2load fixed rate; "
          "%d cores" % (args.seconds, os.cpu_count()))
    print()
    print("| scenario | rate/s | requests | ok | p50 ms | p99 ms | achieved req/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, rate, r in rows:
        print("| %s | %d | %d | %d | %.2f | %.2f | %.1f |" %
              (name, rate, r["requests"], r["ok"], r["p50_ms"], r["p99_ms"], r["req_s"]))
    print()
    m = re.search(r"Requests/sec:\s+([\d.]+)", wrk)
    lat = dict(re.findall(r"\s+(\d+)%\s+([\d.]+\w+)", wrk))
    print("closed loop (wrk, 2 threads, %d connections, recommendation): %s req/s, p50 %s, "
          "p99 %s" % (args.connections, m.group(1) if m else "?", lat.get("50", "?"),
                      lat.get("99", "?")))
    print()
    print("| stage, mean ms | recommendation | search, warm | search, cold |")
    print("| --- | ---: | ---: | ---: |")
    for s in ("recall", "rank", "rerank", "page"):
        print("| %s | %.3f | %.3f | %.3f |" % (s, stages_rec.get(s, float("nan")),
                                              stages_warm.get(s, float("nan")),
                                              stages_cold.get(s, float("nan"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
