"""Conformance suite `cost`: critical path, makespan, total work, speedup and the cost-model
identities (issue 4, items 4-5)."""
from __future__ import annotations

import random

import pytest

from e3logic.plan import Node, PlanInput, critical_path, schedule, simulate

# costs are median recorded durations in seconds
PIPELINE = [
    Node("raw", cost=2), Node("clean", ("raw",), cost=3),
    Node("features", ("clean",), cost=5), Node("stats", ("clean",), cost=1),
    Node("train", ("features",), cost=20), Node("report", ("train", "stats"), cost=1),
    Node("weather", cost=4), Node("weather_model", ("weather",), cost=6),
]


def random_dag(seed: int, n: int = 40) -> list[Node]:
    rnd = random.Random(seed)
    nodes = []
    for i in range(n):
        deps = tuple(f"v{j:02d}" for j in rnd.sample(range(i), min(i, rnd.randint(0, 3))))
        nodes.append(Node(f"v{i:02d}", deps, cost=float(rnd.choice([0.5, 1, 2, 3, 8]))))
    return nodes


def test_critical_path_is_the_heaviest_chain_and_its_cost():
    path, length = critical_path(PlanInput(tuple(PIPELINE)))
    assert path == ("raw", "clean", "features", "train", "report") and length == 31.0


def test_plan_reports_makespan_total_work_and_speedup():
    plan = schedule(PlanInput(tuple(PIPELINE), {}, 2))
    assert plan.total_work == 42.0
    assert plan.makespan == 31.0  # the weather branch fits beside the critical path
    assert plan.speedup == pytest.approx(42 / 31)


@pytest.mark.parametrize("seed", range(5))
def test_unlimited_cap_makespan_equals_the_critical_path(seed):
    plan = schedule(PlanInput(tuple(random_dag(seed)), {}, None))
    assert plan.makespan == plan.critical_path_length


@pytest.mark.parametrize("seed", range(5))
def test_cap_one_makespan_equals_total_work(seed):
    plan = schedule(PlanInput(tuple(random_dag(seed)), {}, 1))
    assert plan.makespan == pytest.approx(plan.total_work) and plan.speedup == pytest.approx(1)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("cap", [2, 3, 4])
def test_a_capped_makespan_is_never_below_the_critical_path(seed, cap):
    plan = schedule(PlanInput(tuple(random_dag(seed)), {}, cap))
    assert plan.critical_path_length <= plan.makespan <= plan.total_work
    assert plan.critical_path_length <= plan.barrier_makespan


def test_leases_and_resources_lengthen_the_makespan():
    free = [Node(f"t{i}", cost=2) for i in range(4)]
    locked = [Node(f"t{i}", leases=(("db", "write"),), cost=2) for i in range(4)]
    gpu = [Node(f"t{i}", resources={"gpu": 1}, cost=2) for i in range(4)]
    assert schedule(PlanInput(tuple(free), {}, None)).makespan == 2.0
    assert schedule(PlanInput(tuple(locked), {}, None)).makespan == 8.0
    assert schedule(PlanInput(tuple(gpu), {"gpu": 2}, None)).makespan == 4.0


def test_makespan_is_the_list_scheduling_estimate_and_barrier_makespan_waits_per_batch():
    pi = PlanInput((Node("a", cost=1), Node("b", ("a",), cost=10), Node("c", cost=10),
                    Node("d", ("c",), cost=1)), {}, None)
    plan = schedule(pi)
    assert plan.makespan == 11.0 and plan.barrier_makespan == 20.0
    makespan, starts = simulate(pi, plan.priority)
    assert makespan == 11.0 and starts == {"a": 0.0, "c": 0.0, "b": 1.0, "d": 10.0}


def test_cost_figures_are_in_the_plan_json():
    doc = schedule(PlanInput(tuple(PIPELINE), {}, 2)).to_json()
    assert doc["makespan"] == 31.0 and doc["total_work"] == 42.0
    assert doc["critical_path"] == ["raw", "clean", "features", "train", "report"]
