"""The heartbeat executor (anyio).

Each beat: **capture** ready jobs (inputs committed, a slot and their leases free) in plan
priority order → **compute** (memo lookup; submit misses to the backend) → wait for a finish →
**commit** the finished results in canonical order. What beat N commits is visible to the
capture of beat N+1.

Commits are grouped for durability: a beat's commit applies its results to the run's view
(outputs hashed into an object batch, readable at once by the next tasks; memo, history and
tree changes staged), and a **flush** makes everything staged durable together: objects synced
then installed, memo + history rows (one SQLite transaction), workspace root by
compare-and-swap, then the `Publisher` (working-copy files) and the outcome reports. A flush
runs when the executor would otherwise idle, when `flush_every` seconds have passed (stretched
to the last flush's duration, so flushing takes at most about half the time), and at the end —
so a result reported done is durable, and a kill loses at most the unflushed window. The
grouping never reaches an identity: the root is a function of the set of changes, the receipt
is sorted.

Where tasks run is the `backends.Backend`'s business (submit / cancel / close); the executor
holds its configuration and one `ExecState`, the whole run state, every field documented.
`ExecState.log` records what ran, hit, failed, was skipped or cancelled, in order, for tests
to assert on.
"""
from __future__ import annotations

import heapq
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from ..core.paths import lease_conflict
from ..repo.trees import blob_entry
from .backends import Backend, Done
from .episodes import Episode, take_rows
from .jobs import Finished, Job, Task
from .memo import ExecutionRecord, Memo, MemoHit, execution_key, usable

__all__ = ["OUTCOMES", "ExecState", "Executor", "Finished", "Job", "OutcomeSink", "Outcomes",
           "Publisher", "Task", "adopt_output", "execution_record", "memo_hit", "start_state"]

OUTCOMES = ("executed", "cached", "failed", "skipped", "cancelled")


@dataclass
class ExecState:
    """Everything the executor knows about a run; nothing else holds run state (the
    `Executor` holds only its configuration). Made by `start_state`.

    What the run decided and did
      root        the run's own root: the snapshot it read plus its outputs as last flushed
                  (an edit made elsewhere during the run lands in the workspace, never here)
      view        path -> tree entry: committed results not yet flushed (read before `root`)
      outcome     job name -> one of OUTCOMES (the receipt's source)
      results     job name -> (execution key, output hash) for executed/cached jobs
      keys        job name -> the execution key computed for it
      episodes    every Episode of the run, in the order they were made
      log         (beat, event, job name) in the order things happened: the OUTCOMES, plus
                  "start" (submitted to the backend) and "share" (waits for the same execution
                  running for another dataflow)
      beat        the current beat number (1 at the first beat)
      cancel_reason  why the run was cancelled (None: it was not)
      stale       dataflows whose inputs changed elsewhere during the run (set at the end)
      flushes     how many flushes completed
    Scheduling
      pending     names of jobs not yet captured (waiting for inputs, or ready)
      ready       heap of (priority, name): jobs whose dependencies all succeeded (entries may
                  be stale: `capture` skips names no longer pending)
      unmet       job name -> number of its dependencies not yet succeeded
      doomed      dependents of a failure, skipped at the next capture
      blame       skipped job name -> (distance, name) of the failed dataflow nearest
                  upstream (ties by name), or None (skipped for another reason)
      open_batches  batch index -> jobs of it not yet finished (`--strict-batches` only)
      running     job name -> Episode of its current attempt (submitted, not yet finished)
      suspended   names of running episodes in yield/await: they hold no slot
      staged      Finished results awaiting the next commit
      inflight    execution key -> the dataflow running it now
      sharing     execution key -> dataflows waiting for that execution's result
      fresh       execution key -> (output hash, format, size) executed in this run: a hit even
                  under --force, and before its memo row is flushed
      verified    object hashes known to hash to their names (checked before a task was handed
                  them, or written by this run from bytes it hashed)
      attempts    job name -> attempts made (names episodes: `run:name`, `run:name#2`, ...)
      last_episode  job name -> its latest Episode
      open_episodes  episodes that may still have history rows to write (a final one leaves
                  once flushed)
      await_edges  dataflow -> the dataflow it awaits (deadlock detection)
      out_files   staged output files named so far (makes each name unique)
    Staged for the next flush
      batch       the object batch committed results are hashed into
      records     ExecutionRecords (memo + history rows)
      published   (path, hash) to write into the working copy
      reports     (name, outcome, seconds, note) to report once durable (`OutcomeSink`)
      procs       (run, episode, pgid, start) of task process groups
      adopted     staged output files installed by hard link, removed at the end
    Flushing
      flushing    a flush is running (at most one at a time)
      flush_done  anyio.Event set when the running background flush ends
      last_flush  timer() at the end of the last flush
      flush_interval  seconds between flushes now (flush_every, stretched to the last
                  flush's duration)
      foreign     another process moved the workspace root during the run
      flush_conn  the flushes' own index.db connection (opened lazily, closed at the end)
    The loop
      scope       the task group's cancel scope while the loop runs
      wake        anyio.Event set when a task finishes or a flush ends (the beat goes on)
      beat_event  anyio.Event set when the next beat starts (made only when an episode waits)
    """

    root: str
    view: dict = field(default_factory=dict)
    outcome: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    keys: dict = field(default_factory=dict)
    episodes: list = field(default_factory=list)
    log: list = field(default_factory=list)
    beat: int = 0
    cancel_reason: str | None = None
    stale: list = field(default_factory=list)
    flushes: int = 0
    # scheduling
    pending: set = field(default_factory=set)
    ready: list = field(default_factory=list)
    unmet: dict = field(default_factory=dict)
    doomed: set = field(default_factory=set)
    blame: dict = field(default_factory=dict)
    open_batches: dict = field(default_factory=dict)
    running: dict = field(default_factory=dict)
    suspended: set = field(default_factory=set)
    staged: list = field(default_factory=list)
    inflight: dict = field(default_factory=dict)
    sharing: dict = field(default_factory=dict)
    fresh: dict = field(default_factory=dict)
    verified: set = field(default_factory=set)
    attempts: dict = field(default_factory=dict)
    last_episode: dict = field(default_factory=dict)
    open_episodes: list = field(default_factory=list)
    await_edges: dict = field(default_factory=dict)
    out_files: int = 0
    # staged for the next flush
    batch: Any = None
    records: list = field(default_factory=list)
    published: list = field(default_factory=list)
    reports: list = field(default_factory=list)
    procs: list = field(default_factory=list)
    adopted: list = field(default_factory=list)
    # flushing
    flushing: bool = False
    flush_done: Any = None
    last_flush: float = 0.0
    flush_interval: float = 0.1
    foreign: bool = False
    flush_conn: Any = None
    # the loop
    scope: Any = None
    wake: Any = None
    beat_event: Any = None


def start_state(jobs: dict, prio: dict, root: str, *, precached=(), batches: dict | None = None,
                verified=(), batch=None, now: float = 0.0, flush_every: float = 0.1) -> ExecState:
    """The state before the first beat: every job not precached is pending; those without
    dependencies are ready.

    >>> j = lambda n, deps=(): Job(n, "t", "python", "m:f", None, (), f"outputs/{n}/o",
    ...                            frozenset(deps))
    >>> jobs = {"a": j("a"), "b": j("b", ["a"])}
    >>> st = start_state(jobs, {"a": (0, "a"), "b": (1, "b")}, "root0")
    >>> sorted(st.pending), st.ready, st.unmet
    (['a', 'b'], [(0, 'a')], {'a': 0, 'b': 1})
    """
    pending = {n for n in jobs if n not in precached}
    unmet = {n: len(jobs[n].deps) for n in pending}
    ready = [prio[n] for n, k in unmet.items() if k == 0]
    heapq.heapify(ready)
    open_batches: dict[int, int] = {}
    if batches is not None:
        for n in jobs:  # precached ones too: their outcome closes them like any other
            b = batches.get(n, 0)
            open_batches[b] = open_batches.get(b, 0) + 1
    return ExecState(root=root, pending=pending, unmet=unmet, ready=ready,
                     open_batches=open_batches, verified=set(verified), batch=batch,
                     last_flush=now, flush_interval=flush_every)


def memo_hit(memo: Memo, objects, key: str) -> MemoHit | None:
    """The memo's entry for execution `key` if its output object is there and hashes to its
    name (a corrupt one is quarantined), else None. `e3 run` looks up the same way."""
    hit = memo.lookup(key)
    return hit if usable(objects, hit, verify=True) else None


def adopt_output(batch, f: Finished) -> tuple[str, int]:
    """Take an ok task's staged output file into the object `batch`: (hash, size). A hash
    the runtime computed from the bytes it wrote is trusted (the file is not read back)."""
    if f.output_hash is not None and f.output_size is not None:
        return batch.adopt(f.output_file, f.output_hash), f.output_size
    size = os.path.getsize(f.output_file)
    return batch.adopt(f.output_file), size


def execution_record(f: Finished, run: str, workspace: str, *, inputs=None,
                     output_path: str | None = None) -> ExecutionRecord:
    """The memo + history row of a finished execution (`inputs` [(path, hash)] and
    `output_path` default to the job's)."""
    job = f.job
    return ExecutionRecord(
        key=f.key, task_hash=job.task_hash, dataflow=job.name, run=run, workspace=workspace,
        status=f.status, started=f.started, ended=f.ended, exit_code=f.exit_code,
        output_hash=f.output_hash, output_format=f.output_format, error=f.reason or None,
        inputs=f.inputs if inputs is None else inputs,
        output_path=job.output_path if output_path is None else output_path)


class OutcomeSink(Protocol):
    """Where the executor reports outcomes, once they are durable, each with a one-line
    `note` saying why when it did not succeed: failed, the episode's failure note
    (`ValueError: flag says fail (steps.py:27)`, `exit 3`, `budget wall_s=1 exceeded`, `input
    inputs/x is missing`); cancelled, the cancel reason; skipped, `check failed upstream`
    (the failed dataflow nearest upstream, ties by name) or the run's cancel reason. ""
    for executed and cached. `started(name)` is told when a dataflow's task is submitted (at
    once, not durable; for a progress display)."""

    def started(self, name: str) -> None:
        """A dataflow's task was just submitted."""

    def outcome(self, name: str, outcome: str, seconds: float, note: str = "") -> None:
        """One dataflow's outcome (one of OUTCOMES), its task's seconds and why."""

    def many(self, reports: list) -> None:
        """A flush's reports `(name, outcome, seconds, note)` in one call (one write for a
        thousand lines); `Outcomes.many` calls `outcome` for each."""


class Outcomes:
    """An `OutcomeSink` from a function `fn(name, outcome, seconds, note)`; `many` calls it
    per row."""

    def __init__(self, fn: Callable[[str, str, float, str], None] | None = None):
        self.fn = fn

    def outcome(self, name: str, outcome: str, seconds: float, note: str = "") -> None:
        if self.fn is not None:
            self.fn(name, outcome, seconds, note)

    def started(self, name: str) -> None:
        pass

    def many(self, reports: list) -> None:
        for name, outcome, seconds, note in reports:
            self.outcome(name, outcome, seconds, note)


class Publisher(Protocol):
    """Writes the run's outputs into a working copy; called from the flush (possibly a
    worker thread, one flush at a time)."""

    def begin(self) -> None:
        """Before the workspace root moves: mark the working copy pending (a kill between
        the root's update and the file writes is completed by the next command)."""

    def publish(self, root: str, items: list) -> None:
        """Write `items` [(path, object hash)] of the new `root` into the working copy."""

    def close(self) -> None:
        """After the run."""


class _Host:
    """The executor's `jobs.EpisodeHost` for one attempt."""

    __slots__ = ("ex", "ep", "leases")

    def __init__(self, ex: "Executor", job: Job, ep: Episode):
        self.ex, self.ep, self.leases = ex, ep, job.leases

    @property
    def profile(self) -> str:
        return self.ep.profile

    def started(self, pgid: int) -> None:
        from .procs import start_time

        self.ex.record_group((self.ex.run_id, self.ep.episode, pgid, start_time(pgid)))

    def note(self, text: str) -> None:
        self.ex.note(self.ep, text)

    async def next_beat(self, state: str = "yield", note: str = "") -> None:
        await self.ex.next_beat(self.ep, state, note)

    async def await_dataflow(self, other: str, timeout_beats: int) -> str | None:
        return await self.ex.await_dataflow(self.ep, other, timeout_beats)

    def promote(self) -> None:
        self.ep.profile = "rw"
        self.ex.note(self.ep, "promoted to rw")


class Executor:
    """Runs `jobs` (their dependencies among them) on `backend`, in `priority` order, into
    `workspace` of `repo`. Configuration only; the run's state is `self.state` (`ExecState`).

    `run_id` names the run's episodes and staged files; `cap` jobs hold a slot at once;
    `force`: True (no memo lookups, --force) or a set of dataflows whose memo entries are
    ignored; `fail_fast` cancels the run at the first failure; `publish` (a `Publisher`) writes
    outputs into the working copy; `should_cancel()` names a reason to cancel, or None;
    `clock` stamps episode history, `timer` times flushes; `on_outcome` (an `OutcomeSink`)
    gets the durable outcomes; `tick` is the longest beat; `batches` {name: batch index}: run
    batch by batch (--strict-batches); `capacities` {resource: amount}; `precached` {name:
    (key, output hash, format, output path)}: memo hits known before the run, committed
    together at the first beat (`in_root`: those whose output the root already holds);
    `flush_every` seconds between flushes at least; `snapshot`: the root the run reads (else
    the workspace's now); `verified`: objects known good."""

    def __init__(self, repo, workspace: str, jobs: list[Job], priority: list[str], *,
                 run_id: str, backend: Backend, cap: int = 1,
                 force: bool | frozenset = False, fail_fast: bool = False,
                 publish: Publisher | None = None,
                 should_cancel: Callable[[], str | None] | None = None, clock=time.time,
                 tmp_dir: Path | None = None, on_outcome: OutcomeSink | None = None,
                 tick: float = 0.2, batches: dict | None = None,
                 capacities: dict | None = None, precached: dict | None = None,
                 flush_every: float = 0.1, timer=time.monotonic, in_root=(),
                 snapshot: str | None = None, verified=()):
        from ..repo.workspaces import Workspaces

        self.repo = repo
        self.ws = workspace
        self.jobs = {j.name: j for j in jobs}
        order = {n: i for i, n in enumerate(priority)}
        self._prio = {n: (order.get(n, 1 << 30), n) for n in self.jobs}
        self._dependents: dict[str, list[str]] = {n: [] for n in self.jobs}
        for j in jobs:
            for d in j.deps:
                self._dependents.setdefault(d, []).append(j.name)
        self.run_id = run_id
        self.backend = backend
        self.cap = max(1, cap or 1)
        self.force = force
        self.fail_fast = fail_fast
        self.publish = publish
        self.should_cancel = should_cancel
        self.clock = clock
        self.timer = timer
        self.on_outcome = on_outcome
        self.tick = tick
        self.batches = batches
        self.capacities = dict(capacities or {})
        self.precached = dict(precached or {})
        self.in_root = set(in_root)
        self.memo = Memo(repo.index)
        # task outputs are staged outside objects/tmp, which gc sweeps by age
        self.tmp_dir = tmp_dir or (repo.dir / "staging")
        self.workspaces = Workspaces(repo)
        self._flush_every = flush_every
        # every input is read from one snapshot (and this run's outputs): `snapshot`, the
        # root the run was decided on, else the workspace root now
        self.state = start_state(
            self.jobs, self._prio, snapshot or self.workspaces.root(workspace),
            precached=self.precached, batches=batches, verified=verified,
            batch=repo.objects.batch(), now=timer(), flush_every=flush_every)

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
        while st.doomed:
            closure, stack = set(), [n for n in st.doomed if n in st.pending]
            st.doomed = set()
            while stack:
                n = stack.pop()
                if n in closure or n not in st.pending:
                    continue
                closure.add(n)
                stack.extend(self._dependents.get(n, ()))
            ordered = sorted(closure, key=self._prio.__getitem__)
            notes = self._skip_notes(ordered)
            for n in ordered:
                st.pending.discard(n)
                self._finish_outcome(n, "skipped", note=notes[n])

    def _skip_notes(self, names: list[str]) -> dict[str, str]:
        """Why each of `names`, about to be skipped together, is skipped: `X failed upstream`
        for the failed dataflow X nearest upstream (ties by name, as `go`'s reasons), else
        the run's cancel reason. Each dataflow is looked at once per run (`state.blame`)."""
        st = self.state
        blame, group = st.blame, set(names)
        for n in names:
            stack = [n]
            while stack:
                m = stack[-1]
                if m in blame:
                    stack.pop()
                    continue
                deps = self.jobs[m].deps
                todo = [d for d in deps if d in group and d not in blame]
                if todo:
                    stack.extend(todo)
                    continue
                stack.pop()
                best = None
                for d in deps:
                    if st.outcome.get(d) == "failed":
                        c = (1, d)
                    elif blame.get(d) is not None:
                        c = (blame[d][0] + 1, blame[d][1])
                    else:
                        continue
                    if best is None or c < best:
                        best = c
                blame[m] = best
        why = st.cancel_reason or "not run"
        return {n: f"{blame[n][1]} failed upstream" if blame[n] else why for n in names}

    def capture(self) -> list[str]:
        st = self.state
        self._skip_doomed()
        out: list[str] = []
        free = self.cap - (len(st.running) - len(st.suspended))
        if free <= 0 or not st.ready:
            return out
        barrier = None
        if self.batches is not None:
            open_ = [b for b, k in st.open_batches.items() if k > 0]
            barrier = min(open_) if open_ else 0
        later = []
        while st.ready and len(out) < free:
            item = heapq.heappop(st.ready)
            name = item[1]
            if name not in st.pending or name in st.running or st.unmet.get(name):
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
            heapq.heappush(st.ready, item)
        return out

    def _finish_outcome(self, name: str, outcome: str, seconds: float = 0.0,
                        note: str = "") -> None:
        st = self.state
        st.outcome[name] = outcome
        st.log.append((st.beat, outcome, name))
        if self.batches is not None:
            b = self.batches.get(name, 0)
            st.open_batches[b] = st.open_batches.get(b, 0) - 1
        st.reports.append((name, outcome, seconds, note))
        ok = outcome in ("executed", "cached")
        for d in self._dependents.get(name, ()):
            if d not in st.pending:
                continue
            if not ok:
                st.doomed.add(d)
            elif d in st.unmet:
                st.unmet[d] -= 1
                if st.unmet[d] == 0:
                    heapq.heappush(st.ready, self._prio[d])

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
        fresh = self.state.fresh.get(key)
        if fresh is not None:
            return MemoHit(fresh[0], fresh[1], 0.0)
        if self.force is True or (self.force and name in self.force):
            return None
        return memo_hit(self.memo, self.repo.objects, key)

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
            if key in st.inflight:
                # the same execution (task + input bytes) is already running for another
                # dataflow: wait for it and take its result (shared, not re-run)
                st.pending.add(name)
                st.sharing.setdefault(key, []).append(name)
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
            st.inflight[key] = name
            ep.move("run", st.beat)
            st.log.append((st.beat, "start", name))
            if self.on_outcome is not None:  # a progress display shows what runs now
                self.on_outcome.started(name)
            task = Task(job, key, ins, self._out_file(key, ep), ep, _Host(self, job, ep))
            handle = await self.backend.submit(task)
            if isinstance(handle, Done):  # the backend ran it inside this beat
                st.staged.append(handle.result)
                st.running.pop(name, None)
            else:
                tg.start_soon(self._collect, task, handle)

    def _corrupt_input(self, ins: tuple) -> str | None:
        """Verified reads: the reason a task may not be handed its inputs (an object whose
        bytes do not hash to its name, now quarantined), or None. Each object is hashed once
        per run."""
        objects = self.repo.objects
        for p, h, _ in ins:
            if h in self.state.verified:
                continue
            if objects.verify(h):
                self.state.verified.add(h)
                continue
            objects.quarantine(h)
            fix = ("run 'e3 go' again to recompute it" if p.startswith("outputs/") else
                   f"restore it with 'e3 reset {p}' or 'e3 set {p} FILE'")
            return (f"input {p} is corrupt (object {h[:12]} does not hash to its name; moved to "
                    f".e3/quarantine): {fix}, and run 'e3 fsck --repair'")
        return None

    def _episode(self, job: Job, key: str | None) -> Episode:
        n = self.state.attempts.get(job.name, 0)
        self.state.attempts[job.name] = n + 1
        ep = Episode(f"{self.run_id}:{job.name}" + (f"#{n + 1}" if n else ""), self.run_id,
                     job.name, key, job.profile)
        ep.move("plan", self.state.beat)
        self.state.episodes.append(ep)
        self.state.open_episodes.append(ep)
        self.state.last_episode[job.name] = ep
        return ep

    def _out_file(self, key: str, ep: Episode) -> str:
        """A temp file unique to this episode (two episodes may share an execution key)."""
        if self.state.out_files == 0:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.state.out_files += 1
        return f"{self.tmp_dir}/out-{key[:24]}-{self.run_id}-{self.state.out_files}"

    async def _collect(self, task: Task, handle) -> None:
        """Await a submitted task's `Finished` and stage it for the next commit."""
        import anyio

        st = self.state
        try:
            res = await handle
        except anyio.get_cancelled_exc_class():
            st.running.pop(task.job.name, None)
            st.staged.append(task.finished("cxl", st.cancel_reason or "cancelled"))
            raise
        st.running.pop(task.job.name, None)
        st.staged.append(res)
        st.wake.set()

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
            if st.inflight.get(f.key) == f.job.name:
                del st.inflight[f.key]
        for f in staged:
            job = f.job
            if f.status == "hit":
                fresh = st.fresh.get(f.key)
                size = fresh[2] if fresh else self.repo.objects.size(f.output_hash)
                st.view[job.output_path] = blob_entry(f.output_hash, size, f.output_format or "raw")
                st.results[job.name] = (f.key, f.output_hash)
                self._finish_outcome(job.name, "cached")
                st.published.append((job.output_path, f.output_hash))
                continue
            ep = st.last_episode[job.name]
            if f.status == "ok":
                h, size = adopt_output(st.batch, f)
                st.adopted.append(f.output_file)
                st.verified.add(h)
                f.output_hash = h
                st.fresh[f.key] = (h, f.output_format or "raw", size)
                st.view[job.output_path] = blob_entry(h, size, f.output_format or "raw")
                st.results[job.name] = (f.key, h)
                if not ep.final:
                    ep.move("ok", st.beat, f"{f.ended - f.started:.3f}s")
                self._finish_outcome(job.name, "executed", f.ended - f.started)
                st.published.append((job.output_path, h))
            else:
                if f.output_file:
                    try:
                        os.unlink(f.output_file)
                    except FileNotFoundError:
                        pass
                if not ep.final:
                    ep.move("cxl" if f.status == "cxl" else "fail", st.beat, f.reason)
                self._finish_outcome(job.name, "cancelled" if f.status == "cxl" else "failed",
                                     f.ended - f.started, f.reason or "")
                failed.append(job.name)
            if f.key:
                st.records.append(execution_record(f, self.run_id, self.ws))
        for f in staged:  # dataflows sharing an execution take its result now (or run it)
            for n in st.sharing.pop(f.key, ()):
                if n in st.pending:
                    heapq.heappush(st.ready, self._prio[n])
        if failed and self.fail_fast:
            self.cancel("fail-fast: " + failed[0] + " failed")

    def _deliver(self, reports: list) -> None:
        if reports and self.on_outcome is not None:
            self.on_outcome.many(reports)

    def _unflushed(self) -> bool:
        return bool(self.state.view or self.state.records or self.state.reports or self.state.published
                    or self.state.procs or len(self.state.batch))

    def _flush_due(self) -> bool:
        if self.state.flushing or not self._unflushed():
            return False
        if self.timer() - self.state.last_flush >= self.state.flush_interval:
            return True
        # nothing else to do before a task finishes: flushing delays nothing
        return not self.state.ready and not self.state.staged

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
                self.state.flushing = False
                self.state.flush_done.set()
                raise
            self._flush_end(snap, new)
            self.state.wake.set()

    def _start_flush(self, tg) -> None:
        """Schedule a background flush. It counts as running from now, not from when its task
        first runs: two flushes never overlap (the later one's root would be computed before
        the earlier one's lands, and its end could move the run's root back)."""
        import anyio

        self.state.flushing = True
        self.state.flush_done = anyio.Event()
        tg.start_soon(self._flush_in_background)

    def _flush_begin(self) -> dict:
        """Snapshot what is staged (on the loop): the durable part works on the snapshot
        while beats add to fresh lists."""
        st = self.state
        st.flushing = True
        snap = {"t0": self.timer(), "changes": dict(st.view), "published": st.published,
                "records": st.records, "reports": st.reports,
                "episodes": take_rows(st.open_episodes), "batch": st.batch,
                "root": st.root, "procs": st.procs}
        st.open_episodes = [ep for ep in st.open_episodes if not ep.final]
        st.published, st.records, st.reports, st.procs = [], [], [], []
        st.batch = self.repo.objects.batch()
        if self.publish is not None and snap["published"]:
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
                self.state.foreign = True
                new = trees.set_many(old, changes, store=batch)
            else:
                new = ours
        batch.commit()
        self._flush_db().journal.flush(snap["records"], snap["episodes"], snap["procs"],
                                       self.memo.host)
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
                    self.state.foreign = True
                    again = self.repo.objects.batch()
                    new = trees.set_many(old, changes, store=again)
                    again.commit()
        if self.publish is not None and snap["published"]:
            self.publish.publish(new or self.workspaces.root(self.ws), snap["published"])
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
        st.flush_interval = max(self._flush_every, now - snap["t0"])
        st.last_flush = now
        st.flushing = False
        if st.flush_done is not None:
            st.flush_done.set()

    def _flush_db(self):
        """index.db through a connection of the flush's own (it may run in a worker thread)."""
        if self.state.flush_conn is None:
            from ..repo.index import IndexDB

            self.state.flush_conn = IndexDB(self.repo.index.path)
        return self.state.flush_conn

    async def _flush_settle(self) -> None:
        """Wait for a background flush still running."""
        if self.state.flushing and self.state.flush_done is not None:
            await self.state.flush_done.wait()

    def cancel(self, reason: str) -> None:
        """Cancel the run: what is pending is skipped, what runs is cancelled on the backend
        (its episodes end `cxl` with the run's reason)."""
        st = self.state
        if st.cancel_reason is None:
            st.cancel_reason = reason
        self._skip_pending()
        st.ready = []
        for ep in list(st.running.values()):
            self.backend.cancel(ep.episode, st.cancel_reason)
        if st.scope is not None:
            st.scope.cancel()

    # -- the loop ---------------------------------------------------------------------------
    async def run(self) -> ExecState:
        import anyio

        st = self.state
        st.scope = None
        st.wake = anyio.Event()
        self._commit_precached()
        try:
            async with anyio.create_task_group() as tg:
                st.scope = tg.cancel_scope
                while st.pending or st.running or st.staged:
                    st.beat += 1
                    if self.should_cancel:
                        why = self.should_cancel()
                        if why:
                            self.cancel(why)
                            break
                    st.wake = anyio.Event()
                    if st.beat_event is not None:  # made only when an episode waits on it
                        st.beat_event.set()
                        st.beat_event = None
                    await self.compute(self.capture(), tg)
                    if (st.running or st.flushing) and not st.staged:
                        wait = self.tick
                        if self._unflushed() and not st.flushing:
                            wait = min(wait, max(0.0, st.last_flush + st.flush_interval
                                                 - self.timer()))
                        with anyio.move_on_after(wait):  # beat even when nothing finishes
                            await st.wake.wait()
                    self.commit()
                    if self._flush_due():
                        self._start_flush(tg)
                    if not st.running and not st.staged and st.pending and not self.capture_possible():
                        self._skip_pending()
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
            st.published.append((path, h))
            st.results[name] = (key, h)
            st.keys[name] = key
            self._finish_outcome(name, "cached")

    def record_group(self, row: tuple) -> None:
        """(run, episode, pgid, start) of a task's process group, written with the next flush
        (one killed before it is found by its environment token instead)."""
        self.state.procs.append(row)

    # -- hooks for inline tasks driven across beats (exec/inline.py) ------------------------
    def note(self, ep: Episode, note: str) -> None:
        """Record a note (e.g. a refused lease) in the episode's history, at its current state."""
        if ep.final and ep not in self.state.open_episodes:
            self.state.open_episodes.append(ep)  # left once flushed: open again for this row
        ep.history.append((len(ep.history), ep.state, self.state.beat, note, self.clock()))

    def _next_beat(self):
        """An event set when the next beat starts."""
        if self.state.beat_event is None:
            import anyio

            self.state.beat_event = anyio.Event()
        return self.state.beat_event

    async def next_beat(self, ep: Episode, state: str = "yield", note: str = "") -> None:
        """Suspend `ep` (yield) until the next beat; it holds no slot meanwhile."""
        ep.move(state, self.state.beat, note)
        self.state.suspended.add(ep.dataflow)
        try:
            ev = self._next_beat()
            self.state.wake.set()
            await ev.wait()
        finally:
            self.state.suspended.discard(ep.dataflow)
        ep.move("run", self.state.beat)

    async def await_dataflow(self, ep: Episode, other: str, timeout_beats: int) -> str | None:
        """Wait until dataflow `other` of this run is finished; its outcome, None on timeout,
        or "deadlock: …" when the wait would close an await cycle."""
        if other not in self.jobs:
            self.note(ep, f"await {other}: not part of this run")
            return "absent"
        chain, cur = [ep.dataflow, other], other
        while cur in self.state.await_edges:
            cur = self.state.await_edges[cur]
            chain.append(cur)
            if cur == ep.dataflow:
                ep.move("await", self.state.beat, other)
                return "deadlock: " + " -> ".join(chain)
        self.state.await_edges[ep.dataflow] = other
        self.repo.journal.record_await(ep.episode, f"{self.run_id}:{other}")
        start = self.state.beat
        try:
            ep.move("await", self.state.beat, other)
            self.state.suspended.add(ep.dataflow)
            while self.state.outcome.get(other) is None:
                if self.state.beat - start >= timeout_beats:
                    return None
                await self._next_beat().wait()  # the next natural beat: a finish or the tick
        finally:
            self.state.suspended.discard(ep.dataflow)
            self.state.await_edges.pop(ep.dataflow, None)
        ep.move("run", self.state.beat)
        return self.state.outcome[other]

    def _note_stale(self) -> None:
        """Inputs changed elsewhere while the run went on (`e3 set` from another shell)? The
        run read none of it; the dataflows reading a changed path, and what follows them, are
        reported stale (the next run takes them up)."""
        st = self.state
        now = self.workspaces.root(self.ws)
        if not st.foreign and now == st.root:
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

    def _skip_pending(self) -> None:
        """Skip every pending job, in priority order, each saying why."""
        st = self.state
        ordered = sorted(st.pending, key=self._prio.__getitem__)
        notes = self._skip_notes(ordered)
        for n in ordered:
            self._finish_outcome(n, "skipped", note=notes[n])
        st.pending = set()

    def capture_possible(self) -> bool:
        st = self.state
        return bool(st.doomed) or any(
            item[1] in st.pending and not st.unmet.get(item[1]) for item in st.ready)

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
                st.batch.abort()
        self._skip_pending()
        # staged outputs were installed by hard link; a task may have been reading the staged
        # name until now
        for f in st.adopted:
            try:
                os.unlink(f)
            except FileNotFoundError:
                pass
        st.adopted = []
        if st.flush_conn is not None:
            st.flush_conn.close()
            st.flush_conn = None
        if st.reports:
            reports, st.reports = st.reports, []
            self._deliver(reports)
