"""`e3 go`: take in working-copy edits, decide what must run, plan it, run it, and record a
receipt and a commit.

What must run is decided by content: walking the DAG in order, a dataflow is predicted cached
when all its input hashes are known and its execution key is in the memo; anything downstream of
a predicted run is unknown, hence runs (the dirty closure). The receipt lists every selected
dataflow with its execution key, output hash and outcome, sorted by name; the commit hash is
H(version tag, parent commit, state root, receipt digest, policy id) — no clock, pid or worker
count reaches it.
"""
from __future__ import annotations

import gc
import json
import os
import signal
import sys
import time

from ..core import canon
from ..core.errors import NotFound, UsageError
from ..core.hashing import hash_parts
from .decide import Policy, Prediction, decide, explaining_facts, predict
from .events import EventLog, Reporter
from .execute import clear_staging, run_token
from .model import Project

COMMIT_TAG = "e3-commit-v1"

# The warm path imports neither the memo module nor dataclasses: what only a full decision or
# an execution needs is imported when it happens.


class gc_paused:
    """Cyclic garbage collection paused while a run is decided (and a warm run answered):
    that phase allocates objects in proportion to the package — the package itself, keys,
    receipt rows — none of them cyclic garbage, which collections would only rescan over and
    over (~10% of a 10,000-dataflow warm run). Refcounting frees them as usual; collection
    resumes before anything executes. With `freeze`, what is still alive then is moved out of
    the collected generations (`gc.freeze`): it lives to the run's end, and every full
    collection while the run plans and executes would traverse it again (~20-40 ms each at
    10,000 dataflows); `Go.__call__` unfreezes it when the run is over."""

    def __init__(self, freeze: bool = False):
        self.freeze = freeze

    def __enter__(self):
        import gc

        self.gc, self.was = gc, gc.isenabled()
        gc.disable()
        return self

    def __exit__(self, *exc):
        if self.freeze:
            self.gc.freeze()
        if self.was:
            self.gc.enable()
        return False


def recover_dead_runs(repo, ws: str) -> list[str]:
    """Runs of `ws` still marked running belong to a dead engine (we hold the run lock): stop
    the task process groups they left (only where the leader's start time still matches), mark
    the runs `abandoned` and their unfinished episodes `cxl`."""
    j = repo.journal
    # flock says its holder is gone, whatever the pid table says
    dead = [(run, pid) for run, pid, _ in j.running_runs(ws) if pid != os.getpid()]
    if not dead:
        return []
    from ..exec.procs import kill_marked, kill_orphans

    now = time.time()
    for run, pid in dead:
        kill_orphans(j.process_groups(run))
        kill_marked(f"E3_RUN_TOKEN={run_token(repo, run)}")  # spawned but not yet recorded
        j.abandon_run(run, f"abandoned: engine pid {pid} died", now=now)
        clear_staging(repo, run)
    return [r for r, _ in dead]


def _policy(targets, pattern, force, fail_fast) -> dict:
    return {"targets": sorted(targets), "filter": pattern, "force": bool(force),
            "on_failure": "fail-fast" if fail_fast else "keep-going"}


def commit_hash(parent: str, state_root: str, receipt_digest: str, policy_id: str) -> str:
    return hash_parts([COMMIT_TAG, parent, state_root, receipt_digest, policy_id])


class Go:
    """One `e3 go` invocation."""

    def __init__(self, api, targets=(), pattern=None, cap=None, executor="threads",
                 force=False, dry_run=False, fail_fast=False, strict_batches=False,
                 reporter: Reporter | None = None, workspace=None,
                 events: EventLog | None = None):
        from ..exec.backends import backend_kind

        backend_kind(executor)  # an unknown name: a UsageError naming the known ones
        self.api = api
        self.repo = api.r
        self.targets = list(targets)
        self.pattern = pattern
        self.cap = cap or int(self.repo.config.get("defaults", {}).get("jobs", os.cpu_count() or 1))
        self.executor = executor
        self.force = force
        self.dry_run = dry_run
        self.fail_fast = fail_fast
        self.strict_batches = strict_batches
        self.reporter = reporter
        self.workspace = workspace
        self.package_hash = None
        #: answer a provable no-op from the last settled run (`_warm_receipt`); tests turn it
        #: off to compare both paths
        self.warm_path = True
        self.may_freeze = False  # set per call (see __call__)
        # what one call learns about the settled run (reset per call): its rows, the part an
        # incremental run kept, the output sizes a no-op run already knows
        self._settled_memo = self.settled_base = self.settled_sizes = None
        self.verified: set[str] = set()  # objects hashed before the run (`_handed_intact`)
        self.snapshot = None  # the workspace root the run reads (set per call)
        #: what this Go decided and did, in order (see `events.EventLog`)
        self.events = events if events is not None else EventLog()
        self._policy = None  # the rerun policy (`policy()`), loaded once
        # per call: the signal that arrived, why the executor cancelled, the dataflows that
        # went stale, every key the executor computed, the sizes a no-op run knows
        self.interrupted = self.cancelled_reason = self.noop_sizes = None
        self.stale: list = []
        self.keys: dict = {}

    # -- preparing -------------------------------------------------------------------------
    def prepare(self, ws: str):
        api = self.api
        pkg_ref = api.workspaces.package(ws)
        if not pkg_ref:
            raise UsageError(f"workspace '{ws}' has no package deployed; 'e3 checkout NAME' first")
        self.package_hash = pkg_ref["hash"]
        project = Project.load(self.repo, pkg_ref["hash"])
        selected = project.select(self.targets, self.pattern)
        return project, selected

    def plan(self, project: Project, pred: Prediction):
        """The planner's answer for the dataflows predicted to run."""
        from .planning import plan_dataflows

        return plan_dataflows(self.repo, project, pred.run, cap=self.cap, keys=pred.keys)

    def policy(self) -> Policy:
        """The rerun policy: the shipped rules and the project's own rules/*.dl."""
        if self._policy is None:
            self._policy = Policy.for_project(self.api.root, self.repo.dir / "cache")
        return self._policy

    def decide(self, ws: str, project: Project, selected: list[str], pred: Prediction,
               overrides: dict | None = None) -> Prediction:
        """Let the policy decide over what `pred` observed (see `decide.py`)."""
        from ..logic.limits import Limits

        why = explaining_facts(self.repo, project, self.snapshot, pred, self._base(ws)
                               if len(pred.outputs) < len(selected) else None, overrides)
        return decide(self.policy(), project, selected, pred, self.force, why,
                      Limits.from_settings(self.repo.config))

    def decide_now(self, ws: str, root: str | None = None, overrides: dict | None = None):
        """(project, selected, root, decision) for the workspace root (or `root`, plus
        `overrides`), running nothing: what `plan` and `status` answer from."""
        root = self.snapshot = root or self.api.workspaces.root(ws)
        project, selected = self.prepare(ws)
        pred = predict(self.repo, project, root, selected, self.force, overrides)
        return project, selected, root, self.decide(ws, project, selected, pred, overrides)

    # -- running ---------------------------------------------------------------------------
    def __call__(self) -> dict:
        api = self.api
        ws = api.ws(self.workspace)
        # Ctrl-C / SIGTERM only set a flag, acted on within a beat; the handler stays for the
        # whole command, so a second signal while cleaning up can change nothing
        self.interrupted = None

        def on_signal(signum, frame):
            self.interrupted = self.interrupted or signal.Signals(signum).name

        old = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                old[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread (an embedding program): no signal handling
            pass
        try:
            # gc waits while the run holds its snapshot and staged outputs (see repo.gc)
            with self.repo.object_guard():
                return self._locked(api, ws)
        finally:
            for sig, h in old.items():
                # once interrupted, ignore: a handler would be reset to the default action at
                # interpreter shutdown (SIG_IGN is kept), and a late Ctrl-C would kill us
                signal.signal(sig, signal.SIG_IGN if self.interrupted else h)

    def _locked(self, api, ws: str) -> dict:
        """The run under the workspace's run lock."""
        lock = api.workspaces.run_lock(ws).acquire("go " + " ".join(self.targets))
        # freeze long-lived objects out of collections only when nobody else froze any
        # (an embedding program's own gc.freeze is left alone)
        self.may_freeze = gc.get_freeze_count() == 0
        self._settled_memo = self.settled_sizes = self.settled_base = None  # see __init__
        try:
            recover_dead_runs(self.repo, ws)
            return self._go(ws)
        finally:
            if self.may_freeze:
                gc.unfreeze()  # `e3 watch` runs again in this process
            lock.release()

    def _go(self, ws: str) -> dict:
        api = self.api
        ev = self.events
        with gc_paused(freeze=self.may_freeze):
            root = api.intake(ws)
            self.snapshot = root  # the one snapshot of the workspace this run reads
            project, selected = self.prepare(ws)
            policy = _policy(self.targets, self.pattern, self.force, self.fail_fast)
            if not self.dry_run:
                warm = self._warm_receipt(ws, project, selected, root)
                if warm is not None and not self._rules_add_nothing(project, selected):
                    warm = None
                if warm is not None:
                    ev.emit("decided", path="warm", run=[], cached=sorted(selected),
                            reasons={}, observed=0)
                    return self._go_warm(ws, project, selected, root, policy, warm)
            path = "incremental"
            pred = None if self.force else self._incremental(ws, project, selected, root)
            if pred is None:
                path = "full"
                pred = predict(self.repo, project, root, selected, self.force)
            pred = self.decide(ws, project, selected, pred)
            while not self._handed_intact(project, pred):  # a corrupt one was quarantined
                path = "full"
                pred = self.decide(ws, project, selected,
                                   predict(self.repo, project, root, selected, self.force))
        ev.emit("decided", path=path, run=list(pred.run), cached=sorted(pred.cached),
                reasons=dict(pred.reasons), observed=pred.observed)
        if self.dry_run:
            plan = self.plan(project, pred)
            ev.emit("planned", batches=[list(b) for b in plan.batches])
            return {"run": None, "status": "dry-run", "executed": [], "cached": sorted(pred.cached),
                    "failed": [], "skipped": [], "cancelled": [], "would_run": sorted(pred.run),
                    "state_root": root, "snapshot": root, "commit": None, "receipt": None,
                    "plan": plan.to_json(), "reasons": dict(sorted(pred.reasons.items()))}
        run_id = self._start_run(ws)
        ev.emit("started", run=run_id)
        try:
            outcome, results, root = self._execute(ws, run_id, project, pred, root)
        except BaseException:
            self._end_run(run_id, "cancelled", None, None, None)
            raise
        return self._finish(ws, run_id, project, selected, outcome, results, root, policy,
                            pred.reasons)

    def _rules_add_nothing(self, project: Project, selected: list[str]) -> bool:
        """Would the policy run nothing when nothing was observed to miss? True at once for
        the shipped rules (nothing is forced, nothing misses: no `dirty(D)`); project rules
        that add `dirty(D)` are asked."""
        if self._policy is None and not Policy.project_files(self.api.root):
            return True  # (the rule parser is not even imported)
        policy = self.policy()
        if not policy.extended:
            return True
        pred = Prediction(selected, [], list(selected), miss=set())
        return not decide(policy, project, selected, pred, False).run

    # -- the warm path ---------------------------------------------------------------------
    def _warm_receipt(self, ws: str, project: Project, selected: list[str], root: str):
        """The receipt rows `[(dataflow, key, output hash, size)]` (sorted by name) of a run
        that provably has nothing to do, or None (then `predict` decides, as always).

        Provably: the workspace's latest run is *settled* (it ended ok and, when it finished,
        every receipt row was checked against its state root: the output at the dataflow's
        path, the key computed from the inputs there), it ran this package with these targets
        and this filter, intake found its state root unchanged, the memo still maps every key
        to the recorded output, and every output object is in the store at its recorded size.
        Then `predict` would find every dataflow cached with exactly these keys and outputs,
        and the run would change nothing: this answers the same without reading a tree."""
        if self.force or not self.warm_path:
            return None
        settled = self._settled_rows(ws, project, selected)
        if settled is None or settled[0] != root:
            return None
        if not self._objects_intact(settled[1]):
            return None
        return [(name, key, h, size) for name, key, h, size, _ in settled[1]]

    def _objects_intact(self, rows) -> bool:
        """Is every row's output object in the store at its recorded size? (If not, `predict`
        removes the bad object and the dataflow re-executes.)"""
        size_of = self.repo.objects.size
        try:
            return all(size_of(h) == size for _, _, h, size, _ in rows)
        except OSError:
            return False

    def _settled_rows(self, ws: str, project: Project, selected: list[str]):
        """(state root, rows `[(dataflow, key, output hash, size, format)]`) of the workspace's
        latest run when it is settled (see `_warm_receipt`) for this package and selection and
        the memo still maps each key to its output; None otherwise. Read once per run: the
        warm path and the incremental one both ask, before anything is written."""
        cached = self._settled_memo
        if cached is not None and cached[0] == (ws, project.pkg_hash, tuple(selected)):
            return cached[1]
        found = self._read_settled_rows(ws, project, selected)
        self._settled_memo = ((ws, project.pkg_hash, tuple(selected)), found)
        return found

    def _read_settled_rows(self, ws: str, project: Project, selected: list[str]):
        j = self.repo.journal
        last = j.latest_run(ws)
        if last is None:
            return None
        run, status, settled, package, state_root, policy = last
        if status != "ok" or settled != 1 or package != project.pkg_hash or not policy:
            return None
        try:
            pol = json.loads(policy)
        except ValueError:
            return None
        if pol.get("targets") != sorted(self.targets) or pol.get("filter") != self.pattern:
            return None
        rows = j.settled_receipt(run)
        if len(rows) != len(selected) or [r[0] for r in rows] != sorted(selected):
            return None
        out = []
        for name, key, h, size, memo_h, fmt in rows:
            if not key or not h or memo_h != h or size is None:
                return None
            out.append((name, key, h, size, fmt or "raw"))
        return state_root, out

    def _incremental(self, ws: str, project: Project, selected: list[str], root: str):
        """The prediction after an edit, from the last settled run instead of every tree: the
        datasets that differ between its state root and `root` (`Trees.changed`, which reads
        only differing subtrees) dirty the dataflows reading them and everything downstream;
        those are predicted as `predict` does, the rest keep the settled run's key and output
        (its memo entry and output object checked, as the warm path does). None — and the full
        `predict` — when there is no such run, or a changed path is not an input of the
        selection (e.g. an edited output)."""
        if not self.warm_path:
            return None
        settled = self._settled_rows(ws, project, selected)
        if settled is None:
            return None
        state_root, rows = settled
        try:
            changed = self.repo.trees.changed(state_root, root)
        except NotFound:  # the settled run's trees are gone (deleted by hand): settle in full
            return None
        readers: dict[str, list[str]] = {}
        for n in selected:
            for p in project.dataflows[n]["inputs"]:
                readers.setdefault(p, []).append(n)
        outputs = {project.outputs[n] for n in selected}
        if any(p in outputs or p not in readers for p in changed):
            return None
        dirty = {n for p in changed for n in readers[p]}
        stack = list(dirty)
        while stack:
            for m in readers.get(project.outputs[stack.pop()], ()):
                if m not in dirty:
                    dirty.add(m)
                    stack.append(m)
        kept = [r for r in rows if r[0] not in dirty]
        if not self._objects_intact(kept):
            return None
        prior = {name: (key, h, fmt) for name, key, h, _, fmt in kept}
        # what `_settle` may take from the settled run instead of checking it again
        self.settled_base = (state_root, {name: (key, h, size) for name, key, h, size, _ in kept})
        part = predict(self.repo, project, root, [n for n in selected if n in dirty], False,
                       overrides={project.outputs[n]: prior[n][1] for n in prior})
        keys = {n: k for n, (k, _, _) in prior.items()}
        keys.update(part.keys)
        outs = {n: h for n, (_, h, _) in prior.items()}
        outs.update(part.outputs)
        fmts = {n: f for n, (_, _, f) in prior.items()}
        fmts.update(part.formats)
        run = set(part.run)
        # no output path changed since the settled run: its outputs are in the root
        pred = Prediction(selected, [n for n in selected if n in run],
                          [n for n in selected if n not in run], keys, outs, fmts,
                          set(prior) | part.in_root, part.miss, part.input_missing,
                          part.output_lost)
        pred.observed = part.observed
        return pred

    def _handed_intact(self, project: Project, pred: Prediction) -> bool:
        """Verified reads, decided up front: the cached outputs that dataflows predicted to
        run will read are hashed; a corrupt one is quarantined (False: predict again, and it
        is a memo miss, recomputed with its dependents). The hashes found intact are not
        hashed again by the executor."""
        self.verified = verified = set()
        if not pred.run or not pred.cached:
            return True
        producer = {project.outputs[n]: n for n in pred.cached}
        objects = self.repo.objects
        ok = True
        for n in pred.run:
            for p in project.dataflows[n]["inputs"]:
                m = producer.get(p)
                h = pred.outputs.get(m) if m is not None else None
                if h is None or h in verified:
                    continue
                if objects.intact(h):
                    verified.add(h)
                else:
                    objects.quarantine(h)
                    ok = False
        return ok

    def _go_warm(self, ws, project, selected, root, policy, rows) -> dict:
        run_id = self._start_run(ws)
        try:
            results = {n: (k, h) for n, k, h, _ in rows}
            self._report_cached(selected)
            if ws == self.api.current:  # outputs are engine-owned: put back deleted/edited files
                self.api.wc.ensure([(project.outputs[n], results[n][1]) for n in selected])
        except BaseException:
            self._end_run(run_id, "cancelled", None, None, None)
            raise
        self.settled_sizes = {n: size for n, _, _, size in rows}
        return self._finish(ws, run_id, project, selected, {n: "cached" for n in selected},
                            results, root, policy)

    def _report_cached(self, order: list[str]) -> None:
        rep = self.reporter
        if not rep:
            return
        rep.start(len(order))
        rep.outcomes(order, "cached")  # one buffered write for the lot

    def _settle(self, project: Project, selected, status, outcome, results, root):
        """{dataflow: output size} when this run's receipt can stand for a later no-op run
        (see `_warm_receipt`): it ended ok with nothing stale, and every selected dataflow's
        output in `root` is the receipt's and its key is the one its inputs in `root` give.
        None otherwise. A run that executed something is checked against the root itself,
        whatever the executor did; the two no-op paths know it already (`settled_sizes`: the
        warm path's receipt is the last settled run's, `_fast_noop` found every output of
        keys computed from the root in place)."""
        if status != "ok":
            return None
        known = self.settled_sizes
        if known is not None:  # the warm path: the root and the receipt are the last run's
            return known
        from ..exec.memo import execution_key

        if any(outcome.get(n) not in ("executed", "cached") for n in selected):
            return None
        sizes = {}
        check = selected
        base = self.settled_base
        if base is not None:
            # an incremental run: a dataflow none of whose paths changed since the settled
            # run, with that run's key and output, is settled as it was there
            try:
                changed = self.repo.trees.changed(base[0], root)
            except NotFound:
                return None
            check = []
            for n in selected:
                b = base[1].get(n)
                if (b is None or results.get(n) != b[:2] or project.outputs[n] in changed
                        or any(p in changed for p in project.dataflows[n]["inputs"])):
                    check.append(n)
                else:
                    sizes[n] = b[2]
        self.events.emit("settled", walked=base is None, checked=sorted(check))
        if base is None:
            entries = dict(self.repo.trees.walk(root))  # every dataset: one pass, no lookups
        else:  # a few: lookups (the trees on their paths were just read)
            find = self.repo.trees.find
            entries = {}
            for n in check:
                for p in (project.outputs[n], *project.dataflows[n]["inputs"]):
                    if p not in entries:
                        e = find(root, p)
                        if e is not None:
                            entries[p] = e
        for n in check:
            key, h = results.get(n, (None, None))
            e = entries.get(project.outputs[n])
            if not key or not h or e is None or e.get("hash") != h or e.get("size") is None:
                return None
            d = project.dataflows[n]
            th = project.task_hashes.get(d["task"])
            hs = []
            for p in d["inputs"]:
                i = entries.get(p)
                if i is None:
                    return None
                hs.append(i["hash"])
            if th is None or execution_key(th, hs) != key:
                return None
            sizes[n] = e["size"]
        return sizes

    def _fast_noop(self, project, pred, root) -> bool:
        """Nothing to run and every predicted output already in `root`. The keys were then
        computed from `root`'s inputs: the run is settled as it stands (`noop_sizes`)."""
        if pred.run:
            return False
        trees = self.repo.trees
        sizes = {}
        for n in pred.cached:
            e = trees.find(root, project.outputs[n])
            if e is None or e.get("hash") != pred.outputs[n]:
                return False
            sizes[n] = e.get("size")
        self.noop_sizes = sizes if None not in sizes.values() else None
        return True

    def _execute(self, ws, run_id, project: Project, pred: Prediction, root: str):
        if self._fast_noop(project, pred, root):
            if self.noop_sizes is not None and not self.force:
                self.settled_sizes = self.noop_sizes
            self._report_cached(pred.order)
            if ws == self.api.current:  # outputs are engine-owned: put back deleted/edited files
                self.api.wc.ensure([(project.outputs[n], pred.outputs[n]) for n in pred.order])
            return ({n: "cached" for n in pred.order},
                    {n: (pred.keys[n], pred.outputs[n]) for n in pred.order}, root)
        from .execute import execute

        plan = self.plan(project, pred) if pred.run else None
        if plan is not None:
            self.events.emit("planned", batches=[list(b) for b in plan.batches])
        if self.reporter is not None:
            self.reporter.explain(pred.reasons)
        done = execute(self.api, ws, run_id, project, pred, root, cap=self.cap,
                       executor=self.executor, force=self.force or pred.rule_forced,
                       fail_fast=self.fail_fast,
                       strict_batches=self.strict_batches, reporter=self.reporter,
                       interrupted=lambda: self.interrupted, freeze=self.may_freeze,
                       verified=self.verified, plan=plan)
        self.cancelled_reason = done.cancel_reason
        self.stale = done.stale
        self.keys = done.keys
        return done.outcome, done.results, done.root

    # -- bookkeeping -----------------------------------------------------------------------
    def _start_run(self, ws: str) -> str:
        return self.repo.journal.start_run(ws, " ".join(["e3", *sys.argv[1:]]),
                                           self.package_hash)

    def _end_run(self, run_id, status, commit, state_root, receipt_digest, parent=None,
                 policy=None, receipt=None, sizes=None):
        """Close the run row and write its receipt rows, in one transaction. `sizes`
        {dataflow: output size}: the run is settled (see `_settle`)."""
        self.repo.journal.end_run(run_id, status, commit=commit, state_root=state_root,
                                  receipt_digest=receipt_digest, parent=parent, policy=policy,
                                  receipt=receipt, sizes=sizes)

    def _finish(self, ws, run_id, project, selected, outcome, results, root, policy,
                decided=None) -> dict:
        receipt = []
        lists = {o: [] for o in ("executed", "cached", "failed", "skipped", "cancelled")}
        keys = self.keys
        for n in sorted(selected):
            key, out = results.get(n) or (keys.get(n), None)
            o = outcome.get(n, "skipped")
            receipt.append({"dataflow": n, "key": key, "output": out, "outcome": o})
            if o in lists:
                lists[o].append(n)
        why = self.cancelled_reason
        if not why and self.interrupted:  # a signal after the last beat
            why = f"interrupted by {self.interrupted}"
        if why and not why.startswith("fail-fast"):
            status = "cancelled"
        else:
            status = "failed" if lists["failed"] else "ok"
        receipt_digest = canon.digest(receipt)
        policy_id = canon.digest(policy)
        parent = self._parent(ws)
        commit = commit_hash(parent, root, receipt_digest, policy_id)
        sizes = self._settle(project, selected, status, outcome, results, root) if not why \
            else None
        self._end_run(run_id, status, commit, root, receipt_digest, parent,
                      canon.dumps(policy).decode(), receipt, sizes)
        self.repo.journal.clear_process_groups(run_id)
        clear_staging(self.repo, run_id)
        reasons = self._outcome_reasons(run_id, project, lists, decided or {}, why)
        self.events.emit("finished", status=status,
                         **{k: list(v) for k, v in lists.items() if k != "cached"})
        self.events.emit("committed", commit=commit, state_root=root)
        return {"run": run_id, "status": status, **lists, "state_root": root,
                "snapshot": self.snapshot, "commit": commit,
                "receipt": receipt_digest, "parent": parent, "policy": policy_id,
                "workspace": ws, "stale": sorted(self.stale or []),
                "reason": why, "reasons": reasons}

    def _outcome_reasons(self, run_id, project, lists, decided, cancel_why) -> dict:
        """{dataflow: why} for every one that executed (the decision's reason), failed (its
        episode's last note), was skipped (the failed dataflow upstream) or cancelled."""
        out = {n: decided.get(n, "") for n in lists["executed"]}
        if lists["failed"]:
            notes = dict(self.repo.journal.failure_notes(run_id))
            for n in lists["failed"]:
                out[n] = notes.get(n) or "failed"
        failed = set(lists["failed"])
        for n in lists["skipped"]:
            seen, todo, culprit = set(), list(project.deps[n]), None
            while todo and culprit is None:  # nearest failed dataflow upstream, by name
                nxt = []
                for u in sorted(todo):
                    if u in failed:
                        culprit = u
                        break
                    if u not in seen:
                        seen.add(u)
                        nxt += project.deps[u]
                todo = nxt
            out[n] = f"{culprit} failed upstream" if culprit else "not run"
        for n in lists["cancelled"]:
            out[n] = cancel_why or "cancelled"
        return dict(sorted(out.items()))

    def _base(self, ws: str) -> dict:
        """The workspace's last settled run, for explaining misses: {"root", "package",
        "keys": {dataflow: key}} (None values when it never settled), and "failed": the
        dataflows that failed in its last finished run."""
        j = self.repo.journal
        out = {"root": None, "package": None, "keys": {}, "failed": []}
        row = j.latest_settled_run(ws)
        if row is not None:
            out["root"], out["package"] = row[1], row[2]
            out["keys"] = j.receipt_keys(row[0])
        last = j.latest_finished_run(ws)
        if last is not None:
            out["failed"] = j.failed_in_run(last)
        return out

    def _parent(self, ws) -> str:
        return self.repo.journal.parent_commit(ws)
