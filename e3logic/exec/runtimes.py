"""Runtimes: how one task runs, in isolation from the repository.

`Runtimes.run(spec)` runs one task described by a `TaskSpec` — its code, its input files, the
file its output must be written to, its log file, its budget — and returns a `TaskResult`
(`ok`, `fail` or `cxl`, with a one-line reason). It never touches the repository: the
executor stages and commits the output file. Bad task code is a `fail`, never an exception.

- `python`: a pool of persistent worker processes (`workers.WorkerPool`); the function from the
  package's modules, imported once per content hash (`taskcode.ModuleSpaces`).
- `shell`: the argv template, expanded without a shell, in its own session/process group, with
  stdout and stderr written straight to the log file while it runs; `{bundle}` is a read-only
  copy of the package's module files (`cache_dir/bundles/<hash>/`).
- `inline`: in the engine's own process, in a thread (`exec/inline.py`); `isolate=True` runs
  it the python way instead (the `processes` backend).

Which runtimes exist, and their traits, is `core.runtimes.RUNTIMES`; each names its
implementation, a `Runtime` (below), made once per `Runtimes`.

Cancellation: cancelling the anyio task that awaits `run()` SIGTERMs the task's process group,
SIGKILLs it after `grace` seconds (shielded cleanup, then the cancellation propagates);
`cancel(pgid)` does the same from outside and `run()` returns `cxl`; `kill_all()` SIGKILLs every
group synchronously (Ctrl-C) and the runs in flight return `cxl`.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import anyio

from ..core.errors import UsageError
from ..core.runtimes import ARGV_PLACEHOLDER, RUNTIMES, RuntimeSpec
from ..core.runtimes import runtime as runtime_spec
from . import procs
from .budgets import Budget, child_limits, exceeded, parse_budget
from .taskcode import (ModuleSpaces, TaskError, encode_output, exc_reason, materialize,
                       materialize_bundle, modules_dir, one_line, remove_tree, tree_state,
                       write_atomic)
from .workers import Worker, WorkerPool, wait_exit, wait_fd

OK, FAIL, CXL = "ok", "fail", "cxl"


@dataclass(frozen=True)
class InputRef:
    path: str                    # a file on disk (read-only)
    format: str = "raw"          # "raw" | "json"
    name: str = ""               # the dataset path, for messages


@dataclass(frozen=True)
class TaskSpec:
    runtime: str                                    # a name in core.runtimes.RUNTIMES
    entry: str | None = None                        # "module:function" (python, inline)
    argv: tuple[str, ...] | None = None             # shell template
    modules_hash: str = ""                          # "" → import `entry` from sys.path
    modules: Callable[[], dict[str, bytes]] | None = None  # called only if not materialized
    inputs: tuple[InputRef, ...] = ()
    output: str = ""                                # file the output must be written to
    log_path: str = ""                              # "" → discarded
    budget: dict = field(default_factory=dict)      # wall_s, cpu_s, io_bytes, mem_mb
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = ""                                   # working directory ("" → the engine's)


@dataclass(frozen=True)
class TaskResult:
    status: str                  # "ok" | "fail" | "cxl"
    output_format: str | None    # "raw" | "json" | None (not ok)
    exit_code: int | None        # shell: exit status (<0: signal); python: worker's if it died
    reason: str                  # one line; "" when ok
    duration_s: float            # on the runtime's clock
    cpu_s: float
    pgid: int | None             # the process group that ran it (None: inline in-process)
    budget: str | None = None    # the budget key that was exceeded, if that is why it failed
    io_bytes: int = 0            # output + log bytes
    output_hash: str | None = None  # when ok and known (python worker): the output's hash
    output_size: int | None = None  # ... and its size

    @property
    def ok(self) -> bool:
        return self.status == OK


# -- shell templates ---------------------------------------------------------------------------

_PLACEHOLDER = ARGV_PLACEHOLDER  # {inputs}, {input<i>}, {output}, {bundle} (core.runtimes)


def expand_argv(template, inputs: list[str] | tuple[str, ...], output: str,
                bundle: str | None = None) -> list[str]:
    """Expand a shell task's argv template (never through a shell string).

    `{inputs}` as a whole argument becomes one argument per input; `{input0}`, `{input1}`…,
    `{output}` and `{bundle}` (the directory of the package's bundled files) as a whole argument
    become that path. Inside a larger string (`sh -c "cat {inputs} > {output}"`,
    `{bundle}/calc.sh`) each path is shell-quoted — a no-op for ordinary paths — and `{inputs}`
    joins them with spaces. Other braces (`awk '{print $1}'`) are left alone."""
    if not template or isinstance(template, str) or not all(isinstance(a, str) for a in template):
        raise TaskError("a shell task needs an argv template: a non-empty list of strings")
    inputs = [os.fspath(p) for p in inputs]

    def path_of(m: re.Match, quote: bool) -> str:
        name = m.group(1)
        if name == "output":
            paths = [output]
        elif name == "bundle":
            if bundle is None:
                raise TaskError("argv template refers to {bundle} but the task has no bundled "
                                "files (no modules hash)")
            paths = [os.fspath(bundle)]
        elif name == "inputs":
            paths = inputs
        else:
            i = int(m.group(2))
            if i >= len(inputs):
                raise TaskError(f"argv template refers to {{input{i}}} but the task has "
                                f"{len(inputs)} input{'s' if len(inputs) != 1 else ''}")
            paths = [inputs[i]]
        return " ".join(shlex.quote(p) for p in paths) if quote else " ".join(paths)

    argv: list[str] = []
    for arg in template:
        m = _PLACEHOLDER.fullmatch(arg)
        if m and m.group(1) == "inputs":
            argv.extend(inputs)
        elif m:
            argv.append(path_of(m, quote=False))
        else:
            argv.append(_PLACEHOLDER.sub(lambda mm: path_of(mm, quote=True), arg))
    return argv


def write_output(path: str | os.PathLike, value: Any) -> tuple[str, int]:
    """Write a task's return value as the runtimes do: `bytes` raw, anything JSON-able as
    canonical JSON. Returns (format, size); raises `TaskError` for a value it cannot store."""
    data, fmt = encode_output(value)
    write_atomic(path, data)
    return fmt, len(data)


# -- print() routing for inline tasks ----------------------------------------------------------

class _Router:
    """Stands in for sys.stdout / sys.stderr: writes from a thread running an inline task go to
    that task's log, everything else to the stream it replaced."""

    _local = threading.local()

    def __init__(self, fallback):
        self._fallback = fallback

    def _target(self):
        return getattr(self._local, "stream", None) or self._fallback

    def write(self, s):
        return self._target().write(s)

    def flush(self):
        return self._target().flush()

    def __getattr__(self, name):
        return getattr(self._target(), name)


_router_lock = threading.Lock()


def _install_routers() -> None:
    with _router_lock:
        if not isinstance(sys.stdout, _Router):
            sys.stdout = _Router(sys.stdout)
        if not isinstance(sys.stderr, _Router):
            sys.stderr = _Router(sys.stderr)


_shared_spaces: ModuleSpaces | None = None
_spaces_lock = threading.Lock()


def shared_spaces() -> ModuleSpaces:
    """The engine process's module namespaces (one per process: module names are global)."""
    global _shared_spaces
    with _spaces_lock:
        if _shared_spaces is None:
            _shared_spaces = ModuleSpaces()
        return _shared_spaces


# -- the runtimes ------------------------------------------------------------------------------

class _Bundle:
    """A materialized `{bundle}` directory, what it held when this `Runtimes` first used it,
    the tasks using it now (`running`) and those that were when it was found changed."""
    __slots__ = ("hash", "path", "state", "ino", "damaged", "running", "tainted")

    def __init__(self, modules_hash: str, path: Path, state: dict | None):
        self.hash, self.path, self.state = modules_hash, path, state
        self.ino = _ino(path)
        self.damaged = False
        self.running: set[object] = set()
        self.tainted: set[object] = set()


def _ino(path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _uses_bundle(argv) -> bool:
    return isinstance(argv, (list, tuple)) and any(
        isinstance(a, str) and "{bundle}" in a for a in argv)


_READ_ONLY_HINTS = ("Permission denied", "Read-only file system", "Operation not permitted")


class _Running:
    __slots__ = ("pgid", "start", "cancel_reason", "term_at")

    def __init__(self, pgid: int, start: int | None):
        self.pgid, self.start = pgid, start
        self.cancel_reason: str | None = None
        self.term_at: float | None = None


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        pass


def _absolute(spec: TaskSpec) -> TaskSpec:
    """Paths in a spec are relative to the engine's working directory; tasks run elsewhere."""
    isabs = os.path.isabs
    if (isabs(spec.output) and (not spec.log_path or isabs(spec.log_path))
            and (not spec.cwd or isabs(spec.cwd)) and all(isabs(i.path) for i in spec.inputs)):
        return spec  # the executor's specs: nothing to copy
    ab = os.path.abspath
    return dataclasses.replace(
        spec, output=ab(spec.output), log_path=ab(spec.log_path) if spec.log_path else "",
        cwd=ab(spec.cwd) if spec.cwd else "",
        inputs=tuple(dataclasses.replace(i, path=ab(i.path)) for i in spec.inputs))


def _true() -> bool:
    return True


def _task_environ(extra: dict) -> dict[bytes, bytes]:
    """The engine's environment plus `extra`, as bytes."""
    env = procs.environ_bytes()
    fsencode = os.fsencode
    for k, v in extra.items():
        env[fsencode(str(k))] = fsencode(str(v))
    return env


_MEM_HINTS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")


def _log_tail(path: str, limit: int = 4096) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, _size(path) - limit))
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


class Runtimes:
    """Runs tasks; one per run. Owns the python worker pool and every task process group.

    `workers`: the pool's size (and the inline thread limit). `cache_dir`: where module sets are
    materialized (`cache_dir/modules/<hash>/`). `clock`: drives wall budgets and durations
    (tests may inject one; it is polled every `poll_s` seconds). `isolate`: no task runs in the
    engine's process (a runtime that would, `RuntimeSpec.in_engine`, runs its `isolated` way).
    `grace`: seconds between SIGTERM and SIGKILL on cancellation."""

    def __init__(self, workers: int, cache_dir: Path, clock: Callable[[], float] = time.monotonic,
                 isolate: bool = False, *, grace: float = 0.5, poll_s: float = 0.05):
        self.workers = max(1, int(workers))
        self.cache_dir = Path(cache_dir)
        self.clock = clock
        self.isolate = isolate
        self.grace = min(max(0.0, grace), 1.0)
        self.poll_s = poll_s
        self.idle_poll_s = 0.25
        self.registry = procs.GroupRegistry()
        self.pool = WorkerPool(self.workers, self.cache_dir, self.registry)
        self._spawner = procs.Spawner()
        self._running: dict[int, _Running] = {}
        self._materialized: dict[str, Path] = {}
        self._bundles: dict[str, _Bundle] = {}
        self._dirs: set[str] = set()
        self._mod_lock: anyio.Lock | None = None
        self._impls: dict[str, Runtime] = {}
        self.closed = False

    # -- public API ------------------------------------------------------------------------
    def running_pgids(self) -> list[int]:
        """The process groups of the tasks running now (sorted)."""
        return sorted(self._running)

    def running_groups(self) -> dict[int, int]:
        """pgid → leader start time of the tasks running now, for `procs.kill_orphans`."""
        return {p: (r.start if r.start is not None else -1) for p, r in sorted(self._running.items())}

    def live_groups(self) -> dict[int, int]:
        """Every process group this object owns (idle workers included), pgid → start time."""
        return self.registry.snapshot()

    def cancel(self, pgid: int, reason: str = "cancelled") -> bool:
        """Cancel the task running in group `pgid`: SIGTERM now, SIGKILL after the grace; its
        `run()` returns `cxl` with `reason`. False if no task runs in that group."""
        r = self._running.get(pgid)
        if r is None:
            return False
        if r.cancel_reason is None:
            r.cancel_reason = one_line(reason)
            r.term_at = time.monotonic()
            procs.signal_group(pgid, signal.SIGTERM)
        return True

    def prestart(self, n: int) -> None:
        """Start `n` python workers ahead of the first task (see `WorkerPool.prestart`)."""
        self.pool.prestart(n)

    def kill_all(self) -> list[int]:
        """SIGKILL every live process group (running tasks and idle workers) synchronously.
        Runs in flight return `cxl` ("killed"). Safe to call from a signal handler."""
        for r in list(self._running.values()):
            if r.cancel_reason is None:
                r.cancel_reason = "killed"
                r.term_at = time.monotonic()
        return self.registry.kill_all(signal.SIGKILL)

    async def aclose(self) -> None:
        """Stop the pool; kill every process group still alive."""
        self.closed = True
        with anyio.CancelScope(shield=True):
            for r in list(self._running.values()):
                if r.cancel_reason is None:
                    r.cancel_reason = "runtimes closed"
                    r.term_at = time.monotonic()
                procs.signal_group(r.pgid, signal.SIGKILL)
            await self.pool.aclose(grace=self.grace or 0.2)
            self.registry.kill_all(signal.SIGKILL)
            self._spawner.close()

    async def __aenter__(self) -> "Runtimes":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    def placed(self, name: str) -> RuntimeSpec:
        """How a task of runtime `name` runs here (`UsageError` for an unknown name)."""
        spec = runtime_spec(name)
        if self.isolate and spec.isolated:
            return runtime_spec(spec.isolated)
        return spec

    def _impl(self, spec: RuntimeSpec) -> "Runtime":
        impl = self._impls.get(spec.name)
        if impl is None:
            import importlib

            module, _, cls = spec.impl.partition(":")
            impl = self._impls[spec.name] = getattr(importlib.import_module(module), cls)(self)
        return impl

    async def run(self, spec: TaskSpec, on_start: Callable[[int], None] | None = None,
                  host=None) -> TaskResult:
        """Run one task; see the module docstring. `on_start(pgid)` is called as soon as the
        task's process group exists (not for inline tasks run in-process). `host`: the
        executor's `jobs.EpisodeHost` for the attempt (an inline generator task needs one)."""
        t0 = self.clock()
        try:
            budget = parse_budget(spec.budget)
        except ValueError as e:
            return self._fail(t0, str(e))
        if self.closed:
            return self._fail(t0, "runtimes are closed")
        try:
            impl = self._impl(self.placed(spec.runtime))
        except UsageError:
            return self._fail(t0, f"unknown runtime {spec.runtime!r}; expected one of "
                                  f"{', '.join(RUNTIMES)}")
        if not spec.output:
            return self._fail(t0, "the task has no output path")
        spec = _absolute(spec)
        try:
            self._ensure_dir(os.path.dirname(spec.output))
            if spec.log_path:
                self._ensure_dir(os.path.dirname(spec.log_path))
        except OSError as e:
            return self._fail(t0, f"cannot prepare output {spec.output}: {e.strerror or e}")
        result: TaskResult | None = None
        try:
            result = await impl.run(spec, budget, on_start, t0, host)
            return result
        finally:
            if result is None or result.status != OK:
                self._dirs.clear()  # in case a directory went away under the run: recheck
                try:
                    _unlink(spec.output)
                except OSError:
                    pass

    # -- helpers ---------------------------------------------------------------------------
    def _result(self, t0: float, status: str, reason: str = "", *, fmt: str | None = None,
                exit_code: int | None = None, cpu_s: float = 0.0, pgid: int | None = None,
                budget: str | None = None, io_bytes: int = 0, output_hash: str | None = None,
                output_size: int | None = None) -> TaskResult:
        ok = status == OK
        return TaskResult(status=status, output_format=fmt if ok else None,
                          exit_code=exit_code, reason=one_line(reason) if reason else "",
                          duration_s=max(0.0, self.clock() - t0), cpu_s=round(cpu_s, 6),
                          pgid=pgid, budget=budget, io_bytes=io_bytes,
                          output_hash=output_hash if ok else None,
                          output_size=output_size if ok else None)

    def _fail(self, t0: float, reason: str, **kw) -> TaskResult:
        return self._result(t0, FAIL, reason, **kw)

    def _ensure_dir(self, directory: str) -> None:
        """mkdir -p, once per directory per run (the executor's staging and log directories
        are the same for every task)."""
        if directory not in self._dirs:
            os.makedirs(directory, exist_ok=True)
            self._dirs.add(directory)

    def _deadline(self, budget: Budget, t0: float) -> float | None:
        return None if budget.wall_s is None else t0 + budget.wall_s

    async def _ensure_modules(self, spec: TaskSpec) -> Path | None:
        if not spec.modules_hash:
            return None
        known = self._materialized.get(spec.modules_hash)
        if known is not None:
            return known
        target = modules_dir(self.cache_dir, spec.modules_hash)
        if target.is_dir():
            self._materialized[spec.modules_hash] = target
            return target
        if self._mod_lock is None:
            self._mod_lock = anyio.Lock()
        async with self._mod_lock:
            try:
                path = await anyio.to_thread.run_sync(materialize, self.cache_dir,
                                                      spec.modules_hash, spec.modules)
            except OSError as e:
                raise TaskError(f"cannot materialize modules {spec.modules_hash[:12]} in "
                                f"{self.cache_dir}: {e.strerror or e}") from e
        self._materialized[spec.modules_hash] = path
        return path

    async def _supervise(self, run: _Running, budget: Budget, deadline: float | None,
                         wait_on: int | None, on_readable: Callable[[], bool],
                         exited: Callable[[], bool], cpu_s: Callable[[], float],
                         io_bytes: Callable[[], int]) -> str | None:
        """Wait for the task's process; return None when it finished, or the name of the
        budget it overran (the caller kills it). Escalates a pending cancel to SIGKILL."""
        polled = budget.io_bytes is not None or budget.cpu_s is not None
        while True:
            timeout = self.poll_s if polled else self.idle_poll_s
            if run.cancel_reason is not None:
                timeout = min(timeout, 0.02)
            if deadline is not None:
                timeout = min(timeout, max(0.0, deadline - self.clock()), self.poll_s)
            if wait_on is not None:
                if await wait_fd(wait_on, timeout) and on_readable():
                    return None
            else:
                await anyio.sleep(min(timeout, 0.01))
                if exited():
                    return None
            if run.cancel_reason is not None:
                if run.term_at is not None and time.monotonic() - run.term_at >= self.grace:
                    procs.signal_group(run.pgid, signal.SIGKILL)
                continue
            if deadline is not None and self.clock() >= deadline:
                return "wall_s"
            if budget.io_bytes is not None and io_bytes() > budget.io_bytes:
                return "io_bytes"
            if budget.cpu_s is not None and cpu_s() > budget.cpu_s:
                return "cpu_s"  # polled precisely; RLIMIT_CPU (whole seconds) is the backstop

    async def _terminate(self, pgid: int, pid: int, pidfd: int | None, grace: float) -> None:
        """SIGTERM the group, wait up to `grace` for it to go, then SIGKILL; wait for the
        leader to exit (it stays unreaped: its zombie pins the pgid)."""
        with anyio.CancelScope(shield=True):
            if grace > 0 and procs.signal_group(pgid, signal.SIGTERM):
                end = time.monotonic() + grace
                await wait_exit(pid, pidfd, grace)
                while time.monotonic() < end and procs.group_alive(pgid):
                    await anyio.sleep(0.02)
            procs.signal_group(pgid, signal.SIGKILL)
            await wait_exit(pid, pidfd, 10.0)
            # SIGKILL is delivered asynchronously: wait (briefly) until nothing in it runs
            end = time.monotonic() + 2.0
            while procs.group_alive(pgid) and time.monotonic() < end:
                await anyio.sleep(0.01)

    # -- shell -----------------------------------------------------------------------------
    async def _run_shell(self, spec: TaskSpec, budget: Budget, on_start, t0: float) -> TaskResult:
        bundle: _Bundle | None = None
        try:
            if _uses_bundle(spec.argv):
                bundle = await self._ensure_bundle(spec)
                token = object()
                bundle.running.add(token)  # no await since it was looked up: see _bundle_checked
            argv = expand_argv(spec.argv, [i.path for i in spec.inputs], spec.output,
                               str(bundle.path) if bundle is not None else None)
        except TaskError as e:
            return self._fail(t0, e.reason)
        try:
            env = _task_environ(spec.env) if spec.env else None
        except (TypeError, ValueError) as e:
            return self._fail(t0, f"cannot start {argv[0]}: {exc_reason(e)}")
        try:
            _unlink(spec.output)  # the task writes it: no file from before may pass for it
        except OSError as e:
            return self._fail(t0, f"cannot prepare output {spec.output}: {e.strerror or e}")
        log_path = spec.log_path or os.devnull
        try:  # a log holds one execution: the latest
            logfd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC
                            | os.O_CLOEXEC, 0o666)
        except OSError as e:
            return self._fail(t0, f"cannot open log {log_path}: {e.strerror or e}")
        try:
            res = await self._shell(spec, budget, on_start, t0, argv, env, logfd)
            if bundle is None:
                return res
            return await self._bundle_checked(bundle, token, res, spec, t0)
        finally:
            os.close(logfd)
            if bundle is not None:
                bundle.running.discard(token)

    async def _ensure_bundle(self, spec: TaskSpec) -> _Bundle:
        """The task's `{bundle}`: its module set, read-only, in `cache_dir/bundles/<hash>/`
        (materialized once per hash, atomically: see `taskcode.materialize_bundle`)."""
        h = spec.modules_hash
        if not h:
            raise TaskError("argv template refers to {bundle} but the task has no bundled files "
                            "(no modules hash)")
        b = self._bundles.get(h)
        if b is not None and _ino(b.path) == b.ino:
            return b  # (another process may have replaced a changed one meanwhile)
        if self._mod_lock is None:
            self._mod_lock = anyio.Lock()
        async with self._mod_lock:
            b = self._bundles.get(h)
            if b is None or _ino(b.path) != b.ino:
                def make() -> _Bundle:
                    path = materialize_bundle(self.cache_dir, h, spec.modules)
                    return _Bundle(h, path, tree_state(path))
                try:
                    b = await anyio.to_thread.run_sync(make)
                except OSError as e:
                    raise TaskError(f"cannot materialize the bundle {h[:12]} in "
                                    f"{self.cache_dir}: {e.strerror or e}") from e
                self._bundles[h] = b
        return b

    async def _bundle_checked(self, b: _Bundle, token: object, res: TaskResult, spec: TaskSpec,
                              t0: float) -> TaskResult:
        """The result of a task that used `{bundle}`, once it is known the bundle stayed as it
        was built. The modes stop a write unless the task runs as root (or chmods); when the
        bundle is found changed, the writer cannot be told from a task that merely read it
        meanwhile, and either may have read changed files: every task that was using it fails,
        and the copy is discarded (the next task materializes it afresh). A failure that was a
        write refused in it says so."""
        kw = dict(exit_code=res.exit_code, cpu_s=res.cpu_s, pgid=res.pgid, io_bytes=res.io_bytes)
        b.running.discard(token)
        changed = token in b.tainted
        if not b.damaged and tree_state(b.path) != b.state:
            changed = b.damaged = True
            b.tainted.update(b.running)  # still running: they fail when they end
            if self._bundles.get(b.hash) is b:
                del self._bundles[b.hash]
            trash = b.path.with_name(f".trash-{b.hash}-{os.getpid()}-{id(b)}")
            try:
                os.rename(b.path, trash)
            except OSError:
                pass
            else:
                await anyio.to_thread.run_sync(remove_tree, trash)
        if changed:
            if res.status == CXL:
                return res
            return self._fail(t0, f"{{bundle}} changed while the task ran (it, or a task beside "
                                  f"it, wrote into {b.path}); {{bundle}} is read-only: write "
                                  f"only to {{output}} or a temporary directory", **kw)
        if (res.status == FAIL and res.budget is None and res.exit_code not in (None, 0)
                and spec.log_path):
            tail = _log_tail(spec.log_path)
            if str(b.path) in tail and any(h in tail for h in _READ_ONLY_HINTS):
                return self._fail(t0, f"{res.reason}: {{bundle}} ({b.path}) is read-only; write "
                                      f"only to {{output}} or a temporary directory", **kw)
        return res

    async def _shell(self, spec: TaskSpec, budget: Budget, on_start, t0: float, argv: list[str],
                     env: dict | None, logfd: int) -> TaskResult:
        preexec = child_limits(budget)
        proc: subprocess.Popen | None = None
        before = procs.boottime_ns()
        try:
            if preexec is None and self._spawnable(spec) and self._spawner.usable_with(logfd):
                # on the loop: it waits (vfork, holding the GIL) until the child has exec'd,
                # 1–2 ms here; a thread hop measured costlier than the wait
                pid = self._spawner.spawn(argv, env, logfd)
            else:  # rlimits to set in the child, or another working directory
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logfd,
                                        stderr=subprocess.STDOUT, cwd=spec.cwd or None, env=env,
                                        start_new_session=True, preexec_fn=preexec)
                pid = proc.pid
        except FileNotFoundError as e:
            if spec.cwd and e.filename == spec.cwd:
                return self._fail(t0, f"working directory does not exist: {spec.cwd}")
            return self._fail(t0, f"command not found: {argv[0]}")
        except PermissionError:
            return self._fail(t0, f"permission denied: {argv[0]}")
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            return self._fail(t0, f"cannot start {argv[0]}: {exc_reason(e)}")
        pgid = pid
        # the start time without reading /proc/<pid>/stat, which blocks while `sh` execs/forks
        run = _Running(pgid, procs.child_start_time(pid, before, procs.boottime_ns()))
        pidfd = procs.open_pidfd(pid)
        self.registry.add(pgid, run.start)
        self._running[pgid] = run

        def log_bytes() -> int:
            return os.fstat(logfd).st_size if spec.log_path else 0

        def io_now() -> int:
            return _size(spec.output) + log_bytes()

        def cpu_now() -> float:
            st = procs.proc_stat(pid)
            return st.cpu_ticks / procs.CLK_TCK if st else 0.0

        over: str | None = None
        try:
            if on_start is not None:
                on_start(pgid)
            over = await self._supervise(
                run, budget, self._deadline(budget, t0), pidfd, _true,
                lambda: procs.has_exited(pid), cpu_now, io_now)
        except BaseException:
            with anyio.CancelScope(shield=True):
                if run.cancel_reason is None:
                    run.cancel_reason = "cancelled"
                await self._terminate(pgid, pid, pidfd, self.grace)
                self._finish_shell(run, pid, proc, pidfd)
            raise
        if over is not None:
            await self._terminate(pgid, pid, pidfd, self.grace)
        elif run.cancel_reason is not None:  # the leader is gone; make sure the rest is too
            await self._terminate(pgid, pid, pidfd, 0.0)
        reaped = self._finish_shell(run, pid, proc, pidfd)
        code = reaped.exit_code
        try:
            st = os.stat(spec.output)
            out_size, out_file = st.st_size, stat.S_ISREG(st.st_mode)
        except OSError:
            out_size, out_file = 0, False
        io_used = out_size + log_bytes()
        kw = dict(exit_code=code, cpu_s=reaped.cpu_s, pgid=pgid, io_bytes=io_used)
        if run.cancel_reason is not None:
            return self._result(t0, CXL, run.cancel_reason, **kw)
        if over is not None:
            return self._fail(t0, exceeded(over, budget), budget=over, **kw)
        if code != 0 and budget.cpu_s is not None and (
                reaped.signal in (signal.SIGXCPU, signal.SIGKILL) or code == 128 + signal.SIGXCPU
                or reaped.cpu_s >= budget.cpu_s):
            return self._fail(t0, exceeded("cpu_s", budget), budget="cpu_s", **kw)
        if code != 0:
            if budget.mem_mb is not None and spec.log_path and any(
                    h in _log_tail(spec.log_path) for h in _MEM_HINTS):
                return self._fail(t0, f"{exceeded('mem_mb', budget)} ({procs.describe_exit(code)})",
                                  budget="mem_mb", **kw)
            return self._fail(t0, procs.describe_exit(code), **kw)
        if not out_file:
            return self._fail(t0, f"task wrote no output at {spec.output}", **kw)
        if budget.io_bytes is not None and io_used > budget.io_bytes:
            return self._fail(t0, exceeded("io_bytes", budget), budget="io_bytes", **kw)
        return self._result(t0, OK, fmt="raw", **kw)

    def _spawnable(self, spec: TaskSpec) -> bool:
        """Whether `Spawner` can start this task: it runs in the engine's working directory
        (posix_spawn cannot chdir in Python 3.11) and searches the engine's PATH."""
        if spec.env and "PATH" in spec.env:
            return False
        if spec.cwd:
            try:
                return spec.cwd == os.getcwd()
            except OSError:
                return False
        return True

    def _finish_shell(self, run: _Running, pid: int, proc: subprocess.Popen | None,
                      pidfd: int | None) -> procs.Reaped:
        # the leader has exited: kill what it left behind while its zombie pins the pgid
        procs.signal_group(run.pgid, signal.SIGKILL)
        self._running.pop(run.pgid, None)
        self.registry.discard(run.pgid)
        reaped = procs.reap(pid)
        if proc is not None:
            proc.returncode = reaped.exit_code
        if pidfd is not None:
            os.close(pidfd)
        return reaped

    # -- python (and inline in the pool) ---------------------------------------------------
    async def _run_pool(self, spec: TaskSpec, budget: Budget, on_start, t0: float) -> TaskResult:
        if not spec.entry:
            return self._fail(t0, f"a {spec.runtime} task needs an entry 'module:function'")
        try:
            directory = await self._ensure_modules(spec)
        except TaskError as e:
            return self._fail(t0, e.reason)
        request = {"entry": spec.entry, "modules_hash": spec.modules_hash or "",
                   "modules_dir": str(directory) if directory else None,
                   "inputs": [(i.path, i.format, i.name) for i in spec.inputs],
                   "output": spec.output, "log_path": spec.log_path, "budget": budget.as_dict(),
                   "env": dict(spec.env or {}), "cwd": spec.cwd}
        if budget.io_bytes is not None and spec.log_path:
            # polled from the first beat on: no log of an earlier execution may count (the
            # worker starts it afresh too)
            try:
                os.truncate(spec.log_path, 0)
            except FileNotFoundError:
                pass
            except OSError as e:
                return self._fail(t0, f"cannot open log {spec.log_path}: {e.strerror or e}")
        try:
            worker = await self.pool.acquire(spec.modules_hash)
        except (OSError, subprocess.SubprocessError) as e:
            return self._fail(t0, f"cannot start a python worker: {exc_reason(e)}")
        t0 = self.clock()  # budgets and duration count from here, not from the wait for a worker
        reusable = False
        run: _Running | None = None
        try:
            try:
                worker.send(request)
            except OSError:  # died while idle: a fresh one (the task has not started)
                worker = await self.pool.replace(worker)
                worker.send(request)
            run = _Running(worker.pgid, worker.start)
            self._running[worker.pgid] = run
            # the worker's CPU so far (to tell the task's share if it dies): its last reply
            # says, /proc when it has not replied yet or a CPU budget is polled from /proc
            cpu0 = worker.cpu_base
            if cpu0 is None or budget.cpu_s is not None:
                cpu0 = worker.cpu_ticks() / procs.CLK_TCK

            def io_now() -> int:
                return _size(spec.log_path) if spec.log_path else 0

            def cpu_now() -> float:
                return worker.cpu_ticks() / procs.CLK_TCK - cpu0

            over: str | None = None
            try:
                if on_start is not None:
                    on_start(worker.pgid)
                over = await self._supervise(
                    run, budget, self._deadline(budget, t0), worker.rfd, worker.pump,
                    worker.exited, cpu_now, io_now)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    if run.cancel_reason is None:
                        run.cancel_reason = "cancelled"
                    await self._terminate(worker.pgid, worker.pid, worker.pidfd, self.grace)
                    worker.finish()
                raise
            reply = worker.reply() if over is None else None
            if run.cancel_reason is not None or over is not None or reply is None:
                await self._terminate(worker.pgid, worker.pid, worker.pidfd,
                                      self.grace if run.cancel_reason is not None else 0.0)
                reaped = worker.finish()
                cpu = max(0.0, reaped.cpu_s - cpu0)
                kw = dict(exit_code=reaped.exit_code, cpu_s=cpu, pgid=worker.pgid,
                          io_bytes=io_now())
                if run.cancel_reason is not None:
                    return self._result(t0, CXL, run.cancel_reason, **kw)
                if over is not None:
                    return self._fail(t0, exceeded(over, budget), budget=over, **kw)
                return self._fail(t0, self._death_reason(worker, reaped, budget),
                                  budget="cpu_s" if self._is_cpu_kill(reaped, budget) else None,
                                  **kw)
            worker.tasks += 1
            worker.cpu_base = reply.get("cpu_total")
            if spec.modules_hash:
                worker.hashes.add(spec.modules_hash)
            reusable = not reply.get("replace")
            kw = dict(cpu_s=float(reply.get("cpu_s") or 0.0), pgid=worker.pgid,
                      io_bytes=int(reply.get("io_bytes") or 0))
            if reply.get("status") == OK:
                return self._result(t0, OK, fmt=reply.get("format"),
                                    output_hash=reply.get("hash"), output_size=reply.get("size"),
                                    **kw)
            return self._fail(t0, reply.get("reason") or "task failed", budget=reply.get("budget"),
                              **kw)
        finally:
            if run is not None:
                self._running.pop(run.pgid, None)
            with anyio.CancelScope(shield=True):
                await self.pool.release(worker, reusable)

    @staticmethod
    def _is_cpu_kill(reaped: procs.Reaped, budget: Budget) -> bool:
        return budget.cpu_s is not None and reaped.signal == signal.SIGXCPU

    @staticmethod
    def _death_reason(worker: Worker, reaped: procs.Reaped, budget: Budget) -> str:
        if Runtimes._is_cpu_kill(reaped, budget):
            return exceeded("cpu_s", budget)
        what = procs.describe_exit(reaped.exit_code)
        if worker.tasks == 0 and reaped.exit_code not in (None, 0) and reaped.signal is None:
            err = worker.startup_error()
            if err:
                return f"python worker failed to start ({what}): {err}"
        return f"python worker died ({what})"


# -- the runtimes registered in core.runtimes.RUNTIMES --------------------------------------------

class Runtime(Protocol):
    """One way of running a task, named by `core.runtimes.RUNTIMES[name].impl` and made once
    per `Runtimes` as `Impl(runtimes)`. `run` gets the parsed budget, `on_start(pgid)` to call
    once the task's process group exists, the start time `t0` on the runtimes' clock and the
    executor's `EpisodeHost` (or None); it answers a `TaskResult` (`runtimes._result` /
    `_fail`), never raising for the task's own errors."""

    async def run(self, spec: TaskSpec, budget: Budget, on_start, t0: float,
                  host=None) -> TaskResult: ...


class PythonRuntime:
    """`python`: a worker process of the pool (`Runtimes._run_pool`)."""

    def __init__(self, rt: Runtimes):
        self.rt = rt

    async def run(self, spec: TaskSpec, budget: Budget, on_start, t0: float,
                  host=None) -> TaskResult:
        return await self.rt._run_pool(spec, budget, on_start, t0)


class ShellRuntime:
    """`shell`: the argv template in its own session and process group (`Runtimes._run_shell`);
    `{bundle}` is the package's module files, read-only (`Runtimes._ensure_bundle`)."""

    def __init__(self, rt: Runtimes):
        self.rt = rt

    async def run(self, spec: TaskSpec, budget: Budget, on_start, t0: float,
                  host=None) -> TaskResult:
        return await self.rt._run_shell(spec, budget, on_start, t0)
