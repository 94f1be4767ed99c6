"""Integrity suite: metadata (gathered by test_integrity.py).

Damaged metadata — index.db, refs — and a read-only `.e3`, through the public `e3` command
only: every damage is one line naming `e3 fsck --repair` (exit 2), `fsck` reports it, `fsck
--repair` mends it (nothing deleted: quarantine, `index.db.damaged-N`), and `go` recomputes what
was lost."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from e3logic import EXAMPLES_DIR
from tests.helpers import e3_env, run_e3

_READ_COMMANDS = [("status",), ("log",), ("diff",), ("ls",), ("get", "inputs/sales"),
                 ("why", "outputs/fit/model"), ("deps", "fit"), ("impact", "inputs/sales"),
                 ("query", "installed(P)"), ("facts",), ("graph",), ("plan",),
                 ("go", "--dry-run"), ("fsck",)]


@pytest.fixture(scope="module")
def meta_ran(tmp_path_factory):
    """The forecast example built, added, checked out and run once."""
    d = tmp_path_factory.mktemp("meta") / "proj"
    d.mkdir()
    shutil.copytree(EXAMPLES_DIR / "forecast", d / "pkg")
    for args in (("init", "."), ("build", "pkg", "-o", "dist"), ("add", "dist/forecast-0.1.0.zip"),
                 ("checkout", "forecast"), ("go",)):
        r = run_e3(*args, cwd=d)
        assert r.code == 0, (args, r)
    return d


@pytest.fixture
def meta_proj(meta_ran, tmp_path):
    d = tmp_path / "proj"
    shutil.copytree(meta_ran, d)
    return d


def _e3(d, *args):
    return run_e3(*args, cwd=d)


def _one_line(r, code, *needles):
    assert r.code == code, r
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("e3: error: "), r.err
    assert "internal error" not in r.err and "Traceback" not in r.err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_a_corrupt_index_is_one_line_naming_the_repair_and_fsck_reports_it(meta_proj):
    db = meta_proj / ".e3" / "index.db"
    with open(db, "r+b") as f:
        f.write(b"garbage garbage garbage!")
    for args in (("status",), ("go",), ("why", "outputs/fit/model")):
        _one_line(_e3(meta_proj, *args), 2, "index.db is damaged", "e3 fsck --repair")
    r = _e3(meta_proj, "--json", "fsck")
    assert r.code == 1 and r.json["ok"] is False and r.json["bad_index"]


def test_repair_rebuilds_a_corrupt_index_then_fsck_is_clean_and_go_runs(meta_proj):
    db = meta_proj / ".e3" / "index.db"
    with open(db, "r+b") as f:
        f.write(b"garbage garbage garbage!")
    r = _e3(meta_proj, "--json", "fsck", "--repair")
    assert r.code == 0, r
    assert r.json["ok"] is True and r.json["repaired"]["index_rebuilt"] is True
    assert (meta_proj / ".e3" / "index.db.damaged-1").exists()
    assert _e3(meta_proj, "fsck").code == 0
    r = _e3(meta_proj, "--json", "go")
    assert r.code == 0 and r.json["status"] == "ok", r


def test_a_non_json_workspace_state_is_refused_then_restored_by_repair(meta_proj):
    state = meta_proj / ".e3" / "workspaces" / "main" / "state"
    good = json.loads(state.read_text())
    state.write_text("this is not json")
    for args in (("status",), ("ls",), ("go",)):
        _one_line(_e3(meta_proj, *args), 2, str(state), "e3 fsck --repair")
    r = _e3(meta_proj, "--json", "fsck")
    assert r.code == 1 and "workspaces/main/state" in r.json["bad_refs"]
    r = _e3(meta_proj, "--json", "fsck", "--repair")
    assert r.code == 0 and r.json["ok"] is True, r
    assert r.json["repaired"]["refs_restored"][0].startswith("workspaces/main/state")
    assert json.loads(state.read_text())["hash"] == good["hash"]  # the last run's state root
    r = _e3(meta_proj, "--json", "go")
    assert r.code == 0 and r.json["executed"] == [], r


def test_a_non_json_package_ref_is_refused_then_rebuilt_from_its_package_object(meta_proj):
    ref = meta_proj / ".e3" / "packages" / "forecast" / "0.1.0"
    good = ref.read_bytes()
    ref.write_text("{")
    _one_line(_e3(meta_proj, "packages"), 2, str(ref), "e3 fsck --repair")
    r = _e3(meta_proj, "--json", "fsck", "--repair")
    assert r.code == 0 and r.json["ok"] is True, r
    assert ref.read_bytes() == good


@pytest.mark.parametrize("hostile", ["../../../../etc/passwd", "/etc/passwd", "A" * 64, ""])
def test_a_ref_with_a_hostile_hash_is_refused_and_never_shown(meta_proj, hostile):
    state = meta_proj / ".e3" / "workspaces" / "main" / "state"
    ref = json.loads(state.read_text())
    ref["hash"] = hostile
    state.write_text(json.dumps(ref))
    for args in (("status",), ("ls",), ("get", "inputs/sales"), ("workspace", "list")):
        r = _e3(meta_proj, *args)
        _one_line(r, 2, "64 lowercase hex", "e3 fsck --repair")
        assert "root:x:" not in r.out
    r = _e3(meta_proj, "--json", "fsck", "--repair")
    assert r.code == 0 and r.json["ok"] is True, r
    assert _e3(meta_proj, "status").code == 0


def test_a_corrupt_output_is_quarantined_by_repair_then_fsck_is_clean_and_go_recomputes(meta_proj):
    r = _e3(meta_proj, "--json", "ls", "outputs/fit")
    h = r.json[0]["hash"]
    obj = meta_proj / ".e3" / "objects" / h[:2] / h[2:]
    os.chmod(obj, 0o644)
    obj.write_bytes(b"bit rot")
    (meta_proj / "outputs" / "fit" / "model").unlink()  # no good copy left anywhere
    r = _e3(meta_proj, "--json", "fsck")
    assert r.code == 1 and r.json["corrupt"] == [h]
    r = _e3(meta_proj, "--json", "fsck", "--repair")
    assert r.code == 0 and r.json["ok"] is True, r
    done = r.json["repaired"]
    assert done["quarantined"] == [h] and done["memo_dropped"] == 1
    assert (meta_proj / ".e3" / "quarantine" / h).read_bytes() == b"bit rot"
    assert _e3(meta_proj, "--json", "fsck").json["ok"] is True
    r = _e3(meta_proj, "--json", "go")
    assert r.code == 0 and r.json["executed"] == ["fit"], r
    assert _e3(meta_proj, "--json", "ls", "outputs/fit").json[0]["hash"] == h
    assert _e3(meta_proj, "--json", "fsck").json["ok"] is True


def test_a_corrupt_object_with_a_good_working_copy_file_is_restored_from_it(meta_proj):
    h = _e3(meta_proj, "--json", "ls", "outputs/fit").json[0]["hash"]
    obj = meta_proj / ".e3" / "objects" / h[:2] / h[2:]
    os.chmod(obj, 0o644)
    obj.write_bytes(b"bit rot")
    r = _e3(meta_proj, "--json", "fsck", "--repair")
    assert r.code == 0 and r.json["repaired"]["datasets_restored"] == ["main:outputs/fit/model"]
    r = _e3(meta_proj, "--json", "go")
    assert r.code == 0 and r.json["executed"] == [], r


# -- read-only ---------------------------------------------------------------------------------
def _nobody():
    import pwd

    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return None
    if os.geteuid() != 0:
        return []  # already unprivileged: chmod alone makes .e3 read-only
    if shutil.which("setpriv") is None:
        return None
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture
def meta_read_only(meta_ran):
    """A copy of the project whose .e3 is read-only, and a runner as an unprivileged user (root
    writes through any mode bits, so as root the commands run as nobody)."""
    prefix = _nobody()
    if prefix is None:
        pytest.skip("no unprivileged user to run as")
    base = Path(tempfile.mkdtemp(prefix="e3-ro-"))
    os.chmod(base, 0o755)
    d = base / "proj"
    shutil.copytree(meta_ran, d)
    subprocess.run(["chmod", "-R", "a+rX", str(d)], check=True)
    subprocess.run(["chmod", "-R", "a-w", str(d / ".e3")], check=True)
    before = _snapshot(d / ".e3")

    def call(*args):
        cmd = [*prefix, str(Path(os.sys.executable)), "-m", "e3logic", *map(str, args)]
        p = subprocess.run(cmd, cwd=d, env=e3_env({"HOME": str(base)}), capture_output=True,
                           text=True, timeout=120)
        from tests.helpers import E3Result

        return E3Result(p)

    call.dir = d
    yield call
    assert _snapshot(d / ".e3") == before  # nothing was written
    subprocess.run(["chmod", "-R", "u+w", str(base)], check=True)
    shutil.rmtree(base, ignore_errors=True)


def _snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file() and not p.name.endswith("-shm")}


@pytest.mark.parametrize("args", _READ_COMMANDS, ids=[" ".join(a) for a in _READ_COMMANDS])
def test_every_read_command_works_on_a_read_only_repository(meta_read_only, args):
    r = meta_read_only(*args)
    assert r.code == 0, r
    assert "internal error" not in r.err


@pytest.mark.parametrize("args", [("go",), ("set", "inputs/x", "e3.toml"),
                                  ("workspace", "create", "other"), ("fsck", "--repair"),
                                  ("gc",)])
def test_a_write_command_on_a_read_only_repository_is_one_line_naming_the_path(meta_read_only, args):
    _one_line(meta_read_only(*args), 2, "read-only", str(meta_read_only.dir / ".e3"))
