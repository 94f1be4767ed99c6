"""The planner's input and output model: normalisation, plan errors, select, Plan output."""
from __future__ import annotations

import json

import pytest

from e3logic.core.errors import NotFound, UsageError
from e3logic.plan.model import (TABLE_COLUMNS, Node, PlanError, PlanInput, select,
                                topological_order)
from e3logic.plan.scheduler import schedule


def test_plan_error_is_a_usage_error_with_exit_code_2():
    assert issubclass(PlanError, UsageError) and PlanError.exit_code == 2


def test_node_normalises_leases_resources_and_cost():
    n = Node("load", leases=[("db/", "write"), ("db", "write"), ("fs", "read")],
             resources={"mem_gb": 8, "gpu": 1}, cost=2)
    assert n.leases == (("db", "write"), ("fs", "read"))
    assert list(n.resources) == ["gpu", "mem_gb"]
    assert n.cost == 2.0 and isinstance(n.cost, float)
    assert hash(n) == hash(Node("load", leases=(("fs", "read"), ("db", "write")),
                                resources={"gpu": 1, "mem_gb": 8}, cost=2.0))


def test_node_copies_its_resource_dict():
    demand = {"gpu": 1}
    n = Node("train", resources=demand)
    demand["gpu"] = 5
    assert n.resources == {"gpu": 1}


@pytest.mark.parametrize("kwargs, message", [
    ({"name": ""}, "non-empty string"),
    ({"name": "a", "deps": "b"}, "dataflow 'a': deps must be a sequence"),
    ({"name": "a", "leases": [("db", "append")]}, "dataflow 'a': lease mode must be one of"),
    ({"name": "a", "leases": [("../db", "read")]}, "dataflow 'a': invalid lease path"),
    ({"name": "a", "leases": ["db"]}, "dataflow 'a': a lease is a \\(path, mode\\) pair"),
    ({"name": "a", "cost": -1}, "dataflow 'a': cost must be a finite number >= 0"),
    ({"name": "a", "cost": float("nan")}, "dataflow 'a': cost must be a finite number"),
    ({"name": "a", "resources": {"gpu": -1}}, "dataflow 'a': demand gpu must be"),
])
def test_a_malformed_node_is_a_plan_error_naming_it(kwargs, message):
    with pytest.raises(PlanError, match=message):
        Node(**kwargs)


def test_input_nodes_must_be_nodes():
    with pytest.raises(PlanError, match="plan input nodes must be Node objects, got str"):
        PlanInput(("a",))


def test_input_nodes_are_sorted_by_name_so_order_never_matters():
    a = PlanInput((Node("b", ("a",)), Node("a")), {"gpu": 1}, 2)
    b = PlanInput([Node("a"), Node("b", ("a",))], {"gpu": 1}, 2)
    assert a == b and a.names == ("a", "b")


def test_a_duplicate_dataflow_is_a_plan_error():
    with pytest.raises(PlanError, match="dataflow 'a' is listed twice"):
        PlanInput((Node("a"), Node("a")))


def test_an_unknown_dependency_is_a_plan_error_with_a_suggestion():
    with pytest.raises(PlanError, match="dataflow 'report' depends on unknown dataflow 'clen'; "
                                        "did you mean 'clean'"):
        PlanInput((Node("clean"), Node("report", ("clen",))))


def test_a_dependency_cycle_is_a_plan_error_naming_the_cycle():
    nodes = (Node("a", ("c",)), Node("b", ("a",)), Node("c", ("b",)), Node("d", ("a",)))
    with pytest.raises(PlanError, match=r"dependency cycle: a -> b -> c -> a$"):
        PlanInput(nodes)


def test_a_self_dependency_is_a_cycle():
    with pytest.raises(PlanError, match="dependency cycle: a -> a"):
        PlanInput((Node("a", ("a",)),))


def test_a_demand_above_capacity_is_a_plan_error_naming_the_dataflow():
    with pytest.raises(PlanError, match="dataflow 'train' needs gpu=2 but the capacity is 1"):
        PlanInput((Node("train", resources={"gpu": 2}),), {"gpu": 1})


def test_a_demand_on_a_resource_without_capacity_is_unconstrained():
    pi = PlanInput((Node("a", resources={"mem_gb": 64}), Node("b", resources={"mem_gb": 64})),
                   {}, None)
    assert schedule(pi).batches == (("a", "b"),)


@pytest.mark.parametrize("leases", [
    (("db", "write"), ("db/sales", "read")),
    (("db", "read"), ("db", "write")),
    (("db/sales", "write"), ("db", "write")),
])
def test_self_conflicting_leases_are_a_plan_error_naming_the_dataflow(leases):
    with pytest.raises(PlanError, match="dataflow 'sync' holds conflicting leases"):
        PlanInput((Node("sync", leases=leases),))


def test_reads_of_a_path_and_its_child_do_not_conflict_within_a_dataflow():
    PlanInput((Node("scan", leases=(("db", "read"), ("db/sales", "read"))),))


@pytest.mark.parametrize("cap", [0, -1, 1.5, True, "4"])
def test_a_bad_cap_is_a_plan_error(cap):
    with pytest.raises(PlanError, match="cap must be a positive integer or None"):
        PlanInput((), {}, cap)


def test_a_negative_capacity_is_a_plan_error():
    with pytest.raises(PlanError, match="capacity gpu must be"):
        PlanInput((), {"gpu": -1})


def test_topological_order_is_deterministic_and_respects_deps():
    nodes = [Node("z"), Node("b", ("z",)), Node("a", ("b",)), Node("c")]
    assert topological_order(nodes) == ("c", "z", "b", "a")
    assert topological_order(reversed(nodes)) == ("c", "z", "b", "a")


# select: dirty closure ∩ ancestors of targets ----------------------------------------------

DAG = [Node("raw"), Node("clean", ("raw",)), Node("feat", ("clean",)),
       Node("stats", ("clean",)), Node("report", ("feat", "stats")), Node("other")]


def names(nodes):
    return [n.name for n in nodes]


def test_select_without_dirty_or_targets_keeps_everything():
    assert names(select(DAG)) == sorted(n.name for n in DAG)


def test_select_takes_the_dirty_closure():
    assert names(select(DAG, dirty=["clean"])) == ["clean", "feat", "report", "stats"]


def test_select_intersects_with_the_ancestors_of_the_targets():
    assert names(select(DAG, dirty=["clean"], targets=["feat"])) == ["clean", "feat"]
    assert names(select(DAG, targets=["stats"])) == ["clean", "raw", "stats"]


def test_select_treats_an_empty_target_list_as_every_target():
    assert names(select(DAG, dirty=["raw"], targets=[])) == names(select(DAG, dirty=["raw"]))


def test_select_drops_deps_outside_the_selection():
    chosen = {n.name: n for n in select(DAG, dirty=["feat", "stats"])}
    assert chosen["feat"].deps == () and chosen["report"].deps == ("feat", "stats")
    PlanInput(tuple(chosen.values()))  # valid on its own


def test_select_names_an_unknown_dataflow():
    with pytest.raises(NotFound, match="unknown dataflow 'reprot'; did you mean 'report'"):
        select(DAG, targets=["reprot"])


# Plan output -------------------------------------------------------------------------------

def test_plan_json_has_the_cli_keys_and_round_trips():
    pi = PlanInput((Node("load", leases=(("db", "write"),), cost=2),
                    Node("report", ("load",))), {}, 2)
    doc = schedule(pi).to_json()
    assert {"batches", "leases", "critical_path", "makespan"} <= set(doc)
    assert doc["batches"] == [["load"], ["report"]]
    assert doc["leases"] == [{"batch": 0, "dataflow": "load", "path": "db", "mode": "write"}]
    assert doc["critical_path"] == ["load", "report"] and doc["makespan"] == 3.0
    assert json.loads(json.dumps(doc)) == doc


def test_plan_table_rows_are_batch_dataflow_leases_cost():
    pi = PlanInput((Node("load", leases=(("db", "write"), ("fs", "read")), cost=2),
                    Node("report", ("load",))), {}, 2)
    assert TABLE_COLUMNS == ("batch", "dataflow", "leases", "est. cost")
    assert schedule(pi).table() == [(0, "load", "write db, read fs", 2.0),
                                    (1, "report", "", 1.0)]


def test_plan_is_frozen():
    plan = schedule(PlanInput((Node("a"),)))
    with pytest.raises(AttributeError):
        plan.batches = ()
    assert plan.batch_of == {"a": 0} and plan.width == 1 and plan.rank == {"a": 0}
