"""repo.journal: the Journal, the only code that reads and writes index.db's rows — memo,
executions, provenance, runs, receipts, episodes, history, awaits, process groups, facts, the
working-copy stat cache and the flush — in small methods named for what they mean, each as
atomic as one transaction and, where rows feed identities, ordered."""
from __future__ import annotations

import multiprocessing as mp
from types import SimpleNamespace

import pytest

from e3logic.exec.episodes import Episode, take_rows, write_rows
from e3logic.exec.memo import ExecutionRecord
from e3logic.repo.index import IndexDB
from e3logic.repo.journal import CHUNK, Journal, write_executions

HOST = "host-a"


@pytest.fixture
def path(tmp_path):
    return tmp_path / "index.db"


@pytest.fixture
def j(path):
    db = IndexDB(path)
    yield Journal(db)
    db.close()


def rec(key="k1", status="ok", dataflow="d", task="t", out="o1", started=10.0, ended=12.0,
        inputs=(("inputs/x", "hx"),), run="r1"):
    return ExecutionRecord(key=key, task_hash=task, dataflow=dataflow, run=run, workspace="main",
                           status=status, started=started, ended=ended,
                           output_hash=out if status == "ok" else None,
                           output_format="raw" if status == "ok" else None,
                           error=None if status == "ok" else "boom", inputs=inputs,
                           output_path=f"outputs/{dataflow}/o")


def rows(j, sql, args=()):
    return j.index.execute(sql, args).fetchall()


def receipt(*items):
    return [{"dataflow": d, "key": f"k-{d}", "output": f"h-{d}", "outcome": o} for d, o in items]


def walked(name, run, dataflow, *states):
    e = Episode(name, run, dataflow, "key-" + dataflow)
    for i, s in enumerate(states):
        e.move(s, i, f"n{i}", clock=lambda: 1.0)
    return e


# -- where it lives -------------------------------------------------------------------------
def test_a_repository_and_an_index_hand_out_a_journal_over_the_same_connection(tmp_path):
    from e3logic.repo.repository import Repository

    repo = Repository.init(tmp_path / "p")
    assert isinstance(repo.journal, Journal)
    assert repo.journal.index is repo.index
    assert repo.index.journal.index is repo.index


# -- meta and the working copy ----------------------------------------------------------------
def test_a_sync_is_pending_from_its_begin_until_its_end_moves_the_synced_root(j):
    assert j.synced_root() is None and j.sync_target() is None
    j.begin_sync("root-b")
    assert j.sync_target() == "root-b"
    j.end_sync("root-b")
    assert (j.synced_root(), j.sync_target()) == ("root-b", None)
    j.begin_sync("root-c")
    j.cancel_sync()
    assert (j.synced_root(), j.sync_target()) == ("root-b", None)


def test_the_index_meta_accessors_are_the_journals(j):
    j.index.set_meta("k", "v")
    assert j.get_meta("k") == "v" == j.index.get_meta("k")
    j.delete_meta("k")
    assert j.index.get_meta("k") is None


def test_the_stat_cache_answers_a_folder_by_a_range_of_paths_and_forgets_dropped_paths(j):
    j.remember_stats([("inputs/a", 1, 2, 3, "ha"), ("inputs/b/c", 4, 5, 6, "hc"),
                      ("inputs0", 0, 0, 0, "x"), ("outputs/d", 7, 8, 9, "hd")])
    assert list(j.stat_cache("inputs")) == ["inputs/a", "inputs/b/c"]
    assert j.stat_cache("outputs") == {"outputs/d": (7, 8, 9, "hd")}
    j.remember_stats([("inputs/a", 1, 2, 3, "ha2")], drop=["inputs/b/c", "outputs/d"])
    assert j.stat_cache() == {"inputs/a": (1, 2, 3, "ha2"), "inputs0": (0, 0, 0, "x")}


# -- memo, executions, provenance -------------------------------------------------------------
def test_a_success_is_memoized_with_its_provenance_and_a_failure_only_in_the_history(j):
    j.record_executions([rec(), rec(key="k2", status="fail")], HOST)
    assert j.memo_lookup("k1") == ("o1", "raw", 2.0)
    assert j.memo_lookup("k2") is None
    assert rows(j, "SELECT key, status, host FROM executions ORDER BY id") == \
        [("k1", "ok", HOST), ("k2", "fail", HOST)]
    assert j.provenance("k1") == [("in", 0, "inputs/x", "hx"), ("out", 0, "outputs/d/o", "o1")]
    assert j.provenance("k2") == []


def test_memo_lookups_by_key_and_by_task_answer_more_than_one_statement_holds(j):
    n = CHUNK * 2 + 7
    j.record_executions([rec(key=f"k{i:04}", task=f"t{i % 3}", out=f"o{i}") for i in range(n)],
                        HOST)
    hits = j.memo_lookup_many([f"k{i:04}" for i in range(0, n + 40, 2)])
    assert len(hits) == (n + 1) // 2 and hits["k1000"] == ("o1000", "raw", 2.0)
    by_task = j.memo_by_tasks(["t0", "t2", "t0", "nope"])
    assert len(by_task) == len([i for i in range(n) if i % 3 in (0, 2)])
    assert list(by_task) == sorted(by_task)


def test_ok_durations_list_successful_executions_of_each_task_newest_first(j):
    j.record_executions([rec(key="a", ended=11.0), rec(key="b", ended=13.0),
                         rec(key="c", status="fail", ended=99.0), rec(key="d", task="u")], HOST)
    assert j.ok_durations(["t", "u", "x"]) == {"t": [3.0, 1.0], "u": [2.0]}


def test_the_producer_of_an_output_is_the_memoized_execution_that_wrote_it_last(j):
    j.record_executions([rec(key="k1"), rec(key="k2", inputs=(("inputs/y", "hy"),))], HOST)
    assert j.producer_of("outputs/d/o", "o1") == "k2"
    assert j.producer_of("outputs/d/o", "other") is None


def test_dropped_memo_entries_are_gone_and_the_rest_are_listed_by_key(j):
    j.record_executions([rec(key="b", out="ob"), rec(key="a", out="oa"), rec(key="c")], HOST)
    assert j.memo_outputs() == [("a", "oa"), ("b", "ob"), ("c", "o1")]
    j.drop_memo(["a", "c"])
    assert j.memo_outputs() == [("b", "ob")] and j.memo_size() == 1
    assert j.memo_output_hashes() == ["ob"]
    assert j.memo_executions() == [("b", "d", "t")]


def test_the_latest_execution_is_found_by_dataflow_by_key_prefix_or_overall(j):
    j.record_executions([rec(key="aaaa1", dataflow="x"), rec(key="bbbb2", dataflow="y"),
                         rec(key="aaaa3", dataflow="x", status="fail")], HOST)
    assert j.latest_execution_key() == "aaaa3"
    assert j.latest_execution_key("y") == "bbbb2"
    assert j.execution_key_by_prefix("aaaa") == "aaaa3"
    assert j.latest_execution_key("z") is None and j.execution_key_by_prefix("zz") is None
    assert j.executed_dataflows() == ["x", "y"]


# -- the flush ------------------------------------------------------------------------------------
def test_a_flush_writes_executions_episodes_history_and_process_groups_together(j):
    e = walked("r1:d", "r1", "d", "plan", "run", "ok")
    assert j.flush([rec()], take_rows([e]), [("r1", "r1:d", 77, 5)], HOST)
    assert j.memo_lookup("k1") is not None
    assert j.episode_histories("r1")[0]["state"] == "ok"
    assert j.process_groups("r1") == {77: 5}


def test_a_flush_that_fails_part_way_writes_nothing(j):
    bad_history = ([("r1:d", "r1", "d", "k", "ro", "run", None)], [("r1:d", 0, "plan")])
    with pytest.raises(Exception):
        j.flush([rec()], bad_history, [("r1", "r1:d", 77, 5)], HOST)
    assert j.memo_size() == 0 and rows(j, "SELECT COUNT(*) FROM executions") == [(0,)]
    assert j.episode_histories() == [] and j.process_groups("r1") == {}


def test_a_flush_with_nothing_to_write_takes_no_transaction(j, monkeypatch):
    monkeypatch.setattr(Journal, "transaction", lambda self: pytest.fail("a transaction"))
    assert j.flush([], ([], []), [], HOST) is False


def test_the_writers_in_a_callers_transaction_write_what_the_journal_methods_write(tmp_path):
    e = walked("r1:d", "r1", "d", "plan", "run", "yield", "ok")
    dumps = []
    for i, own in enumerate((True, False)):
        db = IndexDB(tmp_path / f"{i}.db")
        ep_rows = take_rows([Episode(**{**e.__dict__, "unflushed": 0})])
        if own:
            Journal(db).record_executions([rec()], HOST)
            Journal(db).record_episode_rows(ep_rows)
        else:
            with db.transaction() as c:
                write_executions(c, [rec()], HOST)
                write_rows(c, ep_rows)
        dumps.append([db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
                      for t in ("executions", "memo", "provenance", "episodes", "history")])
        db.close()
    assert dumps[0] == dumps[1]


# -- runs and receipts ------------------------------------------------------------------------------
def test_runs_are_numbered_in_one_sequence_across_workspaces(j):
    assert [j.start_run(ws, "e3 go", "pkg", now=1.0, pid=1) for ws in ("a", "b", "a")] == \
        ["r1", "r2", "r3"]
    assert j.max_run_seq() == 3 and j.recent_runs(2) == ["r3", "r2"]
    assert j.latest_run_id() == "r3" and j.run_status("r2") == "running"
    assert [r for r, _, _ in j.running_runs("a")] == ["r1", "r3"]
    assert j.run_status("r9") is None


def _start_runs(path, n, q):
    db = IndexDB(path)
    q.put([Journal(db).start_run("main", "e3 go") for _ in range(n)])
    db.close()


def test_runs_started_by_concurrent_processes_get_distinct_consecutive_ids(path):
    IndexDB(path).close()
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_start_runs, args=(path, 10, q)) for _ in range(4)]
    for p in procs:
        p.start()
    ids = [r for _ in procs for r in q.get(timeout=60)]
    for p in procs:
        p.join(60)
    assert sorted(ids, key=lambda r: int(r[1:])) == [f"r{i}" for i in range(1, 41)]


def test_ending_a_run_closes_its_row_and_writes_its_receipt_in_order(j):
    run = j.start_run("main", "e3 go", "pkg")
    assert j.end_run(run, "ok", commit="c1", state_root="s1", receipt_digest="rd",
                     parent="", policy="{}", receipt=receipt(("b", "executed"), ("a", "cached")),
                     sizes={"a": 3, "b": 4}, now=9.0)
    assert j.latest_run("main") == (run, "ok", 1, "pkg", "s1", "{}")
    assert j.settled_receipt(run) == [("b", "k-b", "h-b", 4, None, None, "executed"),
                                      ("a", "k-a", "h-a", 3, None, None, "cached")]
    assert j.receipt_digest(run) == "rd"
    assert j.receipt_outputs(run) == ["h-b", "h-a"]
    assert j.parent_commit("main") == "c1" and j.parent_commit("other") == ""


def test_a_run_without_sizes_is_not_settled_and_its_receipt_shows_the_memo_now(j):
    j.record_executions([rec(key="k-a", out="h-a", dataflow="a")], HOST)
    run = j.start_run("main")
    j.end_run(run, "ok", commit="c", state_root="s", receipt=receipt(("a", "executed")))
    assert j.latest_run("main")[2] == 0
    assert j.settled_receipt(run) == [("a", "k-a", "h-a", None, "h-a", "raw", "executed")]


def test_a_repeating_run_reads_as_the_rows_of_the_run_it_repeats_each_cached(j):
    first = j.start_run("main")
    j.end_run(first, "ok", receipt=receipt(("b", "executed"), ("a", "failed")),
              sizes={"a": 3, "b": 4})
    again = j.start_run("main")
    assert j.end_run(again, "ok", receipt_digest="rd2", sizes={"a": 3, "b": 4},
                     receipt_of=first)
    want = [("b", "k-b", "h-b", 4, None, None, "cached"), ("a", "k-a", "h-a", 3, None, None,
                                                           "cached")]
    assert j.settled_receipt(again) == want
    assert rows(j, "SELECT COUNT(*) FROM receipts WHERE run=?", (again,)) == [(0,)]  # none copied
    assert j.receipt_keys(again) == {"b": "k-b", "a": "k-a"}
    assert j.receipt_outputs(again) == ["h-b", "h-a"] and j.failed_in_run(again) == []
    assert j.settled_receipt(first)[0][-1] == "executed"  # the original rows stay as they were
    # a repeat of the repeat names the run holding the rows; one not settled shows no sizes
    third = j.start_run("main")
    j.end_run(third, "ok", receipt_of=again, sizes={"a": 3, "b": 4})
    assert rows(j, "SELECT receipt_of FROM runs WHERE run=?", (third,)) == [(first,)]
    assert j.settled_receipt(third) == want
    unsettled = j.start_run("main")
    j.end_run(unsettled, "ok", receipt_of=third)
    assert [r[3] for r in j.settled_receipt(unsettled)] == [None, None]
    # an incremental run after a repeat copies the rows from the run holding them
    inc = j.start_run("main")
    j.end_run(inc, "ok", receipt=receipt(("b", "cached"), ("a", "executed")),
              sizes={"a": 5, "b": 4}, receipt_of=third, copied={"b"})
    assert j.settled_receipt(inc) == [("b", "k-b", "h-b", 4, None, None, "cached"),
                                      ("a", "k-a", "h-a", 5, None, None, "executed")]
    # stats count a repeat's rows as cached
    assert j.stats()["cached"] == 2 * 3 + 1


def test_an_incremental_run_copies_the_rows_it_kept_and_writes_the_others(j):
    first = j.start_run("main")
    j.end_run(first, "ok", receipt=receipt(("a", "executed"), ("b", "executed")),
              sizes={"a": 3, "b": 4})
    then = j.start_run("main")
    rows_ = receipt(("a", "cached"), ("b", "executed"))
    rows_[1]["output"] = "h-b2"
    assert j.end_run(then, "ok", receipt=rows_, sizes={"a": 3, "b": 5}, receipt_of=first,
                     copied={"a"})
    assert j.settled_receipt(then) == [("a", "k-a", "h-a", 3, None, None, "cached"),
                                       ("b", "k-b", "h-b2", 5, None, None, "executed")]
    # not settled: no size, copied or written
    late = j.start_run("main")
    j.end_run(late, "failed", receipt=rows_, receipt_of=first, copied={"a"})
    assert [r[3] for r in j.settled_receipt(late)] == [None, None]


def test_the_memo_generation_moves_on_when_what_a_key_maps_to_changes_not_for_a_new_key(j):
    g0 = j.memo_generation()
    j.record_executions([rec(key="k-a", out="h-a", dataflow="a"),
                         rec(key="k-b", out="h-b", dataflow="b")], HOST)
    assert j.memo_generation() == g0  # new keys: what earlier keys map to stands
    j.record_executions([rec(key="k-a", out="h-a", dataflow="a")], HOST)  # the same again
    run = j.start_run("main")
    j.end_run(run, "ok", receipt=receipt(("a", "executed")), sizes={"a": 1})
    assert j.memo_generation() == g0  # nor runs and receipts
    j.record_executions([rec(key="k-a", out="h-a2", dataflow="a")], HOST)  # another output
    g1 = j.memo_generation()
    j.drop_memo(["k-b"])
    g2 = j.memo_generation()
    j.index.execute("UPDATE memo SET output_format='json' WHERE key='k-a'")  # by hand
    assert g0 < g1 < g2 < j.memo_generation()


def test_a_receipt_found_whole_in_the_memo_is_not_joined_again_at_the_same_generation(j):
    j.record_executions([rec(key="k-a", out="h-a", dataflow="a")], HOST)
    first = j.start_run("main")
    j.end_run(first, "ok", receipt=receipt(("a", "executed")), sizes={"a": 1})
    gen = j.memo_generation()
    warm = j.start_run("main")
    j.end_run(warm, "ok", receipt_of=first, sizes={"a": 1}, memo_gen=gen)
    assert j.settled_receipt(warm, gen) == [("a", "k-a", "h-a", 1, "h-a", None, "cached")]
    j.record_executions([rec(key="k-new", out="h-new", dataflow="n")], HOST)
    assert j.settled_receipt(warm, j.memo_generation())[0][5] is None  # a new key: not read
    j.record_executions([rec(key="k-a", out="h-other", dataflow="a")], HOST)
    # the memo moved on: read again, and it no longer agrees
    assert j.settled_receipt(warm, j.memo_generation()) == [
        ("a", "k-a", "h-a", 1, "h-other", "raw", "cached")]
    assert j.settled_receipt(first, gen)[0][4] == "h-other"  # no generation recorded: joined


def test_a_cancelled_run_is_never_overwritten_by_another_status(j):
    run = j.start_run("main")
    assert j.end_run(run, "cancelled", receipt=receipt(("a", "cancelled")))
    assert not j.end_run(run, "ok", commit="c", receipt=receipt(("a", "executed")))
    assert j.run_status(run) == "cancelled"
    assert rows(j, "SELECT outcome FROM receipts") == [("cancelled",)]


def test_failed_dataflows_are_those_of_the_newest_committed_run_of_the_workspace(j):
    r1 = j.start_run("main")
    j.end_run(r1, "failed", commit="c1", receipt=receipt(("b", "failed"), ("a", "failed")))
    j.start_run("main")  # running: no commit yet
    r3 = j.start_run("other")
    j.end_run(r3, "failed", commit="c3", receipt=receipt(("z", "failed")))
    assert j.failed_in_latest_commit("main") == ["b", "a"]


def test_the_base_of_a_workspace_is_its_newest_settled_and_its_newest_finished_run(j):
    r1 = j.start_run("main", package="p")
    j.end_run(r1, "ok", state_root="s1", receipt=receipt(("b", "executed"), ("a", "cached")),
              sizes={"a": 1, "b": 1})
    r2 = j.start_run("main")
    j.end_run(r2, "failed", state_root="s2", receipt=receipt(("b", "failed"), ("a", "failed")))
    j.end_run(j.start_run("main"), "cancelled", receipt=receipt(("c", "failed")))
    assert j.latest_settled_run("main") == (r1, "s1", "p")
    assert list(j.receipt_keys(r1).items()) == [("b", "k-b"), ("a", "k-a")]
    assert j.latest_finished_run("main") == r2 and j.failed_in_run(r2) == ["b", "a"]
    assert j.latest_settled_run("other") is None and j.latest_finished_run("other") is None


def test_the_failure_notes_of_a_run_are_its_episodes_fail_rows_by_episode(j):
    e = walked("r1:a", "r1", "a", "plan", "run", "fail")
    f = walked("r1:b", "r1", "b", "plan", "fail")
    j.record_episode_rows(take_rows([f, e, walked("r2:a", "r2", "a", "plan", "fail")]))
    assert j.failure_notes("r1") == [("a", "n2"), ("b", "n1")]


def test_cancel_is_requested_only_of_the_runs_named(j):
    r1, r2 = j.start_run("main"), j.start_run("main")
    j.request_cancel([r2])
    assert (j.cancel_requested(r1), j.cancel_requested(r2)) == (False, True)
    assert j.cancel_requested("nope") is False


def test_the_newest_running_run_of_a_process_is_found_above_a_seq(j):
    j.start_run("main", pid=1)
    j.start_run("main", pid=2)
    r3 = j.start_run("main", pid=1)
    assert j.newest_running_run(1) == r3
    assert j.newest_running_run(1, after_seq=3) is None
    j.end_run(r3, "ok")
    assert j.newest_running_run(1) == "r1"


def test_gc_keeps_per_workspace_the_newest_the_newest_rooted_and_the_newest_settled_run(j):
    def run(ws, status, root, sizes=None):
        r = j.start_run(ws)
        j.end_run(r, status, state_root=root, receipt=[], sizes=sizes)
        return r

    settled = run("main", "ok", "s1", {"a": 1})
    run("main", "ok", "s2")
    rooted = run("main", "failed", "s3")
    j.start_run("main")                       # newest, running: no state root yet
    other = run("other", "ok", "s5")
    assert j.runs_go_reads() == [(settled, "s1"), (rooted, "s3"), (other, "s5")]


def test_fsck_reads_state_roots_and_mending_one_unsettles_its_run(j):
    r1 = j.start_run("main", package="p1")
    j.end_run(r1, "ok", state_root="s1", receipt=[], sizes={"a": 1})
    r2 = j.start_run("main", package="p2")
    j.end_run(r2, "ok", state_root="s2", receipt=[])
    j.index.execute("UPDATE runs SET pinned=1 WHERE run=?", (r1,))
    assert j.state_roots_of("main") == [(r2, "s2", "p2"), (r1, "s1", "p1")]
    assert j.state_roots() == [(r1, "s1"), (r2, "s2")]
    assert j.pinned_state_roots() == ["s1"]
    j.replace_state_roots([("s1m", r1)])
    assert j.latest_run("main")[0] == r2
    assert rows(j, "SELECT state_root, settled FROM runs WHERE run=?", (r1,)) == [("s1m", 0)]


def test_stats_count_receipt_outcomes_and_the_work_done_and_saved(j):
    j.record_executions([rec(key="k-a", dataflow="a"), rec(key="k-b", ended=15.0)], HOST)
    run = j.start_run("main")
    j.end_run(run, "ok", receipt=receipt(("a", "cached"), ("b", "executed"), ("c", "failed")))
    assert j.stats() == {"executed": 1, "cached": 1, "done": 7.0, "saved": 2.0, "runs": 1}


# -- abandoning a dead engine's run -----------------------------------------------------------------
def test_abandoning_a_run_cancels_its_unfinished_episodes_after_their_last_beat(j):
    run = j.start_run("main")
    eps = [walked(f"{run}:a", run, "a", "plan", "run", "yield"),
           walked(f"{run}:b", run, "b", "plan", "run", "ok"),
           walked(f"{run}:c", run, "c", "plan")]
    j.flush([], take_rows(eps), [(run, f"{run}:a", 50, 1), (run, f"{run}:c", 51, 2)], HOST)
    assert j.abandon_run(run, "abandoned: engine pid 9 died", now=7.0) == [f"{run}:a", f"{run}:c"]
    assert j.run_status(run) == "abandoned"
    got = {e["episode"]: (e["state"], e["history"][-1]) for e in j.episode_histories(run)}
    note = "abandoned: engine pid 9 died"
    assert got == {f"{run}:a": ("cxl", {"state": "cxl", "beat": 2, "note": note}),
                   f"{run}:b": ("ok", {"state": "ok", "beat": 2, "note": "n2"}),
                   f"{run}:c": ("cxl", {"state": "cxl", "beat": 0, "note": note})}
    assert rows(j, "SELECT seq, ts FROM history WHERE episode=? ORDER BY seq DESC LIMIT 1",
                (f"{run}:a",)) == [(3, 7.0)]
    assert j.process_groups(run) == {}


def test_abandoning_writes_the_rows_the_executor_would_have_written_for_a_cxl(j, tmp_path):
    run = j.start_run("main")
    e = walked(f"{run}:a", run, "a", "plan", "run")
    j.record_episode_rows(take_rows([e]))
    j.abandon_run(run, "gone", now=1.0)
    other = Journal(IndexDB(tmp_path / "other.db"))
    e.move("cxl", 1, "gone", clock=lambda: 1.0)
    other.record_episode_rows(take_rows([Episode(**{**e.__dict__, "unflushed": 0})]))
    assert j.episode_histories() == other.episode_histories()
    for table in ("episodes", "history"):
        assert rows(j, f"SELECT * FROM {table} ORDER BY 1, 2") == \
            rows(other, f"SELECT * FROM {table} ORDER BY 1, 2")


def test_abandoning_a_run_that_already_ended_leaves_its_status(j):
    run = j.start_run("main")
    j.end_run(run, "ok")
    assert j.abandon_run(run, "late") == []
    assert j.run_status(run) == "ok"


def test_a_dead_runs_process_groups_are_listed_by_pgid_until_cleared(j):
    j.record_process_groups([("r1", "r1:b", 9, 2), ("r1", "r1:a", 3, 1), ("r2", "x", 4, 0)])
    assert list(j.process_groups("r1").items()) == [(3, 1), (9, 2)]
    j.clear_process_groups("r1")
    assert j.process_groups("r1") == {} and j.process_groups("r2") == {4: 0}


# -- episodes, awaits, facts ------------------------------------------------------------------------
def test_episode_histories_come_by_run_and_name_with_their_states_in_order(j):
    eps = [walked("r2:a", "r2", "a", "plan", "run"), walked("r1:b", "r1", "b", "plan"),
           walked("r1:a", "r1", "a", "plan", "run", "ok")]
    j.record_episode_rows(take_rows(eps))
    assert [e["episode"] for e in j.episode_histories()] == ["r1:a", "r1:b", "r2:a"]
    one = j.episode_histories("r1")
    assert [e["episode"] for e in one] == ["r1:a", "r1:b"]
    assert [h["state"] for h in one[0]["history"]] == ["plan", "run", "ok"]
    assert j.episode_states() == [("r1:a", "a", "ok"), ("r1:b", "b", "plan"),
                                  ("r2:a", "a", "run")]


def test_an_execution_is_running_while_one_of_its_episodes_is_unfinished(j):
    j.record_episode_rows(take_rows([walked("r1:a", "r1", "a", "plan", "run")]))
    assert j.episode_running("key-a") and not j.episode_running("key-b")
    assert j.latest_episode_key("a") == "key-a" and j.latest_episode_key("b") is None
    j.record_episode_rows(take_rows([walked("r1:a", "r1", "a", "plan", "run", "ok")]))
    assert not j.episode_running("key-a")


def test_an_await_is_recorded_once_and_listed_in_order(j):
    for e, a in (("r1:b", "r1:c"), ("r1:a", "r1:b"), ("r1:b", "r1:c")):
        j.record_await(e, a)
    assert j.await_edges() == [("r1:a", "r1:b"), ("r1:b", "r1:c")]


def test_facts_are_kept_per_scope_once_and_read_in_order(j):
    j.store_facts("pkg:1", [("edge", '["b","c"]'), ("dataflow", '["a","t"]'),
                            ("edge", '["a","b"]')])
    j.store_facts("pkg:1", [("edge", '["a","b"]')])
    assert j.facts("pkg:1") == [("dataflow", '["a","t"]'), ("edge", '["a","b"]'),
                                ("edge", '["b","c"]')]
    assert j.facts("pkg:2") == []


def test_the_provenance_rows_are_listed_by_key_role_and_position(j):
    j.record_executions([rec(key="k2", inputs=(("inputs/b", "hb"), ("inputs/a", "ha"))),
                         rec(key="k1")], HOST)
    assert j.provenance_rows() == [
        ("k1", "in", "inputs/x", "hx"), ("k1", "out", "outputs/d/o", "o1"),
        ("k2", "in", "inputs/b", "hb"), ("k2", "in", "inputs/a", "ha"),
        ("k2", "out", "outputs/d/o", "o1")]


# -- atomicity across processes ---------------------------------------------------------------------
def _flush_beats(path, beats, size):
    j = Journal(IndexDB(path))
    for b in range(beats):
        recs = [rec(key=f"k{b}-{i}", run="r1") for i in range(size)]
        eps = ([(f"r1:{b}-{i}", "r1", "d", f"k{b}-{i}", "ro", "ok", None) for i in range(size)],
               [(f"r1:{b}-{i}", 0, "ok", b, "", 0.0) for i in range(size)])
        j.flush(recs, eps, [], HOST)


def test_a_reader_never_sees_part_of_a_beats_flush(path):
    IndexDB(path).close()
    size = 25
    writer = mp.get_context("fork").Process(target=_flush_beats, args=(path, 60, size))
    writer.start()
    reader = Journal(IndexDB(path))
    seen = set()
    while writer.is_alive() or not seen:
        n = reader.index.execute(  # one statement: one snapshot
            "SELECT (SELECT COUNT(*) FROM executions), (SELECT COUNT(*) FROM history)").fetchone()
        assert n[0] % size == 0 and n[0] == n[1], n
        seen.add(n[0])
    writer.join(60)
    assert writer.exitcode == 0
    assert reader.memo_size() == 60 * size


def test_an_ending_runs_status_and_receipt_are_seen_together(path):
    j = Journal(IndexDB(path))
    run = j.start_run("main")
    ctx = mp.get_context("fork")

    def end():
        Journal(IndexDB(path)).end_run(run, "ok", commit="c", state_root="s",
                                       receipt=receipt(*[(f"d{i}", "executed") for i in range(200)]))

    p = ctx.Process(target=end)
    p.start()
    while True:
        status = j.run_status(run)
        n = j.index.execute("SELECT COUNT(*) FROM receipts WHERE run=?", (run,)).fetchone()[0]
        # a read may fall between the two statements: the receipt can only run ahead
        assert status == "ok" or n in (0, 200)
        if status == "ok":
            assert len(j.settled_receipt(run)) == 200
            break
    p.join(60)
    assert p.exitcode == 0


def test_inspect_and_graph_read_through_the_journal(j, tmp_path):
    from e3logic.dataflow import inspect

    api = SimpleNamespace(r=SimpleNamespace(journal=j, logs_dir=tmp_path))
    j.record_executions([rec(key="abcdef123", dataflow="a")], HOST)
    assert inspect.log_of(api, "abcdef") == ("abcdef123", tmp_path / "abcdef123.log")
    run = j.start_run("main")
    assert inspect.request_cancel(api, None) == [run] and j.cancel_requested(run)


def test_ever_executed_names_those_with_an_execution_row_failed_or_not(j):
    assert j.ever_executed(["a", "b"]) == set()
    j.record_executions([rec("k1", dataflow="a"), rec("k2", status="fail", dataflow="b")],
                        "host")
    names = [f"n{i}" for i in range(1200)] + ["a", "b", "c"]  # more than one statement's worth
    assert j.ever_executed(names) == {"a", "b"}


# -- the shared cache: remotes, trusted keys, pulled results -----------------------------------
def pulled(key, out, signer="ed25519:alice", dataflow="d"):
    return (key, "t", out, "raw", dataflow, f"outputs/{dataflow}/o", [("inputs/x", "hx")],
            signer, "team", f"records/{key}/r")


def test_remotes_are_named_once_and_listed_by_name(j):
    assert j.add_remote("team", "/srv/cache") and j.add_remote("s3", "s3://b/p", "http://h:1")
    assert not j.add_remote("team", "/elsewhere")
    assert j.remotes() == [("s3", "s3://b/p", "http://h:1"), ("team", "/srv/cache", None)]
    assert j.remove_remote("s3") and not j.remove_remote("s3")


def test_a_key_is_trusted_under_one_name_and_a_taken_name_or_key_is_answered_not_written(j):
    assert j.trust_key("alice", "ed25519:a") is None
    assert j.trust_key("alice", "ed25519:b") == ("alice", "ed25519:a", 0)
    assert j.trust_key("al", "ed25519:a") == ("alice", "ed25519:a", 0)
    assert j.trusted_keys() == [("alice", "ed25519:a", 0)]


def test_a_pulled_result_never_replaces_a_memo_row_and_keeps_its_origin(j):
    j.record_executions([rec(key="k1", out="local")], HOST)
    assert j.add_pulled([pulled("k1", "theirs"), pulled("k2", "o2")]) == 1
    assert j.memo_lookup("k1")[0] == "local" and j.memo_lookup("k2")[0] == "o2"
    assert rows(j, "SELECT origin FROM memo WHERE key='k2'") == [("ed25519:alice",)]
    assert j.provenance("k2") == [("in", 0, "inputs/x", "hx"), ("out", 0, "outputs/d/o", "o2")]
    # what push signs: only what was computed here
    assert [r[0] for r in j.shareable_results()] == ["k1"]


def test_revoking_a_key_drops_its_memo_rows_keeps_their_origins_and_a_local_run_supersedes_them(
        j):
    j.trust_key("alice", "ed25519:alice")
    j.trust_key("bob", "ed25519:bob")
    j.add_pulled([pulled("k1", "o1"), pulled("k2", "o2"), pulled("k3", "o3", "ed25519:bob")])
    assert j.origin_rows() == [("k1", "alice", "team"), ("k2", "alice", "team"),
                               ("k3", "bob", "team")]
    assert j.revoke_key("alice") == ["k1", "k2"]
    assert j.revoke_key("nobody") is None
    assert j.memo_lookup("k1") is None and j.memo_lookup("k3") is not None
    assert j.revoked_results() == [("k1", "alice", "o1"), ("k2", "alice", "o2")]
    assert ("k1", "alice", "team") in j.origin_rows()
    j.record_executions([rec(key="k1", out="o1")], HOST)  # recomputed here
    assert j.revoked_results() == [("k2", "alice", "o2")]
    assert [r[0] for r in j.origin_rows()] == ["k2", "k3"]
    assert j.trusted_keys() == [("alice", "ed25519:alice", 1), ("bob", "ed25519:bob", 0)]
