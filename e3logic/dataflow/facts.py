"""Facts for the logic layer, projected from the repository (docs/internals.md, "Facts").

Package-shaped facts (dataflows, reads, writes, edges, leases, resources, `under`) are projected
once per package object and kept in index.db's `facts` table under scope `pkg:<hash>`; later
queries load them from there. Execution, provenance and episode facts are read from their own
indexed tables (memo, provenance, episodes, awaits), which every run already keeps current.
"""
from __future__ import annotations

import json

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
    """Every fact relation for workspace `ws` (default: current)."""
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
    for rel in ("dataflow", "task", "reads", "writes", "edge", "input_dataset", "lease",
                "resource", "under", "tag", "package", "package_dep", "requires", "execution",
                "consumed", "produced", "current", "episode", "state", "awaits"):
        facts.setdefault(rel, set())
    return facts

