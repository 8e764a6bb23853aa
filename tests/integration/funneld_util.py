"""What the funneld tests share: the MovieLens demo pipeline prepared in a folder (demo
data, feature store, an FFM CTR model, the co-occurrence table, a configuration), and
funneld started on free ports and stopped."""
import json
import os
import select
import signal
import subprocess
import time

from funnel_cli import check, run


def prepare_pipeline(funnel, ml, d, **page):
    """Writes the demo pipeline into folder d; returns (config path, config dict)."""
    run(funnel, "demo", "--data", ml, "--out", d)
    for fam, key in (("users", "user_id"), ("items", "item_id")):
        run(funnel, "store", "load", "--store", os.path.join(d, "store"), "--family", fam,
            "--input", os.path.join(d, fam + ".tfrecord"), "--id-key", key)
    run(funnel, "train", "--model", "ffm", "--train", os.path.join(d, "fit.tfrecord"), "--valid",
        os.path.join(d, "valid.tfrecord"), "--spec", os.path.join(d, "features.json"),
        "--out", os.path.join(d, "ctr.safetensors"), "--epochs", "3")
    run(funnel, "cooc", "build", "--interactions", os.path.join(d, "interactions.tfrecord"),
        "--out", os.path.join(d, "items.cooc"), "--label-key", "label", "--min-label", "1")
    conf = {"store": "store", "interactions": "interactions.tfrecord",
            "spec": "features.json", "ctr_model": "ctr.safetensors",
            "recall": {"cap": 300, "popularity": {"quota": 100},
                       "cooc": {"table": "items.cooc", "quota": 200, "recent": 10}},
            "page": dict({"default_size": 10, "max_size": 50, "diversity": "mmr",
                          "lambda": 0.8, "max_per_category": 4}, **page)}
    path = os.path.join(d, "funneld.json")
    write_config(path, conf)
    return path, conf


def write_config(path, conf):
    """Replaces the configuration file whole (temporary file, rename), as a deploy would."""
    tmp = path + ".tmp"
    with open(tmp, "w") as o:
        json.dump(conf, o)
    os.replace(tmp, path)


class Funneld:
    """funneld on free ports (HTTP and gRPC), its log in a file; stop() checks exit 0."""

    def __init__(self, funneld, config, log_path, *extra):
        """config None: no pipeline (the health endpoints and the transports only)."""
        self.log_path = log_path
        self.proc = subprocess.Popen([funneld, *(["--config", config] if config else []),
                                      "--http-port", "0", "--grpc-port", "0", *extra],
                                     stdout=subprocess.PIPE, stderr=open(log_path, "w"))
        ports = self._wait_ports(120)
        if ports is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            check(False, "funneld did not start: %s" % self.log()[-2000:])
        self.http_port, self.grpc_port = ports

    def _wait_ports(self, seconds):
        fd, seen, end = self.proc.stdout.fileno(), b"", time.time() + seconds
        while time.time() < end:
            ready, _, _ = select.select([fd], [], [], max(0.0, end - time.time()))
            if not ready:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            seen += chunk
            http = grpc = None
            for line in seen.decode(errors="replace").splitlines():
                if line.startswith("funneld listening on http://"):
                    http = int(line.rsplit(":", 1)[1])
                if line.startswith("funneld gRPC listening on "):
                    grpc = int(line.rsplit(":", 1)[1])
            if http and grpc:
                return http, grpc
        return None

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = "killed"
        check(rc == 0, "funneld exit status %r: %s" % (rc, self.log()[-1500:]))
