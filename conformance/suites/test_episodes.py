"""Conformance suite `episodes`: episode histories as `e3 --json episodes --run RUN` shows them
(issue 5, item 3): one episode per execution attempt, `plan → run → ok | fail | cxl` with beat
numbers and a note; budgets and failures end in `fail` with the reason; cancellation in `cxl`.

Scenarios are runs of the `flows`, `limits` and `pair` packages (tests/flows.py); each names
the expected state sequence and, where it matters, the final note of chosen dataflows.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field

import pytest

from tests.flows import FLOWS, FLOWS_DEPS, Proj, copy_project, states

FINAL = ("ok", "fail", "cxl")


@dataclass(frozen=True)
class Scenario:
    id: str
    package: str
    args: tuple = ()
    edits: dict = field(default_factory=dict)
    expect: dict = field(default_factory=dict)   # dataflow -> (states, final note or None)
    code: int = 0


PLAIN = ("plan", "run", "ok")
DELETE = "<delete the working-copy file>"
SCENARIOS = [
    Scenario("python-inline-shell-all-plan-run-ok", "flows",
             expect={n: (PLAIN, None) for n in FLOWS}),
    Scenario("python-exception-fails-with-type-and-message", "flows", args=("check",),
             edits={"inputs/flag": "fail"},
             expect={"check": (("plan", "run", "fail"), "ValueError: flag says fail")}, code=1),
    Scenario("inline-exception-fails-with-type-and-message", "flows", args=("scaled",),
             edits={"inputs/k": None},
             expect={"peak": (PLAIN, None),
                     "scaled": (("plan", "run", "fail"), "TypeError: unsupported operand type(s) "
                                "for *: 'int' and 'NoneType'")}, code=1),
    Scenario("missing-input-fails-at-plan", "flows", args=("norm",),
             edits={"inputs/text": DELETE},
             expect={"norm": (("plan", "fail"), "input inputs/text is missing")}, code=1),
    Scenario("shell-exit-status-is-the-reason", "pair", args=("bad",),
             expect={"bad": (("plan", "run", "fail"), "exit 3")}, code=1),
    Scenario("fail-fast-cancels-the-running-sibling", "pair", args=("--fail-fast", "bad", "slow"),
             expect={"bad": (("plan", "run", "fail"), "exit 3"),
                     "slow": (("plan", "run", "cxl"), "fail-fast: bad failed")}, code=1),
    Scenario("wall-budget-kills-a-sleep", "limits", args=("nap",),
             expect={"nap": (("plan", "run", "fail"), "budget wall_s=1 exceeded")}, code=1),
    Scenario("worker-crash-is-a-failure", "limits", args=("crash", "fine"),
             expect={"crash": (("plan", "run", "fail"), "python worker died (exit 3)"),
                     "fine": (PLAIN, None)}, code=1),
]


def apply(p: Proj, edits: dict) -> None:
    for path, v in edits.items():
        if v == DELETE:
            (p.path / path).unlink()
        else:
            p.set_json(path, v)


def check_shape(eps: list[dict], run: str) -> None:
    for e in eps:
        assert e["episode"] == f"{run}:{e['dataflow']}" or \
            re.fullmatch(rf"{run}:{e['dataflow']}#\d+", e["episode"]), e
        st = states(e["history"])
        assert st[0] == "plan" and st[-1] in FINAL and not set(st[:-1]) & set(FINAL), e
        beats = [h["beat"] for h in e["history"]]
        assert beats == sorted(beats) and beats[0] >= 1, e


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: s.id)
def test_history(sc: Scenario, tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, sc.package, tmp_path / "p")
    apply(p, sc.edits)
    res = p.go(*sc.args, code=sc.code)
    eps = p.episodes(res["run"])
    check_shape(eps, res["run"])
    hist = {e["dataflow"]: e["history"] for e in eps}
    assert set(hist) == set(sc.expect)
    for name, (want, note) in sc.expect.items():
        assert tuple(states(hist[name])) == want, name
        if note is not None:
            # an exception's note ends with where it was raised in the package's own files
            assert re.fullmatch(re.escape(note) + r"( \(steps\.py:\d+\))?",
                                hist[name][-1]["note"]), (name, hist[name][-1]["note"])


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    p = copy_project(tmp_path_factory, "flows", tmp_path_factory.mktemp("episodes") / "p")
    cold = p.go()
    warm = p.go()
    return p, cold, warm


def test_a_dependent_starts_after_the_beat_that_committed_its_inputs(two_runs):
    p, cold, _ = two_runs
    hist = p.histories(cold["run"])
    for down, ups in FLOWS_DEPS.items():
        for up in ups:
            assert hist[down][1]["beat"] > hist[up][-1]["beat"], (up, down)


def test_cache_hits_start_no_episode_and_the_latest_run_is_the_default(two_runs):
    p, cold, warm = two_runs
    assert p.episodes(warm["run"]) == [] == p.episodes()
    assert len(p.episodes(cold["run"])) == 12


def test_a_forced_rerun_starts_new_episodes_under_its_own_run(two_runs, tmp_path):
    src, cold, _ = two_runs
    p = Proj(shutil.copytree(src.path, tmp_path / "p", symlinks=True))
    res = p.go("--force", "total", "side")
    eps = p.episodes(res["run"])
    assert {e["episode"] for e in eps} == {f"{res['run']}:total", f"{res['run']}:side"}
    assert len(p.episodes(cold["run"])) == 12  # the old run's histories are kept
