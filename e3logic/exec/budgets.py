"""Task budgets: wall seconds, CPU seconds, IO bytes, memory — parsing, reasons, rlimits.

- `wall_s`: a deadline on the runtime's injected clock; the task's process group is killed.
- `cpu_s`: RLIMIT_CPU (soft, whole seconds, rounded up). In a shell task it is set in the child
  before exec; in a pool worker it is set relative to the worker's CPU used so far and restored
  after the task (a worker killed by SIGXCPU is replaced). The engine also polls the group's
  CPU as a backstop.
- `io_bytes`: output bytes + bytes the task wrote to its log; polled while it runs, checked at
  the end.
- `mem_mb`: RLIMIT_AS (soft). A shell task's processes may each map `mem_mb` MiB; a python task
  may grow its worker's address space by `mem_mb` MiB (the interpreter's own baseline is not the
  task's). Not enforceable for inline tasks running in the engine's process.

This module is imported by the worker process: standard library only.
"""
from __future__ import annotations

import math
import os
import resource
from dataclasses import dataclass

KEYS = ("wall_s", "cpu_s", "io_bytes", "mem_mb")
MIB = 1 << 20


@dataclass(frozen=True)
class Budget:
    wall_s: float | None = None
    cpu_s: float | None = None
    io_bytes: int | None = None
    mem_mb: float | None = None

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in KEYS if getattr(self, k) is not None}

    def __bool__(self) -> bool:
        return any(getattr(self, k) is not None for k in KEYS)


NO_BUDGET = Budget()


def parse_budget(raw: dict | Budget | None) -> Budget:
    """Validate a budget mapping (any subset of KEYS, positive numbers); ValueError otherwise."""
    if not raw and (raw is None or type(raw) is dict):
        return NO_BUDGET
    if isinstance(raw, Budget):
        return raw
    if not isinstance(raw, dict):
        raise ValueError(f"budget must be a mapping of {', '.join(KEYS)}, not {type(raw).__name__}")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ValueError(f"unknown budget key {unknown[0]!r}; expected one of {', '.join(KEYS)}")
    vals = {}
    for k, v in raw.items():
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"budget {k} must be a positive number, not {v!r}")
        vals[k] = int(v) if k == "io_bytes" else v
    return Budget(**vals)


def fmt_value(v: float) -> str:
    """2 → '2', 2.0 → '2', 0.5 → '0.5', 10_000_000 → '10000000'."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def exceeded(name: str, budget: Budget) -> str:
    """The one-line reason for an overrun: 'budget wall_s=2 exceeded'."""
    return f"budget {name}={fmt_value(getattr(budget, name))} exceeded"


# -- rlimits ----------------------------------------------------------------------------------

def _cap(soft: int, hard: int) -> int:
    return soft if hard == resource.RLIM_INFINITY else min(soft, hard)


def cpu_seconds_self() -> float:
    """CPU used so far by this process (all threads) and its reaped children."""
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def address_space_bytes() -> int:
    """Current virtual size of this process (what RLIMIT_AS bounds)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def child_limits(budget: Budget):
    """A `preexec_fn` that sets the budget's rlimits in a freshly forked child, or None.

    It only calls `resource.setrlimit` (no imports, no allocation-heavy work) so it is safe
    enough after fork in a threaded parent."""
    limits = []
    if budget.cpu_s is not None:
        soft = max(1, math.ceil(budget.cpu_s))
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        # hard one second above soft: a child that ignores SIGXCPU gets SIGKILL
        new_hard = soft + 1 if hard == resource.RLIM_INFINITY else min(soft + 1, hard)
        limits.append((resource.RLIMIT_CPU, (_cap(soft, hard), new_hard)))
    if budget.mem_mb is not None:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limits.append((resource.RLIMIT_AS, (_cap(int(budget.mem_mb * MIB), hard), hard)))
    if not limits:
        return None
    # no core dumps from a task killed by SIGXCPU / SIGSEGV
    limits.append((resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1])))
    setrlimit = resource.setrlimit

    def preexec() -> None:
        for which, value in limits:
            setrlimit(which, value)

    return preexec


class WorkerLimits:
    """Set a task's CPU and memory rlimits inside a pool worker, relative to what the worker has
    already used; `restore()` puts the previous limits back."""

    def __init__(self, budget: Budget):
        self._saved: list[tuple[int, tuple[int, int]]] = []
        if budget.cpu_s is not None:
            prev = resource.getrlimit(resource.RLIMIT_CPU)
            soft = math.ceil(cpu_seconds_self() + budget.cpu_s)
            self._set(resource.RLIMIT_CPU, prev, _cap(soft, prev[1]))
        if budget.mem_mb is not None:
            prev = resource.getrlimit(resource.RLIMIT_AS)
            soft = address_space_bytes() + int(budget.mem_mb * MIB)
            self._set(resource.RLIMIT_AS, prev, _cap(soft, prev[1]))

    def _set(self, which: int, prev: tuple[int, int], soft: int) -> None:
        resource.setrlimit(which, (soft, prev[1]))
        self._saved.append((which, prev))

    def restore(self) -> None:
        while self._saved:
            which, prev = self._saved.pop()
            try:
                resource.setrlimit(which, prev)
            except (ValueError, OSError):
                pass
