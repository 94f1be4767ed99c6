"""repo.workspaces: named workspaces, atomic state, compare-and-swap roots, workspace locks."""
import multiprocessing as mp

import pytest

from e3logic.core.errors import ConflictError, LockBusy, NotFound, UsageError
from e3logic.repo.packages import read_package
from e3logic.repo.repository import Repository
from e3logic.repo.trees import blob_entry
from e3logic.repo.workspaces import Workspaces

from .repo_helpers import make_package


@pytest.fixture
def repo(tmp_path):
    return Repository.init(tmp_path)


@pytest.fixture
def ws(repo):
    return Workspaces(repo)


def leaf(repo, data: bytes):
    return blob_entry(repo.objects.write(data), len(data))


def test_a_new_repository_has_an_empty_main_workspace(ws, repo):
    assert ws.names() == ["main"]
    assert ws.state("main") == {"kind": "tree", "hash": repo.trees.empty, "package": None}
    assert ws.list() == [{"name": "main", "package": None, "version": None,
                          "root": repo.trees.empty, "current": True}]


def test_create_adds_an_empty_workspace_and_refuses_a_duplicate(ws):
    ws.create("dev")
    assert ws.names() == ["dev", "main"] and ws.exists("dev")
    with pytest.raises(UsageError) as e:
        ws.create("dev")
    assert "already exists" in str(e.value)
    ws.create("dev", exist_ok=True)


@pytest.mark.parametrize("bad", ["", "a/b", "..", ".hidden", "x" * 65, "sp ace"])
def test_workspace_names_are_checked(ws, bad):
    with pytest.raises(UsageError):
        ws.create(bad)


def test_an_unknown_workspace_suggests_a_near_miss(ws):
    ws.create("staging")
    with pytest.raises(NotFound) as e:
        ws.require("stagng")
    assert "did you mean 'staging'" in str(e.value)


def test_cas_replaces_the_root_only_when_it_is_still_the_expected_one(ws, repo):
    r0 = ws.root("main")
    r1 = repo.trees.set(r0, "inputs/a", leaf(repo, b"1"))
    ws.cas_root("main", r0, r1)
    assert ws.root("main") == r1
    r2 = repo.trees.set(r0, "inputs/b", leaf(repo, b"2"))
    with pytest.raises(ConflictError):
        ws.cas_root("main", r0, r2)  # stale expectation: refused, root unchanged
    assert ws.root("main") == r1


def test_update_root_retries_a_lost_race_and_keeps_both_changes(ws, repo):
    raced = []

    def change(old):
        if not raced:  # someone else lands a change between our read and our swap
            raced.append(1)
            ws.cas_root("main", old, repo.trees.set(old, "inputs/other", leaf(repo, b"o")))
        return repo.trees.set(old, "inputs/mine", leaf(repo, b"m"))

    new = ws.update_root("main", change)
    assert [p for p, _ in repo.trees.walk(new)] == ["inputs/mine", "inputs/other"]


def _setter(root, i, barrier, q):
    repo = Repository(root)
    w = Workspaces(repo)
    barrier.wait()
    for j in range(10):
        e = leaf(repo, f"{i}-{j}".encode())
        w.update_root("main", lambda old: repo.trees.set(old, f"inputs/p{i}/d{j}", e))
    q.put(i)


def test_concurrent_root_updates_from_several_processes_all_land(tmp_path, ws):
    ctx = mp.get_context("fork")
    n = 4
    barrier, q = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_setter, args=(tmp_path, i, barrier, q)) for i in range(n)]
    for p in procs:
        p.start()
    assert sorted(q.get(timeout=120) for _ in procs) == list(range(n))
    for p in procs:
        p.join(30)
    repo = Repository(tmp_path)
    paths = [p for p, _ in repo.trees.walk(Workspaces(repo).root("main"))]
    assert paths == sorted(f"inputs/p{i}/d{j}" for i in range(n) for j in range(10))


def test_deploy_points_a_workspace_at_a_package_version_in_one_step(ws, repo):
    h = make_package(repo, datasets={"inputs/x": 1})
    root = read_package(repo, h)["datasets"]["hash"]
    ws.deploy("prod", "demo", "0.1.0", h, root)
    assert ws.state("prod") == {"kind": "tree", "hash": root,
                                "package": {"name": "demo", "version": "0.1.0", "hash": h}}
    assert ws.package("prod")["hash"] == h


def _hold_shared(path_root, ready, release):
    w = Workspaces(Repository(path_root))
    lock = w.lock("main").acquire("set", shared=True)
    ready.set()
    release.wait(30)
    lock.release()


def test_deploy_and_remove_fail_fast_while_a_dataset_write_holds_the_workspace(tmp_path, ws, repo):
    ws.create("other")
    repo.set_head("other")
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold_shared, args=(tmp_path, ready, release))
    p.start()
    try:
        assert ready.wait(30)
        with pytest.raises(LockBusy):
            ws.deploy("main", "demo", "0.1.0", repo.trees.empty, repo.trees.empty)
        with pytest.raises(LockBusy):
            ws.remove("main")
        # shared holders coexist: another dataset write goes ahead
        with ws.lock("main").acquire("set", shared=True):
            pass
    finally:
        release.set()
        p.join(30)
    ws.remove("main")
    assert ws.names() == ["other"]


def test_remove_refuses_the_current_workspace(ws):
    ws.create("dev")
    with pytest.raises(UsageError) as e:
        ws.remove("main")
    assert "current" in str(e.value) and "e3 workspace switch dev" in str(e.value)


def test_remove_deletes_the_workspace_but_never_its_lock_file(ws, repo):
    ws.create("dev")
    with ws.lock("dev").acquire("set", shared=True):
        pass
    ws.remove("dev")
    assert not ws.exists("dev") and "dev" not in ws.names()
    assert (repo.workspaces_dir / "dev" / "lock").exists()
    with pytest.raises(NotFound):
        ws.state("dev")
    ws.create("dev")  # the name can be reused
    assert ws.root("dev") == repo.trees.empty


def test_set_package_records_a_new_version_and_keeps_the_root(ws, repo):
    r1 = repo.trees.set(ws.root("main"), "inputs/a", leaf(repo, b"1"))
    ws.cas_root("main", ws.root("main"), r1)
    ws.set_package("main", "demo", "0.2.0", repo.trees.empty)
    assert ws.root("main") == r1 and ws.package("main")["version"] == "0.2.0"


def test_list_marks_the_current_workspace(ws, repo):
    ws.create("dev")
    repo.set_head("dev")
    assert [(w["name"], w["current"]) for w in ws.list()] == [("dev", True), ("main", False)]
