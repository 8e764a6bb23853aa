#!/usr/bin/python3
"""funneld under load, on the MovieLens demo pipeline: the worker pool and /metrics.

1. 200 Rank requests over HTTP (urllib) from 16 threads, then 200 over gRPC (grpcio, one
   channel) from 16 threads: every one succeeds with the same page a lone request gets,
   while /healthz, polled meanwhile, keeps answering quickly (it stays on the event loop).
2. Clients that go away: HTTP connections closed right after sending a Rank request, and
   gRPC calls cancelled by a deadline shorter than the scoring: the server keeps serving.
3. GET /metrics parses as Prometheus text (every line a comment or `name{labels} value`,
   Content-Type text/plain; version=0.0.4); its request counters equal the requests sent,
   the stage histograms (recall, rank, page) counted every successful Rank, the worker
   gauge says how many threads run, and funnel_model_info names the CTR model.
4. A second server with --workers 1 --queue 1 gets a burst (all requests written before any
   answer is read): some are refused at once with HTTP 503 / RESOURCE_EXHAUSTED "server
   busy", the rest succeed with the right page, the errors are counted in /metrics, and
   the server serves normally afterwards.
5. SIGTERM while 16 threads keep sending: funneld exits 0 and every client call ends (an
   answer or a connection error), none hangs.
6. The drain: 60 gRPC calls written at once to a server with one worker, SIGTERM after the
   first answer: the listening ports close at once, every call under way is answered, the
   server logs it and exits 0.
Exits 77 (skipped) without the data.
"""
import argparse
import concurrent.futures
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from funnel_cli import check
from funneld_util import Funneld, prepare_pipeline

USERS = ["196", "186", "22", "244", "166", "298", "no-such-user"]
THREADS = 16
REQUESTS = 200
LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})?'
                  r' (-?[0-9.eE+-]+|\+Inf|-Inf|NaN)$')


def http(port, path, body=None, ctype="application/json", timeout=30):
    """(status, body bytes) of one request with urllib."""
    r = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=body,
                               headers={"Content-Type": ctype} if body is not None else {})
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type")


def rank_body(user):
    return json.dumps({"userId": user, "pageSize": 5}).encode()


def ids(resp_json):
    return [i["id"] for i in resp_json["items"]]


def metrics(port):
    """{(name, frozenset of label pairs): value} of /metrics, checking every line's form."""
    code, body, ctype = http(port, "/metrics")
    check(code == 200, "/metrics: HTTP %d" % code)
    check(ctype == "text/plain; version=0.0.4", "/metrics content type %r" % ctype)
    out = {}
    for line in body.decode().splitlines():
        if not line or line.startswith("#"):
            check(not line or line.startswith("# HELP ") or line.startswith("# TYPE "),
                  "/metrics comment %r" % line)
            continue
        check(LINE.match(line), "/metrics line does not parse: %r" % line)
        name, _, value = line.rpartition(" ")
        labels = frozenset()
        if "{" in name:
            name, lab = name[:-1].split("{", 1)
            labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:\\.|[^"\\])*)"', lab))
        out[(name, labels)] = float(value)
    return out


def metric(m, name, **labels):
    return m.get((name, frozenset(labels.items())), 0.0)


def grpc_stubs(proto, gen):
    os.makedirs(gen, exist_ok=True)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", proto, "--python_out",
                    gen, "--grpc_python_out", gen, "funnel/v1/funnel.proto",
                    "tensorflow/feature.proto"], check=True)
    sys.path.insert(0, gen)


def burst_http(port, n, body):
    """Writes n Rank requests on n connections before reading any answer: [(status, body)]."""
    raw = (b"POST /funnel.v1.Ranking/Rank HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
           b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(n)]
    for s in socks:
        s.sendall(raw)
    out = []
    for s in socks:
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        head, _, rest = data.partition(b"\r\n\r\n")
        out.append((int(head.split(b" ", 2)[1]) if head else 0, rest))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--funnel", required=True)
    ap.add_argument("--funneld", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--proto", required=True)
    ap.add_argument("--demo", help="prepared pipeline folder to reuse (made when missing)")
    args = ap.parse_args()
    ml = os.path.join(args.data, "ml-100k")
    if not os.path.isdir(ml):
        print("SKIPPED: %s not found" % ml)
        return 77
    with tempfile.TemporaryDirectory(prefix="funnel-load-") as tmp:
        d = args.demo or os.path.join(tmp, "demo")
        cpath = os.path.join(d, "funneld.json")
        if not os.path.exists(cpath):
            cpath, _ = prepare_pipeline(args.funnel, ml, d)
        gen = os.path.join(tmp, "gen")
        grpc_stubs(args.proto, gen)
        import grpc
        from funnel.v1 import funnel_pb2, funnel_pb2_grpc

        # --- 1. concurrent load over both transports, health checks meanwhile ---
        srv = Funneld(args.funneld, cpath, os.path.join(tmp, "load.log"))
        port = srv.http_port
        sent = {"http": 0, "grpc": 0}
        try:
            expect = {}
            for u in USERS:
                code, body, _ = http(port, "/funnel.v1.Ranking/Rank", rank_body(u))
                check(code == 200, "Rank %s: HTTP %d %r" % (u, code, body[:200]))
                expect[u] = ids(json.loads(body))
                check(len(expect[u]) == 5, "page of user %s: %r" % (u, expect[u]))
                sent["http"] += 1

            health, stop = [], threading.Event()

            def poll_health():
                while not stop.is_set():
                    t = time.monotonic()
                    code, _, _ = http(port, "/healthz", timeout=10)
                    health.append((code, time.monotonic() - t))
                    time.sleep(0.005)

            def one_http(k):
                u = USERS[k % len(USERS)]
                code, body, _ = http(port, "/funnel.v1.Ranking/Rank", rank_body(u))
                return u, code, ids(json.loads(body)) if code == 200 else body[:200]

            poller = threading.Thread(target=poll_health)
            poller.start()
            t0 = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(THREADS) as ex:
                results = list(ex.map(one_http, range(REQUESTS)))
            http_s = time.monotonic() - t0
            sent["http"] += REQUESTS
            bad = [r for r in results if r[1] != 200 or r[2] != expect[r[0]]]
            check(not bad, "HTTP under load: %d of %d wrong, e.g. %r" % (len(bad), REQUESTS,
                                                                          bad[:3]))

            with grpc.insecure_channel("127.0.0.1:%d" % srv.grpc_port) as ch:
                stub = funnel_pb2_grpc.RankingStub(ch)

                def one_grpc(k):
                    u = USERS[k % len(USERS)]
                    try:
                        r = stub.Rank(funnel_pb2.RankRequest(user_id=u, page_size=5), timeout=60)
                        return u, "OK", [i.id for i in r.items]
                    except grpc.RpcError as e:
                        return u, e.code(), e.details()

                t0 = time.monotonic()
                with concurrent.futures.ThreadPoolExecutor(THREADS) as ex:
                    results = list(ex.map(one_grpc, range(REQUESTS)))
                grpc_s = time.monotonic() - t0
                sent["grpc"] += REQUESTS
                bad = [r for r in results if r[1] != "OK" or r[2] != expect[r[0]]]
                check(not bad, "gRPC under load: %d of %d wrong, e.g. %r" % (len(bad), REQUESTS,
                                                                              bad[:3]))
                stop.set()
                poller.join()
                lat = sorted(t for _, t in health)
                check(health and all(c == 200 for c, _ in health), "/healthz during load: %r" %
                      [c for c, _ in health if c != 200][:5])
                check(lat[len(lat) // 2] < 0.25 and lat[-1] < 3,
                      "/healthz slow during load: median %.3f s, max %.3f s" %
                      (lat[len(lat) // 2], lat[-1]))
                print("load: %d HTTP Rank in %.2f s, %d gRPC in %.2f s; /healthz %d polls, "
                      "median %.1f ms, max %.1f ms" % (REQUESTS, http_s, REQUESTS, grpc_s,
                                                       len(lat), 1e3 * lat[len(lat) // 2],
                                                       1e3 * lat[-1]))

                # --- 2. clients that go away before the answer ---
                raw = (b"POST /funnel.v1.Ranking/Rank HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" %
                       len(rank_body("196"))) + rank_body("196")
                for _ in range(20):
                    s = socket.create_connection(("127.0.0.1", port), timeout=10)
                    s.sendall(raw)
                    s.close()
                sent["http"] += 20
                cancelled = 0
                for k in range(20):
                    try:
                        stub.Rank(funnel_pb2.RankRequest(user_id="196", page_size=50,
                                                         debug=True), timeout=0.0005)
                    except grpc.RpcError as e:
                        check(e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, "short deadline: %s"
                              % e)
                        cancelled += 1
                sent["grpc"] += 20
                time.sleep(0.5)  # let the abandoned calls finish on the workers
                r = stub.Rank(funnel_pb2.RankRequest(user_id="196", page_size=5), timeout=30)
                sent["grpc"] += 1
                check([i.id for i in r.items] == expect["196"], "gRPC after cancellations")
            code, body, _ = http(port, "/funnel.v1.Ranking/Rank", rank_body("22"))
            sent["http"] += 1
            check(code == 200 and ids(json.loads(body)) == expect["22"],
                  "HTTP after abandoned requests: %d" % code)

            # --- 3. /metrics ---
            m = metrics(port)
            got_http = metric(m, "funnel_requests_total", transport="http", method="Rank")
            got_grpc = metric(m, "funnel_requests_total", transport="grpc", method="Rank")
            # A request whose client left may be counted when its answer is dropped, or not
            # at all when libevent had already freed it: between the two.
            check(sent["http"] - 20 <= got_http <= sent["http"],
                  "http Rank requests counted %r, sent %d" % (got_http, sent["http"]))
            # Likewise a call cancelled by its deadline: refused as late, or answered into a
            # closed stream (dropped, not counted), or never sent.
            check(sent["grpc"] - cancelled <= got_grpc <= sent["grpc"],
                  "grpc Rank requests counted %r, sent %d" % (got_grpc, sent["grpc"]))
            ok_ranks = REQUESTS * 2 + len(USERS) + 2
            for stage in ("recall", "rank", "page"):
                n = metric(m, "funnel_stage_duration_seconds_count", stage=stage)
                check(n >= ok_ranks, "stage %s counted %r, at least %d" % (stage, n, ok_ranks))
                inf = metric(m, "funnel_stage_duration_seconds_bucket", stage=stage, le="+Inf")
                check(inf == n, "stage %s: +Inf bucket %r, count %r" % (stage, inf, n))
                check(metric(m, "funnel_stage_candidates_count", stage=stage) == n,
                      "stage %s candidates count" % stage)
            check(metric(m, "funnel_request_duration_seconds_count", method="Rank") ==
                  got_http + got_grpc, "request duration count")
            models = [dict(k[1]) for k in m if k[0] == "funnel_model_info"]
            check(any(x.get("name") == "ctr" and x.get("version") for x in models),
                  "funnel_model_info: %r" % models)
            check(metric(m, "funnel_workers") == os.cpu_count(),
                  "funnel_workers %r, %d CPUs" % (metric(m, "funnel_workers"), os.cpu_count()))
            check(metric(m, "funnel_ready") == 1, "funnel_ready")
            check(("funnel_queue_depth", frozenset()) in m, "funnel_queue_depth missing")
            errors = {k: v for k, v in m.items() if k[0] == "funnel_request_errors_total"}
            check(all(dict(k[1]).get("code") == "DEADLINE_EXCEEDED" for k in errors),
                  "unexpected errors: %r" % errors)
        finally:
            srv.stop()

        # --- 4. one worker, a queue of one: a burst is partly refused, then all is well ---
        srv = Funneld(args.funneld, cpath, os.path.join(tmp, "busy.log"), "--workers", "1",
                      "--queue", "1")
        try:
            body = json.dumps({"userId": "196", "pageSize": 5}).encode()
            code, first, _ = http(srv.http_port, "/funnel.v1.Ranking/Rank", body)
            check(code == 200, "busy server, first request: %d" % code)
            want = ids(json.loads(first))
            busy = ok = 0
            for _ in range(5):  # a loaded machine may let one burst through: retry a few
                for code, b in burst_http(srv.http_port, 40, body):
                    if code == 503:
                        check(b"server busy" in b, "503 without 'server busy': %r" % b)
                        busy += 1
                    else:
                        check(code == 200 and ids(json.loads(b)) == want,
                              "burst answer %d %r" % (code, b[:200]))
                        ok += 1
                if busy:
                    break
            check(busy > 0 and ok > 0, "burst: %d busy, %d ok" % (busy, ok))
            gbusy = gok = 0
            with grpc.insecure_channel("127.0.0.1:%d" % srv.grpc_port) as ch:
                stub = funnel_pb2_grpc.RankingStub(ch)
                req = funnel_pb2.RankRequest(user_id="196", page_size=5)
                for _ in range(5):
                    futs = [stub.Rank.future(req, timeout=60) for _ in range(40)]
                    for f in futs:
                        try:
                            check([i.id for i in f.result().items] == want, "gRPC burst page")
                            gok += 1
                        except grpc.RpcError as e:
                            check(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and
                                  "server busy" in e.details(), "gRPC burst: %s" % e)
                            gbusy += 1
                    if gbusy:
                        break
                check(gbusy > 0 and gok > 0, "gRPC burst: %d busy, %d ok" % (gbusy, gok))
                # recovered: sequential calls all succeed
                for _ in range(5):
                    check([i.id for i in stub.Rank(req, timeout=30).items] == want,
                          "gRPC after the burst")
            for _ in range(5):
                code, b, _ = http(srv.http_port, "/funnel.v1.Ranking/Rank", body)
                check(code == 200 and ids(json.loads(b)) == want, "HTTP after the burst: %d" % code)
            m = metrics(srv.http_port)
            check(metric(m, "funnel_request_errors_total", transport="http", code="503") == busy,
                  "503s counted %r, seen %d" % (metric(m, "funnel_request_errors_total",
                                                       transport="http", code="503"), busy))
            check(metric(m, "funnel_request_errors_total", transport="grpc",
                         code="RESOURCE_EXHAUSTED") == gbusy, "RESOURCE_EXHAUSTED counted")
            check(metric(m, "funnel_workers") == 1, "funnel_workers with --workers 1")
            print("busy: HTTP %d refused, %d served; gRPC %d refused, %d served" %
                  (busy, ok, gbusy, gok))
        finally:
            srv.stop()

        # --- 5. SIGTERM during load: exit 0, no client left hanging ---
        srv = Funneld(args.funneld, cpath, os.path.join(tmp, "term.log"))
        outcomes, lock, go = [], threading.Lock(), threading.Event()

        def hammer_http():
            while not go.is_set():
                try:
                    code, _, _ = http(srv.http_port, "/funnel.v1.Ranking/Rank",
                                      rank_body("196"), timeout=20)
                except (OSError, urllib.error.URLError) as e:
                    code = type(e).__name__
                with lock:
                    outcomes.append(code)
                if not isinstance(code, int):
                    return

        def hammer_grpc(ch):
            stub = funnel_pb2_grpc.RankingStub(ch)
            while not go.is_set():
                try:
                    stub.Rank(funnel_pb2.RankRequest(user_id="196", page_size=5), timeout=20)
                    code = "OK"
                except grpc.RpcError as e:
                    code = e.code()
                with lock:
                    outcomes.append(code)
                if code == grpc.StatusCode.UNAVAILABLE:
                    return

        ch = grpc.insecure_channel("127.0.0.1:%d" % srv.grpc_port)
        threads = [threading.Thread(target=hammer_http) for _ in range(THREADS // 2)] + \
            [threading.Thread(target=hammer_grpc, args=(ch,)) for _ in range(THREADS // 2)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        srv.proc.send_signal(signal.SIGTERM)
        try:
            rc = srv.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            srv.proc.kill()
            rc = "killed"
        go.set()
        for t in threads:
            t.join(timeout=30)
        ch.close()
        check(rc == 0, "SIGTERM under load: exit %r: %s" % (rc, srv.log()[-1500:]))
        check(not any(t.is_alive() for t in threads), "a client hangs after SIGTERM")
        check(outcomes.count(200) + outcomes.count("OK") > 0, "no request served before SIGTERM")
        print("SIGTERM under load: exit 0, %d calls ended (%d served)" %
              (len(outcomes), outcomes.count(200) + outcomes.count("OK")))

        # --- 6. the drain: calls under way at SIGTERM are answered, new ones are not taken ---
        srv = Funneld(args.funneld, cpath, os.path.join(tmp, "drain.log"), "--workers", "1",
                      "--queue", "1000")
        with grpc.insecure_channel("127.0.0.1:%d" % srv.grpc_port) as ch:
            stub = funnel_pb2_grpc.RankingStub(ch)
            stub.Rank(funnel_pb2.RankRequest(user_id="196", page_size=5), timeout=20)
            # 60 calls written at once on one connection, one worker: when the first answer
            # is back, the rest are queued or running
            calls = [stub.Rank.future(funnel_pb2.RankRequest(user_id=USERS[i % 6], page_size=20,
                                                             debug=True), timeout=60)
                     for i in range(60)]
            calls[0].result(timeout=30)
            srv.proc.send_signal(signal.SIGTERM)
            time.sleep(0.05)
            # the listening sockets are closed at once
            for port in (srv.http_port, srv.grpc_port):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=5).close()
                    refused = False
                except OSError:
                    refused = True
                check(refused, "port %d still accepts connections while draining" % port)
            codes = []
            for c in calls:
                try:
                    c.result(timeout=30)
                    codes.append("OK")
                except grpc.RpcError as e:
                    codes.append(e.code())
            late = None
            try:
                stub.Rank(funnel_pb2.RankRequest(user_id="196", page_size=5), timeout=20)
            except grpc.RpcError as e:
                late = e.code()
        try:
            rc = srv.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            srv.proc.kill()
            rc = "killed"
        check(rc == 0, "drain: exit %r: %s" % (rc, srv.log()[-1500:]))
        check(codes.count("OK") == len(calls),
              "drain: calls under way at SIGTERM not all answered: %r" % codes)
        check("every call under way was answered" in srv.log(), "drain: %s" % srv.log()[-800:])
        print("drain: %d calls under way at SIGTERM all answered, a later call got %s, exit 0" %
              (len(calls), late))
    print("server load: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
