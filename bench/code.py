#!/usr/bin/env python3
"""Code execution in the sandbox server, measured over HTTP in one run, side by side with its references.

Starts ``airlock serve`` (its own data directory, a free port, a warm pool of ``--pool``
sandboxes) and measures:

* ``warm``    - ``1+1`` in a warm Python context over HTTP: ``POST /v1/sandboxes/{id}/code`` with
  ``{"code": "1+1"}`` in one sandbox's default Python context (a persistent interpreter), on one
  keep-alive connection, collected (not streamed). The first run starts the interpreter and is
  reported on its own; ``--warmup`` more runs are discarded. Then ``--n`` rounds, each running,
  in an order rotated by round:

  - the code run, checked: status ``ok`` and ``result["text/plain"] == "2"``;
  - ``GET /health`` on the same connection: the floor of an HTTP round trip to this server
    (request, routing, JSON answer), so the share of the code run on top of plain HTTP shows;
  - the reference: ``/usr/bin/python3 -c '1+1'`` run bare on the host (``subprocess.run``, no
    sandbox): what the same code costs as a fresh interpreter.

  Also reported: ``usage.duration_ms`` of each code run, the time the agent inside the sandbox
  measured from handing the code to the interpreter until the interpreter's end message. It is
  whole milliseconds (truncated), so its median is mostly 0 or 1; compare the round trip with the
  ``/health`` floor instead. The order matters: a code run right after another request is
  faster than one after the server sat idle for the ~10 ms of the host ``python3`` (threads
  asleep, caches cold). With the rotation two thirds of the code runs follow the host
  ``python3``, as a request to a quiet server would, and one third follow ``/health``; the
  latter make the low tail, so the spread between p10 and the median is wide.

  Ratio: host ``python3`` median / warm median ("the warm run is N times faster"; the goal is
  at least 10).

* ``oneshot`` - ``print(1+1)`` run once in a fresh sandbox: ``POST /v1/run`` with
  ``{"language": "python", "code": "print(1+1)"}`` against a one-shot
  ``bwrap ... /usr/bin/python3 -c 'print(1+1)'`` with the profile of ``compare.py``
  (``--unshare-all``, read-only ``/usr`` and system directories, fresh ``/proc`` and ``/dev``,
  tmpfs ``/tmp`` and ``/workspace``), and, unless ``--no-handler``, a one-shot handler run
  ``{"code": "def handler(event): return event['n'] + 1", "event": {"n": 1}}`` (it starts a
  Python context in the fresh sandbox; no reference). ``--n-oneshot`` rounds, the kinds in an
  order rotated by round, each run checked (``2`` printed, exit code 0, or the handler's result
  ``2``); any other answer stops the benchmark. ``--warmup`` runs of each kind come first.

  An Airlock one-shot run as timed here is: the HTTP request, a claim of a started sandbox
  from the pool, ``python3 -c`` started in it by its agent (through a runner),
  the output collected, and the answer. Two things happen in the background: the pool starts a
  replacement sandbox right after the claim, so that start runs alongside the timed run and
  competes with it for the CPUs (it is usually done by the time the answer comes); and the
  used sandbox is deleted after the answer, outside the timed span. By default every run, of
  either tool, waits first until the server is quiet again (the pool full, no sandbox pending
  or stopping, checked on ``/metrics``, not timed), so each Airlock run is a pool claim and no
  run shares the CPUs with the previous run's delete. With ``--back-to-back`` nothing waits: the
  background work overlaps the next runs (of either tool), and a run that finds the pool empty
  starts its sandbox cold; the report counts those.

Prints medians, p10 and p90 (and p99 for ``warm``) in milliseconds, the ratios, and a summary
block at the end. Needs root (cgroup limits, a host uid per sandbox) and bwrap. Python 3
standard library only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import REPO, release_binary, bwrap_prefix, cpu_model, percentile  # noqa: E402
from server import Api, create, free_port  # noqa: E402

PYTHON = "/usr/bin/python3"
HANDLER = {"code": "def handler(event):\n    return event['n'] + 1", "event": {"n": 1}}


def line(name: str, values: list[float], p99: bool = False) -> str:
    """One result line in seconds' samples, as ``server.py`` prints it (plus p99 if asked)."""
    ms = sorted(v * 1000 for v in values)
    text = (f"  {name:<30} median {statistics.median(ms):8.2f} ms   p10 {percentile(ms, 0.10):8.2f}"
            f"   p90 {percentile(ms, 0.90):8.2f}")
    if p99:
        text += f"   p99 {percentile(ms, 0.99):8.2f}"
    return text + f"   (n={len(ms)})"


def metrics(api: Api) -> dict[str, float]:
    """The server's gauges and counters, by their full name with labels."""
    api.conn.request("GET", "/metrics")
    text = api.conn.getresponse().read().decode()
    found = {}
    for row in text.splitlines():
        if row and not row.startswith("#"):
            name, _, value = row.rpartition(" ")
            found[name] = float(value)
    return found


def pool_and_busy(api: Api) -> tuple[int, int]:
    """Sandboxes ready in the pool, and sandboxes starting or stopping."""
    m = metrics(api)
    busy = sum(m.get(f'airlock_sandboxes{{state="{s}"}}', 0) for s in ("pending", "stopping"))
    return int(m.get("airlock_pool_ready", 0)), int(busy)


def settle(api: Api, pool: int) -> None:
    """Wait until the pool is full and no sandbox is starting or stopping."""
    deadline = time.time() + 60
    while pool_and_busy(api) != (pool, 0):
        if time.time() > deadline:
            raise SystemExit(f"the server did not settle (pool ready, busy): {pool_and_busy(api)}")
        time.sleep(0.005)


def start_server(airlock: str, pool: int, tmp: str) -> tuple[subprocess.Popen, Api]:
    """``airlock serve`` on a free port with its own data directory, as ``server.py`` starts it."""
    data_dir = os.path.join(tmp, "data")
    config = os.path.join(tmp, "config.toml")
    with open(config, "w") as f:
        f.write("[server]\nmax_sandboxes = 1000\n")
    port = free_port()
    env = dict(os.environ, AIRLOCK_CONFIG=config, LOG_LEVEL="warn", AIRLOCK_POOL_SIZE=str(pool))
    server = subprocess.Popen([os.path.abspath(airlock), "serve", "--port", str(port), "--data-dir", data_dir],
                              env=env, stdout=subprocess.DEVNULL)
    deadline = time.time() + 30
    while True:
        if server.poll() is not None:
            raise SystemExit(f"airlock serve exited with status {server.returncode}")
        try:
            api = Api(port)
            if api.call("GET", "/health")[0] == 200:
                return server, api
        except OSError:
            pass
        if time.time() > deadline:
            server.terminate()
            raise SystemExit("airlock serve did not start")
        time.sleep(0.05)


def code_run(api: Api, path: str) -> dict:
    """``1+1`` in the default Python context; stops the benchmark unless it answers 2."""
    status, answer = api.call("POST", path, {"code": "1+1"})
    if status != 200 or answer.get("status") != "ok" or (answer.get("result") or {}).get("text/plain") != "2":
        raise SystemExit(f"code run failed: {status} {answer}")
    return answer


def bench_warm(api: Api, args: argparse.Namespace) -> list[str]:
    _, sid = create(api, {})
    path = f"/v1/sandboxes/{sid}/code"
    t = time.perf_counter()
    code_run(api, path)
    first = time.perf_counter() - t
    for _ in range(args.warmup):
        code_run(api, path)
        subprocess.run([PYTHON, "-c", "1+1"], stdin=subprocess.DEVNULL, capture_output=True, check=True)
    warm, health, host, duration = [], [], [], []
    kinds = ["code", "health", "host"]
    for i in range(args.n):
        k = i % len(kinds)
        for kind in kinds[k:] + kinds[:k]:
            t = time.perf_counter()
            if kind == "code":
                answer = code_run(api, path)
                warm.append(time.perf_counter() - t)
                duration.append(answer["usage"]["duration_ms"])
            elif kind == "health":
                status, answer = api.call("GET", "/health")
                health.append(time.perf_counter() - t)
                if status != 200:
                    raise SystemExit(f"/health failed: {status} {answer}")
            else:
                proc = subprocess.run([PYTHON, "-c", "1+1"], stdin=subprocess.DEVNULL, capture_output=True)
                host.append(time.perf_counter() - t)
                if proc.returncode != 0:
                    raise SystemExit(f"{PYTHON} -c '1+1' failed: {proc.returncode} {proc.stderr!r}")
    api.call("DELETE", f"/v1/sandboxes/{sid}")
    d = sorted(duration)
    med_warm, med_host = statistics.median(warm), statistics.median(host)
    return [
        f"warm Python context, 1+1, {args.n} rounds interleaved (first run, which starts the "
        f"interpreter: {first * 1000:.1f} ms)",
        line("warm context, HTTP", warm, p99=True),
        line("GET /health (HTTP floor)", health, p99=True),
        line(f"host {PYTHON} -c '1+1'", host, p99=True),
        f"  {'usage.duration_ms (agent)':<30} median {statistics.median(d):8.2f} ms   p90 {percentile(d, 0.90):8.2f}"
        f"   p99 {percentile(d, 0.99):8.2f}   mean {statistics.fmean(d):.2f}   (whole ms, truncated)",
        f"  warm run above the /health floor: {(med_warm - statistics.median(health)) * 1000:.2f} ms (medians)",
        f"  ratio host python3 / warm: {med_host / med_warm:.1f}x (the warm run is {med_host / med_warm:.1f}x "
        f"faster; goal: at least 10x)",
    ]


def bench_oneshot(api: Api, args: argparse.Namespace) -> list[str]:
    bwrap = bwrap_prefix(args.bwrap) + [PYTHON, "-c", "print(1+1)"]
    kinds = ["airlock", "bwrap"] + ([] if args.no_handler else ["handler"])
    times: dict[str, list[float]] = {k: [] for k in kinds}
    cold = 0

    def one(kind: str) -> float | None:
        nonlocal cold
        if not args.back_to_back:
            settle(api, args.pool)
        elif kind != "bwrap" and pool_and_busy(api)[0] == 0:
            cold += 1
        t = time.perf_counter()
        if kind == "bwrap":
            proc = subprocess.run(bwrap, stdin=subprocess.DEVNULL, capture_output=True)
            elapsed = time.perf_counter() - t
            if proc.returncode != 0 or proc.stdout != b"2\n":
                raise SystemExit(f"bwrap run failed: {proc.returncode} stdout {proc.stdout!r} "
                                 f"stderr {proc.stderr!r}\n{' '.join(bwrap)}")
            return elapsed
        body = HANDLER if kind == "handler" else {"language": "python", "code": "print(1+1)"}
        status, answer = api.call("POST", "/v1/run", body)
        elapsed = time.perf_counter() - t
        ok = status == 200 and answer.get("status") == "ok"
        if kind == "handler":
            ok = ok and answer.get("result") == 2
        else:
            ok = ok and answer.get("exit_code") == 0 and answer.get("stdout") == "2\n"
        if not ok:
            raise SystemExit(f"one-shot {kind} run failed: {status} {answer}")
        return elapsed

    for _ in range(args.warmup):
        for kind in kinds:
            one(kind)
    cold = 0
    for i in range(args.n_oneshot):
        k = i % len(kinds)
        for kind in kinds[k:] + kinds[:k]:
            times[kind].append(one(kind))
    ratio = statistics.median(times["airlock"]) / statistics.median(times["bwrap"])
    how = ("back to back" if args.back_to_back else "each after the server settled")
    lines = [
        f"one-shot Python, print(1+1), {args.n_oneshot} rounds interleaved, {how}, pool of {args.pool}",
        line("airlock POST /v1/run", times["airlock"]),
        line("one-shot bwrap", times["bwrap"]),
    ]
    if "handler" in times:
        lines.append(line("airlock /v1/run handler", times["handler"]))
    lines.append(f"  ratio airlock / bwrap: {ratio:.3f} (goal: below 1)")
    if args.back_to_back:
        lines.append(f"  Airlock runs that found the pool empty: {cold}")
    return lines


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--airlock", default=release_binary())
    p.add_argument("--bwrap", default=shutil.which("bwrap") or "bwrap")
    p.add_argument("--only", choices=("warm", "oneshot"), help="run one measurement only")
    p.add_argument("--n", type=int, default=200, help="timed rounds of the warm measurement")
    p.add_argument("--n-oneshot", type=int, default=50, help="timed rounds of the one-shot measurement")
    p.add_argument("--warmup", type=int, default=5, help="discarded runs of each kind before the timed rounds")
    p.add_argument("--pool", type=int, default=6, help="the server's pool size (AIRLOCK_POOL_SIZE)")
    p.add_argument("--no-handler", action="store_true", help="leave out the one-shot handler run")
    p.add_argument("--back-to-back", action="store_true",
                   help="one-shot runs without waiting for the server to settle between them")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root: sandboxes need cgroups and a host uid each")
    if min(args.n, args.n_oneshot) < 2 or args.warmup < 0 or args.pool < 1:
        p.error("need at least 2 rounds, a non-negative warm-up and a pool of at least 1")
    if not os.access(args.airlock, os.X_OK):
        raise SystemExit(f"{args.airlock} is not an executable (build it: cargo build --release --bin airlock)")
    if args.only != "warm" and not os.access(shutil.which(args.bwrap) or args.bwrap, os.X_OK):
        raise SystemExit(f"bwrap not found ({args.bwrap}); install bubblewrap")

    tmp = tempfile.mkdtemp(prefix="airlock-bench-code-")
    os.chmod(tmp, 0o755)
    load_start = os.getloadavg()
    server, api = start_server(args.airlock, args.pool, tmp)
    results: list[str] = []
    try:
        settle(api, args.pool)
        if args.only in (None, "warm"):
            print(f"warm: {args.n} rounds ...", file=sys.stderr, flush=True)
            results += bench_warm(api, args)
            settle(api, args.pool)
        if args.only in (None, "oneshot"):
            print(f"oneshot: {args.n_oneshot} rounds ...", file=sys.stderr, flush=True)
            results += bench_oneshot(api, args)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    load_end = os.getloadavg()
    print(f"airlock serve, code execution ({os.cpu_count()} CPUs, {cpu_model()}; load "
          f"{load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end)")
    for row in results:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
