"""Test support for the repository tests and conformance suites: hand-made packages installed
through the Python API, package directories for `e3 build`, and small process helpers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from e3logic.core import canon
from e3logic.repo import packages
from e3logic.repo.trees import blob_entry

from .helpers import ROOT, e3_env


def dataset_bytes(value) -> tuple[bytes, str]:
    """(bytes, format) of a dataset given as bytes (raw) or any other value (JSON)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value), "raw"
    return canon.dumps(value), "json"


def make_package(repository, name: str = "demo", version: str = "0.1.0", datasets=None,
                 dataflows=None, dependencies=None, modules=None) -> str:
    """Install a hand-written package object (docs/internals.md) into `repository` (a
    `repo.repository.Repository`); returns its hash. `datasets`: {path: bytes | JSON value}."""
    store, trees = repository.objects, repository.trees
    changes = {}
    for path, value in (datasets or {}).items():
        data, fmt = dataset_bytes(value)
        changes[path] = blob_entry(store.write(data), len(data), fmt)
    root = trees.set_many(trees.empty, changes) if changes else trees.empty
    mods = {p: blob_entry(store.write(b), len(b)) for p, b in (modules or {}).items()}
    mroot = trees.set_many(trees.empty, mods) if mods else trees.empty
    obj = {"e3": "package", "name": name, "version": version,
           "dependencies": dict(dependencies or {}),
           "modules": {"kind": "tree", "hash": mroot}, "tasks": {},
           "dataflows": dict(dataflows or {}),
           "datasets": {"kind": "tree", "hash": root}, "parent": None, "message": ""}
    return packages.install(repository, obj)["hash"]


def write_package_dir(d: Path, name: str = "demo", version: str = "0.1.0", datasets=None,
                      n_values: int = 0, big_file: int = 0) -> Path:
    """A package directory with an `e3pkg.py`: `datasets` {path: bytes | value} (bytes become
    files under data/), plus `n_values` generated JSON datasets `inputs/gen/dNNNNN` and, with
    `big_file`, a raw dataset `inputs/big` of that many pseudo-random bytes."""
    d = Path(d)
    (d / "data").mkdir(parents=True, exist_ok=True)
    lines = ["from e3logic import sdk", f"package = sdk.package({name!r}, {version!r})"]
    for i, (path, value) in enumerate(sorted((datasets or {}).items())):
        if isinstance(value, (bytes, bytearray)):
            (d / "data" / f"f{i}").write_bytes(value)
            lines.append(f"package.dataset({path!r}, file='data/f{i}')")
        else:
            lines.append(f"package.dataset({path!r}, value={json.dumps(value)})")
    if n_values:
        lines.append(f"for i in range({n_values}):\n"
                     f"    package.dataset(f'inputs/gen/d{{i:05d}}', value={{'i': i, 'v': {version!r}}})")
    if big_file:
        with open(d / "data" / "big", "wb") as f:
            left = big_file
            while left > 0:
                block = os.urandom(min(left, 1 << 20))
                f.write(block)
                left -= len(block)
        lines.append("package.dataset('inputs/big', file='data/big')")
    (d / "e3pkg.py").write_text("\n".join(lines) + "\n")
    return d


def e3_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "e3logic", *map(str, args)]


def spawn_e3(*args, cwd, env=None) -> subprocess.Popen:
    """Start the real `e3` command without waiting (for kill and concurrency tests)."""
    return subprocess.Popen(e3_cmd(*args), cwd=cwd, env=e3_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def kill_after(proc: subprocess.Popen, delay: float) -> int:
    """SIGKILL `proc` after `delay` seconds unless it finished; returns its exit code
    (-9 when the kill landed)."""
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    return proc.returncode


def kill_when(proc: subprocess.Popen, condition, timeout: float = 60.0) -> int:
    """SIGKILL `proc` as soon as `condition()` holds (polled every few ms) unless it finished
    first; returns its exit code (-9 when the kill landed)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            hit = condition()
        except OSError:
            hit = False
        if hit:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.communicate()
    return proc.returncode


def timed_run(*args, cwd, env=None) -> float:
    """Seconds one uninterrupted run of `e3 args` takes (to place kill delays)."""
    t = time.monotonic()
    p = subprocess.run(e3_cmd(*args), cwd=cwd, env=e3_env(env), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return time.monotonic() - t


__all__ = ["ROOT", "dataset_bytes", "make_package", "write_package_dir", "e3_cmd", "spawn_e3",
           "kill_after", "kill_when", "timed_run"]
