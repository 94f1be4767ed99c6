"""Cluster backend benchmark (issue 18): per-task overhead of `e3 go --executor dask` (a
LocalCluster of -j worker processes, started and closed by the run) against `--executor
processes`, on bench_go's 10-layer DAG workload (bench/peers/workload.py: `cat inputs |
md5sum` shell tasks, or the same md5 as a python task in the worker pool).

    python bench/bench_dask.py --quick            # seconds long: 10 tasks, shell, one run each
    python bench/bench_dask.py                     # 10 and 1,000 tasks, python and shell
    python bench/bench_dask.py --json              # the figures as JSON

Method: for each runtime and size, a fresh project per executor (e3 init, build, add,
checkout), then one cold `e3 --json go -j N --executor E`, timed as a whole around
`subprocess.run` (start-up, the cluster's start and close included), outputs checked against
md5s computed here. The dask runs get a fresh worker cache (`E3_WORKER_CACHE`), so every object
and module set travels. Per-task overhead = (dask − processes) at 1,000 tasks minus the same
difference at 10 tasks (what starting and closing a LocalCluster costs), over the 990 tasks
between: what each further task costs on the cluster. One run each (issue 18 asks for one):
the 1-minute load average is printed beside every figure; no figure is asserted anywhere.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from peers import gen  # noqa: E402
from peers import workload as W  # noqa: E402


def env(extra: dict | None = None) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith("E3_")}
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e.update(extra or {})
    return e


def e3(*args) -> list[str]:
    return [sys.executable, "-m", "e3logic", *args]


def project(work: Path, w: W.Workload, runtime: str, name: str) -> Path:
    pkg = work / f"pkg-{w.label}-{runtime}"
    if not pkg.exists():
        gen.e3(w, runtime, pkg)
        subprocess.run(e3("build", str(pkg), "-o", str(pkg / "dist")), env=env(), check=True,
                       stdout=subprocess.DEVNULL)
    d = work / name
    d.mkdir(parents=True)
    for args in (("init", "."), ("add", str(pkg / "dist" / "bench-1.0.0.zip")),
                 ("checkout", "bench")):
        subprocess.run(e3(*args), cwd=d, env=env(), check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL)
    return d


def run(work: Path, w: W.Workload, runtime: str, executor: str, jobs: int) -> dict:
    d = project(work, w, runtime, f"{w.label}-{runtime}-{executor}")
    extra = {"E3_WORKER_CACHE": str(work / f"cache-{d.name}")}
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    r = subprocess.run(e3("--json", "go", "-j", str(jobs), "--executor", executor), cwd=d,
                       env=env(extra), capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"e3 go --executor {executor} failed ({r.returncode}): {r.stderr[-2000:]}")
    res = json.loads(r.stdout)
    assert len(res["executed"]) == w.n, res["status"]
    for t, data in w.expected().items():
        got = (d / gen.e3_output_path(t)).read_bytes()
        assert got == data, (t, got, data)
    return {"wall": wall, "load": load, "commit": res["commit"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="seconds long: 10 shell tasks")
    ap.add_argument("--sizes", default="10,1000", help="task counts (default 10,1000)")
    ap.add_argument("--runtimes", default="python,shell")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    sizes = [10] if args.quick else [int(s) for s in args.sizes.split(",")]
    runtimes = ["shell"] if args.quick else args.runtimes.split(",")
    work = Path(tempfile.mkdtemp(prefix="e3-bench-dask-"))
    rows = []
    try:
        for runtime in runtimes:
            for n in sizes:
                w = W.make("dag", n)
                cells = {ex: run(work, w, runtime, ex, args.jobs)
                         for ex in ("processes", "dask")}
                assert cells["processes"]["commit"] == cells["dask"]["commit"]
                rows.append({"runtime": runtime, "tasks": n, "jobs": args.jobs,
                             **{f"{ex}_s": round(c["wall"], 3) for ex, c in cells.items()},
                             **{f"{ex}_load": round(c["load"], 2) for ex, c in cells.items()}})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    per_task = {}
    for runtime in runtimes:
        by = {r["tasks"]: r for r in rows if r["runtime"] == runtime}
        if len(by) >= 2:
            lo, hi = min(by), max(by)
            d_hi = by[hi]["dask_s"] - by[hi]["processes_s"]
            d_lo = by[lo]["dask_s"] - by[lo]["processes_s"]
            per_task[runtime] = {"per_task_ms": round((d_hi - d_lo) / (hi - lo) * 1000, 2),
                                 "fixed_s": round(d_lo, 2),
                                 "ratio": round(by[hi]["dask_s"] / by[hi]["processes_s"], 2)}
    report = {"rows": rows, "per_task": per_task, "cpus": os.cpu_count(),
              "python": sys.version.split()[0]}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"| runtime | tasks | -j | processes (s) | dask LocalCluster (s) | load |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['runtime']} | {r['tasks']:,} | {r['jobs']} | {r['processes_s']:.2f} | "
              f"{r['dask_s']:.2f} | {r['processes_load']:.1f} / {r['dask_load']:.1f} |")
    for runtime, p in per_task.items():
        print(f"{runtime}: dask costs {p['per_task_ms']} ms more per task than processes, plus "
              f"{p['fixed_s']} s per run (the LocalCluster's start and close); {p['ratio']}x "
              f"the processes run at the largest size")
    return 0


if __name__ == "__main__":
    sys.exit(main())
