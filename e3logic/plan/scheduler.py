"""The kanren scheduler: capped batches with lease assignment (DESIGN.md §7, issue 4).

Per-batch formulation. The ready set (dataflows whose dependencies all sit in earlier batches)
is kept directly, in two heaps ordered by priority = longest remaining cost path, then name:
constrained dataflows (holding leases or demanding a capacity) and free ones. For each batch
one first-answer kanren search (`run(1, ...)`, the `batcho` relation) walks the ready
candidates in priority order, including each one the constraints admit and skipping the rest;
candidates leave the heaps only as the search reaches them, so a batch's candidate list is
what fills the cap plus what was skipped for conflicts. After `skip_limit(cap)` skips the walk
continues over free candidates only (they always fit), which bounds the list. So a dataflow
is placed in the first batch where its inputs are done and a slot, its leases and its
resources are free (short of that bound), and independent work reaches the n/cap bound.

A batch whose ready candidates are all unconstrained needs no search: each of them fits while
a slot is free, so the search's first answer is the first `cap` of them in priority order, and
the scheduler takes those directly (`DIRECT`; tested equal to the search). A plan without
leases or capacities therefore never loads kanren.
"""
from __future__ import annotations

import heapq
import time
from typing import Iterable, Optional, Sequence

from .cost import (barrier_makespan, bottom_levels, children_map, critical_path, simulate,
                   speedup, total_work)
from .model import LeaseGrant, Plan, PlanError, PlanInput, select
from .relations import BatchState, Candidates, Ctx, LeaseIndex, search_window

DIRECT = True
"""Fill a batch of unconstrained candidates without a search (False: search every batch)."""


def schedule(pi: PlanInput, *, stats: Optional[dict] = None) -> Plan:
    """Plan `pi`. Deterministic: identical inputs (in any node order) give an identical Plan.

    `stats`, if a dict, receives diagnostics that never reach the plan: kanren_seconds (time
    inside kanren searches), searches, candidates (considered by the searches), direct
    (batches filled without a search)."""
    ctx = Ctx(pi)
    kids = children_map(pi)
    bl = bottom_levels(pi, kids)
    batches = _batches(pi, ctx, kids, bl, stats)
    priority = tuple(name for batch in batches for name in batch)
    leases = tuple(LeaseGrant(k, name, path, mode)
                   for k, batch in enumerate(batches) for name in batch
                   for path, mode in ctx.raw_leases[name])
    path, length = critical_path(pi, bl, kids)
    costs = {n.name: n.cost for n in pi.nodes}
    makespan, _ = simulate(pi, priority, ctx=ctx, kids=kids)
    work = total_work(pi)
    return Plan(batches=batches, leases=leases, priority=priority, critical_path=path,
                critical_path_length=length, makespan=makespan,
                barrier_makespan=barrier_makespan(batches, costs), total_work=work,
                speedup=speedup(work, makespan), cap=pi.cap, costs=costs)


def _decide(ctx: Ctx, state: BatchState, stats: Optional[dict]) -> list[str]:
    """Grow one batch from ctx.candidates with chained kanren searches (one per window)."""
    chosen: list[str] = []
    i, j = 0, None
    while True:
        if stats is not None:
            t0 = time.perf_counter()
            state, i, j, reason = search_window(ctx, i, j, state)
            stats["kanren_seconds"] = stats.get("kanren_seconds", 0.0) + time.perf_counter() - t0
            stats["searches"] = stats.get("searches", 0) + 1
        else:
            state, i, j, reason = search_window(ctx, i, j, state)
        members = state.window_members()
        chosen.extend(members)
        if reason != "window":
            break
        for m in members:  # later windows see these through the index
            for lease in ctx.leases[m]:
                ctx.index.add(lease)
        state = BatchState(state.n, state.used, None, state.skips)
    if stats is not None:
        stats["candidates"] = stats.get("candidates", 0) + ctx.candidates.considered()
    return chosen


def _batches(pi: PlanInput, ctx: Ctx, kids: dict, bl: dict, stats: Optional[dict]):
    indeg = {name: len(d) for name, d in ctx.deps.items()}
    heaps: tuple[list, list] = ([], [])  # constrained, free
    for n, k in indeg.items():
        if k == 0:
            heaps[ctx.is_free(n)].append((-bl[n], n))
    for h in heaps:
        heapq.heapify(h)
    nres = len(ctx.capvec)
    batches: list[tuple[str, ...]] = []
    while heaps[0] or heaps[1]:
        k = len(batches)
        if DIRECT and not heaps[0]:  # all unconstrained: the search would take the first cap
            free = heaps[1]
            take = len(free) if pi.cap is None else min(pi.cap, len(free))
            chosen = [heapq.heappop(free)[1] for _ in range(take)]
            if stats is not None:
                stats["direct"] = stats.get("direct", 0) + 1
        else:
            cands = Candidates(*heaps)
            ctx.batch, ctx.index, ctx.candidates = k, LeaseIndex(), cands
            chosen = _decide(ctx, BatchState.empty(nres), stats)
            if not chosen:  # pragma: no cover - PlanInput validation rules this out
                raise PlanError(f"dataflow '{cands.popped[0][1]}' can never be scheduled")
            taken = set(chosen)
            for key, name, free in cands.popped:
                if name not in taken:
                    heapq.heappush(heaps[free], (key, name))
        for m in chosen:
            ctx.placed[m] = k
        for m in chosen:
            for c in kids[m]:
                indeg[c] -= 1
                if indeg[c] == 0:
                    heapq.heappush(heaps[ctx.is_free(c)], (-bl[c], c))
        batches.append(tuple(chosen))
    if len(ctx.placed) != len(pi.nodes):  # pragma: no cover - a cycle is caught earlier
        raise PlanError("some dataflows were never ready (dependency cycle)")
    return tuple(batches)


class Admitter:
    """The planner's batch search for a running executor: which ready dataflows to start now,
    given what is already running (its slots, leases and resources count as taken).

    The executor calls `admit(ready, running)` at each beat with `ready` in plan priority
    order (`Plan.priority`); dependencies are the executor's business (ready = inputs done)."""

    def __init__(self, pi: PlanInput):
        self.pi = pi
        self.ctx = Ctx(pi)
        self.ctx.placed = {name: -1 for name in pi.names}  # every dependency counts as done

    def admit(self, ready: Sequence[str], running: Iterable[str] = ()) -> list[str]:
        ctx = self.ctx
        for name in list(ready) + list(running):
            if name not in ctx.deps:
                self.pi[name]  # raises NotFound naming it
        index, used, n = LeaseIndex(), [0] * len(ctx.capvec), 0
        for name in sorted(set(running)):
            n += 1
            for lease in ctx.leases[name]:
                index.add(lease)
            for i, a in ctx.demand[name]:
                used[i] += a
        seen, cands = set(running), []
        for name in ready:
            if name not in seen:
                seen.add(name)
                cands.append(name)
        ctx.batch, ctx.index = 0, index
        ctx.candidates = Candidates.from_list(cands, ctx.is_free)
        return _decide(ctx, BatchState(n, tuple(used), None, 0), None)


def make_plan(nodes: Iterable, capacities: Optional[dict] = None, cap: Optional[int] = None,
              *, dirty: Optional[Iterable[str]] = None,
              targets: Optional[Iterable[str]] = None) -> Plan:
    """Convenience: select (dirty closure ∩ ancestors of targets), build the input, schedule."""
    chosen = select(nodes, dirty, targets)
    return schedule(PlanInput(tuple(chosen), dict(capacities or {}), cap))
