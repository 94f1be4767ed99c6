"""Loading e3pkg.py and building it: deterministic bundles, the package object format, the
bundled forecast example."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from e3logic import EXAMPLES_DIR, sdk
from e3logic.core import canon
from e3logic.core.errors import BuildError
from e3logic.sdk.build import collect_module_files
from e3logic.repo.trees import Trees

E3PKG = """\
from e3logic import sdk

package = sdk.package("demo", "0.1.0", dependencies={"lib": "^1.0"})
package.module("steps.py")
package.task("double", "steps:double")
package.task("cat", ["sh", "-c", "cat {inputs} > {output}"], runtime="shell")
package.dataset("inputs/x", value=21)
package.dataset("inputs/raw", file="data/raw.txt")
package.dataflow("double", task="double", inputs=["inputs/x"], output="y")
package.dataflow("cat", task="cat", inputs=["inputs/raw", "outputs/double/y"], output="all",
                 leases=[("db/t", "write")], budget={"wall_s": 5})
"""


def make_pkg(d: Path, e3pkg: str = E3PKG, steps: str = "def double(x):\n    return 2 * x\n") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "e3pkg.py").write_text(e3pkg)
    (d / "steps.py").write_text(steps)
    (d / "data").mkdir(exist_ok=True)
    (d / "data" / "raw.txt").write_bytes(b"raw bytes\n")
    return d


def test_load_returns_the_package_and_restores_sys_path(tmp_path):
    d = make_pkg(tmp_path / "p")
    before = list(sys.path)
    pkg = sdk.load(d)
    assert (pkg.name, pkg.version, pkg.base_dir) == ("demo", "0.1.0", d.resolve())
    assert sys.path == before


def test_load_forgets_modules_the_e3pkg_imported_from_its_directory(tmp_path):
    d = make_pkg(tmp_path / "p", E3PKG + "import steps\nassert steps.double(2) == 4\n")
    sdk.load(d)
    assert "steps" not in sys.modules


def test_load_without_e3pkg_says_how_to_create_one(tmp_path):
    with pytest.raises(BuildError, match="no e3pkg.py in .*; create one"):
        sdk.load(tmp_path)


def test_load_reports_a_syntax_error_with_its_line(tmp_path):
    d = make_pkg(tmp_path / "p", "from e3logic import sdk\npackage = (\n")
    with pytest.raises(BuildError, match="e3pkg.py line \\d+: syntax error"):
        sdk.load(d)


def test_load_reports_an_exception_in_e3pkg_with_its_line(tmp_path):
    d = make_pkg(tmp_path / "p", "from e3logic import sdk\n\nx = 1 / 0\n")
    with pytest.raises(BuildError, match="e3pkg.py line 3: ZeroDivisionError: division by zero"):
        sdk.load(d)


def test_load_prefixes_a_declaration_error_with_its_line(tmp_path):
    d = make_pkg(tmp_path / "p", "from e3logic import sdk\np = sdk.package('a', '0.1.0')\n"
                                 "p.module('missing.py')\n")
    with pytest.raises(BuildError, match="e3pkg.py line 3: module path 'missing.py' does not exist"):
        sdk.load(d)


def test_load_requires_a_package_variable(tmp_path):
    d = make_pkg(tmp_path / "p", "from e3logic import sdk\npkg = sdk.package('a', '0.1.0')\n")
    with pytest.raises(BuildError, match="must set package = sdk.package"):
        sdk.load(d)


def test_build_objects_writes_the_package_object_of_internals_md(tmp_path):
    pkg = sdk.load(make_pkg(tmp_path / "p"))
    h, obj, store = sdk.build_objects(pkg)
    assert canon.loads(store.read(h)) == obj
    assert obj["e3"] == "package" and obj["parent"] is None and obj["message"] == ""
    assert obj["dependencies"] == {"lib": "^1.0"}
    assert obj["tasks"]["cat"] == {"runtime": "shell", "argv": ["sh", "-c", "cat {inputs} > {output}"]}
    assert obj["dataflows"]["cat"] == {
        "task": "cat", "inputs": ["inputs/raw", "outputs/double/y"], "output": "all",
        "leases": [["db/t", "write"]], "resources": {}, "budget": {"wall_s": 5}, "profile": "rw"}
    trees = Trees(store)
    assert dict(trees.walk(obj["datasets"]["hash"])) == {
        "inputs/raw": {"kind": "blob", "hash": store.write(b"raw bytes\n"), "format": "raw", "size": 10},
        "inputs/x": {"kind": "blob", "hash": store.write(b"21"), "format": "json", "size": 2}}
    assert [p for p, _ in trees.walk(obj["modules"]["hash"])] == ["steps.py"]


def test_build_is_byte_identical_for_identical_sources_in_another_directory(tmp_path):
    a = sdk.build(make_pkg(tmp_path / "a"))
    os.utime(tmp_path / "a" / "steps.py", (1, 1))  # mtimes never matter
    b = sdk.build(make_pkg(tmp_path / "b"), tmp_path / "out")
    assert Path(a["path"]) == (tmp_path / "a" / "dist" / "demo-0.1.0.zip").resolve()
    assert Path(a["path"]).read_bytes() == Path(b["path"]).read_bytes()
    assert a["hash"] == b["hash"] and a["name"] == "demo" and a["version"] == "0.1.0"


def test_changing_a_module_changes_the_package_hash(tmp_path):
    a = sdk.build(make_pkg(tmp_path / "a"))
    b = sdk.build(make_pkg(tmp_path / "b", steps="def double(x):\n    return x + x\n"))
    assert a["hash"] != b["hash"]


def test_the_bundle_has_sorted_fixed_entries_and_only_reachable_objects(tmp_path):
    res = sdk.build(make_pkg(tmp_path / "p"))
    with zipfile.ZipFile(res["path"]) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        assert names == sorted(names) and names[0] == "e3package.json"
        assert {(i.date_time, i.external_attr >> 16) for i in infos} == {((1980, 1, 1, 0, 0, 0), 0o100644)}
        assert json.loads(zf.read("e3package.json")) == {
            "format": 1, "name": "demo", "version": "0.1.0", "hash": res["hash"]}
        # module blob, modules tree, 2 dataset blobs, inputs tree, datasets root, package
        assert len(names) == 1 + 7


def test_directory_modules_skip_caches_hidden_files_and_the_build_output(tmp_path):
    d = make_pkg(tmp_path / "p", E3PKG.replace('package.module("steps.py")', 'package.module(".")'))
    (d / "lib").mkdir()
    (d / "lib" / "util.py").write_text("X = 1\n")
    (d / "lib" / "__pycache__").mkdir()
    (d / "lib" / "__pycache__" / "util.cpython-311.pyc").write_bytes(b"\0")
    (d / ".git").mkdir()
    (d / ".git" / "HEAD").write_text("x")
    first = sdk.build(d)
    pkg = sdk.load(d)
    files = [rel for rel, _ in collect_module_files(pkg, [d / "dist"])]
    assert files == ["data/raw.txt", "e3pkg.py", "lib/util.py", "steps.py"]
    assert sdk.build(d)["path"] == first["path"]  # the zip in dist/ is not bundled into itself
    assert Path(first["path"]).read_bytes() == Path(sdk.build(d)["path"]).read_bytes()


def test_a_symlinked_module_file_pointing_outside_is_refused_at_build(tmp_path):
    d = make_pkg(tmp_path / "p", E3PKG.replace('package.module("steps.py")', 'package.module("lib")'))
    (d / "lib").mkdir()
    (tmp_path / "secret.txt").write_text("s")
    (d / "lib" / "leak.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(BuildError, match="'lib/leak.txt' links outside the package directory"):
        sdk.build(d)


def test_build_validates_before_writing_anything(tmp_path):
    d = make_pkg(tmp_path / "p", E3PKG.replace('inputs=["inputs/x"]', 'inputs=["inputs/xx"]'))
    with pytest.raises(BuildError, match="reads 'inputs/xx', which nothing provides"):
        sdk.build(d)
    assert not (d / "dist").exists()


def test_a_package_too_large_for_e3_add_is_refused_at_build_naming_the_limit(tmp_path, monkeypatch):
    """Issue 20 item 4: at 1,000,000 dataflows the package object (162 MB) is past what
    `e3 add` reads from a bundle; build says so instead of writing a bundle add refuses."""
    monkeypatch.setattr(sys.modules["e3logic.sdk.build"], "MAX_PACKAGE_BYTES", 2000)
    d = make_pkg(tmp_path / "p", E3PKG + "for i in range(20):\n    package.dataflow(f'd{i}', "
                 "task='double', inputs=['inputs/x'], output='y')\n")
    with pytest.raises(BuildError, match=r"package demo@0.1.0 is too large: its package object "
                       r"\(the declarations of its 22 dataflows and 2 tasks\) would be [\d,]+ "
                       r"bytes, and e3 add accepts at most 2,000; declare fewer dataflows"):
        sdk.build(d)
    assert not (d / "dist").exists()


def test_task_hash_excludes_the_task_name_and_includes_module_contents(tmp_path):
    two = E3PKG + 'package.task("double2", "steps:double")\n'
    h, obj, store = sdk.build_objects(sdk.load(make_pkg(tmp_path / "a", two)))
    th = sdk.task_hash(obj, "double", store.read)
    assert th == sdk.task_hash(obj, "double2", store.read)
    assert th != sdk.task_hash(obj, "cat", store.read)
    assert sdk.task_object(obj, "double", store.read) == {
        "runtime": "python", "entry": "steps:double",
        "modules": {"steps.py": store.write(b"def double(x):\n    return 2 * x\n")}}
    _, obj2, store2 = sdk.build_objects(
        sdk.load(make_pkg(tmp_path / "b", two, steps="def double(x):\n    return x * 2\n")))
    assert sdk.task_hash(obj2, "double", store2.read) != th


def test_task_hash_of_an_unknown_task_suggests_a_name(tmp_path):
    _, obj, store = sdk.build_objects(sdk.load(make_pkg(tmp_path / "a")))
    with pytest.raises(Exception, match="did you mean 'double'"):
        sdk.task_hash(obj, "doubel", store.read)


# -- the bundled example ------------------------------------------------------------------------
FORECAST = EXAMPLES_DIR / "forecast"


def test_the_forecast_example_builds_deterministically(tmp_path):
    a = sdk.build(FORECAST, tmp_path / "a")
    b = sdk.build(FORECAST, tmp_path / "b")
    assert Path(a["path"]).read_bytes() == Path(b["path"]).read_bytes()
    pkg = sdk.load(FORECAST)
    assert sorted(pkg.dataflows) == ["clean", "features", "fit", "forecast", "report", "summary"]
    assert pkg.tasks["summary"]["runtime"] == "inline"
    assert pkg.tasks["report"]["runtime"] == "shell"


def test_the_forecast_example_runs_end_to_end_in_plain_python(tmp_path):
    """Drive the example's dataflows by hand, in DAG order, the way the executor will: python
    steps get decoded inputs and return JSON-able values; the report is a POSIX shell command."""
    pkg = sdk.load(FORECAST)
    h, obj, store = sdk.build_objects(pkg)
    trees = Trees(store)
    data = {p: (store.read(e["hash"]), e["format"]) for p, e in trees.walk(obj["datasets"]["hash"])}
    assert data["inputs/horizon"] == (b"6", "json")
    sys.path.insert(0, str(FORECAST))
    try:
        import steps  # noqa: E402
    finally:
        sys.path.remove(str(FORECAST))
        sys.modules.pop("steps", None)
    import networkx as nx
    from e3logic.sdk.validate import graph

    for name in nx.lexicographical_topological_sort(graph(pkg)):
        df = obj["dataflows"][name]
        task = obj["tasks"][df["task"]]
        ins = [data[i] for i in df["inputs"]]
        out = sdk.output_path(name, df["output"])
        if task["runtime"] == "shell":
            files = []
            for k, (b, _) in enumerate(ins):
                f = tmp_path / f"in{k}"
                f.write_bytes(b)
                files.append(str(f))
            argv = [a.replace("{input0}", files[0]).replace("{output}", str(tmp_path / "out"))
                    for a in task["argv"]]
            subprocess.run(argv, check=True)
            data[out] = ((tmp_path / "out").read_bytes(), "raw")
        else:
            fn = getattr(steps, task["entry"].split(":")[1])
            args = [canon.loads(b) if fmt == "json" else b for b, fmt in ins]
            data[out] = (canon.dumps(fn(*args)), "json")
    rows = canon.loads(data["outputs/clean/rows"][0])
    assert len(rows) == 60 and {r["region"] for r in rows} == {"north", "south", "west"}
    model = canon.loads(data["outputs/fit/model"][0])
    assert model["south"]["slope"] > 0 > model["west"]["slope"]
    fc = canon.loads(data["outputs/forecast/values"][0])
    assert fc["horizon"] == 6 and len(fc["rows"]) == 18 and fc["rows"][0][:2] == ["north", "2024-09"]
    report = data["outputs/report/markdown"][0].decode()
    assert report.startswith("# Sales forecast\n") and "Next 6 months" in report
    assert "| north | 2024-09 | " in report and report.count("\n| ") == 19
    totals = canon.loads(data["outputs/summary/totals"][0])
    assert totals["north"]["months"] == 6
