"""The planner's plain input and output model (DESIGN.md §7).

`Node` is one dataflow to run; `PlanInput` is what the repository integration fills in (what
runs, deps, leases, resource demands, costs, capacities, cap). A `PlanInput` is validated and
normalised when built, so every plan error surfaces before scheduling. `Plan` is the frozen,
deterministic result.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Mapping, NamedTuple, Optional

from e3logic.core.errors import NotFound, UsageError, did_you_mean
from e3logic.core.paths import LEASE_MODES, check_path, lease_conflict

Lease = tuple[str, str]
"""A lease request: (path, mode), mode in LEASE_MODES ("read" / "write")."""


class PlanError(UsageError):
    """A plan that cannot exist: bad input, unsatisfiable demand, self-conflict, cycle."""


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise PlanError(f"{what} must be a finite number >= 0, got {value!r}")
    return value


@dataclass(frozen=True)
class Node:
    """One dataflow to plan.

    deps      names of the dataflows whose outputs it reads, in input order (the scheduler
              treats them as a set; the optimizer uses the order as input identity)
    leases    (path, mode) requests, normalised to sorted unique tuples
    resources demands against `PlanInput.capacities`, e.g. {"gpu": 1}
    cost      estimated duration (median recorded duration, else 1)
    task_key  task identity for common-subexpression sharing (None: never shared); see
              `optimizer.share_common`
    """

    name: str
    deps: tuple[str, ...] = ()
    leases: tuple[Lease, ...] = ()
    resources: Mapping[str, float] = field(default_factory=dict, hash=False)
    cost: float = 1.0
    task_key: Optional[str] = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise PlanError(f"a dataflow name must be a non-empty string, got {self.name!r}")
        where = f"dataflow '{self.name}'"
        if isinstance(self.deps, str):
            raise PlanError(f"{where}: deps must be a sequence of names, not a string")
        deps = tuple(self.deps)
        for d in deps:
            if not isinstance(d, str) or not d:
                raise PlanError(f"{where}: dependency names must be non-empty strings, got {d!r}")
        leases = set()
        for lease in self.leases:
            if isinstance(lease, str) or not isinstance(lease, (tuple, list)) or len(lease) != 2:
                raise PlanError(f"{where}: a lease is a (path, mode) pair, got {lease!r}")
            path, mode = lease
            if not isinstance(path, str):
                raise PlanError(f"{where}: a lease path is a string, got {path!r}")
            if mode not in LEASE_MODES:
                raise PlanError(f"{where}: lease mode must be one of {', '.join(LEASE_MODES)}, "
                                f"got {mode!r}")
            try:
                path = check_path(path, "lease path")
            except UsageError as e:
                raise PlanError(f"{where}: {e}") from None
            leases.add((path, mode))
        resources = {}
        for key in sorted(self.resources):
            if not isinstance(key, str) or not key:
                raise PlanError(f"{where}: resource names must be non-empty strings")
            resources[key] = _number(self.resources[key], f"{where}: demand {key}")
        object.__setattr__(self, "deps", deps)
        object.__setattr__(self, "leases", tuple(sorted(leases)))
        object.__setattr__(self, "resources", resources)
        object.__setattr__(self, "cost", float(_number(self.cost, f"{where}: cost")))


@dataclass(frozen=True)
class PlanInput:
    """What to plan. Nodes are stored sorted by name, so input order never matters.

    capacities: resource name -> capacity; a demand on a resource without a capacity is not
    constrained. cap: at most this many dataflows per batch (None = unlimited).
    Raises PlanError on duplicate names, unknown dependencies, a cycle, a demand above a
    capacity, or a dataflow whose own leases conflict.
    """

    nodes: tuple[Node, ...]
    capacities: Mapping[str, float] = field(default_factory=dict, hash=False)
    cap: Optional[int] = None

    def __post_init__(self):
        for n in self.nodes:
            if not isinstance(n, Node):
                raise PlanError(f"plan input nodes must be Node objects, got {type(n).__name__}")
        nodes = tuple(sorted(self.nodes, key=lambda n: n.name))
        for a, b in zip(nodes, nodes[1:]):
            if a.name == b.name:
                raise PlanError(f"dataflow '{a.name}' is listed twice")
        caps = {k: _number(self.capacities[k], f"capacity {k}") for k in sorted(self.capacities)}
        if self.cap is not None and (isinstance(self.cap, bool) or not isinstance(self.cap, int)
                                     or self.cap < 1):
            raise PlanError(f"cap must be a positive integer or None (unlimited), got {self.cap!r}")
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "capacities", caps)
        names = {n.name for n in nodes}
        for n in nodes:
            for d in n.deps:
                if d not in names:
                    hint = did_you_mean(d, names)
                    extra = f"; did you mean {' or '.join(map(repr, hint))}?" if hint else ""
                    raise PlanError(f"dataflow '{n.name}' depends on unknown dataflow '{d}'{extra}")
            for r, amount in n.resources.items():
                if r in caps and amount > caps[r]:
                    raise PlanError(f"dataflow '{n.name}' needs {r}={amount:g} but the capacity "
                                    f"is {caps[r]:g}; raise [resources] {r} or lower the demand")
            for i, a in enumerate(n.leases):
                for b in n.leases[i + 1:]:
                    if lease_conflict(a, b):
                        raise PlanError(f"dataflow '{n.name}' holds conflicting leases "
                                        f"{a[1]} {a[0]} and {b[1]} {b[0]}; it could never run")
        order = topological_order(nodes)
        object.__setattr__(self, "_order", order)

    def __getitem__(self, name: str) -> Node:
        try:
            return self._by_name[name]
        except AttributeError:
            object.__setattr__(self, "_by_name", {n.name: n for n in self.nodes})
            return self[name]
        except KeyError:
            raise NotFound("dataflow", name, [n.name for n in self.nodes]) from None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    @property
    def order(self) -> tuple[str, ...]:
        """A deterministic topological order (Kahn's algorithm seeded in name order)."""
        return self._order


def topological_order(nodes: Iterable[Node]) -> tuple[str, ...]:
    """Kahn's algorithm over name-sorted nodes (deterministic); a cycle is a PlanError naming
    it."""
    nodes = sorted(nodes, key=lambda n: n.name)
    indeg = {n.name: 0 for n in nodes}
    children: dict[str, list[str]] = {n.name: [] for n in nodes}
    for n in nodes:
        for d in sorted(set(n.deps)):
            if d in indeg:
                indeg[n.name] += 1
                children[d].append(n.name)
    queue = deque(name for name, k in indeg.items() if k == 0)
    order = []
    while queue:
        name = queue.popleft()
        order.append(name)
        for c in children[name]:
            indeg[c] -= 1
            if indeg[c] == 0:
                queue.append(c)
    if len(order) < len(indeg):
        raise PlanError(f"dependency cycle: {' -> '.join(_find_cycle(nodes, set(order)))}")
    return tuple(order)


def _find_cycle(nodes, done: set) -> list[str]:
    import networkx as nx  # error path only

    g = nx.DiGraph()
    for n in nodes:  # sorted by name: networkx then answers deterministically
        if n.name not in done:
            g.add_node(n.name)
    for n in nodes:
        for d in sorted(set(n.deps)):
            if n.name not in done and d not in done:
                g.add_edge(d, n.name)
    cyc = [u for u, _ in nx.find_cycle(g)]
    i = cyc.index(min(cyc))
    cyc = cyc[i:] + cyc[:i]
    return cyc + [cyc[0]]


def select(nodes: Iterable[Node], dirty: Optional[Iterable[str]] = None,
           targets: Optional[Iterable[str]] = None) -> list[Node]:
    """The nodes that must run: the dirty closure (dirty nodes and all their dependents)
    intersected with the targets and their ancestors. `dirty` None = every node is dirty;
    `targets` None or empty = every node is a target. Deps outside the selection are treated
    as already satisfied and dropped. Returns nodes sorted by name."""
    nodes = sorted(nodes, key=lambda n: n.name)
    by_name = {n.name: n for n in nodes}
    children: dict[str, list[str]] = {n.name: [] for n in nodes}
    for n in nodes:
        for d in set(n.deps):
            if d in children:
                children[d].append(n.name)

    def known(names):
        names = sorted(set(names))
        for x in names:
            if x not in by_name:
                raise NotFound("dataflow", x, by_name)
        return names

    chosen = set(by_name)
    if dirty is not None:
        start = known(dirty)
        seen, stack = set(start), list(start)
        while stack:
            for y in children[stack.pop()]:
                if y not in seen:
                    seen.add(y)
                    stack.append(y)
        chosen &= seen
    targets = known(targets) if targets is not None else []
    if targets:
        from .optimizer import needed  # the optimizer's dead-node pass, not a copy of it

        chosen &= needed({n.name: n.deps for n in nodes}, targets)
    out = []
    for name in sorted(chosen):
        n = by_name[name]
        deps = tuple(d for d in n.deps if d in chosen)
        out.append(n if deps == n.deps else _replace(n, deps=deps))
    return out


def _replace(node: Node, **changes) -> Node:
    from dataclasses import replace
    return replace(node, **changes)


class LeaseGrant(NamedTuple):
    """Which dataflow holds which lease in which batch (0-based)."""

    batch: int
    dataflow: str
    path: str
    mode: str


TABLE_COLUMNS = ("batch", "dataflow", "leases", "est. cost")


@dataclass(frozen=True)
class Plan:
    """A deterministic plan. Batches are 0-based and each batch is sorted by priority.

    priority   the order the executor follows among ready dataflows (batch-major, then
               longest remaining cost path, then name); a topological order
    makespan   estimated wall time when ready dataflows start in `priority` order as soon as
               their inputs are done and a slot, their leases and resources are free
               (list scheduling under the costs)
    barrier_makespan  estimated wall time if each batch waits for the previous one
               (sum over batches of the batch's largest cost)
    critical_path     the longest cost path, source to sink; critical_path_length its cost
    speedup    total_work / makespan (1.0 when makespan is 0)
    shared     representative -> dataflows taking its execution's result (see the field)
    """

    batches: tuple[tuple[str, ...], ...]
    leases: tuple[LeaseGrant, ...]
    priority: tuple[str, ...]
    critical_path: tuple[str, ...]
    critical_path_length: float
    makespan: float
    barrier_makespan: float
    total_work: float
    speedup: float
    cap: Optional[int]
    costs: Mapping[str, float] = field(default_factory=dict, hash=False, repr=False)
    shared: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    """representative -> the dataflows sharing its execution (sorted); each of them sits in
    its representative's batch right after it and takes no slot (`optimizer.schedule_optimized`)"""

    @property
    def batch_of(self) -> dict[str, int]:
        return {name: i for i, batch in enumerate(self.batches) for name in batch}

    @property
    def rank(self) -> dict[str, int]:
        """name -> position in `priority`: sort ready dataflows by it."""
        return {name: i for i, name in enumerate(self.priority)}

    @property
    def width(self) -> int:
        """The widest batch, in executions (dataflows sharing an execution not counted)."""
        rides = {d for dups in self.shared.values() for d in dups}
        return max((sum(n not in rides for n in b) for b in self.batches), default=0)

    @property
    def runs_as(self) -> dict[str, str]:
        """duplicate -> the representative whose execution it takes (empty: nothing shared)."""
        return {d: rep for rep, dups in self.shared.items() for d in dups}

    def to_json(self) -> dict:
        """The `e3 plan --json` document (CLI.md); plain JSON types, deterministic."""
        return {
            "batches": [list(b) for b in self.batches],
            "leases": [g._asdict() for g in self.leases],
            "critical_path": list(self.critical_path),
            "critical_path_length": self.critical_path_length,
            "makespan": self.makespan,
            "barrier_makespan": self.barrier_makespan,
            "total_work": self.total_work,
            "speedup": self.speedup,
            "priority": list(self.priority),
            "cap": self.cap,
            "shared": {rep: list(dups) for rep, dups in sorted(self.shared.items())},
        }

    def table(self) -> list[tuple[int, str, str, float]]:
        """Rows (batch, dataflow, leases, est. cost) for a rich table; see TABLE_COLUMNS."""
        held: dict[str, list[str]] = {}
        for g in self.leases:
            held.setdefault(g.dataflow, []).append(f"{g.mode} {g.path}")
        return [(i, name, ", ".join(held.get(name, ())), self.costs.get(name, 0.0))
                for i, batch in enumerate(self.batches) for name in batch]
