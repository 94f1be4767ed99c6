"""Limits on rule evaluation: how many facts it may derive and for how long.

A rule can derive without end (`n(0). n(Y + 1) :- n(Y).`). Every evaluation runs under a
`Guard`:

- the fast engine compares its relations' sizes with the guard's room every
  `fast.CHECK_EVERY` tuples a worklist pops, after each semi-naive round and each stratum;
- a watchdog thread (one per process, awake only while an evaluation runs) polls the clock and
  the sets a running stratum fills (a blow-up within one round, e.g. a cross product), and
  stops the evaluation by raising `_Stop` in its thread (CPython's PyThreadState_SetAsyncExc:
  delivered between two bytecodes, so it also stops pyDatalog, which keeps no loop of ours);
- pyDatalog's fact count is the number of values its rules compute with arithmetic, the only
  way a rule makes a new constant; a blow-up without arithmetic is bounded by the time limit.

No check does Python-level bookkeeping per derived fact.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Mapping

from e3logic.core.errors import UsageError, did_you_mean
from e3logic.logic.errors import LimitError

DEFAULT_MAX_FACTS = 5_000_000
DEFAULT_TIMEOUT_S = 60.0
#: how often the watchdog looks at a running evaluation
POLL_S = 0.02
#: after this long without the evaluation stopping, raise again (a `_Stop` delivered in a
#: garbage-collector callback or a `__del__` is swallowed there)
RETRY_S = 0.2


def _positive_int(value, what: str) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value < 1:
        raise UsageError(f"{what} must be a positive integer, not {value!r}")
    return value


def _positive_number(value, what: str) -> float | None:
    if value is None:
        return None
    if type(value) not in (int, float) or not value > 0 or value == float("inf"):
        raise UsageError(f"{what} must be a positive number of seconds, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class Limits:
    """At most `max_facts` derived facts and `timeout_s` seconds per evaluation (None: no
    limit)."""
    max_facts: int | None = DEFAULT_MAX_FACTS
    timeout_s: float | None = DEFAULT_TIMEOUT_S

    def __post_init__(self):
        _positive_int(self.max_facts, "max_facts")
        _positive_number(self.timeout_s, "timeout_s")

    @classmethod
    def from_settings(cls, config: Mapping | None = None, max_facts: int | None = None,
                      timeout_s: float | None = None) -> "Limits":
        """Options given on the command line, else e3.toml's `[logic] max_facts / timeout_s`,
        else the defaults."""
        section = (config or {}).get("logic") or {}
        if not isinstance(section, Mapping):
            raise UsageError("e3.toml [logic] must be a table (max_facts = …, timeout_s = …)")
        unknown = sorted(set(section) - {"max_facts", "timeout_s"})
        if unknown:
            near = did_you_mean(unknown[0], ["max_facts", "timeout_s"])
            raise UsageError(f"e3.toml [logic] has unknown key '{unknown[0]}'; " + (
                f"did you mean '{near[0]}'?" if near else "known: max_facts, timeout_s"))
        if max_facts is None:
            max_facts = _positive_int(section.get("max_facts", DEFAULT_MAX_FACTS),
                                      "e3.toml [logic] max_facts")
        if timeout_s is None:
            timeout_s = _positive_number(section.get("timeout_s", DEFAULT_TIMEOUT_S),
                                         "e3.toml [logic] timeout_s")
        return cls(max_facts, timeout_s)


UNLIMITED = Limits(None, None)


def _shown(source: str) -> str:
    """A rule file's name as a user typed it: relative to the current directory if under it."""
    if os.path.isabs(source):
        try:
            rel = os.path.relpath(source)
        except ValueError:
            return source
        if not rel.startswith(".."):
            return rel
    return source


class Guard:
    """One evaluation's budget and what it is doing, for the checks and the message."""

    def __init__(self, limits: Limits, engine: str):
        self.engine = engine
        self.max_facts = limits.max_facts
        self.timeout_s = limits.timeout_s
        self.deadline = (time.monotonic() + limits.timeout_s  # determinism: ok (stops only)
                         if limits.timeout_s is not None else None)
        self.used = 0          # facts derived by finished strata
        self.values = 0        # values computed by arithmetic (pyDatalog)
        self.live: tuple = ()  # the sets a running stratum fills
        self.origins: tuple = ()  # per live set: (relation, arity, source, line)
        self.origin = None     # what pyDatalog was computing when it stopped
        self.last = None       # what pyDatalog computed last
        self.reason: str | None = None
        self.thread_id = threading.get_ident()
        self.active = True
        self.injected = 0.0  # when the watchdog last raised `_Stop` in the thread

    def room(self) -> int:
        """How many facts the running stratum may hold."""
        return sys.maxsize if self.max_facts is None else self.max_facts - self.used

    def size(self) -> int:
        return self.used + sum(map(len, self.live))

    def over(self):
        """Called by the fast engine's checks: stop, naming the biggest relation."""
        self.reason = "facts"
        raise self.error()

    def finished(self, results: tuple) -> None:
        """A stratum finished with these relations: count them."""
        self.live = results
        if self.max_facts is not None and self.size() > self.max_facts:
            self.over()
        self.used += sum(map(len, results))
        self.live = ()

    def count_value(self, origin) -> None:
        """pyDatalog computed a value with arithmetic for `origin`'s rule."""
        self.values += 1
        self.last = origin
        if self.max_facts is not None and self.values > self.max_facts:
            self.reason, self.origin = "facts", origin
            raise _Stop

    def _where(self, growing: str) -> str:
        origin = self.origin
        if origin is None and self.origins:
            sizes = [len(s) for s in self.live]  # a round's new sets follow the relations
            i = max(range(len(sizes)), key=sizes.__getitem__) if sizes else 0
            origin = self.origins[i % len(self.origins)]
        if origin is None and self.last is not None:
            name, arity, source, line = self.last
            return (f"in the {self.engine} engine, last computing {name}/{arity}; "
                    f"{_shown(source)}:{line}")
        if origin is None:
            return f"in the {self.engine} engine"
        name, arity, source, line = origin
        if name == "?query":
            return "the query itself"
        return f"{name}/{arity} {growing}; {_shown(source)}:{line}"

    def error(self) -> LimitError:
        if self.reason == "time":
            where = self._where("was growing")
            hint = "raise --timeout or [logic] timeout_s in e3.toml, or fix the rule"
            if self.engine == "pydatalog":
                hint += " (or try --engine fast)"
            return LimitError(f"rule evaluation stopped: still running after "
                              f"{self.timeout_s:g} s ({where}); {hint}")
        what = "derived facts" if self.engine == "fast" else "values computed by arithmetic"
        return LimitError(f"rule evaluation stopped: more than {self.max_facts:,} {what} "
                          f"({self._where('keeps growing')}); raise --max-facts or "
                          f"[logic] max_facts in e3.toml, or fix the rule")


class _Stop(BaseException):
    """Raised in an evaluating thread to stop it (a BaseException: pyDatalog turns an
    Exception raised in a callback into a value)."""


_PREVIOUS_HOOK = sys.unraisablehook


def _unraisable(unraisable) -> None:
    """A `_Stop` swallowed by a garbage-collector callback or a `__del__` is retried by the
    watchdog: not worth a warning on stderr."""
    if unraisable.exc_type is not _Stop:
        _PREVIOUS_HOOK(unraisable)


sys.unraisablehook = _unraisable


def _async_raise(thread_id: int, exc) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id),
                                               ctypes.py_object(exc) if exc else None)


class _Watchdog:
    def __init__(self):
        self.cond = threading.Condition(threading.Lock())
        self.guards: set[Guard] = set()
        self.thread: threading.Thread | None = None
        self.idle = False  # the thread waits for a first guard

    def add(self, guard: Guard) -> None:
        with self.cond:
            self.guards.add(guard)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="e3-logic-watchdog",
                                               daemon=True)
                self.thread.start()
            elif self.idle:
                self.cond.notify()

    def remove(self, guard: Guard) -> None:
        """After this returns no `_Stop` for this guard is pending or will come."""
        with self.cond:
            guard.active = False
            self.guards.discard(guard)
            if guard.injected:  # delivered already (then this is a no-op) or still pending
                _async_raise(guard.thread_id, None)

    def _run(self) -> None:
        with self.cond:
            while True:
                if not self.guards:
                    self.idle = True
                    self.cond.wait()
                    self.idle = False
                    continue
                self.cond.wait(POLL_S)
                now = time.monotonic()  # determinism: ok (stops evaluation only)
                for g in list(self.guards):
                    if not g.active or (g.injected and now - g.injected < RETRY_S):
                        continue
                    if g.reason is None:
                        if g.deadline is not None and now > g.deadline:
                            g.reason = "time"
                        elif g.max_facts is not None and g.size() > g.max_facts:
                            g.reason = "facts"
                        else:
                            continue
                    g.injected = now
                    _async_raise(g.thread_id, _Stop)


_WATCHDOG = _Watchdog()


def _after_fork() -> None:  # the thread is gone in a child, and its lock may be held
    global _WATCHDOG
    _WATCHDOG = _Watchdog()


os.register_at_fork(after_in_child=_after_fork)

_LOCAL = threading.local()


def guarded(limits: Limits | None, engine: str, fn):
    """Run `fn(guard)` under `limits` (the defaults if None); past one, raise LimitError.
    Nested calls in one thread share the outer guard."""
    outer = getattr(_LOCAL, "guard", None)
    if outer is not None:
        return fn(outer)
    guard = Guard(limits if limits is not None else Limits(), engine)
    watched = guard.max_facts is not None or guard.deadline is not None
    watchdog = _WATCHDOG
    _LOCAL.guard = guard
    try:
        try:
            if watched:
                watchdog.add(guard)
            try:
                return fn(guard)
            finally:
                if watched:
                    watchdog.remove(guard)
        except _Stop:
            while watched:  # a second `_Stop` may land before the guard is removed
                try:
                    watchdog.remove(guard)
                    break
                except _Stop:
                    pass
            raise guard.error() from None
    finally:
        _LOCAL.guard = None
