"""Integrity suite: logic (gathered by test_integrity.py). A user's rule file can never eat
the machine: evaluation stops past a number of derived facts or seconds, with one line and
exit 2; the rule language's dialect points hold through `e3 query`."""
import json


def _project(e3, rules: str):
    assert e3("init").code == 0
    (e3.cwd / "rules").mkdir()
    (e3.cwd / "rules" / "own.dl").write_text(rules)


def test_logic_a_runaway_rule_stops_at_the_fact_limit_with_one_line_and_exit_2(e3):
    _project(e3, "n(0).\nn(Y + 1) :- n(Y).\n")
    for engine in ("fast", "pydatalog", "auto"):
        r = e3("query", "n(X)", "--engine", engine, "--max-facts", "1000")
        assert r.code == 2, (engine, r)
        assert len(r.err.splitlines()) == 1 and r.out == ""
        assert r.err.startswith("e3: error: rule evaluation stopped: more than 1,000 ")
        assert "n/1 keeps growing; rules/own.dl:2" in r.err and "--max-facts" in r.err


def test_logic_a_runaway_rule_stops_at_the_time_limit(e3):
    _project(e3, "n(0).\nn(Y + 1) :- n(Y).\n")
    for engine in ("fast", "pydatalog"):
        r = e3("query", "n(X)", "--engine", engine, "--max-facts", "1000000000",
               "--timeout", "0.5")
        assert r.code == 2, (engine, r)
        assert r.err.startswith("e3: error: rule evaluation stopped: still running after 0.5 s")
        assert "--timeout" in r.err and len(r.err.splitlines()) == 1


def test_logic_e3_toml_sets_the_limits(e3):
    _project(e3, "n(0).\nn(Y + 1) :- n(Y).\n")
    with open(e3.cwd / "e3.toml", "a") as f:
        f.write("\n[logic]\nmax_facts = 500\n")
    r = e3("query", "n(X)", "--engine", "fast")
    assert r.code == 2 and "more than 500 derived facts" in r.err


def test_logic_a_bounded_rule_under_the_limits_answers(e3):
    _project(e3, "n(0).\nn(Y + 1) :- n(Y), (Y < 99).\n")
    for engine in ("fast", "pydatalog"):
        r = e3("--json", "query", "n(X)", "--engine", engine, "--max-facts", "1000")
        assert r.code == 0, r
        assert len(json.loads(r.out)["rows"]) == 100


def test_logic_a_variable_only_in_a_negation_means_no_such_value(e3):
    _project(e3, 'q("a"). q("b"). q("c").\nr("a", 1). r("c", "c"). t("c", "c", "c").\n'
                 'lonely(X) :- q(X), !r(X, Y).\nno_self(X) :- q(X), !t(X, Y, Y).\n')
    for engine in ("fast", "pydatalog"):
        r = e3("--json", "query", "?- lonely(X).", "--engine", engine)
        assert r.code == 0 and json.loads(r.out)["rows"] == [["b"]], (engine, r)
        r = e3("--json", "query", "?- no_self(X).", "--engine", engine)
        assert json.loads(r.out)["rows"] == [["a"], ["b"]], (engine, r)
        r = e3("--json", "query", "?- q(X), !r(X, Y).", "--engine", engine)
        assert json.loads(r.out)["columns"] == ["X"] and json.loads(r.out)["rows"] == [["b"]]


def test_logic_a_parenthesised_constraint_parses(e3):
    _project(e3, "n(1). n(30).\nsmall(N) :- n(N), (N <= 25).\n")
    r = e3("--json", "query", "small(N)")
    assert r.code == 0 and json.loads(r.out)["rows"] == [[1]], r


def test_logic_an_arity_mismatch_is_one_line_naming_the_relation_and_both_arities(e3):
    _project(e3, "n(1, 2).\nm(X) :- n(X).\n")
    r = e3("query", "m(X)")
    assert r.code == 2 and len(r.err.splitlines()) == 1
    assert "arity" in r.err and "'n'" in r.err and "n/1 vs n/2" in r.err


def test_logic_a_user_rule_with_the_wrong_arity_for_a_repository_relation_is_refused(e3):
    _project(e3, "mine(X) :- edge(X).\n")
    r = e3("query", "mine(X)")
    assert r.code == 2 and len(r.err.splitlines()) == 1 and "arity" in r.err, r


__all__ = [n for n in dir() if n.startswith("test_logic_")]
