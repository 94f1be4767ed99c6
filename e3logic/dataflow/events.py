"""The event log of a `Go`: what it decided and did, in order, for tests and tools to read
instead of watching which function ran.

Kinds: `decided` (path: warm, incremental or full; run, cached, reasons), `planned`
(batches), `started` (run), `finished` (status, executed, failed, skipped, cancelled),
`committed` (commit, state_root).
"""
from __future__ import annotations

from typing import Protocol


class EventLog:
    """An append-only list of `(kind, fields)`."""

    def __init__(self):
        self.events: list[tuple[str, dict]] = []

    def emit(self, kind: str, **fields) -> None:
        self.events.append((kind, fields))

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]

    def last(self, kind: str) -> dict | None:
        """The fields of the latest event of `kind`, or None."""
        for k, f in reversed(self.events):
            if k == kind:
                return f
        return None

    def clear(self) -> None:
        self.events.clear()


class Reporter(Protocol):
    """What `Go` tells a progress display (the CLI's `Reporter`): how many dataflows the run
    covers, why those about to run run, when each starts and each outcome as it lands."""

    def start(self, n: int) -> None: ...

    def explain(self, reasons: dict[str, str]) -> None: ...

    def started(self, name: str) -> None:
        """`name`'s task was just submitted (told at once; its outcome comes once durable).
        Optional: a reporter without it is not told."""

    def outcome(self, name: str, outcome: str, seconds: float) -> None: ...

    def many(self, rows) -> None:
        """`(name, outcome, seconds, note)` rows that arrived together (note: why it failed,
        was skipped or cancelled, else "")."""

    def outcomes(self, names, outcome: str, seconds: float = 0.0) -> None:
        """The same outcome for many dataflows at once."""
