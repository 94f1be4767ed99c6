"""Conformance suite `workspaces`: named workspaces, the working copy, dataset reads and writes,
versions, compare-and-swap and locks, through the `e3` command and the public API (issue 2,
item 7)."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import time
from pathlib import Path

import pytest

from e3logic.api import Repo
from e3logic.core.canon import dumps
from tests.helpers import e3_env, run_e3
from tests.repo_helpers import e3_cmd, write_package_dir

V1 = {"inputs/sales": b"region,amount\nnorth,10\n", "inputs/horizon": 6,
      "inputs/cfg/thresholds": {"low": 1}, "inputs/v1_only": b"gone in 0.2.0"}
V2 = {"inputs/sales": b"region,amount\nnorth,10\nsouth,7\n", "inputs/horizon": 6,
      "inputs/cfg/thresholds": {"low": 2}, "inputs/v2_only": b"new in 0.2.0"}


def ok(r):
    assert r.code == 0, r
    return r


def as_files(datasets: dict) -> dict:
    return {p: (v if isinstance(v, bytes) else dumps(v)) for p, v in datasets.items()}


def files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "inputs").rglob("*"))
            if p.is_file()}


def age_files(root: Path):
    t = time.time() - 10
    for p in (root / "inputs").rglob("*"):
        os.utime(p, (t, t))


@pytest.fixture
def proj(tmp_path):
    dist = tmp_path / "dist"
    for v, ds in (("0.1.0", V1), ("0.2.0", V2)):
        ok(run_e3("build", write_package_dir(tmp_path / f"src{v}", "shop", v, ds), "-o", dist,
                  cwd=tmp_path))
    p = tmp_path / "proj"
    ok(run_e3("init", p, cwd=tmp_path))
    for v in ("0.1.0", "0.2.0"):
        ok(run_e3("add", dist / f"shop-{v}.zip", cwd=p))

    def e3(*args, **kw):
        return run_e3(*args, cwd=p, **kw)

    e3.root = p
    return e3


def test_a_new_repository_has_the_current_workspace_main(proj):
    lst = ok(proj("--json", "workspace", "list")).json
    assert [(w["name"], w["current"], w["package"]) for w in lst] == [("main", True, None)]
    assert (proj.root / ".e3/HEAD").read_text().strip() == "main"


def test_checkout_writes_the_datasets_as_files_and_checking_out_an_old_version_restores_it(proj):
    ok(proj("checkout", "shop@0.2.0"))
    assert files(proj.root) == as_files(V2)
    ok(proj("checkout", "shop@0.1.0"))
    assert files(proj.root) == as_files(V1)  # v2-only file removed, others restored exactly
    st = ok(proj("--json", "status")).json
    assert (st["package"], st["version"], st["modified"], st["added"], st["deleted"]) == \
        ("shop", "0.1.0", [], [], [])


def test_checkout_leaves_unchanged_files_untouched(proj):
    ok(proj("checkout", "shop@0.1.0"))
    age_files(proj.root)
    ok(proj("status"))  # the stat cache learns the aged files
    horizon = (proj.root / "inputs/horizon").stat()
    ok(proj("checkout", "shop@0.2.0"))
    after = (proj.root / "inputs/horizon").stat()
    assert (after.st_ino, after.st_mtime_ns) == (horizon.st_ino, horizon.st_mtime_ns)


def test_status_finds_modified_added_and_deleted_inputs_and_ignores_a_touch(proj):
    ok(proj("checkout", "shop@0.1.0"))
    age_files(proj.root)
    ok(proj("status"))
    os.utime(proj.root / "inputs/sales")
    st = ok(proj("--json", "status")).json
    assert (st["modified"], st["added"], st["deleted"]) == ([], [], [])
    (proj.root / "inputs/horizon").write_text("7")
    (proj.root / "inputs/extra.csv").write_text("x")
    (proj.root / "inputs/v1_only").unlink()
    st = ok(proj("--json", "status")).json
    assert (st["modified"], st["added"], st["deleted"]) == \
        (["inputs/horizon"], ["inputs/extra.csv"], ["inputs/v1_only"])


def test_set_get_and_ls_read_and_write_datasets(proj, tmp_path):
    ok(proj("checkout", "shop@0.1.0"))
    (tmp_path / "t.json").write_text('{"low": 5}')
    r = ok(proj("--json", "set", "inputs/cfg/thresholds", tmp_path / "t.json")).json
    assert r["root"] == ok(proj("--json", "status")).json["root"]
    # a JSON dataset is stored as its canonical encoding (docs/repository.md, "JSON inputs")
    assert ok(proj("get", "inputs/cfg/thresholds")).out == '{"low":5}'
    assert json.loads((proj.root / "inputs/cfg/thresholds").read_text()) == {"low": 5}
    ls = ok(proj("--json", "ls", "inputs/cfg")).json
    assert ls == [{"path": "inputs/cfg/thresholds", "hash": r["hash"], "size": 9, "format": "json"}]
    bad = proj("set", "inputs/cfg/thresholds", "-", input="{broken")
    assert bad.code == 2 and "not valid JSON" in bad.err
    assert ok(proj("get", "inputs/cfg/thresholds")).out == '{"low":5}'


def test_commit_log_diff_and_reset_version_the_workspace(proj):
    ok(proj("checkout", "shop@0.1.0"))
    (proj.root / "inputs/horizon").write_text("12")
    assert [d["path"] for d in ok(proj("--json", "diff")).json] == ["inputs/horizon"]
    ok(proj("commit", "--patch", "-m", "longer horizon"))
    (proj.root / "inputs/horizon").write_text("24")
    ok(proj("commit", "--major", "-m", "much longer"))
    log = ok(proj("--json", "log")).json
    assert [(e["version"], e["message"]) for e in log] == \
        [("1.0.0", "much longer"), ("0.1.1", "longer horizon"), ("0.1.0", "")]
    ok(proj("checkout", "shop@0.1.1"))
    assert (proj.root / "inputs/horizon").read_text() == "12"
    (proj.root / "inputs/sales").write_text("scratch")
    (proj.root / "inputs/horizon").unlink()
    d = ok(proj("--json", "diff")).json
    assert [(e["path"], e["new"] is None) for e in d] == [("inputs/horizon", True),
                                                          ("inputs/sales", False)]
    ok(proj("reset"))
    assert files(proj.root) == {**as_files(V1), "inputs/horizon": b"12"}
    assert ok(proj("--json", "diff")).json == []


def test_named_workspaces_create_deploy_switch_export_and_remove(proj, tmp_path):
    ok(proj("checkout", "shop@0.1.0"))
    ok(proj("workspace", "create", "exp"))
    ok(proj("workspace", "deploy", "exp", "shop@0.2.0"))
    assert files(proj.root) == as_files(V1)  # exp is not current
    ok(proj("workspace", "switch", "exp"))
    assert files(proj.root) == as_files(V2)
    (proj.root / "inputs/horizon").write_text("9")
    refused = proj("workspace", "switch", "main")
    assert refused.code == 2 and "uncommitted" in refused.err
    ok(proj("workspace", "export", "exp", tmp_path / "exp.zip", "--as", "shop-exp",
            "--version", "0.2.0-exp.1"))
    ok(proj("workspace", "switch", "main", "--force"))
    assert files(proj.root) == as_files(V1)
    other = tmp_path / "other"
    ok(run_e3("init", other, cwd=tmp_path))
    ok(run_e3("add", tmp_path / "exp.zip", cwd=other))
    ok(run_e3("checkout", "shop-exp", cwd=other))
    assert (other / "inputs/horizon").read_text() == "9"
    assert files(other) == {**as_files(V2), "inputs/horizon": b"9"}
    assert ok(proj("--json", "workspace", "remove", "exp")).json == {"removed": ["exp"]}
    assert [w["name"] for w in ok(proj("--json", "workspace", "list")).json] == ["main"]
    r = proj("workspace", "remove", "main")
    assert r.code == 2 and "current" in r.err


def test_concurrent_sets_of_different_paths_from_several_processes_all_land(proj, tmp_path):
    ok(proj("checkout", "shop@0.1.0"))
    n = 6
    procs = []
    for i in range(n):
        src = tmp_path / f"v{i}"
        src.write_text(f"value {i}")
        procs.append(subprocess.Popen(e3_cmd("set", f"inputs/par/d{i}", src), cwd=proj.root,
                                      env=e3_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE))
    for p in procs:
        p.communicate(timeout=120)
    assert [p.returncode for p in procs] == [0] * n
    ls = ok(proj("--json", "ls", "inputs/par")).json
    assert [e["path"] for e in ls] == [f"inputs/par/d{i}" for i in range(n)]
    assert ok(proj("get", "inputs/par/d3")).out == "value 3"


def _hold(root, op, shared, ready, release):
    from e3logic.repo.repository import Repository
    from e3logic.repo.workspaces import Workspaces
    lock = Workspaces(Repository(root)).lock("main").acquire(op, shared=shared)
    ready.set()
    release.wait(60)
    lock.release()


def test_a_busy_workspace_fails_fast_naming_the_holder_and_a_dead_holder_frees_it(proj, tmp_path):
    ok(proj("checkout", "shop@0.1.0"))
    (tmp_path / "v").write_text("1")
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(proj.root, "deploy shop@0.2.0", False, ready,
                                             release))
    holder.start()
    assert ready.wait(30)
    r = proj("set", "inputs/x", tmp_path / "v")
    assert r.code == 1 and f"pid {holder.pid} (deploy shop@0.2.0" in r.err
    assert len(r.err.strip().splitlines()) == 1
    holder.kill()  # SIGKILL: the kernel drops its lock; nothing to clean up
    holder.join(30)
    ok(proj("set", "inputs/x", tmp_path / "v"))


def test_shared_dataset_writes_coexist_but_keep_deploy_out(proj, tmp_path):
    ok(proj("checkout", "shop@0.1.0"))
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(proj.root, "set", True, ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        (tmp_path / "v").write_text("1")
        ok(proj("set", "inputs/y", tmp_path / "v"))  # another shared holder: fine
        r = proj("checkout", "shop@0.2.0", "--force")
        assert r.code == 1 and "busy" in r.err
    finally:
        release.set()
        holder.join(30)
    ok(proj("checkout", "shop@0.2.0", "--force"))


def test_compare_and_swap_through_the_api_never_loses_a_concurrent_update(proj):
    ok(proj("checkout", "shop@0.1.0"))
    a, b = Repo.open(str(proj.root)), Repo.open(str(proj.root))
    a.set("inputs/from_a", b"a")
    b.set("inputs/from_b", b"b")  # b's view was opened before a's write
    paths = [e["path"] for e in Repo.open(str(proj.root)).ls("inputs")]
    assert "inputs/from_a" in paths and "inputs/from_b" in paths
