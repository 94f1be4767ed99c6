"""The rerun policy decides: what `go --dry-run` would run is the rules' `dirty(D)` over the
observed facts, by both engines, and it is what `go` then executes; reasons name the path."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e3logic.dataflow.decide import (Policy, Prediction, decide, decision_facts,
                                     explain, explaining_facts, predict)
from e3logic.dataflow.go import Go
from tests.flows import api_project, in_process_go, write_package

SOURCES = ("inputs/s0", "inputs/s1", "inputs/s2")


def _package(shape: list[list[int]]) -> str:
    """`shape[i]`: the inputs of dataflow d<i> — j < 3 is source s<j>, j >= 3 the output of
    d<j-3> (always an earlier one). Each dataflow has a task of its own whose output names it
    and its inputs: outputs are distinct, so nothing is cut off early."""
    lines = ["from e3logic import sdk", "package = sdk.package('rand', '0.1.0')",
             "package.module('steps.py')"]
    for s in SOURCES:
        lines.append(f"package.dataset('{s}', value=0)")
    for i, ins in enumerate(shape):
        paths = [SOURCES[j] if j < 3 else f"outputs/d{j - 3}/out" for j in ins]
        lines.append(f"package.task('t{i}', 'steps:f{i}', runtime='inline')")
        lines.append(f"package.dataflow('d{i}', task='t{i}', inputs={paths!r}, output='out')")
    return "\n".join(lines) + "\n"


def _steps(n: int) -> str:
    return "".join(f"def f{i}(*xs):\n    return [{i}, *xs]\n\n" for i in range(n))


@st.composite
def projects(draw):
    n = draw(st.integers(2, 6))
    shape = []
    for i in range(n):
        choices = list(range(3)) + [3 + k for k in range(i)]
        shape.append(sorted(draw(st.sets(st.sampled_from(choices), min_size=1, max_size=2))))
    edits = draw(st.lists(st.one_of(
        st.tuples(st.just("set"), st.sampled_from(SOURCES), st.integers(0, 2)),
        st.tuples(st.just("lose"), st.integers(0, n - 1)),
        st.tuples(st.just("targets"), st.sets(st.integers(0, n - 1), min_size=1, max_size=2)),
        st.tuples(st.just("force"), st.integers(0, n - 1)),
        st.tuples(st.just("nothing"))), min_size=2, max_size=6))
    return shape, edits


def _dirty_by_engines(api, targets, force) -> dict[str, set]:
    """`dirty(D)` of the shipped rules over the facts a full observation gives, per engine."""
    g = Go(api, targets, force=force)
    ws = api.ws()
    root = g.snapshot = api.workspaces.root(ws)
    project, selected = g.prepare(ws)
    pred = predict(api.r, project, root, selected, force)
    why = explaining_facts(api.r, project, root, pred, g._base(ws))
    facts = decision_facts(project, selected, pred, force, why)
    program = Policy().program
    return {e: {d for d, in program.evaluate(facts, engine=e, only=["dirty"], trusted=True)
                ["dirty"]} for e in ("fast", "pydatalog")}


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(projects())
def test_what_go_would_run_is_the_rules_dirty_set_by_both_engines_and_what_go_executes(
        tmp_path_factory, case):
    shape, edits = case
    base = tmp_path_factory.mktemp("prop")
    pkg = write_package(base / "pkg", _package(shape), {"steps.py": _steps(len(shape))})
    api = api_project(base / "proj", pkg, "rand")
    first = in_process_go(api, executor="inline")
    assert first["status"] == "ok" and len(first["executed"]) == len(shape)
    for edit in edits:
        targets, force, lost = [], False, False
        if edit[0] == "set":
            api.set(edit[1], json.dumps(edit[2]).encode())
        elif edit[0] == "lose":  # the output object of a dataflow is gone from the store
            out = api.r.trees.find(api.workspaces.root(api.ws()), f"outputs/d{edit[1]}/out")
            api.r.objects.path(out["hash"]).unlink(missing_ok=True)
            lost = True
        elif edit[0] == "targets":
            targets = [f"d{i}" for i in sorted(edit[1])]
        elif edit[0] == "force":
            targets, force = [f"d{edit[1]}"], True
        dry = in_process_go(api, *targets, executor="inline", dry_run=True, force=force)
        engines = _dirty_by_engines(api, targets, force)
        assert set(dry["would_run"]) == engines["fast"] == engines["pydatalog"], (edit, dry)
        assert set(dry["reasons"]) == set(dry["would_run"])
        res = in_process_go(api, *targets, executor="inline", force=force)
        assert res["status"] == "ok", res
        if lost or force:  # recomputed bytes equal the memo's: dependents are cut off early
            assert set(res["executed"]) <= set(dry["would_run"])
        else:
            assert res["executed"] == dry["would_run"], (edit, res, dry)
        assert set(res["reasons"]) == set(res["executed"])
        again = Go(api, targets, executor="inline")
        assert again()["executed"] == []
        assert again.events.last("decided")["run"] == []


# -- reasons -----------------------------------------------------------------------------------
def test_a_chain_of_upstream_reasons_starts_at_the_changed_input():
    dirty = {"clean", "train", "report"}
    reasons = {"clean": [("input", "inputs/sales")], "train": [("upstream", "clean")],
               "report": [("upstream", "train")]}
    got = explain(dirty, reasons, {}, {"clean"})
    assert got == {"clean": "inputs/sales changed → clean",
                   "train": "inputs/sales changed → clean → train",
                   "report": "inputs/sales changed → clean → train → report"}


def test_a_dataflow_s_own_reason_wins_over_an_upstream_one_and_the_shortest_chain_is_named():
    dirty = {"a", "b", "c", "d"}
    reasons = {"a": [("code", "a")], "b": [("upstream", "a")],
               "c": [("upstream", "b"), ("upstream", "a"), ("failed", "c")],
               "d": [("upstream", "b"), ("upstream", "c")]}
    got = explain(dirty, reasons, {}, {"a", "c"})
    assert got["a"] == "task code of a changed"
    assert got["b"] == "task code of a changed → a → b"
    assert got["c"] == "failed last run"
    assert got["d"] == "c failed last run → c → d"  # c is nearer than a


def test_a_project_rule_names_its_file_and_line(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "volatile.dl").write_text('// rerun what fetches from outside\n\n'
                                       'dirty(D) :- tag(D, "volatile").\n')
    policy = Policy.for_project(tmp_path, tmp_path / "cache")
    assert policy.extended
    facts = {"tag": {("fetch", "volatile")}, "edge": {("fetch", "use")}, "miss": set()}
    dirty, reasons, by_rule = policy.decide(facts)
    assert dirty == {"fetch", "use"}
    assert by_rule == {"fetch": "rule volatile.dl:3"}
    assert explain(dirty, reasons, by_rule, set()) == {
        "fetch": "rule volatile.dl:3", "use": "rule volatile.dl:3 on fetch → fetch → use"}
    # loaded again from .e3/cache, it answers the same
    again = Policy.for_project(tmp_path, tmp_path / "cache")
    assert again.labels == policy.labels and again.decide(facts)[0] == dirty


def test_a_rule_made_dirty_dataflow_with_a_memo_hit_is_executed_anyway(tmp_path):
    class P:  # the smallest project `decide` reads: two dataflows, b after a
        dataflows = {"a": {"task": "t", "inputs": ["inputs/x"], "tags": ["volatile"]},
                     "b": {"task": "t", "inputs": ["outputs/a/out"]}}
        outputs = {"a": "outputs/a/out", "b": "outputs/b/out"}
        deps = {"a": [], "b": ["a"]}

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "v.dl").write_text('dirty(D) :- tag(D, "volatile").\n')
    pred = Prediction(["a", "b"], [], ["a", "b"], outputs={"a": "h1", "b": "h2"}, miss=set())
    got = decide(Policy.for_project(tmp_path), P, ["a", "b"], pred, False)
    assert got.run == ["a", "b"] and got.cached == []
    assert got.rule_forced == {"a"}  # b may still hit once a's bytes are known
    assert got.reasons["a"] == "rule v.dl:1"


def test_with_no_project_rules_the_policy_is_the_shipped_one():
    assert not Policy().extended


@pytest.mark.parametrize("engine", ["fast", "pydatalog"])
def test_impact_s_what_if_makes_readers_and_their_dependents_dirty(engine):
    facts = {"reads": {("a", "inputs/x"), ("c", "inputs/y")}, "edge": {("a", "b")},
             "changed": {("inputs/x",)}}
    got = Policy().program.evaluate(facts, engine=engine, only=["dirty"], trusted=True)
    assert got["dirty"] == {("a",), ("b",)}


def test_a_long_chain_shows_its_ends_and_how_many_it_leaves_out():
    names = [f"d{i}" for i in range(8)]
    reasons = {"d0": [("input", "inputs/x")]}
    reasons.update({b: [("upstream", a)] for a, b in zip(names, names[1:])})
    got = explain(set(names), reasons, {}, {"d0"})
    assert got["d3"] == "inputs/x changed → d0 → d1 → d2 → d3"
    assert got["d7"] == "inputs/x changed → d0 → d1 → … (4 more) → d6 → d7"


NAMES = [f"d{i}" for i in range(6)]
PATHS = ["inputs/a", "inputs/b", "inputs/c"]


@st.composite
def fact_sets(draw):
    """Random facts of the rerun policy over six dataflows (edges only forward: a DAG)."""
    pick = lambda xs, **kw: draw(st.sets(st.sampled_from(xs), **kw))  # noqa: E731
    edge = {(u, d) for u, d in draw(st.sets(st.tuples(st.sampled_from(NAMES),
                                                      st.sampled_from(NAMES)), max_size=8))
            if u < d}
    reads = draw(st.sets(st.tuples(st.sampled_from(NAMES), st.sampled_from(PATHS)),
                         max_size=8))
    return {"edge": edge, "reads": reads,
            "dataflow": {(n, "t") for n in NAMES},
            "miss": {(n,) for n in pick(NAMES, max_size=3)},
            "forced": {(n,) for n in pick(NAMES, max_size=2)},
            "changed": {(p,) for p in pick(PATHS, max_size=1)},
            "input_changed": {(p,) for p in pick(PATHS, max_size=2)},
            "code_changed": {(n,) for n in pick(NAMES, max_size=2)},
            "failed_last": {(n,) for n in pick(NAMES, max_size=2)},
            "never_run": {(n,) for n in pick(NAMES, max_size=2)},
            "output_lost": {(n,) for n in pick(NAMES, max_size=2)},
            "revoked_producer": {(n, "alice") for n in pick(NAMES, max_size=2)},
            "input_missing": {(n, p) for n, p in draw(st.sets(st.tuples(
                st.sampled_from(NAMES), st.sampled_from(PATHS)), max_size=2))}}


@settings(max_examples=150, deadline=None, derandomize=True)
@given(fact_sets())
def test_the_compiled_policy_answers_as_both_engines_interpret_dirty_dl(facts):
    from e3logic.dataflow.decide import compiled_decide

    dirty, reasons, _ = compiled_decide(facts)
    flat = {(d, k, a) for d, rs in reasons.items() for k, a in rs}
    program = Policy().program
    for engine in ("fast", "pydatalog"):
        got = program.evaluate(facts, engine=engine, only=["dirty", "reason"], trusted=True)
        assert {d for d, in got["dirty"]} == dirty, engine
        assert set(got["reason"]) == flat, engine


def test_a_project_without_rules_gets_the_compiled_policy_and_one_with_rules_the_rules(
        tmp_path):
    from e3logic.dataflow.decide import CompiledPolicy

    assert CompiledPolicy.matches()  # the shipped dirty.dl is the one compiled
    assert isinstance(Policy.for_project(tmp_path), CompiledPolicy)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "mine.dl").write_text('hot(D) :- tag(D, "hot").\n')
    assert isinstance(Policy.for_project(tmp_path), Policy)


def test_a_result_produced_under_a_revoked_key_is_dirty_and_its_readers_say_so():
    from e3logic.dataflow.decide import compiled_decide

    facts = {"edge": {("peak", "scaled")}, "reads": {("scaled", "outputs/peak/o")},
             "dataflow": {("peak", "t"), ("scaled", "t")},
             "revoked_producer": {("peak", "alice")}}
    dirty, reasons, by_rule = compiled_decide(facts)
    assert dirty == {"peak", "scaled"}
    assert explain(dirty, reasons, by_rule, set()) == {
        "peak": "produced under revoked key alice",
        "scaled": "produced under revoked key alice → peak → scaled"}
    got = Policy().program.evaluate(facts, engine="fast", only=["dirty", "reason"],
                                    trusted=True)
    assert {d for d, in got["dirty"]} == dirty


@st.composite
def graphs_and_observations(draw):
    """A random package graph (d<i> reads sources and earlier outputs), a selection of it
    and random observations over the selection."""
    from e3logic.dataflow.model import Project

    n = draw(st.integers(1, 7))
    dataflows = {}
    for i in range(n):
        ins = draw(st.lists(st.integers(0, 2 + i), max_size=3, unique=True))
        dataflows[f"d{i}"] = {"task": "t", "output": "out", "inputs": sorted(
            SOURCES[j] if j < 3 else f"outputs/d{j - 3}/out" for j in ins)}
    project = Project({"dataflows": dataflows}, "h", {})
    names = sorted(dataflows)
    selected = sorted(draw(st.sets(st.sampled_from(names), min_size=1)))
    pick = lambda xs, **kw: sorted(draw(st.sets(st.sampled_from(xs), **kw)))  # noqa: E731
    paths = sorted({p for d in dataflows.values() for p in d["inputs"]} | set(SOURCES))
    observed = {
        "miss": {(d,) for d in pick(selected, max_size=2)},
        "forced": {(d,) for d in pick(selected, max_size=1)},
        "changed": {(p,) for p in pick(paths, max_size=1)},
        "input_changed": {(p,) for p in pick(paths, max_size=2)},
        "code_changed": {(d,) for d in pick(selected, max_size=2)},
        "failed_last": {(d,) for d in pick(selected, max_size=1)},
        "never_run": {(d,) for d in pick(selected, max_size=1)},
        "output_lost": {(d,) for d in pick(selected, max_size=1)},
        "revoked_producer": {(d, "alice") for d in pick(selected, max_size=1)},
        "input_missing": {(d, p) for d in pick(selected, max_size=1) for p in paths[:1]}}
    return project, selected, observed


@settings(max_examples=200, deadline=None, derandomize=True)
@given(graphs_and_observations())
def test_the_compiled_policy_over_the_package_graph_answers_as_over_its_facts(case):
    from e3logic.dataflow.decide import ProjectGraph, compiled_decide, graph_facts

    project, selected, observed = case
    facts = {**graph_facts(project, selected), **observed}
    assert compiled_decide(observed, ProjectGraph(project, selected)) == compiled_decide(facts)
