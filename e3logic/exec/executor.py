"""The heartbeat executor (anyio).

Each beat: **capture** ready jobs (inputs committed, a slot and their leases free) in plan
priority order → **compute** (memo lookup; start misses on the backend) → wait for a finish →
**commit** the finished results in canonical order. What beat N commits is visible to the
capture of beat N+1.

Commits are grouped for durability: a beat's commit applies its results to the run's view
(outputs hashed into an object batch, readable at once by the next tasks; memo, history and
tree changes staged), and a **flush** makes everything staged durable together: objects synced
then installed, memo + history rows (one SQLite transaction), workspace root by
compare-and-swap, then `publish` (working-copy files) and the outcome reports. A flush runs when
the executor would otherwise idle, when `flush_every` seconds have passed (stretched to the
last flush's duration, so flushing takes at most about half the time), and at the end — so a
result reported done is durable, and a kill loses at most the unflushed window. The grouping
never reaches an identity: the root is a function of the set of changes, the receipt is sorted.

`ExecState` is the executor's one state object; `ExecState.log` records what ran, hit, failed,
was skipped or cancelled, in order, for tests to assert on.
"""
from __future__ import annotations

import heapq
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

from ..core.paths import lease_conflict
from ..repo.trees import blob_entry
from .episodes import Episode, take_rows, write_rows
from .memo import ExecutionRecord, Memo, MemoHit, execution_key, usable

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
    output_hash: str | None = None   # hit: the memo's; ok: the runtime's, if it knows it
    output_format: str | None = None
    output_size: int | None = None   # ok: with output_hash
    reason: str = ""
    exit_code: int | None = None
    started: float = 0.0
    ended: float = 0.0


@dataclass
class ExecState:
    """Everything the executor knows; nothing else holds run state.

    root      the run's own root: the snapshot it read plus its outputs as last flushed (an
              edit made elsewhere during the run lands in the workspace, never here)
    view      path -> entry: committed results not yet flushed (read before `root`)
    pending   names of jobs not yet captured (waiting for inputs, or ready)
    running   job name -> Episode of its current attempt
    staged    finished results awaiting the next commit
    outcome   job name -> one of OUTCOMES (the receipt's source)
    results   job name -> (execution key, output hash) for ok/cached jobs
    log       (beat, event, job name) in the order things happened
    """

    root: str
    view: dict = field(default_factory=dict)
    pending: set = field(default_factory=set)
    running: dict = field(default_factory=dict)
    staged: list = field(default_factory=list)
    outcome: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    keys: dict = field(default_factory=dict)
    episodes: list = field(default_factory=list)
    log: list = field(default_factory=list)
    beat: int = 0
    cancel_reason: str | None = None
    stale: list = field(default_factory=list)   # dataflows whose inputs changed elsewhere
    flushes: int = 0


Runner = Callable[[Job, str, tuple, str, Episode], Awaitable[Finished]]


class Executor:
    def __init__(self, repo, workspace: str, jobs: list[Job], priority: list[str], *,
                 run_id: str, runner, cap: int = 1, cooperative: bool = False,
                 force: bool | frozenset = False, fail_fast: bool = False, publish=None,
                 should_cancel: Callable[[], str | None] | None = None, clock=time.time,
                 tmp_dir: Path | None = None, on_outcome=None, tick: float = 0.2,
                 batches: dict | None = None,
                 capacities: dict | None = None, precached: dict | None = None,
                 flush_every: float = 0.1, timer=time.monotonic, in_root=(),
                 snapshot: str | None = None, verified=()):
        self.repo = repo
        self.ws = workspace
        self.jobs = {j.name: j for j in jobs}
        order = {n: i for i, n in enumerate(priority)}
        self._prio = {n: (order.get(n, 1 << 30), n) for n in self.jobs}
        self.run_id = run_id
        self.runner = runner
        self.cap = max(1, cap or 1)
        self.cooperative = cooperative
        # True: no memo lookups (--force); a set: none for these dataflows (a rule made them
        # dirty although their key has a memo entry)
        self.force = force
        self.fail_fast = fail_fast
        self.publish = publish
        self.should_cancel = should_cancel
        self.clock = clock
        self.timer = timer
        # outcome reports: on_outcome(name, outcome, seconds) each, or — when `on_outcome` has
        # a `many` method — a flush's reports in one call (one write for a thousand lines)
        self.on_outcome = on_outcome
        self.tick = tick
        self.batches = batches  # name -> batch index: run batch by batch (--strict-batches)
        self.capacities = dict(capacities or {})
        # name -> (key, output hash, format, output path): memo hits known before the run;
        # they take no slot and are committed together at the first beat
        self.precached = dict(precached or {})
        self.in_root = set(in_root)  # precached ones whose output the root already holds
        self._scope = None
        self.suspended: set[str] = set()    # episodes in yield/await: they hold no slot
        self.inflight: dict[str, str] = {}  # execution key -> the dataflow running it
        self._sharing: dict[str, list[str]] = {}  # execution key -> dataflows waiting on it
        # execution key -> (output hash, format, size) executed in this run: a hit even under
        # --force, and before its memo row is flushed
        self.fresh: dict[str, tuple] = {}
        self._attempt = 0
        self._attempts: dict[str, int] = {}
        self._last_episode: dict[str, Episode] = {}
        # episodes that may still have history to write: a final one leaves once flushed, so
        # a flush looks at what is open, not at every episode of the run
        self._open_episodes: list[Episode] = []
        self.await_edges: dict[str, str] = {}
        self._beat_event = None
        self.memo = Memo(repo.index)
        # task outputs are staged outside objects/tmp, which gc sweeps by age
        self.tmp_dir = tmp_dir or (repo.dir / "staging")
        from ..repo.workspaces import Workspaces

        self.workspaces = Workspaces(repo)
        # every input is read from one snapshot (and this run's outputs): `snapshot`, the
        # root the run was decided on, else the workspace root now
        self.state = ExecState(root=snapshot or self.workspaces.root(workspace),
                               pending={n for n in self.jobs if n not in self.precached})
        # objects known to hash to their names: verified before a task was handed them, or
        # written by this run from bytes it hashed
        self._verified: set[str] = set(verified)
        self._dependents: dict[str, list[str]] = {n: [] for n in self.jobs}
        for j in jobs:
            for d in j.deps:
                self._dependents.setdefault(d, []).append(j.name)
        # the ready queue: a job enters it when its last dependency succeeds
        # (precached dependencies count too: their outcome, set at the first beat, meets them)
        self._unmet = {n: len(self.jobs[n].deps) for n in self.state.pending}
        self._ready = [self._prio[n] for n, k in self._unmet.items() if k == 0]
        heapq.heapify(self._ready)
        self._doomed: set[str] = set()  # dependents of a failure, skipped at the next capture
        self._open_batches: dict[int, int] = {}
        if batches is not None:
            for n in self.jobs:  # precached ones too: their outcome closes them like any other
                b = batches.get(n, 0)
                self._open_batches[b] = self._open_batches.get(b, 0) + 1
        # staged for the next flush
        self._batch = repo.objects.batch()
        self._adopted: list[str] = []   # staged output files, removed once installed
        self._records: list = []
        self._published: list = []
        self._reports: list = []
        self._procs: list = []  # (run, episode, pgid, start) of task process groups
        self._foreign = False  # did another process move the root during the run?
        self._flushing = False
        self._flush_done = None
        self._db = None  # the flush's index.db connection
        self._last_flush = timer()
        self._flush_every = flush_every
        self._flush_interval = flush_every

    # -- capture ---------------------------------------------------------------------------
    def _leases_free(self, job: Job, also: list[str]) -> bool:
        if not job.leases:
            return True
        held = [l for n in (*self.state.running, *also) for l in self.jobs[n].leases]
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

    def _skip_doomed(self) -> None:
        """Skip everything downstream of a failure, in priority order."""
        st = self.state
        while self._doomed:
            closure, stack = set(), [n for n in self._doomed if n in st.pending]
            self._doomed = set()
            while stack:
                n = stack.pop()
                if n in closure or n not in st.pending:
                    continue
                closure.add(n)
                stack.extend(self._dependents.get(n, ()))
            for n in sorted(closure, key=self._prio.__getitem__):
                st.pending.discard(n)
                self._finish_outcome(n, "skipped")

    def capture(self) -> list[str]:
        st = self.state
        self._skip_doomed()
        out: list[str] = []
        free = self.cap - (len(st.running) - len(self.suspended))
        if free <= 0 or not self._ready:
            return out
        barrier = None
        if self.batches is not None:
            open_ = [b for b, k in self._open_batches.items() if k > 0]
            barrier = min(open_) if open_ else 0
        later = []
        while self._ready and len(out) < free:
            item = heapq.heappop(self._ready)
            name = item[1]
            if name not in st.pending or name in st.running or self._unmet.get(name):
                continue  # stale: skipped, requeued or captured meanwhile
            if barrier is not None and self.batches.get(name, 0) > barrier:
                later.append(item)
                break  # priorities follow the batches: nothing after this one is open
            job = self.jobs[name]
            if self._leases_free(job, out) and self._resources_free(job, out):
                out.append(name)
                st.pending.discard(name)
            else:
                later.append(item)
        for item in later:
            heapq.heappush(self._ready, item)
        return out

    def _finish_outcome(self, name: str, outcome: str, seconds: float = 0.0) -> None:
        st = self.state
        st.outcome[name] = outcome
        st.log.append((st.beat, outcome, name))
        if self.batches is not None:
            b = self.batches.get(name, 0)
            self._open_batches[b] = self._open_batches.get(b, 0) - 1
        self._reports.append((name, outcome, seconds))
        ok = outcome in ("executed", "cached")
        for d in self._dependents.get(name, ()):
            if d not in st.pending:
                continue
            if not ok:
                self._doomed.add(d)
            elif d in self._unmet:
                self._unmet[d] -= 1
                if self._unmet[d] == 0:
                    heapq.heappush(self._ready, self._prio[d])

    # -- compute ----------------------------------------------------------------------------
    def _entry(self, path: str) -> dict | None:
        e = self.state.view.get(path)
        return e if e is not None else self.repo.trees.find(self.state.root, path)

    def _inputs(self, job: Job) -> tuple | None:
        out = []
        for p in job.inputs:
            e = self._entry(p)
            if e is None or e["kind"] != "blob":
                return None
            out.append((p, e["hash"], e.get("format", "raw")))
        return tuple(out)

    def _lookup(self, key: str, name: str) -> MemoHit | None:
        fresh = self.fresh.get(key)
        if fresh is not None:
            return MemoHit(fresh[0], fresh[1], 0.0)
        if self.force is True or (self.force and name in self.force):
            return None
        hit = self.memo.lookup(key)
        return hit if usable(self.repo.objects, hit, verify=True) else None

    async def compute(self, names: list[str], tg) -> None:
        st = self.state
        for name in names:
            job = self.jobs[name]
            ins = self._inputs(job)
            if ins is None:
                missing = [p for p in job.inputs if self._entry(p) is None]
                ep = self._episode(job, None)
                ep.move("fail", st.beat, f"input {missing[0] if missing else '?'} is missing")
                st.staged.append(Finished(job, "", "fail", (), reason=ep.history[-1][3]))
                continue
            key = execution_key(job.task_hash, [h for _, h, _ in ins])
            st.keys[name] = key
            if key in self.inflight:
                # the same execution (task + input bytes) is already running for another
                # dataflow: wait for it and take its result (shared, not re-run)
                st.pending.add(name)
                self._sharing.setdefault(key, []).append(name)
                st.log.append((st.beat, "share", name))
                continue
            hit = self._lookup(key, name)
            if hit is not None:
                st.staged.append(Finished(job, key, "hit", tuple((p, h) for p, h, _ in ins),
                                          output_hash=hit.output_hash,
                                          output_format=hit.output_format))
                continue
            ep = self._episode(job, key)
            bad = self._corrupt_input(ins)
            if bad is not None:
                ep.move("fail", st.beat, bad)
                st.staged.append(Finished(job, key, "fail", tuple((p, h) for p, h, _ in ins),
                                          reason=bad))
                continue
            st.running[name] = ep
            self.inflight[key] = name
            ep.move("run", st.beat)
            st.log.append((st.beat, "start", name))
            if self.cooperative and job.runtime != "inline":
                st.staged.append(await self.runner(job, key, ins, self._out_file(key, ep), ep))
                st.running.pop(name, None)
            else:
                tg.start_soon(self._run_one, job, key, ins, ep)

    def _corrupt_input(self, ins: tuple) -> str | None:
        """Verified reads: the reason a task may not be handed its inputs (an object whose
        bytes do not hash to its name, now quarantined), or None. Each object is hashed once
        per run."""
        objects = self.repo.objects
        for p, h, _ in ins:
            if h in self._verified:
                continue
            if objects.verify(h):
                self._verified.add(h)
                continue
            objects.quarantine(h)
            fix = ("run 'e3 go' again to recompute it" if p.startswith("outputs/") else
                   f"restore it with 'e3 reset {p}' or 'e3 set {p} FILE'")
            return (f"input {p} is corrupt (object {h[:12]} does not hash to its name; moved to "
                    f".e3/quarantine): {fix}, and run 'e3 fsck --repair'")
        return None

    def _episode(self, job: Job, key: str | None) -> Episode:
        n = self._attempts.get(job.name, 0)
        self._attempts[job.name] = n + 1
        ep = Episode(f"{self.run_id}:{job.name}" + (f"#{n + 1}" if n else ""), self.run_id,
                     job.name, key, job.profile)
        ep.move("plan", self.state.beat)
        self.state.episodes.append(ep)
        self._open_episodes.append(ep)
        self._last_episode[job.name] = ep
        return ep

    def _out_file(self, key: str, ep: Episode) -> str:
        """A temp file unique to this episode (two episodes may share an execution key)."""
        if self._attempt == 0:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._attempt += 1
        return f"{self.tmp_dir}/out-{key[:24]}-{self.run_id}-{self._attempt}"

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
        """Apply the beat's finished results to the run's view, in canonical order; staged
        for the next flush."""
        st = self.state
        if not st.staged:
            return
        staged = sorted(st.staged, key=lambda f: f.job.name)
        st.staged = []
        failed = []
        for f in staged:
            if self.inflight.get(f.key) == f.job.name:
                del self.inflight[f.key]
        for f in staged:
            job = f.job
            if f.status == "hit":
                fresh = self.fresh.get(f.key)
                size = fresh[2] if fresh else self.repo.objects.size(f.output_hash)
                st.view[job.output_path] = blob_entry(f.output_hash, size, f.output_format or "raw")
                st.results[job.name] = (f.key, f.output_hash)
                self._finish_outcome(job.name, "cached")
                self._published.append((job.output_path, f.output_hash))
                continue
            ep = self._last_episode[job.name]
            if f.status == "ok":
                if f.output_hash is not None and f.output_size is not None:
                    size = f.output_size
                    h = self._batch.adopt(f.output_file, f.output_hash)
                else:
                    size = os.path.getsize(f.output_file)
                    h = self._batch.adopt(f.output_file)
                self._adopted.append(f.output_file)
                self._verified.add(h)
                f.output_hash = h
                self.fresh[f.key] = (h, f.output_format or "raw", size)
                st.view[job.output_path] = blob_entry(h, size, f.output_format or "raw")
                st.results[job.name] = (f.key, h)
                if not ep.final:
                    ep.move("ok", st.beat, f"{f.ended - f.started:.3f}s")
                self._finish_outcome(job.name, "executed", f.ended - f.started)
                self._published.append((job.output_path, h))
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
                self._records.append(ExecutionRecord(
                    key=f.key, task_hash=job.task_hash, dataflow=job.name, run=self.run_id,
                    workspace=self.ws, status=f.status, started=f.started, ended=f.ended,
                    exit_code=f.exit_code, output_hash=f.output_hash, output_format=f.output_format,
                    error=f.reason or None, inputs=f.inputs, output_path=job.output_path))
        for f in staged:  # dataflows sharing an execution take its result now (or run it)
            for n in self._sharing.pop(f.key, ()):
                if n in st.pending:
                    heapq.heappush(self._ready, self._prio[n])
        if failed and self.fail_fast:
            self.cancel("fail-fast: " + failed[0] + " failed")

    def _deliver(self, reports: list) -> None:
        if not reports or not self.on_outcome:
            return
        many = getattr(self.on_outcome, "many", None)
        if many is not None:
            many(reports)
            return
        for name, outcome, seconds in reports:
            self.on_outcome(name, outcome, seconds)

    def _unflushed(self) -> bool:
        return bool(self.state.view or self._records or self._reports or self._published
                    or self._procs or len(self._batch))

    def _flush_due(self) -> bool:
        if self._flushing or not self._unflushed():
            return False
        if self.timer() - self._last_flush >= self._flush_interval:
            return True
        # nothing else to do before a task finishes: flushing delays nothing
        return not self._ready and not self.state.staged

    def flush(self) -> None:
        """Make everything committed since the last flush durable, in order: objects (synced,
        then installed), memo + history rows, the root by compare-and-swap, the working copy;
        then report the outcomes. (`_flush_in_background` does the same off the loop.)"""
        snap = self._flush_begin()
        self._flush_end(snap, self._flush_durable(snap))

    async def _flush_in_background(self) -> None:
        """A flush whose durable part runs in a worker thread while beats go on; never
        abandoned half-way (shielded), so a cancel waits for it."""
        import anyio

        with anyio.CancelScope(shield=True):
            snap = self._flush_begin()
            try:
                new = await anyio.to_thread.run_sync(self._flush_durable, snap)
            except BaseException:
                self._flushing = False
                self._flush_done.set()
                raise
            self._flush_end(snap, new)
            self._wake.set()

    def _start_flush(self, tg) -> None:
        """Schedule a background flush. It counts as running from now, not from when its task
        first runs: two flushes never overlap (the later one's root would be computed before
        the earlier one's lands, and its end could move the run's root back)."""
        import anyio

        self._flushing = True
        self._flush_done = anyio.Event()
        tg.start_soon(self._flush_in_background)

    def _flush_begin(self) -> dict:
        """Snapshot what is staged (on the loop): the durable part works on the snapshot
        while beats add to fresh lists."""
        st = self.state
        self._flushing = True
        snap = {"t0": self.timer(), "changes": dict(st.view), "published": self._published,
                "records": self._records, "reports": self._reports,
                "episodes": take_rows(self._open_episodes), "batch": self._batch,
                "root": st.root, "procs": self._procs}
        self._open_episodes = [ep for ep in self._open_episodes if not ep.final]
        self._published, self._records, self._reports, self._procs = [], [], [], []
        self._batch = self.repo.objects.batch()
        if self.publish and snap["published"] and hasattr(self.publish, "begin"):
            self.publish.begin()  # the working copy is marked pending before the root moves
        return snap

    def _flush_durable(self, snap: dict) -> str | None:
        """Objects, rows, root, working copy (any thread: it touches no loop state; index.db
        through connections of its own). Returns the run's new root, or None when no path
        changed."""
        changes, batch, trees = snap["changes"], snap["batch"], self.repo.trees
        new = ours = None
        if changes:
            # the run's own root moves on from its snapshot; the workspace's from wherever
            # it is now (an `e3 set` elsewhere is kept there, never read by this run)
            ours = trees.set_many(snap["root"], changes, store=batch)
            old = self.workspaces.root(self.ws)
            if old != snap["root"]:
                self._foreign = True
                new = trees.set_many(old, changes, store=batch)
            else:
                new = ours
        batch.commit()
        if snap["records"] or snap["episodes"][0] or snap["episodes"][1] or snap["procs"]:
            with self._flush_db().transaction() as conn:
                self.memo.record_many(conn, snap["records"])
                write_rows(conn, snap["episodes"])
                conn.executemany("INSERT OR REPLACE INTO procs(run, episode, pgid, start) "
                                 "VALUES (?,?,?,?)", snap["procs"])
        if changes:
            from ..core.errors import ConflictError

            for attempt in range(50):
                try:
                    self.workspaces.cas_root(self.ws, old, new)
                    break
                except ConflictError:  # someone else moved the root (`e3 set`): redo on theirs
                    if attempt == 49:
                        raise
                    old = self.workspaces.root(self.ws)
                    self._foreign = True
                    again = self.repo.objects.batch()
                    new = trees.set_many(old, changes, store=again)
                    again.commit()
        if self.publish and snap["published"]:
            self.publish(new or self.workspaces.root(self.ws), snap["published"])
        return ours

    def _flush_end(self, snap: dict, new: str | None) -> None:
        """Back on the loop: the view drops what the root now holds; outcomes are
        reported."""
        st = self.state
        if new is not None:
            st.root = new
            for p, e in snap["changes"].items():
                if st.view.get(p) is e:
                    del st.view[p]
        self._deliver(snap["reports"])
        st.flushes += 1
        now = self.timer()
        # at most about half the time flushing (a big tree makes flushes rarer), yet often
        # enough that the last flush, which the run waits for, stays small
        self._flush_interval = max(self._flush_every, now - snap["t0"])
        self._last_flush = now
        self._flushing = False
        if self._flush_done is not None:
            self._flush_done.set()

    def _flush_db(self):
        """index.db through a connection of the flush's own (it may run in a worker thread)."""
        if self._db is None:
            from ..repo.index import IndexDB

            self._db = IndexDB(self.repo.index.path)
        return self._db

    async def _flush_settle(self) -> None:
        """Wait for a background flush still running."""
        if self._flushing and self._flush_done is not None:
            await self._flush_done.wait()

    def cancel(self, reason: str) -> None:
        if self.state.cancel_reason is None:
            self.state.cancel_reason = reason
        for name in sorted(self.state.pending, key=self._prio.__getitem__):
            self._finish_outcome(name, "skipped")
        self.state.pending = set()
        self._ready = []
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
                    if self._beat_event is not None:  # made only when an episode waits on it
                        self._beat_event.set()
                        self._beat_event = None
                    await self.compute(self.capture(), tg)
                    if (st.running or self._flushing) and not st.staged:
                        wait = self.tick
                        if self._unflushed() and not self._flushing:
                            wait = min(wait, max(0.0, self._last_flush + self._flush_interval
                                                 - self.timer()))
                        with anyio.move_on_after(wait):  # beat even when nothing finishes
                            await self._wake.wait()
                    self.commit()
                    if self._flush_due():
                        self._start_flush(tg)
                    if not st.running and not st.staged and st.pending and not self.capture_possible():
                        for n in sorted(st.pending, key=self._prio.__getitem__):
                            self._finish_outcome(n, "skipped")
                        st.pending = set()
                    if not (st.pending or st.running or st.staged) and st.cancel_reason is None:
                        await self._flush_settle()
                        self.flush()
                        self._note_stale()
        finally:
            self._after_cancel()
        return st

    def _commit_precached(self) -> None:
        if not self.precached:
            return
        st = self.state
        for name in sorted(self.precached):
            key, h, fmt, path = self.precached[name]
            e = None if name in self.in_root else self.repo.trees.find(st.root, path)
            if name not in self.in_root and (e is None or e.get("hash") != h):
                st.view[path] = blob_entry(h, self.repo.objects.size(h), fmt or "raw")
            self._published.append((path, h))
            st.results[name] = (key, h)
            st.keys[name] = key
            self._finish_outcome(name, "cached")

    def record_group(self, row: tuple) -> None:
        """(run, episode, pgid, start) of a task's process group, written with the next flush
        (one killed before it is found by its environment token instead)."""
        self._procs.append(row)

    # -- hooks for inline tasks driven across beats (exec/inline.py) ------------------------
    def note(self, ep: Episode, note: str) -> None:
        """Record a note (e.g. a refused lease) in the episode's history, at its current state."""
        if ep.final and ep not in self._open_episodes:
            self._open_episodes.append(ep)  # left once flushed: open again for this row
        ep.history.append((len(ep.history), ep.state, self.state.beat, note, self.clock()))

    def _next_beat(self):
        """An event set when the next beat starts."""
        if self._beat_event is None:
            import anyio

            self._beat_event = anyio.Event()
        return self._beat_event

    async def next_beat(self, ep: Episode, state: str = "yield", note: str = "") -> None:
        """Suspend `ep` (yield) until the next beat; it holds no slot meanwhile."""
        ep.move(state, self.state.beat, note)
        self.suspended.add(ep.dataflow)
        try:
            ev = self._next_beat()
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
                await self._next_beat().wait()  # the next natural beat: a finish or the tick
        finally:
            self.suspended.discard(ep.dataflow)
            self.await_edges.pop(ep.dataflow, None)
        ep.move("run", self.state.beat)
        return self.state.outcome[other]

    def _note_stale(self) -> None:
        """Inputs changed elsewhere while the run went on (`e3 set` from another shell)? The
        run read none of it; the dataflows reading a changed path, and what follows them, are
        reported stale (the next run takes them up)."""
        st = self.state
        now = self.workspaces.root(self.ws)
        if not self._foreign and now == st.root:
            return  # nobody else moved the root
        changed = self.repo.trees.changed(st.root, now)
        stale = {n for n, j in self.jobs.items() if any(p in changed for p in j.inputs)}
        stack = list(stale)
        while stack:
            for m in self._dependents.get(stack.pop(), ()):
                if m not in stale:
                    stale.add(m)
                    stack.append(m)
        st.stale = sorted(stale)

    def capture_possible(self) -> bool:
        st = self.state
        return bool(self._doomed) or any(
            item[1] in st.pending and not self._unmet.get(item[1]) for item in self._ready)

    def _after_cancel(self) -> None:
        """Mark every episode still running as cancelled and flush what finished."""
        st = self.state
        reason = st.cancel_reason or "cancelled"
        for name, ep in sorted(st.running.items()):
            st.staged.append(Finished(self.jobs[name], ep.key or "", "cxl", (), reason=reason))
        st.running.clear()
        try:
            self.commit()
            self._skip_doomed()
        finally:
            try:
                self.flush()
            finally:
                self._batch.abort()
        for n in sorted(st.pending, key=self._prio.__getitem__):
            self._finish_outcome(n, "skipped")
        st.pending = set()
        # staged outputs were installed by hard link; a task may have been reading the staged
        # name until now
        for f in self._adopted:
            try:
                os.unlink(f)
            except FileNotFoundError:
                pass
        self._adopted = []
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._reports:
            reports, self._reports = self._reports, []
            self._deliver(reports)
