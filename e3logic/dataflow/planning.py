"""Fill the planner's input from a deployed package: dependencies among the dataflows to run
(in input order), leases (declared, plus an implicit write lease on a `rw` dataflow's own
output), resource demands against `[resources]` capacities in e3.toml, costs (median recorded
duration, else 1) and each dataflow's input identity; then plan on the optimized graph, where
identical executions are planned once.

Identical executions. Two dataflows to run are one execution when they apply the same task
(task hash) to the same input content, the executor's own rule (execution key = H(task hash,
input content hashes in order)). What the planner knows of the inputs:
  - a known execution key (`keys[name]`, e.g. `Prediction.keys`): every input hash is known
    and the key says it all; equal keys are one execution;
  - otherwise, input by input in order: an input produced by a dataflow that also runs is that
    producer's execution (its sharing class, so sharing propagates downstream), any other
    input is its path — one run reads one snapshot, so one path is one content.
So "the same task reading the same paths" is shared without keys, and inputs with equal hashes
at different paths only when the caller passes the keys.
"""
from __future__ import annotations

from typing import Hashable

from ..exec.memo import Memo
from .model import Project


def plan_input(repo, project: Project, names: list[str], cap: int | None):
    from ..plan import Node, PlanInput

    sel = set(names)
    tasks = {n: project.dataflows[n]["task"] for n in names}
    costs = Memo(repo.index).durations(project.task_hashes[t] for t in tasks.values())
    caps = {k: v for k, v in (repo.config.get("resources") or {}).items()}
    producer = project.producer
    nodes = []
    for n in names:
        d = project.dataflows[n]
        th = project.task_hashes[d["task"]]
        nodes.append(Node(
            name=n,
            # input order (the optimizer's input identity uses it); the scheduler takes a set
            deps=tuple(producer[p] for p in d["inputs"] if producer.get(p) in sel),
            leases=project.leases(n),
            # a resource with no capacity in e3.toml is not constrained
            resources={k: v for k, v in (d.get("resources") or {}).items() if k in caps},
            cost=costs.get(th) or 1.0, task_key=th))
    return PlanInput(tuple(nodes), caps, cap)


def input_identities(project: Project, names: list[str],
                     keys: dict[str, str] | None = None) -> dict[str, Hashable]:
    """name -> the identity of its inputs besides those produced by the dataflows in `names`
    (see the module docstring): ("key", execution key) when `keys` knows it, else the input
    paths in order with None where a running dataflow's output goes."""
    sel = set(names)
    producer = project.producer
    keys = keys or {}
    out: dict[str, Hashable] = {}
    for n in names:
        key = keys.get(n)
        if key:
            out[n] = ("key", key)
        else:
            out[n] = ("paths", tuple(None if producer.get(p) in sel else p
                                     for p in project.dataflows[n]["inputs"]))
    return out


def plan_dataflows(repo, project: Project, names: list[str], cap: int | None,
                   keys: dict[str, str] | None = None):
    """The plan of `names` (the dataflows that run), identical executions planned once:
    `Plan.shared` {representative: dataflows taking its result}, each of them in its
    representative's batch right after it. `keys`: known execution keys (`Prediction.keys`),
    which also share equal input content read from different paths."""
    from ..plan import schedule_optimized

    return schedule_optimized(plan_input(repo, project, names, cap),
                              input_identities(project, names, keys))
