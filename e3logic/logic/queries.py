"""Named queries over the shipped rules (e3logic/rules/*.dl), as functions of a fact dict and as
methods of `Logic`, which keeps the program and an indexed fact base between calls.

Facts are `{relation: iterable of tuples}` using the relations of `FACT_RELATIONS`. Every
result is sorted.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping

import e3logic
from e3logic.core.errors import UsageError
from e3logic.logic.limits import Limits
from e3logic.logic.program import Prepared, Program, QueryResult, sorted_rows
from e3logic.logic.syntax import Atom, Const, Query, Var

#: The fact relations the repository projects: name → (column names, doc).
#: All values are strings except `resource`'s Amount (int).
FACT_RELATIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "dataflow": (("D", "Task"), "dataflow D runs task Task"),
    "task": (("Task", "Runtime"), "task Task is bound to runtime Runtime"),
    "reads": (("D", "Path"), "dataflow D reads dataset Path"),
    "writes": (("D", "Path"), "dataflow D writes its output dataset Path"),
    "edge": (("Up", "Down"), "dataflow Up writes a path dataflow Down reads"),
    "input_dataset": (("Path",), "dataset Path is written by no dataflow"),
    "lease": (("D", "Path", "Mode"), "dataflow D holds a lease on Path in Mode read or write"),
    "resource": (("D", "Name", "Amount"), "dataflow D demands Amount (int) of resource Name"),
    "under": (("Child", "Parent"), "lease path Parent is a proper ancestor of lease path Child"),
    "package": (("Name", "Version"), "package Name is installed at Version"),
    "package_dep": (("Name", "Version", "DepName", "Constraint"),
                    "package Name@Version depends on DepName within Constraint"),
    "requires": (("Name", "DepName"), "package Name depends on package DepName (any version)"),
    "execution": (("Key", "D", "TaskHash"), "execution Key ran dataflow D's task TaskHash"),
    "consumed": (("Key", "Path", "Hash"), "execution Key read Path with content Hash"),
    "produced": (("Key", "Path", "Hash"), "execution Key wrote Path with content Hash"),
    "current": (("Path", "Hash"), "dataset Path has content Hash in the current workspace"),
    "episode": (("E", "D"), "episode E is an execution attempt of dataflow D"),
    "state": (("E", "State"), "the latest state of episode E: plan, run, yield, await, ok, "
                              "fail or cxl"),
    "awaits": (("E", "E2"), "episode E waits on episode E2"),
    "changed": (("Path",), "what-if for the dirty closure (`e3 impact`): dataset Path gets "
                           "bytes no run has read"),
    "tag": (("D", "Tag"), "dataflow D carries Tag (package.dataflow(..., tags=[...]))"),
    # observed when a run is decided (rules/dirty.dl): the rerun policy's facts
    "forced": (("D",), "a run is told to execute D whatever the memo holds (--force)"),
    "input_changed": (("Path",), "input dataset Path differs from the last settled run's"),
    "input_missing": (("D", "Path"), "dataflow D reads Path and nothing holds or writes it"),
    "code_changed": (("D",), "D's task hash differs from the last settled run's"),
    "output_lost": (("D",), "D's memo entry names an output that is gone or corrupt"),
    "failed_last": (("D",), "D failed in the workspace's last run"),
    "never_run": (("D",), "D was never executed in this repository"),
    "revoked_producer": (("D", "Name"), "D's result in the workspace was pulled from a record "
                                        "signed by key Name, since revoked"),
    # the shared cache (rules/trust.dl): where pulled results came from, whom we stopped trusting
    "origin": (("Key", "Signer", "Remote"), "execution Key's result was pulled from Remote in a "
                                            "record signed by the key trusted as Signer"),
    "revoked": (("Signer",), "the key trusted as Signer was revoked ('e3 trust revoke')"),
}

SHIPPED_FILES = ("graph.dl", "dirty.dl", "provenance.dl", "leases.dl", "episodes.dl",
                 "packages.dl", "trust.dl")


@lru_cache(maxsize=1)
def shipped_program() -> Program:
    """The shipped rules, parsed once per process."""
    return Program.load(*(Path(e3logic.RULES_DIR) / f for f in SHIPPED_FILES))


def load_program(rule_files: Iterable = ()) -> Program:
    """The shipped rules extended with users' `.dl` files."""
    program = shipped_program()
    files = list(rule_files)
    if files:
        program = program.extend(Program.load(*files))
    return program


def _atom(pred: str, *args) -> Query:
    """A one-atom query; an argument "?X" is the variable X, anything else a constant."""
    terms = tuple(Var(a[1:]) if isinstance(a, str) and a.startswith("?") else Const(a)
                  for a in args)
    return Query((Atom(pred, terms),))


class Logic:
    """A loaded program (shipped rules + optional user `.dl` files) and a prepared fact base.

    The fact base is indexed on first use and reused by every query; strata that do not
    depend on a call's extra facts (e.g. `changed` for the dirty closure) are cached.
    Call `update(facts)` when the repository's facts change. Every evaluation stops with
    `LimitError` past `limits` (an attribute; default `Limits()`).
    """

    def __init__(self, facts: Mapping | None = None, rule_files: Iterable = (),
                 engine: str = "auto", program: Program | None = None, trusted: bool = False,
                 limits: Limits | None = None):
        self.program = program if program is not None else load_program(rule_files)
        self.engine = engine
        self.trusted = trusted
        self.limits = limits if limits is not None else Limits()
        self._facts = dict(facts or {})
        self._prepared: Prepared | None = None

    # ------------------------------------------------------------------ base

    def update(self, facts: Mapping) -> None:
        """Replace the facts (the prepared base is rebuilt on next use)."""
        self._facts = dict(facts)
        self._prepared = None

    @property
    def prepared(self) -> Prepared:
        if self._prepared is None:
            self._prepared = self.program.prepare(self._facts, self.engine, self.trusted,
                                                  self.limits)
        self._prepared.limits = self.limits
        return self._prepared

    def _base(self, engine: str | None) -> Prepared:
        if engine is None or engine == self.engine:
            return self.prepared
        return self.program.prepare(self._facts, engine, self.trusted, self.limits)

    def query(self, q, extra: Mapping | None = None, engine: str | None = None) -> QueryResult:
        """Answer a `?-` query (text, Query or Atom)."""
        return self._base(engine).query(q, extra)

    def _column(self, q, extra: Mapping | None = None) -> list:
        return self.prepared.column(q, extra)

    def evaluate(self, only: Iterable[str] | None = None, extra: Mapping | None = None,
                 engine: str | None = None) -> dict[str, set]:
        return self._base(engine).evaluate(extra, only)

    def relations(self) -> list[dict]:
        """Every relation (the fact relations and those of the rules) with its arity, kind
        (fact or derived) and doc, sorted by name."""
        out = {}
        for name, (cols, doc) in FACT_RELATIONS.items():
            out[name] = {"name": name, "arity": len(cols), "kind": "fact",
                         "doc": f"{name}({', '.join(cols)}): {doc}"}
        for r in self.program.relations():
            if r.derived or r.name not in out:
                out[r.name] = {"name": r.name, "arity": r.arity,
                               "kind": "derived" if r.derived else "fact", "doc": r.doc}
        return [out[k] for k in sorted(out)]

    # ------------------------------------------------------------------ graph

    def deps(self, name: str, transitive: bool = False) -> list[str]:
        """Dataflows upstream of `name` (direct, or all with transitive=True)."""
        return self._column(_atom("ancestors" if transitive else "deps", name, "?U"))

    def dependents(self, name: str, transitive: bool = False) -> list[str]:
        """Dataflows downstream of `name` (direct, or all with transitive=True)."""
        return self._column(_atom("reachable" if transitive else "dependents", name, "?X"))

    def reachable(self, name: str) -> list[str]:
        return self.dependents(name, transitive=True)

    def ancestors(self, name: str) -> list[str]:
        return self.deps(name, transitive=True)

    def dirty_closure(self, changed_paths: Iterable[str]) -> list[str]:
        """Dataflows that must rerun when these datasets change (readers of a changed path
        and everything downstream of them)."""
        changed = {(p,) for p in _paths(changed_paths)}
        return self._column(_atom("dirty", "?D"), {"changed": changed})

    # ------------------------------------------------------------------ provenance

    def lineage(self, path: str) -> dict:
        """Executions in the history of the current value of `path` and the dataset versions
        they consumed: {"path", "executions": [key...], "inputs": [[path, hash]...]}."""
        keys = self._column(_atom("lineage", path, "?K"))
        inputs = self.query(_atom("lineage_input", path, "?P", "?H")).rows
        return {"path": path, "executions": keys, "inputs": [list(r) for r in inputs]}

    def why(self, path: str) -> dict:
        """The provenance tree of `path` (for `e3 why`): {"path", "hash", "execution",
        "task", "dataflow", "inputs": [same shape...]}. Through recorded executions when
        the current value was produced by one; otherwise through the dataflows."""
        given = self.prepared.given
        rel = {name: given.get(name, ()) for name in
               ("current", "produced", "consumed", "execution", "writes", "reads", "dataflow")}
        return _why_tree(path, rel)

    # ------------------------------------------------------------------ leases, episodes

    def lease_conflicts(self) -> list[tuple]:
        """Conflicting lease pairs (D1, D2, P1, P2) with D1 < D2."""
        rows = self.query("?- lease_conflict(D1, D2, P1, P2), D1 < D2.").rows
        return rows

    def await_cycles(self) -> list[list[str]]:
        """Await cycles: each a sorted list of the episodes on it; sorted."""
        rows = self.query(_atom("same_cycle", "?E1", "?E2")).rows
        groups: dict[str, set] = {}
        for a, b in rows:
            groups.setdefault(a, set()).add(b)
        cycles = {tuple(sorted(members | {e})) for e, members in groups.items()}
        return [list(c) for c in sorted(cycles)]

    def stuck(self) -> list[str]:
        return self._column(_atom("stuck", "?E"))

    # ------------------------------------------------------------------ packages

    def package_deps(self, name: str, reverse: bool = False) -> list[str]:
        """Packages `name` depends on, transitively (or, reverse=True, those depending on it)."""
        pred = "reverse_dep_t" if reverse else "package_dep_t"
        return self._column(_atom(pred, name, "?D"))


def _paths(paths) -> list[str]:
    if isinstance(paths, str):
        return [paths]
    return list(paths)


def _why_tree(path: str, rel: dict) -> dict:
    """Build the provenance tree iteratively (histories may be deep); shared dataset versions
    share one node; a version seen again on the current branch is not expanded twice."""
    produced: dict[tuple, list] = {}
    for k, p, h in rel["produced"]:
        produced.setdefault((p, h), []).append(k)
    consumed: dict[str, list] = {}
    for k, p, h in rel["consumed"]:
        consumed.setdefault(k, []).append((p, h))
    task_of = {k: (d, t) for k, d, t in rel["execution"]}
    current = dict(rel["current"])
    writer = {p: d for d, p in rel["writes"]}
    reads: dict[str, list] = {}
    for d, p in rel["reads"]:
        reads.setdefault(d, []).append(p)
    task_name = dict(rel["dataflow"])

    nodes: dict[tuple, dict] = {}

    def node(p: str, h, by_execution: bool) -> tuple[dict, list]:
        """A node and the (path, hash, by_execution) children still to expand."""
        n = {"path": p, "hash": h, "execution": None, "task": None, "dataflow": None,
             "inputs": []}
        kids: list = []
        keys = sorted(produced.get((p, h), ())) if by_execution and h is not None else []
        if keys:
            k = keys[0]
            d, t = task_of.get(k, (None, None))
            n.update(execution=k, task=t, dataflow=d)
            kids = [(ip, ih, True) for ip, ih in sorted(consumed.get(k, ()))]
        elif p in writer:
            d = writer[p]
            n.update(dataflow=d, task=task_name.get(d))
            kids = [(ip, current.get(ip), False) for ip in sorted(reads.get(d, ()))]
        return n, kids

    root_hash = current.get(path)
    by_exec = bool(root_hash is not None and produced.get((path, root_hash)))
    root, kids = node(path, root_hash, by_exec)
    nodes[(path, root_hash, by_exec)] = root
    stack = [(root, kids)]
    while stack:
        parent, kids = stack.pop()
        for key in kids:
            child = nodes.get(key)
            if child is None:
                child, grandkids = node(*key)
                nodes[key] = child
                stack.append((child, grandkids))
            parent["inputs"].append(child)
    return root


# ---------------------------------------------------------------------------- functions

def _logic(facts: Mapping, engine: str) -> Logic:
    if not isinstance(facts, Mapping):
        raise UsageError("facts must be a mapping {relation: iterable of tuples}")
    return Logic(facts, engine=engine)


def query(facts: Mapping, q, engine: str = "auto", rule_files: Iterable = ()) -> QueryResult:
    return Logic(facts, rule_files=rule_files, engine=engine).query(q)


def deps(facts: Mapping, name: str, transitive: bool = False, engine: str = "auto") -> list:
    return _logic(facts, engine).deps(name, transitive)


def dependents(facts: Mapping, name: str, transitive: bool = False,
               engine: str = "auto") -> list:
    return _logic(facts, engine).dependents(name, transitive)


def reachable(facts: Mapping, name: str, engine: str = "auto") -> list:
    return _logic(facts, engine).reachable(name)


def ancestors(facts: Mapping, name: str, engine: str = "auto") -> list:
    return _logic(facts, engine).ancestors(name)


def dirty_closure(facts: Mapping, changed_paths: Iterable[str], engine: str = "auto") -> list:
    return _logic(facts, engine).dirty_closure(changed_paths)


def lineage(facts: Mapping, path: str, engine: str = "auto") -> dict:
    return _logic(facts, engine).lineage(path)


def why(facts: Mapping, path: str, engine: str = "auto") -> dict:
    return _logic(facts, engine).why(path)


def lease_conflicts(facts: Mapping, engine: str = "auto") -> list:
    return _logic(facts, engine).lease_conflicts()


def await_cycles(facts: Mapping, engine: str = "auto") -> list:
    return _logic(facts, engine).await_cycles()


def package_deps(facts: Mapping, name: str, reverse: bool = False,
                 engine: str = "auto") -> list:
    return _logic(facts, engine).package_deps(name, reverse)


__all__ = ["FACT_RELATIONS", "Logic", "shipped_program", "load_program", "query", "deps",
           "dependents", "reachable", "ancestors", "dirty_closure", "lineage", "why",
           "lease_conflicts", "await_cycles", "package_deps", "sorted_rows"]
