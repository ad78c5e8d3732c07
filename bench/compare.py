#!/usr/bin/env python3
"""Start-up cost of Airlock against bubblewrap, measured end to end from the caller.

What it measures
----------------
The wall-clock time of one complete sandboxed run, as a caller sees it: from just before
``subprocess.run`` starts the tool until the tool has exited and its output pipes are drained.
That covers creating the sandbox (namespaces, mounts, pivot_root, seccomp, landlock, cgroups),
running the payload, and tearing everything down again. Two payloads:

* ``true``   - ``/bin/true``: nearly pure sandbox overhead;
* ``python`` - ``python3 -c pass``: a realistic small interpreter start inside the sandbox.

Variants (``--variants``):

* ``airlock``      - ``airlock run -- CMD`` with the built-in defaults (every protection on:
  user/mount/pid/ipc/uts/net/cgroup namespaces, tmpfs root, read-only system binds, generated
  /etc, fresh /proc, minimal /dev, seccomp, landlock, no capabilities, 256M memory and 128
  pids cgroup limits). The probe run records which cgroup version the result reports: a
  caller that can create no cgroup (a non-root user without a delegated cgroup v2 subtree)
  gets the run without the built-in limits and ``"cgroup": null``, reported in the output.
* ``airlock-nocg`` - the same with a configuration file that allows only cgroup v2
  (``[platform.linux] cgroups_version = "v2"``). Where v2 is not usable for this caller (a
  hybrid v1 host as root, or any non-root caller without a delegated v2 subtree) Airlock then
  drops its built-in memory/pids limits and creates no cgroup; the probe run checks that the
  result reports ``"cgroup": null``. Comparing it with ``airlock`` isolates the cgroup cost.
* ``bwrap``        - ``bwrap --unshare-all --die-with-parent --cap-drop ALL`` with read-only
  ``/usr``, the host's ``/bin``, ``/sbin``, ``/lib*`` mirrored (symlinks as symlinks,
  directories as read-only binds, as Airlock does), ``/etc/ld.so.cache`` and
  ``/etc/alternatives``, fresh ``/proc``, ``/dev``, tmpfs ``/tmp`` and ``/workspace``, cwd
  ``/workspace``.

How
---
Every variant first does one checked probe run (output captured and, for Airlock, its JSON
result parsed: status "success", exit code 0, and the cgroup it used is recorded; for
``airlock-nocg`` it must be none), then ``--warmup``
discarded runs, then ``N`` timed runs interleaved: in round ``i`` each variant runs once, in an
order rotated by ``i`` so that no variant always goes first. Each run is timed with
``time.perf_counter`` around ``subprocess.run``; stdin is ``/dev/null`` and stdout/stderr go
to pipes (``--output pipe``, the default; Airlock then prints its JSON result, exactly as with
``--format json``) or to ``/dev/null`` (``--output devnull``), the same for every variant.
Any run that does not exit 0 aborts the benchmark with its output: there are no silent
failures.

Airlock runs from a copy of the binary in the benchmark's temporary directory, as an installed
one would: a file the linker has just written sits in the page cache in small pieces, and
starting it then costs 0.4 to 0.7 ms more per run on the reference machine (see
docs/benchmarks.md). bwrap runs as installed.

With ``--user NAME`` every tool runs as that user (real and effective uid/gid set, supplementary
groups cleared, like ``setpriv --reuid=NAME --regid=NAME --clear-groups``, but done by
``subprocess`` itself so no extra program is executed); the copy is world-readable.

Every tool gets the same minimal environment (PATH, HOME = an empty temporary directory,
LANG), so no configuration file from the caller's home is picked up.

Report: median, p10 and p90 per variant and workload in milliseconds, and the ratio
airlock median / bwrap median (below 1.0 means Airlock is faster), plus the machine (CPUs,
kernel, load) and tool versions. ``--json`` prints everything, raw samples included, as JSON.

Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def release_binary() -> str:
    """The release build of `airlock`: target/<host tuple>/release (see .cargo/config.toml)."""
    host = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout
    tuple_ = next(line.split(": ", 1)[1] for line in host.splitlines() if line.startswith("host: "))
    return os.path.join(REPO, "target", tuple_, "release", "airlock")

WORKLOADS = {
    "true": ["/bin/true"],
    "python": ["python3", "-c", "pass"],
}

VARIANTS = ("airlock", "airlock-nocg", "bwrap")

NO_CGROUP_CONFIG = '[platform.linux]\ncgroups_version = "v2"\n'


class BenchError(Exception):
    """A run failed or the setup is wrong: the benchmark stops."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Compare the end-to-end run time of Airlock and bubblewrap.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--airlock", default=release_binary(),
                   help="airlock binary")
    p.add_argument("--bwrap", default=shutil.which("bwrap") or "bwrap", help="bwrap binary")
    p.add_argument("--n-true", type=int, default=200, help="timed rounds for /bin/true")
    p.add_argument("--n-python", type=int, default=100, help="timed rounds for python3 -c pass")
    p.add_argument("--warmup", type=int, default=10, help="discarded runs per variant and workload")
    p.add_argument("--workloads", default="true,python",
                   help="comma-separated subset of: " + ",".join(WORKLOADS))
    p.add_argument("--variants", default=None,
                   help="comma-separated subset of: " + ",".join(VARIANTS)
                   + " (default: airlock,bwrap)")
    p.add_argument("--user", default=None,
                   help="run every tool as this user (uid/gid set, groups cleared)")
    p.add_argument("--output", choices=("pipe", "devnull"), default="pipe",
                   help="where the tools' stdout/stderr go, for every variant")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)
    args.workloads = [w for w in args.workloads.split(",") if w]
    for w in args.workloads:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w!r}")
    if args.variants is None:
        args.variants = "airlock,bwrap"
    args.variants = [v for v in args.variants.split(",") if v]
    for v in args.variants:
        if v not in VARIANTS:
            p.error(f"unknown variant {v!r}")
    if "bwrap" not in args.variants:
        p.error("the bwrap variant is needed for the ratios")
    if not any(v.startswith("airlock") for v in args.variants):
        p.error("at least one airlock variant is needed")
    if min(args.n_true, args.n_python) < 2 or args.warmup < 0:
        p.error("need at least 2 timed rounds and a non-negative warm-up")
    return args


# ---------------------------------------------------------------------------------------------
# Command lines


def bwrap_prefix(bwrap: str) -> list[str]:
    """The bwrap command line, mirroring how this host lays out /bin, /sbin and /lib*."""
    cmd = [bwrap, "--unshare-all", "--die-with-parent", "--cap-drop", "ALL", "--ro-bind", "/usr", "/usr"]
    for d in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(d):
            cmd += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            cmd += ["--ro-bind", d, d]
    for f in ("/etc/ld.so.cache", "/etc/alternatives"):
        if os.path.exists(f):
            cmd += ["--ro-bind", f, f]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/workspace",
            "--chdir", "/workspace", "--"]
    return cmd


class Setup:
    """Paths, environment and credentials shared by every run."""

    def __init__(self, args: argparse.Namespace, tmp: str):
        self.tmp = tmp
        os.chmod(tmp, 0o755)
        self.home = os.path.join(tmp, "home")
        os.mkdir(self.home)
        self.airlock = os.path.abspath(args.airlock)
        if not os.access(self.airlock, os.X_OK):
            raise BenchError(f"{self.airlock} is not an executable (build it: "
                             "cargo build --release -p airlock-cli)")
        self.bwrap = shutil.which(args.bwrap) or args.bwrap
        if not os.access(self.bwrap, os.X_OK):
            raise BenchError(f"bwrap not found ({args.bwrap}); install bubblewrap")
        self.creds: dict = {}
        if args.user:
            pw = pwd.getpwnam(args.user)
            if os.geteuid() != 0:
                raise BenchError("--user needs the benchmark to run as root")
            self.creds = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
            os.chown(self.home, pw.pw_uid, pw.pw_gid)
        # Installed, not freshly linked (see the module's documentation); the build tree may
        # also not be reachable for --user.
        copy = os.path.join(tmp, "airlock")
        shutil.copy2(self.airlock, copy)
        os.chmod(copy, 0o755)
        self.airlock = copy
        self.no_cgroup_config = os.path.join(tmp, "no-cgroup.toml")
        with open(self.no_cgroup_config, "w") as f:
            f.write(NO_CGROUP_CONFIG)
        os.chmod(self.no_cgroup_config, 0o644)
        self.env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": self.home, "LANG": "C.UTF-8"}
        self.bwrap_prefix = bwrap_prefix(self.bwrap)
        self.uid = self.creds.get("user", os.geteuid())

    def argv(self, variant: str, payload: list[str]) -> list[str]:
        if variant == "airlock":
            return [self.airlock, "run", "--", *payload]
        if variant == "airlock-nocg":
            return [self.airlock, "run", "--config", self.no_cgroup_config, "--", *payload]
        return [*self.bwrap_prefix, *payload]


# ---------------------------------------------------------------------------------------------
# Running


def run_once(setup: Setup, argv: list[str], output: str) -> tuple[float, subprocess.CompletedProcess]:
    """One run, timed; raises BenchError unless it exits 0."""
    sink = subprocess.PIPE if output == "pipe" else subprocess.DEVNULL
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink,
                          env=setup.env, cwd=setup.tmp, check=False, **setup.creds)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise BenchError(failure_text(argv, proc))
    return elapsed, proc


def failure_text(argv: list[str], proc: subprocess.CompletedProcess) -> str:
    text = f"run failed with exit status {proc.returncode}: {' '.join(argv)}"
    for name, data in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        if data:
            text += f"\n--- {name} ---\n" + data.decode(errors="replace").rstrip()
    return text


def probe(setup: Setup, variant: str, payload: list[str]) -> dict:
    """A checked run with captured output; for Airlock, the JSON result is validated."""
    argv = setup.argv(variant, payload)
    _, proc = run_once(setup, argv, "pipe")
    if not variant.startswith("airlock"):
        return {}
    try:
        result = json.loads(proc.stdout)
    except ValueError as e:
        raise BenchError(f"airlock printed no JSON result ({e}):\n{failure_text(argv, proc)}")
    if result.get("status") != "success" or result.get("exit_code") != 0:
        raise BenchError(f"airlock reported a failure:\n{failure_text(argv, proc)}")
    iso = result.get("isolation", {})
    cgroup = iso.get("cgroup")
    if variant == "airlock-nocg" and cgroup is not None:
        raise BenchError(f"the airlock-nocg variant still used cgroup {cgroup}:\n"
                         + failure_text(argv, proc))
    return iso


def percentile(sorted_xs: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    pos = (len(sorted_xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def summary(samples: list[float]) -> dict:
    ms = sorted(x * 1000.0 for x in samples)
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms),
        "p10_ms": percentile(ms, 0.10),
        "p90_ms": percentile(ms, 0.90),
        "mean_ms": statistics.fmean(ms),
        "min_ms": ms[0],
        "max_ms": ms[-1],
    }


def bench_workload(setup: Setup, args: argparse.Namespace, name: str, n: int) -> dict:
    payload = WORKLOADS[name]
    variants = args.variants
    isolation = {v: probe(setup, v, payload) for v in variants}
    argvs = {v: setup.argv(v, payload) for v in variants}
    for _ in range(args.warmup):
        for v in variants:
            run_once(setup, argvs[v], args.output)
    samples: dict[str, list[float]] = {v: [] for v in variants}
    for i in range(n):
        k = i % len(variants)
        for v in variants[k:] + variants[:k]:
            elapsed, _ = run_once(setup, argvs[v], args.output)
            samples[v].append(elapsed)
    stats = {v: summary(samples[v]) for v in variants}
    bwrap_median = stats["bwrap"]["median_ms"]
    ratios = {v: stats[v]["median_ms"] / bwrap_median for v in variants if v.startswith("airlock")}
    return {
        "workload": name,
        "payload": payload,
        "rounds": n,
        "commands": {v: argvs[v] for v in variants},
        "isolation": {v: iso for v, iso in isolation.items() if iso},
        "stats": stats,
        "ratio_to_bwrap_median": ratios,
        "samples_ms": {v: [round(x * 1000.0, 4) for x in samples[v]] for v in variants},
    }


# ---------------------------------------------------------------------------------------------
# Machine facts


def first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_total() -> str:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def cgroup_layout() -> str:
    try:
        with open("/proc/self/mountinfo") as f:
            kinds = {line.split(" - ", 1)[1].split()[0] for line in f if " - cgroup" in line}
    except OSError:
        return "unknown"
    if kinds == {"cgroup2"}:
        return "v2 (unified)"
    if "cgroup" in kinds and "cgroup2" in kinds:
        return "hybrid (v1 controllers + v2 mount)"
    return "v1" if "cgroup" in kinds else "none"


def machine(setup: Setup, args: argparse.Namespace) -> dict:
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "mem_total": mem_total(),
        "kernel": platform.release(),
        "kernel_version": platform.version(),
        "os": first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "cgroups": cgroup_layout(),
        "loadavg_start": os.getloadavg(),
        "python": platform.python_version(),
        "airlock_version": first_line([setup.airlock, "--version"]),
        "airlock_binary": os.path.abspath(args.airlock),
        "bwrap_version": first_line([setup.bwrap, "--version"]),
        "caller": args.user or pwd.getpwuid(os.geteuid()).pw_name,
        "caller_uid": setup.uid,
        "output": args.output,
        "warmup": args.warmup,
    }


# ---------------------------------------------------------------------------------------------
# Report


def print_table(report: dict) -> None:
    m = report["machine"]
    print(f"date (UTC):   {m['date_utc']}")
    print(f"machine:      {m['nproc']} CPUs ({m['cpus_usable']} usable), {m['cpu_model']}, {m['mem_total']}")
    print(f"kernel:       {m['kernel']} {m['kernel_version']}")
    print(f"os:           {m['os']}; cgroups {m['cgroups']}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in m['loadavg_start'])} (start), "
          f"{' '.join(f'{x:.2f}' for x in m['loadavg_end'])} (end)")
    print(f"tools:        {m['airlock_version']}; {m['bwrap_version']}; Python {m['python']}")
    print(f"caller:       {m['caller']} (uid {m['caller_uid']}); output to {m['output']}; "
          f"{m['warmup']} warm-up runs per variant")
    print()
    header = (f"{'workload':<10} {'variant':<13} {'n':>5} {'median':>9} {'p10':>9} {'p90':>9} "
              f"{'ratio':>7}  cgroup")
    print(header)
    print("-" * len(header))
    for w in report["workloads"]:
        for v, s in w["stats"].items():
            ratio = w["ratio_to_bwrap_median"].get(v)
            r = f"{ratio:7.2f}" if ratio is not None else f"{'':>7}"
            iso = w["isolation"].get(v)
            cg = "" if iso is None else (iso.get("cgroup") or "none")
            print(f"{w['workload']:<10} {v:<13} {s['n']:>5} {s['median_ms']:>7.2f}ms "
                  f"{s['p10_ms']:>7.2f}ms {s['p90_ms']:>7.2f}ms {r}  {cg}")
    print()
    print("ratio = airlock median / bwrap median (below 1.0: Airlock is faster)")
    for w in report["workloads"]:
        for v, iso in w["isolation"].items():
            print(f"{w['workload']}/{v} isolation: {json.dumps(iso, sort_keys=True)}")
    print()
    print("commands:")
    for w in report["workloads"]:
        for v, argv in w["commands"].items():
            print(f"  {w['workload']}/{v}: {' '.join(argv)}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="airlock-bench-") as tmp:
        try:
            setup = Setup(args, tmp)
            report = {"machine": machine(setup, args), "workloads": []}
            rounds = {"true": args.n_true, "python": args.n_python}
            for w in args.workloads:
                print(f"benchmarking {w}: {rounds[w]} rounds of {', '.join(args.variants)} ...",
                      file=sys.stderr, flush=True)
                report["workloads"].append(bench_workload(setup, args, w, rounds[w]))
            report["machine"]["loadavg_end"] = os.getloadavg()
        except BenchError as e:
            print(f"benchmark aborted: {e}", file=sys.stderr)
            return 1
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
