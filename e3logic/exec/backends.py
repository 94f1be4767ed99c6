"""Backends: where the executor's tasks run (the `--executor` of `e3 go`).

The executor decides *what* runs and when; a `Backend` only runs what it is handed. The seam
is the `Backend` protocol below — `submit` a `Task`, get something awaitable with its
`Finished`; `cancel` one attempt; `close` — so local processes, threads, the cooperative
harness and a remote cluster are peers:

- `Local` (`threads`): every task is awaited concurrently in the executor's task group; python
  tasks in the worker pool, shell tasks in their own process groups, inline tasks in threads of
  the engine.
- `Local` over isolating runtimes (`processes`): the same, but no task runs in the engine's
  process (an `in_engine` runtime runs its `isolated` way: inline tasks in the pool).
- `DaskBackend` (`dask`, `dask:ADDRESS`, in `dask_backend.py`, imported only when used): tasks
  on a dask.distributed cluster; inputs and modules travel by content hash, outputs come back
  as bytes that the engine checks and commits.
- `Cooperative` (`inline`): the deterministic harness. A task runs to completion inside
  `submit`, one after another in capture order, so each finishes in the beat that started it;
  only a task that runs in the engine and may yield across beats (`RuntimeSpec.in_engine`) is
  awaited concurrently (it needs later beats to make progress).

`backend_for(name, ...)` is the one place a backend is chosen by name (`BACKENDS`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Awaitable, Callable, Iterable, NamedTuple, Protocol

from ..core.errors import UsageError

if TYPE_CHECKING:  # (annotations only: `e3 go`'s warm path imports this module to check a name)
    from ..core.runtimes import RuntimeSpec
    from .jobs import Finished, Task


class Backend(Protocol):
    """Runs the executor's tasks. `submit`, `cancel` and `close` are the seam a remote cluster
    implements too; `warm` and `kill` may do nothing."""

    async def submit(self, task: Task) -> Awaitable[Finished]:
        """Hand `task` over; returns an awaitable of its `Finished` (a `fail` or `cxl` result,
        never an exception, for anything that went wrong with the task). It may do the work
        before it returns (then it returns `Done(finished)`); a pool or a cluster only hands
        the task over. Cancelling whoever awaits the result cancels the task."""

    def cancel(self, episode: str, reason: str = "cancelled") -> bool:
        """Cancel the attempt `episode` (its `Episode.episode` name): its awaitable answers a
        `cxl` Finished with `reason`. False when no such attempt is in flight."""

    async def close(self) -> None:
        """Stop everything the backend started (workers, process groups); after the run."""

    def warm(self, runtimes: Iterable[str]) -> None:
        """A hint before the run: tasks of these runtimes (one name per task) will come.
        Start what they need now (the worker pool), so it overlaps planning."""

    def kill(self) -> None:
        """Stop every task now, synchronously (the Ctrl-C path; safe in a signal handler)."""


class Runner(Protocol):
    """Runs one task where it stands (`dispatch.TaskRunner`, or a test's fake)."""

    async def __call__(self, task: Task) -> Finished: ...


class Done:
    """An already finished submission: awaiting it answers `result` at once."""

    __slots__ = ("result",)

    def __init__(self, result: Finished):
        self.result = result

    def __await__(self):
        return self.result
        yield  # noqa: unreachable; makes this a generator


class _Handle:
    """A submission in flight: awaiting it runs the task under a cancel scope of its own, so
    `Backend.cancel` can stop this one attempt."""

    __slots__ = ("backend", "task", "reason", "scope")

    def __init__(self, backend: "Local", task: Task):
        self.backend, self.task = backend, task
        self.reason: str | None = None
        self.scope = None

    def cancel(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        if self.scope is not None:
            self.scope.cancel()

    def __await__(self):
        return self._run().__await__()

    async def _run(self) -> Finished:
        import anyio

        try:
            with anyio.CancelScope() as scope:
                self.scope = scope
                if self.reason is None:
                    return await self.backend.runner(self.task)
            return self.task.finished("cxl", self.reason or "cancelled")
        finally:
            self.backend._inflight.pop(self.task.episode.episode, None)


class Local:
    """Tasks awaited concurrently in the executor's task group (`threads`, `processes`).

    `runner` runs one task; `runtimes` (an `exec.runtimes.Runtimes`, or None for a fake
    runner) owns the worker pool and the process groups, and says how each runtime runs
    (`Runtimes.placed`)."""

    def __init__(self, runner: Runner, runtimes=None):
        self.runner = runner
        self.runtimes = runtimes
        self._inflight: dict[str, _Handle] = {}

    def placed(self, name: str) -> RuntimeSpec:
        """How a task of runtime `name` runs on this backend."""
        from ..core.runtimes import runtime as runtime_spec

        return self.runtimes.placed(name) if self.runtimes is not None else runtime_spec(name)

    def _handle(self, task: Task) -> _Handle:
        h = _Handle(self, task)
        self._inflight[task.episode.episode] = h
        return h

    async def submit(self, task: Task) -> Awaitable[Finished]:
        return self._handle(task)

    def cancel(self, episode: str, reason: str = "cancelled") -> bool:
        h = self._inflight.get(episode)
        if h is None:
            return False
        h.cancel(reason)
        return True

    async def close(self) -> None:
        if self.runtimes is not None:
            await self.runtimes.aclose()

    def warm(self, runtimes: Iterable[str]) -> None:
        if self.runtimes is None:
            return
        n = sum(1 for r in runtimes if self.placed(r).pooled)
        self.runtimes.prestart(min(self.runtimes.workers, n))

    def kill(self) -> None:
        if self.runtimes is not None:
            self.runtimes.kill_all()


class Cooperative(Local):
    """The deterministic harness (`inline`): a task runs to completion inside `submit`, in
    capture order, except one that runs in the engine and may yield across beats."""

    async def submit(self, task: Task) -> Awaitable[Finished]:
        h = self._handle(task)
        if self.placed(task.job.runtime).in_engine:
            return h
        return Done(await h)


async def run_one(backend: Backend, task: Task) -> Finished:
    """Submit one task and wait for its `Finished` (a one-job run: `e3 run`)."""
    return await (await backend.submit(task))


class BackendKind(NamedTuple):
    """A backend by name: its class, whether no task may run in the engine's process, and a
    line for help texts. A `remote` one runs tasks away from the repository (a cluster): it
    is made from a `dispatch.TaskRunner` alone, may take an address (`name:ADDRESS`) and has
    no local runtimes."""

    make: Callable[..., Backend]
    isolate: bool
    about: str
    remote: bool = False


def _dask(runner, runtimes=None, *, address: str | None = None, workers: int = 1,
          connect_timeout: float | None = None) -> Backend:
    from .dask_backend import CONNECT_TIMEOUT, DaskBackend  # dask only when it is used

    return DaskBackend(runner, address=address, workers=workers,
                       connect_timeout=connect_timeout or CONNECT_TIMEOUT)


BACKENDS: dict[str, BackendKind] = {
    "inline": BackendKind(Cooperative, False, "one task at a time inside the beat (a "
                          "deterministic harness); inline tasks in engine threads"),
    "threads": BackendKind(Local, False, "tasks concurrently; inline tasks in engine threads"),
    "processes": BackendKind(Local, True, "tasks concurrently; no task in the engine's process"),
    "dask": BackendKind(_dask, True, "tasks on a dask.distributed cluster: a LocalCluster of "
                        "-j worker processes for the run, or dask:tcp://HOST:PORT (a running "
                        "scheduler)", remote=True),
}

#: the keys of e3.toml's `[executor]` table
EXECUTOR_KEYS = ("backend", "address", "connect_timeout")


def split_executor(name: str) -> tuple[str, str | None]:
    """`dask:tcp://host:8786` -> ("dask", "tcp://host:8786"); `threads` -> ("threads", None)."""
    kind, sep, address = str(name).partition(":")
    return kind, (address if sep else None)


def backend_kind(name: str) -> BackendKind:
    """The backend called `name` (`NAME` or `NAME:ADDRESS`); a `UsageError` naming the known
    ones if there is none, or if an address is given to one that takes none."""
    kind_name, address = split_executor(name)
    kind = BACKENDS.get(kind_name)
    if kind is None:
        raise UsageError(f"unknown executor '{name}'; use one of {', '.join(BACKENDS)}")
    if address is not None and not kind.remote:
        raise UsageError(f"executor '{kind_name}' takes no address ('{name}'); an address is "
                         f"for a cluster: dask:tcp://HOST:PORT")
    if address is not None and not address.strip():
        raise UsageError(f"executor '{name}' names no address; use {kind_name}:tcp://HOST:PORT "
                         f"or {kind_name} alone (a local cluster)")
    return kind


def _executor_table(config: dict) -> dict:
    table = config.get("executor")
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise UsageError("[executor] in e3.toml must be a table (backend = \"dask\", address = "
                         "\"tcp://HOST:PORT\"); fix e3.toml")
    unknown = sorted(set(table) - set(EXECUTOR_KEYS))
    if unknown:
        raise UsageError(f"unknown key '{unknown[0]}' in [executor] of e3.toml; the keys are "
                         f"{', '.join(EXECUTOR_KEYS)}")
    for k in ("backend", "address"):
        if k in table and not (isinstance(table[k], str) and table[k].strip()):
            raise UsageError(f"[executor] {k} in e3.toml must be a non-empty string")
    t = table.get("connect_timeout")
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0):
        raise UsageError("[executor] connect_timeout in e3.toml must be a positive number of "
                         "seconds")
    return table


def configured_executor(config: dict) -> str:
    """The executor `e3 go` and `e3 watch` use when none is given: e3.toml's `[executor]`
    (`backend`, and `address` for a cluster), else `[defaults] executor`, else `threads`.

    >>> configured_executor({"executor": {"backend": "dask", "address": "tcp://h:8786"}})
    'dask:tcp://h:8786'
    >>> configured_executor({"defaults": {"executor": "processes"}})
    'processes'
    """
    table = _executor_table(config)
    backend = table.get("backend")
    address = table.get("address")
    if backend is None:
        backend = (config.get("defaults") or {}).get("executor", "threads")
        if address is not None:
            backend = "dask"
    if address is not None:
        if split_executor(backend)[1] is not None:
            raise UsageError(f"[executor] backend = \"{backend}\" already names an address; "
                             f"drop [executor] address or the one in backend")
        backend = f"{backend}:{address}"
    backend_kind(backend)
    return backend


def backend_for(name: str, repo, *, workers: int, modules_tree: str | None = None,
                token: str | None = None) -> Backend:
    """The backend called `name` (`NAME[:ADDRESS]`) for a run on `repo`: its runtimes (a pool
    of `workers`, module sets cached in `.e3/cache`) and a `dispatch.TaskRunner` reading inputs
    from the object store, the package's modules from `modules_tree`; `token` marks the run's
    task processes. A remote backend (a cluster) gets the runner alone, its address and
    `workers` (the size of a local cluster), and e3.toml's `[executor] connect_timeout`."""
    from .dispatch import TaskRunner

    kind = backend_kind(name)
    if kind.remote:
        table = _executor_table(repo.config)
        return kind.make(TaskRunner(repo, None, modules_tree, token=token),
                         address=split_executor(name)[1], workers=workers,
                         connect_timeout=table.get("connect_timeout"))
    from .runtimes import Runtimes

    runtimes = Runtimes(workers=workers, cache_dir=repo.dir / "cache", isolate=kind.isolate)
    return kind.make(TaskRunner(repo, runtimes, modules_tree, token=token), runtimes)
