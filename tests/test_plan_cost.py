"""The cost model: priorities, critical path, makespans, speedup and their identities."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from e3logic.plan.cost import (barrier_makespan, bottom_levels, critical_path, earliest_finish,
                               simulate, speedup, total_work)
from e3logic.plan.model import Node, PlanError, PlanInput, select
from e3logic.plan.scheduler import schedule

from tests.test_plan_scheduler import plan_inputs

DIAMOND = (Node("a", cost=1), Node("b", ("a",), cost=4), Node("c", ("a",), cost=2),
           Node("d", ("b", "c"), cost=1))


def with_cap(pi: PlanInput, cap) -> PlanInput:
    return PlanInput(pi.nodes, pi.capacities, cap)


def test_bottom_levels_are_the_longest_remaining_cost_paths():
    assert bottom_levels(PlanInput(DIAMOND)) == {"a": 6.0, "b": 5.0, "c": 3.0, "d": 1.0}


@given(plan_inputs(), st.data())
def test_a_dirty_only_input_keeps_the_full_inputs_priorities(pi, data):
    # the dirty closure holds every dependent, so longest remaining paths are unchanged
    dirty = data.draw(st.lists(st.sampled_from(pi.names), max_size=3)) if pi.nodes else []
    sub = PlanInput(tuple(select(pi.nodes, dirty=dirty)), pi.capacities, pi.cap)
    full = bottom_levels(pi)
    assert bottom_levels(sub) == {name: full[name] for name in sub.names}


def test_earliest_finish_with_unlimited_workers():
    assert earliest_finish(PlanInput(DIAMOND)) == {"a": 1.0, "b": 5.0, "c": 3.0, "d": 6.0}


def test_critical_path_follows_the_heaviest_chain():
    assert critical_path(PlanInput(DIAMOND)) == (("a", "b", "d"), 6.0)
    assert critical_path(PlanInput(())) == ((), 0.0)


def test_critical_path_starts_at_a_source_even_when_it_costs_nothing():
    pi = PlanInput((Node("z", cost=0), Node("a", ("z",), cost=3)))
    assert critical_path(pi) == (("z", "a"), 3.0)


def test_total_work_speedup_and_barrier_makespan():
    pi = PlanInput(DIAMOND, {}, 2)
    plan = schedule(pi)
    assert total_work(pi) == plan.total_work == 8.0
    assert plan.batches == (("a",), ("b", "c"), ("d",))
    assert plan.barrier_makespan == barrier_makespan(plan.batches, plan.costs) == 6.0
    assert plan.makespan == 6.0 and plan.speedup == pytest.approx(8 / 6)
    assert speedup(0.0, 0.0) == 1.0


def test_list_scheduling_starts_work_as_soon_as_a_slot_frees():
    # cap 2: x(3) and y(1) start together; z(1) takes y's slot at t=1, not at t=3
    pi = PlanInput((Node("x", cost=3), Node("y", cost=1), Node("z", cost=1)), {}, 2)
    makespan, starts = simulate(pi, ("x", "y", "z"))
    assert starts == {"x": 0.0, "y": 0.0, "z": 1.0} and makespan == 3.0
    assert schedule(pi).barrier_makespan == 4.0


def test_simulation_holds_leases_while_running():
    pi = PlanInput((Node("w", leases=(("db", "write"),), cost=2),
                    Node("r", leases=(("db/x", "read"),)), Node("p", cost=1)), {}, None)
    makespan, starts = simulate(pi, ("w", "r", "p"))
    assert starts == {"w": 0.0, "p": 0.0, "r": 2.0} and makespan == 3.0


def test_simulation_needs_every_dataflow_once():
    with pytest.raises(PlanError, match="every dataflow exactly once"):
        simulate(PlanInput(DIAMOND), ("a", "b"))


def test_barrier_makespan_can_exceed_the_critical_path_under_unequal_costs():
    # why `makespan` is the list-scheduling one: a(1)->b(10), c(10)->d(1)
    pi = PlanInput((Node("a", cost=1), Node("b", ("a",), cost=10), Node("c", cost=10),
                    Node("d", ("c",), cost=1)), {}, None)
    plan = schedule(pi)
    assert plan.makespan == plan.critical_path_length == 11.0
    assert plan.barrier_makespan == 20.0


@given(plan_inputs(leases=False, resources=False))
def test_unlimited_cap_makespan_equals_the_critical_path(pi):
    plan = schedule(with_cap(pi, None))
    assert plan.makespan == plan.critical_path_length


@given(plan_inputs(leases=False, resources=False, costs=(2.0,)))
def test_with_uniform_costs_the_barrier_makespan_equals_the_critical_path_too(pi):
    plan = schedule(with_cap(pi, None))
    assert plan.barrier_makespan == plan.makespan == plan.critical_path_length


@given(plan_inputs())
def test_cap_one_makespan_equals_total_work(pi):
    plan = schedule(with_cap(pi, 1))
    assert plan.makespan == pytest.approx(plan.total_work, rel=1e-12, abs=1e-12)
    assert plan.barrier_makespan == pytest.approx(plan.total_work, rel=1e-12, abs=1e-12)


@given(plan_inputs())
def test_a_capped_makespan_is_never_below_the_critical_path(pi):
    plan = schedule(pi)
    assert plan.makespan >= plan.critical_path_length
    assert plan.barrier_makespan >= plan.critical_path_length - 1e-9
    assert plan.makespan <= plan.total_work + 1e-9
    assert plan.speedup >= 1.0 - 1e-9


@given(plan_inputs(costs=(1.0,)))
def test_with_unit_costs_the_simulation_follows_the_batches(pi):
    plan = schedule(pi)
    _, starts = simulate(pi, plan.priority)
    assert starts == {name: float(k) for name, k in plan.batch_of.items()}
    assert plan.makespan == len(plan.batches) == plan.barrier_makespan
