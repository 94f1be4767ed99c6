"""Conformance suite `optimize`: dead-node elimination, common-subexpression sharing and inline
fusion each keep outputs identical, checked by running the original and the optimized program
with a small interpreter (issue 4, item 6)."""
from __future__ import annotations

import hashlib

from e3logic.plan import (Node, PlanInput, eliminate_dead, fuse_inline, optimize, schedule,
                          share_common, verify)


def run(nodes, episodes=None, inputs=None):
    """Execute each node as a pure function of its task and inputs; a fused node runs its
    episode's members in order. Returns every produced output by name."""
    inputs, episodes = inputs or {}, episodes or {}
    pi = PlanInput(tuple(nodes))
    out: dict[str, str] = {}
    for name in pi.order:
        for m in episodes.get(name, (pi[name],)):
            text = repr((m.task_key or m.name, [out[d] for d in m.deps], inputs.get(m.name)))
            out[m.name] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return out


PROGRAM = [
    Node("raw"),
    Node("norm_a", ("raw",), task_key="normalize", runtime="inline"),
    Node("norm_b", ("raw",), task_key="normalize", runtime="inline"),   # same task, same input
    Node("scale", ("norm_a",), runtime="inline"),
    Node("clip", ("scale",), runtime="inline"),
    Node("report", ("clip", "norm_b"), task_key="report"),
    Node("scratch", ("raw",), task_key="debug"),                        # nothing needs it
]


def produced(opt, nodes):
    got = run(opt.nodes, opt.episodes)
    return {n.name: got[opt.shared.get(n.name, n.name)] for n in nodes
            if opt.runs_as(n.name) is not None}


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


def test_inline_chains_fuse_into_one_episode():
    assert fuse_inline(PROGRAM) == [("norm_a", "scale", "clip")]
    # after sharing, report reads norm_a too: norm_a fans out and leaves the chain
    opt = optimize(PROGRAM, ["report"])
    assert opt.fused == (("scale", "clip"),)
    assert [m.name for m in opt.episodes["clip"]] == ["scale", "clip"]


def test_all_passes_together_keep_outputs_identical_and_plan_fewer_episodes():
    opt = optimize(PROGRAM, ["report"])
    assert opt.dead == ("scratch",)
    before = run(PROGRAM)
    after = produced(opt, PROGRAM)
    assert after == {k: before[k] for k in after} and after["report"] == before["report"]
    assert sorted(n.name for n in opt.nodes) == ["clip", "norm_a", "raw", "report"]
    pi = PlanInput(opt.nodes, {}, 2)
    assert verify(schedule(pi), pi) == []


def test_fusion_is_skipped_across_fan_out_and_non_inline_runtimes():
    nodes = [Node("a", runtime="inline"), Node("b", ("a",), runtime="inline"),
             Node("c", ("a",), runtime="inline"), Node("d", ("b",), runtime="python")]
    assert fuse_inline(nodes) == []
