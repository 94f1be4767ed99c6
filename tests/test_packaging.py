"""A normal install (issue 16, item 1): the wheel ships the shipped rules and the bundled example
as package data, and e3logic installed from it in a fresh venv (not the source tree) runs
`e3 demo`, the questions that read the rules, and python tasks in its worker processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest

from e3logic.exec import workers
from e3logic.logic.queries import SHIPPED_FILES
from tests.helpers import ROOT
from tests.installed import build_wheel, install

SRC = ROOT / "e3logic"
slow = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel_and_venv(tmp_path_factory):
    d = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(d)
    return wheel, install(wheel, d)


@pytest.fixture
def venv(wheel_and_venv):
    return wheel_and_venv[1]


def data_files(sub: str) -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in (SRC / sub).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc")}


@slow
def test_the_wheel_ships_every_rule_file_and_the_bundled_example(wheel_and_venv):
    names = set(zipfile.ZipFile(wheel_and_venv[0]).namelist())
    rules = data_files("rules")
    assert {f"e3logic/rules/{f}" for f in SHIPPED_FILES} <= rules
    assert rules <= names
    example = data_files("examples")
    assert {"e3logic/examples/forecast/e3pkg.py", "e3logic/examples/forecast/steps.py",
            "e3logic/examples/forecast/data/sales.csv"} <= example
    assert example <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


@slow
def test_e3logic_and_its_data_come_from_the_venv_not_the_source_tree(venv):
    out = json.loads(venv.python(
        "import json, e3logic\n"
        "print(json.dumps([e3logic.__file__, str(e3logic.RULES_DIR), str(e3logic.EXAMPLES_DIR),"
        " sorted(p.name for p in e3logic.RULES_DIR.glob('*.dl'))]))"))
    file, rules, examples, dl = out
    assert venv.inside(file) and venv.inside(rules) and venv.inside(examples), out
    assert set(SHIPPED_FILES) <= set(dl)


@slow
def test_demo_runs_from_the_wheel(venv):
    r = venv.e3("demo", timeout=300)
    assert r.code == 0, r
    assert "demo finished: cold, warm and incremental runs done" in r.out
    assert "cannot read rules file" not in r.err and "bundled example is missing" not in r.err


@slow
def test_the_questions_and_go_on_the_bundled_example_from_the_wheel(venv):
    example = venv.python("import e3logic; print(e3logic.EXAMPLES_DIR / 'forecast')").strip()
    proj = venv.cwd / "forecast-proj"
    assert venv.e3("init", proj).code == 0
    for args in (("build", example, "-o", "dist"), ("add", "dist/forecast-0.1.0.zip"),
                 ("checkout", "forecast")):
        r = venv.e3(*args, cwd=proj)
        assert r.code == 0, (args, r)
    # the rules are read before anything ran, too
    r = venv.e3("--json", "deps", "report", "--transitive", cwd=proj)
    assert r.code == 0, r
    assert r.json == ["clean", "features", "fit", "forecast"]
    r = venv.e3("--json", "go", cwd=proj)
    assert r.code == 0, r
    assert sorted(r.json["executed"]) == ["clean", "features", "fit", "forecast", "report",
                                          "summary"]
    r = venv.e3("--json", "query", "dependents(\"fit\", X)", cwd=proj)
    assert r.code == 0, r
    assert r.json["rows"] == [["forecast"]], r.json
    r = venv.e3("--json", "impact", "inputs/horizon", cwd=proj)
    assert r.code == 0 and r.json == ["forecast", "report", "summary"], r
    r = venv.e3("--json", "why", "outputs/report/markdown", cwd=proj)
    assert r.code == 0 and r.json["dataflow"] == "report", r
    r = venv.e3("--json", "rules", cwd=proj)
    assert r.code == 0 and {"deps", "dirty", "lineage"} <= {x["name"] for x in r.json}, r
    assert "| north |" in venv.e3("get", "outputs/report/markdown", cwd=proj).out


WHERE_PKG = '''from e3logic import sdk
package = sdk.package("where", "0.1.0")
package.module("steps.py")
package.task("where", "steps:where", runtime="python")
package.dataset("inputs/x", value=1)
package.dataflow("where", task="where", inputs=["inputs/x"], output="y")
'''
WHERE_STEPS = '''import os, sys


def where(x):
    import e3logic
    return {"e3logic": e3logic.__file__, "python": sys.executable,
            "pythonpath": os.environ.get("PYTHONPATH", "")}
'''


@slow
def test_a_python_task_worker_imports_the_installed_e3logic(venv):
    pkg = venv.cwd / "where-pkg"
    pkg.mkdir()
    (pkg / "e3pkg.py").write_text(WHERE_PKG)
    (pkg / "steps.py").write_text(WHERE_STEPS)
    proj = venv.cwd / "where-proj"
    assert venv.e3("init", proj).code == 0
    for args in (("build", pkg, "-o", "dist"), ("add", "dist/where-0.1.0.zip"),
                 ("checkout", "where"), ("go",)):
        r = venv.e3(*args, cwd=proj)
        assert r.code == 0, (args, r)
    got = json.loads(venv.e3("get", "outputs/where/y", cwd=proj).out)
    assert venv.inside(got["e3logic"]) and venv.inside(got["python"]), got
    # site-packages is on a worker's path already: nothing is put in front of it
    assert got["pythonpath"] == "", got


def test_rules_and_examples_are_real_directories_even_from_a_zip_import(tmp_path):
    archive = tmp_path / "e3logic.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(SRC.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                z.write(p, p.relative_to(ROOT).as_posix())
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import e3logic, json; "
            "print(json.dumps([e3logic.__file__, str(e3logic.RULES_DIR), "
            "sorted(p.name for p in e3logic.RULES_DIR.iterdir()), "
            "(e3logic.EXAMPLES_DIR / 'forecast' / 'e3pkg.py').is_file()]))")  # a temp copy
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-S", "-P", "-c", code, str(archive)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    file, rules, names, has_example = json.loads(proc.stdout)
    assert file.startswith(str(archive)) and not rules.startswith(str(archive))
    assert set(SHIPPED_FILES) <= set(names) and has_example
    assert not os.path.exists(rules)  # removed when the process exits


def test_a_worker_gets_the_source_root_on_its_path_only_when_it_needs_it(monkeypatch):
    root = workers._SOURCE_ROOT
    monkeypatch.setattr(workers, "_site_dirs", lambda: frozenset())
    assert workers._worker_pythonpath("") == root  # a source checkout
    assert workers._worker_pythonpath("/x") == root + os.pathsep + "/x"
    assert workers._worker_pythonpath(root + os.sep) is None  # already there, spelled otherwise
    assert workers._worker_pythonpath("/x" + os.pathsep + root) is None
    # a relative entry names another directory in the worker (it runs in the cache directory)
    assert workers._worker_pythonpath(".") == root + os.pathsep + "."
    # an installed wheel: site-packages is the root, a worker sees it without help
    monkeypatch.setattr(workers, "_site_dirs", lambda: frozenset({root}))
    assert workers._worker_pythonpath("") is None
