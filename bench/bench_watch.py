"""Watch-mode latency (issue 6): from an input file saved to the affected task started, with
`e3 watch` running (target: under 300 ms with the default 200 ms debounce).

    python bench/bench_watch.py              # 15 edits per case, debounce 200 (and 50, 0)
    python bench/bench_watch.py --quick      # 3 edits, debounce 200 only: seconds

Method: `e3 --json watch` runs in a subprocess on a project whose initial run is done. Each edit
is a save-by-rename (temp file + rename, as editors do) of one input to a value never used
before (so the task really runs), timed with `time.time()` right after the rename; the bench
then waits for the watch's JSON line and waits 0.3 s of quiet before the next edit.
"Task started" is read from what the task itself leaves:
  - shell (`naps`, tests/naps.py): the task's first act is writing `marks/<dataflow>.pid`;
    its mtime (the file system's clock granularity, ~4 ms here) is the start;
  - python (the `forecast` example, the `forecast` dataflow in the worker pool): its episode's
    `run` row in index.db history (written when the executor hands the task to the pool;
    the pool's workers start with each run, so add their start to reach the function itself).
Reported: median, p90 and max over the edits, per case. Latency is wall time on a shared
machine: the 1-minute load average is printed beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from e3logic import EXAMPLES_DIR  # noqa: E402
from tests.helpers import e3_env  # noqa: E402
from tests.naps import make_project  # noqa: E402


def e3(cwd, *args, env):
    p = subprocess.run([sys.executable, "-m", "e3logic", *map(str, args)], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, (args, p.stderr)
    return p.stdout


def save(path: Path, text: str) -> float:
    tmp = path.with_name("." + path.name + ".bench")
    tmp.write_text(text)
    os.replace(tmp, path)
    return time.time()


class Watch:
    def __init__(self, proj: Path, debounce: int, env):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "e3logic", "--json", "watch", "--debounce", str(debounce)],
            cwd=proj, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.q: "queue.Queue[str]" = queue.Queue()
        self.err: list[str] = []
        threading.Thread(target=lambda: [self.q.put(x) for x in self.proc.stdout],
                         daemon=True).start()
        threading.Thread(target=lambda: [self.err.append(x) for x in self.proc.stderr],
                         daemon=True).start()

    def run(self, timeout=120) -> dict:
        try:
            return json.loads(self.q.get(timeout=timeout))
        except queue.Empty:
            raise SystemExit(f"e3 watch gave no line in {timeout}s: {self.err[-5:]}") from None

    def armed(self):
        deadline = time.monotonic() + 60
        while not any("watching inputs/" in x for x in self.err):
            if time.monotonic() > deadline:
                raise SystemExit(f"e3 watch never armed: {self.err[-5:]}")
            time.sleep(0.01)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def shell_case(work: Path, debounce: int, edits: int, env) -> list[float]:
    proj = make_project(work / f"naps-{debounce}", work / f"naps-pkg-{debounce}")
    w = Watch(proj, debounce, env)
    out = []
    try:
        w.run()
        w.armed()
        marker = proj / "marks" / "side.pid"
        for i in range(edits):
            time.sleep(0.3)
            t = save(proj / "inputs" / "t" / "side", f"side 0.{i + 1:03d}\n")
            r = w.run()
            assert r["executed"] == ["side"], r
            out.append(marker.stat().st_mtime_ns / 1e9 - t)
    finally:
        w.close()
    return out


def python_case(work: Path, debounce: int, edits: int, env) -> list[float]:
    proj = work / f"forecast-{debounce}"
    proj.mkdir()
    e3(proj, "init", ".", env=env)
    e3(proj, "build", EXAMPLES_DIR / "forecast", "-o", "dist", env=env)
    e3(proj, "add", "dist/forecast-0.1.0.zip", env=env)
    e3(proj, "checkout", "forecast", env=env)
    w = Watch(proj, debounce, env)
    out = []
    try:
        w.run()
        w.armed()
        for i in range(edits):
            time.sleep(0.3)
            t = save(proj / "inputs" / "horizon", str(7 + i))  # a horizon never used before
            r = w.run()
            assert "forecast" in r["executed"], r
            db = sqlite3.connect(f"file:{proj / '.e3' / 'index.db'}?mode=ro", uri=True)
            (ts,) = db.execute("SELECT h.ts FROM history h JOIN episodes e ON e.episode = "
                               "h.episode WHERE e.run=? AND e.dataflow='forecast' AND "
                               "h.state='run' ORDER BY h.seq LIMIT 1", (r["run"],)).fetchone()
            db.close()
            out.append(ts - t)
    finally:
        w.close()
    return out


def summary(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"n": len(xs), "median_ms": round(1000 * statistics.median(xs), 1),
            "p90_ms": round(1000 * xs[min(len(xs) - 1, int(0.9 * len(xs)))], 1),
            "max_ms": round(1000 * xs[-1], 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--edits", type=int, default=15)
    ap.add_argument("--debounce", default="200,50,0", help="debounce values (ms) to measure")
    ap.add_argument("--quick", action="store_true", help="3 edits, debounce 200, shell only")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    edits = 3 if args.quick else args.edits
    debounces = [200] if args.quick else [int(x) for x in args.debounce.split(",")]
    env = e3_env()
    env.pop("E3_FSYNC", None)  # measured as users run it: fsync on
    rows = []
    with tempfile.TemporaryDirectory(prefix="e3-bench-watch-") as tmp:
        for d in debounces:
            cases = [("shell", shell_case)] + ([] if args.quick else [("python", python_case)])
            for kind, fn in cases:
                s = summary(fn(Path(tmp), d, edits, env))
                s.update(task=kind, debounce_ms=d, load1=round(os.getloadavg()[0], 2))
                rows.append(s)
                print(f"{kind:6} debounce {d:3} ms: median {s['median_ms']} ms, p90 "
                      f"{s['p90_ms']} ms, max {s['max_ms']} ms over {s['n']} edits "
                      f"(load {s['load1']})", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
