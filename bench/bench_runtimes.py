"""Per-task overhead of the runtimes (e3logic.exec.runtimes).

Measures, for a trivial task (read one small JSON input, write it back):
- python through the worker pool (sequential, and N tasks over W workers),
- the same through a fresh `python -c` per task (what the pool saves),
- inline (in the engine's process, in a thread),
- a trivial shell task (`sh -c "cat {inputs} > {output}"`) through `Runtimes.run`, against the
  same command started directly with `subprocess.run` (the floor: fork + exec + wait).

Usage: python bench/bench_runtimes.py [--tasks N] [--workers W] [--quick] [--json]
Figures are per task: wall clock (best and median of `--repeat` rounds) and the CPU time the
engine process itself spent (robust to a busy machine); no figures are asserted anywhere.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio  # noqa: E402

from e3logic.exec.runtimes import InputRef, Runtimes, TaskSpec  # noqa: E402

MODULES = {"steps.py": b"def same(x):\n    return x\n"}


def per_task(seconds: float, n: int) -> float:
    return seconds / n * 1000.0  # ms


class Timer:
    """Wall time and this (engine) process's CPU time of a block."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w
        self.cpu = time.process_time() - self.c


async def bench_pool(tmp: Path, n: int, workers: int, concurrent: bool) -> float:
    inp = InputRef(str(tmp / "in.json"), "json", "inputs/x")
    async with Runtimes(workers, tmp / "cache") as rt:
        warm = [rt.run(TaskSpec("python", entry="steps:same", modules_hash="bench",
                                modules=lambda: MODULES, inputs=(inp,),
                                output=str(tmp / "out" / f"warm{i}"))) for i in range(workers)]
        async with anyio.create_task_group() as tg:  # spawn and import in every worker first
            for coro in warm:
                tg.start_soon(lambda c=coro: c)
        specs = [TaskSpec("python", entry="steps:same", modules_hash="bench",
                          modules=lambda: MODULES, inputs=(inp,),
                          output=str(tmp / "out" / f"p{i}"), log_path=str(tmp / "logs" / f"p{i}"))
                 for i in range(n)]
        with Timer() as t:
            if concurrent:
                async with anyio.create_task_group() as tg:
                    for s in specs:
                        tg.start_soon(rt.run, s)
            else:
                for s in specs:
                    res = await rt.run(s)
                    assert res.ok, res
        return t


async def bench_inline(tmp: Path, n: int) -> float:
    inp = InputRef(str(tmp / "in.json"), "json", "inputs/x")
    async with Runtimes(1, tmp / "cache") as rt:
        await rt.run(TaskSpec("inline", entry="steps:same", modules_hash="bench",
                              modules=lambda: MODULES, inputs=(inp,), output=str(tmp / "o")))
        with Timer() as t:
          for i in range(n):
            res = await rt.run(TaskSpec("inline", entry="steps:same", modules_hash="bench",
                                        modules=lambda: MODULES, inputs=(inp,),
                                        output=str(tmp / "out" / f"i{i}"),
                                        log_path=str(tmp / "logs" / f"i{i}")))
            assert res.ok, res
        return t


def bench_fresh_python(tmp: Path, n: int) -> float:
    code = ("import json,sys; v=json.load(open(sys.argv[1])); "
            "open(sys.argv[2],'w').write(json.dumps(v, sort_keys=True, separators=(',',':')))")
    with Timer() as t:
        for i in range(n):
            subprocess.run([sys.executable, "-c", code, str(tmp / "in.json"),
                            str(tmp / "out" / f"f{i}")], check=True)
    return t


async def bench_shell(tmp: Path, n: int) -> float:
    inp = InputRef(str(tmp / "in.json"), "raw", "inputs/x")
    async with Runtimes(1, tmp / "cache") as rt:
        with Timer() as t:
          for i in range(n):
            res = await rt.run(TaskSpec("shell", argv=("sh", "-c", "cat {inputs} > {output}"),
                                        inputs=(inp,), output=str(tmp / "out" / f"s{i}"),
                                        log_path=str(tmp / "logs" / f"s{i}")))
            assert res.ok, res
        return t


def bench_shell_direct(tmp: Path, n: int) -> float:
    with Timer() as t:
        for i in range(n):
            with open(tmp / "logs" / f"d{i}", "ab") as log:
                subprocess.run(["sh", "-c", f"cat {tmp / 'in.json'} > {tmp / 'out' / f'd{i}'}"],
                               stdout=log, stderr=subprocess.STDOUT, check=True)
    return t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=500)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smoke mode: few tasks, one round")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    n, reps = (20, 1) if args.quick else (args.tasks, args.repeat)
    fresh_n = min(n, 100)

    rows: dict[str, list] = {}
    for _ in range(reps):
        with tempfile.TemporaryDirectory(prefix="e3-bench-rt-") as d:
            tmp = Path(d)
            (tmp / "out").mkdir()
            (tmp / "logs").mkdir()
            (tmp / "in.json").write_text(json.dumps({"a": 1, "b": [1, 2, 3]}))

            def add(name, timer, count):
                rows.setdefault(name, []).append((per_task(timer.wall, count),
                                                  per_task(timer.cpu, count)))

            add("python via pool, sequential (1 worker)", anyio.run(bench_pool, tmp, n, 1, False), n)
            add(f"python via pool, {n} tasks over {args.workers} workers",
                anyio.run(bench_pool, tmp, n, args.workers, True), n)
            add("python, fresh `python -c` per task", bench_fresh_python(tmp, fresh_n), fresh_n)
            add("inline (engine process, thread)", anyio.run(bench_inline, tmp, n), n)
            add("shell via Runtimes (`sh -c cat`)", anyio.run(bench_shell, tmp, n), n)
            add("shell, direct subprocess.run (floor)", bench_shell_direct(tmp, n), n)
    result = {name: {"wall_ms_best": round(min(w for w, _ in v), 3),
                     "wall_ms_median": round(statistics.median(w for w, _ in v), 3),
                     "engine_cpu_ms_median": round(statistics.median(c for _, c in v), 3)}
              for name, v in rows.items()}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if args.json:
        print(json.dumps({"tasks": n, "workers": args.workers, "per_task": result,
                          "python": platform.python_version(), "cpus": os.cpu_count(),
                          "loadavg_1m": load}, indent=1))
    else:
        print(f"# per task, ms; {n} tasks x {reps} rounds; python {platform.python_version()}, "
              f"{os.cpu_count()} CPUs, load average {load:.2f} at the end")
        print(f"{'wall best':>10} {'wall med':>10} {'engine cpu':>11}  workload")
        for name, v in result.items():
            print(f"{v['wall_ms_best']:10.3f} {v['wall_ms_median']:10.3f} "
                  f"{v['engine_cpu_ms_median']:11.3f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
