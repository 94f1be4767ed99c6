"""Driving `inline` tasks inside the executor: plain functions and generators that yield
effects (sdk.yield_ / await_ / promote) across beats, with a lease-checked episode context."""
from __future__ import annotations

import contextvars
import inspect

from ..sdk.effects import CURRENT, Await, EpisodeContext, Promote, Yield
from .runtimes import _install_routers, _Router, write_output


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0]}" if msg else type(e).__name__


async def drive(executor, job, ep, fn, args, out_file, log_path: str | None = None
                ) -> tuple[str, str | None, str]:
    """Run one inline task; returns (status ok|fail|cxl, output format, reason). Its print()
    output goes to `log_path`."""
    import anyio

    from .budgets import parse_budget

    budget = parse_budget(dict(job.budget))
    log = open(log_path, "a", encoding="utf-8", errors="replace") if log_path else None
    if log:
        _install_routers()
    try:
        # an inline thread cannot be killed: past its wall budget it is abandoned, and failed
        with anyio.move_on_after(budget.wall_s if budget.wall_s else float("inf")) as scope:
            res = await _drive(executor, job, ep, fn, args, out_file, log)
        if scope.cancelled_caught:
            return "fail", None, f"budget wall_s={_num(budget.wall_s)} exceeded"
        if budget.io_bytes is not None and res[0] == "ok":
            used = _size(out_file) + (_size(log_path) if log_path else 0)
            if used > budget.io_bytes:
                return "fail", None, f"budget io_bytes={budget.io_bytes} exceeded"
        return res
    finally:
        if log:
            log.close()


def _num(x) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _size(path) -> int:
    import os

    try:
        return os.path.getsize(path)
    except OSError:
        return 0


async def _drive(executor, job, ep, fn, args, out_file, log):
    import anyio

    def refused(note: str) -> None:
        executor.note(ep, note)

    ctx = EpisodeContext(job.leases, job.profile, on_refused=refused)
    cv = contextvars.copy_context()
    cv.run(CURRENT.set, ctx)

    def call(f, *a):
        _Router._local.stream = log
        try:
            return cv.run(f, *a)
        finally:
            _Router._local.stream = None
            if log:
                log.flush()

    done = object()

    def step(gen, value):
        # StopIteration cannot cross a thread boundary: hand the return value back instead
        try:
            return False, call(gen.send, value)
        except StopIteration as stop:
            return done, stop.value

    try:
        result = await anyio.to_thread.run_sync(call, fn, *args, abandon_on_cancel=True)
        if inspect.isgenerator(result):
            gen, send = result, None
            while True:
                flag, eff = await anyio.to_thread.run_sync(step, gen, send, abandon_on_cancel=True)
                if flag is done:
                    result = eff
                    break
                send = None
                if isinstance(eff, Await):
                    outcome = await executor.await_dataflow(ep, eff.dataflow, eff.timeout_beats)
                    if outcome is None or outcome.startswith("deadlock"):
                        gen.close()
                        why = outcome or (f"await {eff.dataflow} timed out after "
                                          f"{eff.timeout_beats} beats")
                        return "cxl", None, why
                    send = outcome
                elif isinstance(eff, Promote):
                    await executor.next_beat(ep, "yield", "promote requested")
                    ctx.profile = ep.profile = "rw"
                    executor.note(ep, "promoted to rw")
                elif eff is None or isinstance(eff, Yield):
                    await executor.next_beat(ep, "yield", eff.note if eff else "")
                else:
                    gen.close()
                    return "fail", None, f"task yielded {type(eff).__name__}; yield sdk.yield_(), sdk.await_() or sdk.promote()"
        fmt, _ = write_output(out_file, result)
        return "ok", fmt, ""
    except anyio.get_cancelled_exc_class():
        raise
    except Exception as e:  # the task's own error: a failed episode, never an engine crash
        return "fail", None, _one_line(e)
