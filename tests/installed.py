"""e3logic installed from its wheel in a fresh venv, as a newcomer gets it with `pip install .`
(used by tests/test_packaging.py and the `install` conformance suite).

`build_wheel` builds the wheel from a copy of the source tree (the checkout gets no build/ or
egg-info from it); `install` makes a venv, installs the wheel into it with pip and makes this
interpreter's site directories visible after the venv's own (a .pth file), so the dependencies
need no download while e3logic itself comes from the wheel. Commands run with the venv's
`python`/`e3`, in a temp directory, without PYTHONPATH.
"""
from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT, E3Result

#: what the wheel is built from (pyproject.toml's packages and package data, and the readme)
SOURCES = ("pyproject.toml", "README.md", "e3logic", "conformance")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")


def _run(cmd: list, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, **kw)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def build_wheel(dest: Path) -> Path:
    """Build e3logic's wheel (pip, isolated build) into `dest`/dist; its path."""
    src = dest / "src"
    src.mkdir(parents=True)
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=IGNORE)
        else:
            shutil.copy2(ROOT / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", src, "--no-deps", "-q", "-w", dest / "dist"],
         cwd=dest)
    wheels = sorted((dest / "dist").glob("e3logic-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


class Installed:
    """A venv with e3logic installed from a wheel; `e3(...)`/`python(...)` run in `cwd`."""

    def __init__(self, venv: Path, cwd: Path):
        self.venv = venv
        self.cwd = cwd
        self.bin = venv / "bin"
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("E3_") and k not in ("PYTHONPATH", "PYTHONHOME",
                                                             "VIRTUAL_ENV")}
        self.env["E3_FSYNC"] = "0"
        self.env["PATH"] = str(self.bin) + os.pathsep + self.env.get("PATH", "")

    def e3(self, *args, cwd=None, timeout=180) -> E3Result:
        return E3Result(subprocess.run([str(self.bin / "e3"), *map(str, args)],
                                       cwd=cwd or self.cwd, env=self.env, capture_output=True,
                                       text=True, timeout=timeout))

    def python(self, code: str, cwd=None) -> str:
        return _run([self.bin / "python", "-c", code], cwd=cwd or self.cwd, env=self.env).stdout

    def inside(self, path) -> bool:
        return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(self.venv))


def install(wheel: Path, dest: Path) -> Installed:
    """A fresh venv in `dest`/venv with `wheel` installed; commands run in `dest`/work."""
    venv = dest / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    py = venv / "bin" / "python"
    purelib = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=dest).stdout.strip())
    # the dependencies: this interpreter's site directories, after the venv's own (a path in a
    # .pth file is appended; the .pth files inside it, e.g. an editable e3logic's, are not run)
    deps = [d for d in [*site.getsitepackages(), site.getusersitepackages()] if Path(d).is_dir()]
    (purelib / "_e3_test_dependencies.pth").write_text("".join(f"{d}\n" for d in deps))
    _run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps",
          "--no-index", wheel], cwd=dest)
    work = dest / "work"
    work.mkdir()
    return Installed(venv, work)
