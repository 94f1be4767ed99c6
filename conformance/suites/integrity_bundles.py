"""Integrity suite: bundles and names (gathered by test_integrity.py) — a hostile bundle is
refused whole at `e3 add` (exit 2, one line naming the entry, nothing staged) and nothing is
ever written outside the project; one name rule for every command.

Hostile bundles are forged from a real `e3 build` bundle with every hash rebuilt, so each
object hashes to its name; the system is driven through the `e3` command only."""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from e3logic import EXAMPLES_DIR
from tests.bundle_forge import Forge, deep_json, forge, rewrite_zip, unreferenced_objects_bundle
from tests.helpers import run_e3


class Project:
    """A temp dir holding `out/forecast-0.1.0.zip`, a project `proj/` and `victim.txt` beside
    it that no command may touch."""

    def __init__(self, base: Path):
        self.base = base
        self.root = base / "proj"
        assert run_e3("build", EXAMPLES_DIR / "forecast", "-o", base / "out").code == 0
        assert run_e3("init", self.root).code == 0
        self.zip = base / "out" / "forecast-0.1.0.zip"
        self.victim = base / "victim.txt"
        self.victim.write_text("precious\n")

    def __call__(self, *args):
        return run_e3(*args, cwd=self.root)

    def store(self) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in (self.root / ".e3").rglob("*")
                      if p.relative_to(self.root / ".e3").parts[0] in ("objects", "packages"))

    def refuses(self, bundle: Path, needle: str):
        """`e3 add bundle`: exit 2, one stderr line naming the culprit, nothing staged or
        installed, the victim untouched."""
        before = self.store()
        r = self("add", bundle)
        assert r.code == 2, r
        assert len(r.err.strip().splitlines()) == 1, r
        assert "internal error" not in r.err and "Traceback" not in r.err, r
        assert needle in r.err, r
        assert self.store() == before
        assert self("--json", "packages").json == []
        assert self.victim.read_text() == "precious\n"
        return r


@pytest.fixture
def project(tmp_path):
    return Project(tmp_path)


def test_bundles_a_dataset_entry_climbing_out_is_refused_and_the_victim_survives_checkout(
        project):
    bad = forge(project.zip, project.base / "x.zip",
                lambda f: f.put_dataset(["inputs", "../../victim.txt"], b"pwned\n"))
    r = project.refuses(bad, "bundle x.zip: dataset tree entry '../../victim.txt' is not a "
                             "valid name (no '..' segments); rebuild the bundle with 'e3 build'")
    assert r.err.startswith("e3: error: ")
    for args in (("checkout", "forecast"), ("checkout", "--force", "forecast")):
        assert project(*args).code == 2
        assert project.victim.read_text() == "precious\n"
    # the real bundle still installs; checkout and checkout --force leave the victim alone
    assert project("add", project.zip).code == 0
    assert project("checkout", "forecast").code == 0
    assert project("checkout", "--force", "forecast").code == 0
    assert project.victim.read_text() == "precious\n"


def test_bundles_nested_dot_dot_entries_are_refused(project):
    bad = forge(project.zip, project.base / "x.zip",
                lambda f: f.put_dataset(["inputs", "..", "..", "victim.txt"], b"pwned\n"))
    project.refuses(bad, "dataset tree entry '..' is not a valid name (no '..' segments)")


def test_bundles_a_module_entry_climbing_out_is_refused(project):
    bad = forge(project.zip, project.base / "x.zip",
                lambda f: f.put_entry("modules", ["../../victim.txt"], f.blob(b"pwned\n")))
    project.refuses(bad, "module tree entry '../../victim.txt' is not a valid name")


def test_bundles_a_dataflow_named_to_climb_out_is_refused_and_go_writes_nothing_outside(
        project):
    def change(f):
        f.pkg["dataflows"]["../../../X"] = dict(f.pkg["dataflows"]["clean"])
    bad = forge(project.zip, project.base / "x.zip", change)
    project.refuses(bad, "dataflow name '../../../X' is not a valid name")
    assert project("add", project.zip).code == 0 and project("checkout", "forecast").code == 0
    for _ in range(2):  # a cold run, then cache hits
        assert project("go").code == 0
    assert sorted(p.name for p in project.base.iterdir()) == ["out", "proj", "victim.txt",
                                                              "x.zip"]


@pytest.mark.parametrize("change,needle", [
    (lambda f: f.put_dataset(["inputs", "a\x00b"], b"x"), "no control or non-printable"),
    (lambda f: f.put_dataset(["inputs", "x" * 300], b"x"), "a segment is 300 bytes"),
    (lambda f: f.put_dataset(["inputs", "/etc/passwd"], b"x"), "'/etc/passwd' is not a valid"),
    (lambda f: f.pkg["tasks"].__setitem__("../t", f.pkg["tasks"]["clean"]), "task name '../t'"),
    (lambda f: f.pkg.__setitem__("version", "1.0.0\n"), "invalid version"),
    (lambda f: f.pkg.__setitem__("dependencies", {"../x": "^1"}), "dependency name '../x'"),
    (lambda f: f.pkg["dataflows"]["clean"].__setitem__("inputs", ["../../etc/passwd"]),
     "input '../../etc/passwd' is not a valid dataset path"),
])
def test_bundles_every_name_from_a_bundle_passes_the_authoring_rules(project, change, needle):
    project.refuses(forge(project.zip, project.base / "x.zip", change), needle)


def test_bundles_unreferenced_objects_are_refused_before_anything_is_staged(project):
    bad = unreferenced_objects_bundle(project.zip, project.base / "x.zip", 1024)  # 1 GiB inside
    assert bad.stat().st_size < 2 << 20
    project.refuses(bad, "is not reached from the package (nor are 1023 more)")
    tmp = project.root / ".e3" / "objects" / "tmp"
    assert not tmp.exists() or list(tmp.glob("import-*")) == []


def test_bundles_an_object_larger_than_declared_is_refused(project):
    def change(f):
        f.put_dataset(["inputs", "small"], b"x")
        h = next(h for h, d in f.objects.items() if d == b"x")
        f.objects.pop(h)
        f.extra.append((f"objects/{h}", b"y" * 100_000))
    project.refuses(forge(project.zip, project.base / "x.zip", change), "its tree says 1")


@pytest.mark.parametrize("where", ["manifest", "package object", "tree"])
def test_bundles_deeply_nested_json_is_refused_not_a_recursion_error(project, where):
    z = project.base / "x.zip"
    deep = deep_json(30_000)
    if where == "manifest":
        rewrite_zip(project.zip, z, lambda n, d: d[:-1] + b',"x":' + deep.encode() + b"}"
                    if n == "e3package.json" else d)
    elif where == "package object":
        forge(project.zip, z, lambda f: f.pkg.__setitem__("x", json.loads(deep_json(300))))
    else:
        forge(project.zip, z, lambda f: f.pkg.__setitem__("datasets", {
            "kind": "tree", "hash": f.put(b'{"e3":"tree","entries":{"x":' + deep.encode()
                                          + b"}}")}))
    r = project.refuses(z, "nested too deeply")
    assert "RecursionError" not in r.err


def test_bundles_malformed_bundles_exit_2_with_one_line(project):
    with zipfile.ZipFile(project.zip) as zf:
        man = json.loads(zf.read("e3package.json"))
    blob = next(n for n in zipfile.ZipFile(project.zip).namelist()
                if n.startswith("objects/") and not n.endswith(man["hash"]))
    kinds = {
        "not a zip": lambda p: p.write_bytes(b"hello"),
        "traversal": lambda p: _with_entry(project.zip, p, "../x"),
        "extra entry": lambda p: _with_entry(project.zip, p, "README"),
        "no manifest": lambda p: rewrite_zip(project.zip, p,
                                             lambda n, d: None if n == "e3package.json" else d),
        "bad manifest": lambda p: rewrite_zip(project.zip, p, lambda n, d: b"[]"
                                              if n == "e3package.json" else d),
        "tampered object": lambda p: rewrite_zip(project.zip, p, lambda n, d: d[:-1] + b"!"
                                                 if n == blob else d),
        "missing object": lambda p: rewrite_zip(project.zip, p,
                                                lambda n, d: None if n == blob else d),
        "manifest disagrees": lambda p: Forge(project.zip).write(p, version="9.9.9"),
        "unknown entry kind": lambda p: forge(project.zip, p, lambda f: f.put_entry(
            "datasets", ["inputs", "x"], {"kind": "link", "hash": f.put(b"x")})),
    }
    for kind, make in kinds.items():
        z = project.base / "bad.zip"
        if z.exists():
            z.unlink()
        make(z)
        project.refuses(z, "bad.zip")


def _with_entry(src: Path, dest: Path, name: str) -> None:
    rewrite_zip(src, dest, lambda n, d: d)
    with zipfile.ZipFile(dest, "a") as zf:
        zf.writestr(name, b"x")


# -- names: one rule for every command ---------------------------------------------------------
@pytest.fixture
def checked_out(project):
    assert project("add", project.zip).code == 0
    assert project("checkout", "forecast").code == 0
    return project


def test_bundles_an_undecodable_file_name_is_reported_and_skipped(checked_out):
    p = checked_out
    with open(os.path.join(os.fsencode(p.root), b"inputs", b"bad\xffname"), "wb") as f:
        f.write(b"x")
    for args in (("status",), ("go",), ("commit", "--patch", "-m", "m")):
        r = p(*args)
        assert r.code == 0, (args, r)
        assert "e3: warning: skipping file 'inputs/bad\\xffname'" in r.err, (args, r)
        assert "UnicodeEncodeError" not in r.err


def test_bundles_names_with_spaces_and_umlauts_work_everywhere(checked_out):
    p = checked_out
    (p.root / "inputs" / "a b").write_bytes(b"1")
    (p.root / "inputs" / "ü").write_bytes(b"2")
    assert p("--json", "status").json["added"] == ["inputs/a b", "inputs/ü"]
    assert p("commit", "--minor", "-m", "names").code == 0
    assert p("get", "inputs/a b").out == "1" and p("get", "inputs/ü").out == "2"
    (p.root / "inputs" / "ü").write_bytes(b"3")
    assert p("reset", "inputs/ü").code == 0
    assert (p.root / "inputs" / "ü").read_bytes() == b"2"
    assert [d["path"] for d in p("--json", "ls", "inputs/ü").json] == ["inputs/ü"]


@pytest.mark.parametrize("args,needle", [
    (("set", "inputs/" + "x" * 300, "FILE"), "a segment is 300 bytes, at most 255"),
    (("set", "inputs/sales/sub", "FILE"), "'inputs/sales' is a dataset, not a folder"),
    (("set", "inputs", "FILE"), "it is a folder of datasets"),
    (("get", "inputs/../../victim.txt"), "no '..' segments"),
])
def test_bundles_long_names_and_dataset_folder_conflicts_are_one_line_errors(
        checked_out, args, needle):
    p = checked_out
    (p.base / "f").write_bytes(b"x")
    args = [str(p.base / "f") if a == "FILE" else a for a in args]
    r = p(*args)
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r
    assert needle in r.err and "internal error" not in r.err, r
    assert (p.root / "inputs" / "sales").is_file()
    assert p("--json", "status").json["added"] == []
