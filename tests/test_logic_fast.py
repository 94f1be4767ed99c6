"""The fast engine (e3logic/logic/fast.py): semi-naive evaluation over indexed sets."""
import re

import pytest

from e3logic.logic import LimitError, Limits, Program, fast

TC_LEFT = "path(X, Y) :- edge(X, Y).\npath(X, Y) :- path(X, Z), edge(Z, Y).\n"
TC_RIGHT = "path(X, Y) :- edge(X, Y).\npath(X, Y) :- edge(X, Z), path(Z, Y).\n"
TC_NONLINEAR = "path(X, Y) :- edge(X, Y).\npath(X, Y) :- path(X, Z), path(Z, Y).\n"


def closure(edges):
    nodes = {a for e in edges for a in e}
    out = set()
    for s in nodes:
        todo, seen = [s], set()
        while todo:
            n = todo.pop()
            for a, b in edges:
                if a == n and b not in seen:
                    seen.add(b)
                    todo.append(b)
        out |= {(s, t) for t in seen}
    return out


def ev(text, facts, **kw):
    return Program.parse(text).evaluate(facts, engine="fast", **kw)


CYCLE = {("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}


def test_left_right_and_nonlinear_transitive_closure_agree_on_a_cycle():
    want = closure(CYCLE)
    for text in (TC_LEFT, TC_RIGHT, TC_NONLINEAR):
        assert ev(text, {"edge": CYCLE})["path"] == want


def test_mutual_recursion_alternates_between_relations():
    text = ("odd(X, Y) :- edge(X, Y).\nodd(X, Y) :- even(X, Z), edge(Z, Y).\n"
            "even(X, Y) :- odd(X, Z), edge(Z, Y).\n")
    chain = {(f"n{i}", f"n{i + 1}") for i in range(6)}
    r = ev(text, {"edge": chain})
    assert ("n0", "n3") in r["odd"] and ("n0", "n2") in r["even"]
    assert ("n0", "n2") not in r["odd"] and ("n0", "n3") not in r["even"]


def test_a_100000_deep_chain_works_without_recursion():
    n = 100_000
    facts = {"edge": {(i, i + 1) for i in range(n)}}
    prepared = Program.parse(TC_LEFT).prepare(facts, engine="fast")
    res = prepared.query("?- path(0, Y).")
    assert len(res.rows) == n and res.rows[-1] == (n,)
    dirty = Program.parse("d(X) :- seed(X).\nd(Y) :- d(X), edge(X, Y).")
    assert len(dirty.evaluate({"edge": facts["edge"], "seed": {(0,)}}, engine="fast",
                              only=["d"])["d"]) == n + 1


def test_a_100000_wide_layer_works():
    n = 100_000
    edges = {("root", f"m{i}") for i in range(n)} | {(f"m{i}", "sink") for i in range(n)}
    res = Program.parse(TC_LEFT).query('?- path("root", Y).', {"edge": edges}, engine="fast")
    assert len(res.rows) == n + 1 and res.rows[-1] == ("sink",)


def test_negation_comparisons_and_arithmetic():
    text = """
        node(X) :- edge(X, _).
        node(Y) :- edge(_, Y).
        leaf(X) :- node(X), !edge(X, _).
        longer(X, Y, L + 1) :- w(X, L), w(Y, M), L < M.
        half(X, L / 2) :- w(X, L).
        bad(X) :- w(X, L), L / 0 = 1.
        mixed(X) :- w(X, L), L < "z".
    """
    facts = {"edge": {("a", "b"), ("b", "c")}, "w": {("a", 3), ("b", -7)}}
    r = ev(text, facts)
    assert r["leaf"] == {("c",)}
    assert r["longer"] == {("b", "a", -6)}
    assert r["half"] == {("a", 1), ("b", -3)}
    assert r["bad"] == set() and r["mixed"] == set()


def test_repeated_variables_constants_and_zero_arity():
    text = """
        loop(X) :- edge(X, X).
        from_a(Y) :- edge("a", Y).
        has_loop :- loop(_).
        no_loop :- node(_), !has_loop.
        node(X) :- edge(X, _).
    """
    r = ev(text, {"edge": {("a", "a"), ("a", "b"), ("b", "c")}})
    assert r["loop"] == {("a",)} and r["from_a"] == {("a",), ("b",)}
    assert r["has_loop"] == {()} and r["no_loop"] == set()


def test_given_facts_of_a_derived_relation_join_the_derivation():
    r = ev(TC_LEFT, {"edge": {("a", "b")}, "path": {("x", "a")}})
    assert r["path"] == {("x", "a"), ("a", "b"), ("x", "b")}


def test_facts_written_in_the_program_are_given_facts():
    r = ev(TC_LEFT + 'edge("a", "b"). edge("b", "c").', {})
    assert r["path"] == {("a", "b"), ("b", "c"), ("a", "c")}


def test_a_prepared_base_computes_unaffected_strata_once_and_reuses_indexes():
    text = TC_LEFT + "dirty(Y) :- changed(X), path(X, Y).\n"
    prepared = Program.parse(text).prepare({"edge": CYCLE}, engine="fast")
    first = prepared.evaluate(extra={"changed": {("d",)}}, only=["dirty"])
    path_rel = prepared.base.computed["path"]
    n_indexes = len(prepared.base.indexes)
    second = prepared.evaluate(extra={"changed": {("a",)}}, only=["dirty"])
    assert first["dirty"] == set() and second["dirty"] == {("a",), ("b",), ("c",), ("d",)}
    assert prepared.base.computed["path"] is path_rel       # not recomputed
    assert len(prepared.base.indexes) == n_indexes           # no new index
    assert not prepared.base.has("dirty")                   # depends on the extra facts


def test_extra_facts_for_a_relation_already_given_are_added_to_it():
    prepared = Program.parse(TC_LEFT).prepare({"edge": {("a", "b")}}, engine="fast")
    r = prepared.evaluate(extra={"edge": {("b", "c")}}, only=["path"])
    assert r["path"] == {("a", "b"), ("b", "c"), ("a", "c")}
    assert prepared.evaluate(only=["path"])["path"] == {("a", "b")}


def test_returned_relations_are_copies_of_the_cached_ones():
    prepared = Program.parse(TC_LEFT).prepare({"edge": CYCLE}, engine="fast")
    prepared.evaluate(only=["path"])["path"].clear()
    assert prepared.evaluate(only=["path"])["path"] == closure(CYCLE)


def test_same_shaped_queries_share_compiled_code():
    prepared = Program.parse(TC_LEFT).prepare({"edge": CYCLE}, engine="fast")
    prepared.query('?- path("a", Y).')
    size = len(fast._FN_CACHE)
    assert prepared.query('?- path("b", Y).').rows == [("a",), ("b",), ("c",), ("d",)]
    assert len(fast._FN_CACHE) == size


def test_a_bound_query_on_a_left_linear_relation_derives_only_what_it_needs():
    # 300 disjoint chains of 300: the full closure would hold ~13.5M pairs
    edges = {(f"c{c}n{i}", f"c{c}n{i + 1}") for c in range(300) for i in range(300)}
    res = Program.parse(TC_LEFT).query('?- path("c7n0", Y).', {"edge": edges}, engine="fast")
    assert len(res.rows) == 300


def test_column_renames_are_inlined_but_still_available():
    text = "dependents(D, X) :- edge(D, X).\ndeps(D, U) :- edge(U, D).\n" \
           "up(X, Y) :- deps(X, Y).\nup(X, Y) :- up(X, Z), deps(Z, Y).\n"
    program = Program.parse(text)
    plan = program.fast_plan(frozenset())
    assert plan.renames == {"dependents": ("edge", (0, 1)), "deps": ("edge", (1, 0))}
    r = program.evaluate({"edge": {("a", "b"), ("b", "c")}}, engine="fast")
    assert r["deps"] == {("b", "a"), ("c", "b")} and ("c", "a") in r["up"]


def test_given_facts_for_a_renamed_relation_disable_the_inlining():
    text = "dependents(D, X) :- edge(D, X).\nr(X, Y) :- dependents(X, Y).\n"
    r = Program.parse(text).evaluate({"edge": {("a", "b")}, "dependents": {("x", "y")}},
                                     engine="fast")
    assert r["r"] == {("a", "b"), ("x", "y")}


def test_index_build_on_composite_keys_and_existence():
    rel = {("a", 1, "x"), ("a", 2, "y"), ("b", 1, "x")}
    idx = fast.build_index(rel, (0, 2), (1,))
    assert sorted(idx[("a", "x")]) == [1]
    assert fast.build_index(rel, (0,), ()) == {"a", "b"}


def test_a_query_constant_is_not_pushed_into_a_relation_that_has_facts_of_its_own():
    text = TC_LEFT + 'path("x", "a").'
    res = Program.parse(text).query('?- path("x", Y).', {"edge": CYCLE}, engine="fast")
    assert res.rows == [("a",), ("b",), ("c",), ("d",)]
    res = Program.parse(TC_LEFT).query('?- path("x", Y).', {"edge": CYCLE,
                                                           "path": {("x", "c")}}, engine="fast")
    assert res.rows == [("a",), ("b",), ("c",), ("d",)]


def test_a_recursive_rule_with_a_variable_free_negation_terminates_and_keeps_other_rules():
    text = """
        p(X) :- seed(X).
        p(Y) :- p(X), edge(X, Y), !stop(_).
        p(Y) :- p(X), edge(Y, X).
    """
    facts = {"seed": {("b",)}, "edge": {("a", "b"), ("b", "c")}, "stop": {("x",)}}
    assert ev(text, facts)["p"] == {("a",), ("b",)}
    assert ev(text, {**facts, "stop": set()})["p"] == {("a",), ("b",), ("c",)}


# ----------------------------------------------------------------------------- existential negation

def test_a_negation_with_a_repeated_existential_variable_looks_for_equal_columns():
    facts = {"q": {("a",), ("b",), ("c",)}, "t": {("a", 1, 1), ("b", 1, 2), ("b", 5, 6)}}
    assert ev("p(X) :- q(X), !t(X, Y, Y).", facts)["p"] == {("b",), ("c",)}
    assert ev("p(X) :- q(X), !t(_, Y, Y).", facts)["p"] == set()
    assert ev("p(X) :- q(X), !t(_, Y, Y).", {**facts, "t": {("a", 1, 2)}})["p"] == facts["q"]


# ----------------------------------------------------------------------------- limits

RUNAWAY = "n(0).\nn(Y + 1) :- n(Y).\n"


def stopped(text, limits, facts=None, query=None):
    program = Program.parse(text, "rules.dl")
    with pytest.raises(LimitError) as e:
        if query:
            program.query(query, facts, engine="fast", limits=limits)
        else:
            program.evaluate(facts, engine="fast", limits=limits)
    return str(e.value)


def test_a_runaway_linear_rule_stops_past_the_fact_limit_naming_the_relation_and_rule():
    assert stopped(RUNAWAY, Limits(max_facts=1000), query="n(X)") == (
        "rule evaluation stopped: more than 1,000 derived facts (n/1 keeps growing; "
        "rules.dl:2); raise --max-facts or [logic] max_facts in e3.toml, or fix the rule")


def test_a_runaway_nonlinear_rule_stops_after_the_round_that_passes_the_limit():
    msg = stopped("n(0).\nn(1).\nn(X + Y) :- n(X), n(Y).", Limits(max_facts=5000))
    assert "more than 5,000 derived facts (n/1 keeps growing; rules.dl:3)" in msg


def test_runaway_mutual_recursion_names_one_of_its_relations():
    msg = stopped("a(0).\nb(X + 1) :- a(X).\na(X + 1) :- b(X).", Limits(max_facts=1000))
    assert re.search(r"more than 1,000 derived facts \((a/1|b/1) keeps growing; rules.dl:[23]\)",
                     msg)


def test_a_cross_product_without_recursion_is_stopped_while_it_grows():
    text = "m(0).\nm(Y + 1) :- m(Y), Y < 299.\nc(X, Y, Z) :- m(X), m(Y), m(Z).\n"
    msg = stopped(text, Limits(max_facts=200_000), query="c(X, Y, Z)")
    assert "more than 200,000 derived facts (c/3 keeps growing; rules.dl:3)" in msg


def test_the_fact_limit_counts_every_stratum_of_one_evaluation():
    text = "a(0).\na(Y + 1) :- a(Y), Y < 599.\nb(X) :- a(X), X >= 0.\n"
    assert "(b/1 keeps growing" in stopped(text, Limits(max_facts=1000), query="b(X)")
    program = Program.parse(text)
    assert len(program.query("b(X)", engine="fast", limits=Limits(max_facts=1300)).rows) == 600


def test_the_time_limit_stops_a_runaway_fast_evaluation():
    msg = stopped(RUNAWAY, Limits(max_facts=None, timeout_s=0.3), query="n(X)")
    assert msg.startswith("rule evaluation stopped: still running after 0.3 s (n/1 was "
                          "growing; rules.dl:2); raise --timeout")


def test_a_stopped_evaluation_leaves_the_prepared_base_usable():
    program = Program.parse(RUNAWAY + "m(X) :- e(X, _).\n")
    prepared = program.prepare({"e": {("a", "b")}}, engine="fast", limits=Limits(1000))
    with pytest.raises(LimitError):
        prepared.query("n(X)")
    assert prepared.query("m(X)").rows == [("a",)]


def test_an_integer_that_would_outgrow_64_bits_is_undefined_so_squaring_terminates():
    rows = Program.parse("sq(2).\nsq(Y * Y) :- sq(Y).").query("sq(X)", engine="fast").rows
    assert rows == [(2,), (4,), (16,), (256,), (65536,), (4294967296,)]
