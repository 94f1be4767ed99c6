"""The bench scripts CI runs: each one takes `--quick` (the seconds-long smoke `.ci/run` calls)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _options(script: Path) -> set[str]:
    tree = ast.parse(script.read_text())
    return {arg.value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"
            for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)}


@pytest.mark.parametrize("script", sorted(BENCH.glob("bench_*.py")), ids=lambda p: p.name)
def test_every_bench_script_ci_runs_accepts_quick(script):
    assert "--quick" in _options(script), f"{script.name}: .ci/run calls it with --quick"
