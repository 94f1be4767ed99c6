"""Conformance suite `optimize`: dead-node elimination and common-subexpression sharing each
keep outputs identical, checked by running the original and the optimized program with a small
interpreter (issue 4, item 6), and both are on the planning path: a plan on the optimized graph
plans each shared execution once and stays valid for the original input (issue 17, item 4).
There is no fusion pass: python tasks already run in persistent workers, so fusing a chain
saves no process start (bench/RESULTS.md, `## Optimizer (issue 17)`)."""
from __future__ import annotations

import hashlib

from e3logic.plan import (Node, PlanInput, eliminate_dead, optimize, schedule_optimized,
                          share_common, verify)


def run(nodes, inputs=None):
    """Execute each node as a pure function of its task and inputs. Returns every produced
    output by name."""
    inputs = inputs or {}
    pi = PlanInput(tuple(nodes))
    out: dict[str, str] = {}
    for name in pi.order:
        m = pi[name]
        text = repr((m.task_key or m.name, [out[d] for d in m.deps], inputs.get(m.name)))
        out[m.name] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return out


PROGRAM = [
    Node("raw"),
    Node("norm_a", ("raw",), task_key="normalize"),
    Node("norm_b", ("raw",), task_key="normalize"),                     # same task, same input
    Node("scale", ("norm_a",)),
    Node("clip", ("scale",)),
    Node("report", ("clip", "norm_b"), task_key="report"),
    Node("scratch", ("raw",), task_key="debug"),                        # nothing needs it
]


def produced(opt, nodes):
    got = run(opt.nodes)
    return {n.name: got[opt.runs_as(n.name)] for n in nodes if opt.runs_as(n.name) is not None}


def test_dead_node_elimination_keeps_only_what_targets_need():
    kept = eliminate_dead(PROGRAM, ["report"])
    assert "scratch" not in {n.name for n in kept}
    before, after = run(PROGRAM), run(kept)
    assert after["report"] == before["report"]


def test_common_subexpressions_execute_once():
    assert share_common(PROGRAM) == {"norm_b": "norm_a"}
    opt = optimize(PROGRAM)
    assert "norm_b" not in {n.name for n in opt.nodes}
    assert produced(opt, PROGRAM) == run(PROGRAM)


def test_different_inputs_are_not_shared():
    assert share_common(PROGRAM, {"norm_a": "h1", "norm_b": "h2"}) == {}


def test_all_passes_together_keep_outputs_identical_and_plan_fewer_executions():
    opt = optimize(PROGRAM, ["report"])
    assert opt.dead == ("scratch",)
    before = run(PROGRAM)
    after = produced(opt, PROGRAM)
    assert after == {k: before[k] for k in after} and after["report"] == before["report"]
    assert sorted(n.name for n in opt.nodes) == ["clip", "norm_a", "raw", "report", "scale"]
    pi = PlanInput(opt.nodes, {}, 2)
    assert verify(schedule_optimized(pi), pi) == []


def test_the_plan_shares_an_execution_and_drops_dead_nodes():
    pi = PlanInput(tuple(PROGRAM), {}, 1)
    plan = schedule_optimized(pi, targets=["report"])
    assert plan.shared == {"norm_a": ("norm_b",)}
    assert "scratch" not in plan.priority
    assert ("norm_a", "norm_b") in plan.batches      # one slot, the duplicate rides along
    assert plan.to_json()["shared"] == {"norm_a": ["norm_b"]}
    live = PlanInput(tuple(n for n in PROGRAM if n.name != "scratch"), {}, 1)
    assert verify(plan, live) == []
