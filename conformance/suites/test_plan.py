"""Conformance suite `plan`: capped batches, lease assignment, determinism, plan errors and the
checker (issue 4, items 1-4 and 7), through the public `e3logic.plan` API."""
from __future__ import annotations

import pytest

from e3logic.plan import (Node, PlanError, PlanInput, check, make_plan, schedule, select,
                          verify)

# a small analysis: raw -> clean -> {features, stats} -> report, plus an independent branch
PIPELINE = [
    Node("raw"),
    Node("clean", ("raw",)),
    Node("features", ("clean",), leases=(("db/features", "write"),)),
    Node("stats", ("clean",), leases=(("db", "read"),)),
    Node("train", ("features",), resources={"gpu": 1}, cost=4),
    Node("report", ("train", "stats")),
    Node("weather"),
    Node("weather_model", ("weather",), resources={"gpu": 1}, cost=2),
]
CAPS = {"gpu": 1}


def restricted(plan, names):
    """The plan's batches keeping only `names`, empty batches dropped."""
    return [tuple(n for n in b if n in names) for b in plan.batches
            if any(n in names for n in b)]


def test_every_batch_respects_dependencies_cap_leases_and_resources():
    for cap in (None, 1, 2, 3):
        pi = PlanInput(tuple(PIPELINE), CAPS, cap)
        plan = schedule(pi)
        assert verify(plan, pi) == []
        assert sorted(n for b in plan.batches for n in b) == sorted(pi.names)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_cap_k_gives_no_batch_wider_than_k(k):
    sources = [Node(f"t{i:02d}") for i in range(17)]
    nodes = sources + [Node("sink", tuple(n.name for n in sources))]
    plan = schedule(PlanInput(tuple(nodes), {}, k))
    assert max(len(b) for b in plan.batches) == min(k, 17)
    assert len(plan.batches) == -(-17 // k) + 1  # the n/cap bound, then the sink


def test_conflicting_writers_never_share_a_batch():
    nodes = [Node("load_sales", leases=(("db/sales", "write"),)),
             Node("load_eu", leases=(("db/sales/eu", "write"),)),
             Node("vacuum", leases=(("db", "write"),)),
             Node("load_hr", leases=(("db/hr", "write"),))]
    plan = schedule(PlanInput(tuple(nodes), {}, None))
    where = plan.batch_of
    assert len({where["load_sales"], where["load_eu"], where["vacuum"]}) == 3
    assert where["vacuum"] != where["load_hr"]
    assert len(plan.batches) == 3  # load_hr shares with a sibling writer, not with vacuum


def test_readers_of_one_path_share_a_batch():
    nodes = [Node(f"read{i}", leases=(("db/sales", "read"),)) for i in range(4)]
    nodes.append(Node("read_all", leases=(("db", "read"),)))
    plan = schedule(PlanInput(tuple(nodes), {}, 8))
    assert len(plan.batches) == 1 and len(plan.batches[0]) == 5


def test_a_writer_waits_for_readers_of_an_ancestor_path():
    nodes = [Node("scan", leases=(("db", "read"),), cost=3),
             Node("append", leases=(("db/sales", "write"),))]
    plan = schedule(PlanInput(tuple(nodes), {}, None))
    assert plan.batches == (("scan",), ("append",))
    assert plan.makespan == 4.0


def test_lease_assignment_says_who_holds_what_in_which_batch():
    plan = schedule(PlanInput(tuple(PIPELINE), CAPS, 2))
    where = plan.batch_of
    grants = {(g.dataflow, g.path, g.mode): g.batch for g in plan.leases}
    assert grants == {("features", "db/features", "write"): where["features"],
                      ("stats", "db", "read"): where["stats"]}
    assert where["features"] != where["stats"]


def test_gpu_capacity_keeps_gpu_dataflows_apart():
    plan = schedule(PlanInput(tuple(PIPELINE), CAPS, None))
    where = plan.batch_of
    assert where["train"] != where["weather_model"]


def test_plan_is_deterministic_across_runs_and_input_order():
    a = schedule(PlanInput(tuple(PIPELINE), CAPS, 2))
    b = schedule(PlanInput(tuple(reversed(PIPELINE)), dict(reversed(CAPS.items())), 2))
    assert a == b and a.to_json() == b.to_json()


def test_critical_path_is_scheduled_first():
    plan = schedule(PlanInput(tuple(PIPELINE), CAPS, 1))
    assert plan.critical_path == ("raw", "clean", "features", "train", "report")
    assert plan.batches[0] == ("raw",)


def test_a_dirty_only_plan_equals_the_full_plan_restricted_to_the_dirty_closure():
    # DESIGN §7: only the dirty closure of a change runs; it is planned as the full plan would
    for cap, changed in [(None, ["clean"]), (2, ["clean"]), (2, ["raw"]), (3, ["features"])]:
        full = make_plan(PIPELINE, CAPS, cap)
        dirty = make_plan(PIPELINE, CAPS, cap, dirty=changed)
        closure = {n.name for n in select(PIPELINE, dirty=changed)}
        assert [list(b) for b in dirty.batches] == [list(b) for b in restricted(full, closure)]
        assert set(dirty.priority) == closure


def test_only_what_the_targets_need_is_planned():
    plan = make_plan(PIPELINE, CAPS, 2, dirty=["raw", "weather"], targets=["stats"])
    assert plan.batches == (("raw",), ("clean",), ("stats",))


def test_plan_json_has_the_cli_keys():
    doc = schedule(PlanInput(tuple(PIPELINE), CAPS, 2)).to_json()
    assert {"batches", "leases", "critical_path", "makespan"} <= set(doc)
    assert doc["leases"][0].keys() == {"batch", "dataflow", "path", "mode"}


def test_plan_table_lists_batch_dataflow_leases_and_cost():
    rows = schedule(PlanInput(tuple(PIPELINE), CAPS, 2)).table()
    assert len(rows) == len(PIPELINE)
    assert ("features" in {r[1] for r in rows}) and all(len(r) == 4 for r in rows)
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)


@pytest.mark.parametrize("nodes, caps, message", [
    ([Node("train", resources={"gpu": 2})], {"gpu": 1},
     "dataflow 'train' needs gpu=2 but the capacity is 1"),
    ([Node("sync", leases=(("db", "write"), ("db/sales", "read")))], {},
     "dataflow 'sync' holds conflicting leases"),
    ([Node("a", ("b",)), Node("b", ("a",))], {}, "dependency cycle: a -> b -> a"),
    ([Node("report", ("clen",)), Node("clean")], {},
     "dataflow 'report' depends on unknown dataflow 'clen'"),
])
def test_an_impossible_plan_is_a_one_line_plan_error_naming_the_dataflow(nodes, caps, message):
    with pytest.raises(PlanError, match=message) as info:
        schedule(PlanInput(tuple(nodes), caps, 2))
    assert "\n" not in str(info.value) and info.value.exit_code == 2


def test_the_checker_names_the_violated_constraint():
    pi = PlanInput(tuple(PIPELINE), CAPS, 2)
    bad = [["raw", "weather"], ["clean", "weather_model"], ["features", "stats"], ["train"],
           ["report"]]
    assert [v.constraint for v in verify(bad, pi)] == ["leases"]
    bad = [["raw", "weather"], ["clean", "weather_model"], ["features"], ["stats"],
           ["train", "report"]]
    assert [v.constraint for v in verify(bad, pi)] == ["dependencies"]
    bad = [["raw", "weather", "clean"], ["weather_model"], ["features"], ["stats"], ["train"],
           ["report"]]
    assert [v.constraint for v in verify(bad, pi)] == ["dependencies", "cap"]
    with pytest.raises(PlanError, match="invalid plan: dependencies: dataflow 'clean' in batch 0 "
                                        "depends on 'raw'.*\\(and 1 more\\)"):
        check(bad, pi)


# -- acceptance: the real `e3 plan` on a built package (issue 17, item 4) ---------------------

def test_e3_plan_shows_two_dataflows_sharing_one_execution(tmp_path_factory, tmp_path):
    """`twins` (tests/flows.py): `a` and `b` apply one shell task to one input, `c` reads
    both. The plan runs that execution once: `b` rides in `a`'s batch, taking no slot."""
    from tests.flows import copy_project

    p = copy_project(tmp_path_factory, "twins", tmp_path / "twins")
    r = p.e3("--json", "plan", "-j", "1")
    assert r.code == 0, r
    doc = r.json
    assert doc["shared"] == {"a": ["b"]}
    assert doc["batches"] == [["a", "b"], ["c"]]        # cap 1: b takes no slot of its own
    assert {"batches", "leases", "critical_path", "makespan"} <= set(doc)
    r = p.e3("--json", "plan", "c", "-j", "1")           # a target: the same, nothing dead here
    assert r.json["shared"] == {"a": ["b"]}
    r = p.e3("--json", "plan", "a", "-j", "1")           # b is not needed by the target a
    assert r.json["batches"] == [["a"]] and r.json["shared"] == {}
    # `go` orders its work by the same plan
    r = p.e3("--json", "go", "-j", "1", "--dry-run")
    assert r.code == 0, r
    assert r.json["plan"]["shared"] == {"a": ["b"]} and r.json["would_run"] == ["a", "b", "c"]
