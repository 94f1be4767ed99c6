"""`dataflow.adhoc.run_task` (`e3 run PKG/TASK INPUT... -o OUT`): one memoized execution of a
package's task on files, sharing the memo with `e3 go`."""
from __future__ import annotations

import pytest

from e3logic.core.errors import NotFound, TaskFailed, UsageError
from e3logic.core.hashing import hash_bytes
from e3logic.dataflow.adhoc import run_task
from tests.flows import api_project, in_process_go, write_flows


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    d = tmp_path_factory.mktemp("adhoc")
    return api_project(d / "p", write_flows(d / "src"), "flows")


def executions(api, key):
    return [r[0] for r in api.r.index.execute("SELECT status FROM executions WHERE key=? "
                                              "ORDER BY id", (key,))]


def test_a_python_task_runs_once_then_answers_from_the_memo_until_forced(api, tmp_path):
    (tmp_path / "n.json").write_text("[5, 6]")
    first = run_task(api, "flows/total", [str(tmp_path / "n.json")], str(tmp_path / "a"))
    assert first["cached"] is False
    assert (tmp_path / "a").read_bytes() == b"11"
    assert first["output_hash"] == hash_bytes(b"11")
    again = run_task(api, "flows@0.1.0/total", [str(tmp_path / "n.json")], str(tmp_path / "b"))
    assert again["cached"] is True and again["execution"] == first["execution"]
    assert (tmp_path / "b").read_bytes() == b"11"
    forced = run_task(api, "flows/total", [str(tmp_path / "n.json")], str(tmp_path / "c"),
                      force=True)
    assert forced["cached"] is False and forced["output_hash"] == first["output_hash"]
    assert executions(api, first["execution"]) == ["ok", "ok"]


def test_shell_and_inline_tasks_run_on_raw_and_json_files(api, tmp_path):
    (tmp_path / "t.txt").write_bytes(b"abc\n")
    run_task(api, "flows/upper", [str(tmp_path / "t.txt")], str(tmp_path / "up"))
    assert (tmp_path / "up").read_bytes() == b"ABC\n"
    (tmp_path / "p.json").write_text("4")
    (tmp_path / "k.json").write_text("5")
    run_task(api, "flows/scale", [str(tmp_path / "p.json"), str(tmp_path / "k.json")],
             str(tmp_path / "s"))
    assert (tmp_path / "s").read_bytes() == b"20"


def test_the_memo_is_shared_with_go_for_the_same_task_and_input_bytes(api, tmp_path):
    in_process_go(api, "total")
    res = run_task(api, "flows/total", [str(api.root / "inputs" / "nums")], str(tmp_path / "o"))
    assert res["cached"] is True
    assert (tmp_path / "o").read_bytes() == b"16"


def test_a_failing_task_raises_naming_its_log_and_is_not_memoized(api, tmp_path):
    (tmp_path / "f.json").write_text('"fail"')
    with pytest.raises(TaskFailed, match=r"ValueError: flag says fail \(steps\.py:\d+\); see 'e3 logs [0-9a-f]{12}'"):
        run_task(api, "flows/check", [str(tmp_path / "f.json")], str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()
    with pytest.raises(TaskFailed):  # not memoized: it runs (and fails) again
        run_task(api, "flows/check", [str(tmp_path / "f.json")], str(tmp_path / "o"))
    key = api.r.index.execute("SELECT key FROM executions WHERE dataflow='flows/check' "
                              "ORDER BY id DESC LIMIT 1").fetchone()[0]
    assert executions(api, key) == ["fail", "fail"]
    assert api.r.index.execute("SELECT COUNT(*) FROM memo WHERE key=?", (key,)).fetchone()[0] == 0


@pytest.mark.parametrize("spec, error, words", [
    ("flows", UsageError, "is not PKG/TASK"),
    ("flows/totl", NotFound, "did you mean 'total'"),
    ("flow/total", NotFound, "flow"),
])
def test_a_bad_spec_is_a_usage_error(api, tmp_path, spec, error, words):
    (tmp_path / "x").write_text("1")
    with pytest.raises(error, match=words):
        run_task(api, spec, [str(tmp_path / "x")], str(tmp_path / "o"))
