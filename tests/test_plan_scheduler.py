"""The kanren scheduler: batches, lease assignment, determinism, bounds."""
from __future__ import annotations

import random
import subprocess
import sys
from dataclasses import replace

import pytest
from hypothesis import given, strategies as st

from e3logic.core.errors import NotFound
from e3logic.core.paths import lease_conflict
from e3logic.plan.model import Node, PlanInput
from e3logic.plan.relations import WINDOW, skip_limit
from e3logic.plan.scheduler import Admitter, make_plan, schedule
from e3logic.plan.checker import verify

# a small path tree, so ancestors and descendants conflict
PATHS = ("db", "db/sales", "db/sales/eu", "db/hr", "fs", "fs/tmp", "gpu/0")


@st.composite
def plan_inputs(draw, max_nodes: int = 12, leases: bool = True, resources: bool = True,
                caps=(None, 1, 2, 3, 4), costs=(0.0, 0.5, 1.0, 2.0, 3.0, 5.0)):
    """Random valid PlanInputs: a DAG over names unrelated to topological order, leases on
    PATHS (never self-conflicting), gpu/mem demands within capacity, a cap."""
    n = draw(st.integers(0, max_nodes))
    perm = draw(st.permutations(range(n)))
    nodes = []
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=3)) if i else []
        mine: list = []
        if leases:
            for lease in draw(st.lists(st.tuples(st.sampled_from(PATHS),
                                                 st.sampled_from(("read", "write"))),
                                       max_size=2)):
                if not any(lease_conflict(lease, x) for x in mine):
                    mine.append(lease)
        demand = {}
        if resources:
            gpu = draw(st.integers(0, 2))
            mem = draw(st.sampled_from((0, 0.5, 1.5, 4)))
            demand = {k: v for k, v in (("gpu", gpu), ("mem_gb", mem)) if v}
        nodes.append(Node(f"n{perm[i]}", tuple(f"n{perm[d]}" for d in deps), tuple(mine),
                          demand, cost=draw(st.sampled_from(costs))))
    capacities = {"gpu": 2, "mem_gb": 4} if resources else {}
    return PlanInput(tuple(nodes), capacities, draw(st.sampled_from(caps)))


def shuffled(pi: PlanInput, seed: int) -> PlanInput:
    """The same input listed in another order, deps included."""
    rnd = random.Random(seed)
    nodes = [replace(n, deps=tuple(rnd.sample(n.deps, len(n.deps))),
                     leases=tuple(rnd.sample(n.leases, len(n.leases)))) for n in pi.nodes]
    rnd.shuffle(nodes)
    caps = dict(rnd.sample(sorted(pi.capacities.items()), len(pi.capacities)))
    return PlanInput(tuple(nodes), caps, pi.cap)


@given(plan_inputs())
def test_every_plan_verifies_and_places_each_dataflow_exactly_once(pi):
    plan = schedule(pi)
    assert verify(plan, pi) == []
    placed = [name for batch in plan.batches for name in batch]
    assert sorted(placed) == sorted(pi.names)
    assert len(placed) == len(set(placed))
    assert plan.priority == tuple(placed)


@given(plan_inputs(), st.integers(0, 2**32))
def test_plan_is_identical_across_runs_and_shuffled_input_order(pi, seed):
    plan = schedule(pi)
    assert schedule(pi) == plan
    other = schedule(shuffled(pi, seed))
    assert other == plan
    assert other.to_json() == plan.to_json()


def reference_batches(pi: PlanInput) -> list[tuple[str, ...]]:
    """An independent plain-Python greedy with the same rules: ready dataflows by (longest
    remaining cost path, name), include each that fits, until full; after skip_limit(cap)
    skips only unconstrained ones (no lease, no demand on a capacity) are considered."""
    kids = {n.name: sorted({m.name for m in pi.nodes if n.name in m.deps}) for n in pi.nodes}
    bl: dict[str, float] = {}

    def level(x):
        if x not in bl:
            bl[x] = pi[x].cost + max((level(c) for c in kids[x]), default=0.0)
        return bl[x]

    placed: set[str] = set()
    batches = []
    while len(placed) < len(pi.nodes):
        ready = sorted((n.name for n in pi.nodes if n.name not in placed
                        and all(d in placed for d in n.deps)), key=lambda x: (-level(x), x))
        batch: list[str] = []
        skips = 0
        for c in ready:
            if pi.cap is not None and len(batch) == pi.cap:
                break
            if skips >= skip_limit(pi.cap) and (pi[c].leases or any(
                    pi[c].resources.get(r) for r in pi.capacities)):
                continue
            fits = not any(lease_conflict(a, b) for m in batch for a in pi[c].leases
                           for b in pi[m].leases)
            for r, capacity in pi.capacities.items():
                fits = fits and sum(pi[m].resources.get(r, 0) for m in batch + [c]) <= capacity
            if fits:
                batch.append(c)
            else:
                skips += 1
        placed.update(batch)
        batches.append(tuple(batch))
    return batches


@given(plan_inputs())
def test_kanren_batches_match_an_independent_plain_greedy(pi):
    assert list(schedule(pi).batches) == reference_batches(pi)


def test_kanren_batches_match_the_plain_greedy_when_the_skip_limit_binds():
    nodes = [Node(f"w{i:02d}", leases=(("db", "write"),)) for i in range(30)]
    nodes += [Node(f"x{i:02d}", cost=0.5) for i in range(5)]
    pi = PlanInput(tuple(nodes), {}, 2)
    plan = schedule(pi)
    assert list(plan.batches) == reference_batches(pi)
    # the x's sit beyond the skip limit, yet free work still fills the slots
    assert plan.batches[:6] == (("w00", "x00"), ("w01", "x01"), ("w02", "x02"),
                                ("w03", "x03"), ("w04", "x04"), ("w05",))


@given(plan_inputs(caps=(1, 2, 3)))
def test_no_batch_is_wider_than_the_cap(pi):
    assert all(len(batch) <= pi.cap for batch in schedule(pi).batches)


@given(plan_inputs())
def test_conflicting_leases_never_share_a_batch(pi):
    plan = schedule(pi)
    for batch in plan.batches:
        held = [(name, lease) for name in batch for lease in pi[name].leases]
        for i, (a, la) in enumerate(held):
            for b, lb in held[i + 1:]:
                assert a == b or not lease_conflict(la, lb), (a, la, b, lb)


@given(plan_inputs())
def test_each_batch_keeps_resources_within_capacity(pi):
    for batch in schedule(pi).batches:
        for r, capacity in pi.capacities.items():
            assert sum(pi[n].resources.get(r, 0) for n in batch) <= capacity


@given(plan_inputs(leases=False, resources=False))
def test_a_dataflow_is_placed_in_the_first_batch_after_its_inputs_when_unconstrained(pi):
    if pi.cap is not None:
        pi = PlanInput(pi.nodes, {}, None)
    plan = schedule(pi)
    where = plan.batch_of
    for n in pi.nodes:
        assert where[n.name] == max((where[d] + 1 for d in n.deps), default=0)


@given(plan_inputs(leases=False, resources=False, caps=(1, 2, 3)))
def test_every_batch_is_full_or_takes_every_ready_dataflow(pi):
    # placement as soon as inputs are done and a slot is free (not strict waves)
    plan = schedule(pi)
    where = plan.batch_of
    for k, batch in enumerate(plan.batches):
        ready = [n.name for n in pi.nodes
                 if where[n.name] >= k and all(where[d] < k for d in n.deps)]
        assert len(batch) == min(pi.cap, len(ready))


def test_independent_dataflows_reach_the_n_over_cap_bound():
    pi = PlanInput(tuple(Node(f"t{i:02d}") for i in range(20)), {}, 3)
    plan = schedule(pi)
    assert [len(b) for b in plan.batches] == [3, 3, 3, 3, 3, 3, 2]


def test_placement_is_not_in_strict_waves():
    # cap-split waves would give [a, b], [c], [d]; d's inputs are done after batch 0 and a
    # slot is free beside c, so it goes there
    nodes = [Node("a"), Node("b"), Node("c"), Node("d", ("a",))]
    plan = schedule(PlanInput(tuple(nodes), {}, 2))
    assert plan.batches == (("a", "b"), ("c", "d"))


def test_critical_path_is_scheduled_first():
    nodes = [Node("short"), Node("long1", cost=5), Node("long2", ("long1",), cost=5),
             Node("tiny")]
    plan = schedule(PlanInput(tuple(nodes), {}, 1))
    assert plan.batches[0] == ("long1",)
    assert plan.critical_path == ("long1", "long2")


def test_priority_ties_are_broken_by_name():
    plan = schedule(PlanInput(tuple(Node(x) for x in "dcba"), {}, 1))
    assert plan.batches == (("a",), ("b",), ("c",), ("d",))


def test_conflicting_writers_go_to_separate_batches_and_readers_share_one():
    nodes = [Node("w1", leases=(("db", "write"),)), Node("w2", leases=(("db/sales", "write"),)),
             Node("r1", leases=(("db", "read"),)), Node("r2", leases=(("db", "read"),))]
    plan = schedule(PlanInput(tuple(nodes), {}, None))
    where = plan.batch_of
    assert len({where["w1"], where["w2"], where["r1"]}) == 3
    assert where["r1"] == where["r2"]


def test_lease_assignment_names_batch_dataflow_path_and_mode():
    nodes = [Node("load", leases=(("db/sales", "write"),)),
             Node("report", ("load",), leases=(("db/sales", "read"), ("fs/out", "write")))]
    plan = schedule(PlanInput(tuple(nodes), {}, 4))
    assert [g._asdict() for g in plan.leases] == [
        {"batch": 0, "dataflow": "load", "path": "db/sales", "mode": "write"},
        {"batch": 1, "dataflow": "report", "path": "db/sales", "mode": "read"},
        {"batch": 1, "dataflow": "report", "path": "fs/out", "mode": "write"},
    ]


def test_gpu_capacity_serialises_gpu_dataflows():
    nodes = [Node(f"g{i}", resources={"gpu": 1}) for i in range(3)] + [Node("cpu")]
    plan = schedule(PlanInput(tuple(nodes), {"gpu": 1}, 8))
    assert [sorted(b) for b in plan.batches] == [["cpu", "g0"], ["g1"], ["g2"]]


READ = (("db", "read"),)  # a lease that conflicts with nothing here: constrained, yet all fit


def test_a_batch_wider_than_one_search_window_chains_searches():
    n = 3 * WINDOW + 5
    pi = PlanInput(tuple(Node(f"t{i:03d}", leases=READ) for i in range(n)), {}, None)
    stats: dict = {}
    plan = schedule(pi, stats=stats)
    assert [len(b) for b in plan.batches] == [n]
    assert stats["searches"] == 4


def test_many_conflicting_candidates_are_bounded_per_batch():
    # every dataflow writes db: one per batch, and each batch looks at a bounded candidate list
    pi = PlanInput(tuple(Node(f"w{i:03d}", leases=(("db", "write"),)) for i in range(200)),
                   {}, 2)
    stats: dict = {}
    plan = schedule(pi, stats=stats)
    assert len(plan.batches) == 200
    assert stats["candidates"] <= 200 * (2 + 16)
    assert verify(plan, pi) == []


def test_stats_report_time_inside_kanren_without_changing_the_plan():
    pi = PlanInput(tuple(Node(f"t{i}", leases=READ) for i in range(10)), {}, 3)
    stats: dict = {}
    assert schedule(pi, stats=stats) == schedule(pi)
    assert stats["kanren_seconds"] > 0 and stats["searches"] == 4


def test_batches_of_unconstrained_candidates_are_filled_without_a_search():
    # w (a writer) is ready once t9 is placed: the first batch has only free candidates, the
    # later ones a constrained one among them, and those are searched
    pi = PlanInput(tuple(Node(f"t{i}") for i in range(10))
                   + (Node("w", deps=("t9",), leases=(("db", "write"),)),), {}, 3)
    stats: dict = {}
    plan = schedule(pi, stats=stats)
    assert [list(b) for b in plan.batches] == [["t9", "t0", "t1"], ["t2", "t3", "t4"],
                                              ["t5", "t6", "t7"], ["t8", "w"]]
    assert stats["direct"] == 1 and stats["searches"] == 3


def searched(pi):
    """schedule() with every batch searched (DIRECT off)."""
    from e3logic.plan import scheduler

    scheduler.DIRECT = False
    try:
        return schedule(pi)
    finally:
        scheduler.DIRECT = True


@given(plan_inputs(max_nodes=16))
def test_filling_unconstrained_batches_directly_gives_the_searched_plan(pi):
    assert schedule(pi) == searched(pi)


def test_a_plan_without_leases_or_capacities_does_not_load_kanren():
    code = ("import sys; from e3logic.plan import Node, PlanInput, schedule; "
            "p = schedule(PlanInput(tuple(Node(f't{i}', deps=(f't{i-1}',) if i else ()) "
            "for i in range(50)), {}, 4)); assert len(p.batches) == 50, p; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kanren', 'unification')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_empty_input_gives_an_empty_plan():
    plan = schedule(PlanInput((), {}, 2))
    assert plan.batches == () and plan.makespan == 0.0 and plan.speedup == 1.0


def test_make_plan_selects_then_schedules():
    nodes = [Node("a"), Node("b", ("a",)), Node("c", ("b",)), Node("x")]
    plan = make_plan(nodes, cap=2, dirty=["b"], targets=["c"])
    assert plan.batches == (("b",), ("c",))


def test_admitter_starts_ready_dataflows_around_running_ones():
    nodes = [Node("w", leases=(("db", "write"),)), Node("r", leases=(("db/x", "read"),)),
             Node("g1", resources={"gpu": 1}), Node("g2", resources={"gpu": 1}), Node("p")]
    adm = Admitter(PlanInput(tuple(nodes), {"gpu": 1}, 3))
    assert adm.admit(["r", "g2", "p"], running=["w", "g1"]) == ["p"]
    assert adm.admit(["r", "g2", "p"], running=[]) == ["r", "g2", "p"]
    assert adm.admit(["w", "r"], running=[]) == ["w"]


def test_admitter_names_an_unknown_dataflow():
    adm = Admitter(PlanInput((Node("load"),), {}, 1))
    with pytest.raises(NotFound, match="unknown dataflow 'lod'; did you mean 'load'"):
        adm.admit(["lod"])
