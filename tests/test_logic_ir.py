"""Value semantics, lowering and join order (e3logic/logic/ir.py)."""
import pytest

from e3logic.logic.ir import (BOT, IAtom, ICmp, IEq, arith, compare, eval_expr, lower_rule,
                              schedule)
from e3logic.logic.syntax import parse_statements


def rule(text):
    [r] = parse_statements(text)
    return lower_rule(r)


@pytest.mark.parametrize("a, b, q", [(7, 2, 3), (-7, 2, -3), (7, -2, -3), (-7, -2, 3), (0, 5, 0)])
def test_integer_division_truncates_toward_zero(a, b, q):
    assert arith("/", a, b) == q


def test_division_by_zero_and_string_operands_are_undefined():
    assert arith("/", 1, 0) is BOT
    assert arith("+", "a", 1) is BOT
    assert arith("*", BOT, 2) is BOT


def test_a_result_outside_the_signed_64_bit_range_is_undefined():
    top, bottom = 2 ** 63 - 1, -2 ** 63
    assert arith("+", top, 0) == top and arith("+", top, 1) is BOT
    assert arith("-", bottom, 1) is BOT and arith("/", bottom, -1) is BOT
    assert arith("*", 2 ** 32, 2 ** 31) is BOT and arith("*", 2 ** 31, 2 ** 31) == 2 ** 62
    assert arith("*", 10 ** 10000, 10 ** 10000) is BOT  # no gigantic product first


def test_ordering_holds_only_between_values_of_one_type():
    assert compare("<", 1, 2) and compare("<", "a", "b")
    assert not compare("<", 1, "a") and not compare(">=", 1, "a")
    assert compare("!=", 1, "1") and not compare("=", 1, "1")


def test_undefined_values_make_every_comparison_false():
    for op in ("=", "!=", "<", "<=", ">", ">="):
        assert not compare(op, BOT, 1)


def test_eval_expr_is_iterative_and_uses_the_shared_semantics():
    e = ("c", 1)
    for _ in range(10000):
        e = ("op", "+", e, ("v", "X"))
    assert eval_expr(e, {"X": 1}) == 10001
    assert eval_expr(("op", "/", ("v", "X"), ("c", 0)), {"X": 1}) is BOT


def test_head_expressions_become_fresh_variables_bound_by_eq():
    r = rule("p(X + 1) :- q(X).")
    assert r.args == (("v", "#1"),)
    assert r.body[-1] == IEq("#1", ("op", "+", ("v", "X"), ("c", 1)))


def test_body_expressions_and_anonymous_arguments_are_lowered():
    r = rule("p(X) :- q(X, _), r(X * 2).")
    assert r.body[0] == IAtom("q", (("v", "X"), None))
    assert r.body[1] == IAtom("r", (("v", "#1"),))
    assert IEq("#1", ("op", "*", ("v", "X"), ("c", 2))) in r.body


def test_a_variable_only_in_a_negation_is_existential_like_underscore():
    r = rule("p(X) :- q(X), !r(X, Y).")
    assert r.body[1] == IAtom("r", (("v", "X"), None), True)
    assert r.body[1] == rule("p(X) :- q(X), !r(X, _).").body[1]


def test_a_repeated_existential_variable_keeps_its_name_within_its_negation():
    r = rule("p(X) :- q(X), !t(X, Y, Y).")
    assert r.body[1] == IAtom("t", (("v", "X"), ("x", "Y"), ("x", "Y")), True)
    assert r.body[1].vars() == {"X"} and r.body[1].repeated_existentials() == [(1, 2)]


def test_ground_expressions_and_comparisons_are_folded():
    assert rule("p(1 + 2).").args == (("c", 3),)
    assert rule("p(X) :- q(X), 1 < 2.").body == (IAtom("q", (("v", "X"),)),)
    assert rule("p(X) :- q(X), 2 < 1.") is None
    assert rule("p(1 / 0).") is None


def test_schedule_puts_the_requested_atom_first_and_filters_as_early_as_possible():
    r = rule('t(X, Y) :- e(X, Z), t(Z, Y), X != Z, !bad(Y).')
    steps = schedule(r.body, first=r.body[1])
    kinds = [type(lit).__name__ + ":" + getattr(lit, "pred", "") for lit, _ in steps]
    assert kinds == ["IAtom:t", "IAtom:bad", "IAtom:e", "ICmp:"]


def test_schedule_prefers_atoms_with_bound_arguments_and_otherwise_source_order():
    r = rule('p(D) :- changed(P), reads(D, P), big(D2).')
    order = [lit.pred for lit, _ in schedule(r.body)]
    assert order == ["changed", "reads", "big"]
    r = rule('c(D) :- lease(D, P, M), lease(E, Q, "write"), o(P, Q).')
    order = [lit.pred for lit, _ in schedule(r.body)]
    assert order[0] == "lease" and r.body[1] is schedule(r.body)[0][0]


def test_schedule_reports_what_is_bound_before_each_step():
    r = rule("p(X, Y) :- e(X, Y), X < Y.")
    (e, before_e), (c, before_c) = schedule(r.body)
    assert before_e == frozenset() and before_c == {"X", "Y"} and isinstance(c, ICmp)
