"""Conformance suite `determinism` (DESIGN.md §5; issue 5, item 6): worker-count and backend
invariance of the state root, receipt and commit; pinned golden digests; early cutoff.

Scenarios run the `flows` package (tests/flows.py) in fresh projects; the golden digests of
its cold run and of the bundled `forecast` example are pinned in tests/flows.py.
"""
from __future__ import annotations

import shutil

import pytest

from e3logic import EXAMPLES_DIR
from tests.flows import (FLOWS, FLOWS_COLD, FORECAST_COLD, Proj, copy_project, make_project)

DIGESTS = ("state_root", "receipt", "commit")


def digests(res: dict) -> dict:
    return {k: res[k] for k in DIGESTS}


@pytest.mark.parametrize("executor, jobs", [(e, j) for e in ("inline", "threads", "processes")
                                            for j in (1, 8)])
def test_cold_run_digests_are_the_pinned_ones(executor, jobs, tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "flows", tmp_path / "p")
    res = p.go("-j", str(jobs), "--executor", executor)
    assert res["executed"] == FLOWS
    assert digests(res) == FLOWS_COLD


def test_forecast_example_golden_digests(tmp_path):
    p = Proj(make_project(tmp_path / "f", EXAMPLES_DIR / "forecast", "forecast"))
    assert digests(p.go()) == FORECAST_COLD


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    p = copy_project(tmp_path_factory, "flows", tmp_path_factory.mktemp("det") / "p")
    p.go()
    return p


CUTOFFS = {
    # edit -> (what recomputes, what early cutoff keeps cached although downstream of it)
    "max-unchanged": ({"inputs/nums": [9, 1, 2, 3]}, ["combine", "final", "peak", "report",
                                                      "total"], ["scaled"]),
    "whitespace-only": ({"inputs/text": b" hello world\n foo  bar "}, ["norm"],
                        ["combine", "count", "final", "upper"]),
}


@pytest.mark.parametrize("case", sorted(CUTOFFS))
def test_early_cutoff_leaves_dependents_of_an_unchanged_output_cached(case, warm, tmp_path):
    edits, executed, kept = CUTOFFS[case]
    seen = []
    for executor, jobs in (("inline", "1"), ("processes", "8")):
        p = Proj(shutil.copytree(warm.path, tmp_path / executor, symlinks=True))
        for path, v in edits.items():
            if isinstance(v, bytes):
                p.write(path, v)
            else:
                p.set_json(path, v)
        res = p.go("-j", jobs, "--executor", executor)
        assert res["executed"] == executed
        assert set(kept) <= set(res["cached"])
        seen.append(digests(res))
    assert seen[0] == seen[1]
