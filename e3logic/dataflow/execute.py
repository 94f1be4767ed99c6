"""Execute a decided run: turn the decision into executor jobs, start the runtimes, run the
heartbeat executor, publish outputs into the working copy.

`Go` calls `execute(...)` with everything it needs spelled out; this module keeps no state
between runs and decides nothing about *what* runs (that is `decide`).
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Callable

from ..core.hashing import hash_parts
from .model import Project


@dataclass
class Executed:
    """What an execution answered: per-dataflow `outcome` and `results` {name: (key, output)},
    the run's own state `root`, why it was cancelled, which dataflows went stale (inputs edited
    elsewhere during the run) and every execution key the executor computed."""
    outcome: dict
    results: dict
    root: str
    cancel_reason: str | None = None
    stale: list = field(default_factory=list)
    keys: dict = field(default_factory=dict)


def run_token(repo, run: str) -> str:
    """Marks a run's task processes (repository + run id: run ids repeat across repos)."""
    return hash_parts([str(repo.dir.resolve()), run])[:32]


def clear_staging(repo, run: str) -> None:
    """Remove the staged task outputs (their names end in the run id) and the spare log
    files (`LogSpares`) a run left behind."""
    from ..exec.logspares import spare_prefix

    for d, pattern in ((repo.dir / "staging", f"out-*-{run}-*"),
                       (repo.logs_dir, spare_prefix(run) + "*")):
        if d.is_dir():
            for f in d.glob(pattern):
                f.unlink(missing_ok=True)


def _outcome_sink(reporter):
    """The executor's `on_outcome` for a reporter: a call per report, and — when the reporter
    has `many` — a flush's reports in one call."""
    if reporter is None:
        return None

    def sink(name: str, outcome: str, seconds: float) -> None:
        reporter.outcome(name, outcome, seconds)

    if hasattr(reporter, "many"):
        sink.many = reporter.many
    return sink


def execute(api, ws: str, run_id: str, project: Project, decision, root: str, *, cap: int,
            executor: str, force, fail_fast: bool, strict_batches: bool, reporter,
            interrupted: Callable[[], str | None], freeze: bool, verified=(),
            plan=None) -> Executed:
    """Run `decision.run` (the cached ones are committed at the first beat) against the
    snapshot `root`. `force`: True, or the set of dataflows whose memo entries are ignored.
    `interrupted()` names a signal that arrived, or None. `plan`: the planner's answer for
    `decision.run` (its batches order the work)."""
    from ..exec.runtimes import Runtimes

    repo = api.r
    runtimes = Runtimes(workers=cap, cache_dir=repo.dir / "cache",
                        inline_in_pool=executor == "processes")
    pooled = {"python", "inline"} if executor == "processes" else {"python"}
    in_pool = sum(1 for n in decision.run if project.pkg["tasks"][
        project.dataflows[n]["task"]]["runtime"] in pooled)
    runtimes.prestart(min(cap or 1, in_pool))  # python workers start while we plan
    try:
        return _execute_with(api, ws, run_id, project, decision, root, runtimes, cap=cap,
                             executor=executor, force=force, fail_fast=fail_fast,
                             strict_batches=strict_batches, reporter=reporter,
                             interrupted=interrupted, freeze=freeze, verified=verified,
                             plan=plan)
    except BaseException:
        runtimes.kill_all()
        raise


def _execute_with(api, ws, run_id, project: Project, pred, root: str, runtimes, *, cap,
                  executor, force, fail_fast, strict_batches, reporter, interrupted, freeze,
                  verified, plan) -> Executed:
    import anyio

    from ..exec.dispatch import make_runner
    from ..exec.executor import Executor, Job
    from ..exec.logspares import LogSpares

    repo = api.r
    priority = list(pred.cached)
    batch_of = {n: 0 for n in pred.cached}
    if plan is not None:
        priority += [n for b in plan.batches for n in b]
        batch_of.update({n: i + 1 for i, b in enumerate(plan.batches) for n in b})
    sel = set(pred.order)
    # predicted hits skip the executor's slots: committed together at its first beat
    hits = {} if force is True else {
        n: (pred.keys[n], pred.outputs[n], pred.formats.get(n) or "raw", project.outputs[n])
        for n in pred.cached}
    caps = dict(repo.config.get("resources") or {})
    jobs = []
    for n in pred.order:
        d = project.dataflows[n]
        t = project.pkg["tasks"][d["task"]]
        jobs.append(Job(
            name=n, task_hash=project.task_hashes[d["task"]], runtime=t["runtime"],
            entry=t.get("entry"), argv=tuple(t["argv"]) if t.get("argv") else None,
            inputs=tuple(d["inputs"]), output_path=project.outputs[n],
            deps=frozenset(x for x in project.deps[n] if x in sel),
            leases=project.leases(n), budget=tuple(sorted((d.get("budget") or {}).items())),
            profile=d.get("profile") or "ro", modules_hash=project.modules_hash,
            resources=tuple(sorted((r, a) for r, a in (d.get("resources") or {}).items()
                                   if r in caps))))
    mref = project.pkg.get("modules")
    runner = make_runner(repo, runtimes, mref["hash"] if mref else None)
    db = repo.index

    asked = [float("-inf")]

    def should_cancel():
        why = interrupted()
        if why:
            return f"interrupted by {why}"
        now = time.monotonic()
        if now - asked[0] < 0.05:  # `e3 cancel` is read at most every 50 ms, not per beat
            return None
        asked[0] = now
        r = db.execute("SELECT cancel_requested FROM runs WHERE run=?", (run_id,)).fetchone()
        return "cancelled by 'e3 cancel'" if r and r[0] else None

    publish = _publisher(api, ws)
    if reporter:
        reporter.start(len(pred.order))
    ex = Executor(repo, ws, jobs, priority, run_id=run_id, runner=runner, cap=cap,
                  cooperative=executor == "inline", force=force,
                  fail_fast=fail_fast, publish=publish, should_cancel=should_cancel,
                  on_outcome=_outcome_sink(reporter),
                  batches=batch_of if strict_batches else None, capacities=caps,
                  precached=hits, in_root=pred.in_root, snapshot=root,
                  verified=verified)
    runner.on_group = lambda ep, pgid, start: ex.record_group((run_id, ep.episode, pgid, start))
    runner.executor = ex
    runner.token = run_token(repo, run_id)
    runner.spares = LogSpares(repo.logs_dir, run_id)

    async def watch_flag():
        # the signal flag cancels even a task the loop is awaiting (inline executor)
        while not interrupted():
            await anyio.sleep(0.05)
        ex.cancel(f"interrupted by {interrupted()}")

    async def main():
        async with anyio.create_task_group() as outer:
            outer.start_soon(watch_flag)
            try:
                return await ex.run()
            finally:
                with anyio.CancelScope(shield=True):
                    await runtimes.aclose()
                outer.cancel_scope.cancel()

    if freeze:  # the modules, plan and jobs made since the decision: out of collections
        gc.freeze()
    try:
        st = anyio.run(main)  # (a KeyboardInterrupt: `execute` kills what runs)
    finally:
        runner.spares.close()
        if publish is not None:
            publish.close()
    return Executed(st.outcome, st.results, st.root, st.cancel_reason, list(st.stale),
                    dict(st.keys))


def _publisher(api, ws):
    """Writes the run's outputs into the working copy. The executor calls it from its
    flush (possibly a worker thread, one flush at a time), so it has an index.db
    connection of its own (`publish.close()` at the end)."""
    if ws != api.current:
        return None
    from ..repo.index import IndexDB
    from ..repo.workingcopy import WorkingCopy

    db = IndexDB(api.r.index.path)
    wc = WorkingCopy(api.r, db=db)

    def begin():
        # marked pending before the root moves: a kill between the root update and the
        # file writes is completed by the next command's recover()
        db.set_meta("wc_target", "pending")

    def publish(root, items):
        wc.ensure(items)  # files already matching (stat cache) are not rewritten
        db.set_meta("wc_root", root)
        db.execute("DELETE FROM meta WHERE key='wc_target'")

    publish.begin = begin
    publish.close = db.close

    return publish
