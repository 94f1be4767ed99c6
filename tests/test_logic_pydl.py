"""The pyDatalog engine (e3logic/logic/pydl.py) and its agreement with the fast engine."""
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e3logic.logic import ArityError, EngineError, LimitError, Limits, Program, pydl
from e3logic.logic.program import AUTO_THRESHOLD

CYCLE3 = {("a", "b"), ("b", "c"), ("c", "a")}
TC_TEXT = "t(X, Y) :- e(X, Y).\nt(X, Y) :- t(X, Z), e(Z, Y)."


def finishes(fn, seconds=20.0):
    """Run fn in a daemon thread; fail instead of hanging the suite."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - reported below
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"did not finish in {seconds} s"
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_right_recursive_rule_terminates_on_a_cycle():
    p = Program.parse("r(X, Y) :- e(X, Y).\nr(X, Y) :- e(X, Z), r(Z, Y).")
    res = finishes(lambda: p.evaluate({"e": CYCLE3}, engine="pydatalog"))
    assert res["r"] == {(x, y) for x in "abc" for y in "abc"}


def test_bound_queries_on_left_and_right_recursion_terminate_on_cycles():
    edges = {(f"n{i}", f"n{(i + 1) % 50}") for i in range(50)} | {("n3", "n40")}
    for rec in ("r(X, Z), e(Z, Y)", "e(X, Z), r(Z, Y)"):
        p = Program.parse(f"r(X, Y) :- e(X, Y).\nr(X, Y) :- {rec}.")
        for q in ('?- r("n7", Y).', '?- r(X, "n7").', "?- r(X, X)."):
            res = finishes(lambda: p.query(q, {"e": edges}, engine="pydatalog"))
            assert len(res.rows) == 50


def test_recursive_atoms_with_constants_or_repeated_variables_terminate():
    text = ('r(X, Y) :- e(X, Y).\nr(X, Y) :- e(X, Z), r(Z, Y), r(Z, "c") = r(Z, "c").\n')
    with pytest.raises(Exception):  # comparisons of atoms are not in the language
        Program.parse(text)
    p = Program.parse('r(X, Y) :- e(X, Y).\nr(X, Y) :- e(X, Z), r(Z, Z), r2(Z, Y).\n'
                      'r2(X, Y) :- e(X, Y).\nr2(X, "c") :- e(X, _), r2(X, "a").')
    assert finishes(lambda: p.evaluate({"e": CYCLE3}, engine="pydatalog")) == \
        p.evaluate({"e": CYCLE3}, engine="fast")


def test_nonlinear_recursion_is_refused_with_a_typed_error_naming_the_fix():
    p = Program.parse("t(X, Y) :- e(X, Y).\nt(X, Y) :- t(X, Z), t(Z, Y).", "tc.dl")
    with pytest.raises(EngineError) as e:
        p.evaluate({"e": CYCLE3}, engine="pydatalog")
    assert str(e.value).startswith("tc.dl:2:1:") and "engine 'fast'" in str(e.value)
    assert e.value.exit_code == 2
    assert not p.supports("pydatalog") and p.supports("fast")


def test_auto_never_picks_pydatalog_for_a_program_it_refuses():
    p = Program.parse("t(X, Y) :- e(X, Y).\nt(X, Y) :- t(X, Z), t(Z, Y).")
    assert p.query("?- t(X, Y).", {"e": CYCLE3}).engine == "fast"


def test_auto_uses_pydatalog_up_to_the_threshold_and_fast_above():
    p = Program.parse("t(X, Y) :- e(X, Y).")
    small = {"e": {(i, i + 1) for i in range(AUTO_THRESHOLD)}}
    big = {"e": {(i, i + 1) for i in range(AUTO_THRESHOLD + 1)}}
    assert p.query("?- t(X, Y).", small).engine == "pydatalog"
    assert p.query("?- t(X, Y).", big).engine == "fast"


def test_evaluations_are_isolated_from_each_other():
    p1 = Program.parse("r(X) :- a(X).")
    p2 = Program.parse("r(X) :- b(X).")
    assert p1.evaluate({"a": {("1",)}}, engine="pydatalog")["r"] == {("1",)}
    assert p2.evaluate({"b": {("2",)}}, engine="pydatalog")["r"] == {("2",)}
    assert p1.evaluate({"a": set()}, engine="pydatalog")["r"] == set()


def test_a_failed_evaluation_does_not_poison_the_next(monkeypatch):
    p = Program.parse("r(X) :- a(X).")

    def broken(self, rule, defined):
        raise RuntimeError("boom")

    with monkeypatch.context() as m:
        m.setattr(pydl._Translator, "rule", broken)
        with pytest.raises(EngineError, match="boom"):
            p.evaluate({"a": {("leak",)}}, engine="pydatalog")
    assert p.evaluate({"a": {(1,)}}, engine="pydatalog")["r"] == {(1,)}


def test_strings_pydatalog_would_misread_round_trip():
    odd = {("True",), ("False",), ("??",), ("X",), ("_x",), ("a.b",), ("",), (" ",)}
    p = Program.parse('r(X) :- a(X).\ns(X) :- a(X), X != "True".')
    res = p.evaluate({"a": odd}, engine="pydatalog")
    assert res["r"] == odd and res["s"] == odd - {("True",)}


def test_ints_and_strings_that_look_alike_stay_distinct():
    p = Program.parse("same(X) :- a(X), b(X).")
    res = p.evaluate({"a": {(1,), ("1",)}, "b": {(1,)}}, engine="pydatalog")
    assert res["same"] == {(1,)}


def test_arithmetic_and_undefined_values_match_the_fast_engine():
    text = """
        q(X, Y, X / Y) :- n(X), n(Y).
        s(X, X * 2 - 1) :- n(X), X * 2 > 3.
        m(X) :- n(X), X + 1 = 3.
    """
    facts = {"n": {(0,), (2,), (-7,), ("s",)}}
    p = Program.parse(text)
    assert p.evaluate(facts, engine="pydatalog") == p.evaluate(facts, engine="fast")


def test_zero_arity_and_empty_relations():
    p = Program.parse("go :- a(_).\nnogo :- !go.\nfrom_b(X) :- b(X).\nnot_b(X) :- a(X), !b(X).")
    res = p.evaluate({"a": {("x",)}}, engine="pydatalog")
    assert res["go"] == {()} and res["nogo"] == set()
    assert res["from_b"] == set() and res["not_b"] == {("x",)}


def test_a_too_deep_derivation_is_a_typed_error_not_a_crash():
    p = Program.parse("r(X, Y) :- e(X, Y).\nr(X, Y) :- r(X, Z), e(Z, Y).")
    chain = {(i, i + 1) for i in range(5000)}
    try:
        res = p.query("?- r(0, Y).", {"e": chain}, engine="pydatalog")
    except EngineError as e:
        assert "engine 'fast'" in str(e)
    else:
        assert len(res.rows) == 5000


# ----------------------------------------------------------------------------- differential

VARS = ["X", "Y", "Z", "W"]
EDB = [("e", 2), ("n", 1), ("w", 2)]


@st.composite
def programs(draw, linear=True):
    """Random stratified programs over e/2, n/1, w/2: recursion (left, right, mutual),
    constants, `_`, negation of lower strata with existential variables (E, maybe repeated),
    comparisons with or without parentheses, arithmetic in comparisons."""
    pick = lambda n: draw(st.integers(0, n - 1))  # noqa: E731
    idb = [(f"p{i}", 1 + pick(2)) for i in range(1 + pick(3))]
    lines = []
    for hi, (head, harity) in enumerate(idb):
        for ri in range(1 + pick(3)):
            body, bvars, rec = [], [], False
            for k in range(1 + pick(3)):
                cands = EDB + idb[:hi + (0 if (rec and linear) or (ri == 0 and k == 0) else 1)]
                name, ar = cands[pick(len(cands))]
                rec |= name == head
                args = []
                for i in range(ar):
                    r = pick(10)
                    if r < 7:
                        args.append(VARS[pick(4)])
                        bvars.append(args[-1])
                    elif r < 8:
                        args.append("_")
                    elif name == "w" and i == 1:
                        args.append(str(pick(4)))
                    else:
                        args.append(f'"n{pick(4)}"')
                body.append(f"{name}({', '.join(args)})")
            bvars = sorted(set(bvars))
            if not bvars:
                continue
            if pick(3) == 0:
                name, ar = (EDB + idb[:hi])[pick(len(EDB) + hi)]
                args = [bvars[pick(len(bvars))] if pick(4) else ["_", "E"][pick(2)]
                        for _ in range(ar)]
                body.append(("!" if pick(2) else "not ") + f"{name}({', '.join(args)})")
            if pick(3) == 0:
                a, b = bvars[pick(len(bvars))], bvars[pick(len(bvars))]
                b = [b, str(pick(4)), f'"n{pick(4)}"'][pick(3)]
                op = ["=", "!=", "<", "<=", ">", ">="][pick(6)]
                c = (f"{b} {op} {a}" if pick(2) else f"{a} {op} {b}") \
                    + (f" + {pick(3)}" if pick(2) else "")
                body.append(f"({c})" if pick(2) else c)
            hargs = [bvars[pick(len(bvars))] if pick(6) else f'"n{pick(3)}"'
                     for _ in range(harity)]
            lines.append(f"{head}({', '.join(hargs)}) :- {', '.join(body)}.")
    return "\n".join(lines) + "\n"


@st.composite
def graphs(draw, max_nodes=8):
    """Random small graphs, cyclic ones included, with unary and weighted facts."""
    n = draw(st.integers(1, max_nodes))
    nodes = [f"n{i}" for i in range(n)]
    node = st.sampled_from(nodes)
    edges = draw(st.sets(st.tuples(node, node), max_size=3 * n))
    return {"e": edges, "n": {(x,) for x in draw(st.sets(node, max_size=n))},
            "w": draw(st.sets(st.tuples(node, st.integers(0, 4)), max_size=n))}


@settings(max_examples=40)
@given(programs(), graphs())
def test_both_engines_return_identical_relations_on_random_programs_and_graphs(text, facts):
    program = Program.parse(text)
    assert program.evaluate(facts, engine="pydatalog") == program.evaluate(facts, engine="fast")


@settings(max_examples=30)
@given(graphs(max_nodes=12), st.sampled_from(["left", "right"]), st.integers(0, 11))
def test_both_engines_agree_on_reachability_queries_over_cyclic_graphs(facts, form, src):
    rec = "r(X, Z), e(Z, Y)" if form == "left" else "e(X, Z), r(Z, Y)"
    program = Program.parse(f"r(X, Y) :- e(X, Y).\nr(X, Y) :- {rec}.")
    q = f'?- r("n{src}", Y).'
    a = program.query(q, facts, engine="pydatalog")
    b = program.query(q, facts, engine="fast")
    assert a.rows == b.rows and a.columns == b.columns == ["Y"]


@settings(max_examples=20)
@given(programs(linear=False), graphs())
def test_nonlinear_programs_run_on_fast_and_are_refused_or_agree_on_pydatalog(text, facts):
    program = Program.parse(text)
    fast_result = program.evaluate(facts, engine="fast")
    if program.supports("pydatalog"):
        assert program.evaluate(facts, engine="pydatalog") == fast_result
    else:
        with pytest.raises(EngineError):
            program.evaluate(facts, engine="pydatalog")


EXISTENTIAL = {"q": {("a",), ("b",), ("c",), ("d",)},
               "r": {("a", 1), ("b", "b"), ("c", 2)},
               "t": {("a", 1, 1), ("b", 1, 2), ("c", 3, 3)}}


@pytest.mark.parametrize("text, rows", [
    ("p(X) :- q(X), !r(X, Y).", [("d",)]),
    ("p(X) :- q(X), !t(X, Y, Y).", [("b",), ("d",)]),
    ("p(X) :- q(X), !t(Y, Z, Z), X = \"a\".", []),
    ("p(X) :- q(X), !r(Y, Y).", []),
    ("p(X) :- q(X), !t(Y, 3, Y).", [("a",), ("b",), ("c",), ("d",)]),
    ("p(X) :- q(X), (X != \"a\").", [("b",), ("c",), ("d",)]),
])
def test_both_engines_read_a_variable_only_in_a_negation_as_no_such_value(text, rows):
    program = Program.parse(text)
    for engine in ("pydatalog", "fast"):
        assert program.query("p(X)", EXISTENTIAL, engine=engine).rows == rows, engine


def test_both_engines_leave_an_existential_variable_out_of_a_queries_columns():
    program = Program.parse("")
    for engine in ("pydatalog", "fast"):
        res = program.query("?- q(X), !r(X, Y).", EXISTENTIAL, engine=engine)
        assert (res.columns, res.rows) == (["X"], [("d",)])


def test_both_engines_report_a_fact_rule_arity_mismatch_before_evaluating():
    with pytest.raises(ArityError, match=r"arity mismatch: 'n' has 1 argument here but 2"):
        Program.parse("n(1, 2).\nm(X) :- n(X).")


# ----------------------------------------------------------------------------- limits

def test_a_runaway_arithmetic_rule_stops_at_the_value_limit_and_the_next_evaluation_works():
    program = Program.parse("n(0).\nn(Y + 1) :- n(Y).", "rules.dl")
    with pytest.raises(LimitError) as e:
        finishes(lambda: program.query("n(X)", engine="pydatalog",
                                       limits=Limits(max_facts=500)))
    assert str(e.value) == (
        "rule evaluation stopped: more than 500 values computed by arithmetic (n/1 keeps "
        "growing; rules.dl:2); raise --max-facts or [logic] max_facts in e3.toml, or fix the "
        "rule")
    assert e.value.exit_code == 2
    bounded = Program.parse("n(0).\nn(Y + 1) :- n(Y), Y < 20.")
    assert len(bounded.query("n(X)", engine="pydatalog").rows) == 21


def test_a_pydatalog_evaluation_that_runs_too_long_is_interrupted_by_the_time_limit():
    program = Program.parse("n(0).\nn(Y + 1) :- n(Y).", "rules.dl")
    with pytest.raises(LimitError, match=r"^rule evaluation stopped: still running after "
                                         r"0\.3 s \(in the pydatalog engine, last computing "
                                         r"n/1; rules.dl:2\); raise --timeout"):
        finishes(lambda: program.query("n(X)", engine="pydatalog",
                                       limits=Limits(max_facts=None, timeout_s=0.3)))
    assert Program.parse(TC_TEXT).query("?- t(X, Y).", {"e": CYCLE3},
                                        engine="pydatalog").rows[:1] == [("a", "a")]
