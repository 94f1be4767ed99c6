"""Optimizer passes keep outputs identical: checked by running both with a tiny interpreter."""
from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, strategies as st

from e3logic.plan.checker import verify
from e3logic.plan.model import Node, PlanError, PlanInput
from e3logic.plan.optimizer import (apply_fusion, apply_sharing, eliminate_dead, fuse_inline,
                                   optimize, share_common)
from e3logic.plan.scheduler import schedule


def task(node: Node, args: list, external) -> str:
    """A node's output: a pure function of its task (or its own name), inputs in order and
    external inputs."""
    text = repr((node.task_key or node.name, args, external))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def interpret(nodes, inputs=None, program=None, fused=()) -> dict[str, str]:
    """Run `nodes` in dependency order. A node heading a fused group runs the group's members
    (taken from `program`, the original nodes) one after another in one step."""
    inputs = inputs or {}
    groups = {g[-1]: g for g in fused}
    values: dict[str, str] = {}
    pi = PlanInput(tuple(nodes))
    for name in pi.order:
        node = pi[name]
        if name in groups:
            for member in groups[name]:  # each member reads its own inputs, in its order
                m = program[member]
                values[member] = task(m, [values[d] for d in m.deps], inputs.get(member))
        else:
            values[name] = task(node, [values[d] for d in node.deps], inputs.get(name))
    return values


def outputs_after(opt, nodes, inputs) -> dict[str, str]:
    """Every original node's output as the optimized program produces it (shared duplicates
    read their representative's output; dead nodes are absent)."""
    program = {m.name: m for members in opt.episodes.values() for m in members}
    values = interpret(opt.nodes, inputs, program, opt.fused)
    return {n.name: values[opt.shared.get(n.name, n.name)]
            for n in nodes if opt.runs_as(n.name) is not None}


@st.composite
def programs(draw, max_nodes: int = 12):
    """Random DAGs with repeated task keys (so sharing happens), inline runtimes (so fusion
    happens), external input identities and leases that sometimes block fusion."""
    n = draw(st.integers(1, max_nodes))
    nodes, inputs = [], {}
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), max_size=2)) if i else []
        leases = draw(st.sampled_from([(), (("db", "read"),), (("db", "write"),),
                                       (("db/x", "read"),)]))
        nodes.append(Node(f"n{i:02d}", tuple(f"n{d:02d}" for d in deps), leases,
                          cost=float(draw(st.integers(0, 3))),
                          task_key=draw(st.sampled_from([None, "t0", "t1"])),
                          runtime=draw(st.sampled_from([None, "inline", "inline", "python"]))))
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
    groups = fuse_inline(nodes)
    fused = interpret(apply_fusion(nodes, groups), inputs, {n.name: n for n in nodes}, groups)
    assert fused == before


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


def test_inline_chains_fuse_into_one_episode():
    nodes = [Node("src"), Node("a", ("src",), runtime="inline"),
             Node("b", ("a",), runtime="inline", leases=(("db", "read"),), resources={"gpu": 1}),
             Node("c", ("b",), runtime="inline", cost=2, resources={"gpu": 2}),
             Node("d", ("c",)), Node("e", ("c",))]
    assert fuse_inline(nodes) == [("a", "b", "c")]
    fused = {n.name: n for n in apply_fusion(nodes, [("a", "b", "c")])}
    assert sorted(fused) == ["c", "d", "e", "src"]
    assert fused["c"] == Node("c", ("src",), (("db", "read"),), {"gpu": 2}, 4.0, None, "inline")


def test_fan_out_fan_in_and_other_runtimes_break_chains():
    nodes = [Node("a", runtime="inline"), Node("b", ("a",), runtime="inline"),
             Node("c", ("a",), runtime="inline"),            # a has two consumers
             Node("d", ("b", "c"), runtime="inline"),        # d has two producers
             Node("e", ("d",), runtime="python"),            # not inline
             Node("f", ("e",), runtime="inline"), Node("g", ("f",), runtime="inline")]
    assert fuse_inline(nodes) == [("f", "g")]


def test_a_link_whose_leases_would_conflict_is_not_fused():
    nodes = [Node("a", leases=(("db", "write"),), runtime="inline"),
             Node("b", ("a",), leases=(("db/x", "read"),), runtime="inline"),
             Node("c", ("b",), leases=(("db/x", "read"),), runtime="inline")]
    assert fuse_inline(nodes) == [("b", "c")]


def test_runs_as_maps_original_nodes_to_the_episode_producing_them():
    nodes = [Node("raw"), Node("a", ("raw",), task_key="t", runtime="inline"),
             Node("b", ("raw",), task_key="t"), Node("c", ("a",), runtime="inline"),
             Node("dead")]
    opt = optimize(nodes, ["b", "c"])
    assert opt.shared == {"b": "a"} and opt.fused == (("a", "c"),)
    assert [opt.runs_as(x) for x in ("raw", "a", "b", "c", "dead")] == \
        ["raw", "c", "c", "c", None]


def test_a_fused_episode_reads_the_representative_of_a_shared_input():
    nodes = [Node("raw"), Node("a", ("raw",), task_key="t"), Node("b", ("raw",), task_key="t"),
             Node("c", ("b",), runtime="inline"), Node("d", ("c",), runtime="inline")]
    opt = optimize(nodes)
    assert opt.shared == {"b": "a"} and opt.fused == (("c", "d"),)
    assert [m.deps for m in opt.episodes["d"]] == [("a",), ("c",)]
    before = interpret(nodes)
    assert outputs_after(opt, nodes, {}) == before


def test_optimizer_rejects_an_invalid_graph():
    with pytest.raises(PlanError, match="unknown dataflow 'x'"):
        optimize([Node("a", ("x",))])
