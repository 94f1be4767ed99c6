"""End to end: the real `e3 build/add/remove/packages/export` commands."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from e3logic import EXAMPLES_DIR

FORECAST = EXAMPLES_DIR / "forecast"


def write_pkg(d: Path, name: str, version: str, deps: dict | None = None, body: str = "") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "steps.py").write_text("def f(x):\n    return x\n")
    (d / "e3pkg.py").write_text(
        "from e3logic import sdk\n"
        f"package = sdk.package({name!r}, {version!r}, dependencies={deps or {}!r})\n"
        "package.module('steps.py')\npackage.task('f', 'steps:f')\n"
        "package.dataset('inputs/x', value=1)\n" + (body or
        "package.dataflow('f', task='f', inputs=['inputs/x'], output='y')\n"))
    return d


@pytest.fixture
def repo(e3):
    r = e3("init", "proj")
    assert r.code == 0, r
    e3.repo = ["--repo", str(e3.cwd / "proj")]
    return e3


def test_build_answers_json_with_name_version_path_hash(e3):
    r = e3("--json", "build", str(FORECAST), "-o", "out")
    assert r.code == 0, r
    assert set(r.json) >= {"name", "version", "path", "hash"}
    assert (r.json["name"], r.json["version"]) == ("forecast", "0.1.0")
    assert Path(e3.cwd / r.json["path"]).name == "forecast-0.1.0.zip"


def test_build_twice_gives_byte_identical_zips(e3):
    a = e3("--json", "build", str(FORECAST), "-o", "a").json
    b = e3("--json", "build", str(FORECAST), "-o", "b").json
    assert (e3.cwd / a["path"]).read_bytes() == (e3.cwd / b["path"]).read_bytes()


def test_build_defaults_to_the_current_directory_and_dist(e3):
    write_pkg(e3.cwd / "pkg", "demo", "0.2.0")
    r = e3("build", cwd=e3.cwd / "pkg")
    assert r.code == 0, r
    assert "built demo@0.2.0" in r.out and (e3.cwd / "pkg" / "dist" / "demo-0.2.0.zip").is_file()


def test_build_errors_are_one_line_with_exit_2(e3):
    write_pkg(e3.cwd / "pkg", "demo", "0.1.0",
              body="package.dataflow('f', task='g', inputs=['inputs/x'], output='y')\n")
    r = e3("build", "pkg")
    assert r.code == 2
    assert r.err.strip() == ("e3: error: dataflow 'f' uses unknown task 'g'; declare it with "
                             "package.task('g', ...)")
    assert "Traceback" not in r.err


def test_build_names_a_cycle(e3):
    write_pkg(e3.cwd / "pkg", "demo", "0.1.0", body=(
        "package.dataflow('a', task='f', inputs=['outputs/b/y'], output='y')\n"
        "package.dataflow('b', task='f', inputs=['outputs/a/y'], output='y')\n"))
    r = e3("build", "pkg")
    assert r.code == 2 and "dataflow cycle a -> b -> a" in r.err and len(r.err.splitlines()) == 1


def test_add_packages_export_remove_round_trip(repo):
    e3 = repo
    built = e3("--json", "build", str(FORECAST), "-o", "out").json
    r = e3(*e3.repo, "--json", "add", "out/forecast-0.1.0.zip")
    assert r.code == 0, r
    assert {k: r.json[k] for k in ("name", "version", "hash")} == {
        "name": "forecast", "version": "0.1.0", "hash": built["hash"]}
    listed = e3(*e3.repo, "--json", "packages").json
    assert listed == [{"name": "forecast", "version": "0.1.0", "hash": built["hash"]}]
    human = e3(*e3.repo, "packages")
    assert human.out.split() == ["forecast", "0.1.0", built["hash"][:12]]
    ex = e3(*e3.repo, "--json", "export", "forecast@0.1.0", "exported.zip")
    assert ex.code == 0, ex
    assert set(ex.json) >= {"path", "hash"} and ex.json["hash"] == built["hash"]
    assert (e3.cwd / "exported.zip").read_bytes() == (e3.cwd / built["path"]).read_bytes()
    rm = e3(*e3.repo, "--json", "remove", "forecast@0.1.0")
    assert rm.json == {"removed": ["forecast@0.1.0"]}
    assert e3(*e3.repo, "--json", "packages").json == []
    assert "no packages installed" in e3(*e3.repo, "packages").out


def test_add_finds_the_repository_from_the_current_directory(repo):
    e3 = repo
    e3("build", str(FORECAST), "-o", "out")
    r = e3("add", str(e3.cwd / "out" / "forecast-0.1.0.zip"), cwd=e3.cwd / "proj")
    assert r.code == 0, r
    assert r.out.startswith("added forecast@0.1.0 (")


def test_add_by_name_from_a_registry_with_dependencies(repo):
    e3 = repo
    write_pkg(e3.cwd / "lib", "stats-lib", "1.2.0")
    write_pkg(e3.cwd / "app", "app", "1.0.0", {"stats-lib": "^1.0"})
    for d in ("lib", "app"):
        assert e3("build", d, "-o", "registry").code == 0
    r = e3(*e3.repo, "add", "app@^1.0", "--registry", "registry")
    assert r.code == 0, r
    assert r.out.splitlines()[0].startswith("added dependency stats-lib@1.2.0 (")
    assert [(p["name"], p["version"]) for p in e3(*e3.repo, "--json", "packages").json] == [
        ("app", "1.0.0"), ("stats-lib", "1.2.0")]
    rm = e3(*e3.repo, "remove", "stats-lib")
    assert rm.code == 2 and "app@1.0.0 depends on stats-lib ^1.0" in rm.err
    assert e3(*e3.repo, "--json", "remove", "stats-lib", "--force").json == {
        "removed": ["stats-lib@1.2.0"]}


def test_add_with_a_registry_from_e3_toml(repo):
    e3 = repo
    write_pkg(e3.cwd / "lib", "stats-lib", "1.2.0")
    e3("build", "lib", "-o", "registry")
    with open(e3.cwd / "proj" / "e3.toml", "a") as f:
        f.write('\n[packages]\nregistries = ["../registry"]\n')
    r = e3(*e3.repo, "--json", "add", "stats-lib")
    assert r.code == 0, r
    assert r.json["version"] == "1.2.0"


def test_add_with_a_missing_dependency_names_it_and_exits_2(repo):
    e3 = repo
    write_pkg(e3.cwd / "app", "app", "1.0.0", {"stats-lib": "^1.0"})
    e3("build", "app", "-o", "out")
    r = e3(*e3.repo, "add", "out/app-1.0.0.zip")
    assert r.code == 2
    assert "app@1.0.0 needs stats-lib ^1.0, but stats-lib is not installed" in r.err
    assert e3(*e3.repo, "--json", "packages").json == []


def test_add_refuses_a_traversal_zip_and_writes_nothing(repo):
    e3 = repo
    with zipfile.ZipFile(e3.cwd / "evil.zip", "w") as zf:
        zf.writestr("e3package.json", "{}")
        zf.writestr("../../evil.txt", "x")
    objects = sorted((e3.cwd / "proj" / ".e3" / "objects").rglob("*"))
    r = e3(*e3.repo, "add", "evil.zip")
    assert r.code == 1 and "path-traversal entry name '../../evil.txt'" in r.err
    assert sorted((e3.cwd / "proj" / ".e3" / "objects").rglob("*")) == objects
    assert not (e3.cwd / "evil.txt").exists()


def test_unknown_names_get_did_you_mean(repo):
    e3 = repo
    e3("build", str(FORECAST), "-o", "out")
    e3(*e3.repo, "add", "out/forecast-0.1.0.zip")
    for args in (("remove", "forcast"), ("export", "forcast@0.1.0", "x.zip")):
        r = e3(*e3.repo, *args)
        assert r.code == 2 and "did you mean 'forecast'?" in r.err, r
    r = e3(*e3.repo, "export", "forecast@0.9.0", "x.zip")
    assert r.code == 2 and "unknown version 'forecast@0.9.0'" in r.err


def test_commands_without_a_repository_say_so(e3):
    r = e3("packages")
    assert r.code == 2 and "e3 init" in r.err


def test_every_package_command_has_help(e3):
    for cmd in ("build", "add", "remove", "packages", "export"):
        r = e3(cmd, "--help")
        assert r.code == 0 and "Usage: e3 " + cmd in r.out
