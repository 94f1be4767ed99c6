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
import os
import signal
import sys
import time
from typing import Callable

from ..core import canon
from ..core.errors import UsageError
from ..core.hashing import hash_parts
from .decide import CompiledPolicy, Policy, Prediction, decide, explaining_facts, predict
from .events import EventLog, Reporter
from .staging import clear_staging, run_token
from .model import Project
from .settled import Settled

COMMIT_TAG = "e3-commit-v1"

# The warm path imports neither the memo module nor dataclasses: what only a full decision or
# an execution needs is imported when it happens.


class gc_paused:
    """Cyclic garbage collection paused while a run is decided (and a warm run answered):
    that phase allocates objects in proportion to the package — the package itself, keys,
    receipt rows — none of them cyclic garbage, which collections would only rescan over and
    over (~10% of a 10,000-dataflow warm run). Refcounting frees them as usual; collection
    resumes before anything executes."""

    def __enter__(self):
        self.was = gc.isenabled()
        gc.disable()
        return self

    def __exit__(self, *exc):
        if self.was:
            gc.enable()
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
                 events: EventLog | None = None, freeze: Callable[[], None] | None = None,
                 remote: str | None = None, push: bool = False):
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
        #: take the shortcuts the last settled run proves (`settled.Settled`); tests turn
        #: them off to compare with the full lookup
        self.warm_path = True
        #: called once a run is decided, before it executes (a warm run: once answered), while
        #: collection is still paused: the CLI passes `gc.freeze`, so
        #: what lives to the run's end (package, plan, jobs) leaves the collected generations
        #: and no full collection during the run traverses it again (~0.1 s at 10,000
        #: dataflows, bench/RESULTS.md "Seams"); a process that goes on after the run (watch,
        #: an embedding program) passes nothing
        self.freeze = freeze
        self.settled: Settled | None = None  # per call: what the last settled run proves
        self.verified: set[str] = set()  # objects hashed before the run (`_handed_intact`)
        self.snapshot = None  # the workspace root the run reads (set per call)
        self.memo_gen = None  # the memo's generation when the call began (per call)
        #: what this Go decided and did, in order (see `events.EventLog`)
        self.events = events if events is not None else EventLog()
        self._policy = None  # the rerun policy (`policy()`), loaded once
        # per call: the signal that arrived, why the executor cancelled, the dataflows that
        # went stale, every key the executor computed
        self.interrupted = self.cancelled_reason = None
        self.stale: list = []
        self.keys: dict = {}
        self.restored: list = []  # output files edited by hand that the run put back
        #: the shared cache (docs/sharing.md): the remote asked before executing a dataflow
        #: (`go --remote NAME`; None: none), whether to push what was computed after the run
        self.remote = remote
        self.push = push
        self.lookup = None  # per call: the `exec.share.RemoteLookup` of the run, if any
        self._pushing = None  # per call: (remote, signer) of --push
        self.pulled: set = set()  # per call: the dataflows whose results came from the remote

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
        why = explaining_facts(self.repo, project, self.snapshot, pred, self._base(ws)
                               if len(pred.outputs) < len(selected) else None, overrides)
        policy, limits = self.policy(), None
        if not isinstance(policy, CompiledPolicy):  # only the interpreter runs under limits
            from ..logic.limits import Limits  # (imports the rule engine: ~35 ms)

            limits = Limits.from_settings(self.repo.config)
        return decide(policy, project, selected, pred, self.force, why, limits)

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
        try:
            recover_dead_runs(self.repo, ws)
            return self._go(ws)
        finally:
            lock.release()

    def _go(self, ws: str) -> dict:
        api = self.api
        ev = self.events
        self.lookup, self.pulled = None, set()
        self._pushing = self._push_target() if self.push and not self.dry_run else None
        # the memo's generation before anything is looked up: if it still stands when the
        # run is settled, every key of its receipt maps to its output (see `_finish`)
        self.memo_gen = self.repo.journal.memo_generation()
        with gc_paused():
            root = api.intake(ws)
            self.snapshot = root  # the one snapshot of the workspace this run reads
            project, selected = self.prepare(ws)
            policy = _policy(self.targets, self.pattern, self.force, self.fail_fast)
            st = self.settled = Settled(self.repo, ws, project, selected, self.targets,
                                        self.pattern)
            shortcuts = self.warm_path and not self.force
            if shortcuts and not self.dry_run:
                warm = st.warm_receipt(root)
                if warm is not None and self._rules_add_nothing(project, selected):
                    ev.emit("decided", path="warm", run=[], cached=sorted(selected),
                            reasons={}, observed=0)
                    answer = self._go_warm(ws, project, selected, root, policy, warm)
                    if self.freeze is not None:  # before collection resumes: what the warm
                        self.freeze()  # answer made is not scanned once more (~0.1 s at 100,000)
                    return answer
            path = "incremental"
            pred = st.incremental(root) if shortcuts else None
            if pred is None:
                path = "full"
                pred = predict(self.repo, project, root, selected, self.force)
            pred = self.decide(ws, project, selected, pred)
            if self.remote is not None and pred.run and not self.dry_run and not self.force:
                path = "full"  # every dataflow looked up again, the remote asked on a miss
                pred = self._ask_remote(ws, project, selected, root, pred)
            while not self._handed_intact(project, pred):  # a corrupt one was quarantined
                path = "full"
                pred = self.decide(ws, project, selected,
                                   predict(self.repo, project, root, selected, self.force))
            collecting = gc.isenabled()  # (False: decided with cyclic gc paused)
            if self.lookup is not None:
                self.pulled = set(self.lookup.adopted) & set(pred.cached)
            ev.emit("decided", path=path, run=list(pred.run), cached=sorted(pred.cached),
                    reasons=dict(pred.reasons), observed=pred.observed, collecting=collecting,
                    pulled=sorted(self.pulled))
            if self.freeze is not None and not self.dry_run:  # before collection resumes:
                self.freeze()  # no full collection of the decision (~0.15 s at 100,000)
        if self.dry_run:
            plan = self.plan(project, pred)
            ev.emit("planned", batches=[list(b) for b in plan.batches])
            return {"run": None, "status": "dry-run", "executed": [], "cached": sorted(pred.cached),
                    "pulled": [], "failed": [], "skipped": [], "cancelled": [],
                    "would_run": sorted(pred.run),
                    "state_root": root, "snapshot": root, "commit": None, "receipt": None,
                    "plan": plan.to_json(), "reasons": dict(sorted(pred.reasons.items())),
                    "restored": []}
        run_id = self._start_run(ws)
        ev.emit("started", run=run_id)
        try:
            outcome, results, root = self._execute(ws, run_id, project, pred, root)
        except BaseException:
            self._end_run(run_id, "cancelled", None, None, None)
            raise
        return self._finish(ws, run_id, project, selected, outcome, results, root, policy,
                            pred.reasons)

    def _ask_remote(self, ws: str, project: Project, selected: list[str], root: str,
                    first: Prediction) -> Prediction:
        """Observe again, asking the remote for each dataflow the memo lacks
        (`exec.share.RemoteLookup`: trusted, verified results only); what it accepted becomes
        memo rows (one transaction) before the policy decides again. A remote that fails
        mid-way: `RemoteError` (exit 2) before anything is recorded."""
        from ..exec.share import RemoteLookup, remote_for

        self.lookup = RemoteLookup(self.repo, remote_for(self.repo, self.remote), project)
        # the first wave at once: the keys already known (inputs held here)
        self.lookup.prefetch(first.keys[n] for n in first.run if n in first.keys)
        pred = predict(self.repo, project, root, selected, False, remote=self.lookup)
        self.lookup.commit()
        return self.decide(ws, project, selected, pred)

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
                self.restored = self.api.wc.ensure(
                    [(project.outputs[n], results[n][1]) for n in selected])
        except BaseException:
            self._end_run(run_id, "cancelled", None, None, None)
            raise
        self.settled.sizes = {n: size for n, _, _, size in rows}
        return self._finish(ws, run_id, project, selected, {n: "cached" for n in selected},
                            results, root, policy, repeats=self.settled.run)

    def _report_cached(self, order: list[str]) -> None:
        rep = self.reporter
        if not rep:
            return
        rep.start(len(order))
        rep.outcomes(order, "cached")  # one buffered write for the lot

    def _execute(self, ws, run_id, project: Project, pred: Prediction, root: str):
        if self.settled.noop_sizes(pred, root):
            self._report_cached(pred.order)
            if ws == self.api.current:  # outputs are engine-owned: put back deleted/edited files
                self.restored = self.api.wc.ensure(
                    [(project.outputs[n], pred.outputs[n]) for n in pred.order])
            return ({n: "cached" for n in pred.order},
                    {n: (pred.keys[n], pred.outputs[n]) for n in pred.order}, root)
        from .execute import execute

        plan = self.plan(project, pred) if pred.run else None
        if plan is not None:
            self.events.emit("planned", batches=[list(b) for b in plan.batches])
        reporter = self.reporter
        if reporter is not None:
            reporter.explain(pred.reasons)
            if self.pulled:
                reporter = PulledReporter(reporter, self.pulled)
        done = execute(self.api, ws, run_id, project, pred, root, cap=self.cap,
                       executor=self.executor, force=self.force or pred.rule_forced,
                       fail_fast=self.fail_fast,
                       strict_batches=self.strict_batches, reporter=reporter,
                       interrupted=lambda: self.interrupted, before_run=self.freeze,
                       verified=self.verified, plan=plan, fresh=self.pulled)
        self.cancelled_reason = done.cancel_reason
        self.stale = done.stale
        self.keys = done.keys
        self.restored = done.restored
        return done.outcome, done.results, done.root

    # -- bookkeeping -----------------------------------------------------------------------
    def _start_run(self, ws: str) -> str:
        return self.repo.journal.start_run(ws, " ".join(["e3", *sys.argv[1:]]),
                                           self.package_hash)

    def _end_run(self, run_id, status, commit, state_root, receipt_digest, parent=None,
                 policy=None, receipt=None, sizes=None, repeats=None, copied=None,
                 memo_gen=None):
        """Close the run row and write its receipt rows, in one transaction. `sizes`
        {dataflow: output size}: the run is settled (`Settled.settle`). `repeats`: the
        settled run whose rows stand for this run's, each `cached` — all of them for a warm
        no-op (not copied), those named in `copied` (copied) for an incremental run.
        `memo_gen`: see `Journal.end_run`."""
        self.repo.journal.end_run(run_id, status, commit=commit, state_root=state_root,
                                  receipt_digest=receipt_digest, parent=parent, policy=policy,
                                  receipt=receipt, sizes=sizes, receipt_of=repeats,
                                  copied=copied, memo_gen=memo_gen)

    def _finish(self, ws, run_id, project, selected, outcome, results, root, policy,
                decided=None, repeats=None) -> dict:
        receipt = []
        lists = {o: [] for o in ("executed", "cached", "pulled", "failed", "skipped",
                                 "cancelled")}
        if self.pulled:  # hits the remote supplied: `pulled` in the receipt
            outcome = {n: "pulled" if o == "cached" and n in self.pulled else o
                       for n, o in outcome.items()}
        keys = self.keys
        order = sorted(selected)
        for n in order:
            o = outcome.get(n, "skipped")
            if o in lists:
                lists[o].append(n)
        why = self.cancelled_reason
        if not why and self.interrupted:  # a signal after the last beat
            why = f"interrupted by {self.interrupted}"
        if why and not why.startswith("fail-fast"):
            status = "cancelled"
        else:
            status = "failed" if lists["failed"] else "ok"
        # a warm no-op that ends ok: its receipt rows are the settled run's, each `cached`
        # (`runs.receipt_of`), and if that run executed nothing either, so is its digest
        repeats = repeats if status == "ok" and not why and selected else None
        receipt_digest = self.settled.repeated_digest() if repeats is not None else None
        if receipt_digest is None:
            for n in order:
                key, out = results.get(n) or (keys.get(n), None)
                receipt.append({"dataflow": n, "key": key, "output": out,
                                "outcome": outcome.get(n, "skipped")})
            receipt_digest = canon.digest(receipt)
        policy_id = canon.digest(policy)
        parent = self._parent(ws)
        commit = commit_hash(parent, root, receipt_digest, policy_id)
        sizes = None if why else self.settled.settle(status, outcome, results, root,
                                                     self.events)
        copied = None
        # the memo's generation, if nothing that a key maps to changed during the run: every
        # row of a settled receipt was read from the memo since (or written to it as a new key)
        memo_gen = self.memo_gen if sizes and \
            self.repo.journal.memo_generation() == self.memo_gen else None
        if repeats is None and receipt:  # the rows an incremental run kept: copied in SQL
            repeats, copied = self.settled.kept_rows(receipt, sizes)
        self._end_run(run_id, status, commit, root, receipt_digest, parent,
                      canon.dumps(policy).decode(), receipt, sizes, repeats, copied, memo_gen)
        self.repo.journal.clear_process_groups(run_id)
        clear_staging(self.repo, run_id)
        reasons = self._outcome_reasons(run_id, project, lists, decided or {}, why)
        restored, self.restored = sorted(self.restored), []
        self.events.emit("finished", status=status,
                         **{k: list(v) for k, v in lists.items() if k != "cached"})
        self.events.emit("committed", commit=commit, state_root=root)
        answer = {"run": run_id, "status": status, **lists, "state_root": root,
                "snapshot": self.snapshot, "commit": commit,
                "receipt": receipt_digest, "parent": parent, "policy": policy_id,
                "workspace": ws, "stale": sorted(self.stale or []),
                "reason": why, "reasons": reasons, "restored": restored}
        if self.lookup is not None:
            answer["refused"] = list(self.lookup.refused)
        if self.push:
            answer["pushed"] = self._push()
        return answer

    def _push_target(self):
        """(remote, signer) of `--push`, checked before the run: a missing key or remote is
        one line, exit 2, before anything runs."""
        from ..exec.share import remote_for
        from ..repo.keys import load_signer

        return remote_for(self.repo, self.remote), load_signer()

    def _push(self) -> dict:
        """`--push`: upload what this repository computed (`exec.share.push`)."""
        from ..exec.share import push

        remote, signer = self._pushing or self._push_target()
        result = push(self.repo, remote, signer)
        self.events.emit("pushed", objects=result["objects"], records=result["records"])
        return result

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


class PulledReporter:
    """A go reporter that says `pulled` for the dataflows whose results came from the remote
    (the executor commits them as memo hits)."""

    def __init__(self, reporter, pulled):
        self._r, self._pulled = reporter, pulled

    def __getattr__(self, name):
        return getattr(self._r, name)

    def _word(self, name, outcome):
        return "pulled" if outcome == "cached" and name in self._pulled else outcome

    def outcome(self, name, outcome, seconds, note=""):
        self._r.outcome(name, self._word(name, outcome), seconds, note)

    def many(self, rows):
        self._r.many([(r[0], self._word(r[0], r[1]), *r[2:]) for r in rows])

    def outcomes(self, names, outcome, seconds=0.0):
        names = list(names)
        mine = [n for n in names if self._word(n, outcome) != outcome]
        rest = [n for n in names if n not in mine] if mine else names
        if mine:
            self._r.outcomes(mine, "pulled", seconds)
        if rest:
            self._r.outcomes(rest, outcome, seconds)
