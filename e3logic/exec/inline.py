"""The `inline` runtime: a task's function runs in the engine's own process, in a thread, the
one way inline tasks run (with or without an executor).

A plain function is called once; a generator is driven across beats through the executor's
`EpisodeHost` (`sdk.yield_` → the next beat, `sdk.await_` → another dataflow's outcome,
`sdk.promote` → read-write at the next beat), with a lease-checked episode context
(`sdk.lease`). Without a host (`Runtimes.run` called directly) a generator is a failure.

`print()` from the task's threads goes to its log (sys.stdout/sys.stderr are replaced by a
per-thread router); an exception's traceback is written there too. Budgets: `wall_s` and
`io_bytes` are watched on the runtimes' clock while it runs (a thread cannot be killed: it is
abandoned, its result discarded); `cpu_s` (the task's thread time) and `io_bytes` are checked
at the end; `mem_mb` only turns a `MemoryError` into the budget's reason.
"""
from __future__ import annotations

import contextvars
import inspect
import os
import time
from pathlib import Path
from typing import Any

import anyio

from ..sdk.effects import CURRENT, Await, EpisodeContext, Promote, Yield
from .budgets import Budget, exceeded
from .runtimes import CXL, OK, TaskResult, TaskSpec, _install_routers, _Router, shared_spaces
from .taskcode import TaskError, encode_output, load_inputs, print_user_traceback, write_staged
from .worker_main import Authored, failure_reason, user_reason

_DONE = "done"    # a generator returned
_ERR = "err"      # the task's code raised
_VALUE = "value"  # a call returned (or a generator yielded)


class _Cancelled(Exception):
    """The episode ends `cxl` (an await that timed out or would deadlock)."""


class _Threads:
    """What the task's threads share with the loop: its log, its context (leases), the thread
    CPU time it used, and whether the loop gave up on it. `directory`: the package's modules
    (tracebacks and reasons name their files as authored)."""

    def __init__(self, log, cv: contextvars.Context, budget: Budget, directory=None):
        self.log, self.cv, self.budget = log, cv, budget
        self.directory = directory
        self.cpu_s = 0.0
        self.abandoned = False

    def call(self, f, *args) -> tuple[str, Any]:
        """f(*args) in the task's context with print() going to its log (in a worker thread):
        (_VALUE, value), (_DONE, returned value) for a finished generator, or (_ERR,
        TaskError) for an exception of the task's, its traceback in the log."""
        if self.abandoned:
            return _ERR, TaskError("abandoned")
        _Router._local.stream = self.log
        c0 = time.thread_time()
        try:
            return _VALUE, self.cv.run(f, *args)
        except StopIteration as stop:  # cannot cross the thread boundary: hand it back
            return _DONE, stop.value
        except BaseException as e:  # the task's own error: a failure, never an engine crash
            print_user_traceback(e, skip=1, file=Authored(self.log, self.directory))
            if isinstance(e, MemoryError) and self.budget.mem_mb is not None:
                return _ERR, TaskError(exceeded("mem_mb", self.budget), budget="mem_mb")
            return _ERR, TaskError(user_reason(e, self.directory))
        finally:
            self.cpu_s += time.thread_time() - c0
            _Router._local.stream = None
            try:
                self.log.flush()
            except (OSError, ValueError):
                pass


def _load(spec: TaskSpec, directory: Path | None, log):
    """The task's function and decoded inputs (in a worker thread; what importing the
    task's modules prints, an import's traceback included, goes to its `log`)."""
    _Router._local.stream = Authored(log, directory)
    try:
        fn = shared_spaces().resolve(spec.entry, spec.modules_hash or None, directory)
        return fn, load_inputs(spec.inputs)
    except TaskError as e:
        raise TaskError(failure_reason(e, directory), budget=e.budget) from None
    except BaseException as e:  # resolving or decoding blew up in an unexpected way
        raise TaskError(user_reason(e, directory)) from None
    finally:
        _Router._local.stream = None
        try:
            log.flush()
        except (OSError, ValueError):
            pass


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


class InlineRuntime:
    """`core.runtimes.RUNTIMES["inline"]`; one per `Runtimes` (`rt`: its pool size bounds the
    threads, its clock the wall budget, its module cache the imports)."""

    def __init__(self, rt):
        self.rt = rt
        self._limiter: anyio.CapacityLimiter | None = None

    async def run(self, spec: TaskSpec, budget: Budget, on_start, t0: float,
                  host=None) -> TaskResult:
        rt = self.rt
        if not spec.entry:
            return rt._fail(t0, "an inline task needs an entry 'module:function'")
        try:
            directory = await rt._ensure_modules(spec)
        except TaskError as e:
            return rt._fail(t0, e.reason)
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(rt.workers)
        _install_routers()
        log_path = spec.log_path or os.devnull
        try:  # a log holds one execution: the latest
            log = open(log_path, "w", encoding="utf-8", errors="backslashreplace", buffering=1)
        except OSError as e:
            return rt._fail(t0, f"cannot open log {log_path}: {e.strerror or e}")
        ctx = None
        cv = contextvars.copy_context()
        if host is not None:
            ctx = EpisodeContext(host.leases, host.profile, on_refused=host.note)
            cv.run(CURRENT.set, ctx)
        threads = _Threads(log, cv, budget, directory)

        def io_now() -> int:
            return _size(spec.log_path) if spec.log_path else 0

        try:
            try:
                value, over = await self._supervised(
                    self._body(spec, directory, threads, host, ctx), threads, budget,
                    rt._deadline(budget, t0), io_now)
            except TaskError as e:
                return rt._fail(t0, e.reason, budget=e.budget, cpu_s=threads.cpu_s)
            except _Cancelled as e:
                return rt._result(t0, CXL, str(e), cpu_s=threads.cpu_s)
        finally:
            try:
                log.close()
            except OSError:
                pass
        if over is not None:  # its thread, which cannot be stopped, was abandoned
            return rt._fail(t0, exceeded(over, budget), budget=over, cpu_s=threads.cpu_s)
        kw: dict[str, Any] = dict(cpu_s=threads.cpu_s)
        try:
            data, fmt = encode_output(value)
        except TaskError as e:
            return rt._fail(t0, e.reason, **kw)
        kw["io_bytes"] = len(data) + io_now()
        if budget.cpu_s is not None and threads.cpu_s > budget.cpu_s:
            return rt._fail(t0, exceeded("cpu_s", budget), budget="cpu_s", **kw)
        if budget.io_bytes is not None and kw["io_bytes"] > budget.io_bytes:
            return rt._fail(t0, exceeded("io_bytes", budget), budget="io_bytes", **kw)
        try:
            if len(data) > (1 << 20):
                await anyio.to_thread.run_sync(write_staged, spec.output, data)
            else:
                write_staged(spec.output, data)
        except OSError as e:
            return rt._fail(t0, f"cannot write output {spec.output}: {e.strerror or e}", **kw)
        return rt._result(t0, OK, fmt=fmt, **kw)

    async def _thread(self, threads: _Threads, f, *args):
        return await anyio.to_thread.run_sync(threads.call, f, *args, abandon_on_cancel=True,
                                              limiter=self._limiter)

    async def _body(self, spec, directory, threads: _Threads, host, ctx):
        """Load, call, and drive a generator to its return value; raises `TaskError` for a
        failure, `_Cancelled` for an episode the executor ends."""
        fn, args = await anyio.to_thread.run_sync(_load, spec, directory, threads.log,
                                                  abandon_on_cancel=True, limiter=self._limiter)
        kind, value = await self._thread(threads, fn, *args)
        if kind == _ERR:
            raise value
        if not inspect.isgenerator(value):
            return value
        if host is None:
            value.close()
            raise TaskError("task returned a generator; generator tasks are driven by the "
                            "executor, not by Runtimes.run()")
        gen, send = value, None
        while True:
            kind, eff = await self._thread(threads, gen.send, send)
            if kind == _DONE:
                return eff
            if kind == _ERR:
                raise eff
            send = None
            if isinstance(eff, Await):
                outcome = await host.await_dataflow(eff.dataflow, eff.timeout_beats)
                if outcome is None or outcome.startswith("deadlock"):
                    gen.close()
                    raise _Cancelled(outcome or f"await {eff.dataflow} timed out after "
                                     f"{eff.timeout_beats} beats")
                send = outcome
            elif isinstance(eff, Promote):
                await host.next_beat("yield", "promote requested")
                ctx.profile = "rw"
                host.promote()
            elif eff is None or isinstance(eff, Yield):
                await host.next_beat("yield", eff.note if eff else "")
            else:
                gen.close()
                raise TaskError(f"task yielded {type(eff).__name__}; yield sdk.yield_(), "
                                f"sdk.await_() or sdk.promote()")

    async def _supervised(self, body, threads: _Threads, budget: Budget,
                          deadline: float | None, io_now) -> tuple[Any, str | None]:
        """Run `body`; (its value, None), or (None, the budget it overran) after abandoning
        it. Its exceptions propagate."""
        rt = self.rt
        if deadline is None and budget.io_bytes is None:
            try:
                return await body, None
            except BaseException:
                threads.abandoned = True
                raise
        box: dict[str, Any] = {}
        done = anyio.Event()

        async def runner() -> None:
            try:
                box["value"] = await body
            except (TaskError, _Cancelled) as e:
                box["error"] = e
            done.set()

        over = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(runner)
                while not done.is_set():
                    timeout = rt.poll_s
                    if deadline is not None:
                        timeout = min(timeout, max(0.0, deadline - rt.clock()))
                    with anyio.move_on_after(timeout):
                        await done.wait()
                    if done.is_set():
                        break
                    if deadline is not None and rt.clock() >= deadline:
                        over = "wall_s"
                    elif budget.io_bytes is not None and io_now() > budget.io_bytes:
                        over = "io_bytes"
                    if over is not None:
                        threads.abandoned = True
                        tg.cancel_scope.cancel()
                        break
        except BaseException:
            threads.abandoned = True
            raise
        if over is not None:
            return None, over
        if "error" in box:
            raise box["error"]
        return box.get("value"), None
