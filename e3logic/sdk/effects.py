"""What a task may do besides returning its output (DESIGN.md §8, profiles and leases).

An `inline` task written as a generator can hand control back to the executor:
`yield sdk.yield_()` resumes it at the next beat; `yield sdk.await_("other")` waits for the
dataflow `other` of the same run to finish (its outcome is sent back: "executed", "cached",
"failed", ...) or cancels this episode after `timeout_beats`; `yield sdk.promote()` turns a
`hybrid` episode from read-only into read-write at the next beat boundary.

`sdk.lease(path, mode)` is the lease-checked handle to a resource: it returns a `Lease` when the
episode holds a covering lease (and, for writes, is not read-only), and raises `LeaseRefused`
otherwise; the executor records each refused access once in the episode's history. Subprocess
tasks see their leases in the `E3_LEASES` environment variable and are checked the same way.
"""
from __future__ import annotations

import contextvars
import json
import os
from dataclasses import dataclass, field

from ..core.paths import is_prefix


@dataclass(frozen=True)
class Yield:
    note: str = ""


@dataclass(frozen=True)
class Await:
    dataflow: str
    timeout_beats: int = 100


@dataclass(frozen=True)
class Promote:
    pass


def yield_(note: str = "") -> Yield:
    return Yield(note)


def await_(dataflow: str, timeout_beats: int = 100) -> Await:
    return Await(dataflow, int(timeout_beats))


def promote() -> Promote:
    return Promote()


class LeaseRefused(PermissionError):
    pass


@dataclass(frozen=True)
class Lease:
    path: str
    mode: str


@dataclass
class EpisodeContext:
    leases: tuple            # ((path, mode), ...)
    profile: str             # ro | rw | hybrid
    on_refused: object = None  # callable(note) -> None
    refused: set = field(default_factory=set)

    def check(self, path: str, mode: str) -> Lease:
        path = path.strip("/")
        why = None
        if mode not in ("read", "write"):
            why = f"unknown lease mode '{mode}' (use read or write)"
        elif mode == "write" and self.profile in ("ro", "hybrid"):
            why = (f"write to {path} refused: profile {self.profile} is read-only"
                   + (" until it promotes" if self.profile == "hybrid" else ""))
        elif not any(is_prefix(p, path) and (m == "write" or mode == "read")
                     for p, m in self.leases):
            why = f"{mode} of {path} refused: no {mode} lease covers it"
        if why:
            if (path, mode) not in self.refused:
                self.refused.add((path, mode))
                if self.on_refused:
                    self.on_refused(why)
            raise LeaseRefused(why)
        return Lease(path, mode)


CURRENT: contextvars.ContextVar[EpisodeContext | None] = contextvars.ContextVar(
    "e3_episode", default=None)


def lease(path: str, mode: str = "read") -> Lease:
    """A lease-checked handle on a resource path for the running task."""
    ctx = CURRENT.get()
    if ctx is None:
        env = os.environ.get("E3_LEASES")
        if env is None:
            raise LeaseRefused("sdk.lease works only inside a running e3 task")
        ctx = EpisodeContext(tuple(tuple(x) for x in json.loads(env)),
                             os.environ.get("E3_PROFILE", "ro"))
    return ctx.check(path, mode)
