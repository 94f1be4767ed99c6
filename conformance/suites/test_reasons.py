"""Conformance suite `reasons` (issue 17, items 1–2; CLI.md `go`, `status`): the rerun policy
is Datalog the user can read and extend, and every rerun says why.

Driven through the real `e3` on the `flows` package (tests/flows.py):

    inputs/nums ─┬─ total ─────────────┐
                 └─ peak ── scaled ────┴─ report ─┐
    inputs/k ────────────────┘                     ├─ combine ─┐
            └── side                               │           ├─ final
    inputs/text ── norm ─┬─ upper ─────────────────┘           │
                         └─ count ─────────────────────────────┘
    inputs/flag ── check ── after
"""
from __future__ import annotations

from tests.flows import copy_project, make_project, write_package

ALL = ["after", "check", "combine", "count", "final", "norm", "peak", "report", "scaled",
       "side", "total", "upper"]


def _flows(tmp_path_factory, tmp_path):
    return copy_project(tmp_path_factory, "flows", tmp_path / "p")


def test_a_cold_run_says_every_dataflow_never_ran(tmp_path_factory, tmp_path):
    p = _flows(tmp_path_factory, tmp_path)
    res = p.go()
    assert res["reasons"] == {n: "never run" for n in ALL}


def test_a_changed_input_names_the_path_through_the_graph(tmp_path_factory, tmp_path):
    p = _flows(tmp_path_factory, tmp_path)
    p.go()
    p.set_json("inputs/k", 7)
    res = p.go()
    assert res["executed"] == ["combine", "final", "report", "scaled", "side"]
    assert res["reasons"] == {
        "scaled": "inputs/k changed → scaled",
        "side": "inputs/k changed → side",
        "report": "inputs/k changed → scaled → report",
        "combine": "inputs/k changed → scaled → report → combine",
        "final": "inputs/k changed → scaled → report → combine → final"}


def test_dry_run_and_status_give_the_same_reasons_before_anything_runs(tmp_path_factory,
                                                                      tmp_path):
    p = _flows(tmp_path_factory, tmp_path)
    p.go()
    (p.path / "inputs/k").write_text("9")  # an unsaved working-copy edit
    st = p.e3("--json", "status").json
    assert st["stale"] == ["combine", "final", "report", "scaled", "side"]
    assert st["reasons"]["report"] == "inputs/k changed → scaled → report"
    dry = p.go("--dry-run")
    assert dry["would_run"] == st["stale"] and dry["executed"] == []
    assert dry["reasons"] == st["reasons"]
    human = p.e3("status").out
    assert "  side: inputs/k changed → side" in human


def test_forced_and_missing_outputs_are_reasons(tmp_path_factory, tmp_path):
    p = _flows(tmp_path_factory, tmp_path)
    cold = p.go()
    assert p.go("--force", "total")["reasons"] == {"total": "forced"}
    h = p.e3("--json", "ls", "outputs/norm").json[0]["hash"]
    p.object_path(h).unlink()
    dry = p.go("--dry-run")
    assert dry["reasons"]["norm"] == "output missing"
    assert dry["reasons"]["upper"] == "output of norm missing → norm → upper"
    res = p.go()
    # norm's bytes come back the same: its readers are memo hits again (early cutoff)
    assert res["executed"] == ["norm"] and res["reasons"] == {"norm": "output missing"}
    assert res["state_root"] == cold["state_root"]


def test_a_failure_says_why_and_the_retry_says_it_failed_last_run(tmp_path_factory, tmp_path):
    p = _flows(tmp_path_factory, tmp_path)
    p.set_json("inputs/flag", "fail")
    res = p.go(code=1)
    assert res["failed"] == ["check"] and res["skipped"] == ["after"]
    assert "flag says fail" in res["reasons"]["check"]
    assert res["reasons"]["after"] == "check failed upstream"
    human = p.e3("go").out
    assert "FAILED check:" in human and "flag says fail" in human
    dry = p.go("--dry-run")
    assert dry["would_run"] == ["after", "check"]
    assert dry["reasons"] == {"check": "failed last run", "after": "never run"}


def test_changed_task_code_is_a_reason(tmp_path_factory, tmp_path):
    from tests.flows import FLOWS_PKG, FLOWS_STEPS, write_flows

    p = _flows(tmp_path_factory, tmp_path)
    p.go()
    src = tmp_path / "v2"
    write_flows(src)
    write_package(src, FLOWS_PKG.replace('"0.1.0"', '"0.2.0"'),
                  {"steps.py": FLOWS_STEPS + "\n# edited\n"})
    assert p.e3("build", src, "-o", src / "dist").code == 0
    assert p.e3("add", src / "dist/flows-0.2.0.zip").code == 0
    assert p.e3("checkout", "flows@0.2.0").code == 0
    dry = p.go("--dry-run")
    assert dry["would_run"] == ALL
    assert dry["reasons"]["total"] == "task code of total changed"
    assert dry["reasons"]["final"] == "task code of final changed"


VOLATILE_PKG = '''
from e3logic import sdk

package = sdk.package("feed", "0.1.0")
package.module("steps.py")
package.task("fetch", "steps:fetch")
package.task("use", "steps:use")
package.dataset("inputs/url", value="https://example.invalid/rates")
package.dataflow("fetch", task="fetch", inputs=["inputs/url"], output="rates",
                 tags=["volatile"])
package.dataflow("use", task="use", inputs=["outputs/fetch/rates"], output="n")
'''
VOLATILE_STEPS = '''
import os


def fetch(url):
    # stands for a download: the bytes differ on every call
    return {"url": url, "nonce": os.urandom(4).hex()}


def use(rates):
    return len(rates["nonce"])
'''


def test_a_project_rule_over_tags_reruns_a_tagged_dataflow_and_says_which_rule(tmp_path):
    src = write_package(tmp_path / "src", VOLATILE_PKG, {"steps.py": VOLATILE_STEPS})
    proj = make_project(tmp_path / "proj", src, "feed")
    rules = proj / "rules"
    rules.mkdir()
    (rules / "volatile.dl").write_text(
        "// a volatile dataflow reads the outside world: run it every time\n"
        'dirty(D) :- tag(D, "volatile").\n')
    from tests.helpers import run_e3

    first = run_e3("--json", "go", cwd=proj).json
    assert first["executed"] == ["fetch", "use"]
    second = run_e3("--json", "go", cwd=proj).json
    assert second["executed"] == ["fetch", "use"]
    assert second["reasons"] == {"fetch": "rule volatile.dl:2",
                                 "use": "rule volatile.dl:2 on fetch → fetch → use"}
    q = run_e3("--json", "query", "tag(D, T)", cwd=proj).json
    assert q["rows"] == [["fetch", "volatile"]]
    (rules / "volatile.dl").unlink()  # without the rule, the memo answers
    third = run_e3("--json", "go", cwd=proj).json
    assert third["executed"] == [] and third["reasons"] == {}


def test_impact_asks_the_same_rules_a_what_if(tmp_path_factory, tmp_path):
    p = _flows(tmp_path_factory, tmp_path)
    got = p.e3("--json", "impact", "inputs/text").json
    assert got == ["combine", "count", "final", "norm", "upper"]


def test_query_dirty_is_status_stale_list_after_an_input_edit(tmp_path_factory, tmp_path):
    # issue 16, item 5: `e3 query 'dirty(D)'` (the example of `--help`) answers from the
    # workspace's current state, unsaved working-copy edits included, as `e3 status` does
    p = _flows(tmp_path_factory, tmp_path)
    p.go()
    assert p.e3("--json", "query", "dirty(D)").json["rows"] == []
    (p.path / "inputs/text").write_text("Some  NEW   text\n")  # an unsaved edit
    st = p.e3("--json", "status").json
    assert st["stale"] == ["combine", "count", "final", "norm", "upper"]
    q = p.e3("--json", "query", "dirty(D)")
    assert q.code == 0, q
    assert [d for d, in q.json["rows"]] == st["stale"]
    human = p.e3("query", "dirty(D)").out.splitlines()
    assert human == ["D", *st["stale"]]


def test_a_failure_says_why_on_its_line_in_its_logs_and_in_the_users_own_terms(
        tmp_path_factory, tmp_path):
    """Issue 16, item 2: the reason is on the dataflow's line, at the end of `e3 logs`, in
    `go --json` and `logs --json`, and the traceback names steps.py as authored."""
    from tests.flows import FLOWS_STEPS

    line = next(i for i, text in enumerate(FLOWS_STEPS.splitlines(), 1)
                if 'raise ValueError("flag says fail")' in text)
    reason = f"ValueError: flag says fail (steps.py:{line})"
    p = _flows(tmp_path_factory, tmp_path)
    p.set_json("inputs/flag", "fail")
    r = p.e3("go")
    assert r.code == 1
    assert "check... FAILED" in r.out and f"): {reason}\n" in r.out
    assert "after... skipped: check failed upstream\n" in r.out
    assert p.go(code=1)["reasons"]["check"] == reason
    logs = p.e3("logs", "check").out
    assert f'  File "steps.py", line {line}, in check\n' in logs and ".e3/cache" not in logs
    assert logs.endswith(f"e3: check failed: {reason}\n")
    assert p.e3("--json", "logs", "check").json["reason"] == reason
    assert p.e3("--json", "logs", "total").json["reason"] is None
