"""How bench/bench_go.py drives each tool: prepare a pristine directory once (not timed), reset
to it for every cold run, the command to time, and how many tasks a run actually executed.

Every tool runs in a directory of its own under the work directory; the command is timed as a
whole (interpreter / process start-up included) with stdin closed and output captured to files.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import gen
from .workload import Workload

REPO = Path(__file__).resolve().parents[2]


class Skip(Exception):
    """This tool cannot run this workload (not installed, or not offered at this size)."""


def _outputs_mtimes(d: Path, sub: str = "out") -> dict[str, int]:
    out = {}
    base = d / sub
    for e in os.scandir(base):
        if e.name.startswith("t") and e.is_file():
            out[e.name] = e.stat().st_mtime_ns
    return out


class Tool:
    name = "?"
    runtimes = ("shell", "python")
    max_n = None              # largest workload offered (None: all)
    parallel = True           # honours -j

    def __init__(self, work: Path, env: dict):
        self.work = work
        self.env = env

    # -- per workload ----------------------------------------------------------------------
    def available(self) -> str | None:
        """None when usable, else why not."""
        return None

    def check(self, w: Workload, runtime: str, max_n: dict) -> None:
        if runtime not in self.runtimes:
            raise Skip(f"{self.name}: no {runtime} tasks")
        cap = max_n.get(f"{self.name}:{runtime}", max_n.get(self.name, self.max_n))
        if cap is not None and w.n > cap:
            raise Skip(f"{self.name}: only up to {cap} tasks")
        why = self.available()
        if why:
            raise Skip(why)

    def prepare(self, w: Workload, runtime: str) -> None:
        self.w = w
        self.runtime = runtime
        self.pristine = self.work / f"{self.name}-{w.label}-{runtime}.pristine"
        self.dir = self.work / f"{self.name}-{w.label}-{runtime}"
        for d in (self.pristine, self.dir):  # left by an earlier benchmark (--keep)
            self._aside(d)
        self.generate(self.pristine)

    def generate(self, d: Path) -> None:
        gen.GENERATORS[self.name](self.w, self.runtime, d)

    def reset(self) -> None:
        """Back to the state before the first run (cold). The previous copy is moved aside,
        not deleted: on ext4 without a journal (this machine's disk) every new file's inode
        is searched for past the inodes freed in the last minutes, so deleting thousands of
        files right before a timed run slowed that run's file creation several-fold — more
        for whichever tool creates more files. The copies go with the work directory."""
        self._aside(self.dir)
        shutil.copytree(self.pristine, self.dir, symlinks=True)

    def _aside(self, d: Path) -> None:
        if d.exists():
            trash = self.work / "old-copies"
            trash.mkdir(parents=True, exist_ok=True)
            n = len(list(trash.iterdir()))
            while (trash / f"{d.name}-{n}").exists():  # left by an interrupted benchmark
                n += 1
            os.rename(d, trash / f"{d.name}-{n}")

    def retire(self) -> None:
        """Done with this workload: its directories are moved aside (deleted with the whole
        work directory at the end of the benchmark, after every timed run)."""
        self._aside(self.pristine)
        self._aside(self.dir)

    # -- a run -----------------------------------------------------------------------------
    def command(self, jobs: int) -> list[str]:
        raise NotImplementedError

    def leaf_file(self, leaf: str) -> Path:
        return self.dir / "in" / leaf

    def output_file(self, task: str) -> Path:
        return self.dir / "out" / task

    def _snapshot(self):
        return _outputs_mtimes(self.dir) if (self.dir / "out").is_dir() else {}

    def _executed(self, before) -> int:
        after = self._snapshot()
        return sum(1 for k, v in after.items() if before.get(k) != v)


class E3(Tool):
    name = "e3"

    def __init__(self, work, env, python=sys.executable, fsync=True, src: Path = REPO):
        # src: the directory holding the e3logic package to measure (a snapshot of a commit)
        super().__init__(work, {**env, "PYTHONPATH": str(src) + os.pathsep + env.get("PYTHONPATH", ""),
                                "E3_FSYNC": "1" if fsync else "0"})
        self.python = python

    def e3(self, *args) -> list[str]:
        return [self.python, "-m", "e3logic", *args]

    def generate(self, d: Path) -> None:
        pkg = self.work / f"e3pkg-{self.w.label}-{self.runtime}"
        shutil.rmtree(pkg, ignore_errors=True)
        gen.e3(self.w, self.runtime, pkg)
        d.mkdir(parents=True)
        for args in (("init", "."), ("build", str(pkg), "-o", str(pkg / "dist")),
                     ("add", str(pkg / "dist" / "bench-1.0.0.zip")), ("checkout", "bench")):
            subprocess.run(self.e3(*args), cwd=d, env=self.env, check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        shutil.rmtree(pkg)

    def command(self, jobs: int) -> list[str]:
        return self.e3("--json", "go", "-j", str(jobs))

    def leaf_file(self, leaf: str) -> Path:
        return self.dir / gen.e3_leaf_path(leaf)

    def output_file(self, task: str) -> Path:
        return self.dir / gen.e3_output_path(task)

    def _snapshot(self):
        return None

    def _executed(self, before) -> int:
        d = json.loads((self.work / "last.stdout").read_text())
        if d["status"] != "ok":
            raise RuntimeError(f"e3 go: status {d['status']}")
        return len(d["executed"])


class Make(Tool):
    name = "make"

    def available(self):
        return None if shutil.which("make") else "make: not installed"

    def command(self, jobs):
        return ["make", "-s", "-j", str(jobs)]


class Floor(Tool):
    """bench/peers/floor_engine.py at one level (`spawn`, `record`, `imports`): what a Python
    engine pays at the least, in make's directory layout (see that file)."""
    runtimes = ("shell",)

    def __init__(self, work, env, level: str, python=sys.executable):
        super().__init__(work, env)
        self.level = level
        self.name = f"floor-{level}"
        self.python = python

    def generate(self, d: Path) -> None:
        gen.make(self.w, "shell", d)
        (d / "graph.json").write_text(gen.graph_json(self.w))

    def command(self, jobs):
        return [self.python, str(Path(__file__).with_name("floor_engine.py")), self.level, str(jobs)]


class Doit(Tool):
    name = "doit"

    def __init__(self, work, env, bindir: Path):
        super().__init__(work, env)
        self.exe = bindir / "doit"

    def available(self):
        return None if self.exe.exists() else f"doit: not installed in {self.exe.parent}"

    def command(self, jobs):
        # -n 1 runs in-process; -n N uses doit's multiprocessing runner
        return [str(self.exe), "-n", str(jobs)]


class Snakemake(Tool):
    name = "snakemake"
    max_n = 1000

    def __init__(self, work, env, bindir: Path):
        super().__init__(work, env)
        self.exe = bindir / "snakemake"

    def available(self):
        return None if self.exe.exists() else f"snakemake: not installed in {self.exe.parent}"

    def command(self, jobs):
        return [str(self.exe), "all", "--cores", str(jobs), "--quiet"]


class Dvc(Tool):
    name = "dvc"
    runtimes = ("shell",)
    max_n = 100
    parallel = False          # `dvc repro` runs stages one at a time

    def __init__(self, work, env, bindir: Path):
        super().__init__(work, env)
        self.exe = bindir / "dvc"

    def available(self):
        return None if self.exe.exists() else f"dvc: not installed in {self.exe.parent}"

    def generate(self, d):
        super().generate(d)
        subprocess.run([str(self.exe), "init", "--no-scm", "-q"], cwd=d, env=self.env, check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        subprocess.run([str(self.exe), "config", "core.analytics", "false"], cwd=d, env=self.env,
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def command(self, jobs):
        return [str(self.exe), "repro", "-q"]
