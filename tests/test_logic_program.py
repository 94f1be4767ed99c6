"""The standalone engine API (e3logic/logic/program.py)."""
import pytest

from e3logic.core.errors import NotFound, UsageError
from e3logic.logic import FactError, Program, QueryResult, UnknownPredicateError
from e3logic.logic.syntax import Atom, Const, Var

TC = """
// path(X, Y): Y is reachable from X.
path(X, Y) :- edge(X, Y).
path(X, Y) :- path(X, Z), edge(Z, Y).

// isolated(X): a node without edges.
isolated(X) :- node(X), !edge(X, _), !edge(_, X).
"""
EDGES = {("a", "b"), ("b", "c")}


@pytest.fixture(params=["fast", "pydatalog"])
def engine(request):
    return request.param


def test_evaluate_returns_every_derived_and_given_relation(engine):
    r = Program.parse(TC).evaluate({"edge": EDGES, "node": {("a",), ("z",)}, "extra": {(1,)}},
                                   engine=engine)
    assert r == {"edge": EDGES, "node": {("a",), ("z",)}, "extra": {(1,)},
                 "path": {("a", "b"), ("b", "c"), ("a", "c")}, "isolated": {("z",)}}


def test_relations_used_but_not_given_are_empty(engine):
    r = Program.parse(TC).evaluate({"edge": EDGES}, engine=engine)
    assert r["node"] == set() and r["isolated"] == set()


def test_only_limits_the_result_and_unknown_names_suggest(engine):
    program = Program.parse(TC)
    assert program.evaluate({"edge": EDGES}, engine=engine, only=["path"]).keys() == {"path"}
    with pytest.raises(NotFound, match="did you mean 'path'"):
        program.evaluate({"edge": EDGES}, engine=engine, only=["pathh"])


def test_query_forms_text_with_or_without_markers_atom_and_query(engine):
    program = Program.parse(TC)
    want = QueryResult(["Y"], [("b",), ("c",)], engine)
    assert program.query('?- path("a", Y).', {"edge": EDGES}, engine=engine) == want
    assert program.query('path("a", Y)', {"edge": EDGES}, engine=engine) == want
    atom = Atom("path", (Const("a"), Var("Y")))
    assert program.query(atom, {"edge": EDGES}, engine=engine) == want


def test_query_columns_are_its_variables_in_order_and_rows_are_sorted(engine):
    res = Program.parse(TC).query("?- path(Y, X), X != Y, edge(_, X).", {"edge": EDGES},
                                  engine=engine)
    assert res.columns == ["Y", "X"]
    assert res.rows == [("a", "b"), ("a", "c"), ("b", "c")]
    assert res.to_json() == {"columns": ["Y", "X"], "rows": [["a", "b"], ["a", "c"],
                                                             ["b", "c"]], "engine": engine}


def test_rows_mixing_ints_and_strings_sort_ints_first(engine):
    res = Program.parse("v(X) :- a(X).").query("?- v(X).", {"a": {("b",), (2,), ("a",), (10,)}},
                                               engine=engine)
    assert res.rows == [(2,), (10,), ("a",), ("b",)]


def test_a_query_without_variables_answers_yes_or_no(engine):
    program = Program.parse(TC)
    assert program.query('?- path("a", "c").', {"edge": EDGES}, engine=engine).rows == [()]
    assert program.query('?- path("c", "a").', {"edge": EDGES}, engine=engine).rows == []


def test_a_query_may_name_a_relation_known_only_from_the_facts(engine):
    res = Program.parse(TC).query("?- colour(X, C).", {"edge": EDGES, "colour": {("a", "red")}},
                                  engine=engine)
    assert res.rows == [("a", "red")]


def test_a_query_on_an_unknown_relation_is_refused_with_a_suggestion():
    with pytest.raises(UnknownPredicateError, match="did you mean 'path'"):
        Program.parse(TC).query("?- paht(X, Y).", {"edge": EDGES})


def test_facts_in_the_text_and_given_facts_are_merged(engine):
    program = Program.parse(TC + 'edge("c", "d").')
    assert ("a", "d") in program.evaluate({"edge": EDGES}, engine=engine)["path"]


@pytest.mark.parametrize("facts, words", [
    ({"edge": {("a", "b", "c")}}, r"arity mismatch: the rules use edge/2 \(<text>:\d\) but "
                                  r"the facts for 'edge' are edge/3"),
    ({"edge": [("a", "b"), ("a",)]}, "the facts for 'edge' are edge/1 and edge/2"),
    ({"zz": [("a", "b"), ("a",)]}, "arity mismatch: the facts for 'zz' mix rows of zz/1 and"),
    ({"node": {"a"}}, "must be tuples"),
    ({"node": ["a"]}, "must be tuples"),
    ({"node": {(1.5,)}}, "hold float values"),
    ({"node": {(True,)}}, "hold bool values"),
])
def test_bad_facts_are_refused_with_a_clear_message(facts, words):
    with pytest.raises(FactError, match=words):
        Program.parse(TC).evaluate(facts)


def test_lists_of_lists_are_accepted_as_facts():
    r = Program.parse(TC).evaluate({"edge": [["a", "b"], ["b", "c"]]}, engine="fast")
    assert ("a", "c") in r["path"]


def test_an_unknown_engine_name_suggests_one():
    with pytest.raises(NotFound, match="did you mean 'fast'"):
        Program.parse(TC).evaluate({}, engine="fats")


def test_load_reads_files_and_reports_their_names(tmp_path):
    a = tmp_path / "a.dl"
    b = tmp_path / "b.dl"
    a.write_text('path(X, Y) :- edge(X, Y).\n')
    b.write_text('// twice(X, Y): two steps.\ntwice(X, Y) :- path(X, Z), path(Z, Y).\n')
    program = Program.load(a, b)
    assert program.derived == ["path", "twice"]
    assert program.docs["twice"] == "twice(X, Y): two steps."
    with pytest.raises(UsageError, match="cannot read rules file"):
        Program.load(tmp_path / "missing.dl")


def test_extend_returns_a_new_program_with_both():
    base = Program.parse(TC)
    more = Program.parse("far(X) :- path(\"a\", X).")
    both = base.extend(more)
    assert "far" in both.derived and "far" not in base.derived
    assert both.evaluate({"edge": EDGES}, engine="fast")["far"] == {("b",), ("c",)}


def test_relations_list_names_arities_docs_and_kinds():
    rels = {r.name: r for r in Program.parse(TC).relations()}
    assert rels["path"].doc == "path(X, Y): Y is reachable from X." and rels["path"].derived
    assert rels["isolated"].arity == 1 and rels["isolated"].doc.startswith("isolated(X)")
    assert rels["edge"].derived is False and rels["edge"].doc == ""


def test_queries_written_in_the_program_are_kept():
    program = Program.parse(TC + '?- path("a", Y).')
    assert [q.variables for q in program.queries] == [["Y"]]


def test_prepared_facts_answer_repeated_queries_with_extra_facts(engine):
    program = Program.parse(TC + "hit(Y) :- start(X), path(X, Y).")
    prepared = program.prepare({"edge": EDGES}, engine=engine)
    assert prepared.engine == engine
    assert prepared.query("?- hit(Y).", extra={"start": {("b",)}}).rows == [("c",)]
    assert prepared.query("?- hit(Y).", extra={"start": {("a",)}}).rows == [("b",), ("c",)]
    assert prepared.evaluate(only=["hit"]) == {"hit": set()}


def test_trusted_facts_skip_value_checks_but_give_the_same_answers():
    program = Program.parse(TC)
    assert program.evaluate({"edge": EDGES}, trusted=True, engine="fast") == \
        program.evaluate({"edge": EDGES}, engine="fast")


def test_extend_keeps_the_doc_comments_of_both_programs():
    a = Program.parse("// p: first.\np(X) :- q(X).")
    b = Program.parse("// r: second.\nr(X) :- p(X).")
    assert a.extend(b).docs == {"p": "p: first.", "r": "r: second."}


def test_a_relation_whose_rules_can_never_fire_is_empty(engine):
    program = Program.parse("p(X) :- q(X), 1 > 2.\nr(X) :- p(X).\nz(X) :- q(X), X / 0 = 1.")
    r = program.evaluate({"q": {(1,)}}, engine=engine)
    assert r["p"] == r["r"] == r["z"] == set()
    assert program.query("?- r(X).", {"q": {(1,)}}, engine=engine).rows == []


def test_facts_may_come_from_a_generator():
    r = Program.parse(TC).evaluate({"edge": (("a", x) for x in "bc")}, engine="fast")
    assert r["path"] == {("a", "b"), ("a", "c")}


def test_trusted_facts_of_the_wrong_arity_are_one_arity_error_not_a_crash():
    program = Program.parse("p(X) :- edge(X).", "own.dl")
    with pytest.raises(FactError, match=r"arity mismatch: the rules use edge/1 \(own.dl:1\) "
                                        r"but the facts for 'edge' are edge/2"):
        program.query("p(X)", {"edge": {("a", "b")}}, engine="fast", trusted=True)
