"""Shared test fixtures: run the real `e3` command in a temp directory; hypothesis profile."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

try:
    from hypothesis import HealthCheck, settings

    settings.register_profile("ci", derandomize=True, deadline=None, max_examples=60,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("dev", deadline=None, max_examples=60,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # pragma: no cover
    pass


class E3Result:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    @property
    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return f"<e3 exit={self.code} out={self.out[:300]!r} err={self.err[:300]!r}>"


def e3_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("E3_")}
    env["E3_FSYNC"] = "0"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def run_e3(*args, cwd=None, env=None, input=None, timeout=120) -> E3Result:
    """Run the real `e3` command (python -m e3logic) in `cwd`."""
    cmd = [sys.executable, "-m", "e3logic", *map(str, args)]
    proc = subprocess.run(cmd, cwd=cwd, env=e3_env(env), input=input, capture_output=True,
                          text=True, timeout=timeout)
    return E3Result(proc)


@pytest.fixture
def e3(tmp_path):
    """`e3(*args)` runs the real command in a fresh temp directory (`e3.cwd`)."""

    def call(*args, **kw):
        kw.setdefault("cwd", tmp_path)
        return run_e3(*args, **kw)

    call.cwd = tmp_path
    return call
