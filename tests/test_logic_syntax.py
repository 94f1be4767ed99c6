"""The rule language parser (e3logic/logic/syntax.py)."""
import pytest

from e3logic.logic.errors import DatalogSyntaxError
from e3logic.logic.syntax import (Anon, Atom, BinOp, Comparison, Const, Negation, Query, Rule,
                                  Var, comments, parse_query, parse_statements)


def test_a_fact_is_a_rule_with_an_empty_body_and_quoted_constants():
    [r] = parse_statements('edge("a", 12).')
    assert r == Rule(Atom("edge", (Const("a"), Const(12))), ())


def test_identifiers_in_argument_position_are_variables_whatever_their_case():
    [r] = parse_statements("path(x, Y) :- edge(x, Y).")
    assert r.head.args == (Var("x"), Var("Y"))
    assert r.body == (Atom("edge", (Var("x"), Var("Y"))),)


def test_underscore_is_anonymous_and_each_occurrence_is_fresh():
    [r] = parse_statements("p(X) :- e(X, _), e(_, X).")
    assert isinstance(r.body[0].args[1], Anon) and isinstance(r.body[1].args[0], Anon)


def test_bang_and_not_both_negate_an_atom():
    [a, b] = parse_statements("p(X) :- q(X), !r(X).  p(X) :- q(X), not r(X).")
    assert a.body[1] == Negation(Atom("r", (Var("X"),))) == b.body[1]


def test_a_predicate_may_be_named_like_the_keyword_prefix():
    [r] = parse_statements("notable(X) :- note(X), not nothing(X).")
    assert r.head.pred == "notable" and r.body[0].pred == "note"
    assert r.body[1].atom.pred == "nothing"


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">="])
def test_every_comparison_operator_parses(op):
    [r] = parse_statements(f"p(X) :- q(X, Y), X {op} Y.")
    assert r.body[1] == Comparison(op, Var("X"), Var("Y"))


@pytest.mark.parametrize("text", ["p(N) :- q(N), (N <= 25).", "p(N) :- q(N), N <= 25.",
                                  "p(N) :- q(N), ( N <= 25 )."])
def test_a_comparison_parses_with_or_without_parentheses(text):
    [r] = parse_statements(text)
    assert r.body[1] == Comparison("<=", Var("N"), Const(25))


def test_a_parenthesised_comparison_may_hold_parenthesised_sums():
    [r] = parse_statements("p(N) :- q(N), ((N + 1) * 2 > N - 3).")
    assert r.body[1] == Comparison(">", BinOp("*", BinOp("+", Var("N"), Const(1)), Const(2)),
                                   BinOp("-", Var("N"), Const(3)))
    assert parse_query("?- q(N), (N != 2).").body[1] == Comparison("!=", Var("N"), Const(2))


def test_a_query_variable_only_in_a_negation_is_not_a_column():
    assert parse_query("?- q(X), !r(X, Y), s(Z).").variables == ["X", "Z"]
    assert parse_query("?- !r(Y, X), q(X).").variables == ["X"]


def test_arithmetic_binds_tighter_for_times_and_divide_and_associates_left():
    [r] = parse_statements("p(X + Y * 2 - 1) :- q(X, Y).")
    assert r.head.args[0] == BinOp("-", BinOp("+", Var("X"), BinOp("*", Var("Y"), Const(2))),
                                   Const(1))


def test_parentheses_and_unary_minus():
    [r] = parse_statements("p(-(X - 3), -4) :- q(X).")
    assert r.head.args[1] == Const(-4)
    assert r.head.args[0] == BinOp("-", Const(0), BinOp("-", Var("X"), Const(3)))


def test_zero_arity_predicates_with_or_without_parentheses():
    [r1, r2] = parse_statements("ready :- go. ready() :- go().")
    assert r1.head == Atom("ready", ()) and r1.body == (Atom("go", ()),)
    assert r2 == r1


def test_comments_line_and_block_are_ignored_and_line_comments_are_reported():
    text = '// doc of p\np("a"). /* a\nblock */ q("b"). // trailing\n'
    assert [r.head.pred for r in parse_statements(text)] == ["p", "q"]
    assert comments(text) == [(1, "doc of p")]


def test_string_escapes_are_json_escapes():
    [r] = parse_statements(r'p("a\"b\\c\n\u00e9").')
    assert r.head.args[0].value == 'a"b\\c\né'


def test_queries_in_a_program_text_and_alone():
    stmts = parse_statements('p("a"). ?- p(X), X != "b".')
    assert isinstance(stmts[1], Query) and stmts[1].variables == ["X"]
    assert parse_query('p(X, "a")').body == (Atom("p", (Var("X"), Const("a"))),)
    assert parse_query('?- p(X, Y), q(Y, X).').variables == ["X", "Y"]


def test_positions_are_one_based_lines_and_columns():
    [r] = parse_statements("\n  path(X, Y) :-\n    edge(X, Y).")
    assert (r.head.line, r.head.column) == (2, 3)
    assert (r.body[0].line, r.body[0].column) == (3, 5)
    assert (r.body[0].args[1].line, r.body[0].args[1].column) == (3, 13)


@pytest.mark.parametrize("text, line, column, words", [
    ("p(X) :- q(X)", 1, 12, "end of text"),
    ("p(X) :- q(X),, r(X).", 1, 14, "unexpected ','"),
    ('p("abc) :- q.', 1, 3, "unterminated string"),
    ("p(X) :- q(X) & r(X).", 1, 14, "unexpected character '&'"),
    ("p(X).\nq(X) :- .", 2, 9, "unexpected '.'"),
])
def test_syntax_errors_carry_line_column_and_a_readable_reason(text, line, column, words):
    with pytest.raises(DatalogSyntaxError) as e:
        parse_statements(text, "rules.dl")
    assert (e.value.line, e.value.column) == (line, column)
    assert str(e.value).startswith(f"rules.dl:{line}:{column}: ")
    assert words in str(e.value)


def test_an_expression_100_deep_parses_and_a_deeper_one_is_refused_without_recursion_error():
    [r] = parse_statements(f"p({' + '.join(['X'] * 101)}) :- q(X).")
    assert r.head.args[0].depth == 100
    with pytest.raises(DatalogSyntaxError, match="nested deeper than 100"):
        parse_statements(f"p({' + '.join(['X'] * 5000)}) :- q(X).")


def test_a_long_program_parses_without_recursion():
    text = "\n".join(f'edge("n{i}", "n{i + 1}").' for i in range(20000))
    assert len(parse_statements(text)) == 20000
