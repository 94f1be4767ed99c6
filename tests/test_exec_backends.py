"""`exec.backends`: the backends behind the `Backend` protocol, run on real task processes and
threads (a repository's object store, `TaskRunner`, `Runtimes`)."""
import os
import time

import anyio
import pytest

from e3logic.api import Repo
from e3logic.core.errors import UsageError
from e3logic.exec.backends import BACKENDS, Done, backend_for, configured_executor, run_one
from e3logic.exec.episodes import Episode
from e3logic.exec.jobs import Job, Task
from e3logic.exec.procs import group_alive
from e3logic.repo.trees import blob_entry

STEPS = b"import os\ndef pid(x):\n    return {'pid': os.getpid(), 'x': x}\n"


@pytest.fixture
def repo(tmp_path):
    return Repo.init(tmp_path / "p").r


def task(repo, runtime="shell", argv=("sh", "-c", "cat {inputs} > {output}"), entry=None,
         modules_hash="", n=1):
    ins = (("inputs/x", repo.objects.write(b"7"), "json"),)
    job = Job(name=f"d{n}", task_hash="t" * 64, runtime=runtime, entry=entry,
              argv=argv, inputs=("inputs/x",), output_path=f"outputs/d{n}/o",
              deps=frozenset(), modules_hash=modules_hash)
    (repo.dir / "staging").mkdir(exist_ok=True)
    key = f"{n:064d}"
    return Task(job, key, ins, str(repo.dir / "staging" / f"out-{n}"),
                Episode(f"r1:d{n}", "r1", job.name, key))


def modules(repo):
    tree = repo.trees.set_many(repo.trees.empty,
                               {"steps.py": blob_entry(repo.objects.write(STEPS), len(STEPS))})
    return tree


def one(backend, t):
    async def main():
        try:
            return await run_one(backend, t)
        finally:
            await backend.close()

    return anyio.run(main)


def test_an_unknown_backend_is_a_usage_error_naming_the_known_ones(repo):
    with pytest.raises(UsageError) as e:
        backend_for("ray", repo, workers=1)
    assert str(e.value) == "unknown executor 'ray'; use one of inline, threads, processes, dask"
    assert list(BACKENDS) == ["inline", "threads", "processes", "dask"]


def test_only_a_cluster_backend_takes_an_address(repo):
    with pytest.raises(UsageError) as e:
        backend_for("threads:tcp://h:8786", repo, workers=1)
    assert "takes no address" in str(e.value) and "dask:tcp://HOST:PORT" in str(e.value)


@pytest.mark.parametrize("name", list(BACKENDS))
def test_every_backend_runs_a_shell_task_to_an_ok_finished(repo, name):
    res = one(backend_for(name, repo, workers=1), task(repo))
    assert (res.status, res.reason) == ("ok", "")
    assert open(res.output_file, "rb").read() == b"7"


def test_the_cooperative_backend_runs_a_process_task_inside_submit(repo):
    backend = backend_for("inline", repo, workers=1)

    async def main():
        try:
            return await backend.submit(task(repo))
        finally:
            await backend.close()

    handle = anyio.run(main)
    assert isinstance(handle, Done) and handle.result.status == "ok"


@pytest.mark.parametrize("name,in_engine", [("threads", True), ("inline", True),
                                            ("processes", False)])
def test_inline_tasks_run_in_the_engine_unless_the_backend_isolates_it(repo, name, in_engine):
    t = task(repo, runtime="inline", argv=None, entry="steps:pid", modules_hash="m-pid")
    res = one(backend_for(name, repo, workers=1, modules_tree=modules(repo)), t)
    assert res.status == "ok", res.reason
    import json
    pid = json.loads(open(res.output_file).read())["pid"]
    assert (pid == os.getpid()) is in_engine


def test_cancel_ends_one_running_attempt_with_cxl_and_its_reason(repo):
    backend = backend_for("threads", repo, workers=2)
    slow = task(repo, argv=("sleep", "30"), n=1)
    quick = task(repo, n=2)
    out = {}

    async def main():
        async def wait(t):
            out[t.job.name] = await (await backend.submit(t))

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait, slow)
                tg.start_soon(wait, quick)
                while slow.episode.pgid is None:
                    await anyio.sleep(0.01)
                assert backend.cancel(slow.episode.episode, "enough")
                assert not backend.cancel("r1:nobody", "enough")
        finally:
            await backend.close()

    t0 = time.monotonic()
    anyio.run(main)
    assert time.monotonic() - t0 < 10
    assert (out["d1"].status, out["d1"].reason) == ("cxl", "enough")
    assert out["d2"].status == "ok"
    assert not group_alive(slow.episode.pgid)


def test_warm_starts_a_pool_worker_for_each_pooled_task_up_to_the_pool_size(repo):
    backend = backend_for("threads", repo, workers=2)
    try:
        backend.warm(["python", "shell", "inline"])  # one pooled task here
        assert len(backend.runtimes.live_groups()) == 1
        iso = backend_for("processes", repo, workers=2)
        try:
            iso.warm(["python", "inline", "inline", "shell"])  # inline is pooled here: 2 max
            assert len(iso.runtimes.live_groups()) == 2
        finally:
            iso.kill()
            anyio.run(iso.close)
    finally:
        backend.kill()
        anyio.run(backend.close)


@pytest.mark.parametrize("config, expected", [
    ({}, "threads"),
    ({"defaults": {"executor": "processes"}}, "processes"),
    ({"defaults": {"executor": "processes"}, "executor": {"backend": "dask"}}, "dask"),
    ({"executor": {"backend": "dask", "address": "tcp://h:8786"}}, "dask:tcp://h:8786"),
    ({"executor": {"address": "tcp://h:8786", "connect_timeout": 3}}, "dask:tcp://h:8786"),
])
def test_the_executor_table_of_e3_toml_names_the_default_executor(config, expected):
    assert configured_executor(config) == expected


@pytest.mark.parametrize("table, words", [
    ({"backend": "dask", "adress": "x"}, "unknown key 'adress' in [executor]"),
    ({"backend": "threads", "address": "tcp://h:8786"}, "takes no address"),
    ({"backend": "ray"}, "unknown executor 'ray'"),
    ({"backend": "dask", "connect_timeout": 0}, "connect_timeout"),
    ({"address": ""}, "[executor] address"),
])
def test_a_bad_executor_table_is_a_usage_error_naming_what_to_fix(table, words):
    with pytest.raises(UsageError) as e:
        configured_executor({"executor": table})
    assert words in str(e.value)
