"""End to end: one name rule (docs/packages.md, names) for every command — authoring, the
working copy, ls/get/set/reset/diff — through the real `e3` command."""
from __future__ import annotations

import os

import pytest

from e3logic import EXAMPLES_DIR


@pytest.fixture
def proj(e3):
    """A project with forecast checked out; `proj(*args)` runs e3 inside it."""
    assert e3("build", str(EXAMPLES_DIR / "forecast"), "-o", "out").code == 0
    assert e3("init", "proj").code == 0
    root = e3.cwd / "proj"

    def run(*args, **kw):
        kw.setdefault("cwd", root)
        return e3(*args, **kw)

    assert run("add", str(e3.cwd / "out" / "forecast-0.1.0.zip")).code == 0
    assert run("checkout", "forecast").code == 0
    run.root = root
    run.cwd = e3.cwd
    return run


def one_line_error(r, needle):
    assert r.code == 2, r
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err, r
    assert "internal error" not in r.err and needle in r.err, r


def test_an_undecodable_file_name_is_skipped_with_a_warning_by_status_go_and_commit(proj):
    bad = os.path.join(os.fsencode(proj.root), b"inputs", b"bad\xffname")
    with open(bad, "wb") as f:
        f.write(b"x")
    warning = ("e3: warning: skipping file 'inputs/bad\\xffname' in the working copy: its name "
               "is not a dataset name (not valid UTF-8); rename it to track it")
    st = proj("--json", "status")
    assert st.code == 0, st
    assert st.json["added"] == [] and warning in st.err.splitlines()
    go = proj("--json", "go")
    assert go.code == 0 and go.json["status"] == "ok", go
    assert warning in go.err.splitlines()
    c = proj("commit", "--patch", "-m", "nothing new")
    assert c.code == 0 and warning in c.err.splitlines(), c
    assert open(bad, "rb").read() == b"x"  # left alone


def test_names_with_spaces_and_non_ascii_letters_work_in_every_command(proj):
    (proj.root / "inputs" / "with space").write_bytes(b"1")
    (proj.root / "inputs" / "müller").mkdir()
    (proj.root / "inputs" / "müller" / "straße").write_bytes(b"2")
    st = proj("--json", "status").json
    assert st["added"] == ["inputs/müller/straße", "inputs/with space"]
    assert [d["path"] for d in proj("--json", "diff").json] == ["inputs/müller/straße",
                                                               "inputs/with space"]
    assert proj("commit", "--minor", "-m", "unicode").code == 0
    listed = [d["path"] for d in proj("--json", "ls", "inputs/müller").json]
    assert listed == ["inputs/müller/straße"]
    assert proj("get", "inputs/with space").out == "1"
    r = proj("get", "inputs/müller/straße", "-o", str(proj.cwd / "got"))
    assert r.code == 0 and (proj.cwd / "got").read_bytes() == b"2"
    (proj.cwd / "new").write_bytes(b"3")
    r = proj("--json", "set", "inputs/with space", str(proj.cwd / "new"))
    assert r.code == 0 and r.json["path"] == "inputs/with space", r
    assert (proj.root / "inputs" / "with space").read_bytes() == b"3"
    r = proj("reset", "inputs/with space")
    assert r.code == 0, r
    assert (proj.root / "inputs" / "with space").read_bytes() == b"1"
    assert proj("--json", "status").json["modified"] == []


def test_authoring_accepts_the_same_names_as_the_working_copy(e3):
    d = e3.cwd / "pkg"
    d.mkdir()
    (d / "e3pkg.py").write_text(
        "from e3logic import sdk\npackage = sdk.package('names', '0.1.0')\n"
        "package.dataset('inputs/with space', value=1)\n"
        "package.dataset('inputs/müller/straße', value=2)\n")
    assert e3("build", "pkg", "-o", "out").code == 0
    assert e3("init", "proj").code == 0
    assert e3("add", str(e3.cwd / "out/names-0.1.0.zip"), cwd=e3.cwd / "proj").code == 0
    assert e3("checkout", "names", cwd=e3.cwd / "proj").code == 0
    assert (e3.cwd / "proj" / "inputs" / "müller" / "straße").read_bytes() == b"2"


@pytest.mark.parametrize("path,needle", [
    ("inputs/" + "x" * 300, "a segment is 300 bytes, at most 255 are allowed"),
    ("/".join(["inputs"] + ["d" * 200] * 6), "at most 1024 are allowed"),
    ("inputs/a\tb", "no control or non-printable characters (U+0009)"),
    ("inputs/../x", "no '..' segments"),
])
def test_refused_names_are_one_line_errors_for_set_get_ls_and_reset(proj, path, needle):
    (proj.cwd / "f").write_bytes(b"x")
    for args in (("set", path, str(proj.cwd / "f")), ("get", path), ("ls", path),
                 ("reset", path)):
        one_line_error(proj(*args), needle)
    assert proj("--json", "status").json["added"] == []


def test_a_long_dataset_name_is_a_build_error(e3):
    d = e3.cwd / "pkg"
    d.mkdir()
    (d / "e3pkg.py").write_text("from e3logic import sdk\npackage = sdk.package('n', '0.1.0')\n"
                                f"package.dataset('inputs/{'x' * 300}', value=1)\n")
    one_line_error(e3("build", "pkg"), "a segment is 300 bytes")


def test_setting_a_dataset_below_a_dataset_is_a_one_line_error_that_changes_nothing(proj):
    (proj.cwd / "f").write_bytes(b"x")
    root = proj("--json", "status").json["root"]
    one_line_error(proj("set", "inputs/sales/sub", str(proj.cwd / "f")),
                   "cannot set inputs/sales/sub: 'inputs/sales' is a dataset, not a folder")
    assert (proj.root / "inputs" / "sales").is_file()
    st = proj("--json", "status").json
    assert st["root"] == root and st["added"] == st["modified"] == st["deleted"] == []


def test_setting_a_folder_of_datasets_as_one_dataset_is_a_one_line_error(proj):
    (proj.cwd / "f").write_bytes(b"x")
    one_line_error(proj("set", "inputs", str(proj.cwd / "f")),
                   "cannot set inputs: it is a folder of datasets")
    assert (proj.root / "inputs" / "sales").is_file()
