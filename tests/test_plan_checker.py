"""The checker: valid plans pass, each violated constraint is named; brute-force optimum."""
from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import event, given

from e3logic.plan.checker import check, optimal_barrier_makespan, verify
from e3logic.plan.model import LeaseGrant, Node, PlanError, PlanInput
from e3logic.plan.scheduler import schedule

from tests.test_plan_scheduler import plan_inputs

PI = PlanInput((Node("load"), Node("clean", ("load",)),
                Node("w1", leases=(("db", "write"),)), Node("w2", leases=(("db/sales", "write"),)),
                Node("r1", leases=(("db", "read"),)), Node("r2", leases=(("db", "read"),)),
                Node("g1", resources={"gpu": 1}), Node("g2", resources={"gpu": 1})),
               {"gpu": 1}, 3)


def constraints(batches):
    return [v.constraint for v in verify(batches, PI)]


def test_a_valid_plan_has_no_violations():
    plan = schedule(PI)
    assert verify(plan, PI) == []
    check(plan, PI)


def test_bare_batches_are_checked_too():
    assert verify([["load", "w1", "g1"], ["clean", "w2", "g2"], ["r1", "r2"]], PI) == []


def test_a_dependency_in_the_same_batch_is_named():
    bad = verify([["load", "clean"], ["w1"], ["w2"], ["r1", "r2"], ["g1"], ["g2"]], PI)
    assert [(v.constraint, v.batch, v.dataflows) for v in bad] == [
        ("dependencies", 0, ("clean", "load"))]
    assert bad[0].message == "dataflow 'clean' in batch 0 depends on 'load', not in an " \
                             "earlier batch"


def test_a_dependency_in_a_later_batch_is_named():
    assert constraints([["clean", "w1", "g1"], ["load", "w2", "g2"], ["r1", "r2"]]) == \
        ["dependencies"]


def test_a_batch_over_the_cap_is_named_once():
    bad = verify([["load", "w1", "g1", "r1"], ["clean", "w2", "g2"], ["r2"]], PI)
    assert [v.constraint for v in bad] == ["cap", "leases"]
    assert bad[0].message == "batch 0 holds 4 dataflows, over the cap of 3"


def test_conflicting_leases_in_one_batch_are_named_with_both_dataflows():
    bad = verify([["load", "w1", "w2"], ["clean", "g1"], ["g2", "r1", "r2"]], PI)
    assert [(v.constraint, v.dataflows) for v in bad] == [("leases", ("w1", "w2"))]
    assert bad[0].message == "batch 0: 'w1' holds write db and 'w2' holds write db/sales, " \
                             "which conflict"


def test_a_resource_over_capacity_is_named():
    bad = verify([["load", "g1", "g2"], ["clean", "w1"], ["w2"], ["r1", "r2"]], PI)
    assert [(v.constraint, v.dataflows) for v in bad] == [("resources", ("g2",))]
    assert "takes gpu over its capacity of 1" in bad[0].message


def test_missing_duplicate_unknown_and_empty_are_coverage_violations():
    bad = verify([["load", "nope"], [], ["clean", "load"], ["w1"], ["w2"], ["r1", "r2"],
                  ["g1"]], PI)
    assert [(v.constraint, v.dataflows) for v in bad] == [
        ("coverage", ("nope",)), ("coverage", ()), ("coverage", ("load",)),
        ("coverage", ("g2",))]


def test_a_tampered_lease_assignment_is_named():
    plan = schedule(PI)
    grants = tuple(g for g in plan.leases if g.dataflow != "w1")
    bad = verify(replace(plan, leases=grants), PI)
    assert [(v.constraint, v.dataflows) for v in bad] == [("lease-assignment", ("w1",))]
    moved = tuple(LeaseGrant(g.batch + 1, *g[1:]) if g.dataflow == "w1" else g
                  for g in plan.leases)
    assert [v.constraint for v in verify(replace(plan, leases=moved), PI)] == \
        ["lease-assignment"]


def test_a_priority_that_disagrees_with_the_batches_is_named():
    plan = schedule(PI)
    bad = verify(replace(plan, priority=tuple(reversed(plan.priority))), PI)
    assert [v.constraint for v in bad] == ["priority"]


def test_check_raises_a_plan_error_naming_the_first_violation():
    with pytest.raises(PlanError, match=r"invalid plan: leases: batch 0: 'w1' holds write db "
                                        r".* \(and 1 more\)"):
        check([["load", "w1", "w2"], ["clean", "g1", "g2"], ["r1", "r2"]], PI)


@given(plan_inputs())
def test_moving_a_dataflow_into_its_dependencys_batch_is_caught(pi):
    plan = schedule(pi)
    where = plan.batch_of
    for n in pi.nodes:
        if n.deps:
            d = n.deps[0]
            batches = [[x for x in b if x != n.name] for b in plan.batches]
            batches[where[d]].append(n.name)
            batches = [b for b in batches if b]
            assert "dependencies" in [v.constraint for v in verify(batches, pi)]
            break


def test_brute_force_optimum_finds_the_best_barrier_schedule():
    # a(1)->b(10), c(10)->d(1): greedy levels cost 20, the optimum pairs b with c: 12
    pi = PlanInput((Node("a", cost=1), Node("b", ("a",), cost=10), Node("c", cost=10),
                    Node("d", ("c",), cost=1)), {}, None)
    assert optimal_barrier_makespan(pi) == 12.0
    assert schedule(pi).barrier_makespan == 20.0


def test_brute_force_refuses_large_inputs():
    with pytest.raises(ValueError, match="at most 12"):
        optimal_barrier_makespan(PlanInput(tuple(Node(f"t{i}") for i in range(13))))


@given(plan_inputs(max_nodes=8))
def test_greedy_barrier_makespan_lies_between_the_optimum_and_nothing_below_the_critical_path(pi):
    plan = schedule(pi)
    opt = optimal_barrier_makespan(pi)
    assert plan.critical_path_length <= opt + 1e-9
    assert opt <= plan.barrier_makespan + 1e-9
    ratio = plan.barrier_makespan / opt if opt else 1.0
    bucket = "optimal" if ratio <= 1 + 1e-9 else "<= 1.25" if ratio <= 1.25 else "> 1.25"
    event(f"greedy/optimum barrier makespan: {bucket}")
