"""Conformance suite `stats` (issue 5, item 5; CLI.md): `e3 stats` — the memo hit ratio over
every run's receipts, the counts of executed and cached dataflows, and the work saved (the
recorded durations of the executions a cache hit stood in for).

Each scenario is a sequence of steps on a fresh `flows` project (tests/flows.py), then the
expected (executed, cached) counts; the ratio must be cached / (executed + cached).
"""
from __future__ import annotations

import pytest

from tests.flows import copy_project

KEYS = {"hit_ratio", "executed", "cached", "work_saved"}

SCENARIOS = {
    # id: (steps, executed, cached); a step is ("go", args...) or ("set", path, value)
    "cold-only": ([("go",)], 12, 0),
    "cold-then-warm": ([("go",), ("go",)], 12, 12),
    "cold-edit-warm": ([("go",), ("set", "inputs/k", 3), ("go",)], 17, 7),
    "failure-counts-neither": ([("set", "inputs/flag", "fail"), ("go",)], 10, 0),
    "forced-rerun-counts-as-executed": ([("go",), ("go", "--force", "total")], 13, 0),
    "targets-count-only-what-they-select": ([("go", "upper"), ("go", "final")], 9, 2),
}


@pytest.mark.parametrize("case", sorted(SCENARIOS))
def test_stats(case, tmp_path_factory, tmp_path):
    steps, executed, cached = SCENARIOS[case]
    p = copy_project(tmp_path_factory, "flows", tmp_path / "p")
    for step in steps:
        if step[0] == "go":
            p.go(*step[1:], code=None)
        else:
            p.set_json(step[1], step[2])
    s = p.e3("--json", "stats").json
    assert KEYS <= set(s)
    assert (s["executed"], s["cached"]) == (executed, cached)
    assert s["hit_ratio"] == pytest.approx(cached / (executed + cached))
    if cached:
        assert s["work_saved"] > 0
    else:
        assert s["work_saved"] == 0


def test_a_repository_that_never_ran_has_zero_stats(tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "flows", tmp_path / "p")
    s = p.e3("--json", "stats").json
    assert (s["hit_ratio"], s["executed"], s["cached"], s["work_saved"]) == (0.0, 0, 0, 0)


def test_the_human_line_names_the_ratio_and_the_counts(tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "flows", tmp_path / "p")
    p.go()
    p.go()
    out = p.e3("stats").out
    assert out.startswith("hit ratio 50%: 12 executed, 12 cached; work saved ")
