"""`exec.memo`: execution keys, the memo (failures never memoized), the append-only execution
history and the consumed/produced provenance rows."""
from __future__ import annotations

import pytest

from e3logic.exec.memo import ExecutionRecord, Memo, execution_key
from e3logic.repo.index import IndexDB


@pytest.fixture
def memo(tmp_path):
    return Memo(IndexDB(tmp_path / "index.db"))


def rec(key="k1", status="ok", dataflow="d", task="t", out="o1", started=10.0, ended=12.0,
        inputs=(("inputs/x", "hx"),), **kw):
    return ExecutionRecord(key=key, task_hash=task, dataflow=dataflow, run="r1", workspace="main",
                           status=status, started=started, ended=ended,
                           output_hash=out if status == "ok" else None,
                           output_format="raw" if status == "ok" else None,
                           inputs=inputs, output_path=f"outputs/{dataflow}/o", **kw)


def record(memo, *recs):
    with memo.db.transaction() as c:
        for r in recs:
            memo.record(c, r)


def test_the_execution_key_depends_on_the_task_and_the_inputs_in_order():
    k = execution_key("t", ["a", "b"])
    assert k == execution_key("t", ("a", "b"))
    assert len(k) == 64
    assert k != execution_key("t", ["b", "a"])
    assert k != execution_key("u", ["a", "b"])
    assert k != execution_key("t", ["a", "b", "c"])
    assert execution_key("t", ["ab"]) != execution_key("t", ["a", "b"])


def test_a_successful_execution_is_memoized_with_its_output_and_duration(memo):
    record(memo, rec())
    hit = memo.lookup("k1")
    assert (hit.output_hash, hit.output_format, hit.duration) == ("o1", "raw", 2.0)
    assert memo.lookup("nope") is None


def test_a_failure_is_recorded_in_the_history_but_never_memoized(memo):
    record(memo, rec(status="fail", error="exit 3", exit_code=3))
    assert memo.lookup("k1") is None
    rows = memo.db.query("SELECT status, exit_code, error, host FROM executions")
    assert [(r["status"], r["exit_code"], r["error"]) for r in rows] == [("fail", 3, "exit 3")]
    assert rows[0]["host"]
    assert memo.provenance("k1") == {"inputs": [], "outputs": []}


def test_reexecuting_appends_to_the_history_and_keeps_one_memo_row(memo):
    record(memo, rec(status="cxl"), rec(), rec(started=20.0, ended=20.5))
    assert [r[0] for r in memo.db.execute("SELECT status FROM executions ORDER BY id")] == \
        ["cxl", "ok", "ok"]
    assert memo.db.execute("SELECT COUNT(*) FROM memo").fetchone()[0] == 1
    assert memo.lookup("k1").duration == 0.5


def test_a_group_of_executions_recorded_together_equals_recording_them_one_by_one(tmp_path):
    recs = [rec(status="cxl"), rec(key="k2", dataflow="e", out="o2"), rec(),
            rec(key="k3", status="fail", error="exit 1"), rec(started=20.0, ended=20.5)]
    dumps = []
    for i, one_by_one in enumerate((True, False)):
        m = Memo(IndexDB(tmp_path / f"{i}.db"))
        with m.db.transaction() as c:
            if one_by_one:
                for r in recs:
                    m.record(c, r)
            else:
                m.record_many(c, recs)
        dumps.append([m.db.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3").fetchall()
                      for t in ("executions", "memo", "provenance")])
    assert dumps[0] == dumps[1]
    assert [r[1] for r in dumps[1][0]] == ["k1", "k2", "k1", "k3", "k1"]  # in order


def test_provenance_lists_the_consumed_inputs_in_order_and_the_produced_output(memo):
    record(memo, rec(inputs=(("inputs/b", "hb"), ("inputs/a", "ha"))))
    assert memo.provenance("k1") == {"inputs": [("inputs/b", "hb"), ("inputs/a", "ha")],
                                     "outputs": [("outputs/d/o", "o1")]}
    assert memo.producer_of("outputs/d/o", "o1") == "k1"
    assert memo.producer_of("outputs/d/o", "other") is None


def test_lookup_many_answers_more_keys_than_one_sql_statement_holds(memo):
    record(memo, *[rec(key=f"k{i}", out=f"o{i}") for i in range(1200)])
    hits = memo.lookup_many([f"k{i}" for i in range(0, 1300, 3)])
    assert len(hits) == 400
    assert hits["k999"].output_hash == "o999"


def test_cost_estimates_are_the_median_of_successful_durations_per_task(memo):
    record(memo, rec(key="a", ended=11.0), rec(key="b", ended=13.0), rec(key="c", ended=20.0),
           rec(key="d", status="fail", ended=100.0), rec(key="e", task="u", ended=10.5))
    assert memo.durations(["t", "u", "unknown"]) == {"t": 3.0, "u": 0.5}
