"""repo.objects: the content-addressed store over the real filesystem."""
import multiprocessing as mp
import os
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from e3logic.core.errors import IntegrityError, NotFound
from e3logic.core.hashing import hash_bytes
from e3logic.repo.objects import MemoryStore, ObjectStore

from .helpers import ROOT


@pytest.fixture
def store(tmp_path):
    return ObjectStore(tmp_path / "objects", fsync=False)


def test_an_object_is_stored_at_its_hash_fanned_out_by_the_first_two_characters(store):
    h = store.write(b"hello")
    assert h == hash_bytes(b"hello")
    assert store.path(h) == store.root / h[:2] / h[2:]
    assert store.path(h).read_bytes() == b"hello"
    assert store.read(h) == b"hello" and store.exists(h) and store.size(h) == 5


def test_objects_are_read_only_files(store):
    h = store.write(b"immutable")
    assert stat.S_IMODE(store.path(h).stat().st_mode) == 0o444


def test_writing_the_same_bytes_again_is_a_no_op_leaving_one_object_and_no_temp_file(store, tmp_path):
    h1 = store.write(b"same")
    src = tmp_path / "same.txt"
    src.write_bytes(b"same")
    h2 = store.write(b"same")
    h3 = store.write_file(src)
    assert h1 == h2 == h3
    assert list(store) == [h1]
    assert store.temp_files() == []


def test_a_write_of_existing_bytes_freshens_the_object_against_gc(store):
    h = store.write(b"old")
    os.utime(store.path(h), (1, 1))
    store.write(b"old")
    assert store.path(h).stat().st_mtime > 1


def test_write_file_stores_the_exact_bytes_of_a_file(store, tmp_path):
    data = os.urandom(3 << 20) + b"tail"
    src = tmp_path / "f.bin"
    src.write_bytes(data)
    h = store.write_file(src)
    assert h == hash_bytes(data) and store.read(h) == data and store.verify(h)


def test_iteration_lists_every_object_sorted_and_nothing_else(store):
    hs = sorted(store.write(bytes([i])) for i in range(20))
    (store.root / "zz").mkdir()
    (store.root / "zz" / "not-a-hash").write_bytes(b"x")
    (store.tmp / "w-123.part").write_bytes(b"half")
    assert list(store) == hs


def test_a_leftover_temp_file_is_never_an_object(store):
    """A writer killed before its rename leaves bytes in objects/tmp/: they are not listed, not
    found by hash, and reading them by hash fails."""
    data = b"complete bytes of an object"
    partial = data[:10]
    store.tmp.mkdir(parents=True, exist_ok=True)
    (store.tmp / "w-dead.part").write_bytes(partial)
    (store.tmp / "w-dead2.part").write_bytes(data)
    for h in (hash_bytes(partial), hash_bytes(data)):
        assert not store.exists(h)
        with pytest.raises(NotFound):
            store.read(h)
    assert list(store) == []
    assert [p.name for p in store.temp_files()] == ["w-dead.part", "w-dead2.part"]


def test_reading_a_missing_object_names_it_and_suggests_fsck(store):
    h = hash_bytes(b"never written")
    with pytest.raises(NotFound) as e:
        store.read(h)
    assert h in str(e.value) and "fsck" in str(e.value)
    with pytest.raises(NotFound):
        store.open(h)


def test_exists_is_false_for_names_that_are_not_hashes(store):
    assert not store.exists("../../etc/passwd")
    assert not store.exists("ab")


def test_verify_detects_bytes_that_no_longer_match_their_name(store):
    h = store.write(b"original")
    p = store.path(h)
    os.chmod(p, 0o644)
    p.write_bytes(b"tampered")
    assert not store.verify(h)
    with pytest.raises(IntegrityError):
        store.check(h, b"tampered")
    store.check(hash_bytes(b"ok"), b"ok")


def _writer(root, data_path, n, barrier, q):
    s = ObjectStore(root, fsync=True)
    barrier.wait()
    hs = set()
    for i in range(n):
        hs.add(s.write_file(data_path) if i % 2 else s.write(open(data_path, "rb").read()))
    q.put(sorted(hs))


def test_two_concurrent_writer_processes_of_the_same_object_both_succeed_and_leave_one_object(tmp_path):
    root = tmp_path / "objects"
    data = os.urandom(4 << 20)
    src = tmp_path / "same.bin"
    src.write_bytes(data)
    ctx = mp.get_context("fork")
    barrier, q = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(root, src, 6, barrier, q)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert results == [[hash_bytes(data)]] * 2
    s = ObjectStore(root)
    assert list(s) == [hash_bytes(data)]
    assert s.read(hash_bytes(data)) == data
    assert s.temp_files() == []


def test_the_rename_race_between_two_writers_of_one_object_is_harmless(store, tmp_path):
    """Both writers got past the existence check: the second rename replaces identical bytes."""
    h = hash_bytes(b"race")
    for _ in range(2):
        fd, tmp = store._tempfile()
        os.write(fd, b"race")
        os.close(fd)
        if store.path(h).exists():  # simulate: the check happened before the first rename
            os.chmod(tmp, 0o444)
            os.replace(tmp, store.path(h))
        else:
            store._install(tmp, h)
    assert list(store) == [h] and store.read(h) == b"race" and store.temp_files() == []


def test_an_install_survives_gc_removing_the_empty_fan_out_directory(store, monkeypatch):
    h = hash_bytes(b"fan-out")
    fd, tmp = store._tempfile()
    os.write(fd, b"fan-out")
    os.close(fd)
    real_replace, calls = os.replace, []

    def flaky_replace(a, b):
        calls.append(b)
        if len(calls) == 1:  # gc's rmdir won the race once
            os.rmdir(os.path.dirname(b))
            raise FileNotFoundError(b)
        return real_replace(a, b)

    monkeypatch.setattr(os, "replace", flaky_replace)
    store._install(tmp, h)
    assert store.read(h) == b"fan-out" and len(calls) == 2


def test_streaming_write_of_a_large_file_does_not_load_it_in_memory(tmp_path):
    """A child process whose data segment may grow by only 64 MB stores a 256 MB file (and
    fails to read the same file into memory, so the limit is real)."""
    big = tmp_path / "sparse.bin"
    with open(big, "wb") as f:
        f.truncate(256 << 20)
        for off in range(0, 256 << 20, 8 << 20):
            f.seek(off)
            f.write(os.urandom(4096))
    warm = tmp_path / "warm.bin"
    warm.write_bytes(os.urandom(9 << 20))
    code = textwrap.dedent(f"""
        import resource, sys
        from e3logic.repo.objects import ObjectStore
        from e3logic.core.hashing import hash_file
        s = ObjectStore({str(tmp_path / 'objects')!r}, fsync=False)
        s.write(b"warm"); hash_file({str(warm)!r})  # imports and hashing threads
        vm = [l for l in open("/proc/self/status") if l.startswith("VmData")][0]
        base = int(vm.split()[1]) * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (base + (64 << 20), resource.RLIM_INFINITY))
        if sys.argv[1] == "read":
            open({str(big)!r}, "rb").read()
        else:
            print(s.write_file({str(big)!r}))
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    ok = subprocess.run([sys.executable, "-c", code, "store"], env=env, capture_output=True,
                        text=True)
    assert ok.returncode == 0, ok.stderr
    h = ok.stdout.strip()
    from e3logic.core.hashing import hash_file
    assert h == hash_file(big)
    assert ObjectStore(tmp_path / "objects").verify(h)
    control = subprocess.run([sys.executable, "-c", code, "read"], env=env, capture_output=True,
                             text=True)
    assert control.returncode != 0 and "MemoryError" in control.stderr


def test_memory_store_has_the_same_read_write_interface(tmp_path):
    m = MemoryStore()
    h = m.write(b"x")
    assert m.write(b"x") == h and m.read(h) == b"x" and m.exists(h) and list(m) == [h]
    with pytest.raises(NotFound):
        m.read(hash_bytes(b"y"))


# -- batches (group commit) ----------------------------------------------------------------------
def test_a_batch_object_is_readable_in_process_before_its_commit_and_installed_by_it(store):
    b = store.batch()
    h = b.write(b"tree bytes")
    assert store.read(h) == b"tree bytes"          # from the locked temp file
    assert not store.installed(h).exists()         # nothing another process could see yet
    b.commit()
    assert store.installed(h).exists() and store.pending == {}
    assert store.read(h) == b"tree bytes" and store.verify(h)
    assert store.temp_files() == []


def test_an_adopted_file_is_installed_by_hard_link_and_stays_readable_where_it_was(store, tmp_path):
    staged = tmp_path / "out-1"
    staged.write_bytes(b"task output")
    b = store.batch()
    h = b.adopt(str(staged))
    assert store.path(h) == staged                 # the next task reads the staged file
    b.commit()
    assert store.path(h) == store.installed(h) and store.read(h) == b"task output"
    assert staged.read_bytes() == b"task output"   # a task given the staged name can still open it
    assert os.stat(staged).st_ino == os.stat(store.installed(h)).st_ino


def test_a_batch_writes_each_object_once_and_skips_installed_ones(store):
    old = store.write(b"already here")
    b = store.batch()
    assert b.write(b"already here") == old and len(b) == 0
    b.write(b"new")
    b.write(b"new")
    assert len(b) == 1
    b.commit()
    assert sorted(store) == sorted([old, hash_bytes(b"new")])


def test_an_aborted_batch_leaves_no_object_and_no_temp_file(store, tmp_path):
    staged = tmp_path / "out-2"
    staged.write_bytes(b"abandoned output")
    b = store.batch()
    h1 = b.write(b"abandoned tree")
    h2 = b.adopt(str(staged))
    b.abort()
    assert not store.exists(h1) and not store.exists(h2) and store.pending == {}
    assert store.temp_files() == [] and list(store) == []
    assert staged.exists()                          # the staged file belongs to its writer


def test_a_batch_syncs_every_object_before_installing_any(tmp_path, monkeypatch):
    from e3logic.repo import objects as O

    store = O.ObjectStore(tmp_path / "objects", fsync=True)
    events = []
    real_install = O.Batch._install
    monkeypatch.setattr(O, "sync_files",
                        lambda paths, fds=(): events.append(("sync", len(paths) + len(fds))))
    monkeypatch.setattr(O.Batch, "_install",
                        lambda *a, **kw: (events.append(("install",)), real_install(*a, **kw)))
    b = store.batch()
    for i in range(3):
        b.write(f"object {i}".encode())
    staged = tmp_path / "staged"
    staged.write_bytes(b"output")
    b.adopt(str(staged))
    b.commit()
    assert events == [("sync", 4)] + [("install",)] * 4
    assert all(store.verify(h) for h in store) and len(list(store)) == 4
    assert all(not os.stat(store.installed(h)).st_mode & 0o222 for h in store)  # read-only


def test_sync_files_fsyncs_many_files_at_once(tmp_path, monkeypatch):
    from e3logic.repo import objects as O

    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    paths = []
    for i in range(5):
        p = tmp_path / f"f{i}"
        p.write_bytes(b"x")
        paths.append(str(p))
    O.sync_files(paths)
    assert len(synced) == 5


def _files(tmp_path, n):
    paths = []
    for i in range(n):
        p = tmp_path / f"f{i}"
        p.write_bytes(b"x")
        paths.append(str(p))
    return paths


def test_sync_files_makes_many_files_durable_with_one_syncfs_per_filesystem(tmp_path, monkeypatch):
    from e3logic.repo import objects as O

    calls, fsynced = [], []
    monkeypatch.setattr(O, "_syncfs", lambda fd: (calls.append(os.fstat(fd).st_dev), 0)[1])
    monkeypatch.setattr(os, "fsync", lambda fd: fsynced.append(fd))
    paths = _files(tmp_path, O.SYNCFS_MIN)
    fd = os.open(paths[0], os.O_RDONLY)
    try:
        O.sync_files(paths[1:], [fd])
    finally:
        os.close(fd)
    assert calls == [os.stat(tmp_path).st_dev] and fsynced == []


def test_sync_files_fsyncs_each_file_of_a_small_batch_or_without_syncfs(tmp_path, monkeypatch):
    from e3logic.repo import objects as O

    calls, synced = [], []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    monkeypatch.setattr(O, "_syncfs", lambda fd: (calls.append(fd), 0)[1])
    O.sync_files(_files(tmp_path, O.SYNCFS_MIN - 1))
    assert calls == [] and len(synced) == O.SYNCFS_MIN - 1
    monkeypatch.setattr(O, "_syncfs", False)  # no syncfs in this libc
    synced.clear()
    O.sync_files(_files(tmp_path, O.SYNCFS_MIN + 3))
    assert len(synced) == O.SYNCFS_MIN + 3


def test_a_failing_syncfs_is_an_error_naming_it(tmp_path, monkeypatch):
    import ctypes
    import errno

    import pytest

    from e3logic.repo import objects as O

    def failing(fd):
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(O, "_syncfs", failing)
    with pytest.raises(OSError, match="syncfs") as e:
        O.sync_files(_files(tmp_path, O.SYNCFS_MIN))
    assert e.value.errno == errno.EIO


def test_syncfs_is_used_only_where_the_kernel_reports_its_writeback_errors():
    from e3logic.repo import objects as O

    ok = O._kernel_reports_syncfs_errors
    assert ok("6.18.44-fc-v657") and ok("5.8.0") and ok("5.10.0-23-amd64")
    assert not ok("5.4.0-150-generic") and not ok("4.18.0-477.el8.x86_64") and not ok("weird")
    u = os.uname()
    if u.sysname == "Linux" and ok(u.release):
        assert O._syncfs_fn() is not None  # found in the C library


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_batch_of_any_size_holds_one_descriptor_until_it_ends(tmp_path):
    store = ObjectStore(tmp_path / "objects", fsync=True)
    before = _open_fds()
    b = store.batch()
    hs = [b.write(f"object {i}".encode()) for i in range(300)]
    assert _open_fds() - before == 1                # the staging directory's lock
    assert all(store.read(h) == f"object {i}".encode() for i, h in enumerate(hs))
    b.commit()
    assert _open_fds() == before
    assert store.temp_files() == [] and sorted(store) == sorted(hs)


def test_gc_leaves_an_open_batch_alone_and_takes_one_left_by_a_dead_writer(tmp_path):
    store = ObjectStore(tmp_path / "objects", fsync=False)
    b = store.batch()
    h = b.write(b"staged, not yet committed")
    assert store.sweep_temp(0, now=time.time() + 3600) == (0, 0)
    b.commit()
    assert store.read(h) == b"staged, not yet committed"
    left = store.tmp / "b-1-1.d"                    # a killed writer's staging directory
    left.mkdir()
    (left / "1").write_bytes(b"12345")
    assert store.sweep_temp(0, now=time.time() + 3600) == (1, 5)
    assert store.temp_files() == []


def test_the_first_writer_of_a_process_removes_temp_files_left_by_killed_writers(tmp_path):
    store = ObjectStore(tmp_path / "objects", fsync=False)
    store.write(b"first")
    old = store.tmp / "w-killed.part"
    old.write_bytes(b"x" * 1000)
    young = store.tmp / "w-just-created.part"
    young.write_bytes(b"y")
    t = time.time() - 3600
    os.utime(old, (t, t))
    later = ObjectStore(tmp_path / "objects", fsync=False)  # the next command
    later.write(b"second")
    assert not old.exists() and young.exists()      # young: maybe a writer not yet locked
