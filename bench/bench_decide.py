"""The rerun policy's cost (issue 17): `python bench/bench_decide.py [--quick] [--runs N]`.

1. `decide` — the rules over observed facts (graph restricted to the selection, misses), then
   one reason per dirty dataflow — on a synthetic DAG (each dataflow reads one of 50 inputs
   and up to two of the 50 dataflows before it) at 1,000 and 10,000 dataflows, with no miss,
   1 % misses and one miss; in-process, median of --runs.
2. The checked-program cache (`.e3/cache/rules-*.pickle`): the whole `e3 status` command on a
   project with one edited input, with the cache in place (A) and removed before each run (B),
   interleaved A, B, A, B… so drifting load hits both alike; medians and min–max spreads.
   The cache stays only if B − A is beyond the spread.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from e3logic.dataflow.decide import Policy, Prediction, decide  # noqa: E402


def synthetic(n: int, seed: int = 1):
    rnd = random.Random(seed)
    dfs, deps = {}, {}
    for i in range(n):
        ups = sorted({rnd.randrange(max(0, i - 50), i) for _ in range(2)}) if i > 50 else []
        dfs[f"d{i}"] = {"task": "t", "inputs": [f"inputs/i{i % 50}",
                                                *(f"outputs/d{u}/o" for u in ups)]}
        deps[f"d{i}"] = [f"d{u}" for u in ups]
    return SimpleNamespace(dataflows=dfs, deps=deps, outputs={d: f"outputs/{d}/o" for d in dfs})


def time_decide(n: int, runs: int, cache: Path) -> dict:
    project = synthetic(n)
    sel = list(project.dataflows)
    policy = Policy(cache_dir=cache)
    rnd = random.Random(2)
    out = {}
    for label, miss in (("none", set()), ("1%", set(rnd.sample(sel, max(1, n // 100)))),
                        ("one", {"d60"})):
        times, ran = [], 0
        for _ in range(runs):
            pred = Prediction(sel, sorted(miss), [d for d in sel if d not in miss],
                              outputs={d: "h" for d in sel if d not in miss}, miss=set(miss))
            t = time.perf_counter()
            decide(policy, project, sel, pred, False)
            times.append(time.perf_counter() - t)
            ran = len(pred.run)
        out[label] = (statistics.median(times), min(times), max(times), ran)
    return out


def e3(*args, cwd) -> float:
    env = dict(os.environ, E3_FSYNC="0")
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "e3logic", *args], cwd=cwd, env=env,
                       capture_output=True, text=True)
    took = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"e3 {' '.join(args)} failed: {r.stderr.strip()}")
    return took


def cache_ab(runs: int, work: Path) -> dict:
    from tests.flows import make_project, write_flows

    src = work / "src"
    write_flows(src)
    proj = make_project(work / "p", src, "flows")
    e3("go", "-j", "2", cwd=proj)
    (proj / "inputs/k").write_text("9")
    e3("status", cwd=proj)  # the cache exists from here on
    cache = proj / ".e3" / "cache"
    a, b = [], []
    for _ in range(runs):
        a.append(e3("status", cwd=proj))
        for f in cache.glob("rules-*.pickle"):
            f.unlink()
        b.append(e3("status", cwd=proj))
    return {"with cache": a, "without": b}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    runs = 2 if args.quick else args.runs
    sizes = [1000] if args.quick else [1000, 10_000]
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"decide (median / min–max seconds, dataflows that run), load {load:.2f}")
        for n in sizes:
            for label, (med, lo, hi, ran) in time_decide(n, runs, tmp / "cache").items():
                print(f"  {n:>6} {label:>5}: {med:.3f} ({lo:.3f}–{hi:.3f}), {ran} run")
        if args.quick:
            return
        ab = cache_ab(runs, tmp)
        print(f"e3 status, one input edited ({runs} interleaved pairs), load "
              f"{os.getloadavg()[0]:.2f}")
        for label, ts in ab.items():
            print(f"  {label:>10}: {statistics.median(ts):.3f} ({min(ts):.3f}–{max(ts):.3f})")


if __name__ == "__main__":
    main()
