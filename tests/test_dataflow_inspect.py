"""`dataflow.inspect`: which log `e3 logs` shows, `e3 stats` figures, `e3 cancel` requests."""
from __future__ import annotations

import pytest

from e3logic.api import Repo
from e3logic.core.errors import NotFound, UsageError
from e3logic.dataflow.inspect import log_of, request_cancel, stats
from tests.flows import api_project, in_process_go, write_flows


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    d = tmp_path_factory.mktemp("inspect")
    api = api_project(d / "p", write_flows(d / "src"), "flows")
    cold = in_process_go(api)
    warm = in_process_go(api)
    return api, cold, warm


@pytest.fixture
def empty(tmp_path):
    return Repo.init(tmp_path / "e")


def test_a_dataflows_log_is_that_of_its_latest_execution(ran):
    api, _, _ = ran
    key, path = log_of(api, "total")
    assert path == api.r.logs_dir / f"{key}.log"
    assert path.read_text() == "total of 3 numbers\ntotal-stderr\n"
    assert api.r.index.execute("SELECT dataflow FROM executions WHERE key=?",
                               (key,)).fetchone()[0] == "total"


def test_an_execution_key_prefix_finds_the_same_log(ran):
    api, _, _ = ran
    key, _ = log_of(api, "side")
    assert log_of(api, key[:10]) == log_of(api, "side")


def test_no_name_means_the_latest_execution_of_all(ran):
    api, _, _ = ran
    last = api.r.index.execute("SELECT key FROM executions ORDER BY id DESC LIMIT 1").fetchone()[0]
    assert log_of(api, None)[0] == last


def test_an_unknown_name_suggests_a_near_miss_and_an_empty_repo_says_go_first(ran, empty):
    api, _, _ = ran
    with pytest.raises(NotFound, match="did you mean 'total'"):
        log_of(api, "totl")
    with pytest.raises(UsageError, match="e3 go"):
        log_of(empty, None)


def test_stats_count_receipts_of_every_run_and_the_work_saved(ran):
    api, _, _ = ran
    s = stats(api)
    assert (s["executed"], s["cached"], s["hit_ratio"], s["runs"]) == (12, 12, 0.5, 2)
    assert s["work_saved"] == pytest.approx(s["work_done"], abs=1e-5)  # everything hit once
    assert s["work_saved"] > 0


def test_stats_of_a_repository_that_never_ran_are_zero(empty):
    assert stats(empty) == {"hit_ratio": 0.0, "executed": 0, "cached": 0, "work_saved": 0,
                            "work_done": 0, "runs": 0}


def test_cancel_marks_only_running_runs_and_names_an_unknown_one(ran, empty):
    api, cold, _ = ran
    assert request_cancel(api, None) == []           # nothing running
    assert request_cancel(api, cold["run"]) == []     # finished: nothing to cancel
    with pytest.raises(NotFound):
        request_cancel(api, "r99")
    db = empty.r.index
    with db.transaction() as c:
        c.execute("INSERT INTO runs(run, workspace, seq, status, cancel_requested) "
                  "VALUES ('r1','main',1,'running',0), ('r2','main',2,'ok',0)")
    assert request_cancel(empty, None) == ["r1"]
    assert db.execute("SELECT run FROM runs WHERE cancel_requested=1").fetchall() == [("r1",)]


@pytest.fixture(scope="module")
def broke(tmp_path_factory):
    """flows run cold, then with `check` failing, then with its input missing."""
    d = tmp_path_factory.mktemp("inspect-fail")
    api = api_project(d / "p", write_flows(d / "src"), "flows")
    in_process_go(api)
    (api.root / "inputs" / "flag").write_text('"fail"')
    failed = in_process_go(api, "check")
    return api, failed


def test_a_failed_dataflows_view_has_its_failing_execution_and_the_reason(broke):
    from e3logic.dataflow.inspect import latest_outcome, log_view

    api, failed = broke
    outcome, key, reason = latest_outcome(api, "check")
    assert outcome == "failed" and reason.startswith("ValueError: flag says fail (steps.py:")
    assert reason == failed["reasons"]["check"]
    view = log_view(api, "check")
    assert view == {"execution": key, "path": api.r.logs_dir / f"{key}.log", "reason": reason}
    assert view["path"].read_text().endswith("ValueError: flag says fail\n")
    assert log_view(api, "total")["reason"] is None
    assert latest_outcome(api, "nosuch") == (None, None, None)


def test_a_dataflow_of_the_package_that_never_ran_is_a_usage_error_saying_so(tmp_path):
    from e3logic.dataflow.inspect import log_view

    api = api_project(tmp_path / "p", write_flows(tmp_path / "src"), "flows")
    with pytest.raises(UsageError, match="dataflow 'after' has not run yet; 'e3 go after'"):
        log_view(api, "after")
    with pytest.raises(NotFound, match="did you mean 'after'"):
        log_view(api, "aftr")
