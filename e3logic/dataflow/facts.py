"""Facts for the logic layer, projected from the repository (docs/internals.md, "Facts").

Package-shaped facts (dataflows, reads, writes, edges, leases, resources, `under`) are projected
once per package object and kept in index.db's `facts` table under scope `pkg:<hash>`; later
queries load them from there. Execution, provenance and episode facts are read from their own
indexed tables (memo, provenance, episodes, awaits), which every run already keeps current.
The rerun policy's facts (`DECISION_RELATIONS`: miss, input_changed, ...) are observed from the
workspace as `e3 status` observes them (`decision_facts`), and only for a question that needs
them (`RepositoryLogic`).
"""
from __future__ import annotations

import json
from functools import lru_cache

from ..core.paths import is_prefix
from .model import Project


def project_package(project: Project) -> dict[str, set[tuple]]:
    f: dict[str, set[tuple]] = {k: set() for k in (
        "dataflow", "task", "reads", "writes", "edge", "input_dataset", "lease", "resource",
        "under", "tag")}
    produced = project.producer
    for t, obj in project.pkg.get("tasks", {}).items():
        f["task"].add((t, obj["runtime"]))
    lease_paths = set()
    for n, d in project.dataflows.items():
        f["dataflow"].add((n, d["task"]))
        f["writes"].add((n, project.outputs[n]))
        for p in d["inputs"]:
            f["reads"].add((n, p))
            if p in produced:
                f["edge"].add((produced[p], n))
            else:
                f["input_dataset"].add((p,))
        for path, mode in project.leases(n):
            f["lease"].add((n, path, mode))
            lease_paths.add(path)
        for r, amount in (d.get("resources") or {}).items():
            f["resource"].add((n, r, int(amount)))
        for t in d.get("tags") or ():
            f["tag"].add((n, t))
    paths = sorted(lease_paths)
    for a in paths:
        for b in paths:
            if a != b and is_prefix(b, a):
                f["under"].add((a, b))
    return f


def package_facts(repo, project: Project) -> dict[str, set[tuple]]:
    scope = f"pkg:{project.pkg_hash}"
    rows = repo.journal.facts(scope)
    if rows:
        out: dict[str, set[tuple]] = {}
        for rel, args in rows:
            if rel != "_projected":
                out.setdefault(rel, set()).add(tuple(json.loads(args)))
        return out
    facts = project_package(project)
    repo.journal.store_facts(scope, [(rel, json.dumps(list(t)))
                                     for rel, ts in sorted(facts.items()) for t in sorted(ts)]
                             + [("_projected", "[]")])
    return facts


def repository_facts(repo, ws: str | None = None) -> dict[str, set[tuple]]:
    """Every fact relation projected from the repository for workspace `ws` (default:
    current); the rerun policy's facts are `decision_facts`."""
    from ..repo.packages import list_packages, read_package
    from ..repo.workspaces import Workspaces

    facts: dict[str, set[tuple]] = {}

    def add(rel, *t):
        facts.setdefault(rel, set()).add(tuple(t))

    for p in list_packages(repo):
        add("package", p["name"], p["version"])
        obj = read_package(repo, p["hash"])
        for dep, con in sorted((obj.get("dependencies") or {}).items()):
            add("package_dep", p["name"], p["version"], dep, con)
            add("requires", p["name"], dep)
    wss = Workspaces(repo)
    ws = ws or repo.head
    if wss.exists(ws):
        st = wss.state(ws)
        if st.get("package"):
            project = Project.load(repo, st["package"]["hash"])
            for rel, ts in package_facts(repo, project).items():
                facts.setdefault(rel, set()).update(ts)
        for path, e in repo.trees.walk(st["hash"]):
            add("current", path, e["hash"])
    j = repo.journal
    for key, d, th in j.memo_executions():
        add("execution", key, d, th)
    for key, role, path, h in j.provenance_rows():
        add("consumed" if role == "in" else "produced", key, path, h)
    for e, d, s in j.episode_states():
        add("episode", e, d)
        add("state", e, s)
    for e, e2 in j.await_edges():
        add("awaits", e, e2)
    for key, signer, remote in j.origin_rows():
        add("origin", key, signer, remote)
    for name, _, revoked in j.trusted_keys():
        if revoked:
            add("revoked", name)
    for rel in ("dataflow", "task", "reads", "writes", "edge", "input_dataset", "lease",
                "resource", "under", "tag", "package", "package_dep", "requires", "execution",
                "consumed", "produced", "current", "episode", "state", "awaits", "origin",
                "revoked"):
        facts.setdefault(rel, set())
    return facts


#: The rerun policy's facts (rules/dirty.dl's header), observed from the workspace as `e3
#: status` observes them: `decision_facts`, and `RepositoryLogic` on the first query that
#: needs one of them.
DECISION_RELATIONS = ("miss", "forced", "input_changed", "input_missing", "code_changed",
                      "output_lost", "failed_last", "never_run", "revoked_producer")


def decision_facts(api, ws: str | None = None) -> dict[str, set[tuple]]:
    """The facts `go` would decide on for workspace `ws` (default: current) now: every
    dataflow selected, nothing forced, the current workspace's unsaved working-copy edits
    included — what `e3 status` observes (`Repo.stale_reasons`, `Go.decide_now`). Over them
    the rules' `dirty(D)` is what a `go` would execute. `api` is the `Repo` facade."""
    from .decide import decision_facts as policy_facts, explaining_facts, predict
    from .go import Go

    out: dict[str, set[tuple]] = {rel: set() for rel in DECISION_RELATIONS}
    ws = ws or api.current
    if not api.workspaces.exists(ws) or not api.workspaces.package(ws):
        return out
    api.recover()
    root = api.workspaces.root(ws)
    over: dict = {}
    ch = api.changes(ws)  # unsaved edits of the current workspace, as `status` sees them
    if ch:
        over = {p: ch.hashes.get(p) for p in ch.modified + ch.added}
        over.update({p: None for p in ch.deleted})
    go = Go(api, workspace=ws)
    go.snapshot = root
    project, selected = go.prepare(ws)
    pred = predict(api.r, project, root, selected, False, over)
    # as `Go.decide`: the last settled run explains the dataflows without a memo hit
    base = go._base(ws) if len(pred.outputs) < len(selected) else None
    why = explaining_facts(api.r, project, root, pred, base, over)
    got = policy_facts(project, selected, pred, False, why)
    for rel in DECISION_RELATIONS:
        out[rel] = set(got.get(rel, ()))
    return out


def _query_preds(q) -> list[str]:
    """The predicates a query (text, Query or Atom) names; [] when it does not parse (the
    engine then reports it)."""
    from ..core.errors import UsageError
    from ..logic.syntax import Atom, Negation, Query, parse_query

    if isinstance(q, str):
        try:
            q = parse_query(q)
        except UsageError:
            return []
    if isinstance(q, Atom):
        return [q.pred]
    if isinstance(q, Query):
        return [lit.pred if isinstance(lit, Atom) else lit.atom.pred for lit in q.body
                if isinstance(lit, (Atom, Negation))]
    return []


def repository_logic(facts, decide, **kw):
    """`RepositoryLogic(facts, decide, **kw)`: `Logic` keywords (rule_files, engine, trusted,
    limits); `decide()` returns the decision relations."""
    return _logic_class()(facts, decide, **kw)


def __getattr__(name: str):
    # `RepositoryLogic` is built on first use: the logic layer (~70 ms of imports) is loaded
    # only by what evaluates rules, not by `e3 facts`
    if name == "RepositoryLogic":
        return _logic_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@lru_cache(maxsize=1)
def _logic_class():
    from ..logic.queries import Logic, _atom, _paths

    class RepositoryLogic(Logic):
        """`Logic` over the repository's facts, the decision relations (`DECISION_RELATIONS`)
        observed by `decide()` only when an evaluation needs one of them: a query, named
        query or `evaluate(only=…)` whose relations depend on one (`Program.needed`), so
        `dirty(D)`, `clean(D)` and `reason(D, K, A)` answer from the workspace's current
        state while `deps`, `lineage` and the like never pay for a decision. `decided` says
        whether it was observed. `dirty_closure` (`e3 impact`) stays a what-if over the graph
        alone: readers of the changed paths and everything downstream."""

        def __init__(self, facts, decide, **kw):
            super().__init__(facts, **kw)
            self._decide = decide
            self._plain = self._facts  # without the decision relations
            self._plain_prepared = None
            self.decided = False

        def update(self, facts) -> None:
            """Replace the facts; the decision relations are observed again on next need."""
            super().update(facts)
            self._plain, self._plain_prepared, self.decided = self._facts, None, False

        def needs_decision(self, relations) -> bool:
            need = self.program.needed(relations, self.program.ir)
            return not need.isdisjoint(DECISION_RELATIONS)

        def _observe(self, relations) -> None:
            if self.decided or self._decide is None or not self.needs_decision(relations):
                return
            facts = dict(self._plain)
            facts.update(self._decide())
            Logic.update(self, facts)
            self.decided = True

        def query(self, q, extra=None, engine=None):
            self._observe(_query_preds(q))
            return super().query(q, extra, engine)

        def _column(self, q, extra=None):
            self._observe(_query_preds(q))
            return super()._column(q, extra)

        def evaluate(self, only=None, extra=None, engine=None):
            if only is None:
                self._observe(DECISION_RELATIONS)
            else:
                self._observe([only] if isinstance(only, str) else list(only))
            return super().evaluate(only, extra, engine)

        def dirty_closure(self, changed_paths) -> list[str]:
            changed = {(p,) for p in _paths(changed_paths)}
            if not self.decided:
                base = self.prepared
            else:
                if self._plain_prepared is None:
                    self._plain_prepared = self.program.prepare(self._plain, self.engine,
                                                                self.trusted, self.limits)
                base = self._plain_prepared
                base.limits = self.limits
            return base.column(_atom("dirty", "?D"), {"changed": changed})

    return RepositoryLogic
