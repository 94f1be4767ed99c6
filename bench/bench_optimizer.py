"""Optimizer benchmark (issue 17): would fusing a chain of python tasks into one worker call pay?

    python bench/bench_optimizer.py                    # N=40 chain, 5 interleaved rounds
    python bench/bench_optimizer.py --n 80 --runs 7 --src /path/to/e3logic/checkout
    python bench/bench_optimizer.py --quick            # seconds-long smoke (CI)

Fusion would run a chain of python dataflows as one episode, one worker call: it saves the
worker round trip of every link after the first (python tasks already run in persistent worker
processes, so no process start), never the per-dataflow bookkeeping — each member's output is
still a dataset with its memo entry, receipt row and episode. Workloads, cold `e3 --json go -j 1`
of a fresh copy of one project each time (start-up included):

  python   a chain of N python dataflows, `step(x) = x + 1` (N worker round trips)
  inline   the same chain as inline tasks, run in the engine's own process: no round trip at
           all, every per-dataflow cost kept — a lower bound for a fused python chain (which
           would still pay one round trip)
  one      one python dataflow doing the N steps in one call: one round trip and one output —
           what the whole per-dataflow cost is, for scale

(python - inline) / N bounds what fusion could save per link. The variants run interleaved
within each round; medians of --runs rounds. The output value is checked after every run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

STEPS = '''
def step(x):
    return x + 1


def steps(x):
    for _ in range(N):
        x = step(x)
    return x
'''

PKG = '''
from e3logic import sdk

package = sdk.package("{name}", "0.1.0")
package.module("steps.py")
package.dataset("inputs/x", value=0)
'''


def package_text(name: str, n: int) -> str:
    text = PKG.format(name=name)
    if name == "one":
        text += 'package.task("steps", "steps:steps", runtime="python")\n'
        text += 'package.dataflow("s", task="steps", inputs=["inputs/x"], output="o")\n'
        return text
    runtime = "python" if name == "python" else "inline"
    text += f'package.task("step", "steps:step", runtime="{runtime}")\n'
    prev = "inputs/x"
    for i in range(n):
        text += f'package.dataflow("s{i:03d}", task="step", inputs=["{prev}"], output="o")\n'
        prev = f"outputs/s{i:03d}/o"
    return text


def e3(args, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "e3logic", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def template(work: Path, name: str, n: int, env: dict) -> Path:
    src = work / f"{name}-pkg"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    (src / "steps.py").write_text(STEPS.replace("N", str(n)))
    (src / "e3pkg.py").write_text(package_text(name, n))
    proj = work / f"{name}-template"
    shutil.rmtree(proj, ignore_errors=True)
    proj.mkdir()
    for args in (("init", "."), ("build", str(src), "-o", "dist"),
                 ("add", f"dist/{name}-0.1.0.zip"), ("checkout", name)):
        r = e3(args, proj, env)
        if r.returncode:
            raise SystemExit(f"{name}: e3 {' '.join(args)} failed: {r.stderr}")
    return proj


def cold_run(tpl: Path, dest: Path, name: str, n: int, env: dict) -> float:
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(tpl, dest, symlinks=True)
    t0 = time.perf_counter()
    r = e3(("--json", "go", "-j", "1"), dest, env)
    took = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{name}: e3 go failed: {r.stderr}")
    last = "outputs/s/o" if name == "one" else f"outputs/s{n - 1:03d}/o"
    got = json.loads((dest / last).read_text())
    if got != n:
        raise SystemExit(f"{name}: output {got!r}, expected {n}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="chain length")
    ap.add_argument("--runs", type=int, default=5, help="interleaved rounds (median)")
    ap.add_argument("--src", default=str(ROOT), help="the e3logic source tree to run")
    ap.add_argument("--work", default=str(HERE / "_work" / "optimizer"))
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke: a short chain, one round")
    args = ap.parse_args()
    if args.quick:
        args.n, args.runs = 5, 1
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("E3_")}
    env["PYTHONPATH"] = args.src
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    names = ("python", "inline", "one")
    tpls = {name: template(work, name, args.n, env) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.runs):
        order = names if r % 2 == 0 else tuple(reversed(names))
        for name in order:
            times[name].append(cold_run(tpls[name], work / f"{name}-run", name, args.n, env))
    med = {name: statistics.median(v) for name, v in times.items()}
    out = {"n": args.n, "runs": args.runs, "load": os.getloadavg()[0],
           "median_s": med, "spread_s": {k: [min(v), max(v)] for k, v in times.items()},
           "per_link_ms_python_minus_inline": (med["python"] - med["inline"]) / args.n * 1e3,
           "per_dataflow_ms_python": (med["python"] - med["one"]) / max(1, args.n - 1) * 1e3}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
