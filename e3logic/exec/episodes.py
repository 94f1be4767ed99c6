"""Episodes: one per execution attempt, with a history of states and beats.

States: plan → run → (yield / await)* → ok | fail | cxl. History rows are staged in memory and
written at the commit of the beat that produced them (canonical order).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..repo.journal import write_episode_rows

STATES = ("plan", "run", "yield", "await", "ok", "fail", "cxl")
FINAL = ("ok", "fail", "cxl")
_NEXT = {
    None: {"plan"},
    "plan": {"run", "cxl", "fail"},
    "run": {"yield", "await", "ok", "fail", "cxl"},
    "yield": {"run", "yield", "await", "ok", "fail", "cxl"},
    "await": {"run", "yield", "await", "ok", "fail", "cxl"},
}


class BadTransition(Exception):
    pass


@dataclass
class Episode:
    episode: str
    run: str
    dataflow: str
    key: str | None
    profile: str = "ro"
    state: str | None = None
    pgid: int | None = None
    history: list = field(default_factory=list)  # (seq, state, beat, note, ts)
    unflushed: int = 0

    def move(self, state: str, beat: int, note: str = "", clock=time.time) -> None:
        if state not in _NEXT.get(self.state, set()):
            raise BadTransition(f"episode {self.episode}: {self.state} -> {state}")
        self.state = state
        self.history.append((len(self.history), state, beat, note, clock()))

    @property
    def final(self) -> bool:
        return self.state in FINAL


def take_rows(episodes: list[Episode]) -> tuple[list, list]:
    """(episode rows, history rows) not yet written, in canonical order; they count as written
    from now on (the caller writes them, possibly from another thread)."""
    eps, hist = [], []
    for ep in sorted((e for e in episodes if e.unflushed != len(e.history)),
                     key=lambda e: e.episode):
        n = len(ep.history)
        eps.append((ep.episode, ep.run, ep.dataflow, ep.key, ep.profile, ep.state, ep.pgid))
        hist.extend((ep.episode, *h) for h in ep.history[ep.unflushed:n])
        ep.unflushed = n
    return eps, hist


def write_rows(conn, rows: tuple[list, list]) -> None:
    """Write `take_rows`' rows inside the caller's transaction (`conn`)."""
    write_episode_rows(conn, rows)


def flush(conn, episodes: list[Episode]) -> None:
    """Write the new history rows of `episodes` (canonical order) inside a transaction."""
    write_rows(conn, take_rows(episodes))


def load(db, run: str | None = None) -> list[dict]:
    """Episode histories (of one run, or all; `db`: an IndexDB), for `e3 episodes`:
    [{episode, run, dataflow, state, history: [{state, beat, note}]}] by run and episode."""
    return db.journal.episode_histories(run)
