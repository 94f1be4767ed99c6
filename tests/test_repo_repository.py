"""repo.repository: the `.e3/` layout, init (whole or nothing), repository lookup, settings."""
import multiprocessing as mp
import os
import tomllib

import pytest

from e3logic.core.errors import NoRepository, UsageError
from e3logic.repo.refs import read_ref
from e3logic.repo.repository import Repository, find_root


def test_init_creates_the_documented_layout(tmp_path):
    repo = Repository.init(tmp_path / "p")
    e3 = tmp_path / "p" / ".e3"
    for d in ("objects/tmp", "packages", "workspaces", "logs"):
        assert (e3 / d).is_dir(), d
    assert (e3 / "HEAD").read_text() == "main\n" and repo.head == "main"
    assert (e3 / "index.db").is_file()
    state = read_ref(e3 / "workspaces" / "main" / "state")
    assert state["kind"] == "tree" and state["hash"] == repo.trees.empty
    assert repo.objects.exists(repo.trees.empty)
    cfg = tomllib.loads((tmp_path / "p" / "e3.toml").read_text())
    assert cfg["gc"]["min_age"] == 60 and cfg["defaults"]["workspace"] == "main"
    assert [p.name for p in (tmp_path / "p").iterdir() if p.name.startswith(".e3.")] == []


def test_init_refuses_an_existing_repository_and_changes_nothing(tmp_path):
    Repository.init(tmp_path)
    (tmp_path / "e3.toml").write_text("# mine\n")
    before = sorted(p.name for p in (tmp_path / ".e3").iterdir())
    with pytest.raises(UsageError) as e:
        Repository.init(tmp_path)
    assert "already an e3 repository" in str(e.value) and e.value.exit_code == 2
    assert sorted(p.name for p in (tmp_path / ".e3").iterdir()) == before
    assert (tmp_path / "e3.toml").read_text() == "# mine\n"


def test_init_keeps_an_existing_settings_file(tmp_path):
    (tmp_path / "e3.toml").write_text("[gc]\nmin_age = 5\n")
    repo = Repository.init(tmp_path)
    assert repo.config == {"gc": {"min_age": 5}}


def test_an_edit_of_the_settings_is_read_by_the_next_command(tmp_path):
    Repository.init(tmp_path)
    assert Repository(tmp_path).config["defaults"]["executor"] == "threads"
    (tmp_path / "e3.toml").write_text('[defaults]\nexecutor = "processes"\n')
    assert Repository(tmp_path).config == {"defaults": {"executor": "processes"}}
    (tmp_path / "e3.toml").write_text("[gc]\nsince = 2026-01-01\n")  # TOML, not JSON
    assert str(Repository(tmp_path).config["gc"]["since"]) == "2026-01-01"


def test_no_settings_file_means_no_settings(tmp_path):
    Repository.init(tmp_path)
    (tmp_path / "e3.toml").unlink()
    assert Repository(tmp_path).config == {}


def test_init_refuses_a_path_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError):
        Repository.init(tmp_path / "f")


def test_an_init_that_fails_before_the_final_rename_leaves_no_repository(tmp_path, monkeypatch):
    real = os.rename

    def fail(a, b):
        raise OSError("killed here")

    monkeypatch.setattr(os, "rename", fail)
    with pytest.raises(OSError):
        Repository.init(tmp_path)
    monkeypatch.setattr(os, "rename", real)
    assert not (tmp_path / ".e3").exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".e3")] == []
    Repository.init(tmp_path)  # and a retry works
    assert (tmp_path / ".e3" / "workspaces" / "main" / "state").exists()


def _init(path, barrier, q):
    barrier.wait()
    try:
        Repository.init(path)
        q.put("created")
    except UsageError as e:
        q.put("refused" if "already" in str(e) else repr(e))


def test_concurrent_inits_create_one_repository_and_refuse_the_rest(tmp_path):
    ctx = mp.get_context("fork")
    barrier, q = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_init, args=(tmp_path / "p", barrier, q)) for _ in range(4)]
    for p in procs:
        p.start()
    results = sorted(q.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(30)
    assert results.count("created") == 1 and results.count("refused") == 3
    assert [p.name for p in (tmp_path / "p").iterdir() if p.name.startswith(".e3.")] == []


def test_lookup_prefers_the_explicit_path_then_e3_repo_then_the_nearest_parent(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    Repository.init(a)
    Repository.init(b)
    deep = a / "x" / "y"
    deep.mkdir(parents=True)
    monkeypatch.delenv("E3_REPO", raising=False)
    assert find_root(start=deep) == a.resolve()
    monkeypatch.setenv("E3_REPO", str(b))
    assert find_root(start=deep) == b.resolve()
    assert find_root(start=deep, explicit=str(a)) == a.resolve()


def test_no_repository_is_a_one_line_usage_error_naming_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("E3_REPO", raising=False)
    with pytest.raises(NoRepository) as e:
        find_root(start=tmp_path)
    assert "e3 init" in str(e.value) and e.value.exit_code == 2 and "\n" not in str(e.value)
    with pytest.raises(NoRepository) as e:
        find_root(explicit=str(tmp_path))
    assert str(tmp_path) in str(e.value)


def test_invalid_settings_are_a_usage_error(tmp_path):
    repo = Repository.init(tmp_path)
    (tmp_path / "e3.toml").write_text("[gc\n")
    with pytest.raises(UsageError) as e:
        Repository(tmp_path).config
    assert "e3.toml" in str(e.value)
    assert repo.root == tmp_path.resolve()


def test_head_names_the_current_workspace_and_is_replaced_atomically(tmp_path):
    repo = Repository.init(tmp_path)
    repo.set_head("other")
    assert repo.head == "other" and (tmp_path / ".e3" / "HEAD").read_text() == "other\n"
    assert sorted(p.name for p in (tmp_path / ".e3").iterdir() if p.name.startswith(".tmp")) == []


def test_init_creates_the_permanent_gc_lock_file(tmp_path):
    Repository.init(tmp_path)
    assert (tmp_path / ".e3" / "gc.lock").is_file()


def test_the_object_guard_is_reentrant_and_gc_guard_is_refused_inside_it(tmp_path):
    from e3logic.core.errors import ConflictError
    from e3logic.repo.locks import held

    repo = Repository.init(tmp_path)
    lock = repo.dir / "gc.lock"
    with repo.object_guard():
        with Repository(tmp_path).object_guard():  # another handle, same process: one hold
            assert held(lock) == "shared"
        with pytest.raises(ConflictError):
            with repo.gc_guard():
                pass
        assert held(lock) == "shared"
    assert held(lock) is None
    with repo.gc_guard():
        assert held(lock) == "exclusive"
    assert held(lock) is None


def test_the_object_guard_works_on_a_repository_made_before_the_gc_lock_existed(tmp_path):
    repo = Repository.init(tmp_path)
    (repo.dir / "gc.lock").unlink()
    with repo.object_guard():
        pass
    assert (repo.dir / "gc.lock").is_file()


def _guarded_child(root, ready, release):
    with Repository(root).object_guard():
        ready.set()
        release.wait(30)


def test_gc_guard_waits_for_a_command_holding_objects_and_names_it(tmp_path):
    repo = Repository.init(tmp_path)
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_guarded_child, args=(tmp_path, ready, release))
    child.start()
    assert ready.wait(30)
    said = []

    def on_wait(holders):
        said.append(holders)
        release.set()  # the command finishes; gc then gets the lock

    with repo.gc_guard(on_wait):
        pass
    child.join(10)
    assert len(said) == 1 and any(f"pid {child.pid}" in h for h in said[0])
