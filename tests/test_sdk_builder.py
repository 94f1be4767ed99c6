"""The e3pkg.py authoring API: each declaration checks its own arguments at once."""
from __future__ import annotations

import pytest

from e3logic import sdk
from e3logic.core.errors import BuildError
from e3logic.sdk.builder import PackageBuilder


@pytest.fixture
def pkg(tmp_path):
    (tmp_path / "steps.py").write_text("def clean(x):\n    return x\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sales.csv").write_text("a,b\n1,2\n")
    return PackageBuilder("demo", "0.1.0", base_dir=tmp_path)


def test_output_path_is_outputs_dataflow_output():
    assert sdk.output_path("preprocess", "cleaned") == "outputs/preprocess/cleaned"


def test_package_records_name_version_and_sorted_dependencies(pkg, tmp_path):
    p = PackageBuilder("demo", "1.2.3", {"zeta": "^1.0", "alpha": "~0.2"}, base_dir=tmp_path)
    assert (p.name, p.version) == ("demo", "1.2.3")
    assert list(p.dependencies) == ["alpha", "zeta"]


@pytest.mark.parametrize("name,version,deps,needle", [
    ("bad/name", "0.1.0", {}, "invalid package name"),
    ("demo", "1.0", {}, "invalid version"),
    ("demo", "0.1.0", {"x": "^^1"}, "dependency x"),
    ("demo", "0.1.0", {"demo": "^0.1"}, "lists itself"),
    ("demo", "0.1.0", {"x": 1}, "constraint must be a string"),
])
def test_a_bad_name_version_or_dependency_is_a_build_error(tmp_path, name, version, deps, needle):
    with pytest.raises(BuildError, match=needle):
        PackageBuilder(name, version, deps, base_dir=tmp_path)


def test_package_takes_relative_paths_from_the_calling_files_directory():
    p = sdk.package("demo", "0.1.0")
    assert p.base_dir == __import__("pathlib").Path(__file__).resolve().parent


def test_module_records_a_normalised_relative_path_once(pkg):
    pkg.module("./steps.py").module("steps.py").module("data")
    assert pkg.modules == ["steps.py", "data"]


def test_module_outside_the_package_directory_is_refused(pkg, tmp_path):
    (tmp_path.parent / "outside.py").write_text("x = 1\n")
    with pytest.raises(BuildError, match="outside the package directory"):
        pkg.module("../outside.py")


def test_module_with_an_absolute_path_is_refused(pkg, tmp_path):
    with pytest.raises(BuildError, match="is absolute"):
        pkg.module(str(tmp_path / "steps.py"))


def test_module_that_does_not_exist_names_the_path(pkg):
    with pytest.raises(BuildError, match="'nope.py' does not exist"):
        pkg.module("nope.py")


def test_a_symlink_pointing_outside_the_package_is_refused(pkg, tmp_path):
    outside = tmp_path.parent / "secret.py"
    outside.write_text("x = 1\n")
    (tmp_path / "link.py").symlink_to(outside)
    with pytest.raises(BuildError, match="outside the package directory"):
        pkg.module("link.py")


def test_python_shell_and_inline_tasks_are_recorded(pkg):
    pkg.task("clean", "steps:clean")
    pkg.task("cat", ["sh", "-c", "cat {inputs} > {output}"], runtime="shell")
    pkg.task("tiny", "steps.sub:f", runtime="inline")
    assert pkg.tasks == {
        "clean": {"runtime": "python", "entry": "steps:clean"},
        "cat": {"runtime": "shell", "argv": ["sh", "-c", "cat {inputs} > {output}"]},
        "tiny": {"runtime": "inline", "entry": "steps.sub:f"}}


@pytest.mark.parametrize("entry,runtime,needle", [
    ("steps.clean", "python", "not 'module:function'"),
    ("steps:", "inline", "not 'module:function'"),
    (["sh", "-c", "x"], "python", "needs runtime='shell'"),
    ("echo hi", "shell", "argv list of strings"),
    (["sh", 3], "shell", "argv list of strings"),
    ([], "shell", "argv list of strings"),
    ("steps:clean", "docker", "unknown runtime 'docker'"),
])
def test_a_bad_task_definition_names_the_task_and_the_fix(pkg, entry, runtime, needle):
    with pytest.raises(BuildError, match=needle) as e:
        pkg.task("t", entry, runtime=runtime)
    assert "'t'" in str(e.value) or "docker" in str(e.value)


def test_a_task_declared_twice_is_refused(pkg):
    pkg.task("clean", "steps:clean")
    with pytest.raises(BuildError, match="declared twice"):
        pkg.task("clean", "steps:clean")


def test_file_and_value_datasets_are_recorded_with_their_formats(pkg):
    pkg.dataset("inputs/sales", file="data/sales.csv")
    pkg.dataset("inputs/factor", value={"k": 3})
    assert pkg.datasets == {"inputs/sales": {"file": "data/sales.csv", "format": "raw"},
                            "inputs/factor": {"value": {"k": 3}, "format": "json"}}


@pytest.mark.parametrize("path,kw,needle", [
    ("inputs/../x", {"value": 1}, "invalid dataset path"),
    ("", {"value": 1}, "empty dataset path"),
    ("inputs/a\tb", {"value": 1}, "invalid dataset path"),
    ("inputs/x", {}, "exactly one of file="),
    ("inputs/x", {"value": 1, "file": "data/sales.csv"}, "exactly one of file="),
    ("inputs/x", {"value": {1, 2}}, "not JSON-serialisable"),
    ("inputs/x", {"file": "data/sales.csv", "format": "json"}, "not valid JSON"),
    ("inputs/x", {"file": "data"}, "not a regular file"),
    ("inputs/x", {"file": "../elsewhere.csv"}, "outside the package directory"),
    ("inputs/x", {"value": 1, "format": "csv"}, "unknown format"),
])
def test_a_bad_dataset_declaration_is_a_build_error(pkg, tmp_path, path, kw, needle):
    (tmp_path.parent / "elsewhere.csv").write_text("x\n")
    with pytest.raises(BuildError, match=needle):
        pkg.dataset(path, **kw)


def test_dataflow_records_inputs_in_order_sorted_leases_and_defaults(pkg):
    pkg.dataflow("prep", task="clean", inputs=["inputs/b", "inputs/a"], output="cleaned",
                 leases=[("db/z", "read"), ("db/a", "read"), ("db/a", "read")],
                 resources={"gpu": 1}, budget={"wall_s": 60, "mem_mb": 2048})
    assert pkg.dataflows["prep"] == {
        "task": "clean", "inputs": ["inputs/b", "inputs/a"], "output": "cleaned",
        "leases": [["db/a", "read"], ["db/z", "read"]], "resources": {"gpu": 1},
        "budget": {"mem_mb": 2048, "wall_s": 60}, "profile": "ro"}
    assert pkg.output_path("prep") == "outputs/prep/cleaned"


def test_profile_defaults_to_rw_with_a_write_lease_and_ro_otherwise(pkg):
    pkg.dataflow("w", task="t", inputs=[], output="o", leases=[("db/sales", "write")])
    pkg.dataflow("r", task="t", inputs=[], output="o", leases=[("db/sales", "read")])
    pkg.dataflow("h", task="t", inputs=[], output="o", profile="hybrid")
    assert [pkg.dataflows[d]["profile"] for d in "wrh"] == ["rw", "ro", "hybrid"]


@pytest.mark.parametrize("kw,needle", [
    ({"profile": "ro", "leases": [("db/sales", "write")]}, "profile 'ro' but a write lease on 'db/sales'"),
    ({"profile": "rx"}, "unknown profile"),
    ({"leases": [("db", "exclusive")]}, "bad mode 'exclusive'"),
    ({"leases": ["db"]}, "must be a \\(path, mode\\) pair"),
    ({"leases": [("../db", "read")]}, "invalid dataflow 'd' lease path"),
    ({"budget": {"wall_seconds": 3}}, "unknown budget key\\(s\\) wall_seconds; allowed: wall_s"),
    ({"budget": {"wall_s": -1}}, "budget 'wall_s' needs a positive number"),
    ({"budget": {"cpu_s": True}}, "budget 'cpu_s' needs a positive number"),
    ({"resources": {"gpu": "one"}}, "resource 'gpu' needs a non-negative number"),
    ({"inputs": ["inputs/a", "inputs/a"]}, "reads 'inputs/a' twice"),
    ({"inputs": ["/abs/../x"]}, "invalid dataflow 'd' input"),
    ({"output": "a/../b"}, "invalid dataflow 'd' output"),
])
def test_a_bad_dataflow_declaration_names_the_dataflow_and_the_fix(pkg, kw, needle):
    args = {"task": "t", "inputs": [], "output": "o", **kw}
    with pytest.raises(BuildError, match=needle):
        pkg.dataflow("d", **args)


def test_a_dataflow_name_with_a_slash_is_refused(pkg):
    with pytest.raises(BuildError, match="invalid dataflow name"):
        pkg.dataflow("a/b", task="t", inputs=[], output="o")


def test_declaration_methods_chain(pkg):
    out = pkg.module("steps.py").task("clean", "steps:clean").dataset("inputs/x", value=1) \
        .dataflow("c", task="clean", inputs=["inputs/x"], output="o")
    assert out is pkg
