#!/usr/bin/env python3
"""The sandbox server, measured over HTTP in one run, side by side with its references.

Starts ``airlock serve`` (its own data directory, a free port, a pool) and measures:

* ``create``  - a create that claims from the pool against a cold create (a limit other than the
  default, so it starts a sandbox), interleaved; each sandbox is deleted after (not timed);
* ``exec``    - ``/bin/true`` in a running sandbox over HTTP (collect mode, one keep-alive
  connection) against a one-shot ``bwrap ... /bin/true`` as in ``compare.py``, interleaved;
* ``burst``   - 100 creates at once (cold: each starts its sandbox), total wall time;
* ``idle``    - memory per idle sandbox with 200 running: the drop of ``MemAvailable`` divided
  by 200, and the proportional set size (PSS) of every process of those sandboxes divided by 200.

Prints medians, p10 and p90 and the ratios. Needs root (cgroup limits, a host uid per sandbox)
and bwrap. Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import REPO, release_binary, bwrap_prefix  # noqa: E402


class Api:
    """One keep-alive HTTP connection."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        self.conn.request(method, path, body=data, headers=headers)
        reply = self.conn.getresponse()
        raw = reply.read()
        return reply.status, (json.loads(raw) if raw else {})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def summary(name: str, values: list[float]) -> float:
    values = sorted(values)
    med = statistics.median(values)
    p10 = values[len(values) // 10]
    p90 = values[(len(values) * 9) // 10]
    print(f"  {name:<22} median {med * 1000:8.2f} ms   p10 {p10 * 1000:8.2f}   p90 {p90 * 1000:8.2f}   (n={len(values)})")
    return med


def pool_ready(api: Api) -> int:
    api.conn.request("GET", "/metrics")
    text = api.conn.getresponse().read().decode()
    for line in text.splitlines():
        if line.startswith("airlock_pool_ready "):
            return int(line.split()[1])
    return 0


def wait_pool(api: Api, size: int) -> None:
    deadline = time.time() + 60
    while pool_ready(api) < size:
        if time.time() > deadline:
            raise SystemExit("the pool did not fill")
        time.sleep(0.02)


def create(api: Api, body: dict) -> tuple[float, str]:
    t = time.perf_counter()
    status, sandbox = api.call("POST", "/v1/sandboxes", body)
    elapsed = time.perf_counter() - t
    if status != 201:
        raise SystemExit(f"create failed: {status} {sandbox}")
    return elapsed, sandbox["id"]


def sandbox_pids(data_dir: str) -> list[int]:
    """Every process of the server's sandboxes: the launchers and their descendants."""
    parent: dict[int, int] = {}
    launchers = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
        if f"launch --spec {data_dir}" in cmd:
            launchers.append(int(entry))
    found = set(launchers)
    changed = True
    while changed:
        changed = False
        for pid, ppid in parent.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return sorted(found)


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def mem_available_kib() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--airlock", default=release_binary())
    p.add_argument("--bwrap", default=shutil.which("bwrap") or "bwrap")
    p.add_argument("--n", type=int, default=100, help="timed rounds of create and exec")
    p.add_argument("--burst", type=int, default=100)
    p.add_argument("--idle", type=int, default=200)
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root: sandboxes need cgroups and a host uid each")

    tmp = tempfile.mkdtemp(prefix="airlock-bench-server-")
    os.chmod(tmp, 0o755)
    data_dir = os.path.join(tmp, "data")
    config = os.path.join(tmp, "config.toml")
    with open(config, "w") as f:
        f.write("[server]\nmax_sandboxes = 1000\n")
    port = free_port()
    env = dict(os.environ, AIRLOCK_CONFIG=config, LOG_LEVEL="warn", AIRLOCK_POOL_SIZE="4")
    server = subprocess.Popen([os.path.abspath(args.airlock), "serve", "--port", str(port), "--data-dir", data_dir],
                              env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                api = Api(port)
                if api.call("GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit("airlock serve did not start")
            time.sleep(0.05)

        print(f"airlock serve, {args.n} rounds, interleaved")
        pooled, cold = [], []
        for i in range(args.n):
            wait_pool(api, 4)
            for kind in (("pool", "cold") if i % 2 == 0 else ("cold", "pool")):
                body = {} if kind == "pool" else {"limits": {"max_pids": 129}}
                elapsed, sid = create(api, body)
                (pooled if kind == "pool" else cold).append(elapsed)
                api.call("DELETE", f"/v1/sandboxes/{sid}")
        print("create")
        med_pool = summary("from the pool", pooled)
        med_cold = summary("cold", cold)
        print(f"  ratio pool / cold: {med_pool / med_cold:.3f}")

        _, sid = create(api, {"limits": {"max_pids": 129}})
        bwrap = bwrap_prefix(args.bwrap) + ["/bin/true"]
        http_true, bwrap_true = [], []
        for i in range(args.n):
            for kind in (("http", "bwrap") if i % 2 == 0 else ("bwrap", "http")):
                t = time.perf_counter()
                if kind == "http":
                    status, result = api.call("POST", f"/v1/sandboxes/{sid}/commands", {"argv": ["/bin/true"]})
                    if status != 200 or result.get("exit_code") != 0:
                        raise SystemExit(f"command failed: {status} {result}")
                    http_true.append(time.perf_counter() - t)
                else:
                    subprocess.run(bwrap, stdin=subprocess.DEVNULL, capture_output=True, check=True)
                    bwrap_true.append(time.perf_counter() - t)
        print("/bin/true")
        med_http = summary("in a sandbox, HTTP", http_true)
        med_bwrap = summary("one-shot bwrap", bwrap_true)
        print(f"  ratio HTTP / bwrap: {med_http / med_bwrap:.3f}")
        api.call("DELETE", f"/v1/sandboxes/{sid}")

        ids: list[str] = []
        lock = threading.Lock()

        def one() -> None:
            _, made = create(Api(port), {"limits": {"max_pids": 129}})
            with lock:
                ids.append(made)

        threads = [threading.Thread(target=one) for _ in range(args.burst)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        burst = time.perf_counter() - t
        print(f"burst: {len(ids)} creates at once in {burst * 1000:.0f} ms ({burst * 1000 / max(len(ids), 1):.1f} ms each)")
        for made in ids:
            api.call("DELETE", f"/v1/sandboxes/{made}")

        before = mem_available_kib()
        base_pss = sum(pss_kib(pid) for pid in sandbox_pids(data_dir))
        idle = [create(api, {"limits": {"max_pids": 129}})[1] for _ in range(args.idle)]
        time.sleep(2)
        after = mem_available_kib()
        pids = sandbox_pids(data_dir)
        pss = sum(pss_kib(pid) for pid in pids) - base_pss
        print(f"idle: {len(idle)} sandboxes, {len(pids)} processes: "
              f"MemAvailable drop {(before - after) / len(idle) / 1024:.2f} MiB each, "
              f"PSS {pss / len(idle) / 1024:.2f} MiB each")
        for made in idle:
            api.call("DELETE", f"/v1/sandboxes/{made}")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
