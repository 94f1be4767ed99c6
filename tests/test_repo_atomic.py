"""repo.atomic: whole-file replacement (temp file in the same directory, fsync, rename)."""
import multiprocessing as mp
import os
import stat

import pytest

from e3logic.repo.atomic import write_atomic


def test_write_creates_parent_directories_and_the_file(tmp_path):
    p = tmp_path / "a" / "b" / "f"
    write_atomic(p, b"data")
    assert p.read_bytes() == b"data"


def test_the_file_is_an_ordinary_readable_file_not_a_private_temp_file(tmp_path):
    p = tmp_path / "f"
    write_atomic(p, b"data")
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_a_failed_write_leaves_the_old_content_and_no_temp_file(tmp_path, monkeypatch):
    p = tmp_path / "f"
    write_atomic(p, b"old")

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_atomic(p, b"new")
    assert p.read_bytes() == b"old"
    assert [q.name for q in tmp_path.iterdir()] == ["f"]


def _hammer(path, tag, n):
    for _ in range(n):
        write_atomic(path, tag * 10000, fsync=False)


def test_concurrent_writers_never_expose_a_mixed_or_partial_file(tmp_path):
    p = tmp_path / "f"
    write_atomic(p, b"a" * 10000)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_hammer, args=(p, t, 200)) for t in (b"a", b"b")]
    for q in procs:
        q.start()
    seen = set()
    while any(q.is_alive() for q in procs):
        data = p.read_bytes()
        seen.add((len(data), data[:1], data.count(data[:1])))
    for q in procs:
        q.join()
    assert all(length == 10000 and count == 10000 for length, _, count in seen)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f"]


@pytest.mark.parametrize("mask, want", [(0o077, 0o600), (0o002, 0o664), (0o022, 0o644)])
def test_a_written_file_follows_the_umask(tmp_path, mask, want):
    import subprocess
    import sys

    code = ("import os, sys; os.umask(int(sys.argv[2], 8)); "
            "from e3logic.repo.atomic import write_atomic; write_atomic(sys.argv[1], b'x')")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "f"), oct(mask)[2:]], check=True)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == want
