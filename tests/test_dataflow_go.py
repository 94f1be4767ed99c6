"""`e3 go` end to end: the real command, real task processes (python workers, shell process
groups, inline threads), asserting on the run's lists and the episode histories.

The `flows` package (tests/flows.py) has 12 dataflows over python, inline and shell tasks in
three independent branches; `limits` has one task per budget and a crashing worker; `pair` has a
failing shell task beside a 30 s sleep.
"""
from __future__ import annotations

import os
import re
import shutil

import pytest

from tests.flows import (FLOWS, FLOWS_OUTPUTS, GO_KEYS, LIMITS, LIMITS_REASONS, LISTS, Proj,
                         closure, copy_project, states)

FINAL = ("ok", "fail", "cxl")


def lists(res: dict) -> dict:
    """The non-empty outcome lists of a `go` answer."""
    return {k: res[k] for k in LISTS if res[k]}


def assert_well_formed(episodes: list[dict]) -> None:
    """Every history starts with `plan`, moves only forward through beats and ends final."""
    for e in episodes:
        states = [h["state"] for h in e["history"]]
        beats = [h["beat"] for h in e["history"]]
        assert states[0] == "plan", e
        assert states[-1] in FINAL, e
        assert all(s not in FINAL for s in states[:-1]), e
        assert beats == sorted(beats), e


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    """A `flows` project after one cold `go` (copy it before changing anything)."""
    p = copy_project(tmp_path_factory, "flows", tmp_path_factory.mktemp("cold") / "p")
    return p, p.go()


@pytest.fixture
def warm(cold, tmp_path):
    """A private copy of the project after its cold run."""
    p, _ = cold
    shutil.copytree(p.path, tmp_path / "w", symlinks=True)
    return Proj(tmp_path / "w")


@pytest.fixture
def fresh(tmp_path_factory, tmp_path):
    return copy_project(tmp_path_factory, "flows", tmp_path / "f")


# -- cold, warm, incremental ---------------------------------------------------------------------
def test_a_cold_run_executes_every_dataflow_and_writes_every_output(cold):
    p, res = cold
    assert GO_KEYS <= set(res)
    assert res["status"] == "ok"
    assert lists(res) == {"executed": FLOWS}
    for name, want in FLOWS_OUTPUTS.items():
        assert p.read(f"outputs/{name}/o") == want, name


def test_a_cold_run_records_one_plan_run_ok_episode_per_dataflow(cold):
    p, res = cold
    eps = p.episodes(res["run"])
    assert sorted(e["dataflow"] for e in eps) == FLOWS
    assert_well_formed(eps)
    assert {e["dataflow"]: states(e["history"]) for e in eps} == \
        {n: ["plan", "run", "ok"] for n in FLOWS}
    # a dependent starts in a later beat than the commit of its inputs
    beats = {e["dataflow"]: (e["history"][1]["beat"], e["history"][-1]["beat"]) for e in eps}
    for down, ups in {"scaled": ["peak"], "report": ["total", "scaled"], "final": ["combine", "count"],
                      "after": ["check"], "upper": ["norm"]}.items():
        for up in ups:
            assert beats[down][0] > beats[up][1], (down, up, beats)


def test_a_warm_run_caches_everything_and_starts_no_episode(warm, cold):
    res = warm.go()
    assert lists(res) == {"cached": FLOWS}
    assert res["state_root"] == cold[1]["state_root"]
    assert warm.episodes(res["run"]) == []
    for name, want in FLOWS_OUTPUTS.items():
        assert warm.read(f"outputs/{name}/o") == want, name


def test_editing_one_input_reruns_exactly_its_dirty_closure_as_the_dry_run_said(warm):
    warm.set_json("inputs/k", 3)
    dry = warm.go("--dry-run")
    res = warm.go()
    want = closure(["scaled", "side"])
    assert want == ["combine", "final", "report", "scaled", "side"]
    assert dry["would_run"] == want and dry["cached"] == sorted(set(FLOWS) - set(want))
    assert lists(res) == {"executed": want, "cached": sorted(set(FLOWS) - set(want))}
    assert sorted(e["dataflow"] for e in warm.episodes(res["run"])) == want
    assert warm.read("outputs/scaled/o") == b"27" and warm.read("outputs/side/o") == b"33"


def test_early_cutoff_an_unchanged_max_leaves_its_dependents_cached(warm):
    warm.set_json("inputs/nums", [3, 9, 5])  # the sum changes, the max does not
    res = warm.go()
    assert res["executed"] == ["combine", "final", "peak", "report", "total"]
    assert "scaled" in res["cached"]  # peak recomputed the same bytes: scaled is a memo hit
    assert warm.read("outputs/report/o") == b"1718"


def test_early_cutoff_a_whitespace_only_edit_reruns_only_the_normaliser(warm, cold):
    warm.write("inputs/text", b"hello world\n\n  foo   bar\n")
    res = warm.go()
    assert lists(res) == {"executed": ["norm"], "cached": sorted(set(FLOWS) - {"norm"})}
    assert res["state_root"] != cold[1]["state_root"]  # the input itself changed
    assert warm.read("outputs/final/o") == FLOWS_OUTPUTS["final"]


# -- targets, filter, dry run, force ---------------------------------------------------------------
def test_targets_output_paths_or_dataflow_names_run_only_what_they_need(fresh):
    res = fresh.go("outputs/upper/o")
    assert lists(res) == {"executed": ["norm", "upper"]}
    assert fresh.read("outputs/upper/o") == FLOWS_OUTPUTS["upper"]
    res = fresh.go("final")
    assert lists(res) == {"executed": ["combine", "count", "final", "peak", "report", "scaled",
                                       "total"], "cached": ["norm", "upper"]}
    assert not (fresh.path / "outputs" / "side").exists()
    assert not (fresh.path / "outputs" / "check").exists()


def test_filter_runs_only_matching_dataflows_and_leaves_the_rest_stale(warm):
    warm.set_json("inputs/k", 5)
    res = warm.go("--filter", "s*")
    assert lists(res) == {"executed": ["scaled", "side"]}
    assert warm.e3("--json", "status").json["stale"] == ["combine", "final", "report"]
    rest = warm.go()
    assert rest["executed"] == ["combine", "final", "report"]
    assert {"scaled", "side"} <= set(rest["cached"])


def test_dry_run_names_what_would_run_and_runs_nothing(fresh):
    res = fresh.go("--dry-run")
    assert res["status"] == "dry-run"
    assert res["would_run"] == FLOWS and res["executed"] == [] and res["run"] is None
    assert {n for b in res["plan"]["batches"] for n in b} == set(FLOWS)
    assert fresh.episodes() == []
    assert not (fresh.path / "outputs").exists() or not any((fresh.path / "outputs").iterdir())
    assert fresh.go()["executed"] == FLOWS  # nothing was memoized by the dry run


def test_force_reexecutes_everything_and_appends_executions(warm):
    res = warm.go("--force")
    assert lists(res) == {"executed": FLOWS}
    eps = warm.episodes(res["run"])
    assert sorted(e["dataflow"] for e in eps) == FLOWS
    assert_well_formed(eps)
    counts = dict(warm.db("SELECT dataflow, COUNT(*) FROM executions GROUP BY dataflow"))
    assert counts == {n: 2 for n in FLOWS}
    keys = warm.db("SELECT dataflow, COUNT(DISTINCT key) FROM executions GROUP BY dataflow")
    assert dict(keys) == {n: 1 for n in FLOWS}  # the same executions, appended


# -- failures -------------------------------------------------------------------------------------
def test_keep_going_a_failure_skips_only_its_dependents_and_exits_1(fresh):
    fresh.set_json("inputs/flag", "fail")
    res = fresh.go(code=1)
    assert res["status"] == "failed"
    assert lists(res) == {"executed": sorted(set(FLOWS) - {"check", "after"}),
                          "failed": ["check"], "skipped": ["after"]}
    hist = fresh.histories(res["run"])
    assert states(hist["check"]) == ["plan", "run", "fail"]
    assert re.fullmatch(r"ValueError: flag says fail \(steps\.py:\d+\)", hist["check"][-1]["note"])
    assert "after" not in hist  # a skipped dataflow never starts an episode
    assert fresh.read("outputs/final/o") == FLOWS_OUTPUTS["final"]


def test_a_failure_is_never_memoized_it_runs_again_and_runs_once_fixed(warm):
    warm.set_json("inputs/flag", "fail")
    first = warm.go(code=1)
    again = warm.go(code=1)
    assert first["failed"] == again["failed"] == ["check"]
    assert states(warm.histories(again["run"])["check"]) == ["plan", "run", "fail"]
    warm.set_json("inputs/flag", "fixed")  # a new value: the cold run memoized "ok"
    fixed = warm.go()
    assert lists(fixed) == {"executed": ["after", "check"],
                            "cached": sorted(set(FLOWS) - {"after", "check"})}
    statuses = [s for (s,) in warm.db("SELECT status FROM executions WHERE dataflow='check' "
                                      "ORDER BY id")]
    assert statuses == ["ok", "fail", "fail", "ok"]
    assert warm.db("SELECT COUNT(*) FROM memo WHERE key IN (SELECT key FROM executions "
                   "WHERE status='fail')") == [(0,)]


def test_fail_fast_skips_everything_not_yet_started(fresh):
    fresh.set_json("inputs/flag", "fail")
    res = fresh.go("-j", "1", "--fail-fast", code=1)
    assert res["status"] == "failed" and res["failed"] == ["check"]
    assert res["reason"] == "fail-fast: check failed"
    assert "after" in res["skipped"]
    assert sorted(res["executed"] + res["failed"] + res["skipped"]) == FLOWS
    started = {e["dataflow"] for e in fresh.episodes(res["run"])}
    assert started == set(res["executed"]) | {"check"}
    # with --keep-going the same failure would have let every independent dataflow run
    assert len(res["skipped"]) > 1


def test_fail_fast_cancels_a_running_sibling_with_the_reason(tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "pair", tmp_path / "pair")
    res = p.go("-j", "2", "--fail-fast", "bad", "slow", code=1)
    assert res["status"] == "failed"
    assert lists(res) == {"failed": ["bad"], "cancelled": ["slow"]}
    hist = p.histories(res["run"])
    assert {n: states(h) for n, h in hist.items()} == {"bad": ["plan", "run", "fail"],
                                                        "slow": ["plan", "run", "cxl"]}
    assert hist["slow"][-1]["note"] == "fail-fast: bad failed"
    assert hist["bad"][-1]["note"] == "exit 3"


def test_an_inline_task_failure_is_confined_to_its_branch(warm):
    warm.set_json("inputs/k", None)
    res = warm.go(code=1)
    assert lists(res) == {"executed": ["side"], "failed": ["scaled"],
                          "skipped": ["combine", "final", "report"],
                          "cached": ["after", "check", "count", "norm", "peak", "total", "upper"]}
    note = warm.histories(res["run"])["scaled"][-1]["note"]
    assert note.startswith("TypeError: unsupported operand"), note


def test_a_deleted_input_fails_its_readers_naming_it(warm):
    (warm.path / "inputs" / "text").unlink()
    res = warm.go(code=1)
    assert res["failed"] == ["norm"]
    assert res["skipped"] == ["combine", "count", "final", "upper"]
    norm = warm.histories(res["run"])["norm"]
    assert states(norm) == ["plan", "fail"]
    assert norm[-1]["note"] == "input inputs/text is missing"


# -- budgets and crashes (one run of `limits`) -----------------------------------------------------
@pytest.fixture(scope="module")
def limits(tmp_path_factory):
    p = copy_project(tmp_path_factory, "limits", tmp_path_factory.mktemp("limits") / "p")
    res = p.go(code=1)
    return p, res, p.histories(res["run"])


def test_budget_overruns_and_a_crash_fail_only_their_own_dataflows(limits):
    _, res, hist = limits
    assert set(res["executed"]) - {"doze"} == {"fine"}  # doze's budget: its own test below
    assert set(res["failed"]) >= {"chatty", "crash", "flood", "hog", "nap", "spin"}
    assert res["skipped"] == ["after_crash"]
    assert sorted(hist) == sorted(set(LIMITS) - {"after_crash"})
    assert_well_formed([{"history": h} for h in hist.values()])


@pytest.mark.parametrize("dataflow", sorted(LIMITS_REASONS))
def test_a_killed_task_fails_with_the_reason_in_its_history(limits, dataflow):
    _, res, hist = limits
    assert dataflow in res["failed"]
    assert states(hist[dataflow]) == ["plan", "run", "fail"]
    assert hist[dataflow][-1]["note"] == LIMITS_REASONS[dataflow]


def test_a_budget_failure_is_not_memoized(limits, tmp_path):
    p, _, _ = limits
    q = Proj(shutil.copytree(p.path, tmp_path / "again", symlinks=True))
    res = q.go("crash", "hog", "fine", code=1)
    assert lists(res) == {"failed": ["crash", "hog"], "cached": ["fine"]}


# -- the store and the working copy ------------------------------------------------------------------
def test_a_missing_memo_output_object_is_recomputed(warm):
    obj = warm.object_path(warm.file_hash("outputs/total/o"))
    os.chmod(obj, 0o644)
    obj.unlink()
    res = warm.go()
    assert "total" in res["executed"], lists(res)
    assert obj.exists()
    assert warm.e3("--json", "fsck").json["ok"]


def test_a_corrupt_memo_output_object_is_recomputed(warm):
    obj = warm.object_path(warm.file_hash("outputs/peak/o"))
    os.chmod(obj, 0o644)
    obj.write_bytes(b"99")
    res = warm.go()
    assert "peak" in res["executed"], lists(res)
    assert obj.read_bytes() == b"9"
    assert warm.e3("--json", "fsck").json["ok"]


def test_a_memo_hit_whose_object_is_gone_reexecutes_after_an_input_round_trip(warm):
    original = warm.read("inputs/nums")
    h = warm.file_hash("outputs/total/o")
    warm.set_json("inputs/nums", [1])
    warm.go()
    obj = warm.object_path(h)
    os.chmod(obj, 0o644)
    obj.unlink()
    warm.write("inputs/nums", original)
    res = warm.go()
    assert "total" in res["executed"] and "peak" in res["cached"]
    assert warm.read("outputs/total/o") == b"16" and obj.exists()


def test_a_warm_go_restores_a_deleted_working_copy_output(warm):
    (warm.path / "outputs" / "total" / "o").unlink()
    res = warm.go()
    assert res["status"] == "ok"
    assert warm.read("outputs/total/o") == FLOWS_OUTPUTS["total"]


# -- one execution key, two dataflows ---------------------------------------------------------------
def test_two_dataflows_with_one_execution_key_execute_it_once(tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "twins", tmp_path / "t")
    res = p.go("-j", "2")
    assert res["status"] == "ok" and "c" in res["executed"]
    assert sorted(res["executed"] + res["cached"]) == ["a", "b", "c"]
    assert p.db("SELECT COUNT(*) FROM executions WHERE dataflow IN ('a', 'b')") == [(1,)]
    assert p.read("outputs/a/o") == p.read("outputs/b/o") == b'"ABC"'
    assert p.read("outputs/c/o") == b'"ABC""ABC"'


def test_forcing_two_dataflows_with_one_execution_key_neither_fails_nor_crashes(
        tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "twins", tmp_path / "t")
    p.go("-j", "2")
    r = p.e3("--json", "go", "-j", "2", "--force")
    assert r.code == 0 and "internal error" not in r.err, r
    assert r.json["failed"] == [] and "c" in r.json["executed"]
    assert p.read("outputs/c/o") == b'"ABC""ABC"'


# -- usage errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("args, words", [
    (("repot",), "did you mean 'report'"),
    (("--filter", "zz*"), "zz*"),
    (("--executor", "dask-ish"), "unknown executor"),
])
def test_a_bad_target_filter_or_executor_is_a_one_line_usage_error(cold, args, words):
    p, _ = cold
    r = p.e3("go", *args)
    assert r.code == 2, r
    assert words in r.err and len(r.err.strip().splitlines()) == 1


# -- the warm path: a provable no-op answered from the last settled run ------------------------------
@pytest.fixture
def decisions():
    """How each in-process run (`go_here`) decided, from its event log: warm (answered from
    the last settled run, no tree read), incremental or full."""
    return []


def go_here(p: Proj, *targets, pattern=None, warm_path=True, force=False,
            decisions: list | None = None) -> dict:
    """`e3 go` through the Python API in this process (its event log says how it decided)."""
    from e3logic.api import Repo
    from e3logic.dataflow.go import Go

    g = Go(Repo.open(str(p.path)), targets, pattern, cap=2, executor="threads", force=force)
    g.warm_path = warm_path
    res = g()
    if decisions is not None:
        decisions.append(g.events.last("decided")["path"])
    res["events"] = g.events
    return res


# a run's receipt rows: its own, or (a warm no-op) those of the run it repeats, each cached
RECEIPT_ROWS = ("SELECT r.dataflow, r.key, r.output_hash, CASE WHEN p.receipt_of IS NULL THEN "
                "r.outcome ELSE 'cached' END, r.size FROM runs p JOIN receipts r ON r.run = "
                "COALESCE(p.receipt_of, p.run) WHERE p.run=? ORDER BY r.seq")
SAME = ("status", *LISTS, "state_root", "receipt", "commit", "parent", "policy", "stale")


@pytest.mark.parametrize("targets, pattern", [((), None), (("final",), None),
                                              (("outputs/upper/o", "side"), None), ((), "s*")])
def test_a_warm_no_op_gives_the_receipt_root_and_commit_the_full_prediction_gives(
        warm, tmp_path, decisions, targets, pattern):
    if targets or pattern:  # a first run with this selection (the cold run selected everything)
        warm.go(*targets, *(("--filter", pattern) if pattern else ()))
    twin = Proj(shutil.copytree(warm.path, tmp_path / "twin", symlinks=True))
    fast = go_here(warm, *targets, pattern=pattern, decisions=decisions)
    assert decisions == ["warm"]  # answered from the last run: no tree was read to decide
    full = go_here(twin, *targets, pattern=pattern, warm_path=False, decisions=decisions)
    assert decisions == ["warm", "full"]
    assert {k: fast[k] for k in SAME} == {k: full[k] for k in SAME}
    assert fast["executed"] == [] and fast["cached"] and fast["cached"] == full["cached"]
    assert warm.db(RECEIPT_ROWS, (fast["run"],)) == twin.db(RECEIPT_ROWS, (full["run"],))
    # the warm answer keeps no rows of its own: those of the run it repeats stand for them
    assert warm.db("SELECT COUNT(*) FROM receipts WHERE run=?", (fast["run"],)) == [(0,)]
    assert warm.db("SELECT settled FROM runs WHERE run=?", (fast["run"],)) == [(1,)]
    assert twin.db("SELECT settled FROM runs WHERE run=?", (full["run"],)) == [(1,)]
    # a warm answer is settled in its turn
    again = go_here(warm, *targets, pattern=pattern, decisions=decisions)
    assert decisions[-1] == "warm" and again["parent"] == fast["commit"]
    # (a no-op repeating a no-op: its receipt rows are copied and its digest reused)
    assert again["receipt"] == fast["receipt"]
    assert warm.db(RECEIPT_ROWS, (again["run"],)) == warm.db(RECEIPT_ROWS, (fast["run"],))


def test_a_settled_run_records_its_package_and_every_output_size(cold):
    p, res = cold
    assert p.db("SELECT status, settled, package IS NOT NULL FROM runs WHERE run=?",
                (res["run"],)) == [("ok", 1, 1)]
    sizes = dict(p.db("SELECT dataflow, size FROM receipts WHERE run=?", (res["run"],)))
    assert sizes == {n: len(FLOWS_OUTPUTS[n]) for n in FLOWS}


def test_a_failed_run_is_not_settled_and_the_next_run_decides_in_full(warm, decisions):
    original = warm.read("inputs/flag")
    warm.set_json("inputs/flag", "fail")
    failed = warm.go(code=1)
    assert warm.db("SELECT settled FROM runs WHERE run=?", (failed["run"],)) == [(0,)]
    warm.write("inputs/flag", original)  # back to the root of the last settled run
    res = go_here(warm, decisions=decisions)
    assert decisions == ["full"]
    assert lists(res) == {"cached": FLOWS}


@pytest.mark.parametrize("change", ["selection", "filter", "package", "force"])
def test_another_selection_package_or_force_decides_in_full(warm, decisions, change):
    if change == "selection":
        res = go_here(warm, "upper", decisions=decisions)
        assert lists(res) == {"cached": ["norm", "upper"]}
    elif change == "filter":
        res = go_here(warm, pattern="c*", decisions=decisions)
        assert lists(res) == {"cached": ["check", "combine", "count"]}
    elif change == "package":  # same datasets root, another package version
        assert warm.e3("commit", "--patch", "-m", "same data").code == 0
        res = go_here(warm, decisions=decisions)
        assert lists(res) == {"cached": FLOWS}
    else:
        res = go_here(warm, force=True, decisions=decisions)
        assert lists(res) == {"executed": FLOWS}
    assert decisions == ["full"]


@pytest.mark.parametrize("warm_runs", [0, 2])
def test_a_memo_entry_changed_since_the_last_run_is_followed_not_the_old_receipt(warm, warm_runs):
    total, peak = warm.file_hash("outputs/total/o"), warm.file_hash("outputs/peak/o")
    import sqlite3

    for _ in range(warm_runs):  # each finds the memo as the run before left it: not read
        last = warm.go()
    if warm_runs:
        gen = warm.db("SELECT CAST(value AS INTEGER) FROM meta WHERE key='memo_gen'")[0][0]
        assert warm.db("SELECT memo_gen FROM runs WHERE run=?", (last["run"],)) == [(gen,)]

    with sqlite3.connect(warm.path / ".e3" / "index.db") as con:  # as a forced rerun elsewhere would
        con.execute("UPDATE memo SET output_hash=? WHERE output_hash=? AND dataflow='total'",
                    (peak, total))
    res = warm.go()
    assert "total" in res["cached"] and "report" in res["executed"]
    assert warm.read("outputs/total/o") == b"9"


def test_a_warm_go_restores_an_edited_working_copy_output(warm):
    warm.write("outputs/scaled/o", b"1000")
    res = warm.go()
    assert lists(res) == {"cached": FLOWS}
    assert warm.read("outputs/scaled/o") == FLOWS_OUTPUTS["scaled"]


def test_a_warm_no_op_imports_no_heavy_library(warm):
    import subprocess
    import sys

    from tests.helpers import e3_env

    heavy = ("anyio", "rich", "sqlite_utils", "lark", "networkx", "kanren", "pyDatalog",
             "numpy", "e3logic.exec.executor", "e3logic.plan")
    code = ("import atexit, sys\n"
            f"atexit.register(lambda: print('LOADED', [m for m in {heavy!r} if m in sys.modules],"
            " file=sys.stderr))\n"
            "from e3logic.cli.main import main\n"
            "main(['--json', 'go'])\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=warm.path, env=e3_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "LOADED []"


def test_an_incremental_run_is_settled_so_the_next_go_answers_warm(warm, decisions):
    warm.set_json("inputs/k", 3)
    res = warm.go()
    assert res["executed"] and warm.db("SELECT settled FROM runs WHERE run=?",
                                       (res["run"],)) == [(1,)]
    # its new memo rows changed no key's output: its receipt is known to be in the memo at
    # this generation, so the warm answer need not join it with the memo again
    gen = warm.db("SELECT CAST(value AS INTEGER) FROM meta WHERE key='memo_gen'")[0][0]
    assert warm.db("SELECT memo_gen FROM runs WHERE run=?", (res["run"],)) == [(gen,)]
    again = go_here(warm, decisions=decisions)
    assert decisions == ["warm"]
    assert lists(again) == {"cached": FLOWS} and again["state_root"] == res["state_root"]
    assert warm.read("outputs/scaled/o") == b"27"


def test_an_incremental_run_settles_from_what_changed_and_records_what_a_full_check_does(
        warm, tmp_path):
    warm.set_json("inputs/k", 3)
    twin = Proj(shutil.copytree(warm.path, tmp_path / "twin", symlinks=True))
    fast = go_here(warm)
    full = go_here(twin, warm_path=False)
    assert fast["events"].last("decided")["path"] == "incremental"
    assert full["events"].last("decided")["path"] == "full"
    # only the dataflows whose paths changed since the settled run were checked
    assert fast["events"].last("settled") == {"walked": False, "checked": sorted(
        ["combine", "final", "report", "scaled", "side"])}
    # a full check reads every dataset of the root
    assert full["events"].last("settled") == {"walked": True, "checked": FLOWS}
    assert fast["executed"] == full["executed"] != []
    assert {k: fast[k] for k in SAME} == {k: full[k] for k in SAME}
    assert warm.db(RECEIPT_ROWS, (fast["run"],)) == twin.db(RECEIPT_ROWS, (full["run"],))
    # an incremental run's rows are its own (those it kept copied from the settled run)
    assert warm.db("SELECT COUNT(*) FROM receipts WHERE run=?", (fast["run"],)) == [(len(FLOWS),)]
    assert warm.db("SELECT settled FROM runs WHERE run=?", (fast["run"],)) == [(1,)]
    assert twin.db("SELECT settled FROM runs WHERE run=?", (full["run"],)) == [(1,)]


def test_one_go_called_twice_reads_the_settled_run_afresh_each_time(warm):
    from e3logic.api import Repo
    from e3logic.dataflow.go import Go

    g = Go(Repo.open(str(warm.path)), (), None, cap=2, executor="threads")
    warm.set_json("inputs/k", 3)
    first = g()
    warm.set_json("inputs/k", 4)
    second = g()
    assert first["executed"] and second["executed"] == first["executed"]
    assert second["parent"] == first["commit"] and second["state_root"] != first["state_root"]
    assert warm.db("SELECT settled FROM runs WHERE run=?", (second["run"],)) == [(1,)]
    third = go_here(warm)
    assert lists(third) == {"cached": FLOWS} and third["state_root"] == second["state_root"]


def test_a_run_is_decided_with_cyclic_gc_paused_and_it_resumes_afterwards(warm):
    import gc

    from e3logic.dataflow import go as go_mod

    warm.set_json("inputs/k", 5)  # something to decide in full
    assert gc.isenabled()
    res = go_here(warm, warm_path=False)
    assert res["events"].last("decided")["collecting"] is False and gc.isenabled()
    assert res["executed"]
    with pytest.raises(RuntimeError):
        with go_mod.gc_paused():
            raise RuntimeError("boom")
    assert gc.isenabled()


def test_a_run_calls_its_freeze_hook_once_decided_and_before_it_executes(warm):
    from e3logic.api import Repo
    from e3logic.dataflow.go import Go

    import gc

    seen = []
    g = Go(Repo.open(str(warm.path)), (), None, cap=2, executor="threads",
           freeze=lambda: seen.append((list(g.events.kinds()), gc.isenabled())))
    warm.set_json("inputs/k", 6)
    res = g()
    assert res["executed"] and gc.isenabled()
    # once after the decision, collection still paused (the decision is not collected once
    # more), then before execution (the plan and jobs made since)
    assert seen == [(["decided"], False), (["decided", "started", "planned"], True)]


def test_a_warm_run_calls_its_freeze_hook_once_answered_before_collection_resumes(warm):
    import gc

    from e3logic.api import Repo
    from e3logic.dataflow.go import Go

    seen = []
    g = Go(Repo.open(str(warm.path)), (), None, cap=2, executor="threads",
           freeze=lambda: seen.append((list(g.events.kinds()), gc.isenabled())))
    res = g()
    assert res["cached"] and not res["executed"] and g.events.last("decided")["path"] == "warm"
    assert seen == [(["decided", "finished", "committed"], False)] and gc.isenabled()


def test_a_run_leaves_an_embedding_programs_frozen_objects_frozen(warm):
    import gc

    gc.freeze()
    try:
        before = gc.get_freeze_count()
        warm.set_json("inputs/k", 7)
        assert go_here(warm)["executed"]
        # not thawed (a few frozen objects may be freed meanwhile), nothing of the run added
        assert before * 0.9 < gc.get_freeze_count() <= before
    finally:
        gc.unfreeze()


def test_gc_between_warm_runs_keeps_what_the_warm_answer_relies_on(warm, decisions):
    warm.go()
    r = warm.e3("--json", "gc", "--min-age", "0")
    assert r.code == 0, r
    res = go_here(warm, decisions=decisions)
    assert decisions == ["warm"] and lists(res) == {"cached": FLOWS}
    assert warm.e3("--json", "fsck").json["ok"]
    for name, want in FLOWS_OUTPUTS.items():
        assert warm.read(f"outputs/{name}/o") == want, name


@pytest.mark.parametrize("edit", [("inputs/k", 3), ("inputs/nums", [3, 9, 5])])
def test_after_an_edit_only_the_dirty_closure_is_predicted_and_the_answer_is_the_full_ones(
        warm, tmp_path, edit):
    warm.set_json(*edit)
    twin = Proj(shutil.copytree(warm.path, tmp_path / "twin", symlinks=True))
    fast = go_here(warm)
    full = go_here(twin, warm_path=False)
    looked = [r["events"].last("decided")["observed"] for r in (fast, full)]
    assert looked[0] < len(FLOWS) == looked[1]  # the edit's closure only
    assert {k: fast[k] for k in SAME if k != "parent"} == \
        {k: full[k] for k in SAME if k != "parent"}
    assert warm.db(RECEIPT_ROWS, (fast["run"],)) == twin.db(RECEIPT_ROWS, (full["run"],))


def test_an_output_changed_in_the_root_is_decided_in_full_and_put_back(warm):
    from e3logic.api import Repo
    from e3logic.repo.trees import blob_entry

    r = Repo.open(str(warm.path)).r
    h = r.objects.write(b"tampered")
    Repo.open(str(warm.path)).workspaces.update_root(
        "main", lambda old: r.trees.set_many(old, {"outputs/peak/o": blob_entry(h, 8)}))
    res = go_here(warm)
    decided = res["events"].last("decided")
    assert decided["path"] == "full" and decided["observed"] == len(FLOWS)
    assert lists(res) == {"cached": FLOWS}
    assert warm.read("outputs/peak/o") == FLOWS_OUTPUTS["peak"]
