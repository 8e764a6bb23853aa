#!/usr/bin/python3
"""funneld's gRPC transport (HTTP/2 cleartext) against a real gRPC client, python3-grpcio.

Generates the Python stubs from proto/ with grpc_tools at test time, starts funneld on
free ports (--http-port 0 --grpc-port 0, both read from its stdout) and checks, over one
grpc.insecure_channel: Health.Check is SERVING (for "" and funnel.v1.Ranking), an unknown
service is NOT_FOUND, a request that does not parse is INVALID_ARGUMENT, an unknown method
and the Ranking methods not served yet are UNIMPLEMENTED with their messages (Rank, without
a pipeline configured, is UNAVAILABLE), a call with
a timeout works, many sequential and concurrent calls (threads) all succeed. With curl
speaking HTTP/2 (prior knowledge), the wire itself: the trailers of an OK reply, an
already expired grpc-timeout (DEADLINE_EXCEEDED), a malformed one (INTERNAL), a compressed
message (UNIMPLEMENTED), a non-POST request (405) and a non-gRPC content type (415). Raw
TCP clients sending garbage, before and after a valid HTTP/2 preface, get their connection
closed while the server keeps serving. A second server with --max-message-bytes 1024 and
--max-connections 3 refuses a bigger message with RESOURCE_EXHAUSTED and closes the
connection over the limit. Each server is stopped with SIGTERM and must exit 0.
"""
import argparse
import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL: " + what, file=sys.stderr)


def gen_stubs(proto, out):
    """The Python modules for funnel.v1, tensorflow and grpc.health.v1 in out."""
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", proto,
                    "--python_out=" + out, "--grpc_python_out=" + out,
                    "funnel/v1/funnel.proto", "tensorflow/feature.proto",
                    "tensorflow/example.proto"], check=True)
    # health.proto from its own folder: as grpc/health/v1/health_pb2 the stubs would be a
    # package "grpc" that hides grpcio's own. The proto package stays grpc.health.v1.
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I",
                    os.path.join(proto, "grpc", "health", "v1"), "--python_out=" + out,
                    "--grpc_python_out=" + out, "health.proto"], check=True)
    sys.path.insert(0, out)


class Server:
    """funneld on free ports; stop() checks a clean exit 0 on SIGTERM."""

    def __init__(self, funneld, tmp, name, *extra):
        self.out = os.path.join(tmp, name + ".out")
        self.err = os.path.join(tmp, name + ".err")
        with open(self.out, "w") as o, open(self.err, "w") as e:
            self.proc = subprocess.Popen([funneld, "--http-port", "0", "--grpc-port", "0"] +
                                         list(extra), stdout=o, stderr=e)
        self.http_port = self.grpc_port = None
        deadline = time.time() + 20
        while time.time() < deadline and not (self.http_port and self.grpc_port):
            with open(self.out) as f:
                for line in f:
                    if line.startswith("funneld listening on http://127.0.0.1:"):
                        self.http_port = int(line.rsplit(":", 1)[1])
                    elif line.startswith("funneld gRPC listening on 127.0.0.1:"):
                        self.grpc_port = int(line.rsplit(":", 1)[1])
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if not (self.http_port and self.grpc_port):
            self.kill()
            raise SystemExit("FAIL: funneld %s printed no ports:\n%s" % (name, self.log()))
        self.target = "127.0.0.1:%d" % self.grpc_port

    def log(self):
        with open(self.err) as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = "timeout"
        check(rc == 0, "funneld exited %s after SIGTERM:\n%s" % (rc, self.log()))
        check("SIGTERM received" in self.log(), "no shutdown log line after SIGTERM")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def rpc_error(fn, *a, **kw):
    """(code, details) of a call expected to fail."""
    import grpc
    try:
        fn(*a, **kw)
    except grpc.RpcError as e:
        return e.code(), e.details()
    return None, None


def closed_by_server(sock, timeout=10.0):
    """True when the server closes the connection (EOF or reset) within timeout."""
    sock.settimeout(timeout)
    end = time.time() + timeout
    try:
        while time.time() < end:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


def h2curl(port, path, body, headers=(), method="POST"):
    """(header text, body) of one HTTP/2 request by curl with prior knowledge."""
    cmd = ["curl", "-s", "--http2-prior-knowledge", "--max-time", "10", "-X", method, "-D", "-",
           "-o", os.devnull, "http://127.0.0.1:%d%s" % (port, path)]
    for h in headers:
        cmd += ["-H", h]
    if body is not None:
        cmd += ["--data-binary", "@-"]
    p = subprocess.run(cmd, input=body, capture_output=True, timeout=30)
    return p.stdout.decode(errors="replace").replace("\r\n", "\n")


def frame(msg, compressed=0):
    return bytes([compressed]) + len(msg).to_bytes(4, "big") + msg


def check_main_server(funneld, tmp):
    import grpc
    import health_pb2
    import health_pb2_grpc
    from funnel.v1 import funnel_pb2, funnel_pb2_grpc

    srv = Server(funneld, tmp, "main")
    Req = health_pb2.HealthCheckRequest
    SERVING = health_pb2.HealthCheckResponse.SERVING
    try:
        with grpc.insecure_channel(srv.target) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            ranking = funnel_pb2_grpc.RankingStub(ch)
            check(health.Check(Req(), timeout=10).status == SERVING, "Health.Check('')")
            check(health.Check(Req(service="funnel.v1.Ranking"), timeout=10).status == SERVING,
                  "Health.Check('funnel.v1.Ranking')")
            code, msg = rpc_error(health.Check, Req(service="nope"), timeout=10)
            check(code == grpc.StatusCode.NOT_FOUND and "nope" in (msg or ""),
                  "Check('nope'): %s %r" % (code, msg))
            # Non-ASCII and '%' come back intact through grpc-message's percent-encoding.
            code, msg = rpc_error(health.Check, Req(service="n\u00e9%25"), timeout=10)
            check(code == grpc.StatusCode.NOT_FOUND and msg == "unknown service 'n\u00e9%25'",
                  "Check('n\u00e9%%25'): %s %r" % (code, msg))
            raw_check = ch.unary_unary("/grpc.health.v1.Health/Check")
            code, msg = rpc_error(raw_check, b"\xff\xff\xff", timeout=10)
            check(code == grpc.StatusCode.INVALID_ARGUMENT and
                  "HealthCheckRequest" in (msg or ""), "garbage request: %s %r" % (code, msg))
            code, msg = rpc_error(ranking.Rank, funnel_pb2.RankRequest(user_id="196"), timeout=10)
            check(code == grpc.StatusCode.UNAVAILABLE and "without --config" in (msg or ""),
                  "Rank without a pipeline: %s %r" % (code, msg))
            code, msg = rpc_error(ranking.Suggest, funnel_pb2.SuggestRequest(), timeout=10)
            check(code == grpc.StatusCode.UNIMPLEMENTED, "Suggest: %s %r" % (code, msg))
            code, msg = rpc_error(ch.unary_unary("/x/y"), b"", timeout=10)
            check(code == grpc.StatusCode.UNIMPLEMENTED and msg == "unknown method /x/y",
                  "/x/y: %s %r" % (code, msg))
            # A call with a deadline (grpc-timeout on the wire), and one without.
            check(health.Check(Req(), timeout=0.5).status == SERVING, "Check with a timeout")
            check(health.Check(Req()).status == SERVING, "Check without a timeout")

            for i in range(300):
                if health.Check(Req(), timeout=10).status != SERVING:
                    check(False, "sequential call %d" % i)
                    break

            def one(i):
                if i % 3 == 0:
                    return rpc_error(health.Check, Req(service="nope%d" % i), timeout=20)[0]
                return health.Check(Req(), timeout=20).status

            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                got = list(pool.map(one, range(800)))
            want = [grpc.StatusCode.NOT_FOUND if i % 3 == 0 else SERVING for i in range(800)]
            bad = [i for i in range(800) if got[i] != want[i]]
            check(not bad, "concurrent calls: %d of 800 wrong, first %r" %
                  (len(bad), [got[i] for i in bad[:3]]))

            # The wire: the frames of an OK reply and what needs no gRPC client to send.
            req = frame(Req().SerializeToString())
            path = "/grpc.health.v1.Health/Check"
            grpc_ct = "content-type: application/grpc"
            h = h2curl(srv.grpc_port, path, req, [grpc_ct, "te: trailers"])
            check(h.startswith("HTTP/2 200") and "content-type: application/grpc" in h and
                  "grpc-status: 0" in h, "OK reply over curl:\n" + h)
            h = h2curl(srv.grpc_port, path, req, [grpc_ct, "grpc-timeout: 0n"])
            check("grpc-status: 4\n" in h, "expired grpc-timeout:\n" + h)
            h = h2curl(srv.grpc_port, path, req, [grpc_ct, "grpc-timeout: 10x"])
            check("grpc-status: 13\n" in h and "grpc-timeout" in h, "bad grpc-timeout:\n" + h)
            h = h2curl(srv.grpc_port, path, req, [grpc_ct, "grpc-timeout: 123456789S"])
            check("grpc-status: 13\n" in h, "9-digit grpc-timeout:\n" + h)
            h = h2curl(srv.grpc_port, path, req, [grpc_ct, "grpc-timeout: 99999999H"])
            check("grpc-status: 0\n" in h, "far grpc-timeout:\n" + h)
            h = h2curl(srv.grpc_port, path, frame(b"", 1), [grpc_ct, "grpc-encoding: gzip"])
            check("grpc-status: 12\n" in h and "compression not supported" in h,
                  "compressed message:\n" + h)
            h = h2curl(srv.grpc_port, path, req[:3], [grpc_ct])
            check("grpc-status: 13\n" in h, "truncated prefix:\n" + h)
            h = h2curl(srv.grpc_port, path, req + req, [grpc_ct])
            check("grpc-status: 13\n" in h, "two messages in a unary call:\n" + h)
            h = h2curl(srv.grpc_port, path, None, [], method="GET")
            check(h.startswith("HTTP/2 405"), "GET:\n" + h)
            h = h2curl(srv.grpc_port, path, req, ["content-type: text/plain"])
            check(h.startswith("HTTP/2 415"), "text/plain:\n" + h)
            h = h2curl(srv.grpc_port, path, req, ["content-type: application/grpcx"])
            check(h.startswith("HTTP/2 415"), "application/grpcx:\n" + h)

            # Garbage, as the first bytes and after a valid preface: the connection is
            # closed, nothing else is disturbed.
            preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
            for name, data in (("HTTP/1.1", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                               ("random", os.urandom(4096)),
                               ("preface then random", preface + os.urandom(4096)),
                               ("preface then a bad frame", preface +
                                b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" +
                                b"\x00\x00\x08\x00\x01\x00\x00\x00\x00" + b"\xff" * 8)):
                with socket.create_connection(("127.0.0.1", srv.grpc_port), timeout=10) as s:
                    s.sendall(data)
                    check(closed_by_server(s), "%s: the server kept the connection" % name)
            # The check above is not trivially true: a valid start keeps the connection.
            with socket.create_connection(("127.0.0.1", srv.grpc_port), timeout=10) as s:
                s.sendall(preface + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
                check(not closed_by_server(s, 1.0), "a valid HTTP/2 start was closed")
            # Connections that go away mid-frame, or right away.
            for data in (preface + b"\x00\x10\x00\x00", b""):
                with socket.create_connection(("127.0.0.1", srv.grpc_port), timeout=10) as s:
                    s.sendall(data)
            check(srv.alive(), "funneld died on garbage input")
            check(health.Check(Req(), timeout=10).status == SERVING, "Check after garbage")
        # A second server on the same gRPC port fails at startup, naming the problem.
        p = subprocess.run([funneld, "--http-port", "0", "--grpc-port", str(srv.grpc_port)],
                           capture_output=True, text=True, timeout=30)
        check(p.returncode == 1 and "cannot listen for gRPC on 127.0.0.1 port %d" %
              srv.grpc_port in p.stderr, "second server on a taken gRPC port: exit %d, %r" %
              (p.returncode, p.stderr[-300:]))
        # A fresh channel after all that.
        with grpc.insecure_channel(srv.target) as ch:
            check(health_pb2_grpc.HealthStub(ch).Check(Req(), timeout=10).status == SERVING,
                  "Check on a new channel")
    finally:
        if srv.alive():
            srv.stop()
        srv.kill()


def check_limits(funneld, tmp):
    import grpc
    import health_pb2
    import health_pb2_grpc
    from funnel.v1 import funnel_pb2, funnel_pb2_grpc

    srv = Server(funneld, tmp, "limits", "--max-message-bytes", "1024", "--max-connections", "3")
    Req = health_pb2.HealthCheckRequest
    try:
        with grpc.insecure_channel(srv.target) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            ranking = funnel_pb2_grpc.RankingStub(ch)
            code, msg = rpc_error(health.Check, Req(service="x" * 1000), timeout=10)
            check(code == grpc.StatusCode.NOT_FOUND, "1 KB request under the limit: %s" % code)
            for size in (1100, 64 * 1024, 3 << 20):
                code, msg = rpc_error(ranking.Rank, funnel_pb2.RankRequest(query="q" * size),
                                      timeout=20)
                check(code == grpc.StatusCode.RESOURCE_EXHAUSTED and "1024" in (msg or ""),
                      "%d-byte request: %s %r" % (size, code, msg))
                check(health.Check(Req(), timeout=10).status ==
                      health_pb2.HealthCheckResponse.SERVING, "Check after a refused message")

            # The channel holds one connection; two more fill the limit, a fourth is closed.
            held = [socket.create_connection(("127.0.0.1", srv.grpc_port), timeout=10)
                    for _ in range(2)]
            time.sleep(0.3)
            extra = socket.create_connection(("127.0.0.1", srv.grpc_port), timeout=10)
            check(closed_by_server(extra), "a connection over --max-connections stayed open")
            extra.close()
            # The server logs after it closed the socket: give it a moment.
            for _ in range(100):
                if "max-connections" in srv.log():
                    break
                time.sleep(0.05)
            check("max-connections" in srv.log(), "no log line about refused connections")
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % srv.http_port,
                                        timeout=10) as r:
                metrics = dict(line.rsplit(" ", 1) for line in r.read().decode().splitlines()
                               if line.startswith("funnel_grpc_connections_"))
            check(metrics.get("funnel_grpc_connections_open") == "3" and
                  metrics.get("funnel_grpc_connections_refused_total") == "1",
                  "gRPC connection metrics %r (3 open, 1 refused)" % metrics)
            for s in held:
                s.close()
            time.sleep(0.3)
            check(health.Check(Req(), timeout=10).status ==
                  health_pb2.HealthCheckResponse.SERVING, "Check after the limit was reached")
            with grpc.insecure_channel(srv.target) as ch2:
                check(health_pb2_grpc.HealthStub(ch2).Check(Req(), timeout=10).status ==
                      health_pb2.HealthCheckResponse.SERVING, "a new connection after others left")
        # SIGTERM with a client connected: it gets GOAWAY(NO_ERROR), then the close.
        with socket.create_connection(("127.0.0.1", srv.grpc_port), timeout=10) as s:
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            time.sleep(0.3)
            srv.stop()
            got = b""
            s.settimeout(10)
            try:
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    got += b
            except (ConnectionResetError, socket.timeout):
                pass
            # A GOAWAY frame: type 7 on stream 0, error code NO_ERROR last.
            check(b"\x00\x00\x08\x07\x00\x00\x00\x00\x00" in got and got.endswith(b"\x00" * 4),
                  "no GOAWAY(NO_ERROR) at shutdown: %r" % got[-40:])
    finally:
        if srv.alive():
            srv.stop()
        srv.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--funneld", required=True)
    ap.add_argument("--proto", required=True, help="the proto/ folder")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="funnel-grpc-") as tmp:
        stubs = os.path.join(tmp, "stubs")
        os.mkdir(stubs)
        gen_stubs(args.proto, stubs)
        help_text = subprocess.run([args.funneld, "--help"], capture_output=True,
                                   text=True).stdout
        for flag in ("--grpc-port", "--max-message-bytes", "--max-connections"):
            check(flag in help_text, "--help lacks " + flag)
        p = subprocess.run([args.funneld, "--grpc-port", "70000"], capture_output=True,
                           text=True)
        check(p.returncode == 2 and "--grpc-port expects a whole number from 0 to 65535" in
              p.stderr, "--grpc-port 70000: exit %d, %r" % (p.returncode, p.stderr))
        check_main_server(args.funneld, tmp)
        check_limits(args.funneld, tmp)
    if FAILURES:
        print("%d check(s) failed" % len(FAILURES), file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
