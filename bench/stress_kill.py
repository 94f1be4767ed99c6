"""Stress: kill `e3 go` with SIGKILL at random moments; after each kill the repository must be
fsck-clean and the next `e3 go` must finish with exactly the right outputs (issue 6).

    python bench/stress_kill.py                 # 100 kills on the forecast example + 100 on naps
    python bench/stress_kill.py --quick         # 5 + 5, seconds
    python bench/stress_kill.py --trials 300 --seed 7 --projects forecast

Projects: `forecast` is the shipped example (python, inline and shell tasks; a cold run lasts
about as long as the engine's start-up, so kills land in start-up, intake, planning, the worker
pool's start, tasks and commits); `naps` is the sleep-padded variant (tests/naps.py: shell
tasks sleeping 0-0.3 s each, so most kills land mid-run, between and during commits).

Each trial: move the working copy's inputs to a random other state (forecast: one of 4 horizons
x 4 sales files; naps: one of 4 seeds x random durations), start `e3 go`, SIGKILL it after a
delay drawn uniformly from [0, W], where W starts at the duration of a cold run and adapts
(x0.93 when the run finished before its kill, x1.02 when not) so that about a fifth of the
runs finish and the kills spread over start-up, intake, planning, tasks and commits; then
require:
  1. `e3 fsck` ok;
  2. a following `e3 go` exits 0 with status ok;
  3. every output's hash (root, via `e3 ls outputs`) and working-copy file equal those of a
     reference run of the same inputs in a separate repository that was never killed;
  4. no task process of the killed run still alive (environment token, /proc);
  5. no run left `running` in index.db (the dead run was marked abandoned).
Where each kill landed is classified (the run not yet registered / running with k outputs
committed / already finished). Seeded; prints a summary and, with --json, one JSON document.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from e3logic import EXAMPLES_DIR  # noqa: E402
from e3logic.core.hashing import hash_file  # noqa: E402
from tests.naps import (NAMES as NAP_NAMES, kill_token_procs, make_project, new_token,  # noqa: E402
                        token_procs)
from tests.helpers import e3_env  # noqa: E402


def e3(cwd, *args, env=None, timeout=300):
    p = subprocess.run([sys.executable, "-m", "e3logic", *map(str, args)], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


# -- projects ----------------------------------------------------------------------------------
class Forecast:
    name = "forecast"

    def __init__(self):
        self.sales = (EXAMPLES_DIR / "forecast" / "data" / "sales.csv").read_text()

    def make(self, dest: Path, env) -> None:
        dest.mkdir(parents=True)
        for args in (("init", "."), ("build", EXAMPLES_DIR / "forecast", "-o", "dist"),
                     ("add", "dist/forecast-0.1.0.zip"), ("checkout", "forecast")):
            rc, out, err = e3(dest, *args, env=env)
            assert rc == 0, (args, err)

    def states(self, rnd):
        return [(h, k) for h in (3, 6, 9, 12) for k in range(4)]

    def write(self, proj: Path, state) -> None:
        h, k = state
        lines = self.sales.rstrip("\n").split("\n")
        month, region, value = lines[-1].split(",")
        lines[-1] = f"{month},{region},{float(value) + k:.1f}"
        _save(proj / "inputs" / "sales", ("\n".join(lines) + "\n").encode())
        _save(proj / "inputs" / "horizon", str(h).encode())


class Naps:
    name = "naps"

    def make(self, dest: Path, env) -> None:
        make_project(dest, dest.parent / "naps-pkg")

    def states(self, rnd):
        return [(f"seed-{s}", tuple(round(rnd.uniform(0, 0.3), 2) for _ in NAP_NAMES))
                for s in range(4) for _ in range(4)]

    def write(self, proj: Path, state) -> None:
        seed, secs = state
        _save(proj / "inputs" / "seed", json.dumps(seed).encode())
        for name, s in zip(NAP_NAMES, secs):
            _save(proj / "inputs" / "t" / name, f"{name} {s}\n".encode())


def _save(path: Path, data: bytes) -> None:
    if path.exists() and path.read_bytes() == data:
        return
    tmp = path.with_name("." + path.name + ".stress")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def outputs(proj: Path, env) -> dict:
    rc, out, err = e3(proj, "--json", "ls", "outputs", env=env)
    assert rc == 0, err
    return {e["path"]: e["hash"] for e in json.loads(out)}


def wc_outputs(proj: Path) -> dict:
    base = proj / "outputs"
    return {str(p.relative_to(proj)): hash_file(p) for p in sorted(base.rglob("*"))
            if p.is_file()}


def runs(proj: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(f"file:{proj / '.e3' / 'index.db'}?mode=ro", uri=True)
    try:
        return list(db.execute("SELECT run, status FROM runs ORDER BY seq"))
    finally:
        db.close()


# -- the stress ----------------------------------------------------------------------------------
def stress(kind, trials: int, rnd: random.Random, work: Path, env, verbose=False) -> dict:
    proj, ref = work / f"{kind.name}-killed", work / f"{kind.name}-ref"
    kind.make(proj, env)
    kind.make(ref, env)
    states = kind.states(rnd)
    # calibrate: a cold run of the first state, timed as a whole
    cur = states[0]
    kind.write(ref, cur)
    t0 = time.perf_counter()
    rc, out, err = e3(ref, "--json", "go", env=env)
    cold = time.perf_counter() - t0
    assert rc == 0, err
    reference = {cur: outputs(ref, env)}
    kind.write(proj, cur)
    rc, out, err = e3(proj, "--json", "go", env=env)
    assert rc == 0, err
    timings = [cold]
    window = cold
    failures, landed, delays = [], Counter(), []
    for i in range(trials):
        state = rnd.choice([s for s in states if s != cur])
        if state not in reference:
            kind.write(ref, state)
            t0 = time.perf_counter()
            rc, out, err = e3(ref, "--json", "go", env=env)
            timings.append(time.perf_counter() - t0)
            assert rc == 0, err
            reference[state] = outputs(ref, env)
        kind.write(proj, state)
        cur = state
        token = new_token()
        tenv = dict(env, E3TEST_TOKEN=token)
        before = runs(proj)
        delay = rnd.uniform(0, window)
        delays.append(delay)
        p = subprocess.Popen([sys.executable, "-m", "e3logic", "--json", "go"], cwd=proj,
                             env=tenv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        after = runs(proj)
        # feedback on the window: shrink it when the run beat the kill, grow it slowly when
        # not, so that about a fifth of the runs finish (kills spread over the whole run)
        window = max(0.1, window * 0.93) if p.returncode == 0 else window * 1.02
        if p.returncode == 0:
            where = "finished"
        elif len(after) == len(before):
            where = "before the run was registered"
        else:
            where = "mid-run"
        landed[where] += 1
        problems = []
        rc, out, err = e3(proj, "--json", "fsck", env=env)
        if rc != 0 or not json.loads(out or "{}").get("ok"):
            problems.append(f"fsck: {out.strip() or err.strip()}")
        rc, out, err = e3(proj, "--json", "go", env=tenv)
        if rc != 0 or json.loads(out or "{}").get("status") != "ok":
            problems.append(f"next go exit {rc}: {err.strip()[-300:]}")
        got = outputs(proj, env)
        if got != reference[state]:
            bad = sorted(k for k in set(got) | set(reference[state])
                         if got.get(k) != reference[state].get(k))
            problems.append(f"outputs differ: {bad}")
        wc = wc_outputs(proj)
        if wc != reference[state]:
            bad = sorted(k for k in set(wc) | set(reference[state])
                         if wc.get(k) != reference[state].get(k))
            problems.append("working-copy outputs differ from the reference: " + ", ".join(
                f"{k} ({'missing' if k not in wc else 'extra' if k not in reference[state] else 'stale bytes'})"
                for k in bad))
        left = token_procs(token)
        if left:
            problems.append(f"task processes left: {[c[:60] for _, c in left]}")
            kill_token_procs(token)
        running = [r for r, s in runs(proj) if s == "running"]
        if running:
            problems.append(f"runs still marked running: {running}")
        if problems:
            failures.append({"trial": i, "delay_s": round(delay, 3), "landed": where,
                             "problems": problems})
            if verbose:
                print(f"  trial {i}: FAILED {problems}", file=sys.stderr)
        elif verbose:
            print(f"  trial {i}: ok ({where}, {delay:.3f}s)", file=sys.stderr)
    return {"project": kind.name, "trials": trials, "failures": len(failures),
            "failed": failures, "landed": dict(landed), "cold_run_s": round(cold, 3),
            "kill_window_s": round(window, 3),
            "reference_run_s": round(statistics.median(timings), 3),
            "median_delay_s": round(statistics.median(delays), 3) if delays else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=100, help="kills per project (default 100)")
    ap.add_argument("--quick", action="store_true", help="5 kills per project")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--projects", default="forecast,naps")
    ap.add_argument("--no-fsync", action="store_true", help="E3_FSYNC=0 (faster; SIGKILL "
                    "does not lose the page cache, so the results hold either way)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    trials = 5 if args.quick else args.trials
    env = e3_env()
    if not args.no_fsync:
        env.pop("E3_FSYNC", None)
    kinds = {"forecast": Forecast, "naps": Naps}
    rnd = random.Random(args.seed)
    results = []
    with tempfile.TemporaryDirectory(prefix="e3-stress-kill-") as tmp:
        for name in args.projects.split(","):
            t0 = time.perf_counter()
            r = stress(kinds[name](), trials, rnd, Path(tmp), env, args.verbose)
            r["seconds"] = round(time.perf_counter() - t0, 1)
            results.append(r)
            print(f"{name}: {r['trials']} kills, {r['failures']} failures "
                  f"(cold run {r['cold_run_s']}s, kill window {r['kill_window_s']}s, "
                  f"landed {dict(sorted(r['landed'].items()))}; {r['seconds']}s)",
                  file=sys.stderr)
            for f in r["failed"][:10]:
                print(f"  trial {f['trial']} ({f['landed']}, {f['delay_s']}s): "
                      f"{'; '.join(f['problems'])}", file=sys.stderr)
    if args.json:
        print(json.dumps({"seed": args.seed, "results": results}, indent=2))
    return 1 if any(r["failures"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
