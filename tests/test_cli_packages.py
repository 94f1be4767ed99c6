"""End to end: the real `e3 build/add/remove/packages/export` commands."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from e3logic import EXAMPLES_DIR
from e3logic.core.hashing import hash_bytes
from tests.bundle_forge import Forge, deep_json, forge, rewrite_zip, unreferenced_objects_bundle

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


def test_build_lists_every_problem_one_a_line(e3):
    write_pkg(e3.cwd / "pkg", "demo", "0.1.0", body=(
        "package.dataflow('a', task='g', inputs=['inputs/x'], output='y')\n"
        "package.dataflow('b', task='f', inputs=['inputs/z'], output='y')\n"
        "package.dataflow('c', task='f', inputs=['outputs/d/y'], output='y')\n"
        "package.dataflow('d', task='f', inputs=['outputs/c/y'], output='y')\n"))
    r = e3("build", "pkg")
    assert r.code == 2 and r.out == "" and "more problem" not in r.err
    lines = r.err.strip().splitlines()
    assert all(x.startswith("e3: error: ") for x in lines), lines
    assert [x[len("e3: error: "):].split(";")[0] for x in lines] == [
        "dataflow 'a' uses unknown task 'g'",
        "dataflow 'b' reads 'inputs/z', which nothing provides",
        "dataflow cycle c -> d -> c ('d' reads outputs/c/y, 'c' reads outputs/d/y)"]


def test_remove_refuses_a_deployed_version_naming_its_workspaces_unless_forced(repo):
    e3 = repo
    for v in ("0.1.0", "0.2.0"):
        assert e3("build", write_pkg(e3.cwd / f"src-{v}", "demo", v), "-o", "out").code == 0
        assert e3(*e3.repo, "add", f"out/demo-{v}.zip").code == 0
    assert e3(*e3.repo, "checkout", "demo@0.1.0").code == 0
    assert e3(*e3.repo, "workspace", "create", "dev").code == 0
    assert e3(*e3.repo, "workspace", "deploy", "dev", "demo@0.1.0").code == 0
    r = e3(*e3.repo, "remove", "demo@0.1.0")
    assert r.code == 2 and r.out == "" and r.err.strip().splitlines() == [
        "e3: error: demo@0.1.0 is deployed in workspaces 'dev' and 'main'; deploy another "
        "version there first, or pass --force to remove it anyway"]
    r = e3(*e3.repo, "remove", "demo")  # every version: 0.1.0 is among them
    assert r.code == 2 and "demo@0.1.0 is deployed in workspaces" in r.err
    assert len(e3(*e3.repo, "--json", "packages").json) == 2
    assert e3(*e3.repo, "--json", "remove", "demo@0.2.0").json == {"removed": ["demo@0.2.0"]}
    r = e3(*e3.repo, "--json", "remove", "demo@0.1.0", "--force")
    assert r.code == 0 and r.json == {"removed": ["demo@0.1.0"]}


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
    assert r.code == 2 and "path-traversal entry name '../../evil.txt'" in r.err
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


# -- hostile bundles: refused whole at add, exit 2, one line, nothing written -----------------
def store_files(proj: Path) -> list[str]:
    """Every file under .e3/objects/ (staging directories included)."""
    return sorted(str(p.relative_to(proj)) for p in (proj / ".e3" / "objects").rglob("*"))


@pytest.fixture
def built(repo):
    """A project `proj/`, a real bundle `out/forecast-0.1.0.zip` and a victim file beside the
    project that no command may touch."""
    e3 = repo
    assert e3("build", str(FORECAST), "-o", "out").code == 0
    (e3.cwd / "victim.txt").write_text("precious\n")
    e3.zip = e3.cwd / "out" / "forecast-0.1.0.zip"
    e3.proj = e3.cwd / "proj"
    return e3


def refused(e3, zip_path, needle: str):
    """`e3 add zip_path` exits 2 with one line containing `needle`; no package, no object."""
    before = store_files(e3.proj)
    r = e3(*e3.repo, "add", str(zip_path))
    assert r.code == 2, r
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err, r
    assert needle in r.err, r
    assert store_files(e3.proj) == before
    assert e3(*e3.repo, "--json", "packages").json == []
    assert (e3.cwd / "victim.txt").read_text() == "precious\n"
    return r


def test_add_refuses_a_dataset_entry_that_climbs_out_of_the_project(built):
    e3 = built
    z = forge(e3.zip, e3.cwd / "x.zip",
              lambda f: f.put_dataset(["inputs", "../../victim.txt"], b"pwned\n"))
    r = refused(e3, z, "bundle x.zip: dataset tree entry '../../victim.txt' is not a valid name "
                       "(no '..' segments); rebuild the bundle with 'e3 build'")
    assert r.err.startswith("e3: error: bundle x.zip:")
    for args in (("checkout", "forecast"), ("checkout", "--force", "forecast")):
        assert e3(*e3.repo, *args).code == 2
    assert (e3.cwd / "victim.txt").read_text() == "precious\n"


def test_add_refuses_nested_dot_dot_entries(built):
    e3 = built
    z = forge(e3.zip, e3.cwd / "x.zip",
              lambda f: f.put_dataset(["inputs", "..", "..", "victim.txt"], b"pwned\n"))
    refused(e3, z, "dataset tree entry '..' is not a valid name (no '..' segments)")


def test_add_refuses_a_dataflow_named_to_climb_out(built):
    e3 = built

    def change(f):
        f.pkg["dataflows"]["../../../X"] = dict(f.pkg["dataflows"]["clean"])
    z = forge(e3.zip, e3.cwd / "x.zip", change)
    refused(e3, z, "dataflow name '../../../X' is not a valid name")
    assert not (e3.cwd / "X").exists()


def _set(key, value):
    def change(f):
        f.pkg[key] = value
    return change


def _dataflow(key, value):
    def change(f):
        f.pkg["dataflows"]["clean"][key] = value
    return change


def _rename_task(new):
    def change(f):
        f.pkg["tasks"][new] = f.pkg["tasks"].pop("clean")
        f.pkg["dataflows"]["clean"]["task"] = new
    return change


@pytest.mark.parametrize("change,needle", [
    (lambda f: f.put_entry("modules", ["../steps.py"], f.blob(b"x = 1\n")),
     "module tree entry '../steps.py' is not a valid name (no '..' segments)"),
    (lambda f: f.put_dataset(["inputs", "/etc/passwd"], b"x"),
     "dataset tree entry '/etc/passwd' is not a valid name (no empty segments)"),
    (lambda f: f.put_dataset(["inputs", "a\x00b"], b"x"),
     "dataset tree entry 'a\\x00b' is not a valid name (no control or non-printable"),
    (lambda f: f.put_dataset(["inputs", "a\nb"], b"x"),
     "dataset tree entry 'a\\nb' is not a valid name"),
    (lambda f: f.put_dataset(["inputs", "x" * 300], b"x"),
     "is not a valid name (a segment is 300 bytes, at most 255 are allowed)"),
    (lambda f: [f.put_dataset(["inputs"] + ["d"] * 600, b"x")],
     "bytes, at most 1024 are allowed"),
    (_rename_task("../t"), "task name '../t' is not a valid name"),
    (_set("dependencies", {"../lib": "^1.0"}), "dependency name '../lib' is not a valid name"),
    (_dataflow("inputs", ["inputs/../../etc"]),
     "dataflow 'clean' input 'inputs/../../etc' is not a valid dataset path (no '..' segments)"),
    (_dataflow("output", "../../../../x"), "dataflow 'clean' output '../../../../x'"),
    (_dataflow("leases", [["/db", "write"]]),
     "dataflow 'clean' lease path '/db' is not a valid dataset path (no absolute paths)"),
])
def test_add_refuses_a_bad_name_anywhere_in_a_bundle(built, change, needle):
    e3 = built
    refused(e3, forge(e3.zip, e3.cwd / "x.zip", change), needle)


def test_add_refuses_a_bad_package_name_or_version_from_the_package_object(built):
    e3 = built
    for key, value, needle in (("name", "../evil", "invalid package name '../evil'"),
                               ("version", "1.0.0\n", "invalid version '1.0.0\\n'")):
        refused(e3, forge(e3.zip, e3.cwd / "x.zip", _set(key, value)), needle)


def test_add_refuses_unreferenced_objects_without_staging_them(built):
    e3 = built
    z = unreferenced_objects_bundle(e3.zip, e3.cwd / "x.zip", 64)
    refused(e3, z, "is not reached from the package (nor are 63 more)")
    assert list((e3.proj / ".e3" / "objects" / "tmp").glob("import-*")) == []


def test_add_refuses_a_blob_that_expands_past_its_declared_size(built):
    e3 = built

    def change(f):
        f.put_dataset(["inputs", "big"], b"x")
        h = next(h for h, d in f.objects.items() if d == b"x")
        big = b"y" * 5000
        f.objects.pop(h)
        f.extra.append((f"objects/{h}", big))  # the entry lies: 5000 bytes under a 1-byte name
    refused(e3, forge(e3.zip, e3.cwd / "x.zip", change), "its tree says 1")


@pytest.mark.parametrize("where", ["manifest", "package object", "tree"])
def test_add_refuses_deeply_nested_json_without_an_internal_error(built, where):
    e3 = built
    z = e3.cwd / "x.zip"
    deep = deep_json(30_000)  # far past the recursion limit, within the manifest's 64 KiB
    if where == "manifest":
        rewrite_zip(e3.zip, z, lambda n, d: (d[:-1] + b',"x":' + deep.encode() + b"}")
                    if n == "e3package.json" else d)
    elif where == "package object":
        forge(e3.zip, z, lambda f: f.pkg.__setitem__("x", json.loads(deep_json(500))))
    else:
        forge(e3.zip, z, lambda f: f.pkg.__setitem__("datasets", {"kind": "tree", "hash": f.put(
            b'{"e3":"tree","entries":{"x":' + deep.encode() + b"}}")}))
    r = refused(e3, z, "nested too deeply")
    assert "internal error" not in r.err


def test_every_kind_of_bad_bundle_exits_2_with_one_line_and_writes_nothing(built):
    e3 = built
    good = e3.zip.read_bytes()
    with zipfile.ZipFile(e3.zip) as zf:
        man = json.loads(zf.read("e3package.json"))
        names = zf.namelist()
    blob = next(n for n in names if n.startswith("objects/") and n[8:] != man["hash"])

    def zipped(entries):
        def make(p):
            with zipfile.ZipFile(p, "w") as zf:
                for n, d in entries:
                    zf.writestr(n, d)
        return make

    def patched(change):
        return lambda p: rewrite_zip(e3.zip, p, change)

    def forged(change):
        return lambda p: forge(e3.zip, p, change)

    manifest = json.dumps(man).encode()
    kinds = {
        "not a zip": lambda p: p.write_bytes(b"hello"),
        "truncated zip": lambda p: p.write_bytes(good[: len(good) // 2]),
        "absolute entry": zipped([("e3package.json", manifest), ("/etc/x", b"x")]),
        "traversal entry": zipped([("e3package.json", manifest), ("../x", b"x")]),
        "backslash entry": zipped([("e3package.json", manifest), ("objects\\x", b"x")]),
        "directory entry": zipped([("e3package.json", manifest), ("objects/", b"")]),
        "unexpected entry": zipped([("e3package.json", manifest), ("README", b"x")]),
        "no manifest": patched(lambda n, d: None if n == "e3package.json" else d),
        "manifest not JSON": patched(lambda n, d: b"{" if n == "e3package.json" else d),
        "manifest wrong format": patched(lambda n, d: b'{"format":9}' if n == "e3package.json"
                                         else d),
        "manifest bad hash": patched(lambda n, d: d.replace(man["hash"].encode(), b"zz")
                                     if n == "e3package.json" else d),
        "no package object": patched(lambda n, d: None if n.endswith(man["hash"]) else d),
        "object does not match its hash": patched(lambda n, d: d[:-1] + b"!" if n == blob
                                                  else d),
        "package object not JSON": lambda p: _swap_pkg(e3.zip, p, b"{"),
        "not a package object": lambda p: _swap_pkg(e3.zip, p, b'{"e3":"tree"}'),
        "manifest disagrees": lambda p: Forge(e3.zip).write(p, version="9.9.9"),
        "missing object": patched(lambda n, d: None if n == blob else d),
        "unreached object": forged(lambda f: f.put(b"stray")),
        "tree that is not a tree": forged(lambda f: f.pkg.__setitem__(
            "modules", {"kind": "tree", "hash": f.put(b'{"e3":"blob"}')})),
        "entry of unknown kind": forged(lambda f: f.put_entry("datasets", ["inputs", "x"], {
            "kind": "link", "hash": f.put(b"x")})),
        "bad name": forged(lambda f: f.put_dataset(["inputs", ".."], b"x")),
    }
    for kind, make in kinds.items():
        z = e3.cwd / "bad.zip"
        make(z)
        before = store_files(e3.proj)
        r = e3(*e3.repo, "add", str(z))
        assert r.code == 2, (kind, r)
        assert len(r.err.strip().splitlines()) == 1 and "internal error" not in r.err, (kind, r)
        assert "bad.zip" in r.err, (kind, r)
        assert store_files(e3.proj) == before, kind
        assert e3(*e3.repo, "--json", "packages").json == [], kind


def _swap_pkg(src: Path, dest: Path, data: bytes) -> Path:
    """`src` with its package object replaced by `data` (renamed to its hash, manifest too)."""
    with zipfile.ZipFile(src) as zf:
        man = json.loads(zf.read("e3package.json"))
    h = hash_bytes(data)

    def change(n, d):
        if n == "e3package.json":
            return json.dumps(dict(man, hash=h)).encode()
        return d
    rewrite_zip(src, dest, change)
    with zipfile.ZipFile(dest) as zf:
        entries = [(n, zf.read(n)) for n in zf.namelist() if not n.endswith(man["hash"])]
    with zipfile.ZipFile(dest, "w") as zf:
        for n, d in entries + [(f"objects/{h}", data)]:
            zf.writestr(n, d)
    return dest


def test_a_real_bundle_still_adds_checks_out_and_runs(built):
    e3 = built
    assert e3(*e3.repo, "add", str(e3.zip)).code == 0
    assert e3(*e3.repo, "checkout", "forecast").code == 0
    r = e3(*e3.repo, "--json", "go")
    assert r.code == 0 and r.json["status"] == "ok", r
