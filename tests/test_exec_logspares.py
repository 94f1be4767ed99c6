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


def test_an_earlier_executions_log_is_replaced_not_written_into(tmp_path):
    old = tmp_path / "a.log"
    old.write_bytes(b"old run\n")
    keep = os.open(old, os.O_RDONLY)  # e.g. the same execution running in another workspace
    try:
        s = LogSpares(tmp_path, "r1")
        spare = s.link(str(old))
        assert (tmp_path / "a.log").samefile(spare) and (tmp_path / "a.log").read_bytes() == b""
        assert os.read(keep, 100) == b"old run\n"  # the other file is left as it was
        assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".link")] == []
    finally:
        os.close(keep)


def test_a_spare_whose_log_path_another_run_took_over_is_left_to_it(tmp_path):
    s = LogSpares(tmp_path, "r1")
    spare = s.link(str(tmp_path / "a.log"))
    other = LogSpares(tmp_path, "r2")
    theirs = other.link(str(tmp_path / "a.log"))  # the same execution, elsewhere, meanwhile
    s.settle(spare, str(tmp_path / "a.log"), reuse=True)
    assert (tmp_path / "a.log").samefile(theirs)  # their log stays
    assert s.free == [spare]  # ours had no other name: safe to hand out again


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


def test_a_spare_with_another_name_left_is_not_handed_out_again(tmp_path):
    s = LogSpares(tmp_path, "r1")
    spare = s.link(str(tmp_path / "a.log"))
    os.link(spare, tmp_path / "elsewhere.log")  # someone else's name for the same file
    s.settle(spare, str(tmp_path / "a.log"), reuse=True)
    assert s.free == [] and not os.path.exists(spare)
    assert (tmp_path / "elsewhere.log").exists()
