"""Conformance suite `packages`: authoring, building, installing, exporting and removing packages
through the public API and the `e3` command (issue 2, item 6)."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from e3logic import EXAMPLES_DIR, sdk
from e3logic.core.errors import BuildError, IntegrityError, UsageError
from e3logic.core.hashing import hash_bytes, hash_file
from e3logic.repo import packages as P
from e3logic.repo.repository import Repository
from tests.helpers import run_e3

FORECAST = EXAMPLES_DIR / "forecast"


def pkg_dir(d: Path, name: str, version: str, deps: dict | None = None, flows: str = "") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "steps.py").write_text("def f(*xs):\n    return len(xs)\n")
    (d / "e3pkg.py").write_text(
        "from e3logic import sdk\n"
        f"package = sdk.package({name!r}, {version!r}, dependencies={deps or {}!r})\n"
        "package.module('steps.py')\npackage.task('f', 'steps:f')\n"
        "package.dataset('inputs/a', value=1)\n"
        + (flows or "package.dataflow('f', task='f', inputs=['inputs/a'], output='o')\n"))
    return d


def state(repo_root: Path) -> dict:
    """.e3/ file by file, but index.db and cache/: derived data a command may add whole (e.g.
    the settings' parse), which leaves the repository valid."""
    e3 = repo_root / ".e3"
    return {str(p.relative_to(e3)): (hash_file(p) if p.is_file() else "dir")
            for p in sorted(e3.rglob("*"))
            if not p.name.startswith("index.db") and p.relative_to(e3).parts[0] != "cache"}


# -- build ----------------------------------------------------------------------------------
def test_build_of_identical_sources_is_byte_identical(tmp_path):
    copies = []
    for i in range(2):
        d = tmp_path / f"copy{i}"
        d.mkdir()
        for f in ("e3pkg.py", "steps.py"):
            (d / f).write_bytes((FORECAST / f).read_bytes())
        (d / "data").mkdir()
        (d / "data" / "sales.csv").write_bytes((FORECAST / "data" / "sales.csv").read_bytes())
        r = run_e3("--json", "build", str(d), cwd=tmp_path)
        assert r.code == 0, r
        copies.append(Path(r.json["path"]))
    assert copies[0] != copies[1]
    assert copies[0].read_bytes() == copies[1].read_bytes()


@pytest.mark.parametrize("flows,needle", [
    ("package.dataflow('a', task='f', inputs=['outputs/b/o'], output='o')\n"
     "package.dataflow('b', task='f', inputs=['outputs/a/o'], output='o')\n", "dataflow cycle a -> b -> a"),
    ("package.dataset('outputs/f/o', value=2)\n"
     "package.dataflow('f', task='f', inputs=['inputs/a'], output='o')\n",
     "two producers of 'outputs/f/o'"),
    ("package.dataflow('f', task='f', inputs=['inputs/b'], output='o')\n",
     "reads 'inputs/b', which nothing provides"),
    ("package.dataflow('f', task='ff', inputs=['inputs/a'], output='o')\n",
     "unknown task 'ff'; did you mean 'f'?"),
    ("package.dataflow('f', task='f', inputs=['inputs/a'], output='o', profile='ro', "
     "leases=[('db', 'write')])\n", "profile 'ro' but a write lease on 'db'"),
])
def test_build_names_each_definition_error(tmp_path, flows, needle):
    d = pkg_dir(tmp_path / "p", "demo", "0.1.0", flows=flows)
    with pytest.raises(BuildError, match=needle.replace("(", "\\(").replace("?", "\\?")):
        sdk.build(d)
    r = run_e3("build", str(d), cwd=tmp_path)
    assert r.code == 2 and needle in r.err and len(r.err.strip().splitlines()) == 1


# -- add / export ------------------------------------------------------------------------------
def test_add_export_into_a_fresh_repo_and_export_again_is_identical(tmp_path):
    built = sdk.build(FORECAST, tmp_path / "dist")
    for name in ("r1", "r2"):
        assert run_e3("init", name, cwd=tmp_path).code == 0
    r = run_e3("--repo", "r1", "--json", "add", built["path"], cwd=tmp_path)
    assert r.code == 0 and r.json["hash"] == built["hash"], r
    assert run_e3("--repo", "r1", "export", "forecast@0.1.0", "e1.zip", cwd=tmp_path).code == 0
    assert run_e3("--repo", "r2", "add", "e1.zip", cwd=tmp_path).code == 0
    e2 = run_e3("--repo", "r2", "--json", "export", "forecast@0.1.0", "e2.zip", cwd=tmp_path)
    assert e2.json["hash"] == built["hash"]
    assert (tmp_path / "e1.zip").read_bytes() == (tmp_path / "e2.zip").read_bytes() \
        == Path(built["path"]).read_bytes()


def _tamper(src: str, dest: Path, edit) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, edit(info.filename, zin.read(info)))
        extra = edit("+", None)
        if extra:
            zout.writestr(*extra)
    return dest


def test_a_bundle_with_a_traversal_name_is_refused_with_nothing_written(tmp_path):
    built = sdk.build(FORECAST, tmp_path / "dist")
    repo = Repository.init(tmp_path / "repo")
    bad = _tamper(built["path"], tmp_path / "bad.zip",
                  lambda n, d: ("../../../tmp-escape", b"x") if n == "+" else d)
    before = state(repo.root)
    r = run_e3("--repo", str(repo.root), "add", str(bad), cwd=tmp_path)
    assert r.code != 0 and "path-traversal" in r.err
    assert state(repo.root) == before


def test_a_bundle_with_a_wrong_hash_is_refused_with_nothing_written(tmp_path):
    built = sdk.build(FORECAST, tmp_path / "dist")
    repo = Repository.init(tmp_path / "repo")
    csv = hash_bytes((FORECAST / "data" / "sales.csv").read_bytes())
    bad = _tamper(built["path"], tmp_path / "bad.zip",
                  lambda n, d: None if n == "+" else (d.replace(b"north", b"NORTH")
                                                      if n.endswith(csv) else d))
    before = state(repo.root)
    with pytest.raises(IntegrityError, match="does not match its hash"):
        P.import_bundle(repo, bad)
    r = run_e3("--repo", str(repo.root), "add", str(bad), cwd=tmp_path)
    assert r.code == 2 and "does not match its hash" in r.err
    assert state(repo.root) == before and P.list_packages(repo) == []


# -- dependencies -------------------------------------------------------------------------------
def test_dependency_resolution_names_missing_and_conflicting_packages(tmp_path):
    reg = tmp_path / "registry"
    sdk.build(pkg_dir(tmp_path / "lib2", "stats-lib", "2.0.0"), reg)
    app = sdk.build(pkg_dir(tmp_path / "app", "app", "1.0.0", {"stats-lib": "^1.0"}), tmp_path / "out")
    repo = Repository.init(tmp_path / "repo")
    with pytest.raises(UsageError, match="app@1.0.0 needs stats-lib \\^1.0, but stats-lib is not installed"):
        P.add(repo, app["path"])
    P.add(repo, str(reg / "stats-lib-2.0.0.zip"))
    with pytest.raises(UsageError, match="needs stats-lib \\^1.0, but installed stats-lib versions are 2.0.0"):
        P.add(repo, app["path"])
    with pytest.raises(UsageError, match="registry has stats-lib 2.0.0"):
        P.add(repo, app["path"], registry=reg)
    sdk.build(pkg_dir(tmp_path / "lib1", "stats-lib", "1.4.0"), reg)
    res = P.add(repo, app["path"], registry=reg)
    assert [(a["name"], a["version"]) for a in res["added"]] == [("stats-lib", "1.4.0"), ("app", "1.0.0")]
    assert P.resolve_ref(repo, "stats-lib", "^1.0")["version"] == "1.4.0"


# -- remove -------------------------------------------------------------------------------------
def test_remove_drops_the_ref_and_keeps_objects_until_gc(tmp_path):
    built = sdk.build(FORECAST, tmp_path / "dist")
    assert run_e3("init", "repo", cwd=tmp_path).code == 0
    assert run_e3("--repo", "repo", "add", built["path"], cwd=tmp_path).code == 0
    r = run_e3("--repo", "repo", "--json", "remove", "forecast", cwd=tmp_path)
    assert r.code == 0 and r.json == {"removed": ["forecast@0.1.0"]}
    repo = Repository(tmp_path / "repo")
    assert P.list_packages(repo) == [] and repo.objects.exists(built["hash"])
    r = run_e3("--repo", "repo", "remove", "forecast", cwd=tmp_path)
    assert r.code == 2 and "unknown package 'forecast'" in r.err
