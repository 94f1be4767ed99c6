"""Fill the planner's input from a deployed package: dependencies among the dataflows to run,
leases (declared, plus an implicit write lease on a `rw` dataflow's own output), resource demands
against `[resources]` capacities in e3.toml, and costs (median recorded duration, else 1)."""
from __future__ import annotations

from ..exec.memo import Memo
from .model import Project


def plan_input(repo, project: Project, names: list[str], cap: int | None):
    from ..plan import Node, PlanInput

    sel = set(names)
    tasks = {n: project.dataflows[n]["task"] for n in names}
    costs = Memo(repo.index).durations(project.task_hashes[t] for t in tasks.values())
    caps = {k: v for k, v in (repo.config.get("resources") or {}).items()}
    nodes = []
    for n in names:
        d = project.dataflows[n]
        th = project.task_hashes[d["task"]]
        nodes.append(Node(
            name=n, deps=tuple(x for x in project.deps[n] if x in sel),
            leases=project.leases(n),
            # a resource with no capacity in e3.toml is not constrained
            resources={k: v for k, v in (d.get("resources") or {}).items() if k in caps},
            cost=costs.get(th) or 1.0, task_key=th,
            runtime=project.pkg["tasks"][d["task"]]["runtime"]))
    return PlanInput(tuple(nodes), caps, cap)


def plan_dataflows(repo, project: Project, names: list[str], cap: int | None):
    from ..plan import schedule

    return schedule(plan_input(repo, project, names, cap))
