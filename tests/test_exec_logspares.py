"""Spare log files: a task's log path is a link to a spare empty file; silent tasks hand it
back, so a run of silent tasks creates a handful of files, not one per task."""
import os

from e3logic.exec.logspares import LogSpares, spare_prefix


def spares_in(d):
    return sorted(p.name for p in d.iterdir() if p.name.startswith(spare_prefix("r1")))


def test_a_silent_task_leaves_no_log_and_its_spare_serves_the_next_task(tmp_path):
    s = LogSpares(tmp_path, "r1")
    first = s.link(str(tmp_path / "a.log"))
    assert (tmp_path / "a.log").samefile(first)
    s.settle(first, str(tmp_path / "a.log"), reuse=True)
    assert not (tmp_path / "a.log").exists()
    second = s.link(str(tmp_path / "b.log"))
    assert second == first and s.made == 1
    assert (tmp_path / "b.log").samefile(first)


def test_output_written_while_the_task_runs_is_the_log_and_the_spare_name_goes(tmp_path):
    s = LogSpares(tmp_path, "r1")
    log = str(tmp_path / "a.log")
    spare = s.link(log)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)  # as a runtime opens it
    os.write(fd, b"hello\n")
    assert (tmp_path / "a.log").read_bytes() == b"hello\n"  # streamed: readable meanwhile
    os.close(fd)
    s.settle(spare, log, reuse=True)
    assert (tmp_path / "a.log").read_bytes() == b"hello\n"
    assert spares_in(tmp_path) == [] and s.free == []
    assert s.link(str(tmp_path / "b.log")) != spare and s.made == 2  # a fresh spare


def test_an_earlier_executions_log_is_truncated_in_place_without_a_spare(tmp_path):
    (tmp_path / "a.log").write_bytes(b"old run\n")
    ino = (tmp_path / "a.log").stat().st_ino
    s = LogSpares(tmp_path, "r1")
    assert s.link(str(tmp_path / "a.log")) is None
    assert (tmp_path / "a.log").read_bytes() == b"" and (tmp_path / "a.log").stat().st_ino == ino
    assert len(s.free) == 1 and not (tmp_path / "a.log").samefile(s.free[0])  # kept for later


def test_a_spare_of_a_task_that_did_not_end_normally_is_not_reused(tmp_path):
    s = LogSpares(tmp_path, "r1")
    spare = s.link(str(tmp_path / "a.log"))
    s.settle(spare, str(tmp_path / "a.log"), reuse=False)
    assert not (tmp_path / "a.log").exists() and spares_in(tmp_path) == [] and s.free == []


def test_close_removes_the_free_spares(tmp_path):
    s = LogSpares(tmp_path, "r1")
    spares = [s.link(str(tmp_path / f"{i}.log")) for i in range(3)]
    for i, sp in enumerate(spares):
        s.settle(sp, str(tmp_path / f"{i}.log"), reuse=True)
    assert len(spares_in(tmp_path)) == 3
    s.close()
    assert list(tmp_path.iterdir()) == []
