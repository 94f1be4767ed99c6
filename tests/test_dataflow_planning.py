"""`dataflow.planning`: the planner's input filled from a deployed package — dependencies among
the dataflows to run, declared and implicit leases, resource demands against e3.toml
capacities, costs from recorded durations — and the plan of what would run, identical
executions planned once."""
from __future__ import annotations

import pytest

from e3logic.api import Repo
from e3logic.dataflow.model import Project
from e3logic.dataflow.planning import input_identities, plan_dataflows, plan_input
from e3logic.plan import verify
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


TWINS = {
    "e3": "package", "name": "t", "version": "0.1.0",
    "tasks": {"up": {"runtime": "shell", "argv": ["sh", "-c", "x"]},
              "cat": {"runtime": "python", "entry": "m:cat"}},
    "dataflows": {
        "a": flow("up", ["inputs/x"]), "b": flow("up", ["inputs/x"]),
        "other": flow("up", ["inputs/y"]),                      # same task, another input
        "ca": flow("cat", ["outputs/a/o", "inputs/y"]),
        "cb": flow("cat", ["outputs/b/o", "inputs/y"]),
        "swap": flow("cat", ["inputs/y", "outputs/b/o"]),        # same inputs, another order
        "both": flow("cat", ["outputs/a/o", "outputs/b/o"]),
    },
}


@pytest.fixture
def twins():
    return Project(TWINS, "t" * 64, {"m.py": "1" * 64})


def test_dependencies_follow_the_input_order(repo, twins):
    got = nodes(plan_input(repo, twins, list(TWINS["dataflows"]), cap=None))
    assert got["swap"].deps == ("b",) and got["both"].deps == ("a", "b")


def test_the_same_task_reading_the_same_paths_is_planned_as_one_execution(repo, twins):
    names = sorted(TWINS["dataflows"])
    plan = plan_dataflows(repo, twins, names, cap=1)
    assert plan.shared == {"a": ("b",), "ca": ("cb",)}
    assert plan.to_json()["shared"] == {"a": ["b"], "ca": ["cb"]}
    batch = plan.batch_of
    assert batch["b"] == batch["a"] and plan.priority.index("b") == plan.priority.index("a") + 1
    assert plan.width == 1 and len(plan.batches) == len(names) - 2   # b and cb take no slot
    assert verify(plan, plan_input(repo, twins, names, cap=1)) == []


def test_a_known_execution_key_shares_equal_content_read_from_different_paths(repo, twins):
    names = ["a", "other"]
    assert plan_dataflows(repo, twins, names, cap=2).shared == {}
    keys = {"a": "k1", "other": "k1"}   # inputs/x and inputs/y hold the same bytes
    assert input_identities(twins, names, keys) == {"a": ("key", "k1"), "other": ("key", "k1")}
    assert plan_dataflows(repo, twins, names, cap=2, keys=keys).shared == {"a": ("other",)}
    assert plan_dataflows(repo, twins, names, cap=2, keys={"a": "k1", "other": "k2"}).shared == {}


def test_without_keys_an_input_is_its_path_or_its_running_producer(twins):
    got = input_identities(twins, ["a", "ca", "swap"])
    assert got == {"a": ("paths", ("inputs/x",)), "ca": ("paths", (None, "inputs/y")),
                   "swap": ("paths", ("inputs/y", "outputs/b/o"))}   # b does not run: a path
