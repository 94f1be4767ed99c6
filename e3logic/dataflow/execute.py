"""Execute a decided run: turn the decision into executor jobs, start the runtimes, run the
heartbeat executor, publish outputs into the working copy.

`Go` calls `execute(...)` with everything it needs spelled out; this module keeps no state
between runs and decides nothing about *what* runs (that is `decide`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from .model import Project
from .staging import run_token


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
    restored: list = field(default_factory=list)  # hand-edited output files put back


class ReporterSink:
    """The executor's `OutcomeSink` for a go reporter (an object with `outcome(name, outcome,
    seconds, note)` and `many(rows)`, the CLI's `run_cmds` reporter): each outcome with its
    note (why it failed, was skipped or cancelled); a flush's rows in one `many` call; each
    start (a task submitted) at once."""

    def __init__(self, reporter):
        self.reporter = reporter

    def started(self, name: str) -> None:
        self.reporter.started(name)

    def outcome(self, name: str, outcome: str, seconds: float, note: str = "") -> None:
        self.reporter.outcome(name, outcome, seconds, note)

    def many(self, reports: list) -> None:
        self.reporter.many(reports)


def execute(api, ws: str, run_id: str, project: Project, decision, root: str, *, cap: int,
            executor: str, force, fail_fast: bool, strict_batches: bool, reporter,
            interrupted: Callable[[], str | None], verified=(),
            before_run: Callable[[], None] | None = None,
            plan=None, fresh=()) -> Executed:
    """Run `decision.run` (the cached ones are committed at the first beat) against the
    snapshot `root`. `force`: True, or the set of dataflows whose memo entries are ignored.
    `interrupted()` names a signal that arrived, or None. `plan`: the planner's answer for
    `decision.run` (its batches order the work). `fresh`: cached dataflows whose results are
    new to this repository (pulled from a remote): writing their files restores nothing."""
    from ..exec.backends import backend_for

    repo = api.r
    mref = project.pkg.get("modules")
    backend = backend_for(executor, repo, workers=cap, modules_tree=mref["hash"] if mref else None,
                          token=run_token(repo, run_id))
    # python workers start while we plan
    backend.warm(project.pkg["tasks"][project.dataflows[n]["task"]]["runtime"]
                 for n in decision.run)
    try:
        return _execute_with(api, ws, run_id, project, decision, root, backend, cap=cap,
                             force=force, fail_fast=fail_fast,
                             strict_batches=strict_batches, reporter=reporter,
                             interrupted=interrupted, verified=verified, before_run=before_run,
                             plan=plan, fresh=fresh)
    except BaseException:
        backend.kill()
        raise


def _execute_with(api, ws, run_id, project: Project, pred, root: str, backend, *, cap,
                  force, fail_fast, strict_batches, reporter, interrupted,
                  verified, plan, before_run=None, fresh=()) -> Executed:
    import anyio

    from ..exec.executor import Executor, Job

    repo = api.r
    # hits whose output the root already holds (none pulled just now) never reach the
    # executor: their results are the decision's, their files are checked here, before it
    kept = [] if force is True else sorted(n for n in pred.cached
                                          if n in pred.in_root and n not in fresh)
    restored = []
    publish = _publisher(api, ws, {project.outputs[n]: pred.outputs[n] for n in pred.cached
                                   if n not in fresh})
    if reporter:
        reporter.start(len(pred.order))
    if kept:
        if publish is not None:  # outputs are engine-owned: put back deleted/edited files
            try:
                restored = publish.wc.ensure([(project.outputs[n], pred.outputs[n])
                                              for n in kept])
            except BaseException:
                publish.close()
                raise
        if reporter:
            reporter.outcomes(kept, "cached")
    done = set(kept)
    cached = [n for n in pred.cached if n not in done]
    priority = list(cached)
    batch_of = {n: 0 for n in cached}
    if plan is not None:
        priority += [n for b in plan.batches for n in b]
        batch_of.update({n: i + 1 for i, b in enumerate(plan.batches) for n in b})
    order = [n for n in pred.order if n not in done] if done else pred.order
    sel = set(order)
    # the other predicted hits skip the executor's slots: committed together at its first beat
    hits = {} if force is True else {
        n: (pred.keys[n], pred.outputs[n], pred.formats.get(n) or "raw", project.outputs[n])
        for n in cached}
    caps = dict(repo.config.get("resources") or {})
    producer = project.producer.get
    jobs = []
    for n in order:
        d = project.dataflows[n]
        t = project.pkg["tasks"][d["task"]]
        jobs.append(Job(
            name=n, task_hash=project.task_hashes[d["task"]], runtime=t["runtime"],
            entry=t.get("entry"), argv=tuple(t["argv"]) if t.get("argv") else None,
            inputs=tuple(d["inputs"]), output_path=project.outputs[n],
            deps=frozenset(x for x in map(producer, d["inputs"]) if x in sel),
            leases=project.leases(n), budget=tuple(sorted((d.get("budget") or {}).items())),
            profile=d.get("profile") or "ro", modules_hash=project.modules_hash,
            # every demand: the executor holds those with a capacity in [resources] to it, a
            # cluster backend turns them into worker restrictions
            resources=tuple(sorted((d.get("resources") or {}).items()))))
    journal = repo.journal

    asked = [float("-inf")]

    def should_cancel():
        why = interrupted()
        if why:
            return f"interrupted by {why}"
        now = time.monotonic()
        if now - asked[0] < 0.05:  # `e3 cancel` is read at most every 50 ms, not per beat
            return None
        asked[0] = now
        return "cancelled by 'e3 cancel'" if journal.cancel_requested(run_id) else None

    ex = Executor(repo, ws, jobs, priority, run_id=run_id, backend=backend, cap=cap,
                  force=force, fail_fast=fail_fast, publish=publish,
                  should_cancel=should_cancel,
                  on_outcome=ReporterSink(reporter) if reporter else None,
                  batches=batch_of if strict_batches else None, capacities=caps,
                  precached=hits, in_root=pred.in_root, snapshot=root,
                  verified=verified)

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
                    await backend.close()
                outer.cancel_scope.cancel()

    if before_run is not None:  # e.g. gc.freeze: the plan and jobs made since the decision
        before_run()
    try:
        st = anyio.run(main)  # (a KeyboardInterrupt: `execute` kills what runs)
    finally:
        if publish is not None:
            publish.close()
    outcome, results, keys = st.outcome, st.results, dict(st.keys)
    if kept:
        outcome = {**{n: "cached" for n in kept}, **outcome}
        results = {**{n: (pred.keys[n], pred.outputs[n]) for n in kept}, **results}
        keys = {**{n: pred.keys[n] for n in kept}, **keys}
    if publish is not None:
        restored += publish.restored
    return Executed(outcome, results, st.root, st.cancel_reason, list(st.stale), keys,
                    sorted(restored))


class WorkingCopyPublisher:
    """The executor's `Publisher` for the current workspace: writes the run's outputs into
    the working copy. The executor calls it from its flush (possibly a worker thread, one
    flush at a time), so it has an index.db connection of its own (`close()` at the end)."""

    def __init__(self, api, kept: dict | None = None):
        from ..repo.index import IndexDB
        from ..repo.workingcopy import WorkingCopy

        self.db = IndexDB(api.r.index.path)
        self.wc = WorkingCopy(api.r, db=self.db)
        self.kept = kept or {}  # output path -> hash, for the dataflows decided cached
        #: output files whose bytes the run did not change but that were edited by hand:
        #: written back with the value they already had
        self.restored: list[str] = []

    def begin(self) -> None:
        # marked pending before the root moves: a kill between the root update and the
        # file writes is completed by the next command's recover()
        self.db.journal.begin_sync("pending")

    def publish(self, root: str, items: list) -> None:
        written = self.wc.ensure(items)  # files already matching (stat cache) are not rewritten
        if written and self.kept:
            want = dict(items)
            self.restored += [p for p in written if p in self.kept and self.kept[p] == want[p]]
        self.db.journal.end_sync(root)

    def close(self) -> None:
        self.db.close()


def _publisher(api, ws, kept: dict | None = None) -> WorkingCopyPublisher | None:
    """A publisher when `ws` is the checked-out workspace (its files are the working copy)."""
    return WorkingCopyPublisher(api, kept) if ws == api.current else None
