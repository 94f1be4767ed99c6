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
