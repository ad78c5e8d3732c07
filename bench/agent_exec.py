#!/usr/bin/env python3
"""A command in a running sandbox against a one-shot bubblewrap sandbox.

Starts one long-lived sandbox with ``airlock launch`` (the engine's defaults: every protection,
a host workspace) and drives its agent over the socket pair directly, as the server will. Then,
interleaved for N rounds, times:

* ``agent``  - one ``start`` request of ``/bin/true`` (or ``python3 -c pass``) and its answer:
  the agent starts a runner, the runner the command, and both end;
* ``bwrap``  - ``bwrap --unshare-all ...`` of the same command, as in ``compare.py``.

Prints median, p10, p90 and the ratio agent / bwrap (below 1.0: the running sandbox is faster).
This measures the agent path without HTTP; the server benchmark adds the HTTP layer on top.
Needs root (the workspace is chowned to the sandbox's host uid). Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import REPO, release_binary, bwrap_prefix  # noqa: E402

WORKLOADS = {"true": ["/bin/true"], "python": ["python3", "-c", "pass"]}


def start_sandbox(airlock: str, tmp: str) -> tuple[subprocess.Popen, socket.socket, "object"]:
    uid = 0x40000000 + (os.getpid() & 0xFFFF)
    ws = os.path.join(tmp, "workspace")
    os.mkdir(ws)
    os.chown(ws, uid, uid)
    spec = {
        "argv": ["/.airlock/airlock", "agent"],
        "env": [["PATH", "/usr/local/bin:/usr/bin:/bin"], ["HOME", "/workspace"]],
        "workdir": "/workspace",
        "workspace": {"kind": "host", "path": ws},
        "binds": [{"source": airlock, "destination": "/.airlock/airlock", "readonly": True}],
        "network": "none",
        "limits": {"wall_time": None, "cpu_time": None, "memory_bytes": 256 << 20, "max_pids": 128,
                   "cpu_millis": None, "cpu_shares": None, "max_output_bytes": 1 << 20,
                   "max_file_bytes": None, "max_open_files": 1024, "tmp_size_bytes": 64 << 20},
        "protections": {"seccomp": True, "landlock": "if_supported", "cgroup": "auto"},
        "identity": {"uid": uid, "gid": uid},
        "stdin": "null",
        "hostname": "airlock",
    }
    spec_path = os.path.join(tmp, "spec.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([airlock, "launch", "--spec", spec_path], stdin=theirs,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    theirs.close()
    return proc, ours, ours.makefile("rw")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--airlock", default=release_binary())
    p.add_argument("--bwrap", default=shutil.which("bwrap") or "bwrap")
    p.add_argument("--n", type=int, default=200, help="timed rounds")
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="true")
    args = p.parse_args(argv)
    payload = WORKLOADS[args.workload]
    tmp = tempfile.mkdtemp(prefix="airlock-bench-agent-")
    os.chmod(tmp, 0o755)
    proc, sock, ctl = start_sandbox(os.path.abspath(args.airlock), tmp)
    bwrap = bwrap_prefix(args.bwrap) + payload
    next_id = iter(range(1, 1 << 62))

    def agent_once() -> float:
        req = {"id": next(next_id), "op": "start", "argv": payload, "cwd": "/workspace",
               "max_output_bytes": 1 << 20}
        t = time.perf_counter()
        ctl.write(json.dumps(req) + "\n")
        ctl.flush()
        answer = json.loads(ctl.readline())
        while answer.get("kind") != "exit":
            answer = json.loads(ctl.readline())
        elapsed = time.perf_counter() - t
        if answer.get("exit_code") != 0:
            raise SystemExit(f"agent run failed: {answer}")
        return elapsed

    def bwrap_once() -> float:
        t = time.perf_counter()
        subprocess.run(bwrap, stdin=subprocess.DEVNULL, capture_output=True, check=True)
        return time.perf_counter() - t

    samples: dict[str, list[float]] = {"agent": [], "bwrap": []}
    try:
        for _ in range(10):
            agent_once()
            bwrap_once()
        for i in range(args.n):
            order = [("agent", agent_once), ("bwrap", bwrap_once)]
            for name, fn in order[i % 2:] + order[:i % 2]:
                samples[name].append(fn())
    finally:
        ctl.close()
        sock.close()
        proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    print(f"workload {args.workload}, {args.n} interleaved rounds, uptime load: {os.getloadavg()[0]:.2f}")
    for name, xs in samples.items():
        xs = sorted(x * 1000 for x in xs)
        print(f"  {name:6s} median {med[name]:7.2f} ms  p10 {xs[len(xs) // 10]:7.2f}  p90 {xs[len(xs) * 9 // 10]:7.2f}")
    print(f"  ratio agent / bwrap: {med['agent'] / med['bwrap']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
