"""Optimizer passes: pure functions on the model, each keeping every output identical.

  needed / eliminate_dead   keep only the targets and their ancestors (dead-node removal)
  share_common              common-subexpression sharing: nodes with the same task_key and the
                            same input identity are one execution (duplicate -> representative)
  optimize                  both, in that order
  schedule_optimized        plan a PlanInput on its optimized graph: each shared execution
                            takes one slot; its duplicates ride along in its batch

Sharing follows the memo's own rule (execution key = task + input content): a duplicate's
output equals its representative's. A node's input identity is its dependencies'
representatives in input order plus `inputs[name]`, an opaque identity of the inputs no node
here produces (e.g. their content hashes, or their paths when every node reads one snapshot).
A node with a task_key and no `inputs` entry has the identity None there: the caller must give
one to every node that reads anything besides its deps, or such nodes are shared wrongly.

There is no fusion pass: the python runtime already runs tasks in persistent worker
processes, so running a chain of tasks as one episode would save no process start (measured
in bench/RESULTS.md, `## Optimizer (issue 17)`), and the plan layer never looks at runtimes.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Hashable, Iterable, Mapping, NamedTuple, Optional

from e3logic.core.errors import NotFound

from .model import Node, Plan, PlanInput


def needed(deps: Mapping[str, Iterable[str]], targets: Iterable[str]) -> set[str]:
    """The targets and everything they transitively depend on, over a plain map name ->
    dependency names (names absent from the map are ignored as dependencies). An unknown
    target raises NotFound with a suggestion. The dead-node pass itself: `eliminate_dead`,
    `model.select` and the repository's target selection all call it."""
    seen: set[str] = set()
    stack = []
    for t in sorted(set(targets)):
        if t not in deps:
            raise NotFound("dataflow", t, list(deps))
        seen.add(t)
        stack.append(t)
    while stack:
        for d in deps[stack.pop()]:
            if d not in seen and d in deps:
                seen.add(d)
                stack.append(d)
    return seen


def eliminate_dead(nodes: Iterable[Node], targets: Optional[Iterable[str]]) -> list[Node]:
    """The targets and everything they depend on, sorted by name (None: keep every node)."""
    pi = PlanInput(tuple(nodes))  # validated: unknown deps and cycles are PlanErrors
    if targets is None:
        return list(pi.nodes)
    live = needed({n.name: n.deps for n in pi.nodes}, targets)
    return [n for n in pi.nodes if n.name in live]


def share_common(nodes: Iterable[Node], inputs: Optional[Mapping[str, Hashable]] = None
                 ) -> dict[str, str]:
    """duplicate -> representative (the smallest name of its class), for nodes with the same
    task_key (not None) and the same input identity. Classes are computed in topological
    order, so sharing propagates: consumers of duplicates can be duplicates themselves."""
    return _share(nodes if isinstance(nodes, PlanInput) else PlanInput(tuple(nodes)), inputs)


def _share(pi: PlanInput, inputs: Optional[Mapping[str, Hashable]]) -> dict[str, str]:
    inputs = inputs or {}
    if not any(n.task_key is not None for n in pi.nodes):
        return {}
    klass: dict[str, int] = {}
    intern: dict[tuple, int] = {}
    for name in pi.order:
        n = pi[name]
        key = ("node", name) if n.task_key is None else \
            ("task", n.task_key, tuple(klass[d] for d in n.deps), inputs.get(name))
        klass[name] = intern.setdefault(key, len(intern))
    if len(intern) == len(klass):
        return {}
    rep: dict[int, str] = {}
    for name in sorted(klass):
        rep.setdefault(klass[name], name)
    return {name: rep[k] for name, k in sorted(klass.items()) if rep[k] != name}


def apply_sharing(nodes: Iterable[Node], shared: Mapping[str, str]) -> list[Node]:
    """Drop the duplicates and point their consumers at the representatives."""
    out = []
    for n in sorted(nodes, key=lambda n: n.name):
        if n.name in shared:
            continue
        deps = tuple(shared.get(d, d) for d in n.deps)
        out.append(n if deps == n.deps else replace(n, deps=deps))
    return out


class Optimized(NamedTuple):
    """The result of `optimize`: the nodes to plan and how they relate to the originals.

    nodes   the live representatives, deps pointing at representatives, sorted by name
    dead    original nodes no target needs, sorted
    shared  duplicate -> representative"""

    nodes: tuple[Node, ...]
    dead: tuple[str, ...]
    shared: Mapping[str, str]

    def runs_as(self, name: str) -> Optional[str]:
        """The node of `nodes` whose execution produces original node `name`'s output (None
        if it was eliminated as dead)."""
        if name in self.dead:
            return None
        return self.shared.get(name, name)


def optimize(nodes: Iterable[Node], targets: Optional[Iterable[str]] = None,
             inputs: Optional[Mapping[str, Hashable]] = None) -> Optimized:
    """Dead-node elimination for `targets` (None: all), then sharing."""
    nodes = list(nodes)
    live = eliminate_dead(nodes, targets)
    kept = {n.name for n in live}
    dead = tuple(sorted(n.name for n in nodes if n.name not in kept))
    shared = share_common(live, inputs)
    return Optimized(tuple(apply_sharing(live, shared)), dead, shared)


def schedule_optimized(pi: PlanInput, inputs: Optional[Mapping[str, Hashable]] = None,
                       targets: Optional[Iterable[str]] = None, *,
                       stats: Optional[dict] = None) -> Plan:
    """Plan `pi` on its optimized graph (`optimize(pi.nodes, targets, inputs)`).

    The representatives are scheduled as usual (slots, leases, resources, costs, critical
    path, makespans: all of the optimized graph). Each duplicate is then placed in its
    representative's batch, right after it (and after other duplicates with smaller names):
    it takes no slot, holds no lease and costs nothing, since it takes the representative's
    result. Its own dependencies are duplicates or representatives of the representative's,
    so they sit in earlier batches. `Plan.shared` = {representative: (duplicates...)}; the
    plan covers every live node of `pi` and `checker.verify(plan, pi)` checks it against `pi`.
    Dead nodes (not needed by `targets`) are not planned."""
    from .scheduler import schedule

    live = pi
    if targets is not None:
        keep = needed({n.name: n.deps for n in pi.nodes}, targets)
        live = PlanInput(tuple(n for n in pi.nodes if n.name in keep), pi.capacities, pi.cap)
    shared = _share(live, inputs)
    if not shared:
        return schedule(live, stats=stats)
    plan = schedule(PlanInput(tuple(apply_sharing(live.nodes, shared)), pi.capacities, pi.cap),
                    stats=stats)
    riders: dict[str, list[str]] = {}
    for dup, rep in sorted(shared.items()):
        riders.setdefault(rep, []).append(dup)
    batches = tuple(tuple(x for name in batch for x in (name, *riders.get(name, ())))
                    for batch in plan.batches)
    costs = dict(plan.costs)
    costs.update({dup: 0.0 for dup in shared})
    return replace(plan, batches=batches,
                   priority=tuple(name for batch in batches for name in batch),
                   costs=costs, shared={r: tuple(d) for r, d in sorted(riders.items())})
