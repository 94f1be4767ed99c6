"""`exec.episodes`: the episode state machine (plan → run → (yield/await)* → ok/fail/cxl),
history rows written at commits in canonical order, and loading them for `e3 episodes`."""
from __future__ import annotations

import pytest

from e3logic.exec.episodes import FINAL, STATES, BadTransition, Episode, flush, load
from e3logic.repo.index import IndexDB


def ep(name="r1:a", run="r1", dataflow="a"):
    return Episode(name, run, dataflow, "key-" + dataflow)


def walk(e: Episode, *states):
    for i, s in enumerate(states):
        e.move(s, i, f"n{i}", clock=lambda: 0.0)
    return e


@pytest.mark.parametrize("path", [
    ("plan", "run", "ok"),
    ("plan", "run", "fail"),
    ("plan", "fail"),                     # e.g. a missing input
    ("plan", "cxl"),
    ("plan", "run", "yield", "run", "ok"),
    ("plan", "run", "await", "await", "yield", "cxl"),
    ("plan", "run", "yield", "ok"),
])
def test_legal_histories_end_in_a_final_state(path):
    e = walk(ep(), *path)
    assert e.final and e.state == path[-1]
    assert [h[1] for h in e.history] == list(path)
    assert [h[0] for h in e.history] == list(range(len(path)))


@pytest.mark.parametrize("path", [
    ("run",), ("ok",), ("plan", "ok"), ("plan", "yield"), ("plan", "run", "ok", "run"),
    ("plan", "run", "fail", "cxl"), ("plan", "plan"),
])
def test_an_illegal_transition_is_refused_and_leaves_the_episode_as_it_was(path):
    e = ep()
    with pytest.raises(BadTransition):
        walk(e, *path)
    legal = len(e.history)
    assert e.state == (path[legal - 1] if legal else None)


def test_states_and_finals_are_the_documented_ones():
    assert STATES == ("plan", "run", "yield", "await", "ok", "fail", "cxl")
    assert FINAL == ("ok", "fail", "cxl")


def test_flush_writes_only_new_rows_and_load_returns_them_in_order(tmp_path):
    db = IndexDB(tmp_path / "index.db")
    b, a = walk(ep("r1:b", dataflow="b"), "plan"), walk(ep("r1:a"), "plan", "run")
    with db.transaction() as c:
        flush(c, [b, a])
    assert (a.unflushed, b.unflushed) == (2, 1)
    a.move("ok", 5, "0.1s")
    with db.transaction() as c:
        flush(c, [a, b])
    got = load(db, "r1")
    assert [e["episode"] for e in got] == ["r1:a", "r1:b"]
    assert got[0]["state"] == "ok" and got[1]["state"] == "plan"
    assert [(h["state"], h["beat"], h["note"]) for h in got[0]["history"]] == \
        [("plan", 0, "n0"), ("run", 1, "n1"), ("ok", 5, "0.1s")]
    assert db.execute("SELECT COUNT(*) FROM history").fetchone()[0] == 4


def test_load_filters_by_run_and_lists_every_run_without_one(tmp_path):
    db = IndexDB(tmp_path / "index.db")
    with db.transaction() as c:
        flush(c, [walk(ep("r1:a"), "plan"), walk(ep("r2:a", run="r2"), "plan", "cxl")])
    assert [e["episode"] for e in load(db, "r2")] == ["r2:a"]
    assert [e["episode"] for e in load(db)] == ["r1:a", "r2:a"]
    assert load(db, "r9") == []
