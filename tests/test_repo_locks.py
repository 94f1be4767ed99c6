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


# -- ProcessLock: the per-process, reentrant guard lock (gc.lock) -----------------------------
def _hold_process_lock(path, shared, ready, release, waited):
    from e3logic.repo.locks import ProcessLock

    def on_wait(holders):
        waited.put(holders)

    with ProcessLock(path, shared, "child", on_wait):
        ready.set()
        release.wait(30)


@pytest.fixture
def plock(tmp_path):
    """Start children entering a ProcessLock; yields (start(shared) -> process, path)."""
    ctx = mp.get_context("fork")
    path = tmp_path / "gc.lock"
    started = []

    def start(shared, wait_ready=True):
        ready, release, waited = ctx.Event(), ctx.Event(), ctx.Queue()
        p = ctx.Process(target=_hold_process_lock, args=(path, shared, ready, release, waited))
        p.start()
        if wait_ready:
            assert ready.wait(30)
        p.ready, p.release, p.waited = ready, release, waited
        started.append(p)
        return p

    yield start, path
    for p in started:
        if p.is_alive():
            p.release.set()
        p.join(10)
        if p.is_alive():
            p.kill()


def test_a_process_lock_is_reentrant_and_dropped_by_the_last_exit(tmp_path):
    from e3logic.repo.locks import ProcessLock, held

    path = tmp_path / "gc.lock"
    with ProcessLock(path, True, "a"):
        with ProcessLock(path, True, "b"):
            assert held(path) == "shared"
        assert held(path) == "shared"
    assert held(path) is None
    with ProcessLock(path, False, "gc"):  # free again: an exclusive entry does not wait
        assert held(path) == "exclusive"
        with ProcessLock(path, True, "inner"):  # exclusive covers shared
            pass
        assert json.loads(path.read_text())["op"] == "gc"
    assert held(path) is None and path.exists() and path.read_text() == ""


def test_a_shared_holder_cannot_enter_the_lock_exclusive(tmp_path):
    from e3logic.core.errors import ConflictError
    from e3logic.repo.locks import ProcessLock, held

    path = tmp_path / "gc.lock"
    with ProcessLock(path, True, "set"):
        with pytest.raises(ConflictError) as e:
            with ProcessLock(path, False, "gc"):
                pass
        assert "\n" not in str(e.value)
        assert held(path) == "shared"  # the refusal took nothing away
    assert held(path) is None


def test_shared_holders_coexist_and_an_exclusive_entrant_waits_for_them_naming_them(plock):
    start, path = plock
    a = start(True)
    b = start(True)  # a second shared holder is not kept waiting
    gc_ = start(False, wait_ready=False)
    holders = gc_.waited.get(timeout=30)  # it had to wait, and said for whom
    assert any(h.startswith(f"pid {a.pid}: ") for h in holders)
    assert any(h.startswith(f"pid {b.pid}: ") for h in holders)
    a.release.set()
    a.join(10)
    assert not gc_.ready.is_set()  # b still holds it
    b.release.set()
    assert gc_.ready.wait(30)


def test_a_shared_entrant_waits_for_an_exclusive_holder_which_names_itself(plock):
    start, path = plock
    gc_ = start(False)
    w = start(True, wait_ready=False)
    holders = w.waited.get(timeout=30)
    assert len(holders) == 1 and holders[0].startswith(f"pid {gc_.pid}: ")
    assert not w.ready.is_set()
    gc_.release.set()
    assert w.ready.wait(30)


def test_a_killed_holders_lock_is_released_by_the_kernel(plock):
    from e3logic.repo.locks import ProcessLock

    start, path = plock
    p = start(True)
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    with ProcessLock(path, False, "gc", on_wait=lambda h: pytest.fail(f"waited for {h}")):
        pass


def test_a_forked_child_does_not_take_its_parents_hold_for_its_own(tmp_path):
    from e3logic.repo.locks import ProcessLock, held

    path = tmp_path / "gc.lock"
    ctx = mp.get_context("fork")
    q = ctx.Queue()

    def child():
        q.put(held(path))

    with ProcessLock(path, True, "parent"):
        p = ctx.Process(target=child)
        p.start()
        p.join(10)
    assert q.get(timeout=10) is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_process_lock_in_a_read_only_directory_is_a_no_op(tmp_path):
    from e3logic.repo.locks import ProcessLock

    d = tmp_path / "ro"
    d.mkdir()
    os.chmod(d, 0o555)
    try:
        with ProcessLock(d / "gc.lock", True, "get"):
            assert not (d / "gc.lock").exists()
    finally:
        os.chmod(d, 0o755)


def test_the_command_of_a_pid_is_named_for_messages():
    from e3logic.repo.locks import command_of, flock_holders

    assert command_of(os.getpid())  # e.g. "python -m pytest ..."
    assert command_of(2 ** 22 + 12345) == "another process"
    import tempfile
    import fcntl
    with tempfile.TemporaryFile() as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_SH)
        assert os.getpid() in flock_holders(f.fileno())
