"""The rule commands end to end (e3logic/cli/logic_cmds.py): the real `e3 query` on a project
with a runaway rule file stops with one line and exit 2, in bounded memory."""
import resource
import subprocess
import sys

import pytest

from tests.helpers import e3_env, run_e3

MEMORY = 1536 * 1024 * 1024  # a regression fails on this address-space limit, not the machine


def capped(*args, cwd, timeout=60):
    """Run `e3` with RLIMIT_AS at 1.5 GB."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))
    return subprocess.run([sys.executable, "-m", "e3logic", *args], cwd=cwd, env=e3_env(),
                          capture_output=True, text=True, timeout=timeout, preexec_fn=limit)


@pytest.fixture
def project(tmp_path):
    assert run_e3("init", cwd=tmp_path).code == 0
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "grow.dl").write_text("// counts without end\nn(0).\nn(Y + 1) :- n(Y).\n")
    return tmp_path


def test_a_runaway_rule_stops_at_max_facts_with_one_line_and_exit_2(project):
    p = capped("query", "n(X)", "--engine", "fast", "--max-facts", "20000", cwd=project)
    assert p.returncode == 2
    assert p.stderr == ("e3: error: rule evaluation stopped: more than 20,000 derived facts "
                        "(n/1 keeps growing; rules/grow.dl:3); raise --max-facts or [logic] "
                        "max_facts in e3.toml, or fix the rule\n")
    assert p.stdout == ""


def test_a_runaway_rule_stops_on_the_auto_engine_too(project):
    p = capped("query", "?- n(X).", "--max-facts", "2000", cwd=project)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1
    assert "rule evaluation stopped: more than 2,000" in p.stderr and "n/1" in p.stderr


def test_the_timeout_option_stops_a_runaway_rule(project):
    p = capped("query", "n(X)", "--engine", "fast", "--max-facts", "100000000", "--timeout",
               "0.5", cwd=project)
    assert p.returncode == 2
    assert p.stderr.startswith("e3: error: rule evaluation stopped: still running after 0.5 s "
                               "(n/1 was growing; rules/grow.dl:3); raise --timeout")


def test_e3_toml_logic_limits_apply_and_options_override_them(project):
    with open(project / "e3.toml", "a") as f:
        f.write("\n[logic]\nmax_facts = 300\ntimeout_s = 30\n")
    p = capped("query", "n(X)", "--engine", "fast", cwd=project)
    assert p.returncode == 2 and "more than 300 derived facts" in p.stderr
    p = capped("query", "n(X)", "--engine", "fast", "--max-facts", "400", cwd=project)
    assert p.returncode == 2 and "more than 400 derived facts" in p.stderr


def test_the_default_limits_hold_memory_under_the_cap(project):
    # 5,000,000 one-int facts fit in 1.5 GB; the stop comes before the cap
    p = capped("query", "n(X)", "--engine", "fast", cwd=project, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "more than 5,000,000 derived facts" in p.stderr or "still running after 60 s" in p.stderr


def test_a_bad_limit_option_is_a_usage_error(project):
    r = run_e3("query", "n(X)", "--max-facts", "0", cwd=project)
    assert r.code == 2 and "--max-facts" in r.err
    with open(project / "e3.toml", "a") as f:
        f.write("\n[logic]\ntimeout_s = \"soon\"\n")
    r = run_e3("query", "n(X)", cwd=project)
    assert r.code == 2 and r.err.strip() == (
        "e3: error: e3.toml [logic] timeout_s must be a positive number of seconds, not 'soon'")


def test_deps_dependents_and_impact_take_the_limit_options(project):
    for cmd in ("deps", "dependents", "impact"):
        r = run_e3(cmd, "--help", cwd=project)
        assert "--max-facts" in r.out and "--timeout" in r.out, cmd


def test_an_arity_mismatch_in_a_user_rule_file_is_one_line_and_exit_2(project):
    (project / "rules" / "grow.dl").write_text("n(1, 2).\nm(X) :- n(X).\n")
    r = run_e3("query", "m(X)", cwd=project)
    assert r.code == 2 and len(r.err.splitlines()) == 1
    assert "arity mismatch: 'n' has 1 argument here but 2" in r.err


# -- questions over the workspace's current state (issue 16, item 5) -------------------------

ALL = ["after", "check", "combine", "count", "final", "norm", "peak", "report", "scaled",
       "side", "total", "upper"]


@pytest.fixture
def flows(tmp_path_factory, tmp_path):
    from tests.flows import copy_project

    return copy_project(tmp_path_factory, "flows", tmp_path / "p")


def _dirty(p, *args) -> list[str]:
    r = p.e3("--json", "query", "dirty(D)", *args)
    assert r.code == 0, r
    assert r.json["columns"] == ["D"]
    return [d for d, in r.json["rows"]]


def _stale(p) -> list[str]:
    r = p.e3("--json", "status")
    assert r.code == 0, r
    return r.json["stale"]


def test_query_dirty_before_any_run_is_every_dataflow_as_status_says(flows):
    assert _dirty(flows) == _stale(flows) == ALL
    rows = flows.e3("--json", "query", 'reason(D, "never_run", D)').json["rows"]
    assert [d for d, in rows] == ALL


def test_query_dirty_after_a_run_is_empty_as_status_says(flows):
    flows.go()
    assert _dirty(flows) == _stale(flows) == []
    assert [d for d, in flows.e3("--json", "query", "clean(D)").json["rows"]] == ALL


def test_query_dirty_sees_an_unsaved_input_edit_as_status_does(flows):
    flows.go()
    (flows.path / "inputs/k").write_text("9")  # not taken in: only the working copy has it
    want = ["combine", "final", "report", "scaled", "side"]
    assert _stale(flows) == want
    for engine in ("fast", "pydatalog"):
        assert _dirty(flows, "--engine", engine) == want, engine
    q = flows.e3("--json", "query", "input_changed(P)").json
    assert q["rows"] == [["inputs/k"]]
    q = flows.e3("--json", "query", "?- reason(D, K, A), K != \"upstream\".").json
    assert q["rows"] == [["scaled", "input", "inputs/k"], ["side", "input", "inputs/k"]]
    assert flows.go("--dry-run")["would_run"] == want


def test_query_dirty_sees_a_failed_dataflow_and_a_lost_output_as_status_does(flows):
    flows.go()
    flows.set_json("inputs/flag", "fail")
    flows.go(code=1)  # check fails (failures are never memoized), after is skipped
    h = flows.e3("--json", "ls", "outputs/norm").json[0]["hash"]
    flows.object_path(h).unlink()
    assert _dirty(flows) == _stale(flows) == ["after", "check", "combine", "count", "final",
                                              "norm", "upper"]
    facts = flows.e3("--json", "facts").json
    assert facts["miss"] == [["check"], ["norm"]] and facts["output_lost"] == [["norm"]]
    assert facts["failed_last"] == [["check"]]
    assert facts["input_changed"] == [["inputs/flag"]]  # since the last settled run
    assert facts["forced"] == [] and facts["input_missing"] == []
    reasons = flows.e3("--json", "query", '?- reason(D, K, A), K != "upstream".').json["rows"]
    assert reasons == [["check", "failed", "check"], ["check", "input", "inputs/flag"],
                       ["norm", "output_lost", "norm"]]


def test_an_output_that_differs_from_the_memo_is_stale_in_status_but_not_dirty(flows):
    # `go` does not run norm for it: it puts the memo's bytes back. dirty(D) is what `go`
    # would run (its --dry-run's would_run); status lists the output too.
    flows.go()
    assert flows.e3("set", "outputs/norm/o", "-", input="edited\n").code == 0
    st = flows.e3("--json", "status").json
    assert st["stale"] == ["norm"] and "output differs" in st["reasons"]["norm"]
    assert _dirty(flows) == [] == flows.go("--dry-run")["would_run"]


def test_impact_still_answers_the_readers_and_their_dependents_whatever_is_stale(flows):
    flows.go()
    (flows.path / "inputs/k").write_text("9")  # scaled, side, report, … are stale now
    r = flows.e3("--json", "impact", "inputs/text")
    assert r.code == 0, r
    assert r.json == ["combine", "count", "final", "norm", "upper"]


def test_graph_questions_answer_as_before(flows):
    (flows.path / "inputs/k").write_text("9")
    assert flows.e3("deps", "final").out.splitlines() == ["combine", "count"]
    assert flows.e3("dependents", "norm").out.splitlines() == ["count", "upper"]
    q = flows.e3("--json", "query", 'edge("norm", X)').json
    assert q["rows"] == [["count"], ["upper"]]


def test_query_human_output_starts_with_a_header_row_naming_the_columns(flows):
    r = flows.e3("query", 'edge(Up, Down), Up = "norm"')
    assert r.code == 0, r
    assert r.out.splitlines() == ["Up\tDown", "norm\tcount", "norm\tupper"]
    assert r.err.startswith("2 row(s), engine")
    r = flows.e3("query", "dirty(D)")  # nothing ran: every dataflow
    assert r.out.splitlines() == ["D", *ALL]
    assert flows.e3("query", 'edge("norm", "count")').out.splitlines() == ["true", "yes"]
    assert flows.e3("query", 'edge("norm", "x")').out.splitlines() == ["true"]


def test_facts_prints_datalog_that_the_parser_reads_back_equal(flows, tmp_path):
    from e3logic.logic.program import Program

    flows.go()
    (flows.path / "inputs/k").write_text("9")
    text = flows.e3("facts").out
    assert 'dataflow("total", "total").' in text.splitlines()
    assert "'" not in text
    want = {rel: {tuple(row) for row in rows}
            for rel, rows in flows.e3("--json", "facts").json.items() if rows}
    assert Program.parse(text, source="facts.dl").facts == want
    assert want["miss"] == {("scaled",), ("side",)}
    (tmp_path / "facts.dl").write_text(text)
    # and `e3 query -r` takes it back (the same facts, given twice)
    r = flows.e3("--json", "query", "-r", str(tmp_path / "facts.dl"), "input_changed(P)")
    assert r.code == 0, r
    assert r.json["rows"] == [["inputs/k"]]
    one = flows.e3("facts", "input_changed")
    assert one.out == 'input_changed("inputs/k").\n'


def test_fact_lines_quote_strings_with_json_escapes_and_keep_ints_bare():
    from e3logic.cli.logic_cmds import fact_line
    from e3logic.logic.program import Program

    rows = [("a\"b\\c", -3), ("new\nline\ttab", 0), ("é ünïcode ✓", 2 ** 62),
            ("'single'", 7), ("\x01", -(2 ** 63))]
    text = "".join(fact_line("r", row) for row in rows) + fact_line("yes", ())
    assert text.splitlines()[0] == 'r("a\\"b\\\\c", -3).'
    assert Program.parse(text).facts == {"r": set(rows), "yes": {()}}
