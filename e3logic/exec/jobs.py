"""What the executor hands a backend and gets back: `Job` (one dataflow to run), `Task` (one
attempt at it: the job, its execution key, its input objects, the file its output goes to, its
episode and the executor's hooks for it) and `Finished` (what came of it).

`EpisodeHost` is what a running task may ask of the executor (the executor implements it for
each attempt): report its process group, note something in the episode's history, wait for
the next beat, wait for another dataflow of the run, be promoted to read-write.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Job:
    name: str                    # dataflow name
    task_hash: str
    runtime: str                 # a name in core.runtimes.RUNTIMES
    entry: str | None
    argv: tuple | None
    inputs: tuple                # dataset paths, in order
    output_path: str             # outputs/<dataflow>/<output>
    deps: frozenset              # upstream jobs of this run
    leases: tuple = ()           # ((path, mode), ...)
    budget: tuple = ()           # sorted (key, value) pairs
    profile: str = "ro"
    modules_hash: str = ""
    resources: tuple = ()        # sorted (name, amount) demands on capacities


@dataclass
class Finished:
    job: Job
    key: str
    status: str                  # ok | fail | cxl | hit
    inputs: tuple                # ((path, hash), ...)
    output_file: str | None = None
    output_hash: str | None = None   # hit: the memo's; ok: the runtime's, if it knows it
    output_format: str | None = None
    output_size: int | None = None   # ok: with output_hash
    reason: str = ""
    exit_code: int | None = None
    started: float = 0.0
    ended: float = 0.0


class EpisodeHost(Protocol):
    """The executor's side of one running attempt (`Executor.host(job, ep)`)."""

    leases: tuple   # ((path, mode), ...) the episode holds
    profile: str    # ro | rw | hybrid, as it is now

    def started(self, pgid: int) -> None:
        """The task's process group exists (recorded for orphan killing)."""

    def note(self, text: str) -> None:
        """A note in the episode's history (a refused lease, say)."""

    async def next_beat(self, state: str = "yield", note: str = "") -> None:
        """Suspend the episode (it holds no slot) until the next beat."""

    async def await_dataflow(self, other: str, timeout_beats: int) -> str | None:
        """Wait for dataflow `other` of the run: its outcome, None on timeout, "absent", or
        "deadlock: ..." when the wait would close a cycle."""

    def promote(self) -> None:
        """Make the episode read-write (a `hybrid` task's `sdk.promote()`)."""


@dataclass(frozen=True)
class Task:
    """One attempt at a job, as submitted to a `Backend`."""

    job: Job
    key: str                     # the execution key
    inputs: tuple                # ((path, object hash, format), ...) in order
    out_file: str                # where the output must be written (staged, unique)
    episode: object              # the attempt's episodes.Episode
    host: EpisodeHost | None = None   # None: nothing to report to (no executor)

    def finished(self, status: str, reason: str = "", **kw) -> Finished:
        """A `Finished` for this task."""
        return Finished(self.job, self.key, status, tuple((p, h) for p, h, _ in self.inputs),
                        reason=reason, **kw)
