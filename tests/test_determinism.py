"""Determinism (DESIGN.md §5): the same run with `-j 1, 2, 4, 8` on every executor gives the
identical state root, receipt and commit; golden digests of the bundled `forecast` are pinned.

Each combination runs in a fresh project (a copy of a checked-out template with nothing run):
the `flows` package's 12 dataflows mix python workers, inline threads and shell processes.
"""
from __future__ import annotations

import shutil

import pytest

from e3logic import EXAMPLES_DIR
from tests.flows import (FLOWS, FLOWS_COLD, FORECAST_COLD, Proj, copy_project, make_project)

DIGESTS = ("state_root", "receipt", "commit")


def digests(res: dict) -> dict:
    return {k: res[k] for k in DIGESTS}


@pytest.mark.parametrize("jobs", [1, 2, 4, 8])
@pytest.mark.parametrize("executor", ["inline", "threads", "processes"])
def test_a_cold_run_gives_the_same_root_receipt_and_commit_for_any_jobs_and_executor(
        tmp_path_factory, tmp_path, executor, jobs):
    p = copy_project(tmp_path_factory, "flows", tmp_path / "p")
    res = p.go("-j", str(jobs), "--executor", executor)
    assert res["executed"] == FLOWS
    assert digests(res) == FLOWS_COLD


def test_strict_batches_give_the_same_commit(tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "flows", tmp_path / "p")
    assert digests(p.go("-j", "2", "--strict-batches")) == FLOWS_COLD


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    p = copy_project(tmp_path_factory, "flows", tmp_path_factory.mktemp("det") / "p")
    p.go()
    return p


@pytest.mark.parametrize("edit", ["k", "nums"])
def test_an_incremental_run_gives_the_same_commit_on_one_inline_worker_and_eight_processes(
        cold, tmp_path, edit):
    seen = []
    for executor, jobs in (("inline", "1"), ("processes", "8")):
        p = Proj(shutil.copytree(cold.path, tmp_path / executor, symlinks=True))
        if edit == "k":
            p.set_json("inputs/k", 3)
        else:
            p.set_json("inputs/nums", [3, 9, 5])  # early cutoff at `peak`
        res = p.go("-j", jobs, "--executor", executor)
        seen.append((digests(res), res["executed"], res["cached"]))
    assert seen[0] == seen[1]


def test_a_run_with_a_failure_gives_the_same_commit_on_any_backend(tmp_path_factory, tmp_path):
    seen = []
    for executor, jobs in (("inline", "1"), ("processes", "4")):
        p = copy_project(tmp_path_factory, "flows", tmp_path / executor)
        p.set_json("inputs/flag", "fail")
        res = p.go("-j", jobs, "--executor", executor, code=1)
        assert res["failed"] == ["check"]
        seen.append(digests(res))
    assert seen[0] == seen[1]
    assert seen[0]["commit"] != FLOWS_COLD["commit"]


def test_a_warm_run_keeps_the_root_and_chains_its_commit_to_the_cold_one(cold, tmp_path):
    p = Proj(shutil.copytree(cold.path, tmp_path / "w", symlinks=True))
    res = p.go()
    assert res["state_root"] == FLOWS_COLD["state_root"]
    assert res["parent"] == FLOWS_COLD["commit"]
    assert res["commit"] != FLOWS_COLD["commit"]  # a new receipt (all cached), a new parent


def test_the_forecast_example_cold_run_matches_the_pinned_golden_digests(tmp_path):
    p = Proj(make_project(tmp_path / "forecast", EXAMPLES_DIR / "forecast", "forecast"))
    res = p.go()
    assert res["executed"] == ["clean", "features", "fit", "forecast", "report", "summary"]
    assert res["parent"] == ""
    assert digests(res) == FORECAST_COLD
