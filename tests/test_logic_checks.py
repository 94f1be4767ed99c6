"""Static checks of rule programs (e3logic/logic/checks.py), through Program.parse."""
import pytest

from e3logic.core.errors import EXIT_USAGE, UsageError
from e3logic.logic import (ArityError, Program, StratificationError, UnknownPredicateError,
                           UnsafeVariableError)


def error_of(text, exc=Exception):
    with pytest.raises(exc) as e:
        Program.parse(text, "rules.dl")
    return e.value


def test_the_message_names_file_line_column_variable_and_predicate():
    e = error_of("edge(\"a\", \"b\").\npath(X, Y) :- edge(X, Z).", UnsafeVariableError)
    assert str(e) == "rules.dl:2:9: variable Y in the head of 'path' is not bound by a positive atom"
    assert (e.line, e.column) == (2, 9)


def test_static_errors_are_usage_errors_with_exit_code_2():
    e = error_of("p(X) :- q(Y).")
    assert isinstance(e, UsageError) and e.exit_code == EXIT_USAGE


def test_arity_mismatch_points_at_the_second_use_and_cites_the_first():
    e = error_of('edge("a", "b").\np(X) :- edge(X, Y, Z).', ArityError)
    assert (e.line, e.column) == (2, 9)
    assert "'edge' has 3 arguments here but 2 at rules.dl:1:1" in str(e)


def test_an_arity_mismatch_between_a_fact_and_a_rule_is_one_line_naming_both_arities():
    e = error_of('n(1, 2).\nm(X) :- n(X).', ArityError)
    assert str(e) == ("rules.dl:2:9: arity mismatch: 'n' has 1 argument here but 2 at "
                      "rules.dl:1:1 (n/1 vs n/2); use one arity per relation")


def test_an_arity_mismatch_between_two_rule_heads_says_arity():
    e = error_of("p(X) :- q(X).\np(X, Y) :- q(X), q(Y).", ArityError)
    assert "arity" in str(e) and "p/2 vs p/1" in str(e) and "\n" not in str(e)


def test_a_variable_only_in_a_negation_is_existential_and_accepted():
    program = Program.parse("p(X) :- q(X), !r(X, Y).\nu(X) :- q(X), !t(X, Y, Y).")
    assert program.derived == ["p", "u"]


def test_a_variable_free_in_two_negations_is_refused_naming_both():
    e = error_of("p(X) :- q(X), !r(X, Y), !s(Y).", UnsafeVariableError)
    assert (e.line, e.column) == (1, 28)
    assert "variable Y occurs only in negations (of 'r' and 's')" in str(e)


def test_arity_mismatch_between_a_head_and_a_negation():
    e = error_of("p(X) :- q(X).\nr(X) :- q(X), !p(X, X).", ArityError)
    assert (e.line, e.column) == (2, 16)


@pytest.mark.parametrize("text, line, column, words", [
    ("p(X) :- q(X), !r(X, Y + 1).", 1, 21, "variable Y in an expression in a negation of 'r'"),
    ("p(X, Y) :- q(X), !r(X, Y).", 1, 6, "variable Y in the head of 'p'"),
    ("p(X) :- q(X), !r(X, Y), Y != 1.", 1, 25, "variable Y in a comparison"),
    ("p(X) :- q(X), X < Y.", 1, 19, "variable Y in a comparison"),
    ("p(X) :- q(X), r(X + Y).", 1, 21, "variable Y in an expression"),
    ("p(X + Y) :- q(X).", 1, 7, "variable Y in the head of 'p'"),
    ("p(X) :- q(X), X = Y.", 1, 19, "variable Y in a comparison"),
])
def test_unsafe_variables_are_refused_where_they_occur(text, line, column, words):
    e = error_of(text, UnsafeVariableError)
    assert (e.line, e.column) == (line, column) and words in str(e)


def test_a_comparison_does_not_bind_a_variable():
    error_of("p(Y) :- q(X), Y = X + 1.", UnsafeVariableError)


def test_anonymous_variable_in_a_head_is_refused():
    e = error_of("p(X, _) :- q(X).", UnsafeVariableError)
    assert (e.line, e.column) == (1, 6) and "'_' in the head of 'p'" in str(e)


def test_anonymous_variable_in_a_comparison_or_expression_is_refused():
    assert "comparison" in str(error_of("p(X) :- q(X), X != _.", UnsafeVariableError))
    assert "expression" in str(error_of("p(X) :- q(X), r(X * _).", UnsafeVariableError))


def test_anonymous_variable_in_a_negation_is_allowed():
    Program.parse("p(X) :- q(X), !r(X, _).")


def test_a_fact_with_an_unquoted_identifier_explains_that_identifiers_are_variables():
    e = error_of("edge(a, \"b\").", UnsafeVariableError)
    assert "fact of 'edge'" in str(e) and 'quote strings, e.g. "a"' in str(e)


def test_negation_on_itself_is_unstratifiable():
    e = error_of("p(X) :- q(X), !p(X).", StratificationError)
    assert (e.line, e.column) == (1, 15) and "p -> !p" in str(e)
    assert e.cycle == ["p"]


def test_negation_through_a_longer_recursion_names_the_whole_cycle():
    e = error_of("p(X) :- n(X), !q(X).\nq(X) :- r(X).\nr(X) :- p(X).", StratificationError)
    assert "p -> !q -> r -> p" in str(e)
    assert e.cycle == ["p", "q", "r"]
    assert (e.line, e.column) == (1, 15)


def test_negation_of_a_lower_stratum_is_fine_even_inside_recursion():
    Program.parse("t(X, Y) :- e(X, Y), !bad(X).\nt(X, Y) :- t(X, Z), e(Z, Y), !bad(Z).\n"
                  "bad(X) :- n(X), !e(X, _).")


def test_a_query_on_an_unknown_predicate_suggests_a_close_name():
    e = error_of("path(X, Y) :- edge(X, Y).\n?- pathh(X, Y).", UnknownPredicateError)
    assert (e.line, e.column) == (2, 4)
    assert "unknown predicate 'pathh' in a query; did you mean 'path'?" in str(e)


def test_a_query_checks_arity_too():
    e = error_of("p(X) :- q(X).\n?- p(X, Y).", ArityError)
    assert (e.line, e.column) == (2, 4)


def test_checks_span_files_when_programs_are_extended():
    a = Program.parse("p(X) :- q(X).", "a.dl")
    b = Program.parse("r(X) :- p(X, X).", "b.dl")
    with pytest.raises(ArityError) as e:
        a.extend(b)
    assert str(e.value).startswith("b.dl:1:9:") and "at a.dl:1:1" in str(e.value)
