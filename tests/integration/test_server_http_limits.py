#!/usr/bin/python3
"""funneld's HTTP/1.1 connections with raw TCP clients: deadlines and the connection limit.

A server with --read-timeout-s 1 --idle-timeout-s 2 (no pipeline needed): a client that sends
part of a request line and headers, or the headers and part of a body (Content-Length larger
than what came), gets "408 Request Timeout" naming the deadline with Connection: close, and
then the close; meanwhile another client is served at once. A keep-alive connection is still
open past the read timeout between requests, and is closed without a byte at the idle
timeout; so is a connection that never sends anything. /metrics counts the 408s. A second
server with --max-connections 3: with three connections open a fourth is answered
"503 Service Unavailable" / "too many connections" and closed (counted in /metrics and
logged); once one of the three closes a new one is served. Bad values of the new flags are
refused, --help names them, and each server exits 0 on SIGTERM with connections in every
state open.
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

from funneld_util import Funneld

FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL: " + what, file=sys.stderr)
    return cond


class Server(Funneld):
    """funneld without a pipeline on free ports; stop() checks exit 0."""

    def __init__(self, funneld, tmp, name, *extra):
        super().__init__(funneld, None, os.path.join(tmp, name + ".err"), *extra)
        self.port = self.http_port

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


def read_to_eof(s, limit=15):
    """(everything the server sent until it closed, seconds taken); b"...<RST>" on a reset."""
    t0, out = time.time(), b""
    s.settimeout(limit)
    while True:
        try:
            b = s.recv(65536)
        except ConnectionResetError:
            return out + b"<RST>", time.time() - t0
        except socket.timeout:
            return out + b"<STILL OPEN>", time.time() - t0
        if not b:
            return out, time.time() - t0
        out += b


def read_response(s):
    """One whole response (headers and a Content-Length body) from a keep-alive socket."""
    s.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        b = s.recv(65536)
        if not b:
            return data
        data += b
    head, _, body = data.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            n = int(v)
    while len(body) < n:
        b = s.recv(65536)
        if not b:
            break
        body += b
    return head + b"\r\n\r\n" + body


def get(srv, path, close=True):
    """(status, body) of one GET on a new connection."""
    with srv.connect() as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n" %
                  (path.encode(), b"Connection: close\r\n" if close else b""))
        r = read_response(s)
    head, _, body = r.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return status, body


def metric(srv, name):
    code, body = get(srv, "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def expect_408(srv, partial, what):
    """Sends a partial request, checks the 408 at about 1 s and the close after it; while it
    waits, another client must be served at once."""
    s = srv.connect()
    s.sendall(partial)
    t0 = time.time()
    time.sleep(0.2)
    t1 = time.time()
    code, body = get(srv, "/healthz")
    took = time.time() - t1
    check(code == 200 and body == b"ok\n", "%s: /healthz meanwhile: %d %r" % (what, code, body))
    check(took < 0.5, "%s: /healthz meanwhile took %.2f s" % (what, took))
    got, _ = read_to_eof(s)
    elapsed = time.time() - t0
    s.close()
    check(got.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), "%s: got %r" % (what, got[:200]))
    check(b"\r\nConnection: close\r\n" in got, "%s: no Connection: close in %r" % (what, got))
    check(got.endswith(b"\r\n\r\nrequest not received completely within 1 s\n"),
          "%s: body %r" % (what, got[-80:]))
    check(0.8 <= elapsed < 5, "%s: the 408 came after %.2f s, expected about 1" % (what, elapsed))


def test_deadlines(funneld, tmp):
    srv = Server(funneld, tmp, "deadlines", "--read-timeout-s", "1", "--idle-timeout-s", "2")
    try:
        # (a) part of the request line and headers; (e) another client served meanwhile
        expect_408(srv, b"GET /healthz HTTP/1.1\r\nHost: t\r\nUser-Ag", "partial headers")
        expect_408(srv, b"GET /heal", "partial request line")
        # (b) headers whole, the body short of its Content-Length
        expect_408(srv, b"POST /funnel.v1.Ranking/Rank HTTP/1.1\r\nHost: t\r\n"
                   b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user",
                   "partial body")
        # a request trickling in, byte by byte, faster than evhttp's own timeout would notice
        s = srv.connect()
        t0 = time.time()
        got = b""
        for ch in b"GET /healthz HTTP/1.1\r\nHost: t\r\n":
            try:
                s.sendall(bytes([ch]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.1)
            if time.time() - t0 > 1.6:
                break
        got, _ = read_to_eof(s)
        s.close()
        check(got.startswith(b"HTTP/1.1 408 "), "a trickling request: %r" % got[:100])
        check(metric(srv, "funnel_http_request_timeouts_total") == 4,
              "funnel_http_request_timeouts_total %r, expected 4" %
              metric(srv, "funnel_http_request_timeouts_total"))

        # (c) keep-alive: open past the read timeout between requests, closed silently at idle
        s = srv.connect()
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        r = read_response(s)
        check(r.startswith(b"HTTP/1.1 200 ") and r.endswith(b"ok\n"), "keep-alive 1st: %r" % r)
        time.sleep(1.5)  # over --read-timeout-s, under --idle-timeout-s
        s.sendall(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
        r = read_response(s)
        check(r.startswith(b"HTTP/1.1 200 ") and r.endswith(b"ready\n"),
              "keep-alive 2nd after 1.5 s idle: %r" % r)
        got, elapsed = read_to_eof(s)
        s.close()
        check(got == b"", "an idle keep-alive connection got %r before its close" % got)
        check(1.7 <= elapsed < 5, "idle keep-alive closed after %.2f s, expected about 2" % elapsed)
        # a connection that never sends a byte: the same
        s = srv.connect()
        got, elapsed = read_to_eof(s)
        s.close()
        check(got == b"" and 1.7 <= elapsed < 5,
              "a silent connection: %r after %.2f s, expected nothing after about 2" %
              (got, elapsed))
        check(metric(srv, "funnel_http_request_timeouts_total") == 4,
              "idle closes counted as timeouts")
        # SIGTERM with a request half sent and an idle connection open
        half = srv.connect()
        half.sendall(b"GET /hea")
        idle = srv.connect()
        time.sleep(0.2)
    finally:
        srv.stop()
    half.close()
    idle.close()


def test_limit(funneld, tmp):
    srv = Server(funneld, tmp, "limit", "--max-connections", "3")
    try:
        held = []
        for _ in range(3):
            s = srv.connect()
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            r = read_response(s)
            check(r.startswith(b"HTTP/1.1 200 "), "connection %d: %r" % (len(held) + 1, r))
            held.append(s)
        # (d) the fourth: 503 and the close, whether it sends a request or not
        for sends in (True, False):
            x = srv.connect()
            if sends:
                x.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            got, elapsed = read_to_eof(x)
            x.close()
            check(got.startswith(b"HTTP/1.1 503 Service Unavailable\r\n") and
                  got.endswith(b"\r\n\r\ntoo many connections\n") and
                  b"\r\nConnection: close\r\n" in got,
                  "a connection over --max-connections (request sent: %s): %r" % (sends, got))
            check(elapsed < 3, "the refused connection closed after %.2f s" % elapsed)
        # the three held ones still work
        held[1].sendall(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
        r = read_response(held[1])
        check(r.startswith(b"HTTP/1.1 200 "), "a held connection after refusals: %r" % r)
        for _ in range(100):
            if "max-connections" in srv.log():
                break
            time.sleep(0.05)
        check("max-connections" in srv.log(), "no log line about refused connections")
        # one leaves: a new one is served
        held[0].close()
        time.sleep(0.3)
        s = srv.connect()
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        r = read_response(s)
        check(r.startswith(b"HTTP/1.1 200 "), "a new connection after one closed: %r" % r[:200])
        values = {}
        for line in r.partition(b"\r\n\r\n")[2].decode().splitlines():
            if line.startswith("funnel_http_connections"):
                k, v = line.split()
                values[k] = float(v)
        check(values.get("funnel_http_connections_open") == 3,
              "funnel_http_connections_open %r, expected 3" %
              values.get("funnel_http_connections_open"))
        check(values.get("funnel_http_connections_refused_total") == 2,
              "funnel_http_connections_refused_total %r, expected 2" %
              values.get("funnel_http_connections_refused_total"))
        held[0] = s
        # still full: refused again
        x = srv.connect()
        got, _ = read_to_eof(x)
        x.close()
        check(got.startswith(b"HTTP/1.1 503 "), "a fourth again: %r" % got[:100])
    finally:
        srv.stop()
    for s in held:
        s.close()


def test_flags(funneld):
    p = subprocess.run([funneld, "--help"], capture_output=True, text=True)
    for flag in ("--read-timeout-s", "--idle-timeout-s", "--max-connections"):
        check(flag in p.stdout, "--help lacks " + flag)
    for flag, value in (("--read-timeout-s", "0"), ("--idle-timeout-s", "x"),
                        ("--read-timeout-s", "3601")):
        p = subprocess.run([funneld, flag, value, "--http-port", "0", "--grpc-port", "0"],
                           capture_output=True, text=True, timeout=30)
        check(p.returncode != 0 and flag in p.stderr,
              "%s %s: exit %d, %r" % (flag, value, p.returncode, p.stderr))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--funneld", required=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="funnel-http-limits-") as tmp:
        test_flags(args.funneld)
        test_deadlines(args.funneld, tmp)
        test_limit(args.funneld, tmp)
    if FAILURES:
        print("%d check(s) failed" % len(FAILURES), file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
