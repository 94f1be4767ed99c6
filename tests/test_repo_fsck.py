"""repo.fsck: re-hashing objects, following refs, reporting what is corrupt or missing."""
import json
import os

import pytest

from e3logic.core import canon
from e3logic.core.hashing import hash_bytes
from e3logic.repo.fsck import fsck
from e3logic.repo.packages import read_package
from e3logic.repo.repository import Repository

from .repo_helpers import make_package


@pytest.fixture
def repo(tmp_path):
    return Repository.init(tmp_path)


def test_fsck_of_a_healthy_repository_is_ok(repo):
    make_package(repo, datasets={"inputs/a": b"A"})
    res = fsck(repo)
    assert res["ok"] is True and res["corrupt"] == [] and res["missing"] == []
    assert res["objects"] == len(list(repo.objects))


def test_fsck_reports_corrupt_objects(repo):
    h = make_package(repo, datasets={"inputs/a": b"A"})
    blob = repo.trees.get(read_package(repo, h)["datasets"]["hash"], "inputs/a")["hash"]
    p = repo.objects.path(blob)
    os.chmod(p, 0o644)
    p.write_bytes(b"bit rot")
    res = fsck(repo)
    assert res["ok"] is False and res["corrupt"] == [blob]


def test_fsck_reports_missing_objects_reachable_from_refs(repo):
    h = make_package(repo, datasets={"inputs/a": b"A"})
    blob = repo.trees.get(read_package(repo, h)["datasets"]["hash"], "inputs/a")["hash"]
    os.unlink(repo.objects.path(blob))
    res = fsck(repo)
    assert res["ok"] is False and res["missing"] == [blob]


def test_fsck_reports_unreadable_refs_and_a_head_without_workspace(repo):
    (repo.packages_dir / "p").mkdir()
    (repo.packages_dir / "p" / "1.0.0").write_text("[]")
    repo.set_head("ghost")
    res = fsck(repo)
    assert res["ok"] is False
    assert res["bad_refs"][0].startswith("HEAD") and "packages/p/1.0.0" in res["bad_refs"]


def test_fsck_does_not_count_pending_temp_files_as_objects(repo):
    (repo.objects.tmp / "w-1.part").write_bytes(b"half")
    res = fsck(repo)
    assert res["ok"] is True and res["pending_temp_files"] == 1
    assert hash_bytes(b"half") not in set(repo.objects)
    assert canon.loads(canon.dumps(res)) == res


# -- repair ---------------------------------------------------------------------------------
def _deployed(repo, datasets):
    from e3logic.repo.workspaces import Workspaces

    h = make_package(repo, datasets=datasets)
    root = read_package(repo, h)["datasets"]["hash"]
    Workspaces(repo).deploy("main", "demo", "0.1.0", h, root)
    return h, root


def _rot(repo, h):
    p = repo.objects.path(h)
    os.chmod(p, 0o644)
    p.write_bytes(b"bit rot")


def test_fsck_reports_a_damaged_index_instead_of_failing(repo):
    (repo.dir / "index.db").write_bytes(b"not a database" * 100)
    res = fsck(repo)
    assert res["ok"] is False and "not a database" in res["bad_index"]
    assert fsck.__module__ == "e3logic.repo.fsck"


def test_repair_rebuilds_a_damaged_index_and_keeps_the_damaged_file(repo):
    (repo.dir / "index.db").write_bytes(b"not a database" * 100)
    res = fsck(repo, repair=True)
    assert res["ok"] is True and res["repaired"]["index_rebuilt"] is True
    assert (repo.dir / "index.db.damaged-1").read_bytes() == b"not a database" * 100
    assert fsck(repo)["ok"] is True


def test_repair_quarantines_a_corrupt_object_and_drops_it_from_the_workspace_root(repo):
    from e3logic.repo.workspaces import Workspaces

    _, base = _deployed(repo, {"inputs/a": b"A"})
    blob = repo.objects.write(b"O")  # an output: in the workspace root, in no package
    root = repo.trees.set(base, "outputs/f/o", {"kind": "blob", "hash": blob, "size": 1,
                                                "format": "raw"})
    Workspaces(repo).cas_root("main", base, root)
    _rot(repo, blob)
    res = fsck(repo, repair=True)
    assert res["ok"] is True, res
    done = res["repaired"]
    assert done["quarantined"] == [blob] and done["datasets_dropped"] == ["main:outputs/f/o"]
    assert (repo.dir / "quarantine" / blob).read_bytes() == b"bit rot"  # kept, not deleted
    new = Workspaces(repo).root("main")
    assert repo.trees.find(new, "outputs/f/o") is None
    assert repo.trees.get(new, "inputs/a")["hash"] == repo.trees.get(root, "inputs/a")["hash"]


def test_repair_restores_lost_bytes_from_an_identical_working_copy_file(repo):
    _, root = _deployed(repo, {"inputs/a": b"A"})
    blob = repo.trees.get(root, "inputs/a")["hash"]
    (repo.root / "inputs").mkdir()
    (repo.root / "inputs" / "a").write_bytes(b"A")
    _rot(repo, blob)
    res = fsck(repo, repair=True)
    assert res["ok"] is True and res["repaired"]["datasets_restored"] == ["main:inputs/a"]
    assert repo.objects.read(blob) == b"A"


def test_repair_drops_memo_rows_whose_outputs_are_gone(repo):
    kept = repo.objects.write(b"kept")
    repo.index.execute("INSERT INTO memo(key, output_hash) VALUES ('k1', ?), ('k2', ?), "
                       "('k3', 'not-a-hash')", (kept, hash_bytes(b"never written")))
    res = fsck(repo, repair=True)
    assert res["ok"] is True and res["repaired"]["memo_dropped"] == 2
    assert [r[0] for r in repo.index.execute("SELECT key FROM memo")] == ["k1"]


@pytest.mark.parametrize("bad", [b"not json", b'{"kind":"tree","hash":"../../../../etc/passwd"}'])
def test_repair_restores_a_bad_workspace_state_from_the_newest_run(repo, bad):
    from e3logic.repo.workspaces import Workspaces

    pkg, root = _deployed(repo, {"inputs/a": b"A"})
    later = repo.trees.set(root, "outputs/f/o", {"kind": "blob", "hash": repo.objects.write(b"O"),
                                                 "size": 1, "format": "raw"})
    repo.index.execute("INSERT INTO runs(run, workspace, seq, state_root, package, status) "
                       "VALUES ('r1', 'main', 1, ?, ?, 'ok')", (later, pkg))
    (repo.workspaces_dir / "main" / "state").write_bytes(bad)
    assert fsck(repo)["bad_refs"] == ["workspaces/main/state"]
    res = fsck(repo, repair=True)
    assert res["ok"] is True
    assert res["repaired"]["refs_restored"] == ["workspaces/main/state (from run r1)"]
    st = Workspaces(repo).state("main")
    assert st["hash"] == later and st["package"]["hash"] == pkg
    assert (repo.dir / "quarantine" / "refs" / "workspaces" / "main" / "state").read_bytes() == bad


def test_repair_rebuilds_a_package_ref_from_its_package_object(repo):
    h = make_package(repo, datasets={"inputs/a": b"A"})
    ref = repo.packages_dir / "demo" / "0.1.0"
    ref.write_text("{garbage")
    res = fsck(repo, repair=True)
    assert res["ok"] is True and res["repaired"]["refs_restored"][0].startswith(
        "packages/demo/0.1.0")
    assert json.loads(ref.read_text())["hash"] == h


def test_repair_removes_a_package_ref_no_object_can_replace_into_the_quarantine(repo):
    (repo.packages_dir / "ghost").mkdir()
    (repo.packages_dir / "ghost" / "1.0.0").write_text("[]")
    res = fsck(repo, repair=True)
    assert res["ok"] is True and res["repaired"]["refs_removed"] == ["packages/ghost/1.0.0"]
    assert not (repo.packages_dir / "ghost" / "1.0.0").exists()
    assert (repo.dir / "quarantine" / "refs" / "packages" / "ghost" / "1.0.0").read_text() == "[]"


def test_repair_points_a_head_naming_no_workspace_at_one(repo):
    repo.set_head("ghost")
    res = fsck(repo, repair=True)
    assert res["ok"] is True and repo.head == "main"


def test_repair_of_a_healthy_repository_changes_nothing(repo):
    _deployed(repo, {"inputs/a": b"A"})
    res = fsck(repo, repair=True)
    assert res["ok"] is True
    assert res["repaired"] == {"quarantined": [], "memo_dropped": 0, "refs_restored": [],
                               "refs_removed": [], "index_rebuilt": False,
                               "datasets_restored": [], "datasets_dropped": [],
                               "runs_mended": []}
    assert not (repo.dir / "quarantine").exists()
