"""The plan constraints as kanren relations, and the ground checks inside them (DESIGN.md §7).

Each constraint is a goal that succeeds (leaving the substitution unchanged) or fails:

  dependso(name, batch, ctx)       every dependency of `name` sits in a batch before `batch`
  slot_freeo(st, ctx)              the batch holds fewer than `cap` dataflows
  leases_freeo(name, st, ctx)      no lease of `name` conflicts with one held in the batch
  resources_freeo(name, st, ctx)   each resource sum plus the demand stays within capacity

`fitso` conjoins the four; `batcho` relates the ready candidates (`Candidates`, in priority
order) to a batch by include-or-skip, include first, so the first answer of `run(1, ...)` is
the greedy batch. The scheduler solves with `batcho`; `verify` checks any plan with the four
relations, one by one, to name what is violated.

Arguments are ground when a goal runs (or logic variables bound by then). States are ground
Python objects passed along as the search extends them; only the answer is a logic
variable: kanren's `neq` store and cardinality goals are far slower than ground checks.
Per-batch context (placements, leases held by earlier search windows, the candidates) lives
in a `Ctx` that the driver updates between searches, never during one.

kanren is imported on the first search or check (`_kanren`): a plan whose batches the
scheduler fills without a search (every candidate unconstrained) never loads it.
"""
from __future__ import annotations

import heapq
from typing import Optional

from e3logic.core.paths import lease_conflict

from .model import PlanInput

WINDOW = 48
"""Candidates one `run(1, ...)` search may consider; a wider batch chains searches (each
level of the include-or-skip recursion nests a few generator frames)."""

_EPS = 1e-9  # resource sums are floats; a sum within _EPS of the capacity fits


eq = run = var = lconj_seq = ldisj_seq = Var = None  # kanren's, set by _kanren()


def _kanren() -> None:
    """Import kanren (and unification) into this module's globals, once."""
    global eq, run, var, lconj_seq, ldisj_seq, Var
    if run is None:
        from kanren import eq, run, var  # noqa: F811
        from kanren.core import lconj_seq, ldisj_seq  # noqa: F811
        from unification import Var  # noqa: F811


def skip_limit(cap: Optional[int]) -> int:
    """How many ready candidates one batch may skip (for leases or resources) before it only
    considers unconstrained ones, which always fit: keeps each batch's candidate list bounded
    while free work still fills the slots (skipped ones are reconsidered next batch)."""
    return 64 if cap is None else max(16, 2 * cap)


class Candidates:
    """One batch's ready dataflows as two fixed sequences, materialised lazily from two heaps
    of (key, name), smaller key first: `main`, every candidate in key order, and `free`, the
    unconstrained ones (no lease, no demand on a capacity) in the same order. A search that
    leaves `main` at position i continues in `free` at `free_before(i)`. `popped` records
    what was taken from the heaps, so the driver can return what the batch did not take."""

    __slots__ = ("_c", "_f", "main", "free", "_fb", "popped")

    def __init__(self, constrained: list, free: list):
        self._c, self._f = constrained, free  # heaps, consumed as the search reads them
        self.main: list[str] = []
        self.free: list[tuple] = []
        self._fb = [0]  # free items among main[:i]
        self.popped: list[tuple] = []  # (key, name, is_free)

    @classmethod
    def from_list(cls, names, is_free) -> "Candidates":
        """Candidates in the given order."""
        c = [(i, x) for i, x in enumerate(names) if not is_free(x)]
        f = [(i, x) for i, x in enumerate(names) if is_free(x)]
        return cls(c, f)  # sorted lists are heaps

    def _free_item(self, j: int):
        free = self.free
        while len(free) <= j:
            if not self._f:
                return None
            item = heapq.heappop(self._f)
            self.popped.append((*item, True))
            free.append(item)
        return free[j]

    def main_at(self, i: int) -> Optional[str]:
        main = self.main
        while len(main) <= i:
            fm = self._fb[-1]
            nf = self._free_item(fm)
            c = self._c[0] if self._c else None
            if c is None and nf is None:
                return None
            if c is not None and (nf is None or c < nf):
                heapq.heappop(self._c)
                self.popped.append((*c, False))
                main.append(c[1])
                self._fb.append(fm)
            else:
                main.append(nf[1])
                self._fb.append(fm + 1)
        return main[i]

    def free_at(self, j: int) -> Optional[str]:
        item = self._free_item(j)
        return None if item is None else item[1]

    def free_before(self, i: int) -> int:
        self.main_at(i - 1)
        return self._fb[i]

    def considered(self) -> int:
        """How many candidates were taken from the heaps (read, or peeked at to merge)."""
        return len(self.popped)


def prefixes(path: str) -> tuple[str, ...]:
    """'a/b/c' -> ('a', 'a/b', 'a/b/c'): the path and its ancestors."""
    parts = path.split("/")
    return tuple("/".join(parts[:i]) for i in range(1, len(parts) + 1))


class LeaseIndex:
    """A multiset of held leases answering conflict queries in O(path depth).

    A write conflicts with any lease on the same path, an ancestor or a descendant; reads
    never conflict with reads (the glossary semantics of `core.paths.lease_conflict`)."""

    __slots__ = ("reads", "writes", "reads_below", "writes_below")

    def __init__(self):
        # path -> count held exactly there; ancestor -> count held strictly below it
        self.reads: dict[str, int] = {}
        self.writes: dict[str, int] = {}
        self.reads_below: dict[str, int] = {}
        self.writes_below: dict[str, int] = {}

    def add(self, lease) -> None:
        path, mode, pre = lease
        exact, below = (self.writes, self.writes_below) if mode == "write" else \
            (self.reads, self.reads_below)
        exact[path] = exact.get(path, 0) + 1
        for a in pre[:-1]:
            below[a] = below.get(a, 0) + 1

    def remove(self, lease) -> None:
        path, mode, pre = lease
        exact, below = (self.writes, self.writes_below) if mode == "write" else \
            (self.reads, self.reads_below)
        for d, key in ((exact, path), *((below, a) for a in pre[:-1])):
            k = d[key] - 1
            if k:
                d[key] = k
            else:
                del d[key]

    def conflicts(self, lease) -> bool:
        path, mode, pre = lease
        writes = self.writes
        for a in pre:  # a held write on the path or an ancestor
            if a in writes:
                return True
        if path in self.writes_below:  # a held write below the path
            return True
        if mode == "write":
            reads = self.reads
            for a in pre:
                if a in reads:
                    return True
            if path in self.reads_below:
                return True
        return False


class BatchState:
    """Immutable state of a batch under construction: member count, resource sums, the
    members added in the current search window (a linked list, newest first), skips."""

    __slots__ = ("n", "used", "members", "skips")

    def __init__(self, n: int, used: tuple, members, skips: int):
        self.n, self.used, self.members, self.skips = n, used, members, skips

    @classmethod
    def empty(cls, nres: int) -> "BatchState":
        return cls(0, (0,) * nres, None, 0)

    def window_members(self) -> list[str]:
        out, link = [], self.members
        while link is not None:
            out.append(link[0])
            link = link[1]
        out.reverse()
        return out

    def __repr__(self):  # pragma: no cover - debugging aid
        return f"BatchState(n={self.n}, used={self.used}, members={self.window_members()})"


class Ctx:
    """Ground context shared by the relations: per-node data precomputed from a PlanInput,
    plus what the driver updates between searches (placements, the batch index, leases held
    by earlier windows of the batch, the candidate source)."""

    def __init__(self, pi: PlanInput):
        self.cap = pi.cap
        self.resource_names = tuple(sorted(pi.capacities))
        self.capvec = tuple(pi.capacities[r] for r in self.resource_names)
        rindex = {r: i for i, r in enumerate(self.resource_names)}
        self.deps: dict[str, tuple[str, ...]] = {}
        self.leases: dict[str, tuple] = {}
        self.raw_leases: dict[str, tuple] = {}
        self.demand: dict[str, tuple] = {}
        pre_cache: dict[str, tuple] = {}
        for n in pi.nodes:
            self.deps[n.name] = tuple(sorted(set(n.deps)))
            info = []
            for path, mode in n.leases:
                pre = pre_cache.get(path)
                if pre is None:
                    pre = pre_cache[path] = prefixes(path)
                info.append((path, mode, pre))
            self.leases[n.name] = tuple(info)
            self.raw_leases[n.name] = n.leases
            self.demand[n.name] = tuple((rindex[r], a) for r, a in n.resources.items()
                                        if r in rindex and a)
        self.placed: dict[str, int] = {}
        self.batch = 0
        self.index = LeaseIndex()
        self.candidates = Candidates([], [])
        self.skip_limit = skip_limit(self.cap)

    def is_free(self, name: str) -> bool:
        """Unconstrained: no lease, no demand on a capacity (fits any batch with a slot)."""
        return not self.leases[name] and not self.demand[name]

    # -- ground checks (the bodies of the relations) ---------------------------------------
    def deps_done(self, name: str, batch: int) -> bool:
        placed = self.placed
        for d in self.deps[name]:
            b = placed.get(d)
            if b is None or b >= batch:
                return False
        return True

    def slot_free(self, st: BatchState) -> bool:
        return self.cap is None or st.n < self.cap

    def leases_free(self, name: str, st: BatchState) -> bool:
        mine = self.leases[name]
        if not mine:
            return True
        index = self.index
        for lease in mine:
            if index.conflicts(lease):
                return False
        link = st.members
        while link is not None:
            other = self.raw_leases[link[0]]
            if other:
                for a in self.raw_leases[name]:
                    for b in other:
                        if lease_conflict(a, b):
                            return False
            link = link[1]
        return True

    def resources_free(self, name: str, st: BatchState) -> bool:
        used, capvec = st.used, self.capvec
        for i, amount in self.demand[name]:
            if used[i] + amount > capvec[i] + _EPS:
                return False
        return True

    def extend(self, name: str, st: BatchState) -> BatchState:
        used = st.used
        if self.demand[name]:
            used = list(used)
            for i, amount in self.demand[name]:
                used[i] += amount
            used = tuple(used)
        return BatchState(st.n + 1, used, (name, st.members), st.skips)

    def stop(self, i: int, j: Optional[int], depth: int, st: BatchState) -> Optional[str]:
        """Why the include-or-skip recursion ends at main position i (free position j when
        not None) after `depth` levels of this search, if it does."""
        if not self.slot_free(st):
            return "full"
        if depth >= WINDOW:
            return "window"
        c = self.candidates
        if (c.main_at(i) if j is None else c.free_at(j)) is None:
            return "exhausted"
        return None


# -- the relations ---------------------------------------------------------------------------

def _walk(x, S):
    """The value of x in substitution S (x itself when ground): a cheap `walk`."""
    while type(x) is Var:
        y = S.get(x, x)
        if y is x:
            break
        x = y
    return x


def dependso(name, batch, ctx: Ctx):
    """Every dependency of `name` is placed in a batch before `batch`."""
    def goal(S):
        if ctx.deps_done(_walk(name, S), _walk(batch, S)):
            yield S
    return goal


def slot_freeo(st, ctx: Ctx):
    """The batch has a free slot under the cap."""
    def goal(S):
        if ctx.slot_free(_walk(st, S)):
            yield S
    return goal


def leases_freeo(name, st, ctx: Ctx):
    """No lease of `name` conflicts with a lease already held in the batch."""
    def goal(S):
        if ctx.leases_free(_walk(name, S), _walk(st, S)):
            yield S
    return goal


def resources_freeo(name, st, ctx: Ctx):
    """Adding `name`'s demands keeps every resource within its capacity."""
    def goal(S):
        if ctx.resources_free(_walk(name, S), _walk(st, S)):
            yield S
    return goal


def fit_goals(name, st, ctx: Ctx) -> tuple:
    """The four constraints on adding `name` to the batch in state st."""
    return (dependso(name, ctx.batch, ctx), slot_freeo(st, ctx), leases_freeo(name, st, ctx),
            resources_freeo(name, st, ctx))


def fitso(name, st, ctx: Ctx):
    """`name` may join the batch in state st: all four constraints hold."""
    _kanren()
    return lconj_seq(fit_goals(name, st, ctx))


def batcho(q, i: int, j: Optional[int], depth: int, st: BatchState, ctx: Ctx,
           add: Optional[str] = None):
    """q = (final state, main position, free position, stop reason) of a batch grown from
    the candidates at main position i on (at free position j on, once j is not None) by
    including each one that fits or skipping it, include first. After `skip_limit` skips
    the walk moves from `main` to `free`. `add` is a candidate just included: the state is
    extended when the goal runs, not when it is built."""
    def goal(S):
        s = st if add is None else ctx.extend(add, st)
        reason = ctx.stop(i, j, depth, s)
        if reason is not None:
            return eq(q, (s, i, j, reason))(S)
        cands = ctx.candidates
        skipped = BatchState(s.n, s.used, s.members, s.skips + 1)
        if j is None:
            c, (ii, ij) = cands.main[i], (i + 1, None)
            si, sj = i + 1, (cands.free_before(i + 1) if skipped.skips >= ctx.skip_limit
                             else None)
        else:
            c, (ii, ij) = cands.free[j][1], (i, j + 1)
            si, sj = ii, ij
        return ldisj_seq((
            lconj_seq((*fit_goals(c, s, ctx), batcho(q, ii, ij, depth + 1, s, ctx, c))),
            batcho(q, si, sj, depth + 1, skipped, ctx),
        ))(S)
    return goal


def search_window(ctx: Ctx, i: int, j: Optional[int], st: BatchState):
    """One first-answer kanren search: (final state, main position, free position, reason)."""
    _kanren()
    q = var()
    (answer,) = run(1, q, batcho(q, i, j, 0, st, ctx))
    return answer


def holds(goal) -> bool:
    """True when a ground goal succeeds (one answer suffices)."""
    _kanren()
    return bool(run(1, True, goal))


def resource_violation(ctx: Ctx, name: str, st: BatchState) -> Optional[str]:
    """The first resource whose capacity `name` would exceed in state st (for messages)."""
    for i, amount in ctx.demand[name]:
        if st.used[i] + amount > ctx.capvec[i] + _EPS:
            return ctx.resource_names[i]
    return None
