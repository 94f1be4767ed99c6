"""Installed packages: import/export, refs, resolution, dependencies, remove, crash safety."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from e3logic import sdk
from e3logic.core import canon
from e3logic.core.errors import IntegrityError, NotFound, UsageError
from e3logic.core.hashing import hash_bytes, hash_file
from e3logic.repo import packages as P
from e3logic.repo.refs import read_ref
from e3logic.repo.repository import Repository
from tests.helpers import ROOT, e3_env


def make_bundle(tmp: Path, name: str = "demo", version: str = "0.1.0", deps: dict | None = None,
                value: int = 1, outdir: Path | None = None, extra: str = "") -> dict:
    d = tmp / "src" / f"{name}-{version}-{value}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "steps.py").write_text(f"def f(x):\n    return x + {value}\n")
    (d / "e3pkg.py").write_text(
        "from e3logic import sdk\n"
        f"package = sdk.package({name!r}, {version!r}, dependencies={deps or {}!r})\n"
        "package.module('steps.py')\n"
        "package.task('f', 'steps:f')\n"
        f"package.dataset('inputs/x', value={value})\n"
        "package.dataflow('f', task='f', inputs=['inputs/x'], output='y')\n" + extra)
    return sdk.build(d, outdir or tmp / "registry")


@pytest.fixture
def repo(tmp_path):
    return Repository.init(tmp_path / "repo")


def snapshot(repo) -> dict:
    """Every file under .e3/ with its content hash, except index.db and cache/ (derived,
    rebuildable: e.g. e3.toml's parse, kept by whichever command reads the settings first)."""
    out = {}
    for p in sorted(repo.dir.rglob("*")):
        if p.relative_to(repo.dir).parts[0] == "cache":
            continue
        if p.is_file() and not p.name.startswith("index.db"):
            out[str(p.relative_to(repo.dir))] = hash_file(p)
        elif p.is_dir():
            out[str(p.relative_to(repo.dir)) + "/"] = ""
    return out


def graph_complete(repo, h: str) -> bool:
    return all(repo.objects.exists(x) and repo.objects.verify(x) for x in P.reachable(repo, h))


# -- import / export ---------------------------------------------------------------------------
def test_import_installs_objects_and_writes_the_ref_last(repo, tmp_path):
    b = make_bundle(tmp_path)
    res = P.import_bundle(repo, b["path"])
    assert res == {"name": "demo", "version": "0.1.0", "hash": b["hash"], "new": True}
    assert read_ref(repo.package_ref_path("demo", "0.1.0")) == {
        "kind": "package", "hash": b["hash"], "name": "demo", "version": "0.1.0"}
    assert graph_complete(repo, b["hash"])
    assert repo.objects.temp_files() == []


def test_importing_the_same_bundle_twice_is_a_no_op(repo, tmp_path):
    b = make_bundle(tmp_path)
    P.import_bundle(repo, b["path"])
    before = snapshot(repo)
    assert P.import_bundle(repo, b["path"])["new"] is False
    assert snapshot(repo) == before


def test_export_import_export_gives_identical_bytes(tmp_path):
    b = make_bundle(tmp_path)
    r1 = Repository.init(tmp_path / "r1")
    P.import_bundle(r1, b["path"])
    e1 = P.export_bundle(r1, "demo", "0.1.0", tmp_path / "e1.zip")
    r2 = Repository.init(tmp_path / "r2")
    P.import_bundle(r2, e1["path"])
    e2 = P.export_bundle(r2, "demo", None, tmp_path / "e2.zip")
    assert Path(e1["path"]).read_bytes() == Path(e2["path"]).read_bytes() == Path(b["path"]).read_bytes()
    assert e1["hash"] == e2["hash"] == b["hash"]


def _rewrite(src: str, dest: Path, change) -> Path:
    """Copy a bundle, letting change(name, data) return new bytes, None to drop, or a list of
    extra (name, bytes) entries via the '+' key."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info.filename, data)
        for name, data in change("+", b"") or []:
            zout.writestr(name, data)
    return dest


def test_a_wrong_hash_is_refused_with_nothing_written(repo, tmp_path):
    b = make_bundle(tmp_path)
    blob = hash_bytes(b"def f(x):\n    return x + 1\n")
    bad = _rewrite(b["path"], tmp_path / "bad.zip",
                   lambda n, d: (b"def f(x):\n    return x + 9\n" if n.endswith(blob) else d)
                   if n != "+" else [])
    before = snapshot(repo)
    with pytest.raises(IntegrityError, match=f"object {blob[:12]} does not match its hash"):
        P.import_bundle(repo, bad)
    assert snapshot(repo) == before


def test_a_traversal_name_is_refused_with_nothing_written(repo, tmp_path):
    b = make_bundle(tmp_path)
    bad = _rewrite(b["path"], tmp_path / "bad.zip",
                   lambda n, d: d if n != "+" else [("../../escape.txt", b"gotcha")])
    before = snapshot(repo)
    with pytest.raises(IntegrityError, match="path-traversal entry name '../../escape.txt'"):
        P.import_bundle(repo, bad)
    assert snapshot(repo) == before
    assert not (tmp_path / "escape.txt").exists() and not (repo.root / "escape.txt").exists()


def test_a_package_referencing_an_absent_object_is_refused_with_nothing_written(repo, tmp_path):
    b = make_bundle(tmp_path)
    blob = hash_bytes(b"def f(x):\n    return x + 1\n")
    bad = _rewrite(b["path"], tmp_path / "bad.zip",
                   lambda n, d: None if n.endswith(blob) else (d if n != "+" else []))
    before = snapshot(repo)
    with pytest.raises(IntegrityError, match=f"blob {blob[:12]} \\('steps.py'\\) is missing"):
        P.import_bundle(repo, bad)
    assert snapshot(repo) == before


def test_a_manifest_disagreeing_with_the_package_object_is_refused(repo, tmp_path):
    b = make_bundle(tmp_path)

    def change(n, d):
        if n == "e3package.json":
            m = json.loads(d)
            m["version"] = "9.9.9"
            return canon.dumps(m)
        return d if n != "+" else []

    bad = _rewrite(b["path"], tmp_path / "bad.zip", change)
    before = snapshot(repo)
    with pytest.raises(IntegrityError, match="manifest says demo@9.9.9 but the package object is "
                                             "demo@0.1.0"):
        P.import_bundle(repo, bad)
    assert snapshot(repo) == before


def test_a_different_package_under_an_installed_version_is_refused(repo, tmp_path):
    P.import_bundle(repo, make_bundle(tmp_path, value=1)["path"])
    other = make_bundle(tmp_path, value=2, outdir=tmp_path / "other")
    before = snapshot(repo)
    with pytest.raises(UsageError, match="demo@0.1.0 is already installed with another hash .*"
                                         "'e3 remove demo@0.1.0' or bump the version"):
        P.import_bundle(repo, other["path"])
    assert snapshot(repo) == before


def test_the_size_bound_comes_from_e3_toml(repo, tmp_path):
    b = make_bundle(tmp_path)
    with open(repo.root / "e3.toml", "a") as f:
        f.write("\n[packages]\nmax_bundle_bytes = 100\n")
    repo = Repository(repo.root)
    with pytest.raises(IntegrityError, match="decompresses to more than 100 bytes"):
        P.import_bundle(repo, b["path"])


def test_reachable_lists_the_package_and_every_tree_and_blob(repo, tmp_path):
    b = make_bundle(tmp_path)
    P.import_bundle(repo, b["path"])
    with zipfile.ZipFile(b["path"]) as zf:
        in_zip = sorted(n.split("/")[1] for n in zf.namelist() if n.startswith("objects/"))
    assert P.reachable(repo, b["hash"]) == in_zip


def test_install_writes_a_committed_package_object_and_its_ref(repo, tmp_path):
    b = make_bundle(tmp_path)
    P.import_bundle(repo, b["path"])
    old = P.read_package(repo, b["hash"])
    new = dict(old, version="0.1.1", parent={"version": "0.1.0", "hash": b["hash"]}, message="m")
    res = P.install(repo, new)
    assert P.resolve(repo, "demo") == res["hash"] and res["version"] == "0.1.1"
    assert P.reachable(repo, res["hash"]) == sorted(
        set(P.reachable(repo, b["hash"])) - {b["hash"]} | {res["hash"]})
    with pytest.raises(IntegrityError, match="missing"):
        P.install(repo, dict(old, version="0.2.0", datasets={"kind": "tree", "hash": "0" * 64}))


# -- listing and resolution -------------------------------------------------------------------------
def _install_versions(repo, tmp_path, name, versions, deps=None):
    out = {}
    for v in versions:
        out[v] = P.import_bundle(repo, make_bundle(tmp_path, name, v, deps)["path"])["hash"]
    return out


def test_list_packages_sorts_by_name_then_semver(repo, tmp_path):
    _install_versions(repo, tmp_path, "zeta", ["0.10.0", "0.9.0", "0.9.0-rc.1"])
    _install_versions(repo, tmp_path, "alpha", ["1.0.0"])
    assert [(p["name"], p["version"]) for p in P.list_packages(repo)] == [
        ("alpha", "1.0.0"), ("zeta", "0.9.0-rc.1"), ("zeta", "0.9.0"), ("zeta", "0.10.0")]


def test_resolve_takes_an_exact_version_a_constraint_or_the_highest(repo, tmp_path):
    hs = _install_versions(repo, tmp_path, "lib", ["1.0.0", "1.4.2", "2.0.0"])
    assert P.resolve(repo, "lib") == hs["2.0.0"]
    assert P.resolve(repo, "lib", "1.0.0") == hs["1.0.0"]
    assert P.resolve(repo, "lib", "^1.0") == hs["1.4.2"]
    assert P.resolve(repo, "lib", ">=1,<1.4") == hs["1.0.0"]
    assert P.resolve_ref(repo, "lib", "~1.4")["version"] == "1.4.2"


def test_resolve_names_near_misses_for_unknown_names_and_versions(repo, tmp_path):
    _install_versions(repo, tmp_path, "forecast", ["0.1.0"])
    with pytest.raises(NotFound, match="unknown package 'forcast'; did you mean 'forecast'"):
        P.resolve(repo, "forcast")
    with pytest.raises(NotFound, match="unknown version 'forecast@\\^2.0'; installed versions: 0.1.0"):
        P.resolve(repo, "forecast", "^2.0")
    with pytest.raises(NotFound, match="did you mean '0.1.0'"):
        P.resolve(repo, "forecast", "0.1.1")


def test_an_empty_repository_says_how_to_install(repo):
    with pytest.raises(NotFound, match="install it with 'e3 add"):
        P.resolve(repo, "x")
    assert P.list_packages(repo) == []


def test_parse_spec_splits_name_and_version():
    assert P.parse_spec("a@1.0.0") == ("a", "1.0.0")
    assert P.parse_spec("a@^1.2") == ("a", "^1.2")
    assert P.parse_spec("a") == ("a", None)
    with pytest.raises(UsageError, match="empty version"):
        P.parse_spec("a@")
    with pytest.raises(UsageError, match="invalid package name"):
        P.parse_spec("../a")


# -- add and dependencies ------------------------------------------------------------------------------
def test_add_a_zip_whose_dependency_is_missing_names_it_and_writes_nothing(repo, tmp_path):
    app = make_bundle(tmp_path, "app", "1.0.0", {"stats-lib": "^1.0"})
    before = snapshot(repo)
    with pytest.raises(UsageError, match="app@1.0.0 needs stats-lib \\^1.0, but stats-lib is not "
                                         "installed; add it first"):
        P.add(repo, app["path"])
    assert snapshot(repo) == before


def test_add_a_zip_whose_dependency_conflicts_names_what_is_installed(repo, tmp_path):
    P.add(repo, make_bundle(tmp_path, "stats-lib", "2.1.0")["path"])
    app = make_bundle(tmp_path, "app", "1.0.0", {"stats-lib": "^1.0"})
    with pytest.raises(UsageError, match="app@1.0.0 needs stats-lib \\^1.0, but installed "
                                         "stats-lib versions are 2.1.0"):
        P.add(repo, app["path"])


def test_add_a_zip_with_its_dependency_installed_succeeds(repo, tmp_path):
    P.add(repo, make_bundle(tmp_path, "stats-lib", "1.3.0")["path"])
    res = P.add(repo, make_bundle(tmp_path, "app", "1.0.0", {"stats-lib": "^1.0"})["path"])
    assert (res["name"], res["version"], res["new"]) == ("app", "1.0.0", True)
    assert [a["name"] for a in res["added"]] == ["app"]


def test_add_by_name_from_a_registry_pulls_missing_dependencies_first(repo, tmp_path):
    for v in ("1.0.0", "1.5.0", "2.0.0"):
        make_bundle(tmp_path, "stats-lib", v)
    make_bundle(tmp_path, "util", "0.3.0")
    make_bundle(tmp_path, "app", "1.0.0", {"stats-lib": "^1.0", "util": "~0.3"})
    make_bundle(tmp_path, "app", "1.1.0", {"stats-lib": "^1.0", "util": "~0.3"})
    res = P.add(repo, "app@~1.0.0", registry=tmp_path / "registry")
    assert (res["name"], res["version"]) == ("app", "1.0.0")
    assert [(a["name"], a["version"]) for a in res["added"]] == [
        ("stats-lib", "1.5.0"), ("util", "0.3.0"), ("app", "1.0.0")]
    assert P.add(repo, "app", registry=tmp_path / "registry")["added"] == [
        {"name": "app", "version": "1.1.0", "hash": P.resolve(repo, "app", "1.1.0")}]


def test_add_from_a_registry_lacking_a_dependency_names_it(repo, tmp_path):
    make_bundle(tmp_path, "app", "1.0.0", {"stats-lib": "^3.0"})
    make_bundle(tmp_path, "stats-lib", "1.0.0")
    with pytest.raises(UsageError, match="needs stats-lib \\^3.0, but stats-lib is not installed; "
                                         "add it first \\(registry has stats-lib 1.0.0\\)"):
        P.add(repo, "app", registry=tmp_path / "registry")
    assert P.list_packages(repo) == []


def test_add_by_unknown_name_suggests_a_registry_package(repo, tmp_path):
    make_bundle(tmp_path, "forecast", "0.1.0")
    with pytest.raises(NotFound, match="unknown package 'forcast'; did you mean 'forecast'"):
        P.add(repo, "forcast", registry=tmp_path / "registry")
    with pytest.raises(UsageError, match="pass --registry DIR"):
        P.add(repo, "forecast")


def test_registry_index_parses_names_with_dashes(tmp_path):
    make_bundle(tmp_path, "stats-lib", "1.0.0-rc.1")
    (tmp_path / "registry" / "notes.txt").write_text("x")
    assert list(P.registry_index(tmp_path / "registry")) == ["stats-lib"]
    assert list(P.registry_index(tmp_path / "registry")["stats-lib"]) == ["1.0.0-rc.1"]


# -- remove ------------------------------------------------------------------------------------------------
def test_remove_one_version_or_all_and_keep_objects(repo, tmp_path):
    hs = _install_versions(repo, tmp_path, "lib", ["1.0.0", "1.1.0", "2.0.0"])
    assert P.remove(repo, "lib", "1.1.0") == ["lib@1.1.0"]
    assert [p["version"] for p in P.list_packages(repo)] == ["1.0.0", "2.0.0"]
    assert repo.objects.exists(hs["1.1.0"])
    assert P.remove(repo, "lib") == ["lib@1.0.0", "lib@2.0.0"]
    assert P.list_packages(repo) == [] and not (repo.packages_dir / "lib").exists()


def test_remove_names_near_misses(repo, tmp_path):
    _install_versions(repo, tmp_path, "lib", ["1.0.0"])
    with pytest.raises(NotFound, match="did you mean 'lib'"):
        P.remove(repo, "lbi")
    with pytest.raises(NotFound, match="unknown version 'lib@1.0.1'; did you mean 'lib@1.0.0'"):
        P.remove(repo, "lib", "1.0.1")


def test_remove_refuses_to_break_a_dependent_unless_forced(repo, tmp_path):
    _install_versions(repo, tmp_path, "stats-lib", ["1.0.0", "1.2.0"])
    P.add(repo, make_bundle(tmp_path, "app", "1.0.0", {"stats-lib": "^1.0"})["path"])
    assert P.remove(repo, "stats-lib", "1.0.0") == ["stats-lib@1.0.0"]  # 1.2.0 still satisfies
    with pytest.raises(UsageError, match="app@1.0.0 depends on stats-lib \\^1.0; remove app@1.0.0 "
                                         "first, or pass --force"):
        P.remove(repo, "stats-lib")
    assert P.remove(repo, "stats-lib", force=True) == ["stats-lib@1.2.0"]


# -- crash safety --------------------------------------------------------------------------------------------
BIG = """
import hashlib, os
os.makedirs(os.path.join(os.path.dirname(__file__), "data"), exist_ok=True)
for i in range(48):
    p = f"data/blob{i:02d}.bin"
    with open(os.path.join(os.path.dirname(__file__), p), "wb") as f:
        f.write(hashlib.shake_256(str(i).encode()).digest(1 << 20))
    package.dataset(f"inputs/blob{i:02d}", file=p)
"""


def refs_all_complete(repo) -> list[str]:
    """Every package ref whose object graph is incomplete or corrupt (should be none)."""
    bad = []
    for p in P.list_packages(repo):
        try:
            if not graph_complete(repo, p["hash"]):
                bad.append(p["name"])
        except Exception:
            bad.append(p["name"])
    return bad


def test_sigkill_during_a_big_import_never_leaves_a_ref_to_missing_objects(tmp_path):
    b = make_bundle(tmp_path, "big", "1.0.0", extra=BIG)
    assert Path(b["path"]).stat().st_size > 40 << 20
    repo = Repository.init(tmp_path / "repo")
    code = f"from e3logic.repo import packages as P; from e3logic.repo.repository import Repository; " \
           f"P.import_bundle(Repository({str(repo.root)!r}), {b['path']!r})"

    def round_trip(delay: float | None) -> tuple[int, float]:
        """Start an import in a child; once it is staging, wait `delay` and SIGKILL it (None:
        let it finish). Returns (exit code, seconds from staging start to exit)."""
        if P.list_packages(repo):
            P.remove(repo, "big")
        for h in list(repo.objects):  # a fresh store each round, so every kill lands mid-import
            repo.objects.path(h).unlink()
        shutil.rmtree(repo.objects.tmp, ignore_errors=True)  # what gc does to stale staging dirs
        child = subprocess.Popen([sys.executable, "-c", code], env=e3_env(), cwd=ROOT)
        deadline = time.monotonic() + 30
        while (not any(repo.objects.tmp.glob("import-*")) and child.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.002)
        t0 = time.monotonic()
        if delay is not None:
            time.sleep(delay)
            child.send_signal(signal.SIGKILL)
        rc = child.wait()
        return rc, time.monotonic() - t0

    rc, full = round_trip(None)
    assert rc == 0 and refs_all_complete(repo) == [] and P.list_packages(repo)
    outcomes = []
    for frac in (0.0, 0.15, 0.3, 0.5, 0.7, 0.85, 0.95, 1.0):
        rc, _ = round_trip(full * frac)
        outcomes.append((frac, rc, len(P.list_packages(repo))))
        assert refs_all_complete(repo) == [], outcomes
        for h in repo.objects:  # every object in the store is complete
            assert repo.objects.verify(h), (h, outcomes)
    killed = sum(rc == -signal.SIGKILL for _, rc, _ in outcomes)
    assert killed >= 3, (full, outcomes)  # most rounds were interrupted mid-import
    # the repository still works: a full import succeeds and is complete
    assert P.import_bundle(repo, b["path"])["hash"] == b["hash"]
    assert refs_all_complete(repo) == [] and graph_complete(repo, b["hash"])


def test_a_crash_while_installing_objects_leaves_no_ref_and_only_complete_objects(tmp_path):
    """Die (os._exit, no cleanup) after the n-th object rename — between the first install
    and the ref write — and check the repository each time."""
    b = make_bundle(tmp_path)
    n_objects = len(zipfile.ZipFile(b["path"]).namelist()) - 1
    for n in (1, 3, n_objects):
        repo = Repository.init(tmp_path / f"repo{n}")
        before = set(repo.objects)
        code = ("import os; from e3logic.repo import packages as P\n"
                "from e3logic.repo.repository import Repository\n"
                "real = P._install_file; count = [0]\n"
                "def crash(*a):\n"
                "    real(*a); count[0] += 1\n"
                f"    if count[0] == {n}: os._exit(9)\n"
                "P._install_file = crash\n"
                f"P.import_bundle(Repository({str(repo.root)!r}), {b['path']!r})\n")
        rc = subprocess.run([sys.executable, "-c", code], env=e3_env(), cwd=ROOT).returncode
        assert rc == 9
        assert P.list_packages(repo) == []
        assert len(set(repo.objects) - before) == n
        assert all(repo.objects.verify(h) for h in repo.objects)
        assert P.import_bundle(repo, b["path"])["new"] is True
        assert graph_complete(repo, b["hash"])


def test_add_of_a_package_directory_says_to_build_it_first(repo, tmp_path):
    (tmp_path / "pkgdir").mkdir()
    with pytest.raises(UsageError, match="is a directory; build it first with 'e3 build"):
        P.add(repo, str(tmp_path / "pkgdir"))


# -- hostile bundles: every name checked, nothing unreached staged ------------------------------
from e3logic.core.errors import BadBundle  # noqa: E402
from tests.bundle_forge import forge, unreferenced_objects_bundle  # noqa: E402


def staging_dirs(repo) -> list:
    return sorted(repo.objects.tmp.glob("import-*")) if repo.objects.tmp.exists() else []


def test_a_dataset_entry_climbing_out_is_refused_whole_before_anything_is_staged(repo, tmp_path):
    b = make_bundle(tmp_path)
    bad = forge(b["path"], tmp_path / "x.zip",
                lambda f: f.put_dataset(["inputs", "../../victim.txt"], b"pwned"))
    before = snapshot(repo)
    with pytest.raises(BadBundle, match="bundle x.zip: dataset tree entry '../../victim.txt' is "
                                        "not a valid name \\(no '..' segments\\); rebuild"):
        P.import_bundle(repo, bad)
    assert snapshot(repo) == before and staging_dirs(repo) == []
    with pytest.raises(BadBundle):
        P.peek_bundle(repo, bad)  # add checks every bundle before importing any


def test_unreached_objects_refuse_the_bundle_and_are_never_staged(repo, tmp_path):
    b = make_bundle(tmp_path)
    bad = unreferenced_objects_bundle(b["path"], tmp_path / "x.zip", 8)
    before = snapshot(repo)
    with pytest.raises(BadBundle, match="is not reached from the package \\(nor are 7 more\\)"):
        P.import_bundle(repo, bad)
    assert snapshot(repo) == before and staging_dirs(repo) == []


def test_a_tree_path_longer_than_the_limit_is_refused_even_through_shared_trees(repo, tmp_path):
    b = make_bundle(tmp_path)

    def change(f):
        # one deep chain of folders, reached twice: short first, then long
        leaf = f.tree({"x": f.blob(b"1")})
        chain = leaf
        for _ in range(10):
            chain = f.tree({"d" * 100: chain})
        f.put_entry("datasets", ["inputs", "a"], chain)
        f.put_entry("datasets", ["inputs", "b" * 200], chain)
    bad = forge(b["path"], tmp_path / "x.zip", change)
    with pytest.raises(BadBundle, match="dataset path 'inputs/b.*' is 1219 bytes, at most 1024"):
        P.import_bundle(repo, bad)


def test_package_problem_names_the_first_bad_name():
    pkg = {"dependencies": {}, "tasks": {"t": {"runtime": "python", "entry": "m:f"}},
           "dataflows": {"d": {"task": "t", "inputs": ["inputs/a"], "output": "o",
                               "leases": [["db", "write"]], "resources": {"gpu": 1}}}}
    assert P.package_problem(pkg) is None
    cases = [
        (("dependencies",), {"a b": "^1"}, "dependency name 'a b' is not a valid name"),
        (("tasks",), {"../t": {"runtime": "python", "entry": "m:f"}}, "task name '../t'"),
        (("dataflows", "d", "inputs"), ["inputs/a\x00"], "dataflow 'd' input 'inputs/a\\x00'"),
        (("dataflows", "d", "output"), "/o", "dataflow 'd' output '/o'"),
        (("dataflows", "d", "leases"), [["db", "grab"]], "malformed lease"),
        (("dataflows", "d", "resources"), {"g pu": 1}, "dataflow 'd' resource name 'g pu'"),
    ]
    for keys, value, needle in cases:
        bad = json.loads(json.dumps(pkg))
        node = bad
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
        assert needle in P.package_problem(bad), keys


def test_a_version_with_a_trailing_newline_or_spaces_is_not_a_package_version():
    assert P.version_problem("1.0.0") is None
    for v in ("1.0.0\n", " 1.0.0", "1.0.0 ", "1" * 200 + ".0.0", 1):
        assert P.version_problem(v), v
    with pytest.raises(UsageError, match="invalid package name"):
        P.check_name("forecast\n")


def test_commit_style_install_of_valid_names_still_works(repo):
    from tests.repo_helpers import make_package

    h = make_package(repo, datasets={"inputs/with space": 1, "inputs/müller": b"x"})
    assert P.reachable(repo, h)
