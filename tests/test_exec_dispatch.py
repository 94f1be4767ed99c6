"""`exec.dispatch.TaskRunner`: an executor Task becomes a runtime TaskSpec (inputs as read-only
object-store files, the log at `.e3/logs/<execution>.log`, leases and names in the
environment) and the runtime's result becomes a `Finished`."""
from __future__ import annotations

import json

import anyio
import pytest

from e3logic.api import Repo
from e3logic.exec.dispatch import TaskRunner
from e3logic.exec.episodes import Episode
from e3logic.exec.jobs import Job, Task
from e3logic.exec.procs import start_time
from e3logic.exec.runtimes import Runtimes
from e3logic.repo.trees import blob_entry

ENV_ARGV = ("sh", "-c", 'printf "%s|%s|%s|%s|" "$E3_DATAFLOW" "$E3_EXECUTION" "$E3_PROFILE" '
            '"$E3_LEASES" > {output}; cat {inputs} >> {output}; echo to-the-log; pwd >&2')


@pytest.fixture
def repo(tmp_path):
    return Repo.init(tmp_path / "p").r


def job(runtime="shell", argv=ENV_ARGV, entry=None, modules_hash="", **kw):
    base = dict(name="d", task_hash="t" * 64, runtime=runtime, entry=entry, argv=argv,
                inputs=("inputs/a", "inputs/b"), output_path="outputs/d/o", deps=frozenset(),
                leases=(("db/sales", "write"),), profile="rw", modules_hash=modules_hash)
    base.update(kw)
    return Job(**base)


class Host:
    """The executor's side of the attempt: records the process group it is told of."""

    def __init__(self, ep, groups):
        self.ep, self.groups, self.leases, self.profile = ep, groups, (), "ro"

    def started(self, pgid):
        self.groups.append((self.ep.episode, pgid, start_time(pgid)))


def run(repo, j, ins, modules_tree=None, key="k" * 64):
    groups = []

    async def main():
        async with Runtimes(workers=1, cache_dir=repo.dir / "cache") as rt:
            runner = TaskRunner(repo, rt, modules_tree)
            ep = Episode("r1:d", "r1", j.name, key)
            res = await runner(Task(j, key, ins, str(repo.dir / "out-test"), ep, Host(ep, groups)))
            return res, ep

    res, ep = anyio.run(main)
    return res, ep, groups


def stored(repo, *blobs):
    return tuple((f"inputs/{n}", repo.objects.write(b), "raw") for n, b in zip("ab", blobs))


def test_a_shell_job_reads_store_files_and_sees_its_names_and_leases_in_the_environment(repo):
    ins = stored(repo, b"A\n", b"B\n")
    res, ep, groups = run(repo, job(), ins)
    assert res.status == "ok" and res.output_format == "raw"
    out = open(res.output_file, "rb").read().decode()
    name, key, profile, leases, rest = out.split("|")
    assert (name, key, profile) == ("d", "k" * 64, "rw")
    assert json.loads(leases) == [["db/sales", "write"]]
    assert rest == "A\nB\n"
    assert res.inputs == tuple((p, h) for p, h, _ in ins)
    assert res.started <= res.ended


def test_the_log_is_streamed_to_the_execution_log_and_the_task_runs_in_the_project(repo):
    res, _, _ = run(repo, job(), stored(repo, b"", b""))
    log = (repo.logs_dir / f"{'k' * 64}.log").read_text()
    assert log == f"to-the-log\n{repo.root}\n"


def test_a_second_execution_of_the_same_key_leaves_only_its_own_log(repo):
    run(repo, job(), stored(repo, b"", b""))
    run(repo, job(argv=("sh", "-c", "echo second; : > {output}")), stored(repo, b"", b""))
    assert (repo.logs_dir / f"{'k' * 64}.log").read_text() == "second\n"


@pytest.mark.parametrize("second, log", [("pass", ""), ("print('second')", "second\n")])
def test_a_second_python_execution_of_the_same_key_leaves_only_its_own_log(repo, second, log):
    def python_job(body, **kw):
        src = f"def f(a, b):\n    {body}\n    return a + b\n".encode()
        tree = repo.trees.set_many(repo.trees.empty,
                                   {"m.py": blob_entry(repo.objects.write(src), len(src))})
        j = job(runtime="python", argv=None, entry="m:f", modules_hash=f"mods-{len(body)}",
                leases=(), **kw)
        return run(repo, j, stored(repo, b"", b""), modules_tree=tree)[0]

    assert python_job("print('first ' * 100)").status == "ok"
    # an io budget is polled from the start: the earlier execution's log may not count
    res = python_job(second, budget=(("io_bytes", 100),))
    assert res.status == "ok", res.reason
    assert (repo.logs_dir / f"{'k' * 64}.log").read_text() == log


def test_the_process_group_is_reported_to_the_episode_and_the_caller(repo):
    _, ep, groups = run(repo, job(), stored(repo, b"", b""))
    assert ep.pgid and groups == [("r1:d", ep.pgid, groups[0][2])]
    assert groups[0][2]  # the leader's start time, for orphan killing


def test_a_failing_command_is_a_fail_with_exit_code_and_no_output_file(repo):
    res, _, _ = run(repo, job(argv=("sh", "-c", "exit 7")), stored(repo, b"", b""))
    assert (res.status, res.exit_code, res.reason) == ("fail", 7, "exit 7")
    assert res.output_file is None and res.output_hash is None


def test_a_python_job_imports_its_module_from_the_modules_tree_in_the_store(repo):
    src = b"def add(a, b):\n    return a + b\n"
    tree = repo.trees.set_many(repo.trees.empty,
                               {"m.py": blob_entry(repo.objects.write(src), len(src))})
    ins = tuple((f"inputs/{n}", repo.objects.write(v), "json") for n, v in zip("ab", (b"2", b"3")))
    j = job(runtime="python", argv=None, entry="m:add", modules_hash="mods-1", leases=())
    res, _, _ = run(repo, j, ins, modules_tree=tree)
    assert (res.status, res.output_format) == ("ok", "json"), res.reason
    assert open(res.output_file, "rb").read() == b"5"
