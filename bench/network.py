#!/usr/bin/env python3
"""The egress proxy's cost: a download through it against a direct one on the same loopback.

A sandbox in ``allowlist`` network mode reaches the outside only through the host-side HTTP
proxy that ``airlock serve`` runs for it (``http://127.0.0.1:3128`` inside the sandbox). This
benchmark puts a number on what that proxy costs a client.

Set-up
------
* An origin HTTP server on the host, bound to ``127.0.0.2`` (a second loopback address, so it is
  no socket of the Airlock server). It is a small threaded server (``socket`` plus
  ``os.sendfile`` from a temporary file in the page cache, HTTP/1.1, ``Content-Length``,
  ``Connection: close``), serving ``/blob`` (``--size-mb`` megabytes, 10^6 bytes each, 100 by
  default) and ``/tiny`` (a 2-byte body). It is far faster than the proxy, so it does not limit
  either side.
* ``airlock serve`` with its own data directory, a free port, a pool of one, and a
  configuration file that pins ``bench.test`` to ``127.0.0.2`` (``[server.network.hosts]``), so
  that no DNS is involved. One sandbox is created with
  ``{"network": {"mode": "allowlist", "rules": [{"action": "allow", "target": "bench.test"}]}}``.

Variants, all the same ``curl`` (``-q -s -S -o /dev/null -w ...``), each run checked (HTTP 200
and every byte received):

* ``direct``  - ``curl --noproxy '*' http://127.0.0.2:PORT/PATH`` run bare on the host.
* ``proxy``   - ``curl --proxy http://127.0.0.1:3128 http://bench.test:PORT/PATH`` run in the
  sandbox (``POST /v1/sandboxes/{id}/commands``): a plain ``http://`` request that the proxy
  decides on, forwards and relays.
* ``connect`` - the same with ``--proxytunnel``: a ``CONNECT bench.test:PORT`` tunnel, the path
  that every ``https://`` request takes (plain HTTP inside the tunnel, so no TLS cost is added
  to either side).
* ``hostnet`` - a control, left out with ``--no-hostnet``: the ``direct`` command run in a second
  sandbox created with network mode ``host`` (the server's ``allow_host = true``), which shares
  the host's network namespace and has no proxy. It differs from ``direct`` only by running
  sandboxed (seccomp, cgroup, namespaces other than the network), so ``proxy`` against
  ``hostnet`` isolates the proxy from the cost of running curl in a sandbox at all.

Why the direct download runs on the host: a sandbox without the proxy (network mode ``none``)
has only its own loopback and cannot reach ``127.0.0.2`` at all. The host's loopback is the same
path the proxy itself uses for its leg to the origin, so what the proxied variants add is the
proxy (one more TCP connection, inside the sandbox's network namespace, the decision, and the
copy through user space) plus whatever running curl in a sandbox costs, which ``hostnet``
shows. The numbers are curl's own (``time_total``, ``time_starttransfer``), measured from the
start of the transfer, so neither starting curl nor the HTTP call that starts the command in the
sandbox is counted.

Measured:

* ``download`` - ``--n`` rounds (15 by default) of the ``--size-mb`` body: throughput
  (size / ``time_total``) and time to first byte (``time_starttransfer``). Ratio: median
  ``time_total`` of a variant / median ``time_total`` direct (the same as direct MB/s over the
  variant's MB/s; the goal for the proxy is within 1.5x).
* ``tiny``     - ``--n-tiny`` rounds (50 by default) of the 2-byte body: time to first byte, and
  the latency the proxy adds (median proxied TTFB minus median direct TTFB).

In every round each variant runs once, in an order rotated by round, after ``--warmup``
discarded runs of each. Reported: median, p10 and p90, the ratios, the machine, and the exact
commands. ``--json`` prints everything, raw samples included. The exit status is non-zero only
when the benchmark could not run (a failed download, a server that did not start), never for a
missed goal. Needs root (``airlock serve`` uses cgroups and a host uid per sandbox) and ``curl``.
Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import release_binary, cpu_model, percentile  # noqa: E402
from server import Api, create, free_port  # noqa: E402

ORIGIN_IP = "127.0.0.2"
ORIGIN_NAME = "bench.test"
PROXY = "http://127.0.0.1:3128"
VARIANTS = ("direct", "proxy", "connect", "hostnet")
CURL_FORMAT = "%{http_code} %{size_download} %{time_starttransfer} %{time_total}\\n"
TINY_BODY = b"ok"
HOST_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent"}


class Origin:
    """The origin server on ``ORIGIN_IP``: ``/blob`` (``size`` bytes) and ``/tiny`` (2 bytes).

    One thread accepts; each connection gets its own thread, reads one request, answers it with
    ``Connection: close`` (the blob by ``os.sendfile`` from a file in the page cache) and closes.
    """

    def __init__(self, tmp: str, size: int):
        self.size = size
        self.path = os.path.join(tmp, "blob")
        chunk = os.urandom(1 << 20)
        with open(self.path, "wb") as f:
            left = size
            while left:
                left -= f.write(chunk[:min(left, len(chunk))])
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((ORIGIN_IP, 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.errors: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        path = "?"
        with conn:
            try:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.settimeout(30)
                request = b""
                while b"\r\n\r\n" not in request:
                    data = conn.recv(65536)
                    if not data:
                        return
                    request += data
                parts = request.split(b"\r\n", 1)[0].split()
                path = parts[1].decode(errors="replace") if len(parts) >= 2 else ""
                conn.settimeout(None)  # blocking again: os.sendfile must not see EAGAIN
                head = "HTTP/1.1 {}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n" \
                       "Connection: close\r\n\r\n"
                if path == "/tiny":
                    # Head and body in one segment: no wait on Nagle or a delayed ACK.
                    conn.sendall(head.format("200 OK", len(TINY_BODY)).encode() + TINY_BODY)
                elif path == "/blob":
                    conn.sendall(head.format("200 OK", self.size).encode())
                    with open(self.path, "rb") as f:
                        offset = 0
                        while offset < self.size:
                            sent = os.sendfile(conn.fileno(), f.fileno(), offset, self.size - offset)
                            if sent == 0:
                                raise OSError("the client closed the connection")
                            offset += sent
                else:
                    conn.sendall(head.format("404 Not Found", 0).encode())
                conn.shutdown(socket.SHUT_WR)
            except OSError as e:
                self.errors.append(f"{path}: {e}")

    def close(self) -> None:
        self.listener.close()


def start_server(airlock: str, tmp: str, hostnet: bool) -> tuple[subprocess.Popen, Api, str]:
    """``airlock serve`` with a pool of one and ``bench.test`` pinned to the origin's address."""
    data_dir = os.path.join(tmp, "data")
    config = os.path.join(tmp, "config.toml")
    with open(config, "w") as f:
        f.write("[server]\npool_size = 1\n\n[server.network]\n"
                + ("allow_host = true\n" if hostnet else "")
                + f'\n[server.network.hosts]\n"{ORIGIN_NAME}" = "{ORIGIN_IP}"\n')
    port = free_port()
    log = open(os.path.join(tmp, "serve.log"), "wb")
    argv = [os.path.abspath(airlock), "serve", "--config", config, "--port", str(port), "--data-dir", data_dir]
    env = dict(os.environ, LOG_LEVEL="warn")
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.time() + 30
    while True:
        if server.poll() is not None:
            raise SystemExit(f"airlock serve exited with status {server.returncode}:\n{read_log(tmp)}")
        try:
            api = Api(port)
            if api.call("GET", "/health")[0] == 200:
                return server, api, " ".join(argv)
        except OSError:
            pass
        if time.time() > deadline:
            server.terminate()
            raise SystemExit(f"airlock serve did not start:\n{read_log(tmp)}")
        time.sleep(0.05)


def read_log(tmp: str) -> str:
    try:
        with open(os.path.join(tmp, "serve.log"), errors="replace") as f:
            return f.read()[-4000:]
    except OSError:
        return ""


def curl_argv(variant: str, origin_port: int, path: str) -> list[str]:
    """The curl command of a variant; only the proxy options and the host name differ."""
    base = ["curl", "-q", "-s", "-S", "-o", "/dev/null", "-w", CURL_FORMAT]
    if variant in ("direct", "hostnet"):
        return [*base, "--noproxy", "*", f"http://{ORIGIN_IP}:{origin_port}{path}"]
    tunnel = ["--proxytunnel"] if variant == "connect" else []
    return [*base, "--proxy", PROXY, *tunnel, f"http://{ORIGIN_NAME}:{origin_port}{path}"]


def parse_curl(variant: str, argv: list[str], out: str, size: int) -> tuple[float, float]:
    """(time_total, time_starttransfer) in seconds; stops the benchmark unless every byte came."""
    try:
        code, got, ttfb, total = out.split()
        ok = code == "200" and int(got) == size
    except ValueError:
        ok = False
    if not ok:
        raise SystemExit(f"{variant} download failed (expected HTTP 200 and {size} bytes): "
                         f"{out.strip()!r}\n{shlex.join(argv)}")
    return float(total), float(ttfb)


class Runner:
    """Runs a variant's curl on the host or in its sandbox."""

    def __init__(self, api: Api, sandboxes: dict[str, str], origin: Origin, variants: tuple[str, ...]):
        self.api = api
        self.sandboxes = sandboxes
        self.origin = origin
        self.variants = variants

    def run(self, variant: str, path: str, size: int) -> tuple[float, float]:
        argv = curl_argv(variant, self.origin.port, path)
        if variant == "direct":
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=HOST_ENV)
            if proc.returncode != 0:
                raise SystemExit(f"direct download failed: exit {proc.returncode} {proc.stderr.strip()}\n"
                                 f"{shlex.join(argv)}\norigin errors: {self.origin.errors[-3:]}")
            return parse_curl(variant, argv, proc.stdout, size)
        path = f"/v1/sandboxes/{self.sandboxes[variant]}/commands"
        status, result = self.api.call("POST", path, {"argv": argv, "timeout_ms": 120_000})
        if status != 200 or result.get("exit_code") != 0:
            raise SystemExit(f"{variant} download in the sandbox failed: {status} {json.dumps(result)}\n"
                             f"{shlex.join(argv)}\norigin errors: {self.origin.errors[-3:]}")
        return parse_curl(variant, argv, result.get("stdout", ""), size)


def stats(values: list[float]) -> dict:
    """Median, p10 and p90 of seconds' samples, in milliseconds."""
    ms = sorted(v * 1000 for v in values)
    return {"n": len(ms), "median_ms": statistics.median(ms), "p10_ms": percentile(ms, 0.10),
            "p90_ms": percentile(ms, 0.90), "min_ms": ms[0], "max_ms": ms[-1]}


def measure(runner: Runner, path: str, size: int, rounds: int, warmup: int) -> dict:
    """``rounds`` interleaved rounds of every variant after ``warmup`` discarded runs of each."""
    variants = runner.variants
    for _ in range(warmup):
        for v in variants:
            runner.run(v, path, size)
    total: dict[str, list[float]] = {v: [] for v in variants}
    ttfb: dict[str, list[float]] = {v: [] for v in variants}
    for i in range(rounds):
        k = i % len(variants)
        for v in variants[k:] + variants[:k]:
            t, f = runner.run(v, path, size)
            total[v].append(t)
            ttfb[v].append(f)
    result = {
        "path": path,
        "bytes": size,
        "rounds": rounds,
        "warmup": warmup,
        "total": {v: stats(total[v]) for v in variants},
        "ttfb": {v: stats(ttfb[v]) for v in variants},
        "samples_ms": {v: {"total": [round(x * 1000, 3) for x in total[v]],
                           "ttfb": [round(x * 1000, 3) for x in ttfb[v]]} for v in variants},
    }
    direct_total = result["total"]["direct"]["median_ms"]
    direct_ttfb = result["ttfb"]["direct"]["median_ms"]
    others = [v for v in variants if v != "direct"]
    result["ratio_total"] = {v: result["total"][v]["median_ms"] / direct_total for v in others}
    result["added_ttfb_ms"] = {v: result["ttfb"][v]["median_ms"] - direct_ttfb for v in others}
    result["mb_per_s"] = {v: size / 1e6 / (result["total"][v]["median_ms"] / 1000) for v in variants}
    return result


def machine() -> dict:
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "loadavg_start": os.getloadavg(),
        "curl": subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout.split("\n")[0],
    }


def print_report(report: dict) -> None:
    m = report["machine"]
    variants = report["variants"]
    print(f"airlock serve, egress proxy against a direct download ({m['nproc']} CPUs, {m['cpu_model']}, "
          f"kernel {m['kernel']}; load {m['loadavg_start'][0]:.2f} at the start, "
          f"{m['loadavg_end'][0]:.2f} at the end)")
    print(m["curl"])
    d = report["download"]
    if d:
        print()
        print(f"download of {d['bytes'] / 1e6:g} MB, {d['rounds']} rounds interleaved "
              f"({d['warmup']} warm-up runs of each)")
        print(f"  {'variant':<9} {'total':>10} {'p10':>9} {'p90':>9} {'MB/s':>8} "
              f"{'TTFB':>9} {'p10':>8} {'p90':>8} {'ratio':>7}")
        for v in variants:
            t, f = d["total"][v], d["ttfb"][v]
            ratio = f"{d['ratio_total'][v]:7.2f}" if v in d["ratio_total"] else f"{'':>7}"
            print(f"  {v:<9} {t['median_ms']:8.1f}ms {t['p10_ms']:7.1f}ms {t['p90_ms']:7.1f}ms "
                  f"{d['mb_per_s'][v]:8.0f} {f['median_ms']:7.2f}ms {f['p10_ms']:6.2f}ms {f['p90_ms']:6.2f}ms {ratio}")
        print("  total = curl time_total, TTFB = curl time_starttransfer (median, p10, p90); "
              "MB/s = size / median total")
        print("  ratio = median total / median total direct (goal for proxy and connect: within 1.5x)")
    t = report["tiny"]
    if t:
        print()
        print(f"tiny request ({t['bytes']}-byte body), {t['rounds']} rounds interleaved "
              f"({t['warmup']} warm-up runs of each)")
        print(f"  {'variant':<9} {'TTFB':>9} {'p10':>8} {'p90':>8} {'total':>9} {'added':>9}")
        for v in variants:
            f, tot = t["ttfb"][v], t["total"][v]
            added = f"{t['added_ttfb_ms'][v]:+7.3f}ms" if v in t["added_ttfb_ms"] else f"{'':>9}"
            print(f"  {v:<9} {f['median_ms']:7.3f}ms {f['p10_ms']:6.3f}ms {f['p90_ms']:6.3f}ms "
                  f"{tot['median_ms']:7.3f}ms {added}")
        print("  added = median TTFB - median TTFB direct: the latency added to a request")
    print()
    print("summary")
    for v in variants[1:]:
        if d:
            print(f"  {v:<8} {d['bytes'] / 1e6:g} MB: {d['mb_per_s'][v]:.0f} MB/s against "
                  f"{d['mb_per_s']['direct']:.0f} MB/s direct, {d['ratio_total'][v]:.2f}x the time"
                  + (" (goal: within 1.5x)" if v != "hostnet" else "")
                  + f"; TTFB {d['added_ttfb_ms'][v]:+.2f} ms")
        if t:
            print(f"  {v:<8} tiny request: {t['added_ttfb_ms'][v]:+.3f} ms to the first byte "
                  f"({t['ttfb'][v]['median_ms']:.3f} ms against {t['ttfb']['direct']['median_ms']:.3f} ms direct)")
    if d and "hostnet" in variants:
        print(f"  proxy against hostnet (the proxy alone): {d['ratio_total']['proxy'] / d['ratio_total']['hostnet']:.2f}x "
              f"the time, connect {d['ratio_total']['connect'] / d['ratio_total']['hostnet']:.2f}x")
    print()
    print("commands (/PATH: /blob for the download, /tiny for the tiny request)")
    print(f"  server:  {report['server']}")
    for row in report["config"].splitlines():
        print(f"           {row}")
    for v, body in report["sandboxes"].items():
        print(f"  sandbox for {v}: POST /v1/sandboxes {json.dumps(body)}")
        print(f"    limits: {json.dumps(report['limits'][v])}")
    for v, argv in report["commands"].items():
        box = "proxy" if v == "connect" else v
        where = "host" if v == "direct" else f"in the {box} sandbox: POST /v1/sandboxes/{{id}}/commands"
        print(f"  {v} ({where}):\n    {argv}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--airlock", default=release_binary(), help="airlock binary")
    p.add_argument("--only", choices=("download", "tiny"), help="run one measurement only")
    p.add_argument("--size-mb", type=int, default=100, help="size of the download, in MB (10^6 bytes)")
    p.add_argument("--n", type=int, default=15, help="timed rounds of the download")
    p.add_argument("--n-tiny", type=int, default=50, help="timed rounds of the tiny request")
    p.add_argument("--warmup", type=int, default=2, help="discarded runs of each variant before the rounds")
    p.add_argument("--no-hostnet", action="store_true",
                   help="leave out the control run in a sandbox with the host's network")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)
    if min(args.n, args.n_tiny) < 2 or args.warmup < 0 or args.size_mb < 1:
        p.error("need at least 2 rounds, a non-negative warm-up and a size of at least 1 MB")
    if os.geteuid() != 0:
        raise SystemExit("run as root: sandboxes need cgroups and a host uid each")
    if not os.access(args.airlock, os.X_OK):
        raise SystemExit(f"{args.airlock} is not an executable (build it: cargo build --release --bin airlock)")
    if shutil.which("curl") is None:
        raise SystemExit("curl not found; install it")

    variants = tuple(v for v in VARIANTS if not (args.no_hostnet and v == "hostnet"))
    bodies = {"proxy": {"network": {"mode": "allowlist",
                                    "rules": [{"action": "allow", "target": ORIGIN_NAME}]}}}
    if "hostnet" in variants:
        bodies["hostnet"] = {"network": {"mode": "host"}}
    tmp = tempfile.mkdtemp(prefix="airlock-bench-network-")
    os.chmod(tmp, 0o755)
    report: dict = {"machine": machine(), "variants": variants, "download": None, "tiny": None}
    server = None
    try:
        origin = Origin(tmp, args.size_mb * 1_000_000)
        server, api, report["server"] = start_server(args.airlock, tmp, "hostnet" in variants)
        with open(os.path.join(tmp, "config.toml")) as f:
            report["config"] = f.read()
        report["sandboxes"], report["limits"], sandboxes = {}, {}, {}
        for kind, body in bodies.items():
            _, sid = create(api, body)
            status, view = api.call("GET", f"/v1/sandboxes/{sid}")
            if status != 200:
                raise SystemExit(f"GET /v1/sandboxes/{sid} failed: {status} {view}")
            report["sandboxes"][kind] = body
            report["limits"][kind] = view.get("limits")
            sandboxes[kind] = sid
        sandboxes["connect"] = sandboxes["proxy"]
        runner = Runner(api, sandboxes, origin, variants)
        report["commands"] = {v: shlex.join(curl_argv(v, origin.port, "/PATH")) for v in variants}
        if args.only in (None, "download"):
            print(f"download: {args.n} rounds of {args.size_mb} MB ...", file=sys.stderr, flush=True)
            report["download"] = measure(runner, "/blob", origin.size, args.n, args.warmup)
        if args.only in (None, "tiny"):
            print(f"tiny: {args.n_tiny} rounds ...", file=sys.stderr, flush=True)
            report["tiny"] = measure(runner, "/tiny", len(TINY_BODY), args.n_tiny, args.warmup)
        for sid in set(sandboxes.values()):
            api.call("DELETE", f"/v1/sandboxes/{sid}")
        origin.close()
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    report["machine"]["loadavg_end"] = os.getloadavg()
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
