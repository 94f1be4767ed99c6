"""repo.locks: permanent flock files; fail-fast exclusive locks that name their holder."""
import json
import multiprocessing as mp
import os
import signal

import pytest

from e3logic.core.errors import LockBusy
from e3logic.repo.locks import FileLock, alive, process_start


def _hold(path, op, shared, ready, release):
    lock = FileLock(path, "workspace 'main'").acquire(op, shared=shared)
    ready.set()
    release.wait(30)
    lock.release()


@pytest.fixture
def holder(tmp_path):
    """Start a child process holding the lock; yields (start(op, shared) -> process, path)."""
    ctx = mp.get_context("fork")
    path = tmp_path / "lock"
    started = []

    def start(op="deploy demo@0.1.0", shared=False):
        ready, release = ctx.Event(), ctx.Event()
        p = ctx.Process(target=_hold, args=(path, op, shared, ready, release))
        p.start()
        assert ready.wait(30)
        started.append((p, release))
        p.release = release
        return p

    yield start, path
    for p, release in started:
        if p.is_alive():  # (an mp.Event waits for killed waiters forever: never set for them)
            release.set()
        p.join(10)
        if p.is_alive():
            p.kill()


def test_a_second_exclusive_holder_fails_fast_naming_the_holders_pid_and_operation(holder):
    start, path = holder
    p = start("deploy demo@0.1.0")
    with pytest.raises(LockBusy) as e:
        FileLock(path, "workspace 'main'").acquire("remove")
    msg = str(e.value)
    assert f"pid {p.pid}" in msg and "deploy demo@0.1.0" in msg and "workspace 'main'" in msg
    assert "\n" not in msg and e.value.exit_code == 1


def test_a_shared_request_is_refused_while_an_exclusive_holder_works(holder):
    start, path = holder
    p = start("remove")
    with pytest.raises(LockBusy) as e:
        FileLock(path, "workspace 'main'").acquire("set", shared=True)
    assert f"pid {p.pid}" in str(e.value)


def test_shared_locks_coexist_and_keep_exclusive_ones_out(holder):
    start, path = holder
    start("set", shared=True)
    mine = FileLock(path, "w").acquire("set", shared=True)  # a second shared holder
    with pytest.raises(LockBusy) as e:
        FileLock(path, "w").acquire("deploy")
    assert "another e3 command" in str(e.value)  # shared holders leave no stale name behind
    mine.release()


def test_a_dead_holders_lock_is_free(holder):
    start, path = holder
    p = start("deploy demo@0.1.0")
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    lock = FileLock(path, "w").acquire("remove")  # no waiting, no cleanup needed
    assert json.loads(path.read_text())["op"] == "remove"
    lock.release()


def test_the_lock_file_is_never_deleted_and_its_holder_info_is_cleared_on_release(tmp_path):
    path = tmp_path / "lock"
    lock = FileLock(path, "w").acquire("deploy")
    info = json.loads(path.read_text())
    assert info["pid"] == os.getpid() and info["op"] == "deploy"
    assert info["proc_start"] == process_start(os.getpid())
    lock.release()
    assert path.exists() and path.read_text() == ""


def test_a_lock_released_by_one_holder_can_be_taken_by_the_next(tmp_path):
    path = tmp_path / "lock"
    with FileLock(path, "w").acquire("a"):
        pass
    with FileLock(path, "w").acquire("b"):
        assert json.loads(path.read_text())["op"] == "b"


def test_waiting_acquire_gets_the_lock_once_the_holder_releases(holder):
    start, path = holder
    p = start("cas")
    p.release.set()
    lock = FileLock(path, "w").acquire("cas", wait=30)
    lock.release()


def test_a_recycled_pid_is_not_mistaken_for_the_holder(tmp_path):
    assert alive(os.getpid(), process_start(os.getpid()))
    assert not alive(os.getpid(), "1")  # same pid, another start time
    assert not alive(0, None) and not alive(-1, None)
    path = tmp_path / "lock"
    path.write_text(json.dumps({"pid": os.getpid(), "op": "old", "proc_start": "1"}))
    assert FileLock(path, "w").describe_holder() == "another e3 command"
