"""Conformance suite `analyze`: the logic layer (issue 3) through the public API —
`Program` and the named queries over the shipped rules — on both engines."""
from __future__ import annotations

import pytest

from e3logic.logic import (ArityError, DatalogSyntaxError, EngineError, Logic, Program,
                           StratificationError, UnknownPredicateError, UnsafeVariableError,
                           queries)

ENGINES = ["fast", "pydatalog"]


@pytest.fixture(params=ENGINES)
def engine(request):
    return request.param


def project(spec: dict) -> dict:
    """Facts for dataflows {name: (reads, output path)}, as the repository projects them."""
    writes = {(d, out) for d, (_, out) in spec.items()}
    reads = {(d, p) for d, (ins, _) in spec.items() for p in ins}
    producer = {p: d for d, p in writes}
    return {"dataflow": {(d, "task") for d in spec}, "writes": writes, "reads": reads,
            "edge": {(producer[p], d) for d, p in reads if p in producer},
            "input_dataset": {(p,) for _, p in reads if p not in producer}}


def chain(n: int) -> dict:
    return project({f"d{i}": ([f"p{i - 1}" if i else "in"], f"p{i}") for i in range(n)})


# ------------------------------------------------------------------------------- graphs

def test_deep_chain_deps_dependents_reachable_ancestors(engine):
    n = 300 if engine == "pydatalog" else 5000
    lg = Logic(chain(n), engine=engine)
    assert lg.deps("d5") == ["d4"] and lg.dependents("d5") == ["d6"]
    assert len(lg.reachable("d0")) == n - 1
    assert len(lg.ancestors(f"d{n - 1}")) == n - 1
    assert lg.reachable(f"d{n - 1}") == [] and lg.ancestors("d0") == []


def test_a_100000_deep_chain_on_the_fast_engine():
    lg = Logic(chain(100_000), engine="fast")
    assert len(lg.reachable("d0")) == 99_999
    assert len(lg.dirty_closure(["p50000"])) == 49_999


DIAMOND = project({"top": (["in"], "p/top"), "left": (["p/top"], "p/left"),
                   "right": (["p/top"], "p/right"), "bottom": (["p/left", "p/right"], "p/bottom")})


def test_diamond_has_two_paths_but_each_node_once(engine):
    lg = Logic(DIAMOND, engine=engine)
    assert lg.reachable("top") == ["bottom", "left", "right"]
    assert lg.ancestors("bottom") == ["left", "right", "top"]
    assert lg.deps("bottom") == ["left", "right"]
    assert lg.dependents("top") == ["left", "right"]


def test_cycles_terminate_and_every_node_reaches_every_node(engine):
    facts = {"edge": {(f"n{i}", f"n{(i + 1) % 7}") for i in range(7)} | {("n2", "x")}}
    lg = Logic(facts, engine=engine)
    assert lg.reachable("n0") == [f"n{i}" for i in range(7)] + ["x"]
    assert lg.ancestors("n0") == [f"n{i}" for i in range(7)]
    full = lg.query("?- reachable(X, Y).").rows
    assert len(full) == 7 * 8


def test_right_recursive_user_rules_terminate_on_a_cycle(engine):
    program = Program.parse("r(X, Y) :- e(X, Y).\nr(X, Y) :- e(X, Z), r(Z, Y).")
    res = program.evaluate({"e": {("a", "b"), ("b", "c"), ("c", "a")}}, engine=engine)
    assert len(res["r"]) == 9


# ------------------------------------------------------------------------------- dirty

WIDE = project({"root": (["in"], "p/root"), "mid": (["p/root", "in/mid"], "p/mid"),
                "sibling": (["p/root"], "p/sibling"), "down1": (["p/mid"], "p/down1"),
                "down2": (["p/down1", "p/sibling"], "p/down2"), "other": (["in2"], "p/other")})


def test_dirty_closure_of_a_mid_node_is_itself_and_downstream(engine):
    lg = Logic(WIDE, engine=engine)
    assert lg.dirty_closure(["in/mid"]) == ["down1", "down2", "mid"]
    clean = lg.query("?- clean(D).", extra={"changed": {("in/mid",)}}).rows
    assert clean == [("other",), ("root",), ("sibling",)]   # siblings and ancestors clean


def test_a_changed_output_dirties_its_readers_not_its_writer(engine):
    lg = Logic(WIDE, engine=engine)
    assert lg.dirty_closure(["p/mid"]) == ["down1", "down2"]
    assert lg.dirty_closure(["p/root"]) == ["down1", "down2", "mid", "sibling"]


def test_dirty_paths_are_the_outputs_of_dirty_dataflows(engine):
    lg = Logic(WIDE, engine=engine)
    rows = lg.query("?- dirty_path(P).", extra={"changed": {("in/mid",)}}).rows
    assert rows == [("p/down1",), ("p/down2",), ("p/mid",)]


# ------------------------------------------------------------------------------- provenance

def test_provenance_through_a_chain_of_executions(engine):
    n = 20
    facts = {"execution": {(f"k{i}", f"d{i}", f"t{i}") for i in range(n)},
             "consumed": {(f"k{i}", f"p{i}", f"h{i}") for i in range(n)},
             "produced": {(f"k{i}", f"p{i + 1}", f"h{i + 1}") for i in range(n)},
             "current": {(f"p{n}", f"h{n}")}}
    # a stale execution of the last step must not appear: it produced another hash
    facts["produced"] |= {("stale", f"p{n}", "old")}
    lg = Logic(facts, engine=engine)
    result = lg.lineage(f"p{n}")
    assert result["executions"] == sorted(f"k{i}" for i in range(n))
    assert ["p0", "h0"] in result["inputs"]
    assert lg.query(f'?- lineage_source("p{n}", P, H).').rows == [("p0", "h0")]
    tree = queries.why(facts, f"p{n}")
    assert tree["execution"] == f"k{n - 1}" and tree["task"] == f"t{n - 1}"


# ------------------------------------------------------------------------------- leases

def test_lease_conflicts_with_prefixes(engine):
    facts = {"lease": {("vacuum", "db", "write"), ("load", "db/sales", "write"),
                       ("report", "db/sales/eu", "read"), ("hr", "db/hr", "read"),
                       ("r1", "files", "read"), ("r2", "files", "read")},
             "under": {("db/sales", "db"), ("db/sales/eu", "db"), ("db/sales/eu", "db/sales"),
                       ("db/hr", "db")}}
    assert Logic(facts, engine=engine).lease_conflicts() == [
        ("hr", "vacuum", "db/hr", "db"),
        ("load", "report", "db/sales", "db/sales/eu"),
        ("load", "vacuum", "db/sales", "db"),
        ("report", "vacuum", "db/sales/eu", "db"),
    ]


# ------------------------------------------------------------------------------- episodes

def test_an_await_cycle_is_detected(engine):
    facts = {"awaits": {("a", "b"), ("b", "c"), ("c", "a"), ("d", "a"), ("x", "y")},
             "state": {(e, "await") for e in "abcdx"} | {("y", "cxl")}}
    lg = Logic(facts, engine=engine)
    assert lg.await_cycles() == [["a", "b", "c"]]
    assert lg.stuck() == ["a", "b", "c", "d", "x"]


# ------------------------------------------------------------------------------- packages

def test_transitive_package_dependencies(engine):
    facts = {"requires": {("app", "web"), ("web", "http"), ("http", "sockets"),
                          ("app", "db"), ("db", "sockets")},
             "package": {(n, "1.0.0") for n in ("app", "web", "http", "sockets", "db")}}
    lg = Logic(facts, engine=engine)
    assert lg.package_deps("app") == ["db", "http", "sockets", "web"]
    assert lg.package_deps("sockets", reverse=True) == ["app", "db", "http", "web"]


# ------------------------------------------------------------------------------- engines

def test_both_engines_return_identical_relations_for_the_shipped_rules():
    facts = {**WIDE, "changed": {("p/root",)}, **{
        "lease": {("mid", "db", "write"), ("sibling", "db/x", "read")},
        "under": {("db/x", "db")}, "awaits": {("e1", "e2"), ("e2", "e1")},
        "state": {("e1", "await"), ("e2", "await")}, "requires": {("a", "b"), ("b", "c")}}}
    program = queries.shipped_program()
    assert program.evaluate(facts, engine="fast") == program.evaluate(facts, engine="pydatalog")


def test_pydatalog_refuses_nonlinear_recursion_with_a_typed_error():
    program = Program.parse("t(X, Y) :- e(X, Y).\nt(X, Y) :- t(X, Z), t(Z, Y).")
    with pytest.raises(EngineError, match="non-linear"):
        program.evaluate({"e": {("a", "b")}}, engine="pydatalog")
    assert program.evaluate({"e": {("a", "b")}}, engine="fast")["t"] == {("a", "b")}


# ------------------------------------------------------------------------------- static errors

@pytest.mark.parametrize("text, error, line, column", [
    ('edge("a", "b").\np(X) :- edge(X, Y, Z).', ArityError, 2, 9),
    ("p(X, Y) :- e(X, Z).", UnsafeVariableError, 1, 6),
    ("p(X) :- e(X), !q(X, Y + 1).", UnsafeVariableError, 1, 21),
    ("p(X) :- e(X),\n   X < Y.", UnsafeVariableError, 2, 8),
    ("p(X) :- e(X), q(X + Y).", UnsafeVariableError, 1, 21),
    ("p(X, _) :- e(X).", UnsafeVariableError, 1, 6),
    ("p(X) :- e(X), !q(X).\nq(X) :- p(X).", StratificationError, 1, 15),
    ("p(X) :- e(X).\n?- r(X).", UnknownPredicateError, 2, 4),
    ("p(X) :- e(X)\nq(X) :- p(X).", DatalogSyntaxError, 2, 1),
])
def test_each_static_error_carries_its_line_and_column(text, error, line, column):
    with pytest.raises(error) as e:
        Program.parse(text, "rules.dl")
    assert (e.value.line, e.value.column) == (line, column)
    assert str(e.value).startswith(f"rules.dl:{line}:{column}: ")


def test_the_stratification_error_names_the_cycle():
    with pytest.raises(StratificationError, match=r"p -> !q -> p"):
        Program.parse("p(X) :- e(X), !q(X).\nq(X) :- p(X).")
