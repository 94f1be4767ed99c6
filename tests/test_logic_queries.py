"""Named queries over the shipped rules (e3logic/logic/queries.py)."""
import pytest

import e3logic
from e3logic.logic import FACT_RELATIONS, LimitError, Limits, Logic, Program, queries, shipped_program


def project(spec: dict) -> dict:
    """Facts for dataflows {name: (reads, output path)}, as the repository projects them."""
    writes = {(d, out) for d, (_, out) in spec.items()}
    reads = {(d, p) for d, (ins, _) in spec.items() for p in ins}
    producer = {p: d for d, p in writes}
    return {
        "dataflow": {(d, f"task_{d}") for d in spec},
        "writes": writes, "reads": reads,
        "edge": {(producer[p], d) for d, p in reads if p in producer},
        "input_dataset": {(p,) for _, p in reads if p not in producer},
    }


#        raw ─ clean ─┬─ left ──┬─ report
#                     └─ right ─┘
#        other_in ─ side
DIAMOND = project({
    "clean": (["inputs/raw"], "outputs/clean"),
    "left": (["outputs/clean"], "outputs/left"),
    "right": (["outputs/clean"], "outputs/right"),
    "report": (["outputs/left", "outputs/right"], "outputs/report"),
    "side": (["inputs/other"], "outputs/side"),
})


@pytest.fixture(params=["fast", "pydatalog"])
def engine(request):
    return request.param


def test_direct_and_transitive_deps_and_dependents(engine):
    lg = Logic(DIAMOND, engine=engine)
    assert lg.deps("report") == ["left", "right"]
    assert lg.deps("report", transitive=True) == ["clean", "left", "right"]
    assert lg.dependents("clean") == ["left", "right"]
    assert lg.dependents("clean", transitive=True) == ["left", "report", "right"]
    assert lg.reachable("side") == [] and lg.ancestors("clean") == []


def test_dirty_closure_of_a_mid_node_is_itself_and_downstream_only(engine):
    lg = Logic(DIAMOND, engine=engine)
    assert lg.dirty_closure(["outputs/clean"]) == ["left", "report", "right"]
    assert lg.dirty_closure(["outputs/left"]) == ["report"]
    assert lg.dirty_closure(["inputs/raw"]) == ["clean", "left", "report", "right"]
    assert lg.dirty_closure([]) == []
    assert lg.dirty_closure("inputs/other") == ["side"]


def test_function_forms_take_the_facts_directly(engine):
    assert queries.deps(DIAMOND, "left", engine=engine) == ["clean"]
    assert queries.dependents(DIAMOND, "left", transitive=True, engine=engine) == ["report"]
    assert queries.reachable(DIAMOND, "clean", engine=engine) == ["left", "report", "right"]
    assert queries.ancestors(DIAMOND, "report", engine=engine) == ["clean", "left", "right"]
    assert queries.dirty_closure(DIAMOND, ["inputs/other"], engine=engine) == ["side"]


def test_shipped_graph_relations_sources_and_sinks(engine):
    lg = Logic(DIAMOND, engine=engine)
    assert lg.query("?- source(D).").rows == [("clean",), ("side",)]
    assert lg.query("?- sink(D).").rows == [("report",), ("side",)]
    assert lg.query('?- dataflow_input("outputs/report", P).').rows == [("inputs/raw",)]


HISTORY = {
    # raw@r1 → k1 (clean) → clean@c1 → k2 (model) → model@m2; model also read params@p1
    "execution": {("k1", "clean", "t1"), ("k2", "model", "t2"), ("k0", "model", "t2")},
    "consumed": {("k1", "inputs/raw", "r1"), ("k2", "outputs/clean", "c1"),
                 ("k2", "inputs/params", "p1"), ("k0", "outputs/clean", "c0")},
    "produced": {("k1", "outputs/clean", "c1"), ("k2", "outputs/model", "m2"),
                 ("k0", "outputs/model", "m0")},
    "current": {("outputs/model", "m2"), ("outputs/clean", "c1"), ("inputs/raw", "r1"),
                ("inputs/params", "p1")},
}


def test_lineage_follows_the_current_value_through_consumed_inputs(engine):
    lg = Logic(HISTORY, engine=engine)
    assert lg.lineage("outputs/model") == {
        "path": "outputs/model", "executions": ["k1", "k2"],
        "inputs": [["inputs/params", "p1"], ["inputs/raw", "r1"], ["outputs/clean", "c1"]]}
    assert lg.query('?- lineage_source("outputs/model", P, H).').rows == \
        [("inputs/params", "p1"), ("inputs/raw", "r1")]
    assert queries.lineage(HISTORY, "inputs/raw", engine=engine)["executions"] == []


def test_why_builds_the_execution_tree():
    tree = queries.why(HISTORY, "outputs/model")
    assert (tree["execution"], tree["task"], tree["dataflow"], tree["hash"]) == \
        ("k2", "t2", "model", "m2")
    assert [(i["path"], i["hash"], i["execution"]) for i in tree["inputs"]] == \
        [("inputs/params", "p1", None), ("outputs/clean", "c1", "k1")]
    assert tree["inputs"][1]["inputs"][0]["path"] == "inputs/raw"


def test_why_falls_back_to_the_dataflow_lineage_before_any_execution():
    tree = queries.why(DIAMOND, "outputs/report")
    assert tree["dataflow"] == "report" and tree["execution"] is None
    assert [i["path"] for i in tree["inputs"]] == ["outputs/left", "outputs/right"]
    clean_left = tree["inputs"][0]["inputs"][0]
    assert clean_left["dataflow"] == "clean" and clean_left["inputs"][0]["path"] == "inputs/raw"
    assert clean_left is tree["inputs"][1]["inputs"][0]  # shared, built once


def test_why_handles_a_100000_deep_history_iteratively():
    n = 100_000
    facts = {"execution": {(f"k{i}", f"d{i}", "t") for i in range(n)},
             "consumed": {(f"k{i}", f"p{i}", f"h{i}") for i in range(n)},
             "produced": {(f"k{i}", f"p{i + 1}", f"h{i + 1}") for i in range(n)},
             "current": {(f"p{n}", f"h{n}")}}
    node, depth = queries.why(facts, f"p{n}"), 0
    while node["inputs"]:
        node, depth = node["inputs"][0], depth + 1
    assert depth == n and node["path"] == "p0"


LEASES = {
    "lease": {("load", "db", "write"), ("report", "db/sales", "read"),
              ("audit", "db/hr", "read"), ("stats", "files/a", "read"),
              ("stats2", "files/a", "read"), ("gpu1", "gpu/0", "write"),
              ("gpu2", "gpu/0", "write"), ("gpu3", "gpu/1", "write")},
    "under": {("db/sales", "db"), ("db/hr", "db")},
}


def test_lease_conflicts_include_prefixes_and_never_read_read(engine):
    assert Logic(LEASES, engine=engine).lease_conflicts() == [
        ("audit", "load", "db/hr", "db"),
        ("gpu1", "gpu2", "gpu/0", "gpu/0"),
        ("load", "report", "db", "db/sales"),
    ]


def test_lease_conflict_relation_is_symmetric(engine):
    rows = Logic(LEASES, engine=engine).query("?- lease_conflict(A, B, P, Q).").rows
    assert {(b, a, q, p) for a, b, p, q in rows} == set(rows)


EPISODES = {
    "episode": {(e, f"d_{e}") for e in ("e1", "e2", "e3", "e4", "e5", "e6", "e7")},
    "state": {("e1", "await"), ("e2", "await"), ("e3", "await"), ("e4", "await"),
              ("e5", "fail"), ("e6", "await"), ("e7", "ok")},
    "awaits": {("e1", "e2"), ("e2", "e3"), ("e3", "e1"), ("e4", "e1"), ("e6", "e5")},
}


def test_an_await_cycle_is_detected_and_what_waits_on_it_is_stuck(engine):
    lg = Logic(EPISODES, engine=engine)
    assert lg.await_cycles() == [["e1", "e2", "e3"]]
    assert lg.query("?- deadlocked(E).").rows == [("e1",), ("e2",), ("e3",)]
    assert lg.stuck() == ["e1", "e2", "e3", "e4", "e6"]
    assert queries.await_cycles({"awaits": {("a", "b")}}, engine=engine) == []


PACKAGES = {
    "package": {("app", "1.0.0"), ("lib", "2.1.0"), ("base", "0.3.0"), ("util", "1.0.0")},
    "requires": {("app", "lib"), ("lib", "base"), ("app", "util"), ("util", "base"),
                 ("util", "gone")},
    "package_dep": {("app", "1.0.0", "lib", "^2.0.0")},
}


def test_transitive_and_reverse_package_dependencies(engine):
    lg = Logic(PACKAGES, engine=engine)
    assert lg.package_deps("app") == ["base", "gone", "lib", "util"]
    assert lg.package_deps("base", reverse=True) == ["app", "lib", "util"]
    assert lg.query("?- missing_dep(N, D).").rows == [("util", "gone")]
    assert queries.package_deps(PACKAGES, "lib", engine=engine) == ["base"]


def test_relations_document_every_fact_and_derived_relation():
    rels = {r["name"]: r for r in Logic().relations()}
    assert set(FACT_RELATIONS) <= set(rels)
    for name, r in rels.items():
        assert r["doc"], f"{name} has no doc comment"
        assert r["kind"] == ("fact" if name in FACT_RELATIONS else "derived")
    assert rels["edge"]["doc"].startswith("edge(Up, Down): ")
    assert rels["dirty"]["arity"] == 1


def test_fact_relation_arities_match_the_shipped_rules():
    arities = {r.name: r.arity for r in shipped_program().relations()}
    for name, (cols, _) in FACT_RELATIONS.items():
        assert arities.get(name, len(cols)) == len(cols), name


def test_every_shipped_rule_file_exists_and_loads():
    for f in queries.SHIPPED_FILES:
        assert (e3logic.RULES_DIR / f).is_file()
    assert {"deps", "dependents", "reachable", "ancestors", "dirty", "dirty_path", "lineage",
            "lineage_input", "lease_conflict", "await_chain", "deadlocked", "stuck",
            "package_dep_t", "reverse_dep_t"} <= set(shipped_program().derived)


def test_user_rule_files_extend_the_shipped_rules(tmp_path):
    f = tmp_path / "mine.dl"
    f.write_text("// fan_in(D): a dataflow with two or more upstreams.\n"
                 "fan_in(D) :- deps(D, A), deps(D, B), A != B.\n")
    lg = Logic(DIAMOND, rule_files=[f])
    assert lg.query("?- fan_in(D).").rows == [("report",)]
    assert {"name": "fan_in", "arity": 1, "kind": "derived",
            "doc": "fan_in(D): a dataflow with two or more upstreams."} in lg.relations()


def test_update_replaces_the_facts():
    lg = Logic(DIAMOND)
    assert lg.deps("left") == ["clean"]
    lg.update(project({"left": (["inputs/x"], "outputs/left")}))
    assert lg.deps("left") == []


def test_a_query_can_force_the_other_engine():
    lg = Logic(DIAMOND, engine="fast")
    assert lg.query("?- reachable(X, Y).", engine="pydatalog").engine == "pydatalog"
    assert lg.query("?- reachable(X, Y).").engine == "fast"


RUNAWAY = "n(0).\nn(Y + 1) :- n(Y).\n"


def test_logic_takes_limits_and_applies_a_changed_attribute_to_its_prepared_base():
    program = Program.parse(RUNAWAY)
    logic = Logic({}, program=program, engine="fast", limits=Limits(100))
    with pytest.raises(LimitError, match="more than 100 derived"):
        logic.query("n(X)")
    logic.limits = Limits(200)
    with pytest.raises(LimitError, match="more than 200 derived"):
        logic.query("n(X)")


def test_a_runaway_user_rule_file_stops_under_the_default_limits_shape(tmp_path):
    rules = tmp_path / "grow.dl"
    rules.write_text(RUNAWAY)
    logic = Logic(DIAMOND, rule_files=[rules], engine="fast", limits=Limits(2000))
    with pytest.raises(LimitError, match=r"more than 2,000 derived facts \(n/1 keeps growing; "
                                         r".*grow.dl:2\)"):
        logic.query("n(X)")
    assert logic.dependents("clean") == ["left", "right"]


@pytest.mark.parametrize("engine", ["fast", "pydatalog"])
def test_tainted_follows_provenance_from_a_revoked_origin_transitively(engine):
    facts = {"origin": {("k1", "alice", "team"), ("k9", "bob", "team")},
             "revoked": {("alice",)},
             "produced": {("k1", "outputs/a/o", "h1"), ("k2", "outputs/b/o", "h2"),
                          ("k3", "outputs/c/o", "h3"), ("k9", "outputs/z/o", "h9")},
             "consumed": {("k2", "outputs/a/o", "h1"), ("k3", "inputs/x", "hx")},
             "current": {("outputs/a/o", "h1"), ("outputs/b/o", "h2"), ("outputs/c/o", "h3"),
                         ("outputs/z/o", "h9")}}
    logic = Logic(facts, engine=engine)
    assert logic.query("tainted(P)").rows == [("outputs/a/o",), ("outputs/b/o",)]
    assert logic.query("pulled_from(P, R)").rows == [("outputs/a/o", "team"),
                                                     ("outputs/z/o", "team")]
