"""Conformance suite `fault` (DESIGN.md §8; issue 5): a fault hurts only what depends on it,
is never memoized, and leaves the repository consistent.

Scenarios: a python exception, a shell exit status, a crashing python worker, a missing input,
tasks killed by wall (shell, inline) / CPU / memory / IO budgets, fail-fast, and a memo output object that is gone or
corrupt in the store. Packages: `flows`, `limits`, `pair` (tests/flows.py).
"""
from __future__ import annotations

import os
import shutil

import pytest

from tests.flows import FLOWS, FLOWS_OUTPUTS, LIMITS_REASONS, LISTS, Proj, copy_project, states


def lists(res: dict) -> dict:
    return {k: res[k] for k in LISTS if res[k]}


def fsck_ok(p: Proj) -> bool:
    r = p.e3("--json", "fsck")
    return r.code == 0 and r.json["ok"]


@pytest.fixture(scope="module")
def limits_run(tmp_path_factory):
    """One `go` of `limits`: every budget and the crash at once, beside an independent task."""
    p = copy_project(tmp_path_factory, "limits", tmp_path_factory.mktemp("fault") / "limits")
    res = p.go("-j", "2", code=1)
    return p, res, p.histories(res["run"])


@pytest.mark.parametrize("dataflow", sorted(LIMITS_REASONS))
def test_a_killed_or_crashed_task_fails_alone_with_its_reason(limits_run, dataflow):
    _, res, hist = limits_run
    assert dataflow in res["failed"]
    assert states(hist[dataflow]) == ["plan", "run", "fail"]
    assert hist[dataflow][-1]["note"] == LIMITS_REASONS[dataflow]


def test_limits_failures_are_confined_and_the_pool_keeps_working(limits_run):
    p, res, _ = limits_run
    assert "fine" in res["executed"] and res["skipped"] == ["after_crash"]
    assert set(res["failed"]) >= {"chatty", "crash", "flood", "hog", "nap", "spin"}
    assert p.read("outputs/fine/o") == b'{"fine":1}'
    assert not (p.path / "outputs" / "nap").exists()
    assert fsck_ok(p)


def test_a_crash_is_not_memoized_it_crashes_again(limits_run, tmp_path):
    p = Proj(shutil.copytree(limits_run[0].path, tmp_path / "p", symlinks=True))
    res = p.go("crash", "fine", code=1)
    assert lists(res) == {"failed": ["crash"], "cached": ["fine"]}


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    p = copy_project(tmp_path_factory, "flows", tmp_path_factory.mktemp("fault") / "warm")
    p.go()
    return p


@pytest.fixture
def proj(warm, tmp_path):
    return Proj(shutil.copytree(warm.path, tmp_path / "p", symlinks=True))


def test_a_python_failure_skips_only_its_dependents_and_a_fix_reruns_it(proj):
    proj.set_json("inputs/flag", "fail")
    res = proj.go(code=1)
    assert lists(res) == {"failed": ["check"], "skipped": ["after"],
                          "cached": sorted(set(FLOWS) - {"check", "after"})}
    assert proj.go(code=1)["failed"] == ["check"]    # never memoized
    proj.set_json("inputs/flag", "again")
    fixed = proj.go()
    assert fixed["executed"] == ["after", "check"]
    assert proj.read("outputs/after/o") == b'{"flag":"again"}'


def test_a_deleted_input_fails_its_reader_and_skips_its_closure(proj):
    (proj.path / "inputs" / "nums").unlink()
    res = proj.go(code=1)
    assert lists(res) == {"failed": ["peak", "total"],
                          "skipped": ["combine", "final", "report", "scaled"],
                          "cached": ["after", "check", "count", "norm", "side", "upper"]}
    hist = proj.histories(res["run"])
    assert {n: hist[n][-1]["note"] for n in ("peak", "total")} == \
        {"peak": "input inputs/nums is missing", "total": "input inputs/nums is missing"}
    assert fsck_ok(proj)


def test_fail_fast_cancels_work_in_flight_and_exits_1(tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "pair", tmp_path / "p")
    res = p.go("-j", "2", "--fail-fast", code=1)
    assert res["status"] == "failed" and res["reason"] == "fail-fast: bad failed"
    assert res["failed"] == ["bad"] and res["cancelled"] == ["slow"]
    assert res["skipped"] == ["later"]
    assert fsck_ok(p)


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_damaged_memo_output_object_is_recomputed(proj, damage):
    obj = proj.object_path(proj.file_hash("outputs/peak/o"))
    os.chmod(obj, 0o644)
    if damage == "missing":
        obj.unlink()
    else:
        obj.write_bytes(b"999")
    res = proj.go()
    assert "peak" in res["executed"], lists(res)
    assert obj.read_bytes() == FLOWS_OUTPUTS["peak"]
    assert fsck_ok(proj)


def test_forcing_one_execution_key_shared_by_two_dataflows_neither_fails_nor_crashes(
        tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "twins", tmp_path / "p")
    p.go("-j", "2")
    r = p.e3("--json", "go", "-j", "2", "--force")
    assert r.code == 0 and "internal error" not in r.err, r
    assert r.json["failed"] == [] and p.read("outputs/c/o") == b'"ABC""ABC"'
    assert fsck_ok(p)
