"""The heartbeat executor (anyio).

Each beat: **capture** ready jobs (inputs committed, a slot and their leases free) in plan
priority order → **compute** (memo lookup; start misses on the backend) → wait for a finish →
**commit** the finished results in canonical order: objects, memo + history rows (one SQLite
transaction), workspace root by compare-and-swap, then `publish` (working-copy files). What beat
N commits is visible to the capture of beat N+1.

`ExecState` is the executor's one state object; `ExecState.log` records what ran, hit, failed,
was skipped or cancelled, in order, for tests to assert on.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

from ..core.paths import lease_conflict
from ..repo.trees import blob_entry
from .episodes import Episode, flush
from .memo import ExecutionRecord, Memo, execution_key, usable

OUTCOMES = ("executed", "cached", "failed", "skipped", "cancelled")


@dataclass(frozen=True)
class Job:
    name: str                    # dataflow name
    task_hash: str
    runtime: str                 # python | shell | inline
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
    output_hash: str | None = None
    output_format: str | None = None
    reason: str = ""
    exit_code: int | None = None
    started: float = 0.0
    ended: float = 0.0


@dataclass
class ExecState:
    """Everything the executor knows; nothing else holds run state.

    root      the workspace root as last committed
    pending   jobs not yet captured, in priority order
    running   job name -> Episode of its current attempt
    staged    finished results awaiting the next commit
    outcome   job name -> one of OUTCOMES (the receipt's source)
    results   job name -> (execution key, output hash) for ok/cached jobs
    log       (beat, event, job name) in the order things happened
    """

    root: str
    pending: list = field(default_factory=list)
    running: dict = field(default_factory=dict)
    staged: list = field(default_factory=list)
    outcome: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    keys: dict = field(default_factory=dict)
    episodes: list = field(default_factory=list)
    log: list = field(default_factory=list)
    beat: int = 0
    cancel_reason: str | None = None
    stale: list = field(default_factory=list)


Runner = Callable[[Job, str, tuple, str, Episode], Awaitable[Finished]]


class Executor:
    def __init__(self, repo, workspace: str, jobs: list[Job], priority: list[str], *,
                 run_id: str, runner, cap: int = 1, cooperative: bool = False,
                 force: bool = False, fail_fast: bool = False, publish=None,
                 should_cancel: Callable[[], str | None] | None = None, clock=time.time,
                 tmp_dir: Path | None = None, on_outcome=None, tick: float = 0.2,
                 batches: dict | None = None, max_rechecks: int = 3,
                 capacities: dict | None = None, precached: dict | None = None):
        self.repo = repo
        self.ws = workspace
        self.jobs = {j.name: j for j in jobs}
        order = {n: i for i, n in enumerate(priority)}
        self.run_id = run_id
        self.runner = runner
        self.cap = max(1, cap or 1)
        self.cooperative = cooperative
        self.force = force
        self.fail_fast = fail_fast
        self.publish = publish
        self.should_cancel = should_cancel
        self.clock = clock
        self.on_outcome = on_outcome
        self.tick = tick
        self.batches = batches  # name -> batch index: run batch by batch (--strict-batches)
        self.max_rechecks = max_rechecks
        self.capacities = dict(capacities or {})
        # name -> (key, output hash, format, output path): memo hits known before the run;
        # they take no slot and are committed together at the first beat
        self.precached = dict(precached or {})
        self._scope = None
        self.suspended: set[str] = set()    # episodes in yield/await: they hold no slot
        self.inflight: dict[str, str] = {}  # execution key -> the dataflow running it
        self.done_keys: set[str] = set()    # executed in this run: a hit even under --force
        self._attempt = 0
        self.await_edges: dict[str, str] = {}
        self._beat_event = None
        self.memo = Memo(repo.index)
        # task outputs are staged outside objects/tmp, which gc sweeps by age
        self.tmp_dir = tmp_dir or (repo.dir / "staging")
        from ..repo.workspaces import Workspaces

        self.workspaces = Workspaces(repo)
        self.state = ExecState(root=self.workspaces.root(workspace),
                               pending=sorted((n for n in self.jobs if n not in self.precached),
                                              key=lambda n: (order.get(n, 1 << 30), n)))
        self._dependents: dict[str, list[str]] = {n: [] for n in self.jobs}
        for j in jobs:
            for d in j.deps:
                self._dependents.setdefault(d, []).append(j.name)

    # -- capture ---------------------------------------------------------------------------
    def _ready(self, name: str) -> bool:
        return all(self.state.outcome.get(d) in ("executed", "cached") for d in self.jobs[name].deps)

    def _blocked(self, name: str) -> bool:
        return any(self.state.outcome.get(d) in ("failed", "skipped", "cancelled")
                   for d in self.jobs[name].deps)

    def _leases_free(self, job: Job) -> bool:
        held = [l for n in self.state.running for l in self.jobs[n].leases]
        return not any(lease_conflict(a, b) for a in job.leases for b in held)

    def _resources_free(self, job: Job, also: list[str]) -> bool:
        """Demands of running and just-captured jobs plus `job` stay within capacities."""
        for r, amount in job.resources:
            cap = self.capacities.get(r)
            if cap is None:
                continue
            used = sum(a for n in (*self.state.running, *also) for rr, a in self.jobs[n].resources
                       if rr == r)
            if used + amount > cap:
                return False
        return True

    def capture(self) -> list[str]:
        st = self.state
        out, keep = [], []
        barrier = None
        if self.batches is not None:
            open_ = [self.batches.get(n, 0) for n in (*st.pending, *st.running)]
            barrier = min(open_) if open_ else 0
        for name in st.pending:
            job = self.jobs[name]
            if self._blocked(name):
                self._finish_outcome(name, "skipped")
            elif barrier is not None and self.batches.get(name, 0) > barrier:
                keep.append(name)
            elif (len(st.running) - len(self.suspended) + len(out) < self.cap and self._ready(name)
                  and self._leases_free(job) and self._resources_free(job, out)
                  and not any(lease_conflict(a, b) for o in out for a in job.leases
                              for b in self.jobs[o].leases)):
                out.append(name)
            else:
                keep.append(name)
        st.pending = keep
        return out

    def _finish_outcome(self, name: str, outcome: str, seconds: float = 0.0) -> None:
        self.state.outcome[name] = outcome
        self.state.log.append((self.state.beat, outcome, name))
        if self.on_outcome:
            self.on_outcome(name, outcome, seconds)

    # -- compute ----------------------------------------------------------------------------
    def _inputs(self, job: Job) -> tuple | None:
        trees = self.repo.trees
        out = []
        for p in job.inputs:
            e = trees.find(self.state.root, p)
            if e is None or e["kind"] != "blob":
                return None
            out.append((p, e["hash"], e.get("format", "raw")))
        return tuple(out)

    async def compute(self, names: list[str], tg) -> None:
        st = self.state
        for name in names:
            job = self.jobs[name]
            ins = self._inputs(job)
            if ins is None:
                missing = [p for p in job.inputs if self.repo.trees.find(st.root, p) is None]
                ep = self._episode(job, None)
                ep.move("fail", st.beat, f"input {missing[0] if missing else '?'} is missing")
                st.staged.append(Finished(job, "", "fail", (), reason=ep.history[-1][3]))
                continue
            key = execution_key(job.task_hash, [h for _, h, _ in ins])
            st.keys[name] = key
            if key in self.inflight:
                # the same execution (task + input bytes) is already running for another
                # dataflow: wait for it and take its result from the memo (shared, not re-run)
                st.pending.insert(0, name)
                st.log.append((st.beat, "share", name))
                continue
            hit = None if (self.force and key not in self.done_keys) else self.memo.lookup(key)
            if usable(self.repo.objects, hit, verify=True):
                st.staged.append(Finished(job, key, "hit", tuple((p, h) for p, h, _ in ins),
                                          output_hash=hit.output_hash,
                                          output_format=hit.output_format))
                continue
            ep = self._episode(job, key)
            st.running[name] = ep
            self.inflight[key] = name
            ep.move("run", st.beat)
            st.log.append((st.beat, "start", name))
            if self.cooperative and job.runtime != "inline":
                st.staged.append(await self.runner(job, key, ins, self._out_file(key, ep), ep))
                st.running.pop(name, None)
            else:
                tg.start_soon(self._run_one, job, key, ins, ep)

    def _episode(self, job: Job, key: str | None) -> Episode:
        n = sum(1 for e in self.state.episodes if e.dataflow == job.name)
        ep = Episode(f"{self.run_id}:{job.name}" + (f"#{n + 1}" if n else ""), self.run_id,
                     job.name, key, job.profile)
        ep.move("plan", self.state.beat)
        self.state.episodes.append(ep)
        return ep

    def _out_file(self, key: str, ep: Episode) -> str:
        """A temp file unique to this episode (two episodes may share an execution key)."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._attempt += 1
        return str(self.tmp_dir / f"out-{key[:24]}-{self.run_id}-{self._attempt}")

    async def _run_one(self, job, key, ins, ep) -> None:
        import anyio

        try:
            res = await self.runner(job, key, ins, self._out_file(key, ep), ep)
        except anyio.get_cancelled_exc_class():
            self.state.running.pop(job.name, None)
            self.state.staged.append(Finished(job, key, "cxl", tuple((p, h) for p, h, _ in ins),
                                              reason=self.state.cancel_reason or "cancelled"))
            raise
        self.state.running.pop(job.name, None)
        self.state.staged.append(res)
        self._wake.set()

    # -- commit -----------------------------------------------------------------------------
    def commit(self) -> None:
        st = self.state
        if not st.staged:
            return
        staged = sorted(st.staged, key=lambda f: f.job.name)
        st.staged = []
        for f in staged:
            if self.inflight.get(f.key) == f.job.name:
                del self.inflight[f.key]
        changes, records, published, failed = {}, [], [], []
        for f in staged:
            job = f.job
            if f.status == "hit":
                changes[job.output_path] = blob_entry(f.output_hash, self.repo.objects.size(f.output_hash),
                                                      f.output_format or "raw")
                st.results[job.name] = (f.key, f.output_hash)
                self._finish_outcome(job.name, "cached")
                published.append((job.output_path, f.output_hash))
                continue
            ep = next(e for e in reversed(st.episodes) if e.dataflow == job.name)
            if f.status == "ok":
                h = self.repo.objects.adopt(f.output_file)
                f.output_hash = h
                self.done_keys.add(f.key)
                changes[job.output_path] = blob_entry(h, self.repo.objects.size(h), f.output_format or "raw")
                st.results[job.name] = (f.key, h)
                if not ep.final:
                    ep.move("ok", st.beat, f"{f.ended - f.started:.3f}s")
                self._finish_outcome(job.name, "executed", f.ended - f.started)
                published.append((job.output_path, h))
            else:
                if f.output_file:
                    try:
                        os.unlink(f.output_file)
                    except FileNotFoundError:
                        pass
                if not ep.final:
                    ep.move("cxl" if f.status == "cxl" else "fail", st.beat, f.reason)
                self._finish_outcome(job.name, "cancelled" if f.status == "cxl" else "failed",
                                     f.ended - f.started)
                failed.append(job.name)
            if f.key:
                records.append(ExecutionRecord(
                    key=f.key, task_hash=job.task_hash, dataflow=job.name, run=self.run_id,
                    workspace=self.ws, status=f.status, started=f.started, ended=f.ended,
                    exit_code=f.exit_code, output_hash=f.output_hash, output_format=f.output_format,
                    error=f.reason or None, inputs=f.inputs, output_path=job.output_path))
        with self.repo.index.transaction() as conn:
            for r in records:
                self.memo.record(conn, r)
            flush(conn, st.episodes)
        self._apply(changes, published)
        if failed and self.fail_fast:
            self.cancel("fail-fast: " + failed[0] + " failed")

    def cancel(self, reason: str) -> None:
        if self.state.cancel_reason is None:
            self.state.cancel_reason = reason
        for name in list(self.state.pending):
            self._finish_outcome(name, "skipped")
        self.state.pending = []
        if self._scope is not None:
            self._scope.cancel()

    # -- the loop ---------------------------------------------------------------------------
    async def run(self) -> ExecState:
        import anyio

        st = self.state
        self._scope = None
        self._wake = anyio.Event()
        self._commit_precached()
        try:
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                while st.pending or st.running or st.staged:
                    st.beat += 1
                    if self.should_cancel:
                        why = self.should_cancel()
                        if why:
                            self.cancel(why)
                            break
                    self._wake = anyio.Event()
                    if self._beat_event is not None:
                        self._beat_event.set()
                    self._beat_event = anyio.Event()
                    await self.compute(self.capture(), tg)
                    if st.running and not st.staged:
                        with anyio.move_on_after(self.tick):  # beat even when nothing finishes
                            await self._wake.wait()
                    self.commit()
                    if not st.running and not st.staged and st.pending and not self.capture_possible():
                        for n in st.pending:
                            self._finish_outcome(n, "skipped")
                        st.pending = []
                    if not (st.pending or st.running or st.staged) and st.cancel_reason is None:
                        self._recheck()
        finally:
            self._after_cancel()
        return st

    def _commit_precached(self) -> None:
        if not self.precached:
            return
        st = self.state
        changes, published = {}, []
        for name in sorted(self.precached):
            key, h, fmt, path = self.precached[name]
            e = self.repo.trees.find(st.root, path)
            if e is None or e.get("hash") != h:
                changes[path] = blob_entry(h, self.repo.objects.size(h), fmt or "raw")
            published.append((path, h))
            st.results[name] = (key, h)
            st.keys[name] = key
            self._finish_outcome(name, "cached")
        self._apply(changes, published)

    def _apply(self, changes: dict, published: list) -> None:
        """Move the root by compare-and-swap, then publish to the working copy (marked pending
        first, so a kill in between is repaired by the next command)."""
        st = self.state
        if self.publish and published and hasattr(self.publish, "begin"):
            self.publish.begin()
        if changes:
            st.root = self.workspaces.update_root(
                self.ws, lambda old: self.repo.trees.set_many(old, changes))
        if self.publish and published:
            self.publish(st.root, published)

    # -- hooks for inline tasks driven across beats (exec/inline.py) ------------------------
    def note(self, ep: Episode, note: str) -> None:
        """Record a note (e.g. a refused lease) in the episode's history, at its current state."""
        ep.history.append((len(ep.history), ep.state, self.state.beat, note, self.clock()))

    async def next_beat(self, ep: Episode, state: str = "yield", note: str = "") -> None:
        """Suspend `ep` (yield) until the next beat; it holds no slot meanwhile."""
        ep.move(state, self.state.beat, note)
        self.suspended.add(ep.dataflow)
        try:
            ev = self._beat_event
            self._wake.set()
            await ev.wait()
        finally:
            self.suspended.discard(ep.dataflow)
        ep.move("run", self.state.beat)

    async def await_dataflow(self, ep: Episode, other: str, timeout_beats: int) -> str | None:
        """Wait until dataflow `other` of this run is finished; its outcome, None on timeout,
        or "deadlock: …" when the wait would close an await cycle."""
        if other not in self.jobs:
            self.note(ep, f"await {other}: not part of this run")
            return "absent"
        chain, cur = [ep.dataflow, other], other
        while cur in self.await_edges:
            cur = self.await_edges[cur]
            chain.append(cur)
            if cur == ep.dataflow:
                ep.move("await", self.state.beat, other)
                return "deadlock: " + " -> ".join(chain)
        self.await_edges[ep.dataflow] = other
        with self.repo.index.transaction() as c:
            c.execute("INSERT OR IGNORE INTO awaits(episode, awaited) VALUES (?,?)",
                      (ep.episode, f"{self.run_id}:{other}"))
        start = self.state.beat
        try:
            ep.move("await", self.state.beat, other)
            self.suspended.add(ep.dataflow)
            while self.state.outcome.get(other) is None:
                if self.state.beat - start >= timeout_beats:
                    return None
                await self._beat_event.wait()  # the next natural beat: a finish or the tick
        finally:
            self.suspended.discard(ep.dataflow)
            self.await_edges.pop(ep.dataflow, None)
        ep.move("run", self.state.beat)
        return self.state.outcome[other]

    def _recheck(self) -> None:
        """Inputs changed while the run went on (`e3 set` from another shell)? A finished job
        whose inputs now hash differently is re-queued with its dependents, so no output is left
        computed from a mix of old and new inputs; after `max_rechecks` passes they are reported
        stale instead."""
        st = self.state
        changed = []
        for name, (key, _) in sorted(st.results.items()):
            ins = self._inputs(self.jobs[name])
            if ins is None or execution_key(self.jobs[name].task_hash, [h for _, h, _ in ins]) != key:
                changed.append(name)
        if not changed:
            return
        again = set(changed)
        stack = list(changed)
        while stack:
            for m in self._dependents[stack.pop()]:
                if m not in again:
                    again.add(m)
                    stack.append(m)
        self.max_rechecks -= 1
        if self.max_rechecks < 0:
            st.stale = sorted(again)
            return
        for n in sorted(again):
            st.outcome.pop(n, None)
            st.results.pop(n, None)
            st.log.append((st.beat, "requeue", n))
        st.pending = [n for n in self.jobs if n in again] + st.pending

    def capture_possible(self) -> bool:
        return any(self._ready(n) or self._blocked(n) for n in self.state.pending)

    def _after_cancel(self) -> None:
        """Mark every episode still running as cancelled and commit what finished."""
        st = self.state
        reason = st.cancel_reason or "cancelled"
        for name, ep in sorted(st.running.items()):
            st.staged.append(Finished(self.jobs[name], ep.key or "", "cxl", (), reason=reason))
        st.running.clear()
        try:
            self.commit()
        finally:
            with self.repo.index.transaction() as conn:
                flush(conn, st.episodes)
        for n in st.pending:
            self._finish_outcome(n, "skipped")
        st.pending = []
