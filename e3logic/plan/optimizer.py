"""Optimizer passes: pure functions on the model, each keeping every output identical.

  eliminate_dead   keep only the targets and their ancestors
  share_common     common-subexpression sharing: nodes with the same task_key and the same
                   input identity execute once (duplicate -> representative)
  fuse_inline      chains of `runtime == "inline"` nodes joined by single-consumer /
                   single-producer links run as one episode (groups, head to tail)
  optimize         the three in that order

Sharing follows the memo's own rule (execution key = task + input content): a duplicate's
output equals its representative's. A node's input identity is its dependencies'
representatives in input order plus `inputs[name]`, an opaque identity of the inputs no node
here produces (e.g. a digest of their content hashes and positions).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Hashable, Iterable, Mapping, Optional

from e3logic.core.paths import lease_conflict

from .model import Node, PlanInput, select


def _graph(nodes: Iterable[Node]) -> tuple[dict[str, Node], tuple[str, ...], dict[str, list]]:
    """Validated (PlanError on unknown deps or cycles): by-name map, topological order,
    consumers of each node (sorted, distinct)."""
    pi = PlanInput(tuple(nodes))
    by_name = {n.name: n for n in pi.nodes}
    kids: dict[str, list[str]] = {n.name: [] for n in pi.nodes}
    for n in pi.nodes:
        for d in sorted(set(n.deps)):
            kids[d].append(n.name)
    return by_name, pi.order, kids


def eliminate_dead(nodes: Iterable[Node], targets: Optional[Iterable[str]]) -> list[Node]:
    """The targets and everything they depend on, sorted by name (None: keep every node)."""
    nodes = list(nodes)
    _graph(nodes)
    if targets is None:
        return sorted(nodes, key=lambda n: n.name)
    targets = list(targets)
    if not targets:
        return []
    return select(nodes, None, targets)


def share_common(nodes: Iterable[Node], inputs: Optional[Mapping[str, Hashable]] = None
                 ) -> dict[str, str]:
    """duplicate -> representative (the smallest name of its class), for nodes with the same
    task_key (not None) and the same input identity. Classes are computed in topological
    order, so sharing propagates: consumers of duplicates can be duplicates themselves."""
    by_name, order, _ = _graph(nodes)
    inputs = inputs or {}
    klass: dict[str, int] = {}
    intern: dict[tuple, int] = {}
    for name in order:
        n = by_name[name]
        key = ("node", name) if n.task_key is None else \
            ("task", n.task_key, tuple(klass[d] for d in n.deps), inputs.get(name))
        klass[name] = intern.setdefault(key, len(intern))
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


def fuse_inline(nodes: Iterable[Node]) -> list[tuple[str, ...]]:
    """Maximal chains (head to tail, length >= 2) of inline nodes where each link u -> v has v
    as u's only consumer and u as v's only dependency. A link whose leases would conflict
    with the chain's is not fused (the episode could never hold them together)."""
    by_name, order, kids = _graph(nodes)
    chain_of: dict[str, list[str]] = {}
    leases_of: dict[int, set] = {}
    chains: list[list[str]] = []
    for name in order:
        n = by_name[name]
        deps = set(n.deps)
        joined = False
        if n.runtime == "inline" and len(deps) == 1:
            (u,) = deps
            if by_name[u].runtime == "inline" and kids[u] == [name]:
                chain = chain_of[u]
                held = leases_of[id(chain)]
                new = set(n.leases) - held
                if not any(lease_conflict(a, b) for a in new for b in held) and \
                        not any(lease_conflict(a, b) for a in new for b in new if a < b):
                    chain.append(name)
                    held |= new
                    chain_of[name] = chain
                    joined = True
        if not joined:
            chain = [name]
            chains.append(chain)
            chain_of[name] = chain
            leases_of[id(chain)] = set(n.leases)
    return sorted(tuple(c) for c in chains if len(c) > 1)


def apply_fusion(nodes: Iterable[Node], groups: Iterable[tuple[str, ...]]) -> list[Node]:
    """Replace each group by one inline node named after its tail (whose consumers thus keep
    their deps): the head's deps, the union of leases, per-resource maximum demand (members
    run one after another), summed cost, no task_key."""
    by_name = {n.name: n for n in nodes}
    absorbed = set()
    fused = []
    for group in groups:
        members = [by_name[m] for m in group]
        resources: dict[str, float] = {}
        for m in members:
            for r, a in m.resources.items():
                resources[r] = max(resources.get(r, 0), a)
        fused.append(Node(group[-1], members[0].deps,
                          tuple(sorted({x for m in members for x in m.leases})), resources,
                          math.fsum(m.cost for m in members), None, "inline"))
        absorbed.update(group)
    return sorted([n for n in by_name.values() if n.name not in absorbed] + fused,
                  key=lambda n: n.name)


@dataclass(frozen=True)
class Optimized:
    """The result of `optimize`: the nodes to plan and how they relate to the originals."""

    nodes: tuple[Node, ...]
    dead: tuple[str, ...]
    shared: Mapping[str, str] = field(hash=False)
    fused: tuple[tuple[str, ...], ...] = ()
    episodes: Mapping[str, tuple[Node, ...]] = field(default_factory=dict, hash=False)
    """fused node name (a group's tail) -> its members, in run order, deps already pointing
    at representatives: what the one episode executes"""

    def runs_as(self, name: str) -> Optional[str]:
        """The node of `nodes` whose episode produces original node `name`'s output (None if
        it was eliminated as dead)."""
        if name in self.dead:
            return None
        name = self.shared.get(name, name)
        for group in self.fused:
            if name in group:
                return group[-1]
        return name


def optimize(nodes: Iterable[Node], targets: Optional[Iterable[str]] = None,
             inputs: Optional[Mapping[str, Hashable]] = None) -> Optimized:
    """Dead-node elimination for `targets` (None: all), then sharing, then inline fusion."""
    nodes = list(nodes)
    live = eliminate_dead(nodes, targets)
    kept = {n.name for n in live}
    dead = tuple(sorted(n.name for n in nodes if n.name not in kept))
    shared = share_common(live, inputs)
    merged = apply_sharing(live, shared)
    groups = fuse_inline(merged)
    by_name = {n.name: n for n in merged}
    episodes = {g[-1]: tuple(by_name[m] for m in g) for g in groups}
    return Optimized(tuple(apply_fusion(merged, groups)), dead, shared, tuple(groups), episodes)
