"""Cost model: priorities, critical path, makespan, total work, speedup.

Two makespans, both under the input's cost estimates:
  makespan          list scheduling, i.e. what the executor does: a dataflow starts as soon
                    as its inputs are done and a slot, its leases and its resources are free,
                    ready dataflows taken in plan priority order. With unlimited cap and no
                    conflicts it equals the critical path length for any costs; with cap 1 it
                    equals the total work; it is never below the critical path.
  barrier_makespan  each batch waits for the previous one: the sum of each batch's largest
                    cost. Equals the critical path (unlimited cap, no conflicts) only when
                    the costs are uniform: with a(1)->b(10) and c(10)->d(1) the critical path is
                    11 but every barrier schedule takes at least 12.
"""
from __future__ import annotations

import heapq
import math
from typing import Iterable, Mapping, Sequence

from .model import PlanError, PlanInput
from .relations import Ctx, LeaseIndex, skip_limit


def children_map(pi: PlanInput) -> dict[str, tuple[str, ...]]:
    """name -> dependents, each tuple sorted by name."""
    kids: dict[str, list[str]] = {n.name: [] for n in pi.nodes}
    for n in pi.nodes:  # nodes are sorted by name, so each list is too
        for d in sorted(set(n.deps)):
            kids[d].append(n.name)
    return {k: tuple(v) for k, v in kids.items()}


def bottom_levels(pi: PlanInput, kids: Mapping[str, Sequence[str]] | None = None
                  ) -> dict[str, float]:
    """Longest remaining cost path from each node to a sink, its own cost included: the
    scheduling priority (higher first, ties by name)."""
    kids = children_map(pi) if kids is None else kids
    cost = {n.name: n.cost for n in pi.nodes}
    bl: dict[str, float] = {}
    for name in reversed(pi.order):
        bl[name] = cost[name] + max((bl[c] for c in kids[name]), default=0.0)
    return bl


def earliest_finish(pi: PlanInput) -> dict[str, float]:
    """Finish time of each node with unlimited workers: start at the last input's finish.
    Same float operations as `simulate`, so the identities hold exactly."""
    ef: dict[str, float] = {}
    nodes = {n.name: n for n in pi.nodes}
    for name in pi.order:
        node = nodes[name]
        start = max((ef[d] for d in node.deps), default=0.0)
        ef[name] = start + node.cost
    return ef


def critical_path(pi: PlanInput, bl: Mapping[str, float] | None = None,
                  kids: Mapping[str, Sequence[str]] | None = None
                  ) -> tuple[tuple[str, ...], float]:
    """(path, length): the longest cost path from a source to a sink, following the highest
    priority at each step (ties by name), and its cost."""
    if not pi.nodes:
        return (), 0.0
    kids = children_map(pi) if kids is None else kids
    bl = bottom_levels(pi, kids) if bl is None else bl
    sources = [n.name for n in pi.nodes if not n.deps]
    node = min(sources, key=lambda x: (-bl[x], x))
    path = [node]
    while kids[node]:
        node = min(kids[node], key=lambda x: (-bl[x], x))
        path.append(node)
    return tuple(path), max(earliest_finish(pi).values())


def total_work(pi: PlanInput) -> float:
    return math.fsum(n.cost for n in pi.nodes)


def barrier_makespan(batches: Iterable[Sequence[str]], costs: Mapping[str, float]) -> float:
    return math.fsum(max((costs[n] for n in b), default=0.0) for b in batches)


def speedup(work: float, makespan: float) -> float:
    return work / makespan if makespan > 0 else 1.0


def simulate(pi: PlanInput, order: Sequence[str], *, ctx: Ctx | None = None,
             kids: Mapping[str, Sequence[str]] | None = None) -> tuple[float, dict[str, float]]:
    """List scheduling under the costs: (makespan, start time of each dataflow).

    Event driven: whenever dataflows finish, ready ones are considered in `order` and start
    while a slot is free, their leases do not conflict with running ones and resources fit
    (after `skip_limit(cap)` are passed over, only unconstrained ones, as in the planner)."""
    ctx = Ctx(pi) if ctx is None else ctx
    rank = {name: i for i, name in enumerate(order)}
    if len(rank) != len(pi.nodes) or set(rank) != set(pi.names):
        raise PlanError("simulate needs an order listing every dataflow exactly once")
    kids = children_map(pi) if kids is None else kids
    cost = {n.name: n.cost for n in pi.nodes}
    indeg = {name: len(d) for name, d in ctx.deps.items()}
    ready: tuple[list, list] = ([], [])  # constrained, free: as in the planner
    for n, k in indeg.items():
        if k == 0:
            ready[ctx.is_free(n)].append((rank[n], n))
    for h in ready:
        heapq.heapify(h)
    running: list[tuple[float, int, str]] = []
    index, used = LeaseIndex(), [0] * len(ctx.capvec)
    cap, capvec, limit = pi.cap, ctx.capvec, skip_limit(pi.cap)
    t, starts = 0.0, {}
    while ready[0] or ready[1] or running:
        skipped = []
        while cap is None or len(running) < cap:
            c, f = ready
            if f and (len(skipped) >= limit or not c or f[0] < c[0]):
                item = heapq.heappop(f)  # free: always fits
            elif c and len(skipped) < limit:
                item = heapq.heappop(c)
                leases, demand = ctx.leases[item[1]], ctx.demand[item[1]]
                if any(index.conflicts(x) for x in leases) or \
                        any(used[i] + a > capvec[i] + 1e-9 for i, a in demand):
                    skipped.append(item)
                    continue
                for x in leases:
                    index.add(x)
                for i, a in demand:
                    used[i] += a
            else:
                break
            name = item[1]
            starts[name] = t
            heapq.heappush(running, (t + cost[name], rank[name], name))
        for item in skipped:
            heapq.heappush(ready[0], item)
        if not running:  # pragma: no cover - PlanInput validation rules this out
            raise PlanError(f"dataflow '{ready[0][0][1]}' can never start")
        t = running[0][0]
        while running and running[0][0] == t:
            _, _, name = heapq.heappop(running)
            for x in ctx.leases[name]:
                index.remove(x)
            for i, a in ctx.demand[name]:
                used[i] -= a
            for kid in kids[name]:
                indeg[kid] -= 1
                if indeg[kid] == 0:
                    heapq.heappush(ready[ctx.is_free(kid)], (rank[kid], kid))
    return t, starts
