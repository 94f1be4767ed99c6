"""Per-task overhead of the runtimes (e3logic.exec.runtimes).

The issue-5 workloads, one task at a time through `Runtimes.run` with a spec shaped like the
executor's (`exec/dispatch.py`: a log file, `cwd`, five `E3_*` environment variables, no
budget), against the bare cost of the same work:

- python: `steps:md5` (md5 of two small raw inputs, returned as bytes) through the worker pool,
  against reading the inputs, hashing and writing the output file in-process (a function call);
- shell: `sh -c "cat {inputs} | md5sum > {output}"` through `Runtimes.run`, against
  `subprocess.run` of the same argv with the log file as stdout (fork + exec + wait); the
  "floor" row runs it the way make -jN does (one thread: posix_spawnp, wait for any);

each at concurrency 1 (one after another) and 2 (two in flight: a 2-worker pool / two
runners; the bare shell floor runs two threads of `subprocess.run`). Optional extra rows
(`--extra`): inline tasks, and a fresh `python -c` per task (what the pool saves).

Usage: python bench/bench_runtimes.py [--tasks N] [--repeat R] [--quick] [--json] [--extra]
       python bench/bench_runtimes.py --profile shell1|shell2|python1|python2 [--tasks N]
Figures are per task (total / N): wall clock (best and median of `--repeat` rounds), the
overhead (wall minus the bare row's at the same concurrency) and the ratios to the bare and
floor rows — each taken within a round, whose rows run back to back, then the median over the
rounds — and the CPU time the engine process itself spent (all its threads; robust to a busy
machine). No figure is asserted anywhere.
"""
from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio  # noqa: E402

from e3logic.exec.runtimes import InputRef, Runtimes, TaskSpec  # noqa: E402
from e3logic.exec.taskcode import write_atomic  # noqa: E402

MODULES = {"steps.py": b"import hashlib\n\n\ndef md5(*xs):\n    h = hashlib.md5()\n"
                       b"    for x in xs:\n        h.update(x)\n    return h.hexdigest().encode()\n",
           "same.py": b"def same(x):\n    return x\n"}
SHELL = ("sh", "-c", "cat {inputs} | md5sum > {output}")


def ms(seconds: float, n: int) -> float:
    return seconds / n * 1000.0


class Timer:
    """Wall time and this (engine) process's CPU time of a block."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w
        self.cpu = time.process_time() - self.c


class Work:
    """A scratch directory with two small inputs, and the specs the executor would build."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        os.chdir(tmp)  # the engine runs in the project it works on (`cwd` of the specs)
        for d in ("out", "logs", "cache"):
            (tmp / d).mkdir()
        self.inputs = []
        for i, data in enumerate((b"alpha,1\nbeta,2\n" * 4, b"gamma,3\n" * 8)):
            p = tmp / f"in{i}"
            p.write_bytes(data)
            self.inputs.append(InputRef(str(p), "raw", f"inputs/in{i}"))
        self.inputs = tuple(self.inputs)

    def spec(self, runtime: str, tag: str, i: int, entry: str = "steps:md5") -> TaskSpec:
        key = f"{tag}{i:05d}"
        env = {"E3_RUN_TOKEN": "bench-token", "E3_LEASES": "[]", "E3_DATAFLOW": f"outputs/{key}",
               "E3_EXECUTION": key, "E3_PROFILE": "ro"}
        common = dict(inputs=self.inputs, output=str(self.tmp / "out" / key),
                      log_path=str(self.tmp / "logs" / f"{key}.log"), env=env, cwd=str(self.tmp))
        if runtime == "shell":
            return TaskSpec("shell", argv=SHELL, **common)
        return TaskSpec(runtime, entry=entry, modules_hash="bench",
                        modules=lambda: {k: v for k, v in MODULES.items()}, **common)

    def specs(self, runtime: str, tag: str, n: int) -> list[TaskSpec]:
        """`n` specs; their (empty) log files exist, as the executor creates them."""
        out = [self.spec(runtime, tag, i) for i in range(n)]
        for s in out:
            open(s.log_path, "wb").close()
        return out


async def _drive(rt: Runtimes, specs: list[TaskSpec], concurrency: int) -> None:
    it = iter(specs)

    async def runner() -> None:
        for s in it:
            res = await rt.run(s)
            assert res.ok, res

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(runner)


async def bench_runtime(w: Work, runtime: str, n: int, concurrency: int, tag: str) -> Timer:
    async with Runtimes(concurrency, w.tmp / "cache") as rt:
        # warm up: spawn every worker and import the modules in each
        await _drive(rt, w.specs(runtime, tag + "w", 2 * concurrency), concurrency)
        specs = w.specs(runtime, tag, n)
        with Timer() as t:
            await _drive(rt, specs, concurrency)
        return t


def bare_python(w: Work, n: int) -> Timer:
    """The task's own work in-process: read the inputs, hash, write the output file."""
    with Timer() as t:
        for i in range(n):
            h = hashlib.md5()
            for ref in w.inputs:
                with open(ref.path, "rb") as f:
                    h.update(f.read())
            write_atomic(w.tmp / "out" / f"bp{i:05d}", h.hexdigest().encode())
    return t


def bare_shell(w: Work, n: int, concurrency: int) -> Timer:
    """`subprocess.run` of the same argv, log file as stdout; `concurrency` threads."""
    ins = " ".join(r.path for r in w.inputs)
    for i in range(n):
        open(w.tmp / "logs" / f"bs{i:05d}.log", "wb").close()
    counter = iter(range(n))
    lock = threading.Lock()

    def runner() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            with open(w.tmp / "logs" / f"bs{i:05d}.log", "ab") as log:
                subprocess.run(["sh", "-c", f"cat {ins} | md5sum > {w.tmp / 'out' / f'bs{i:05d}'}"],
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                               check=True)

    with Timer() as t:
        threads = [threading.Thread(target=runner) for _ in range(concurrency)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    return t


def floor_shell(w: Work, n: int, concurrency: int) -> Timer:
    """What make -jN does per recipe line, and the least a spawn can cost: one thread keeps
    `concurrency` commands in flight — `posix_spawnp` (vfork + exec), log file as stdout, then
    `wait` for whichever finishes first."""
    ins = " ".join(r.path for r in w.inputs)
    for i in range(n):
        open(w.tmp / "logs" / f"fl{i:05d}.log", "wb").close()

    def spawn(i: int) -> int:
        fd = os.open(w.tmp / "logs" / f"fl{i:05d}.log", os.O_WRONLY | os.O_APPEND)
        try:
            argv = ["sh", "-c", f"cat {ins} | md5sum > {w.tmp / 'out' / f'fl{i:05d}'}"]
            return os.posix_spawnp("sh", argv, os.environ, file_actions=[
                (os.POSIX_SPAWN_DUP2, fd, 1), (os.POSIX_SPAWN_DUP2, fd, 2)])
        finally:
            os.close(fd)

    with Timer() as t:
        running, i = set(), 0
        while i < n or running:
            while i < n and len(running) < concurrency:
                running.add(spawn(i))
                i += 1
            pid, status = os.wait()
            assert status == 0 and pid in running
            running.discard(pid)
    return t


def fresh_python(w: Work, n: int) -> Timer:
    code = ("import hashlib,sys; h=hashlib.md5(); [h.update(open(p,'rb').read()) for p in "
            "sys.argv[1:-1]]; open(sys.argv[-1],'w').write(h.hexdigest())")
    with Timer() as t:
        for i in range(n):
            subprocess.run([sys.executable, "-c", code, *(r.path for r in w.inputs),
                            str(w.tmp / "out" / f"f{i:05d}")], check=True)
    return t


def scratch(d: str | None = None) -> str:
    """Where the tasks' files go: bench/_work (on this machine file creation in /tmp was
    ~10x slower than in the checkout's file system; both sides of a comparison share it)."""
    d = d or str(Path(__file__).resolve().parent / "_work")
    os.makedirs(d, exist_ok=True)
    return d


WORKLOADS = {  # name → (kind, concurrency)
    "python1": ("python", 1), "python2": ("python", 2),
    "shell1": ("shell", 1), "shell2": ("shell", 2),
}


def profile(name: str, n: int) -> None:
    runtime, conc = WORKLOADS[name]
    with tempfile.TemporaryDirectory(prefix="rt-", dir=scratch()) as d:
        w = Work(Path(d))
        prof = cProfile.Profile()
        prof.enable()
        t = anyio.run(bench_runtime, w, runtime, n, conc, "p")
        prof.disable()
        os.chdir(scratch())
    print(f"# {name}: {ms(t.wall, n):.3f} ms/task wall, {ms(t.cpu, n):.3f} ms/task engine CPU "
          f"(under cProfile, warm-up included in the profile)")
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    pstats.Stats(prof).sort_stats("cumulative").print_stats(40)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smoke mode: few tasks, one round")
    ap.add_argument("--extra", action="store_true", help="also inline and fresh `python -c`")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--dir", help="scratch directory (default: bench/_work)")
    ap.add_argument("--profile", choices=sorted(WORKLOADS))
    args = ap.parse_args(argv)
    n, reps = (20, 1) if args.quick else (args.tasks, args.repeat)
    if args.profile:
        profile(args.profile, n)
        return 0

    rows: dict[str, list[tuple[float, float]]] = {}
    bare_of: dict[str, str] = {}
    floor_of: dict[str, str] = {}
    PY_BARE = "python bare: read inputs, md5, write output (in-process)"
    for _ in range(reps):
        with tempfile.TemporaryDirectory(prefix="rt-", dir=scratch(args.dir)) as d:
            w = Work(Path(d))

            def add(name, timer, count, bare=None, floor=None):
                rows.setdefault(name, []).append((ms(timer.wall, count), ms(timer.cpu, count)))
                if bare:
                    bare_of[name] = bare
                if floor:
                    floor_of[name] = floor

            add(PY_BARE, bare_python(w, n), n)
            for c in (1, 2):
                add(f"python via pool, concurrency {c}",
                    anyio.run(bench_runtime, w, "python", n, c, f"p{c}"), n, PY_BARE)
            for c in (1, 2):
                floor = f"shell floor (make-like): posix_spawn + wait, concurrency {c}"
                bare = f"shell bare: subprocess.run, concurrency {c}"
                add(floor, floor_shell(w, n, c), n)
                add(bare, bare_shell(w, n, c), n)
                add(f"shell via Runtimes, concurrency {c}",
                    anyio.run(bench_runtime, w, "shell", n, c, f"s{c}"), n, bare, floor)
            if args.extra:
                add("inline (engine process, thread)",
                    anyio.run(bench_runtime, w, "inline", n, 1, "i"), n, PY_BARE)
                fn = min(n, 50)
                add("python, fresh `python -c` per task", fresh_python(w, fn), fn, PY_BARE)
            os.chdir(scratch(args.dir))
    # differences and ratios are taken within each round (the rows of a round ran back to back,
    # under the same load), then the median over the rounds
    result = {}
    for name, v in rows.items():
        med = statistics.median(x for x, _ in v)
        r = {"wall_ms_best": round(min(x for x, _ in v), 3), "wall_ms_median": round(med, 3),
             "engine_cpu_ms_median": round(statistics.median(c for _, c in v), 3)}
        if name in bare_of:
            pairs = list(zip((x for x, _ in v), (x for x, _ in rows[bare_of[name]])))
            r["overhead_ms_median"] = round(statistics.median(a - b for a, b in pairs), 3)
            r["ratio_to_bare"] = round(statistics.median(a / b for a, b in pairs if b), 3)
        if name in floor_of:
            pairs = list(zip((x for x, _ in v), (x for x, _ in rows[floor_of[name]])))
            r["ratio_to_floor"] = round(statistics.median(a / b for a, b in pairs if b), 3)
        result[name] = r
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    if args.json:
        print(json.dumps({"tasks": n, "rounds": reps, "per_task": result,
                          "python": platform.python_version(), "executable": sys.executable,
                          "cpus": os.cpu_count(), "loadavg": load}, indent=1))
    else:
        print(f"# per task, ms; {n} tasks x {reps} rounds; python {platform.python_version()} "
              f"({sys.executable}), {os.cpu_count()} CPUs, load average "
              f"{' '.join(f'{x:.2f}' for x in load or ())} at the end")
        print(f"{'wall best':>10} {'wall med':>10} {'overhead':>9} {'x bare':>7} {'x floor':>8} "
              f"{'engine cpu':>11}  workload")
        for name, v in result.items():
            ov = f"{v['overhead_ms_median']:9.3f}" if "overhead_ms_median" in v else f"{'':9}"
            ra = f"{v['ratio_to_bare']:7.2f}" if v.get("ratio_to_bare") else f"{'':7}"
            rf = f"{v['ratio_to_floor']:8.2f}" if v.get("ratio_to_floor") else f"{'':8}"
            print(f"{v['wall_ms_best']:10.3f} {v['wall_ms_median']:10.3f} {ov} {ra} {rf} "
                  f"{v['engine_cpu_ms_median']:11.3f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
