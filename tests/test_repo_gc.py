"""repo.gc: marking from every root, min-age, dry runs, temp files."""
import os
import time

import pytest

from e3logic.core.errors import IntegrityError
from e3logic.repo import gc
from e3logic.repo.fsck import fsck
from e3logic.repo.packages import read_package, reachable
from e3logic.repo.repository import Repository
from e3logic.repo.trees import blob_entry
from e3logic.repo.workspaces import Workspaces

from .repo_helpers import make_package

LATER = 3600.0  # seconds: "now" for a gc run long after everything was written


@pytest.fixture
def repo(tmp_path):
    return Repository.init(tmp_path)


def later():
    return time.time() + LATER


def orphan(repo, data: bytes) -> str:
    return repo.objects.write(data)


def test_gc_keeps_every_object_of_every_installed_package(repo):
    h = make_package(repo, datasets={"inputs/a": b"A", "inputs/b": {"x": 1}},
                     modules={"steps.py": b"def f(): pass\n"})
    keep = set(reachable(repo, h))
    res = gc.gc(repo, min_age=60, now=later())
    assert keep <= set(repo.objects)
    assert res["deleted"] == 0 and res["retained"] == len(set(repo.objects))


def test_gc_removes_orphans_only_past_min_age(repo):
    young = orphan(repo, b"young orphan")
    old = orphan(repo, b"old orphan")
    t = time.time() - 120
    os.utime(repo.objects.path(old), (t, t))
    res = gc.gc(repo, min_age=60)
    assert res["deleted"] == 1 and res["bytes"] == len(b"old orphan")
    assert repo.objects.exists(young) and not repo.objects.exists(old)
    assert gc.gc(repo, min_age=60, now=later())["deleted"] == 1
    assert not repo.objects.exists(young)


def test_a_dry_run_reports_the_same_counts_and_deletes_nothing(repo):
    make_package(repo, datasets={"inputs/a": b"A"})
    for i in range(5):
        orphan(repo, f"orphan {i}".encode())
    before = sorted(repo.objects)
    dry = gc.gc(repo, min_age=60, now=later(), dry_run=True)
    assert sorted(repo.objects) == before
    real = gc.gc(repo, min_age=60, now=later())
    assert {k: dry[k] for k in ("deleted", "bytes", "retained")} == \
           {k: real[k] for k in ("deleted", "bytes", "retained")}
    assert real["deleted"] == 5 and len(list(repo.objects)) == len(before) - 5


def test_gc_keeps_workspace_roots_of_every_workspace_and_their_deployed_packages(repo):
    ws = Workspaces(repo)
    ws.create("dev")
    e = blob_entry(repo.objects.write(b"only in dev"), 11)
    r = repo.trees.set(ws.root("dev"), "inputs/x", e)
    ws.cas_root("dev", ws.root("dev"), r)
    h = make_package(repo, "p", "1.0.0", datasets={"inputs/y": b"Y"})
    ws.deploy("prod", "p", "1.0.0", h, read_package(repo, h)["datasets"]["hash"])
    os.unlink(repo.package_ref_path("p", "1.0.0"))  # removed, but still deployed in prod
    gc.gc(repo, min_age=0, now=later())
    assert repo.objects.read(e["hash"]) == b"only in dev"
    assert set(reachable(repo, h)) <= set(repo.objects)


def test_gc_keeps_the_commit_history_of_a_package_through_its_parents(repo):
    h1 = make_package(repo, "p", "1.0.0", datasets={"inputs/v": b"v1"})
    pkg = read_package(repo, h1)
    e = blob_entry(repo.objects.write(b"v2"), 2)
    root2 = repo.trees.set(pkg["datasets"]["hash"], "inputs/v", e)
    from e3logic.repo.packages import install
    h2 = install(repo, dict(pkg, version="1.1.0", datasets={"kind": "tree", "hash": root2},
                            parent={"version": "1.0.0", "hash": h1}, message="m"))["hash"]
    os.unlink(repo.package_ref_path("p", "1.0.0"))
    gc.gc(repo, min_age=0, now=later())
    assert set(reachable(repo, h1)) <= set(repo.objects)
    assert set(reachable(repo, h2)) <= set(repo.objects)


def test_gc_keeps_memo_outputs_pinned_runs_and_the_working_copy_roots(repo):
    memo_out = orphan(repo, b"memoised output")
    pinned = repo.trees.set(repo.trees.empty, "outputs/f/o",
                            blob_entry(repo.objects.write(b"pinned"), 6))
    wc_root = repo.trees.set(repo.trees.empty, "inputs/w",
                             blob_entry(repo.objects.write(b"synced"), 6))
    unpinned = repo.trees.set(repo.trees.empty, "outputs/f/o",
                              blob_entry(repo.objects.write(b"unpinned"), 8))
    db = repo.index
    db.execute("INSERT INTO memo(key, output_hash) VALUES ('k', ?)", (memo_out,))
    db.execute("INSERT INTO memo(key, output_hash) VALUES ('k2', NULL)")
    db.execute("INSERT INTO runs(run, state_root, pinned) VALUES ('r1', ?, 1)", (pinned,))
    db.execute("INSERT INTO runs(run, state_root, pinned) VALUES ('r2', ?, 0)", (unpinned,))
    db.set_meta("wc_root", wc_root)
    gc.gc(repo, min_age=0, now=later())
    assert repo.objects.exists(memo_out)
    assert repo.objects.read(repo.trees.get(pinned, "outputs/f/o")["hash"]) == b"pinned"
    assert repo.objects.read(repo.trees.get(wc_root, "inputs/w")["hash"]) == b"synced"
    assert not repo.objects.exists(unpinned)


def test_temp_files_and_staging_directories_go_only_past_min_age(repo):
    tmp = repo.objects.tmp
    old_file, young_file = tmp / "w-old.part", tmp / "w-young.part"
    old_file.write_bytes(b"x" * 10)
    young_file.write_bytes(b"y" * 10)
    stage_old, stage_busy = tmp / "import-old", tmp / "import-busy"
    stage_old.mkdir()
    (stage_old / "obj").write_bytes(b"z" * 5)
    stage_busy.mkdir()
    (stage_busy / "obj").write_bytes(b"still being written")
    t = time.time() - 600
    for p in (old_file, stage_old / "obj", stage_old):
        os.utime(p, (t, t))
    os.utime(stage_busy, (t, t))  # the directory is old, but a file in it is being written
    dry = gc.gc(repo, min_age=60, dry_run=True)
    assert dry["temp_files"] == 2 and old_file.exists() and stage_old.exists()
    res = gc.gc(repo, min_age=60)
    assert res["temp_files"] == 2 and res["bytes"] == dry["bytes"] == 15
    assert not old_file.exists() and not stage_old.exists()
    assert young_file.exists() and (stage_busy / "obj").exists()


def test_gc_removes_emptied_fan_out_directories(repo):
    h = orphan(repo, b"lonely")
    gc.gc(repo, min_age=0, now=later())
    assert not repo.objects.path(h).parent.exists()
    assert repo.objects.tmp.is_dir()


def test_gc_refuses_to_run_when_a_ref_is_unreadable(repo):
    h = orphan(repo, b"maybe referenced")
    bad = repo.package_ref_path("p", "1.0.0")
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    with pytest.raises(IntegrityError) as e:
        gc.gc(repo, min_age=0, now=later())
    assert "packages/p/1.0.0" in str(e.value) and "fsck" in str(e.value)
    assert repo.objects.exists(h)


def _write_many(root, n, q):
    from e3logic.repo.objects import ObjectStore
    s = ObjectStore(root / ".e3" / "objects", fsync=False)
    try:
        for i in range(n):
            s.write(f"short-lived {i}".encode())
        q.put("ok")
    except Exception:  # pragma: no cover - reported to the parent
        import traceback
        q.put(traceback.format_exc())


def test_writers_never_fail_while_gc_empties_and_removes_fan_out_directories(repo, tmp_path):
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    writer = ctx.Process(target=_write_many, args=(tmp_path, 3000, q))
    writer.start()
    rounds = 0
    while writer.is_alive() or rounds == 0:
        gc.gc(repo, min_age=0, now=later())  # deletes every orphan, removes empty fan-out dirs
        rounds += 1
    writer.join(60)
    assert q.get(timeout=10) == "ok" and rounds > 0
    assert fsck(repo)["ok"] is True


def test_a_temp_file_or_directory_still_being_written_is_kept_whatever_its_age(repo):
    import fcntl
    fd, path = repo.objects.temp_file()  # held (flock'ed) by its writer
    os.write(fd, b"in progress")
    stage = repo.objects.tmp / "import-busy"
    stage.mkdir()
    dfd = os.open(stage, os.O_RDONLY)
    fcntl.flock(dfd, fcntl.LOCK_EX)
    t = time.time() - 3600
    for p in (path, stage):
        os.utime(p, (t, t))
    assert gc.gc(repo, min_age=0, now=later())["temp_files"] == 0
    assert os.path.exists(path) and stage.exists()
    os.close(fd)  # the writer died without renaming: now it is debris
    os.close(dfd)
    assert gc.gc(repo, min_age=0, now=later())["temp_files"] == 2
    assert not os.path.exists(path) and not stage.exists()


def _tree_of(repo, data: bytes) -> str:
    return repo.trees.set(repo.trees.empty, "outputs/f/o",
                          blob_entry(repo.objects.write(data), len(data)))


def _run(repo, run, ws, seq, root, status="ok", settled=1, outputs=()):
    db = repo.index
    db.execute("INSERT INTO runs(run, workspace, seq, status, settled, state_root, pinned) "
               "VALUES (?,?,?,?,?,?,0)", (run, ws, seq, status, settled, root))
    for i, o in enumerate(outputs):
        db.execute("INSERT INTO receipts(run, seq, dataflow, key, output_hash) VALUES (?,?,?,?,?)",
                   (run, i, f"d{i}", f"k{i}", o))


def test_gc_keeps_the_state_root_and_outputs_of_each_workspaces_newest_and_settled_runs(repo):
    old = _tree_of(repo, b"an older run's state")
    settled = _tree_of(repo, b"main's settled run")
    newest = _tree_of(repo, b"main's newest run (failed)")
    dev = _tree_of(repo, b"dev's run")
    out = orphan(repo, b"a receipt output no memo row names")
    _run(repo, "r1", "main", 1, old)
    _run(repo, "r2", "main", 2, settled, outputs=[out])
    _run(repo, "r3", "main", 3, newest, status="failed", settled=0)
    _run(repo, "r4", "main", 4, None, status="running", settled=None)  # in flight: no root yet
    _run(repo, "r5", "dev", 5, dev, settled=0)
    gc.gc(repo, min_age=0, now=later())
    for root, data in ((settled, b"main's settled run"), (newest, b"main's newest run (failed)"),
                       (dev, b"dev's run")):
        assert repo.objects.read(repo.trees.get(root, "outputs/f/o")["hash"]) == data
    assert repo.objects.exists(out)
    assert not repo.objects.exists(old)
    assert fsck(repo)["ok"] is True


def test_fsck_reports_a_settled_runs_state_root_that_is_gone(repo):
    root = _tree_of(repo, b"settled state")
    _run(repo, "r1", "main", 1, root)
    os.unlink(repo.objects.path(root))
    assert root in fsck(repo)["missing"]


def test_gc_says_whom_it_waits_for_and_sweeps_once_they_finish(repo, tmp_path):
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()

    def holder():
        with Repository(tmp_path).object_guard():
            ready.set()
            release.wait(30)

    child = ctx.Process(target=holder)
    child.start()
    assert ready.wait(30)
    h = orphan(repo, b"garbage")
    said = []

    def on_wait(holders):
        said.append(holders)
        assert repo.objects.exists(h)  # nothing swept while a command holds objects
        release.set()

    res = gc.gc(repo, min_age=0, now=later(), on_wait=on_wait)
    child.join(10)
    assert len(said) == 1 and any(f"pid {child.pid}" in x for x in said[0])
    assert res["deleted"] == 1 and not repo.objects.exists(h)
