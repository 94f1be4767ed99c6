"""The python worker pool: persistent processes, module import once per hash, crashes,
budgets, cancellation, clean shutdown — real processes, signals and rlimits."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from e3logic.core.hashing import hash_bytes
from e3logic.exec import procs
from e3logic.exec.runtimes import InputRef, Runtimes, TaskResult, TaskSpec
from e3logic.exec.taskcode import materialize

from tests.helpers import ROOT
from tests.test_exec_procs import live_with_arg, marker, wait_until
from tests.test_exec_runtimes import FakeClock

TASKS = b'''
import os, sys, time, subprocess
import helpers
from pkg.sub import LABEL

IMPORTS_LOG = os.environ.get("E3_TEST_IMPORTS")
if IMPORTS_LOG:
    with open(IMPORTS_LOG, "a") as f:
        f.write("imported\\n")

def combine(cfg, raw):
    print("combining", cfg["n"])
    return {"label": LABEL, "n": helpers.inc(cfg["n"]), "raw": raw.decode(), "pid": os.getpid()}

def as_bytes(raw):
    return raw[::-1]

def pid(*_):
    return os.getpid()

def env(*_):
    return {"leases": os.environ.get("E3_LEASES"), "cwd": os.getcwd()}

def boom(*_):
    print("about to fail")
    raise KeyError("missing")

def exit_hard(*_):
    os._exit(3)

def segfault(*_):
    import ctypes
    ctypes.string_at(0)

def sleep_with_child(seconds):
    subprocess.Popen(["sleep", seconds])
    time.sleep(float(seconds))
    return 1

def nap(seconds):
    time.sleep(float(seconds))
    return os.getpid()

def spin(*_):
    while True:
        pass

def hog(*_):
    return len(bytearray(300 << 20))

def big(*_):
    return b"x" * 10_000

def chatty(*_):
    while True:
        print("x" * 1000)

def gen(*_):
    yield 1

def not_json(*_):
    return object()

def system_exit(*_):
    sys.exit(4)

def burn(seconds):
    t = time.process_time()
    while time.process_time() - t < float(seconds):
        pass
    return 1

def burn_then_die(seconds):
    burn(seconds)
    os._exit(5)
'''


def modules():
    return {"tasks.py": TASKS,
            "helpers.py": b"def inc(n):\n    return n + 1\n",
            "pkg/__init__.py": b"",
            "pkg/sub.py": b"LABEL = 'sub'\n"}


@pytest.fixture
def rt(tmp_path):
    r = Runtimes(1, tmp_path / "cache")
    yield r
    anyio.run(r.aclose)


def run(rt: Runtimes, spec: TaskSpec, **kw) -> TaskResult:
    return anyio.run(lambda: rt.run(spec, **kw))


def py(tmp_path, entry, inputs=(), h="tasks-v1", **kw) -> TaskSpec:
    kw.setdefault("output", str(tmp_path / "out" / entry.replace(":", "_")))
    kw.setdefault("log_path", str(tmp_path / "logs" / f"{entry.replace(':', '_')}.log"))
    return TaskSpec("python", entry=entry, modules_hash=h, modules=modules,
                    inputs=tuple(inputs), **kw)


def json_input(tmp_path, name, value) -> InputRef:
    p = tmp_path / "in" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(value))
    return InputRef(str(p), "json", f"inputs/{name}")


def raw_input(tmp_path, name, data: bytes) -> InputRef:
    p = tmp_path / "in" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return InputRef(str(p), "raw", f"inputs/{name}")


def test_a_python_task_gets_decoded_inputs_in_order_and_its_result_as_canonical_json(rt, tmp_path):
    spec = py(tmp_path, "tasks:combine",
              [json_input(tmp_path, "cfg", {"n": 41}), raw_input(tmp_path, "r", "ü".encode())])
    res = run(rt, spec)
    assert res.status == "ok" and res.output_format == "json" and res.reason == ""
    out = Path(spec.output).read_bytes()
    pid = json.loads(out)["pid"]
    assert out == f'{{"label":"sub","n":42,"pid":{pid},"raw":"ü"}}'.encode()
    assert pid != os.getpid() and res.pgid == pid
    assert procs.proc_stat(pid).session == pid  # its own session and process group
    assert Path(spec.log_path).read_text() == "combining 41\n"


def test_a_python_task_returning_bytes_is_stored_raw(rt, tmp_path):
    spec = py(tmp_path, "tasks:as_bytes", [raw_input(tmp_path, "r", b"abc")])
    res = run(rt, spec)
    assert (res.status, res.output_format) == ("ok", "raw")
    assert Path(spec.output).read_bytes() == b"cba"
    # the worker says what it wrote: the engine adopts the output without reading it back
    assert (res.output_hash, res.output_size) == (hash_bytes(b"cba"), 3)


def test_a_file_left_at_the_output_path_is_replaced_not_written_into(rt, tmp_path):
    # a killed command's staged output may still be a hard link into the object store
    spec = py(tmp_path, "tasks:as_bytes", [raw_input(tmp_path, "r", b"abc")])
    stored = tmp_path / "stored"
    stored.write_bytes(b"object bytes")
    Path(spec.output).parent.mkdir(parents=True, exist_ok=True)
    os.link(stored, spec.output)
    res = run(rt, spec)
    assert res.status == "ok", res.reason
    assert Path(spec.output).read_bytes() == b"cba"
    assert stored.read_bytes() == b"object bytes"


def test_a_failed_python_task_reports_no_output_hash(rt, tmp_path):
    res = run(rt, py(tmp_path, "tasks:boom"))
    assert res.status == "fail" and res.output_hash is None and res.output_size is None


def test_prestarted_workers_serve_the_first_tasks_and_no_more_than_the_pool_size_start(tmp_path):
    rt = Runtimes(2, tmp_path / "cache")
    try:
        rt.prestart(5)  # capped at the pool's size
        started = sorted(w.pid for w in rt.pool.workers())
        assert len(started) == 2 and rt.pool.spawned == 2
        pids = {json.loads(_out(rt, py(tmp_path, "tasks:pid"))) for _ in range(3)}
        assert pids <= set(started) and rt.pool.spawned == 2
    finally:
        anyio.run(rt.aclose)


def test_workers_persist_and_import_modules_once_per_content_hash(rt, tmp_path, monkeypatch):
    imports = tmp_path / "imports.log"
    monkeypatch.setenv("E3_TEST_IMPORTS", str(imports))
    pids = {json.loads(_out(rt, py(tmp_path, "tasks:pid"))) for _ in range(4)}
    assert len(pids) == 1 and rt.pool.spawned == 1
    assert imports.read_text() == "imported\n"
    other = py(tmp_path, "tasks:pid", h="tasks-v2")  # same code, another hash: own namespace
    assert json.loads(_out(rt, other)) in pids
    assert imports.read_text() == "imported\nimported\n"


def _out(rt, spec) -> str:
    res = run(rt, spec)
    assert res.ok, res
    return Path(spec.output).read_text()


def test_two_package_versions_with_the_same_module_names_do_not_collide(rt, tmp_path):
    def version(v):
        return lambda: {"tasks.py": b"import helpers\ndef f():\n    return helpers.V\n",
                        "helpers.py": f"V = {v!r}\n".encode()}
    a = TaskSpec("python", entry="tasks:f", modules_hash="ver-a", modules=version("a"),
                 output=str(tmp_path / "a"))
    b = TaskSpec("python", entry="tasks:f", modules_hash="ver-b", modules=version("b"),
                 output=str(tmp_path / "b"))
    assert [_out(rt, a), _out(rt, b), _out(rt, a)] == ['"a"', '"b"', '"a"']


def line_of(source: bytes, text: str) -> int:
    """The line number of the first line of `source` holding `text`."""
    return next(i for i, line in enumerate(source.decode().splitlines(), 1) if text in line)


def test_an_exception_is_a_failure_with_reason_and_logged_traceback_and_the_worker_survives(rt, tmp_path):
    first = json.loads(_out(rt, py(tmp_path, "tasks:pid")))
    spec = py(tmp_path, "tasks:boom")
    res = run(rt, spec)
    where = line_of(TASKS, 'raise KeyError("missing")')
    assert (res.status, res.reason) == ("fail", f"KeyError: 'missing' (tasks.py:{where})")
    log = Path(spec.log_path).read_text()
    assert log.startswith("about to fail\nTraceback (most recent call last):\n")
    assert f'  File "tasks.py", line {where}, in boom\n' in log and "worker_main" not in log
    assert "cache" not in log  # the module as authored, not where it was materialized
    assert not Path(spec.output).exists()
    assert json.loads(_out(rt, py(tmp_path, "tasks:pid"))) == first


def test_sys_exit_in_a_task_is_a_failure_not_a_dead_worker(rt, tmp_path):
    res = run(rt, py(tmp_path, "tasks:system_exit"))
    assert (res.status, res.reason) == ("fail", f"SystemExit: 4 (tasks.py:{line_of(TASKS, 'sys.exit(4)')})")
    assert rt.pool.spawned == 1 and run(rt, py(tmp_path, "tasks:pid")).ok


def test_a_worker_that_exits_hard_is_a_failure_and_is_replaced(rt, tmp_path):
    first = json.loads(_out(rt, py(tmp_path, "tasks:pid")))
    res = run(rt, py(tmp_path, "tasks:exit_hard"))
    assert (res.status, res.reason, res.exit_code) == ("fail", "python worker died (exit 3)", 3)
    assert json.loads(_out(rt, py(tmp_path, "tasks:pid"))) != first
    assert rt.pool.spawned == 2 and first not in rt.live_groups()


def test_a_task_that_kills_its_worker_is_charged_only_its_own_cpu(rt, tmp_path):
    """The worker's CPU before the task (start-up, earlier tasks) is not the task's."""
    first = run(rt, py(tmp_path, "tasks:burn", [json_input(tmp_path, "s", "0.6")]))
    assert first.ok and first.cpu_s >= 0.5
    res = run(rt, py(tmp_path, "tasks:burn_then_die", [json_input(tmp_path, "s", "0.1")]))
    assert res.reason == "python worker died (exit 5)" and res.pgid == first.pgid
    assert 0.05 <= res.cpu_s < 0.45


def test_a_segfaulting_task_is_a_failure_and_the_pool_replaces_the_worker(rt, tmp_path):
    res = run(rt, py(tmp_path, "tasks:segfault"))
    assert (res.status, res.reason) == ("fail", "python worker died (killed by SIGSEGV)")
    assert res.exit_code == -signal.SIGSEGV
    assert run(rt, py(tmp_path, "tasks:pid")).ok and rt.pool.spawned == 2


def test_a_generator_or_non_json_result_is_a_failure_with_a_clear_reason(rt, tmp_path):
    res = run(rt, py(tmp_path, "tasks:gen"))
    assert res.status == "fail" and "returned a generator" in res.reason
    res = run(rt, py(tmp_path, "tasks:not_json"))
    assert res.status == "fail"
    assert res.reason == ("output is not JSON-serializable: TypeError: Object of type object "
                          "is not JSON serializable")


def test_env_is_visible_during_the_call_and_gone_afterwards(rt, tmp_path):
    (tmp_path / "wd").mkdir()
    with_env = py(tmp_path, "tasks:env", env={"E3_LEASES": "gpu/0:write"}, cwd=str(tmp_path / "wd"),
                  output=str(tmp_path / "e1"))
    assert json.loads(_out(rt, with_env)) == {"leases": "gpu/0:write", "cwd": str(tmp_path / "wd")}
    after = json.loads(_out(rt, py(tmp_path, "tasks:env", output=str(tmp_path / "e2"))))
    assert after["leases"] is None and after["cwd"] != str(tmp_path / "wd")


def test_a_python_task_over_its_wall_budget_kills_the_worker_group(rt, tmp_path):
    m = marker()
    spec = py(tmp_path, "tasks:sleep_with_child", [json_input(tmp_path, "s", m)],
              budget={"wall_s": 1})
    res = run(rt, spec)
    assert (res.status, res.reason, res.budget) == ("fail", "budget wall_s=1 exceeded", "wall_s")
    assert not procs.group_members(res.pgid) and not live_with_arg(m)
    assert run(rt, py(tmp_path, "tasks:pid")).ok and rt.pool.spawned == 2


def test_a_python_task_over_its_cpu_budget_fails_and_the_worker_is_replaced(rt, tmp_path):
    res = run(rt, py(tmp_path, "tasks:spin", budget={"cpu_s": 0.5}))
    assert (res.status, res.reason, res.budget) == ("fail", "budget cpu_s=0.5 exceeded", "cpu_s")
    assert 0.5 <= res.cpu_s
    assert run(rt, py(tmp_path, "tasks:pid")).ok and rt.pool.spawned == 2


def test_a_worker_killed_by_sigxcpu_counts_as_over_its_cpu_budget_and_is_replaced(tmp_path):
    rt = Runtimes(1, tmp_path / "cache", poll_s=60)  # no polling: only RLIMIT_CPU can stop it
    try:
        res = run(rt, py(tmp_path, "tasks:spin", budget={"cpu_s": 0.5}))
        assert (res.status, res.reason, res.budget) == ("fail", "budget cpu_s=0.5 exceeded", "cpu_s")
        assert res.exit_code == -signal.SIGXCPU
        assert run(rt, py(tmp_path, "tasks:pid")).ok and rt.pool.spawned == 2
    finally:
        anyio.run(rt.aclose)


def test_a_python_task_over_its_memory_budget_fails_and_the_next_task_is_unlimited(rt, tmp_path):
    res = run(rt, py(tmp_path, "tasks:hog", budget={"mem_mb": 100}))
    assert (res.status, res.reason, res.budget) == ("fail", "budget mem_mb=100 exceeded", "mem_mb")
    ok = run(rt, py(tmp_path, "tasks:hog"))  # no budget: the same allocation works
    assert ok.ok


def test_a_python_task_over_its_io_budget_fails_without_writing_output(rt, tmp_path):
    spec = py(tmp_path, "tasks:big", budget={"io_bytes": 1000})
    res = run(rt, spec)
    assert (res.status, res.reason) == ("fail", "budget io_bytes=1000 exceeded")
    assert res.io_bytes == 10_000 and not Path(spec.output).exists()
    res = run(rt, py(tmp_path, "tasks:chatty", budget={"io_bytes": 50_000}))
    assert (res.status, res.budget) == ("fail", "io_bytes")


def test_cancelling_a_python_task_kills_the_worker_and_its_children(rt, tmp_path):
    m = marker()
    spec = py(tmp_path, "tasks:sleep_with_child", [json_input(tmp_path, "s", m)])
    seen = {}

    async def main():
        with anyio.CancelScope() as scope:
            async def cancel_when_running():
                await anyio.to_thread.run_sync(lambda: wait_until(lambda: live_with_arg(m)))
                seen["running"] = rt.running_pgids()
                scope.cancel()
            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_when_running)
                await rt.run(spec, on_start=lambda pgid: seen.setdefault("pgid", pgid))
        return scope.cancelled_caught

    assert anyio.run(main)
    assert seen["running"] == [seen["pgid"]]
    assert not live_with_arg(m) and not procs.group_members(seen["pgid"])
    assert rt.running_pgids() == [] and seen["pgid"] not in rt.live_groups()


def test_workers_run_tasks_concurrently_up_to_the_pool_size(tmp_path):
    rt = Runtimes(2, tmp_path / "cache")

    async def main():
        results = {}
        async def one(i):
            spec = py(tmp_path, "tasks:nap", [json_input(tmp_path, "t", "0.3")],
                      output=str(tmp_path / f"o{i}"))
            results[i] = await rt.run(spec)
        try:
            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(one, i)
        finally:
            await rt.aclose()
        return results

    results = anyio.run(main)
    assert all(r.ok for r in results.values())
    assert len({r.pgid for r in results.values()}) == 2 and rt.pool.spawned == 2


def test_aclose_stops_every_worker(tmp_path):
    rt = Runtimes(2, tmp_path / "cache")

    async def main():
        async with anyio.create_task_group() as tg:
            for i in range(2):
                tg.start_soon(rt.run, py(tmp_path, "tasks:pid", output=str(tmp_path / f"p{i}")))
        groups = rt.live_groups()
        await rt.aclose()
        return groups

    groups = anyio.run(main)
    assert len(groups) == 2
    assert all(not procs.group_members(g) for g in groups)
    assert rt.live_groups() == {}
    assert anyio.run(rt.run, py(tmp_path, "tasks:pid")).reason == "runtimes are closed"


def test_kill_all_kills_idle_workers_and_the_pool_recovers(rt, tmp_path):
    first = json.loads(_out(rt, py(tmp_path, "tasks:pid")))
    assert rt.kill_all() == [first]
    assert wait_until(lambda: procs.has_exited(first))
    assert json.loads(_out(rt, py(tmp_path, "tasks:pid"))) != first


def test_a_worker_dies_by_itself_when_its_engine_is_sigkilled(tmp_path):
    m = marker()
    script = tmp_path / "engine.py"
    script.write_text(textwrap.dedent(f"""
        import anyio, sys
        sys.path.insert(0, {str(ROOT)!r})
        from e3logic.exec.runtimes import Runtimes, TaskSpec, InputRef
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from tests.test_exec_workers import modules

        async def main():
            rt = Runtimes(1, {str(tmp_path / 'cache')!r})
            inp = {str(tmp_path / 'm.json')!r}
            open(inp, "w").write('"{m}"')
            await rt.run(TaskSpec("python", entry="tasks:sleep_with_child", modules_hash="w",
                                  modules=modules, inputs=(InputRef(inp, "json"),),
                                  output={str(tmp_path / 'out')!r}),
                         on_start=lambda pgid: print(pgid, flush=True))
        anyio.run(main)
    """))
    eng = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    pgid = int(eng.stdout.readline())
    assert wait_until(lambda: live_with_arg(m))
    eng.kill()
    eng.wait()
    assert wait_until(lambda: not procs.group_members(pgid), timeout=10)
    assert not live_with_arg(m)


def test_python_tasks_run_on_the_trio_backend_too(tmp_path):
    rt = Runtimes(1, tmp_path / "cache")
    spec = py(tmp_path, "tasks:combine",
              [json_input(tmp_path, "cfg", {"n": 1}), raw_input(tmp_path, "r", b"t")])
    # materialized up front: the installed trio may predate anyio's thread API
    materialize(tmp_path / "cache", spec.modules_hash, spec.modules)

    async def main():
        try:
            return await rt.run(spec)
        finally:
            await rt.aclose()

    assert anyio.run(main, backend="trio").ok


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_waiting_on_a_descriptor_ends_when_readable_timed_out_or_cancelled(backend):
    """wait_fd (the pool's and the shell runtime's wait) leaves nothing registered on the
    loop however it ends, so the same descriptor can be waited on again."""
    from e3logic.exec.workers import wait_fd

    r, w = os.pipe()

    async def main():
        assert await wait_fd(r, 0.01) is False
        with anyio.move_on_after(0.01) as scope:
            await wait_fd(r, None)
        assert scope.cancelled_caught
        with anyio.CancelScope() as scope:
            scope.cancel()
            await wait_fd(r, None)
        os.write(w, b"x")
        assert await wait_fd(r, 5) is True and await wait_fd(r, None) is True
        if backend == "asyncio":
            import asyncio
            assert asyncio.get_running_loop().remove_reader(r) is False

    try:
        anyio.run(main, backend=backend)
    finally:
        os.close(r)
        os.close(w)


def test_waiting_for_a_free_worker_does_not_count_against_the_wall_budget(tmp_path):
    clock = FakeClock()
    rt = Runtimes(1, tmp_path / "cache", clock=clock)

    async def main():
        results = {}
        async def one(name, spec):
            results[name] = await rt.run(spec)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(one, "first", py(tmp_path, "tasks:sleep_with_child",
                                              [json_input(tmp_path, "s", "0.5")],
                                              output=str(tmp_path / "first")))
                await anyio.sleep(0.1)
                tg.start_soon(one, "queued", py(tmp_path, "tasks:pid", budget={"wall_s": 10},
                                               output=str(tmp_path / "queued")))
                await anyio.sleep(0.1)
                clock.t += 60  # a minute passes while the second task waits for the worker
        finally:
            await rt.aclose()
        return results

    results = anyio.run(main)
    assert results["first"].ok and results["queued"].ok
    assert results["queued"].duration_s < 60 <= results["first"].duration_s


def test_child_processes_a_task_leaves_running_are_killed_with_its_worker(rt, tmp_path):
    m = marker()
    mods = lambda: {"bg.py": f"import subprocess\ndef f():\n    subprocess.Popen(['sleep', '{m}'])\n    return 1\n".encode()}
    res = run(rt, TaskSpec("python", entry="bg:f", modules_hash="bg", modules=mods,
                           output=str(tmp_path / "o")))
    assert res.ok
    assert wait_until(lambda: not live_with_arg(m))
    assert res.pgid not in rt.live_groups()
    assert run(rt, py(tmp_path, "tasks:pid")).ok and rt.pool.spawned == 2


def test_cancel_by_pgid_stops_a_python_task_with_a_cxl_result(rt, tmp_path):
    import threading
    m = marker()
    spec = py(tmp_path, "tasks:sleep_with_child", [json_input(tmp_path, "s", m)])

    def started(pgid):
        threading.Thread(target=lambda: wait_until(lambda: live_with_arg(m)) and
                         rt.cancel(pgid, "await timed out")).start()

    res = run(rt, spec, on_start=started)
    assert (res.status, res.reason) == ("cxl", "await timed out")
    assert not live_with_arg(m) and not procs.group_members(res.pgid)
    assert run(rt, py(tmp_path, "tasks:pid")).ok and rt.pool.spawned == 2


def test_an_unwritable_module_cache_is_a_failure_not_an_exception(tmp_path):
    (tmp_path / "ro").write_text("a file where the cache directory should be")
    rt = Runtimes(1, tmp_path / "ro")
    try:
        res = run(rt, py(tmp_path, "tasks:pid"))
    finally:
        anyio.run(rt.aclose)
    assert res.status == "fail" and res.reason.startswith("cannot materialize modules tasks-v1")


# -- failures named as authored (worker_main.user_reason, Authored) --------------------------------
def _raised(source: str, filename: str):
    try:
        exec(compile(source, filename, "exec"), {})
    except BaseException as e:  # noqa: BLE001 - the exception under test
        return e
    raise AssertionError("did not raise")


def test_a_reason_names_the_innermost_frame_of_the_packages_modules_as_authored():
    from e3logic.exec.worker_main import user_reason

    e = _raised("def f():\n    raise ValueError('flag says fail')\nf()\n",
                "/repo/.e3/cache/modules/abc123/lib/steps.py")
    assert user_reason(e, "/elsewhere/modules/abc123") == \
        "ValueError: flag says fail (lib/steps.py:2)"
    assert user_reason(e, "/repo/.e3/cache/modules/other") == "ValueError: flag says fail"


def test_a_syntax_error_reason_says_its_file_and_line_and_a_long_message_keeps_the_place():
    from e3logic.exec.worker_main import user_reason

    e = _raised("compile('x = (', '/c/modules/h1/steps.py', 'exec')\n", "<test>")
    assert user_reason(e, "/c/modules/h1").startswith("SyntaxError: ")
    assert user_reason(e, "/c/modules/h1").endswith(" (steps.py:1)")
    long = _raised("raise ValueError('x' * 1000)\n", "/c/modules/h1/steps.py")
    reason = user_reason(long, "/c/modules/h1")
    assert len(reason) <= 300 and reason.endswith("… (steps.py:1)")


def test_a_traceback_written_through_authored_names_the_modules_as_authored():
    import io
    import traceback

    from e3logic.exec.worker_main import Authored

    e = _raised("def f():\n    raise KeyError('k')\nf()\n", "/r/.e3/cache/modules/h1/steps.py")
    text = "".join(traceback.format_exception(e))
    out = io.StringIO()
    Authored(out, "/r/.e3/cache/modules/h1").write(text)
    assert out.getvalue() == ("Traceback (most recent call last):\n"
                              '  File "steps.py", line 3, in <module>\n'
                              '  File "steps.py", line 2, in f\n'
                              "KeyError: 'k'\n")
    assert "test_exec_workers" in text  # the frame before the user's first was dropped
