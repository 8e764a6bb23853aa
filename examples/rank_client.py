#!/usr/bin/python3
"""A small gRPC client for funneld's Rank call (python3-grpcio, python3-grpc-tools).

Generates the Python stubs from proto/ into a temporary folder, calls
funnel.v1.Ranking/Rank once and prints the page.

  examples/rank_client.py [--target 127.0.0.1:50051] [--user 196] [--query "space adventure"]
                          [--page-size 5] [--timeout 1.0]
"""
import argparse
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="127.0.0.1:50051")
    ap.add_argument("--user", default="196")
    ap.add_argument("--query", default="")
    ap.add_argument("--page-size", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=1.0, help="the call's deadline, seconds")
    args = ap.parse_args()
    import grpc

    with tempfile.TemporaryDirectory() as gen:
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I",
                        os.path.join(ROOT, "proto"), "--python_out", gen, "--grpc_python_out",
                        gen, "funnel/v1/funnel.proto", "tensorflow/feature.proto"], check=True)
        sys.path.insert(0, gen)
        from funnel.v1 import funnel_pb2, funnel_pb2_grpc

        with grpc.insecure_channel(args.target) as channel:
            stub = funnel_pb2_grpc.RankingStub(channel)
            req = funnel_pb2.RankRequest(user_id=args.user, query=args.query,
                                         page_size=args.page_size)
            try:
                resp = stub.Rank(req, timeout=args.timeout)
            except grpc.RpcError as e:
                print("Rank failed: %s: %s" % (e.code().name, e.details()), file=sys.stderr)
                return 1
    for i, item in enumerate(resp.items, 1):
        print("%2d. item %-6s score %.4f  ctr %.4f  from %s" %
              (i, item.id, item.score, item.ctr, ", ".join(item.channels)))
    print("stages: " + ", ".join("%s %.2f ms (%d)" % (t.stage, t.millis, t.candidates)
                                 for t in resp.timings))
    if resp.degraded:
        print("degraded (skipped for the deadline): " + ", ".join(resp.degraded))
    return 0


if __name__ == "__main__":
    sys.exit(main())
