"""Conformance suite `repo`: the object store, trees, index.db, gc and fsck, observed through the
public API and the `e3` command on a real filesystem (issue 2, items 3, 4, 5, 8)."""
from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from e3logic.api import Repo
from e3logic.core.hashing import hash_bytes, hash_file
from e3logic.repo import index as index_mod
from e3logic.repo.objects import ObjectStore
from tests.helpers import e3_env, run_e3
from tests.repo_helpers import kill_when, spawn_e3, write_package_dir


def e3(cwd, *args, **kw):
    r = run_e3(*args, cwd=cwd, **kw)
    return r


def ok(r):
    assert r.code == 0, r
    return r


def store_state(root: Path) -> dict:
    """Everything under .e3/ except index.db, by relative path -> content hash."""
    e = root / ".e3"
    return {str(p.relative_to(e)): (hash_file(p) if p.is_file() else "dir")
            for p in sorted(e.rglob("*")) if not p.name.startswith("index.db")}


@pytest.fixture
def project(tmp_path):
    """A project with package demo@0.1.0 (three small datasets) added and checked out."""
    src = write_package_dir(tmp_path / "src", "demo", "0.1.0",
                            {"inputs/a": b"alpha\n", "inputs/deep/x/y": b"deep\n",
                             "inputs/n": 3})
    ok(run_e3("build", src, "-o", tmp_path / "dist", cwd=tmp_path))
    p = tmp_path / "proj"
    ok(run_e3("init", p, cwd=tmp_path))
    ok(e3(p, "add", tmp_path / "dist" / "demo-0.1.0.zip"))
    ok(e3(p, "checkout", "demo"))
    return p


# -- objects -------------------------------------------------------------------------------------
def _write_same(root, data, barrier, q):
    s = ObjectStore(root)
    barrier.wait()
    q.put(s.write(data))


def test_concurrent_writers_of_the_same_object_both_succeed_and_leave_one_object(tmp_path):
    data = os.urandom(8 << 20)
    ctx = mp.get_context("fork")
    barrier, q = ctx.Barrier(2), ctx.Queue()
    ps = [ctx.Process(target=_write_same, args=(tmp_path / "o", data, barrier, q))
          for _ in range(2)]
    for p in ps:
        p.start()
    got = [q.get(timeout=60) for _ in ps]
    for p in ps:
        p.join(30)
    assert [p.exitcode for p in ps] == [0, 0] and got == [hash_bytes(data)] * 2
    s = ObjectStore(tmp_path / "o")
    assert list(s) == [hash_bytes(data)] and s.temp_files() == [] and s.verify(got[0])


def test_a_leftover_temp_file_is_never_an_object_and_gc_removes_it_past_min_age(project):
    tmp = project / ".e3/objects/tmp/w-killed.part"
    tmp.write_bytes(b"half of an object")
    res = ok(e3(project, "--json", "fsck")).json
    assert res["ok"] is True and hash_bytes(b"half of an object") not in str(res)
    assert ok(e3(project, "--json", "gc")).json["deleted"] == 0 and tmp.exists()  # young
    t = time.time() - 3600
    os.utime(tmp, (t, t))
    ok(e3(project, "gc"))
    assert not tmp.exists()


def test_setting_and_getting_a_large_dataset_streams_it_without_loading_it_in_memory(project, tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(192 << 20)
        for off in range(0, 192 << 20, 16 << 20):
            f.seek(off)
            f.write(os.urandom(1 << 12))
    code = textwrap.dedent(f"""
        import resource, sys
        from e3logic.cli.main import main
        from e3logic.core.hashing import hash_file
        hash_file({str(big)!r})  # warm up: imports and the hashing thread pool
        vm = [l for l in open("/proc/self/status") if l.startswith("VmData")][0]
        base = int(vm.split()[1]) * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (base + (96 << 20), resource.RLIM_INFINITY))
        main(sys.argv[1:])
    """)
    for args in (["--json", "set", "inputs/big", str(big)],
                 ["get", "inputs/big", "-o", str(tmp_path / "back.bin")]):
        r = subprocess.run([sys.executable, "-c", code, *args], cwd=project, env=e3_env(),
                           capture_output=True, text=True)
        assert r.returncode == 0, (args, r.stderr)
    entry = ok(e3(project, "--json", "ls", "inputs/big")).json[0]
    assert entry["hash"] == hash_file(big) and entry["size"] == 192 << 20
    assert hash_file(tmp_path / "back.bin") == entry["hash"]


def test_setting_one_dataset_writes_only_the_trees_on_its_path(project, tmp_path):
    before = set(Repo.open(str(project)).r.objects)
    (tmp_path / "v").write_bytes(b"new deep value\n")
    ok(e3(project, "set", "inputs/deep/x/y", tmp_path / "v"))
    new = set(Repo.open(str(project)).r.objects) - before
    # one blob + the trees root, inputs, inputs/deep, inputs/deep/x
    assert len(new) == 5 and hash_bytes(b"new deep value\n") in new


# -- index.db ------------------------------------------------------------------------------------
def test_index_db_is_wal_and_at_the_current_schema_version(project):
    c = sqlite3.connect(project / ".e3/index.db")
    assert c.execute("PRAGMA user_version").fetchone()[0] == len(index_mod.MIGRATIONS)
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    names = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"memo", "executions", "episodes", "history", "runs", "receipts", "provenance",
            "facts", "wc_stat", "meta"} <= names


def test_an_appended_migration_runs_once_on_the_next_open(project, monkeypatch):
    def add_table(db):
        db.execute("CREATE TABLE conformance_probe (x)")
        db.execute("INSERT INTO conformance_probe VALUES (1)")

    monkeypatch.setattr(index_mod, "MIGRATIONS", index_mod.MIGRATIONS + [add_table])
    for _ in range(2):
        Repo.open(str(project)).r.index.close()
    c = sqlite3.connect(project / ".e3/index.db")
    assert c.execute("SELECT count(*) FROM conformance_probe").fetchone()[0] == 1
    assert c.execute("PRAGMA user_version").fetchone()[0] == len(index_mod.MIGRATIONS)


# -- gc and fsck ---------------------------------------------------------------------------------
def test_gc_keeps_everything_reachable_and_removes_orphans_only_past_min_age(project, tmp_path):
    (tmp_path / "v2").write_bytes(b"second\n")
    ok(e3(project, "set", "inputs/a", tmp_path / "v2"))        # workspace root only
    ok(e3(project, "commit", "--patch", "-m", "second"))       # 0.1.1, parent 0.1.0
    ok(e3(project, "set", "inputs/a", tmp_path / "v2"))
    repo = Repo.open(str(project)).r
    orphans = [repo.objects.write(f"orphan {i}".encode()) for i in range(4)]
    dry = ok(e3(project, "--json", "gc", "--dry-run")).json
    assert dry["deleted"] == 0                                 # all young
    old = time.time() - 3600
    for p in (project / ".e3/objects").rglob("*"):
        if p.is_file():
            os.utime(p, (old, old))
    dry = ok(e3(project, "--json", "gc", "--dry-run")).json
    before = set(repo.objects)
    assert set(Repo.open(str(project)).r.objects) == before    # a dry run deletes nothing
    real = ok(e3(project, "--json", "gc")).json
    assert (dry["deleted"], dry["bytes"], dry["retained"]) == \
        (real["deleted"], real["bytes"], real["retained"])
    after = set(Repo.open(str(project)).r.objects)
    assert set(orphans) <= before - after and all(o not in after for o in orphans)
    assert ok(e3(project, "--json", "fsck")).json["ok"] is True
    for v in ("0.1.0", "0.1.1"):                               # history still checks out
        ok(e3(project, "checkout", f"demo@{v}", "--force"))
    assert (project / "inputs/a").read_bytes() == b"second\n"


def test_fsck_reports_corrupt_and_missing_objects_with_exit_1(project):
    repo = Repo.open(str(project)).r
    blob = next(e["hash"] for e in ok(e3(project, "--json", "ls", "inputs/a")).json)
    deep = next(e["hash"] for e in ok(e3(project, "--json", "ls", "inputs/deep")).json)
    os.chmod(repo.objects.path(blob), 0o644)
    repo.objects.path(blob).write_bytes(b"bit rot")
    os.unlink(repo.objects.path(deep))
    r = e3(project, "--json", "fsck")
    assert r.code == 1 and r.json["ok"] is False
    assert r.json["corrupt"] == [blob] and r.json["missing"] == [deep]


# -- bundles -------------------------------------------------------------------------------------
def test_export_import_export_gives_identical_bytes(project, tmp_path):
    ok(e3(project, "export", "demo@0.1.0", tmp_path / "a.zip"))
    fresh = tmp_path / "fresh"
    ok(run_e3("init", fresh, cwd=tmp_path))
    ok(e3(fresh, "add", tmp_path / "a.zip"))
    ok(e3(fresh, "export", "demo@0.1.0", tmp_path / "b.zip"))
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


@pytest.mark.parametrize("evil", ["../escape", "/abs/path", "objects/wronghash"])
def test_a_zip_with_unsafe_names_or_a_wrong_hash_is_refused_with_nothing_written(project, tmp_path, evil):
    ok(e3(project, "export", "demo@0.1.0", tmp_path / "good.zip"))
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(tmp_path / "good.zip") as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if evil == "objects/wronghash" and info.filename.startswith("objects/") and \
                    data == b"alpha\n":
                data = b"ALPHA\n"  # same name, other bytes
            zout.writestr(info.filename, data)
        if evil != "objects/wronghash":
            zout.writestr(zipfile.ZipInfo(evil), b"x")
    ok(e3(project, "remove", "demo", "--force"))  # deployed in main: --force
    ok(e3(project, "gc", "--min-age", "0"))
    before = store_state(project)
    r = e3(project, "add", bad)
    assert r.code in (1, 2) and len(r.err.strip().splitlines()) == 1
    assert store_state(project) == before
    assert not (tmp_path / "escape").exists() and not Path("/abs/path").exists()


# -- repository lifecycle ------------------------------------------------------------------------
def test_init_refuses_an_existing_repository(project):
    before = store_state(project)
    r = e3(project, "init")
    assert r.code == 2 and "already an e3 repository" in r.err
    assert store_state(project) == before


def test_a_checkout_killed_mid_sync_leaves_a_clean_repository_completed_by_the_next_command(tmp_path):
    src1 = write_package_dir(tmp_path / "s1", "many", "0.1.0", n_values=300)
    src2 = write_package_dir(tmp_path / "s2", "many", "0.2.0", n_values=300)
    p = tmp_path / "proj"
    ok(run_e3("init", p, cwd=tmp_path))
    for s in (src1, src2):
        ok(run_e3("build", s, "-o", tmp_path / "dist", cwd=tmp_path))
    for v in ("0.1.0", "0.2.0"):
        ok(e3(p, "add", tmp_path / "dist" / f"many-{v}.zip"))
    ok(e3(p, "checkout", "many@0.1.0"))
    first = p / "inputs/gen/d00000"
    old = first.read_bytes()
    proc = spawn_e3("checkout", "many@0.2.0", cwd=p)
    kill_when(proc, lambda: first.read_bytes() != old)  # killed once files started changing
    assert ok(e3(p, "--json", "fsck")).json["ok"] is True
    st = ok(e3(p, "--json", "status")).json
    assert (st["modified"], st["added"], st["deleted"]) == ([], [], [])
    assert st["version"] == "0.2.0"
    assert all(b'"0.2.0"' in f.read_bytes() for f in (p / "inputs/gen").iterdir())


# -- status against the deployed version (issue 16, item 4) ----------------------------------
HORIZON_PKG = '''
from e3logic import sdk

package = sdk.package("fc", "0.1.0")
package.task("twice", ["sh", "-c", "cat {input0} {input0} > {output}"], runtime="shell")
package.dataset("inputs/horizon", value=6)
package.dataflow("plan", task="twice", inputs=["inputs/horizon"], output="o")
'''


def test_status_after_an_edited_input_and_go_says_what_diff_and_checkout_say(tmp_path):
    """The issue's scenario: edit inputs/horizon, `go`; `status` must not say clean while `diff`
    shows the change and `checkout` refuses it. Hand-edited outputs are listed and `go` says
    it put them back."""
    from tests.flows import make_project, write_package

    p = make_project(tmp_path / "proj", write_package(tmp_path / "pkg", HORIZON_PKG), "fc")
    ok(e3(p, "go"))
    assert ok(e3(p, "status")).out.splitlines()[1:] == ["clean: nothing modified, nothing stale"]
    (p / "inputs/horizon").write_bytes(b"12")
    ok(e3(p, "go"))
    st = ok(e3(p, "--json", "status")).json
    diff = ok(e3(p, "--json", "diff")).json
    assert [e["path"] for e in diff] == ["inputs/horizon", "outputs/plan/o"]
    assert st["uncommitted"] == diff[:1] and st["modified"] == [] and st["stale"] == []
    out = ok(e3(p, "status")).out
    assert out.startswith("Package: fc@0.1.0") and "clean" not in out
    assert "Changes not yet in a package version (e3 commit):\n  M inputs/horizon" in out
    r = e3(p, "checkout", "fc@0.1.0")
    assert r.code == 2 and "uncommitted" in r.err and "inputs/horizon" in r.err
    (p / "outputs/plan/o").write_bytes(b"by hand")
    st = ok(e3(p, "--json", "status")).json
    assert st["outputs_edited"] == ["outputs/plan/o"]
    assert "Edited outputs (e3 go puts them back):\n  outputs/plan/o" in ok(e3(p, "status")).out
    res = ok(e3(p, "--json", "go")).json
    assert res["restored"] == ["outputs/plan/o"] and res["executed"] == []
    assert (p / "outputs/plan/o").read_bytes() == b"1212"
    ok(e3(p, "commit", "--patch", "-m", "horizon 12"))
    assert ok(e3(p, "status")).out.splitlines()[1:] == ["clean: nothing modified, nothing stale"]
