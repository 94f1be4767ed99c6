"""The running commands' surface (CLI.md): `go`, `run`, `logs`, `episodes`, `stats`, `plan` —
their `--json` keys, human lines, exit codes and one-line errors — on the `flows` package."""
from __future__ import annotations

import re
import shutil

import pytest

from tests.flows import FLOWS, FLOWS_DEPS, GO_KEYS, LISTS, Proj, copy_project

HEX64 = re.compile(r"^[0-9a-f]{64}$")


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
    assert re.fullmatch(r"run r1 ok: 12 executed; commit [0-9a-f]{12}", lines[12])
    warm = p.e3("go", "-j", "2")
    assert all(line.endswith("... cached") for line in warm.out.splitlines()[:12])
    assert warm.out.splitlines()[12].startswith("run r2 ok: 12 cached; commit ")
    p.set_json("inputs/flag", "fail")
    failed = p.e3("go", "-j", "2")
    assert failed.code == 1
    assert re.search(r"\] check\.\.\. FAILED \(\d+\.\ds\)", failed.out)
    assert "run r3 failed: 2 executed, 10 cached" not in failed.out  # after is skipped, not run
    assert "1 failed, 1 skipped" in failed.out
    assert "  FAILED check: ValueError: flag says fail (see 'e3 logs check')" in failed.out
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


def test_a_task_that_printed_nothing_has_an_empty_log_and_the_run_leaves_no_spare_files(cold):
    p, _ = cold
    r = p.e3("--json", "logs", "upper")  # a silent shell task: no file behind its log
    assert r.code == 0 and r.json["log"] == ""
    logs = p.path / ".e3" / "logs"
    assert not (logs / f"{r.json['execution']}.log").exists()
    assert [f.name for f in logs.iterdir() if f.name.startswith(".")] == []
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
            if "\t" in line]
    assert sorted(r[1] for r in rows) == FLOWS
    shown = sum(float(r[3]) for r in rows)
    assert shown == pytest.approx(plan["total_work"], abs=0.06)
