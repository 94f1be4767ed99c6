"""The running commands' surface (CLI.md): `go`, `run`, `logs`, `episodes`, `stats`, `plan` —
their `--json` keys, human lines, exit codes and one-line errors — on the `flows` package."""
from __future__ import annotations

import re
import shutil

import pytest

from tests.flows import (FLOWS, FLOWS_DEPS, FLOWS_STEPS, GO_KEYS, LISTS, Proj, copy_project,
                         make_project, run_e3, write_package)

HEX64 = re.compile(r"^[0-9a-f]{64}$")
# the line of steps.py (as authored) where `check` raises
CHECK_RAISES = next(i for i, line in enumerate(FLOWS_STEPS.splitlines(), 1)
                    if 'raise ValueError("flag says fail")' in line)


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    p = copy_project(tmp_path_factory, "flows", tmp_path_factory.mktemp("cli-run") / "p")
    return p, p.go()


@pytest.fixture
def warm(cold, tmp_path):
    shutil.copytree(cold[0].path, tmp_path / "w", symlinks=True)
    return Proj(tmp_path / "w")


# -- go ---------------------------------------------------------------------------------------------
def test_go_json_has_every_cli_md_key_with_sorted_lists_and_hex_digests(cold):
    p, res = cold
    assert GO_KEYS <= set(res)
    assert res["status"] == "ok" and res["run"] == "r1"
    for k in LISTS:
        assert res[k] == sorted(res[k])
    for k in ("state_root", "commit", "receipt"):
        assert HEX64.match(res[k]), k
    assert p.e3("--json", "status").json["root"] == res["state_root"]


def test_go_prints_a_line_per_dataflow_and_a_summary_without_json(tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "flows", tmp_path / "h")
    cold = p.e3("go", "-j", "2")
    assert cold.code == 0, cold
    lines = cold.out.strip().splitlines()
    assert len(lines) == 13
    for i, line in enumerate(lines[:12], 1):
        # each executed line says why it ran
        assert re.fullmatch(rf"\[{i}/12\] [a-z]+\.\.\. done \(\d+\.\ds\): never run", line), line
    assert sorted(line.split()[1].rstrip(".") for line in lines[:12]) == FLOWS
    assert re.fullmatch(r"run r1 ok: 12 executed; state [0-9a-f]{12}", lines[12])
    warm = p.e3("go", "-j", "2")
    assert all(line.endswith("... cached") for line in warm.out.splitlines()[:12])
    assert warm.out.splitlines()[12].startswith("run r2 ok: 12 cached; state ")
    p.set_json("inputs/flag", "fail")
    failed = p.e3("go", "-j", "2")
    assert failed.code == 1
    assert re.search(r"\] check\.\.\. FAILED \(\d+\.\ds\): ValueError: flag says fail "
                     rf"\(steps\.py:{CHECK_RAISES}\)\n", failed.out)
    assert re.search(r"\] after\.\.\. skipped: check failed upstream\n", failed.out)
    assert "run r3 failed: 2 executed, 10 cached" not in failed.out  # after is skipped, not run
    assert "1 failed, 1 skipped" in failed.out
    assert (f"  FAILED check: ValueError: flag says fail (steps.py:{CHECK_RAISES}); "
            "see 'e3 logs check'") in failed.out
    assert "  skipped after: check failed upstream" in failed.out


def test_go_json_sends_progress_to_stderr_and_one_document_to_stdout(warm):
    r = warm.e3("--json", "go", "-j", "2")
    assert r.code == 0
    assert r.json["cached"] == FLOWS  # stdout parses as one JSON document
    assert r.err.count("... cached") == 12


class _Stream:
    """A non-terminal stream recording each write."""

    def __init__(self):
        self.writes = []

    def write(self, s):
        self.writes.append(s)

    def flush(self):
        pass

    def isatty(self):
        return False


def test_a_reporter_writes_a_batch_of_cached_lines_in_one_write_numbered_in_order(monkeypatch):
    from e3logic.cli.run_cmds import Reporter

    err = _Stream()
    monkeypatch.setattr("sys.stderr", err)
    rep = Reporter(to_stderr=True)
    rep.start(3)
    rep.outcomes(["b", "a"], "cached")
    rep.outcome("c", "executed", 0.25)
    assert err.writes[0] == "[1/3] b... cached\n[2/3] a... cached\n"
    assert "".join(err.writes[1:]) == "[3/3] c... done (0.2s)\n"


def test_a_reporter_writes_reports_that_arrive_together_in_one_write(monkeypatch):
    from e3logic.cli.run_cmds import Reporter

    err = _Stream()
    monkeypatch.setattr("sys.stderr", err)
    rep = Reporter(to_stderr=True)
    rep.start(3)
    rep.many([("b", "cached", 0.0), ("a", "executed", 1.25), ("c", "failed", 0.5)])
    assert err.writes == ["[1/3] b... cached\n[2/3] a... done (1.2s)\n[3/3] c... FAILED (0.5s)\n"]


def test_a_reporter_says_why_on_a_failed_skipped_or_cancelled_line_in_the_same_one_write(
        monkeypatch):
    from e3logic.cli.run_cmds import Reporter

    err = _Stream()
    monkeypatch.setattr("sys.stderr", err)
    rep = Reporter(to_stderr=True)
    rep.start(4)
    rep.explain({"a": "never run"})
    rep.many([("a", "executed", 1.25, ""), ("c", "failed", 0.5, "exit 3"),
              ("d", "skipped", 0.0, "c failed upstream"),
              ("e", "cancelled", 0.0, "fail-fast: c failed")])
    assert err.writes == ["[1/4] a... done (1.2s): never run\n"
                          "[2/4] c... FAILED (0.5s): exit 3\n"
                          "[3/4] d... skipped: c failed upstream\n"
                          "[4/4] e... cancelled: fail-fast: c failed\n"]


def test_a_warm_no_op_on_a_terminal_draws_no_progress_bar(monkeypatch):
    from e3logic.cli.run_cmds import Reporter

    out = _Stream()
    out.isatty = lambda: True
    monkeypatch.setattr("sys.stdout", out)
    rep = Reporter(to_stderr=False)
    rep.start(2)
    rep.outcomes(["a", "b"], "cached")
    rep.stop()
    assert out.writes == [] and rep.progress is None and rep.i == 2


def test_go_dry_run_json_has_the_go_keys_and_the_plan(warm):
    warm.set_json("inputs/k", 4)
    res = warm.go("--dry-run")
    assert GO_KEYS <= set(res)
    assert res["status"] == "dry-run" and res["run"] is None and res["commit"] is None
    assert res["would_run"] == ["combine", "final", "report", "scaled", "side"]
    assert {"batches", "leases", "critical_path", "makespan"} <= set(res["plan"])


# -- run --------------------------------------------------------------------------------------------
def test_run_executes_a_task_on_files_then_answers_from_the_memo_and_force_reexecutes(cold, tmp_path):
    p, _ = cold
    (tmp_path / "nums.json").write_text("[1, 2, 3]")
    first = p.e3("--json", "run", "flows/total", tmp_path / "nums.json", "-o", tmp_path / "a")
    assert first.code == 0, first
    assert {"execution", "cached", "output_hash", "seconds"} <= set(first.json)
    assert first.json["cached"] is False and (tmp_path / "a").read_bytes() == b"6"
    second = p.e3("--json", "run", "flows/total", tmp_path / "nums.json", "-o", tmp_path / "b")
    assert second.json["cached"] is True
    assert second.json["execution"] == first.json["execution"]
    assert (tmp_path / "b").read_bytes() == b"6"
    forced = p.e3("--json", "run", "flows/total", tmp_path / "nums.json", "-o", tmp_path / "c",
                  "--force")
    assert forced.json["cached"] is False
    assert forced.json["output_hash"] == first.json["output_hash"]


def test_run_executes_a_shell_task_on_a_raw_file(cold, tmp_path):
    p, _ = cold
    (tmp_path / "t.txt").write_bytes(b"a  b\n")
    r = p.e3("run", "flows@0.1.0/upper", tmp_path / "t.txt", "-o", tmp_path / "up")
    assert r.code == 0, r
    assert r.out.startswith("done (")
    assert (tmp_path / "up").read_bytes() == b"A  B\n"


def test_run_a_failing_task_exits_1_and_an_unknown_task_exits_2_in_one_line(cold, tmp_path):
    p, _ = cold
    (tmp_path / "flag.json").write_text('"fail"')
    bad = p.e3("run", "flows/check", tmp_path / "flag.json", "-o", tmp_path / "o")
    assert bad.code == 1, bad
    assert bad.err.strip().count("\n") == 0
    assert "ValueError: flag says fail" in bad.err and "e3 logs" in bad.err
    assert not (tmp_path / "o").exists()
    unknown = p.e3("run", "flows/totl", tmp_path / "flag.json", "-o", tmp_path / "o")
    assert unknown.code == 2 and "did you mean 'total'" in unknown.err


# -- logs -------------------------------------------------------------------------------------------
def test_logs_show_a_python_tasks_stdout_and_stderr(cold):
    p, _ = cold
    r = p.e3("--json", "logs", "total")
    assert r.code == 0
    assert set(r.json) >= {"execution", "log"} and HEX64.match(r.json["execution"])
    assert r.json["log"] == "total of 3 numbers\ntotal-stderr\n"


def test_logs_show_a_shell_tasks_stdout_and_stderr(cold):
    p, _ = cold
    r = p.e3("logs", "side")
    assert r.code == 0
    assert r.out == "side-stdout\nside-stderr\n"


def test_a_task_that_printed_nothing_has_an_empty_log(cold):
    p, _ = cold
    r = p.e3("--json", "logs", "upper")  # a silent shell task
    assert r.code == 0 and r.json["log"] == ""
    logs = p.path / ".e3" / "logs"
    assert (logs / f"{r.json['execution']}.log").stat().st_size == 0
    assert (logs / f"{p.e3('--json', 'logs', 'side').json['execution']}.log").stat().st_size


def test_logs_of_a_failed_shell_task_hold_its_stderr(tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "pair", tmp_path / "pair")
    p.go("bad", code=1)
    r = p.e3("--json", "logs", "bad")
    assert r.json["log"] == "oops-on-stderr\n"


def test_an_inline_tasks_prints_go_to_its_log_and_never_into_the_json_answer(
        tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "talk", tmp_path / "talk")
    r = p.e3("--json", "go", "-j", "2")
    assert r.code == 0, r
    assert "inline-stdout" not in r.out and "inline-stderr" not in r.err
    assert r.json["executed"] == ["talk"]
    assert p.e3("--json", "logs", "talk").json["log"] == "inline-stdout\ninline-stderr\n"


def test_logs_of_a_forced_reexecution_show_only_that_execution(warm):
    warm.go("--force", "total")
    r = warm.e3("--json", "logs", "total")
    assert r.json["log"] == "total of 3 numbers\ntotal-stderr\n"


def test_logs_of_something_that_never_ran_is_a_usage_error(cold):
    p, _ = cold
    r = p.e3("logs", "nosuch")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1


def test_logs_of_a_dataflow_that_never_ran_say_so_and_how_to_run_it(tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "flows", tmp_path / "fresh")
    r = p.e3("logs", "after")
    assert r.code == 2, r
    assert r.err == "e3: error: dataflow 'after' has not run yet; 'e3 go after' runs it\n"
    unknown = p.e3("logs", "aftr")
    assert unknown.code == 2 and "unknown dataflow or execution 'aftr'" in unknown.err
    assert "did you mean 'after'" in unknown.err


# -- why a dataflow failed, end to end ------------------------------------------------------------
@pytest.fixture(scope="module")
def failed(tmp_path_factory):
    """The flows package after a cold run, then a run with `check` failing."""
    p = copy_project(tmp_path_factory, "flows", tmp_path_factory.mktemp("cli-failed") / "p")
    p.go()
    p.set_json("inputs/flag", "fail")
    return p, p.go(code=1)


def test_go_json_reasons_carry_the_users_file_and_line(failed):
    _, res = failed
    assert res["reasons"] == {"check": f"ValueError: flag says fail (steps.py:{CHECK_RAISES})",
                              "after": "check failed upstream"}


def test_logs_of_a_failed_dataflow_name_the_file_as_authored_and_end_with_why(failed):
    p, _ = failed
    r = p.e3("logs", "check")
    assert r.code == 0, r
    assert r.out == ("Traceback (most recent call last):\n"
                     f'  File "steps.py", line {CHECK_RAISES}, in check\n'
                     '    raise ValueError("flag says fail")\n'
                     "ValueError: flag says fail\n"
                     f"e3: check failed: ValueError: flag says fail (steps.py:{CHECK_RAISES})\n")
    j = p.e3("--json", "logs", "check").json
    assert j["reason"] == f"ValueError: flag says fail (steps.py:{CHECK_RAISES})"
    assert j["log"] == r.out[: r.out.index("e3: check failed")]
    ok = p.e3("--json", "logs", "total").json
    assert ok["reason"] is None and ok["log"] == "total of 3 numbers\ntotal-stderr\n"
    assert not p.e3("logs", "total").out.rstrip().splitlines()[-1].startswith("e3:")


def test_once_fixed_the_logs_no_longer_say_it_failed(tmp_path, failed):
    shutil.copytree(failed[0].path, tmp_path / "fixed", symlinks=True)
    p = Proj(tmp_path / "fixed")
    p.set_json("inputs/flag", "ok")
    p.go()
    r = p.e3("--json", "logs", "check")
    assert r.json["reason"] is None and r.json["log"] == ""


def test_a_missing_input_is_the_reason_on_the_line_and_in_the_logs_which_have_no_log(
        tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "flows", tmp_path / "m")
    (p.path / "inputs" / "flag").unlink()
    r = p.e3("go", "check", "after")
    assert r.code == 1, r
    assert re.search(r"\] check\.\.\. FAILED \(\d\.\ds\): input inputs/flag is missing\n",
                     r.out)
    assert p.e3("logs", "check").out == "e3: check failed: input inputs/flag is missing\n"
    j = p.e3("--json", "logs", "check").json
    assert j == {"execution": None, "log": "", "reason": "input inputs/flag is missing"}


def test_a_shell_failure_says_its_exit_code_and_fail_fast_says_why_the_rest_stopped(
        tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "pair", tmp_path / "pair")
    r = p.e3("go", "-j", "2", "--fail-fast")
    assert r.code == 1, r
    assert re.search(r"\] bad\.\.\. FAILED \(\d+\.\ds\): exit 3\n", r.out)
    assert re.search(r"\] later\.\.\. skipped: bad failed upstream\n", r.out)
    assert re.search(r"\] slow\.\.\. cancelled: fail-fast: bad failed\n", r.out)
    assert "  cancelled slow: fail-fast: bad failed\n" in r.out
    logs = p.e3("logs", "bad")
    assert logs.out == "oops-on-stderr\ne3: bad failed: exit 3\n"
    assert p.e3("--json", "logs", "bad").json["reason"] == "exit 3"


def test_a_budget_kill_says_which_budget(tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "limits", tmp_path / "lim")
    r = p.e3("go", "nap")
    assert r.code == 1, r
    assert re.search(r"\[1/1\] nap\.\.\. FAILED \(\d+\.\ds\): budget wall_s=1 exceeded\n",
                     r.out)
    assert p.e3("logs", "nap").out.endswith("e3: nap failed: budget wall_s=1 exceeded\n")


LOADS_PKG = '''
from e3logic import sdk

package = sdk.package("loads", "0.1.0")
package.module("steps.py")
package.module("broken.py")
package.module("lib/helpers.py")
for runtime in ("python", "inline"):
    package.task(f"deep_{runtime}", "steps:deep", runtime=runtime)
    package.task(f"missing_{runtime}", "steps:nosuchfunc", runtime=runtime)
    package.task(f"broken_{runtime}", "broken:f", runtime=runtime)
    for t in ("deep", "missing", "broken"):
        package.dataflow(f"{t}_{runtime}", task=f"{t}_{runtime}", inputs=["inputs/x"],
                         output="o")
package.dataset("inputs/x", value=1)
'''
LOADS_FILES = {
    "steps.py": "from lib.helpers import inverse\n\n\ndef deep(x):\n    return inverse(x - 1)\n",
    "lib/__init__.py": "",
    "lib/helpers.py": "def inverse(v):\n    return 1 / v\n",
    "broken.py": "print('importing broken')\ny = undefined_name + 1\n\n\ndef f(x):\n    return x\n",
}


@pytest.fixture(scope="module")
def loads(tmp_path_factory):
    d = tmp_path_factory.mktemp("loads")
    p = Proj(make_project(d / "p", write_package(d / "src", LOADS_PKG, LOADS_FILES), "loads"))
    return p, p.e3("go", "-j", "2")


@pytest.mark.parametrize("runtime", ["python", "inline"])
def test_an_exception_deep_in_the_users_modules_names_the_innermost_file_and_line(
        loads, runtime):
    p, r = loads
    reason = "ZeroDivisionError: division by zero (lib/helpers.py:2)"
    assert re.search(rf"\] deep_{runtime}\.\.\. FAILED \(\d+\.\ds\): {re.escape(reason)}\n",
                     r.out), r
    log = p.e3("logs", f"deep_{runtime}").out
    assert log.startswith('Traceback (most recent call last):\n  File "steps.py", line 5, in deep\n')
    assert '  File "lib/helpers.py", line 2, in inverse\n' in log and ".e3" not in log
    assert log.endswith(f"e3: deep_{runtime} failed: {reason}\n")


@pytest.mark.parametrize("runtime", ["python", "inline"])
def test_a_task_entry_that_is_not_there_reads_naturally_and_logs_say_so(loads, runtime):
    p, r = loads
    reason = "task entry 'steps:nosuchfunc': steps has no attribute 'nosuchfunc'"
    assert f"missing_{runtime}... FAILED" in r.out and f": {reason}\n" in r.out
    assert p.e3("logs", f"missing_{runtime}").out == f"e3: missing_{runtime} failed: {reason}\n"


@pytest.mark.parametrize("runtime", ["python", "inline"])
def test_a_module_that_fails_to_import_names_its_line_and_its_traceback_starts_there(
        loads, runtime):
    p, r = loads
    reason = ("cannot import broken: NameError: name 'undefined_name' is not defined "
              "(broken.py:2)")
    assert f": {reason}\n" in r.out
    assert p.e3("logs", f"broken_{runtime}").out == (
        "importing broken\n"
        "Traceback (most recent call last):\n"
        '  File "broken.py", line 2, in <module>\n'
        "    y = undefined_name + 1\n"
        "        ^^^^^^^^^^^^^^\n"
        "NameError: name 'undefined_name' is not defined\n"
        f"e3: broken_{runtime} failed: {reason}\n")


# -- shell tasks and their package's files ({bundle}) --------------------------------------------------
CALC_PKG = '''
from e3logic import sdk

package = sdk.package("calc", "VERSION")
package.module("calc.sh")
package.task("calc", ["sh", "{bundle}/calc.sh", "{input0}", "{output}"], runtime="shell")
package.task("scribble", ["sh", "-c", "echo x > {bundle}/calc.sh && cp {input0} {output}"],
             runtime="shell")
package.dataset("inputs/n", file="n.txt")
package.dataflow("calc", task="calc", inputs=["inputs/n"], output="o")
package.dataflow("scribble", task="scribble", inputs=["inputs/n"], output="o")
'''
CALC_SH = 'read n < "$1"; echo "calc in $(pwd)"; echo $((n * FACTOR)) > "$2"\n'


def write_calc(d, version: str = "0.1.0", factor: int = 2):
    return write_package(d, CALC_PKG.replace("VERSION", version),
                         {"calc.sh": CALC_SH.replace("FACTOR", str(factor)), "n.txt": "21\n"})


def test_a_shell_task_runs_a_script_bundled_with_its_package_from_the_project_root(tmp_path):
    p = Proj(make_project(tmp_path / "p", write_calc(tmp_path / "src"), "calc"))
    res = p.go("calc")
    assert res["executed"] == ["calc"], res
    assert p.read("outputs/calc/o") == b"42\n"
    assert p.e3("logs", "calc").out == f"calc in {p.path}\n"  # cwd: the project root
    bundles = list((p.path / ".e3" / "cache" / "bundles").iterdir())
    assert len(bundles) == 1
    assert (bundles[0] / "calc.sh").read_text() == CALC_SH.replace("FACTOR", "2")
    assert (bundles[0] / "calc.sh").stat().st_mode & 0o777 == 0o444
    assert p.go("calc")["cached"] == ["calc"]


def test_editing_a_bundled_script_reruns_its_shell_task_as_changed_task_code(tmp_path):
    p = Proj(make_project(tmp_path / "p", write_calc(tmp_path / "src"), "calc"))
    assert p.go("calc")["executed"] == ["calc"]
    src = write_calc(tmp_path / "v2", "0.2.0", factor=3)
    assert p.e3("build", src, "-o", src / "dist").code == 0
    assert p.e3("add", src / "dist/calc-0.2.0.zip").code == 0
    assert p.e3("checkout", "calc@0.2.0").code == 0
    res = p.go("calc")
    assert res["executed"] == ["calc"], res
    assert res["reasons"] == {"calc": "task code of calc changed"}
    assert p.read("outputs/calc/o") == b"63\n"


def test_a_shell_task_writing_into_its_bundle_fails_saying_it_is_read_only(tmp_path):
    p = Proj(make_project(tmp_path / "p", write_calc(tmp_path / "src"), "calc"))
    r = p.e3("go", "scribble")
    assert r.code == 1, r
    assert re.search(r"\] scribble\.\.\. FAILED \(\d+\.\ds\): .*\{bundle\} .*read-only", r.out), r
    assert "is read-only" in p.e3("--json", "logs", "scribble").json["reason"]
    # the bundle other tasks read is the one built, whatever the failed task did
    assert p.go("calc")["executed"] == ["calc"] and p.read("outputs/calc/o") == b"42\n"


@pytest.mark.parametrize("argv, says", [
    ('["sh", "{bundel}/calc.sh", "{input0}", "{output}"]',
     "task 'calc': unknown placeholder {bundel} in '{bundel}/calc.sh'; did you mean {bundle}? "
     "the placeholders are {inputs}, {input0}, {input1}…, {output} and {bundle}"),
    ('["sh", "{bundle}/calc.sh", "{input1}", "{output}"]',
     "dataflow 'calc' runs task 'calc', whose argv refers to {input1}, but it has 1 input; "
     "add inputs or use {input0}"),
])
def test_a_shell_template_with_an_unknown_placeholder_or_input_is_a_build_error(
        tmp_path, argv, says):
    text = CALC_PKG.replace("VERSION", "0.1.0").replace(
        '["sh", "{bundle}/calc.sh", "{input0}", "{output}"]', argv)
    src = write_package(tmp_path / "src", text, {"calc.sh": CALC_SH, "n.txt": "1\n"})
    r = run_e3("build", src, "-o", tmp_path / "dist", cwd=tmp_path)
    assert r.code == 2, r
    assert says in r.err and r.err.count("\n") == 1, r.err


# -- episodes -----------------------------------------------------------------------------------------
def test_episodes_json_has_the_cli_md_keys_and_defaults_to_the_latest_run(cold):
    p, res = cold
    eps = p.episodes()
    assert eps == p.episodes(res["run"])
    assert sorted(e["dataflow"] for e in eps) == FLOWS
    for e in eps:
        assert {"episode", "dataflow", "history"} <= set(e)
        for h in e["history"]:
            assert {"state", "beat", "note"} <= set(h)
            assert isinstance(h["beat"], int)


def test_episodes_human_output_is_one_line_per_episode(cold):
    p, _ = cold
    r = p.e3("episodes")
    lines = r.out.strip().splitlines()
    assert len(lines) == 12
    assert all(re.match(r"r1:[a-z]+: plan@\d+ → run@\d+ → ok@\d+", line) for line in lines)


def test_episodes_of_an_unknown_run_is_a_usage_error(cold):
    p, _ = cold
    r = p.e3("--json", "episodes", "--run", "r99")
    assert r.code == 2, r
    assert "r99" in r.err


# -- stats --------------------------------------------------------------------------------------------
def test_stats_after_a_cold_and_a_warm_run_is_a_half_hit_ratio(warm):
    warm.go()
    r = warm.e3("--json", "stats")
    s = r.json
    assert {"hit_ratio", "executed", "cached", "work_saved"} <= set(s)
    assert (s["executed"], s["cached"], s["hit_ratio"]) == (12, 12, 0.5)
    assert s["work_saved"] > 0
    human = warm.e3("stats").out
    assert human.startswith("hit ratio 50%: 12 executed, 12 cached; work saved ")


# -- plan ---------------------------------------------------------------------------------------------
def test_plan_json_keys_and_batches_respect_dependencies_and_the_cap(cold):
    p, _ = cold
    r = p.e3("--json", "plan", "--all", "-j", "2")
    plan = r.json
    assert {"batches", "leases", "critical_path", "makespan"} <= set(plan)
    batch_of = {n: i for i, b in enumerate(plan["batches"]) for n in b}
    assert sorted(batch_of) == FLOWS
    assert all(len(b) <= 2 for b in plan["batches"])
    for n, deps in FLOWS_DEPS.items():
        assert all(batch_of[d] < batch_of[n] for d in deps), n
    cp = plan["critical_path"]
    assert all(a in FLOWS_DEPS[b] for a, b in zip(cp, cp[1:]))
    assert plan["makespan"] > 0
    nothing = p.e3("--json", "plan").json  # everything is cached
    assert nothing["batches"] == [] and nothing["critical_path"] == []


def test_plan_human_table_shows_the_recorded_cost_estimates(cold):
    p, _ = cold
    plan = p.e3("--json", "plan", "--all", "-j", "2").json
    rows = [line.split("\t") for line in p.e3("plan", "--all", "-j", "2").out.splitlines()
            if "\t" in line][1:]  # after the header row
    assert sorted(r[1] for r in rows) == FLOWS
    shown = sum(float(r[3]) for r in rows)
    assert shown == pytest.approx(plan["total_work"], abs=0.06)


def test_plan_prints_a_header_row_over_its_columns_when_not_on_a_terminal(cold):
    p, _ = cold
    lines = p.e3("plan", "--all", "-j", "2").out.splitlines()
    assert lines[0] == "batch\tdataflow\tleases\test. cost"
    assert all(re.fullmatch(r"\d+\t[a-z]+\t[^\t]+\t\d+\.\d\d", line) for line in lines[1:13])
    assert lines[13].startswith("critical path: ")


def test_plan_says_nothing_would_run_and_how_many_are_cached_when_the_plan_is_empty(warm):
    r = warm.e3("plan")
    assert (r.code, r.out) == (0, "nothing would run (12 cached)\n"), r
    assert warm.e3("plan", "after").out == "nothing would run (2 cached)\n"
    warm.set_json("inputs/k", 3)
    out = warm.e3("plan").out.splitlines()
    assert out[0] == "batch\tdataflow\tleases\test. cost"
    assert sorted(line.split("\t")[1] for line in out[1:] if "\t" in line) == [
        "combine", "final", "report", "scaled", "side"]


def test_a_no_op_go_names_the_runs_state_not_a_commit(warm):
    r = warm.e3("go", "-j", "2")
    last = r.out.splitlines()[-1]
    assert re.fullmatch(r"run r2 ok: 12 cached; state [0-9a-f]{12}", last), r
    assert "commit" not in r.out
    assert HEX64.match(warm.e3("--json", "go").json["commit"])  # the JSON key stays `commit`


# -- go on a terminal ---------------------------------------------------------------------------
class _Tty(_Stream):
    """A stream that says it is a terminal, recording what is drawn on it."""

    def isatty(self):
        return True

    def text(self):
        return "".join(self.writes)


def test_a_reporter_on_a_terminal_prints_failures_with_their_reason_unnumbered(monkeypatch):
    from e3logic.cli.run_cmds import Reporter

    out = _Tty()
    monkeypatch.setattr("sys.stdout", out)
    rep = Reporter(to_stderr=False)
    rep.start(4)
    rep.explain({"a": "never run"})
    rep.outcomes(["c"], "cached")
    rep.started("a")
    rep.started("b")
    assert set(rep.running) == {"a", "b"}
    rep.many([("a", "executed", 1.25, ""), ("b", "failed", 0.5, "exit 3"),
              ("d", "skipped", 0.0, "b failed upstream"), ("d", "skipped", 0.0, "again")])
    assert rep.running == {} and rep.i == 5
    rep.stop()
    text = out.text()
    assert "a... done (1.2s): never run" in text
    assert "b... FAILED (0.5s): exit 3" in text and "d... skipped: b failed upstream" in text
    assert "c... cached" not in text and not re.search(r"\[\d+/\d+\]", text)
    # the counts never pass the run's total, even told one outcome too many
    assert "e3 go 4/4: 1 done, 1 cached, 1 failed, 2 skipped" in text
    assert rep.progress is None


class _Screen:
    """Just enough of a terminal for rich's live display: text, CR, LF, erase line, cursor up
    (colours and cursor visibility change nothing here)."""

    TOKEN = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b|\r|\n|[^\x1b\r\n]+")

    def __init__(self):
        self.lines, self.row, self.col = [""], 0, 0

    def feed(self, text: str) -> None:
        for tok in self.TOKEN.findall(text):
            if tok == "\r":
                self.col = 0
            elif tok == "\n":
                self.row += 1
                if self.row == len(self.lines):
                    self.lines.append("")
            elif tok.startswith("\x1b["):
                cmd, arg = tok[-1], tok[2:-1]
                if cmd == "K":
                    self.lines[self.row] = "" if arg == "2" else self.lines[self.row][:self.col]
                elif cmd == "A":
                    self.row = max(0, self.row - int(arg or 1))
            elif tok != "\x1b":
                line = self.lines[self.row].ljust(self.col)
                self.lines[self.row] = line[:self.col] + tok + line[self.col + len(tok):]
                self.col += len(tok)

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.lines).strip("\n")


def _frames(raw: str) -> list[str]:
    """The screen as each redraw of the live area begins (rich starts one with CR + erase
    line), then as the command left it."""
    screen, frames = _Screen(), []
    for part in re.split(r"(?=\r\x1b\[2K)", raw):
        screen.feed(part)
        frames.append(screen.text())
    return frames


def _e3_on_a_pty(cwd, *args, timeout=90) -> tuple[int, str]:
    """Run the real `e3 ARGS` with its stdout on a pseudo-terminal (100x30); its exit code and
    everything it drew there (then what it wrote to stderr, if anything)."""
    import fcntl
    import os
    import select
    import struct
    import subprocess
    import sys
    import tempfile
    import termios
    import time

    from tests.helpers import e3_env

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    env = e3_env({"TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"})
    for k in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CI"):
        env.pop(k, None)
    chunks = []
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "e3logic", *args], cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL, stdout=slave, stderr=err)
        os.close(slave)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if select.select([master], [], [], 0.2)[0]:
                    try:
                        data = os.read(master, 65536)
                    except OSError:  # EIO: nothing holds the terminal any more
                        break
                    if not data:
                        break
                    chunks.append(data)
                elif proc.poll() is not None:
                    break
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            os.close(master)
        err.seek(0)
        errors = err.read().decode(errors="replace")
    return code, b"".join(chunks).decode(errors="replace") + errors


SLEEPY_PKG = '''
from e3logic import sdk

package = sdk.package("sleepy", "0.1.0")
package.task("nap", ["sh", "-c", "sleep $(cat {input0}); cat {input0} > {output}"],
             runtime="shell")
package.task("copy", ["sh", "-c", "cat {inputs} > {output}"], runtime="shell")
package.dataset("inputs/three", value=0)
package.dataset("inputs/five", value=0)
package.dataset("inputs/x", value=1)
package.dataflow("three", task="nap", inputs=["inputs/three"], output="o")
package.dataflow("five", task="nap", inputs=["inputs/five"], output="o")
package.dataflow("a", task="copy", inputs=["inputs/x"], output="o")
package.dataflow("b", task="copy", inputs=["outputs/a/o"], output="o")
package.dataflow("c", task="copy", inputs=["outputs/b/o"], output="o")
package.dataflow("d", task="copy", inputs=["inputs/x", "outputs/c/o"], output="o")
'''


def test_go_on_a_terminal_shows_what_runs_right_counts_and_cached_ones_summed(tmp_path):
    """Issue 16, item 3: a 3 s and a 5 s task after 4 cached ones, drawn on a real pty."""
    p = Proj(make_project(tmp_path / "p", write_package(tmp_path / "pkg", SLEEPY_PKG), "sleepy"))
    assert p.go()["executed"]  # everything cached (three and five sleep 0 s)
    p.set_json("inputs/three", 3)
    p.set_json("inputs/five", 5)
    code, raw = _e3_on_a_pty(p.path, "go", "-j", "2")
    assert code == 0, raw
    frames = _frames(raw)
    final = frames[-1]

    def first(pattern):
        return next((i for i, f in enumerate(frames) if re.search(pattern, f, re.M)), None)

    # what runs, with its elapsed time, before either has finished; cached ones as one count
    both = first(r"^e3 go .* 4/6 +4 cached, 2 running$(?s:.*)"
                 r"(^  three +\d+\.\ds$(?s:.*)^  five +\d+\.\ds$|"
                 r"^  five +\d+\.\ds$(?s:.*)^  three +\d+\.\ds$)")
    three_done = first(r"^three\.\.\. done \(\d+\.\ds\): inputs/three changed")
    assert both is not None and three_done is not None and both < three_done, raw
    # redrawn as time passes (not a timing test: just more than once per task)
    seen = {m for f in frames for m in re.findall(r"^  five +(\d+\.\ds)$", f, re.M)}
    assert len(seen) >= 3, seen
    # counts are out of the run's 6 dataflows and never pass it nor go back
    counts = [(int(a), int(b)) for f in frames for a, b in re.findall(r"\b(\d+)/(\d+)\b", f)]
    assert counts and all(n == 6 and 0 <= k <= 6 for k, n in counts), counts
    live = [int(k) for f in frames for k in re.findall(r"^e3 go .*? (\d+)/6 ", f, re.M)]
    assert live == sorted(live) and live[-1] == 6, live
    # the area is gone at the end; the finished lines and its counts line stay, unnumbered
    assert re.search(r"^five\.\.\. done \(\d+\.\ds\): inputs/five changed", final, re.M)
    assert "e3 go 6/6: 2 done, 4 cached" in final
    assert re.search(r"^run r2 ok: 2 executed, 4 cached; state [0-9a-f]{12}$", final, re.M)
    assert not re.search(r"^  (three|five) ", final, re.M) and "running" not in final, final
    assert not re.search(r"\[\d+/\d+\]", raw) and "... cached" not in raw
