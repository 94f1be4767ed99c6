"""The shared cache (issue 19): push and pull of N results (1,000 by default) to a directory
remote and to a local S3-compatible server (moto in server mode, a process of its own: requests
go over HTTP on the loopback).

    python bench/bench_share.py              # 1,000 results, 3 runs per step
    python bench/bench_share.py --quick      # 50 results, 1 run: seconds
    python bench/bench_share.py -n 2000 --runs 5

Method: a package of N inline dataflows (one task applied to N inputs: N distinct execution
keys, N output objects), built and run once in a template project (clone A). Per run and
remote kind, with the real `e3` command (its start-up included, ~0.3 s):
  - push:      `e3 push` from a copy of A to an empty remote (N objects, then N records);
  - push again: the same, nothing new (two listings);
  - pull:      `e3 pull` into a fresh clone B that trusts A's key (a listing, N records
               fetched and verified, N objects fetched and verified, one transaction);
  - go --remote: `e3 go --remote` in another fresh clone: the lookup during the decision,
               dataflow by dataflow (N records and objects), then the run commits N hits.
Reported: median [min–max] seconds and results per second of the median, with the 1-minute
load average. Wall time on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import e3_env  # noqa: E402
from tests.s3server import S3Server  # noqa: E402


def e3(cwd, *args, env) -> dict | None:
    p = subprocess.run([sys.executable, "-m", "e3logic", *map(str, args)], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, (args, p.stdout[-500:], p.stderr[-2000:])
    return json.loads(p.stdout) if "--json" in args and p.stdout.strip() else None


def timed(cwd, *args, env) -> tuple[float, dict | None]:
    t0 = time.perf_counter()
    out = e3(cwd, *args, env=env)
    return time.perf_counter() - t0, out


def package(d: Path, n: int) -> Path:
    d.mkdir(parents=True)
    (d / "steps.py").write_text("def double(x):\n    return x * 2\n")
    (d / "e3pkg.py").write_text(
        "from e3logic import sdk\n"
        "package = sdk.package('many', '0.1.0')\n"
        "package.module('steps.py')\n"
        "package.task('double', 'steps:double', runtime='inline')\n"
        f"for i in range({n}):\n"
        "    package.dataset(f'inputs/x{i}', value=i)\n"
        "    package.dataflow(f'd{i}', task='double', inputs=[f'inputs/x{i}'], output='o')\n")
    return d


def stats(xs: list[float], n: int) -> str:
    m = statistics.median(xs)
    return f"{m:.2f} [{min(xs):.2f}–{max(xs):.2f}] | {n / m:,.0f}/s"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=1000, help="results (dataflows)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="50 results, 1 run")
    ap.add_argument("--kinds", default="dir,s3", help="dir, s3 or both")
    a = ap.parse_args(argv)
    n, runs = (50, 1) if a.quick else (a.n, a.runs)
    kinds = a.kinds.split(",")
    base = Path(tempfile.mkdtemp(prefix="e3-bench-share-"))
    try:
        alice, bob = {"XDG_CONFIG_HOME": str(base / "alice")}, {"XDG_CONFIG_HOME": str(base / "bob")}
        pk = e3(base, "--json", "keygen", env=e3_env(alice))["public_key"]
        e3(base, "--json", "keygen", env=e3_env(bob))
        tpl = base / "template"
        pkg = package(base / "pkg", n)
        e3(base, "init", tpl, env=e3_env(alice))
        e3(tpl, "build", pkg, "-o", "dist", env=e3_env(alice))
        e3(tpl, "add", "dist/many-0.1.0.zip", env=e3_env(alice))
        e3(tpl, "checkout", "many", env=e3_env(alice))
        fresh = base / "fresh"
        shutil.copytree(tpl, fresh, symlinks=True)  # nothing run: what B starts from
        e3(fresh, "trust", "add", "alice", pk, env=e3_env(bob))
        t0 = time.perf_counter()
        e3(tpl, "--json", "go", "--executor", "inline", env=e3_env(alice))
        cold = time.perf_counter() - t0
        results: dict[tuple, list[float]] = {}
        server = S3Server().__enter__() if "s3" in kinds else None
        try:
            for run in range(runs):
                for kind in kinds:
                    if kind == "s3":
                        bucket = server.bucket(f"bench-{run}")
                        add = ("remote", "add", "r", f"s3://{bucket}/e3", "--endpoint-url",
                               server.endpoint)
                        extra = server.env
                    else:
                        add = ("remote", "add", "r", base / f"remote-{run}")
                        extra = {}
                    ea, eb = e3_env({**alice, **extra}), e3_env({**bob, **extra})
                    a_dir = base / f"a-{kind}-{run}"
                    shutil.copytree(tpl, a_dir, symlinks=True)
                    e3(a_dir, *add, env=ea)
                    s, out = timed(a_dir, "--json", "push", env=ea)
                    assert out["records"] == n, out
                    results.setdefault((kind, "push"), []).append(s)
                    s, out = timed(a_dir, "--json", "push", env=ea)
                    assert out["records"] == 0, out
                    results.setdefault((kind, "push again"), []).append(s)
                    for step in ("pull", "go --remote"):
                        b_dir = base / f"b-{kind}-{run}-{step.split()[0]}"
                        shutil.copytree(fresh, b_dir, symlinks=True)
                        e3(b_dir, *add, env=eb)
                        if step == "pull":
                            s, out = timed(b_dir, "--json", "pull", env=eb)
                            assert out["records"] == n and not out["refused"], out
                        else:
                            s, out = timed(b_dir, "--json", "go", "--executor", "inline",
                                           "--remote", "r", env=eb)
                            assert len(out["pulled"]) == n and not out["executed"], out
                        results.setdefault((kind, step), []).append(s)
                        shutil.rmtree(b_dir)
                    shutil.rmtree(a_dir)
        finally:
            if server is not None:
                server.stop()
        load = os.getloadavg()[0]
        print(f"shared cache: {n} results, {runs} run(s) per step; cold run of the template "
              f"{cold:.2f} s; load {load:.1f}")
        print("| remote | step | seconds, median [min–max] | results/s |")
        print("|---|---|---:|---:|")
        for (kind, step), xs in results.items():
            label = {"dir": "directory", "s3": "S3 (moto)"}[kind]
            print(f"| {label} | {step} | {stats(xs, n)} |")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
