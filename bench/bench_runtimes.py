"""Per-task overhead of the runtimes (e3logic.exec.runtimes).

Measures, for a trivial task (read one small JSON input, write it back):
- python through the worker pool (sequential, and N tasks over W workers),
- the same through a fresh `python -c` per task (what the pool saves),
- inline (in the engine's process, in a thread),
- a trivial shell task (`sh -c "cat {inputs} > {output}"`) through `Runtimes.run`, against the
  same command started directly with `subprocess.run` (the floor: fork + exec + wait).

Usage: python bench/bench_runtimes.py [--tasks N] [--workers W] [--quick] [--json]
Figures are wall-clock per task (median of `--repeat` rounds); no figures are asserted anywhere.
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
        t = time.perf_counter()
        if concurrent:
            async with anyio.create_task_group() as tg:
                for s in specs:
                    tg.start_soon(rt.run, s)
        else:
            for s in specs:
                res = await rt.run(s)
                assert res.ok, res
        return time.perf_counter() - t


async def bench_inline(tmp: Path, n: int) -> float:
    inp = InputRef(str(tmp / "in.json"), "json", "inputs/x")
    async with Runtimes(1, tmp / "cache") as rt:
        await rt.run(TaskSpec("inline", entry="steps:same", modules_hash="bench",
                              modules=lambda: MODULES, inputs=(inp,), output=str(tmp / "o")))
        t = time.perf_counter()
        for i in range(n):
            res = await rt.run(TaskSpec("inline", entry="steps:same", modules_hash="bench",
                                        modules=lambda: MODULES, inputs=(inp,),
                                        output=str(tmp / "out" / f"i{i}"),
                                        log_path=str(tmp / "logs" / f"i{i}")))
            assert res.ok, res
        return time.perf_counter() - t


def bench_fresh_python(tmp: Path, n: int) -> float:
    code = ("import json,sys; v=json.load(open(sys.argv[1])); "
            "open(sys.argv[2],'w').write(json.dumps(v, sort_keys=True, separators=(',',':')))")
    t = time.perf_counter()
    for i in range(n):
        subprocess.run([sys.executable, "-c", code, str(tmp / "in.json"),
                        str(tmp / "out" / f"f{i}")], check=True)
    return time.perf_counter() - t


async def bench_shell(tmp: Path, n: int) -> float:
    inp = InputRef(str(tmp / "in.json"), "raw", "inputs/x")
    async with Runtimes(1, tmp / "cache") as rt:
        t = time.perf_counter()
        for i in range(n):
            res = await rt.run(TaskSpec("shell", argv=("sh", "-c", "cat {inputs} > {output}"),
                                        inputs=(inp,), output=str(tmp / "out" / f"s{i}"),
                                        log_path=str(tmp / "logs" / f"s{i}")))
            assert res.ok, res
        return time.perf_counter() - t


def bench_shell_direct(tmp: Path, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        with open(tmp / "logs" / f"d{i}", "ab") as log:
            subprocess.run(["sh", "-c", f"cat {tmp / 'in.json'} > {tmp / 'out' / f'd{i}'}"],
                           stdout=log, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - t


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

    rows: dict[str, list[float]] = {}
    for _ in range(reps):
        with tempfile.TemporaryDirectory(prefix="e3-bench-rt-") as d:
            tmp = Path(d)
            (tmp / "out").mkdir()
            (tmp / "logs").mkdir()
            (tmp / "in.json").write_text(json.dumps({"a": 1, "b": [1, 2, 3]}))
            m = rows.setdefault
            m("python via pool, sequential (1 worker)", []).append(
                per_task(anyio.run(bench_pool, tmp, n, 1, False), n))
            m(f"python via pool, {n} tasks over {args.workers} workers", []).append(
                per_task(anyio.run(bench_pool, tmp, n, args.workers, True), n))
            m("python, fresh `python -c` per task", []).append(
                per_task(bench_fresh_python(tmp, fresh_n), fresh_n))
            m("inline (engine process, thread)", []).append(per_task(anyio.run(bench_inline, tmp, n), n))
            m("shell via Runtimes (`sh -c cat`)", []).append(per_task(anyio.run(bench_shell, tmp, n), n))
            m("shell, direct subprocess.run (floor)", []).append(
                per_task(bench_shell_direct(tmp, n), n))
    result = {name: round(statistics.median(v), 3) for name, v in rows.items()}
    if args.json:
        print(json.dumps({"tasks": n, "workers": args.workers, "ms_per_task": result,
                          "python": platform.python_version(), "cpus": os.cpu_count()}, indent=1))
    else:
        print(f"# per-task wall time, ms (median of {reps}); {n} tasks; "
              f"python {platform.python_version()}, {os.cpu_count()} CPUs")
        for name, v in result.items():
            print(f"{v:9.3f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
