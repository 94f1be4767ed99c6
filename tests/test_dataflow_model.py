"""`dataflow.model.Project`: a deployed package seen as a DAG — outputs, producers,
dependencies, task hashes, deterministic topological order, target and filter selection,
leases."""
from __future__ import annotations

import pytest

from e3logic.core.errors import NotFound, UsageError
from e3logic.dataflow.model import Project, output_path, task_hash
from tests.flows import FLOWS, FLOWS_DEPS, api_project, write_flows


def flow(task, inputs, output="o", **kw):
    return {"task": task, "inputs": list(inputs), "output": output, **kw}


def project(dataflows: dict, tasks: dict | None = None, modules: dict | None = None) -> Project:
    tasks = tasks or {d["task"]: {"runtime": "shell", "argv": ["sh", "-c", d["task"]]}
                      for d in dataflows.values()}
    pkg = {"e3": "package", "name": "t", "version": "0.1.0", "tasks": tasks,
           "dataflows": dataflows}
    return Project(pkg, "h" * 64, dict(modules or {}))


DIAMOND = {"a": flow("t1", ["inputs/x"]), "b": flow("t2", ["outputs/a/o"]),
           "c": flow("t3", ["outputs/a/o", "inputs/y"]),
           "d": flow("t4", ["outputs/b/o", "outputs/c/o"]), "lone": flow("t5", ["inputs/y"])}


@pytest.fixture(scope="module")
def flows(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    api = api_project(d / "p", write_flows(d / "src"), "flows")
    return api, Project.load(api.r, api.workspaces.package("main")["hash"])


def test_an_output_lands_at_outputs_dataflow_output():
    assert output_path("fit", "model") == "outputs/fit/model"


def test_producers_and_dependencies_follow_the_output_paths():
    p = project(DIAMOND)
    assert p.outputs["c"] == "outputs/c/o"
    assert p.producer["outputs/b/o"] == "b"
    assert p.deps == {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "lone": []}
    assert p.downstream == {"a": ["b", "c"], "b": ["d"], "c": ["d"]}
    assert p.readers == {"inputs/x": ["a"], "outputs/a/o": ["b", "c"],
                         "inputs/y": ["c", "lone"], "outputs/b/o": ["d"], "outputs/c/o": ["d"]}


def test_topological_order_puts_dependencies_first_and_breaks_ties_by_name():
    assert project(DIAMOND).topo == ["a", "b", "c", "d", "lone"]
    # names sorted among the ready ones, whatever the declaration order
    p = project({"z": flow("t", ["inputs/x"]), "m": flow("t", ["outputs/z/o"]),
                 "b": flow("t", ["inputs/x"])})
    assert p.topo == ["b", "z", "m"]


def test_the_dependency_order_is_kept_per_package_and_a_damaged_copy_is_recomputed(tmp_path):
    def fresh():
        p = project(DIAMOND)
        p.cache_dir = tmp_path
        return p

    kept = tmp_path / f"topo-{'h' * 64}.json"
    assert fresh().topo == ["a", "b", "c", "d", "lone"] and kept.exists()
    kept.write_bytes(b'["a","b"]')          # not the package's dataflows: ignored, rewritten
    assert fresh().topo == ["a", "b", "c", "d", "lone"]
    kept.write_bytes(b"not json")
    assert fresh().topo == ["a", "b", "c", "d", "lone"]
    assert kept.read_bytes() == b'["a","b","c","d","lone"]'


def test_a_cycle_is_a_usage_error_naming_the_fix():
    p = project({"a": flow("t", ["outputs/b/o"]), "b": flow("t", ["outputs/a/o"])})
    with pytest.raises(UsageError, match="cycle"):
        p.topo


def test_a_target_brings_in_every_ancestor_and_nothing_else():
    p = project(DIAMOND)
    assert p.resolve_targets(["d"]) == {"a", "b", "c", "d"}
    assert p.resolve_targets(["outputs/c/o"]) == {"a", "c"}
    assert p.resolve_targets(["/outputs/b/o/"]) == {"a", "b"}  # surrounding slashes ignored
    assert p.select(["c", "lone"]) == ["a", "c", "lone"]


def test_an_unknown_target_suggests_the_near_miss():
    with pytest.raises(NotFound, match="did you mean 'lone'"):
        project(DIAMOND).resolve_targets(["lnoe"])


def test_a_filter_keeps_matching_names_in_dependency_order():
    p = project(DIAMOND)
    assert p.select(pattern="[bcd]") == ["b", "c", "d"]
    assert p.select(["d"], pattern="?") == ["a", "b", "c", "d"]
    with pytest.raises(NotFound):
        p.select(pattern="nothing*")


def test_an_empty_target_and_filter_intersection_is_reported():
    with pytest.raises(NotFound):
        project(DIAMOND).select(["c"], pattern="l*")


def test_a_rw_dataflow_also_holds_a_write_lease_on_its_own_output():
    p = project({"w": flow("t", ["inputs/x"], leases=[["db/sales", "write"]], profile="rw"),
                 "r": flow("t", ["inputs/x"], leases=[["db", "read"], ["db", "read"]])})
    assert p.leases("w") == (("db/sales", "write"), ("outputs/w/o", "write"))
    assert p.leases("r") == (("db", "read"),)


def test_the_task_hash_ignores_the_name_and_covers_code_and_every_module():
    t = {"runtime": "python", "entry": "steps:f"}
    mods = {"steps.py": "1" * 64, "helpers.py": "2" * 64}
    assert task_hash(t, mods) == task_hash(dict(t), dict(reversed(list(mods.items()))))
    assert task_hash(t, mods) != task_hash(t, {**mods, "helpers.py": "3" * 64})
    assert task_hash(t, mods) != task_hash({**t, "entry": "steps:g"}, mods)
    assert task_hash(t, mods) != task_hash({**t, "runtime": "inline"}, mods)
    assert task_hash({**t, "name": "x"}, mods) == task_hash(t, mods)


def test_a_loaded_package_indexes_its_dataflows_modules_and_task_hashes(flows):
    _, p = flows
    assert sorted(p.dataflows) == FLOWS
    assert {n: p.deps[n] for n in FLOWS} == {n: sorted(d) for n, d in FLOWS_DEPS.items()}
    assert list(p.module_hashes) == ["steps.py"]
    # shell tasks share no code with python ones, but every task hash covers the modules
    assert len(set(p.task_hashes.values())) == len(p.task_hashes)
    order = {n: i for i, n in enumerate(p.topo)}
    assert all(order[d] < order[n] for n, ds in FLOWS_DEPS.items() for d in ds)
    again = Project.load(flows[0].r, p.pkg_hash)
    assert (again.task_hashes, again.modules_hash) == (p.task_hashes, p.modules_hash)
