"""What the Python CLI tests share: running funnel with an expected exit status, failing
with a message, and reading interaction records (funnel demo's keys) through
`funnel tfrecord cat`."""
import base64
import json
import subprocess
import sys


def run(funnel, *args, rc=0, stderr_has=None):
    p = subprocess.run([funnel, *args], capture_output=True, text=True)
    if p.returncode != rc:
        sys.exit(f"FAIL: funnel {' '.join(args)} exited {p.returncode}, expected {rc}:\n"
                 f"{p.stderr}")
    if stderr_has and stderr_has not in p.stderr:
        sys.exit(f"FAIL: funnel {' '.join(args)}: stderr lacks {stderr_has!r}: {p.stderr}")
    return p.stdout


def check(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")


def interactions(funnel, path):
    """(user, item, timestamp, label) per record, ids decoded from base64 bytes."""
    out = []
    for line in run(funnel, "tfrecord", "cat", path).splitlines():
        f = json.loads(line)["features"]["feature"]
        b = lambda k: base64.b64decode(f[k]["bytesList"]["value"][0]).decode()
        i = lambda k: int(f[k]["int64List"]["value"][0])
        out.append((b("user_id"), b("item_id"), i("timestamp"), i("label")))
    return out
