"""The plan checker: the scheduler's kanren relations applied to any plan (DESIGN.md §7).

`verify(plan, pi)` returns a list of `Violation`s, empty when the plan is valid; `check`
raises a PlanError naming the first one. Constraints named:

  coverage          every dataflow of the input in exactly one batch, no unknown names,
                    no empty batch
  dependencies      every dependency in an earlier batch            (relation dependso)
  cap               at most `cap` dataflows per batch               (relation slot_freeo)
  leases            no two conflicting leases in one batch          (relation leases_freeo)
  resources         per-batch resource sums within capacity         (relation resources_freeo)
  lease-assignment  Plan.leases lists exactly each dataflow's leases in its batch
  priority          Plan.priority is the batches read in order
  sharing           each dataflow of Plan.shared rides in its representative's batch, and
                    both have the same task_key (not None)

A dataflow sharing another's execution (a value of `Plan.shared`) takes no slot, holds no
lease and demands no resource: only its dependencies are checked.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Union

from e3logic.core.paths import lease_conflict

from .model import LeaseGrant, Plan, PlanError, PlanInput
from .relations import (BatchState, Ctx, LeaseIndex, dependso, holds, leases_freeo,
                        resource_violation, resources_freeo, slot_freeo)


class Violation(NamedTuple):
    constraint: str
    batch: Optional[int]
    dataflows: tuple[str, ...]
    message: str


def verify(plan: Union[Plan, Sequence[Sequence[str]]], pi: PlanInput) -> list[Violation]:
    """All violated constraints of `plan` (a Plan, or bare batches) against `pi`, in batch
    order; an empty list means the plan is valid."""
    batches = plan.batches if isinstance(plan, Plan) else tuple(tuple(b) for b in plan)
    rides = plan.runs_as if isinstance(plan, Plan) else {}
    ctx = Ctx(pi)
    out: list[Violation] = []
    first: dict[str, int] = {}
    for k, batch in enumerate(batches):
        if not batch:
            out.append(Violation("coverage", k, (), f"batch {k} is empty"))
        for name in batch:
            if name not in ctx.deps:
                out.append(Violation("coverage", k, (name,),
                                     f"batch {k} holds '{name}', which is not in the input"))
            elif name in first:
                out.append(Violation("coverage", k, (name,),
                                     f"dataflow '{name}' is in batch {first[name]} and again in "
                                     f"batch {k}"))
            else:
                first[name] = k
    for name in pi.names:
        if name not in first:
            out.append(Violation("coverage", None, (name,), f"dataflow '{name}' is in no batch"))
    ctx.placed = first
    nres = len(ctx.capvec)
    for k, batch in enumerate(batches):
        ctx.batch, ctx.index = k, LeaseIndex()
        st, members, over_cap = BatchState.empty(nres), [], False
        for name in batch:
            if first.get(name) != k:
                continue
            if not holds(dependso(name, k, ctx)):
                late = [d for d in ctx.deps[name] if first.get(d, k) >= k]
                out.append(Violation("dependencies", k, (name, *late),
                                     f"dataflow '{name}' in batch {k} depends on "
                                     f"{', '.join(repr(d) for d in late)}, not in an earlier "
                                     f"batch"))
            if name in rides:
                continue  # takes its representative's result: no slot, lease or resource
            if not over_cap and not holds(slot_freeo(st, ctx)):
                over_cap = True
                out.append(Violation("cap", k, tuple(batch),
                                     f"batch {k} holds {len(batch)} dataflows, over the cap "
                                     f"of {pi.cap}"))
            if not holds(leases_freeo(name, st, ctx)):
                for other in members:
                    pairs = [(a, b) for a in ctx.raw_leases[name] for b in ctx.raw_leases[other]
                             if lease_conflict(a, b)]
                    if pairs:
                        (a, b) = pairs[0]
                        out.append(Violation("leases", k, (other, name),
                                             f"batch {k}: '{other}' holds {b[1]} {b[0]} and "
                                             f"'{name}' holds {a[1]} {a[0]}, which conflict"))
            if not holds(resources_freeo(name, st, ctx)):
                r = resource_violation(ctx, name, st)
                out.append(Violation("resources", k, (name,),
                                     f"batch {k}: adding '{name}' takes {r} over its capacity "
                                     f"of {pi.capacities[r]:g}"))
            st = ctx.extend(name, st)
            st = BatchState(st.n, st.used, None, 0)  # its leases go to the index instead
            for lease in ctx.leases[name]:
                ctx.index.add(lease)
            members.append(name)
    if isinstance(plan, Plan):
        want = [LeaseGrant(k, name, path, mode) for k, batch in enumerate(batches)
                for name in batch if name in ctx.raw_leases and name not in rides
                for path, mode in ctx.raw_leases[name]]
        if sorted(plan.leases) != sorted(want):
            missing = sorted(set(want) - set(plan.leases))
            extra = sorted(set(plan.leases) - set(want))
            g = (missing or extra)[0] if (missing or extra) else want[0]
            what = "is missing" if missing else "is extra" if extra else "is duplicated"
            out.append(Violation("lease-assignment", g.batch, (g.dataflow,),
                                 f"lease grant {g.mode} {g.path} to '{g.dataflow}' in batch "
                                 f"{g.batch} {what}"))
        if tuple(plan.priority) != tuple(n for b in batches for n in b):
            out.append(Violation("priority", None, (), "priority is not the batches in order"))
        for dup, rep in sorted(rides.items()):
            if dup not in ctx.deps or rep not in ctx.deps:
                continue  # coverage names it
            if first.get(dup) != first.get(rep):
                out.append(Violation("sharing", first.get(dup), (dup, rep),
                                     f"dataflow '{dup}' shares the execution of '{rep}' but is "
                                     f"not in its batch"))
            elif pi[dup].task_key is None or pi[dup].task_key != pi[rep].task_key:
                out.append(Violation("sharing", first.get(dup), (dup, rep),
                                     f"dataflow '{dup}' shares the execution of '{rep}' but "
                                     f"runs another task"))
    return out


def check(plan: Union[Plan, Sequence[Sequence[str]]], pi: PlanInput) -> None:
    """Raise PlanError naming the first violated constraint, if any."""
    bad = verify(plan, pi)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise PlanError(f"invalid plan: {bad[0].constraint}: {bad[0].message}{more}")


def optimal_barrier_makespan(pi: PlanInput, limit: int = 12) -> float:
    """Brute force (dynamic programming over done-sets): the least barrier makespan of any
    valid batch sequence. Exponential; for checking the greedy on small inputs only."""
    names = list(pi.names)
    if len(names) > limit:
        raise ValueError(f"brute force is for at most {limit} dataflows, got {len(names)}")
    if not names:
        return 0.0
    ctx = Ctx(pi)
    bit = {n: 1 << i for i, n in enumerate(names)}
    need = [sum(bit[d] for d in ctx.deps[n]) for n in names]
    cost = [pi[n].cost for n in names]

    def valid(members: list[int]) -> bool:
        if pi.cap is not None and len(members) > pi.cap:
            return False
        used = [0.0] * len(ctx.capvec)
        for j, i in enumerate(members):
            for r, a in ctx.demand[names[i]]:
                used[r] += a
            for other in members[:j]:
                if any(lease_conflict(a, b) for a in ctx.raw_leases[names[i]]
                       for b in ctx.raw_leases[names[other]]):
                    return False
        return all(u <= c + 1e-9 for u, c in zip(used, ctx.capvec))

    full = (1 << len(names)) - 1
    best = {0: 0.0}
    for mask in range(full + 1):  # every successor mask is numerically larger
        if mask not in best:
            continue
        ready = [i for i in range(len(names)) if not mask >> i & 1 and need[i] & mask == need[i]]
        for sub in range(1, 1 << len(ready)):
            members = [ready[j] for j in range(len(ready)) if sub >> j & 1]
            if not valid(members):
                continue
            nxt = mask | sum(1 << i for i in members)
            val = best[mask] + max(cost[i] for i in members)
            if val < best.get(nxt, float("inf")):
                best[nxt] = val
    return best[full]
