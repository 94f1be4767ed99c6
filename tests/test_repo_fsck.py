"""repo.fsck: re-hashing objects, following refs, reporting what is corrupt or missing."""
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
