"""`dataflow.facts`: relations projected from the repository for the logic layer — package
facts (kept per package object in index.db) and execution, provenance, episode facts."""
from __future__ import annotations

import pytest

from e3logic.dataflow.facts import package_facts, project_package, repository_facts
from e3logic.dataflow.model import Project
from tests.flows import FLOWS, FLOWS_DEPS, api_project, in_process_go, write_flows


def test_package_facts_name_dataflows_reads_writes_edges_leases_and_nesting():
    pkg = {"tasks": {"t": {"runtime": "shell", "argv": ["x"]}},
           "dataflows": {
               "a": {"task": "t", "inputs": ["inputs/x"], "output": "o",
                     "leases": [["db", "read"]], "resources": {"gpu": 1}},
               "b": {"task": "t", "inputs": ["outputs/a/o", "inputs/y"], "output": "o",
                     "leases": [["db/sales", "write"]], "profile": "rw"}}}
    f = project_package(Project(pkg, "h" * 64, {}))
    assert f["dataflow"] == {("a", "t"), ("b", "t")}
    assert f["task"] == {("t", "shell")}
    assert f["reads"] == {("a", "inputs/x"), ("b", "outputs/a/o"), ("b", "inputs/y")}
    assert f["writes"] == {("a", "outputs/a/o"), ("b", "outputs/b/o")}
    assert f["edge"] == {("a", "b")}
    assert f["input_dataset"] == {("inputs/x",), ("inputs/y",)}
    assert f["lease"] == {("a", "db", "read"), ("b", "db/sales", "write"),
                          ("b", "outputs/b/o", "write")}
    assert f["resource"] == {("a", "gpu", 1)}
    assert f["under"] == {("db/sales", "db")}


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    d = tmp_path_factory.mktemp("facts")
    api = api_project(d / "p", write_flows(d / "src"), "flows")
    return api, in_process_go(api)


def test_package_facts_are_kept_in_index_db_and_read_back_equal(ran):
    api, _ = ran
    project = Project.load(api.r, api.workspaces.package("main")["hash"])
    first = package_facts(api.r, project)
    stored = api.r.index.execute("SELECT COUNT(*) FROM facts WHERE scope=?",
                                 (f"pkg:{project.pkg_hash}",)).fetchone()[0]
    assert stored == sum(len(v) for v in first.values()) + 1  # + the "_projected" marker
    again = package_facts(api.r, project)
    assert {k: v for k, v in again.items() if v} == {k: v for k, v in first.items() if v}
    assert first["edge"] == {(d, n) for n, ds in FLOWS_DEPS.items() for d in ds}


def test_repository_facts_hold_executions_provenance_current_values_and_episodes(ran):
    api, res = ran
    f = repository_facts(api.r)
    assert {d for _, d, _ in f["execution"]} == set(FLOWS)
    keys = {k for k, _, _ in f["execution"]}
    produced = {p: h for k, p, h in f["produced"]}
    current = dict(f["current"])
    for n in FLOWS:  # what each execution produced is the current value of its output
        assert produced[f"outputs/{n}/o"] == current[f"outputs/{n}/o"]
    assert {k for k, _, _ in f["consumed"]} == keys
    assert ("outputs/peak/o", current["outputs/peak/o"]) in {(p, h) for k, p, h in f["consumed"]}
    assert {e for e, _ in f["episode"]} == {f"{res['run']}:{n}" for n in FLOWS}
    assert {s for _, s in f["state"]} == {"ok"}
    assert f["awaits"] == set()
    assert ("flows", "0.1.0") in f["package"]


# -- the rerun policy's facts, observed now (issue 16, item 5) -------------------------------

@pytest.fixture
def edited(tmp_path):
    """A flows project run once, then inputs/k edited in the working copy only."""
    api = api_project(tmp_path / "p", write_flows(tmp_path / "src"), "flows")
    in_process_go(api)
    (tmp_path / "p" / "inputs" / "k").write_text("9")
    return api


def test_repository_facts_include_what_status_decides_on(edited):
    f = edited.facts()
    assert f["miss"] == {("scaled",), ("side",)}
    assert f["input_changed"] == {("inputs/k",)}
    for rel in ("forced", "input_missing", "code_changed", "output_lost", "failed_last",
                "never_run"):
        assert f[rel] == set(), rel
    assert "miss" not in edited.facts(decision=False)


def test_logic_dirty_equals_status_stale_and_is_observed_only_when_asked(edited, monkeypatch):
    import e3logic.dataflow.facts as facts_mod

    calls = []
    real = facts_mod.decision_facts
    monkeypatch.setattr(facts_mod, "decision_facts",
                        lambda api, ws=None: calls.append(ws) or real(api, ws))
    logic = edited.logic()
    # graph and provenance questions do not decide
    assert logic.deps("final") == ["combine", "count"]
    assert logic.dependents("norm", transitive=True) == ["combine", "count", "final", "upper"]
    assert logic.lineage("outputs/side/o")["executions"]
    assert logic.query("edge(U, D)").rows and logic.query("task(T, R)").rows
    assert logic.evaluate(only=["reachable"])["reachable"]
    assert not logic.decided and calls == []
    # the what-if of `e3 impact` neither
    assert logic.dirty_closure(["inputs/text"]) == ["combine", "count", "final", "norm", "upper"]
    assert not logic.decided and calls == []
    stale = edited.status()["stale"]
    assert stale == ["combine", "final", "report", "scaled", "side"]
    assert [d for d, in logic.query("dirty(D)").rows] == stale
    assert logic.decided and len(calls) == 1
    assert [d for d, in logic.query("?- dataflow(D, _), !dirty(D).").rows] == sorted(
        set(FLOWS) - set(stale))
    assert len(calls) == 1  # observed once per Logic
    # decided or not, the what-if stays one over the graph
    assert logic.dirty_closure(["inputs/text"]) == ["combine", "count", "final", "norm", "upper"]


def test_a_workspace_without_a_package_has_empty_decision_facts(tmp_path):
    from e3logic.api import Repo

    api = Repo.init(tmp_path / "bare")
    f = api.facts()
    assert f["miss"] == set() and f["never_run"] == set()
    assert api.logic().query("dirty(D)").rows == []
