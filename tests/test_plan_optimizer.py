"""Optimizer passes keep outputs identical: checked by running both with a tiny interpreter."""
from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, strategies as st

from e3logic.core.errors import NotFound
from e3logic.plan.checker import verify
from e3logic.plan.model import Node, PlanError, PlanInput
from e3logic.plan.optimizer import (apply_sharing, eliminate_dead, needed, optimize,
                                   schedule_optimized, share_common)
from e3logic.plan.scheduler import schedule


def task(node: Node, args: list, external) -> str:
    """A node's output: a pure function of its task (or its own name), inputs in order and
    external inputs."""
    text = repr((node.task_key or node.name, args, external))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def interpret(nodes, inputs=None) -> dict[str, str]:
    """Run `nodes` in dependency order."""
    inputs = inputs or {}
    values: dict[str, str] = {}
    pi = PlanInput(tuple(nodes))
    for name in pi.order:
        node = pi[name]
        values[name] = task(node, [values[d] for d in node.deps], inputs.get(name))
    return values


def outputs_after(opt, nodes, inputs) -> dict[str, str]:
    """Every original node's output as the optimized program produces it (shared duplicates
    read their representative's output; dead nodes are absent)."""
    values = interpret(opt.nodes, inputs)
    return {n.name: values[opt.runs_as(n.name)]
            for n in nodes if opt.runs_as(n.name) is not None}


@st.composite
def programs(draw, max_nodes: int = 12):
    """Random DAGs with repeated task keys (so sharing happens), external input identities,
    leases and gpu demands."""
    n = draw(st.integers(1, max_nodes))
    nodes, inputs = [], {}
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), max_size=2)) if i else []
        leases = draw(st.sampled_from([(), (("db", "read"),), (("db", "write"),),
                                       (("db/x", "read"),)]))
        nodes.append(Node(f"n{i:02d}", tuple(f"n{d:02d}" for d in deps), leases,
                          cost=float(draw(st.integers(0, 3))),
                          resources={"gpu": draw(st.integers(0, 1))},
                          task_key=draw(st.sampled_from([None, "t0", "t1"]))))
        inputs[f"n{i:02d}"] = draw(st.sampled_from([None, "h1", "h2"]))
    targets = draw(st.lists(st.sampled_from([x.name for x in nodes]), max_size=3, unique=True))
    return nodes, inputs, targets or None


@given(programs())
def test_optimize_keeps_every_needed_output_identical(program):
    nodes, inputs, targets = program
    before = interpret(nodes, inputs)
    opt = optimize(nodes, targets, inputs)
    after = outputs_after(opt, nodes, inputs)
    assert after == {k: before[k] for k in after}
    for t in targets or [n.name for n in nodes]:
        assert after[t] == before[t]


@given(programs())
def test_each_pass_alone_keeps_outputs_identical(program):
    nodes, inputs, _ = program
    before = interpret(nodes, inputs)
    shared = share_common(nodes, inputs)
    merged = apply_sharing(nodes, shared)
    after = interpret(merged, inputs)
    assert {n.name: after[shared.get(n.name, n.name)] for n in nodes} == before


@given(programs())
def test_optimized_nodes_still_form_a_valid_plan_input(program):
    nodes, inputs, targets = program
    opt = optimize(nodes, targets, inputs)
    pi = PlanInput(opt.nodes, {}, 2)
    assert verify(schedule(pi), pi) == []
    assert len(opt.nodes) <= len(nodes)


def test_dead_nodes_are_those_no_target_needs():
    nodes = [Node("raw"), Node("clean", ("raw",)), Node("report", ("clean",)),
             Node("scratch", ("raw",))]
    assert [n.name for n in eliminate_dead(nodes, ["report"])] == ["clean", "raw", "report"]
    assert [n.name for n in eliminate_dead(nodes, None)] == ["clean", "raw", "report",
                                                               "scratch"]
    assert eliminate_dead(nodes, []) == []
    assert optimize(nodes, ["report"]).dead == ("scratch",)


def test_same_task_on_the_same_inputs_runs_once():
    nodes = [Node("raw"), Node("a", ("raw",), task_key="norm"),
             Node("b", ("raw",), task_key="norm"),
             Node("c", ("raw",), task_key="other"), Node("ua", ("a",), task_key="sum"),
             Node("ub", ("b",), task_key="sum")]
    assert share_common(nodes) == {"b": "a", "ub": "ua"}
    merged = apply_sharing(nodes, {"b": "a", "ub": "ua"})
    assert [n.name for n in merged] == ["a", "c", "raw", "ua"]


def test_different_external_inputs_or_input_order_are_not_shared():
    nodes = [Node("p"), Node("q"), Node("a", ("p", "q"), task_key="join"),
             Node("b", ("q", "p"), task_key="join"), Node("x", task_key="load"),
             Node("y", task_key="load")]
    assert share_common(nodes, {"x": "hash1", "y": "hash2"}) == {}
    assert share_common(nodes, {"x": "hash1", "y": "hash1"}) == {"y": "x"}


def test_nodes_without_a_task_key_are_never_shared():
    assert share_common([Node("a"), Node("b")]) == {}


def test_representative_is_the_smallest_name_whatever_the_topological_order():
    nodes = [Node("z0"), Node("a", ("z0",), task_key="t"), Node("m", task_key="t2"),
             Node("b", ("m",), task_key="t"), Node("zz", ("z0",), task_key="t")]
    assert share_common(nodes) == {"zz": "a"}


def test_optimizer_rejects_an_invalid_graph():
    with pytest.raises(PlanError, match="unknown dataflow 'x'"):
        optimize([Node("a", ("x",))])


# -- dead nodes over a plain map (what target selection calls) -------------------------------

def test_needed_is_the_targets_and_their_ancestors_over_a_plain_map():
    deps = {"raw": [], "clean": ["raw"], "report": ["clean", "outside"], "scratch": ["raw"]}
    assert needed(deps, ["report"]) == {"raw", "clean", "report"}
    assert needed(deps, []) == set()
    with pytest.raises(NotFound, match="reprot.*did you mean 'report'"):
        needed(deps, ["reprot"])


# -- planning on the optimized graph ---------------------------------------------------------

TWINS = [Node("raw", cost=2), Node("a", ("raw",), task_key="up", cost=3),
         Node("b", ("raw",), task_key="up", cost=3, leases=(("outputs/b", "write"),)),
         Node("ua", ("a",), task_key="sum"), Node("ub", ("b",), task_key="sum"),
         Node("c", ("a", "b"), task_key="cat"), Node("lone", task_key="other")]


def test_a_shared_execution_takes_one_slot_and_its_duplicates_ride_right_after_it():
    pi = PlanInput(tuple(TWINS), {}, 1)
    plan = schedule_optimized(pi)
    assert plan.shared == {"a": ("b",), "ua": ("ub",)}
    assert plan.runs_as == {"b": "a", "ub": "ua"}
    assert plan.batches == (("raw",), ("a", "b"), ("c",), ("lone",), ("ua", "ub"))
    assert plan.width == 1 and plan.priority == tuple(n for b in plan.batches for n in b)
    assert verify(plan, pi) == []
    # a duplicate holds no lease and costs nothing: it takes its representative's result
    assert [g.dataflow for g in plan.leases] == []
    assert plan.costs["b"] == 0.0 and plan.costs["a"] == 3.0
    assert plan.total_work == 2 + 3 + 1 + 1 + 1
    doc = plan.to_json()
    assert doc["shared"] == {"a": ["b"], "ua": ["ub"]}
    assert {"batches", "leases", "critical_path", "makespan"} <= set(doc)


def test_without_anything_to_share_the_plan_is_the_plain_schedule():
    nodes = [Node("x", task_key="t"), Node("y", ("x",), task_key="t"), Node("z")]
    pi = PlanInput(tuple(nodes), {}, 2)
    assert schedule_optimized(pi) == schedule(pi)
    assert schedule(pi).to_json()["shared"] == {}


def test_input_identities_decide_what_is_shared():
    pi = PlanInput(tuple(TWINS), {}, None)
    plan = schedule_optimized(pi, {"a": ("paths", ("x",)), "b": ("paths", ("y",))})
    assert plan.shared == {}   # same task, different inputs: two executions (and ua, ub too)
    assert len(plan.priority) == len(TWINS)


def test_dead_nodes_are_not_planned():
    pi = PlanInput(tuple(TWINS), {}, None)
    plan = schedule_optimized(pi, targets=["ub", "a"])
    assert sorted(plan.priority) == ["a", "b", "raw", "ub"]
    assert plan.shared == {"a": ("b",)}   # ua is dead: ub is its own execution


def test_the_checker_names_a_duplicate_outside_its_representatives_batch():
    from dataclasses import replace

    pi = PlanInput(tuple(TWINS), {}, None)
    plan = schedule_optimized(pi)
    moved = tuple(tuple(n for n in b if n != "ub") for b in plan.batches) + (("ub",),)
    bad = replace(plan, batches=moved, priority=tuple(n for b in moved for n in b))
    assert [(v.constraint, v.dataflows) for v in verify(bad, pi)] == [("sharing", ("ub", "ua"))]
    other = PlanInput(tuple(replace(n, task_key="x") if n.name == "ub" else n for n in TWINS))
    assert [v.constraint for v in verify(plan, other)] == ["sharing"]


@given(programs(), st.sampled_from([None, 1, 2, 3]))
def test_a_plan_on_the_optimized_graph_is_valid_for_the_original_input(program, cap):
    nodes, inputs, targets = program
    pi = PlanInput(tuple(nodes), {"gpu": 1}, cap)
    plan = schedule_optimized(pi, inputs, targets)
    opt = optimize(nodes, targets, inputs)
    live = PlanInput(tuple(n for n in pi.nodes if n.name not in opt.dead), {"gpu": 1}, cap)
    assert verify(plan, live) == []
    assert plan.runs_as == dict(opt.shared)
    assert plan.width <= (cap or len(nodes))
    # the executions are planned as the optimized graph alone would be
    alone = schedule(PlanInput(opt.nodes, {"gpu": 1}, cap))
    assert plan.makespan == alone.makespan and plan.critical_path == alone.critical_path
    assert [tuple(n for n in b if n not in opt.shared) for b in plan.batches] == \
        [tuple(b) for b in alone.batches]
