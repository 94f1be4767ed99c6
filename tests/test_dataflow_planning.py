"""`dataflow.planning`: the planner's input filled from a deployed package — dependencies among
the dataflows to run, declared and implicit leases, resource demands against e3.toml
capacities, costs from recorded durations — and the plan of what would run."""
from __future__ import annotations

import pytest

from e3logic.api import Repo
from e3logic.dataflow.model import Project
from e3logic.dataflow.planning import plan_dataflows, plan_input
from e3logic.exec.memo import ExecutionRecord, Memo


def flow(task, inputs, **kw):
    return {"task": task, "inputs": list(inputs), "output": "o", **kw}


PKG = {
    "e3": "package", "name": "p", "version": "0.1.0",
    "tasks": {"sh": {"runtime": "shell", "argv": ["sh", "-c", "x"]},
              "py": {"runtime": "python", "entry": "m:f"},
              "tiny": {"runtime": "inline", "entry": "m:g"}},
    "dataflows": {
        "load": flow("sh", ["inputs/x"], leases=[["db/sales", "write"]], profile="rw"),
        "fit": flow("py", ["outputs/load/o"], resources={"gpu": 1, "mem_gb": 4}),
        "score": flow("py", ["outputs/fit/o", "inputs/y"], resources={"gpu": 1}),
        "sum": flow("tiny", ["outputs/load/o"], leases=[["db", "read"]]),
        "rank": flow("py", ["outputs/load/o", "inputs/y"], resources={"gpu": 1}),
        "audit": flow("sh", ["inputs/y"], leases=[["db", "read"]]),
    },
}


@pytest.fixture
def repo(tmp_path):
    Repo.init(tmp_path / "p")
    (tmp_path / "p" / "e3.toml").write_text("[resources]\ngpu = 1\n")
    return Repo.open(str(tmp_path / "p")).r


@pytest.fixture
def project():
    return Project(PKG, "h" * 64, {"m.py": "1" * 64})


def nodes(pi):
    return {n.name: n for n in pi.nodes}


def test_dependencies_are_limited_to_the_dataflows_being_planned(repo, project):
    got = nodes(plan_input(repo, project, ["fit", "score"], cap=2))
    assert got["fit"].deps == ()          # load is not planned (cached): no edge
    assert got["score"].deps == ("fit",)
    assert plan_input(repo, project, ["fit"], cap=2).cap == 2


def test_a_rw_dataflow_gets_a_write_lease_on_its_output_beside_its_declared_ones(repo, project):
    got = nodes(plan_input(repo, project, list(PKG["dataflows"]), cap=None))
    assert set(got["load"].leases) == {("db/sales", "write"), ("outputs/load/o", "write")}
    assert set(got["sum"].leases) == {("db", "read")}


def test_only_resources_with_a_capacity_in_e3_toml_are_constrained(repo, project):
    pi = plan_input(repo, project, ["fit", "load"], cap=None)
    assert dict(pi.capacities) == {"gpu": 1}
    assert dict(nodes(pi)["fit"].resources) == {"gpu": 1}


def test_costs_are_recorded_median_durations_else_one(repo, project):
    th = project.task_hashes["py"]
    with repo.index.transaction() as c:
        for i, d in enumerate((0.2, 0.4, 3.0)):
            Memo(repo.index).record(c, ExecutionRecord(
                key=f"k{i}", task_hash=th, dataflow="fit", run="r1", workspace="main",
                status="ok", started=0.0, ended=d, output_hash="o", output_format="raw"))
    got = nodes(plan_input(repo, project, ["fit", "load"], cap=None))
    assert got["fit"].cost == 0.4
    assert got["load"].cost == 1.0
    assert (got["fit"].runtime, got["load"].runtime) == ("python", "shell")
    assert got["fit"].task_key == th


def test_the_plan_keeps_write_lease_conflicts_and_the_gpu_apart_and_is_deterministic(repo, project):
    names = list(PKG["dataflows"])
    plan = plan_dataflows(repo, project, names, cap=4)
    batch = {n: i for i, b in enumerate(plan.batches) for n in b}
    assert sorted(batch) == sorted(names)
    assert batch["load"] < batch["fit"] < batch["score"]
    assert batch["load"] < batch["sum"]
    assert batch["fit"] != batch["rank"]     # one gpu
    assert batch["audit"] != batch["load"]   # reading db conflicts with writing db/sales
    held = {(g["dataflow"], g["path"], g["mode"]) for g in plan.to_json()["leases"]}
    assert ("load", "db/sales", "write") in held and ("audit", "db", "read") in held
    assert plan.to_json() == plan_dataflows(repo, project, list(reversed(names)), cap=4).to_json()
