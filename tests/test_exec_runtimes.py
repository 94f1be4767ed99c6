"""Runtimes.run: shell and inline tasks, argv templates, budgets, cancellation, module sets.

Real subprocesses, signals and rlimits; assertions on results, reasons, files and /proc —
never on timing figures. Python pool tasks are in test_exec_workers.py."""
from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import anyio
import pytest

from e3logic.exec import procs
from e3logic.exec.runtimes import (InputRef, Runtimes, TaskResult, TaskSpec, expand_argv)
from e3logic.exec.taskcode import TaskError, materialize, materialize_bundle

from tests.test_exec_procs import live_with_arg, marker, wait_until


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def rt(tmp_path):
    r = Runtimes(2, tmp_path / "cache")
    yield r
    anyio.run(r.aclose)


def run(rt: Runtimes, spec: TaskSpec, **kw) -> TaskResult:
    return anyio.run(lambda: rt.run(spec, **kw))


def shell(tmp_path, argv, inputs=(), **kw) -> TaskSpec:
    kw.setdefault("output", str(tmp_path / "out" / "o"))
    kw.setdefault("log_path", str(tmp_path / "logs" / "o.log"))
    return TaskSpec("shell", argv=tuple(argv), inputs=tuple(inputs), **kw)


def write(path: Path, data) -> InputRef:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
        return InputRef(str(path), "raw", path.name)
    path.write_text(json.dumps(data))
    return InputRef(str(path), "json", path.name)


# -- argv templates ----------------------------------------------------------------------------

def test_inputs_as_a_whole_argument_expands_to_one_argument_per_input():
    assert expand_argv(["cat", "{inputs}"], ["a b", "c"], "o") == ["cat", "a b", "c"]
    assert expand_argv(["cat", "{inputs}", "-o", "{output}"], [], "/x y/o") == \
        ["cat", "-o", "/x y/o"]


def test_placeholders_inside_a_larger_string_become_space_joined_quoted_paths():
    argv = expand_argv(["sh", "-c", "cat {inputs} > {output}"], ["/d/a", "/d/b"], "/d/out")
    assert argv == ["sh", "-c", "cat /d/a /d/b > /d/out"]
    assert expand_argv(["sh", "-c", "wc {input1} >{output}"], ["/a", "/my dir/b"], "/o") == \
        ["sh", "-c", "wc '/my dir/b' >/o"]
    assert expand_argv(["--in={input0}"], ["/p"], "/o") == ["--in=/p"]


def test_other_braces_in_the_template_are_left_alone():
    assert expand_argv(["awk", "{print $1}", "{input0}"], ["/in"], "/o") == \
        ["awk", "{print $1}", "/in"]
    assert expand_argv(["echo", "{output}{output}", "{}"], [], "/o") == ["echo", "/o/o", "{}"]


def test_a_braced_word_that_looks_like_a_placeholder_but_is_none_is_named_with_the_known_ones():
    from e3logic.core.runtimes import argv_problem

    for fine in (["sh", "{bundle}/calc.sh", "--dir={bundle}", "{inputs}", "{input12}", "{output}"],
                 ["awk", "{print}", "{print $1}"], ["jq", "{name}"], ["sh", "-c", "echo ${HOME}"]):
        assert argv_problem(fine) is None, fine
    assert argv_problem(["sh", "{bundel}/calc.sh"]) == (
        "unknown placeholder {bundel} in '{bundel}/calc.sh'; did you mean {bundle}? the "
        "placeholders are {inputs}, {input0}, {input1}…, {output} and {bundle}")
    for typo in ("{input}", "{out}", "{Output}", "{bundles}", "{in0}"):
        assert argv_problem(["x", f"--a={typo}"]).startswith(f"unknown placeholder {typo} "), typo


def test_an_input_index_beyond_the_inputs_is_a_clear_error():
    with pytest.raises(TaskError, match=r"refers to \{input2\} but the task has 2 inputs"):
        expand_argv(["cat", "{input2}"], ["a", "b"], "o")
    with pytest.raises(TaskError, match="argv template"):
        expand_argv("cat {inputs}", [], "o")


# -- shell -------------------------------------------------------------------------------------

def test_a_shell_task_reads_its_inputs_and_writes_its_output_file(rt, tmp_path):
    a = write(tmp_path / "in" / "a", b"alpha\n")
    b = write(tmp_path / "in" / "b", b"beta\n")
    spec = shell(tmp_path, ["sh", "-c", "cat {inputs} > {output}; echo wrote"], [a, b])
    res = run(rt, spec)
    assert res.status == "ok" and res.output_format == "raw" and res.exit_code == 0
    assert res.reason == "" and res.pgid > 1 and res.io_bytes == len("alpha\nbeta\nwrote\n")
    assert Path(spec.output).read_bytes() == b"alpha\nbeta\n"
    assert Path(spec.log_path).read_text() == "wrote\n"


def test_a_nonzero_exit_is_a_failure_with_the_exit_status_and_no_output(rt, tmp_path):
    spec = shell(tmp_path, ["sh", "-c", "echo partial > {output}; echo oops >&2; exit 3"])
    res = run(rt, spec)
    assert (res.status, res.reason, res.exit_code) == ("fail", "exit 3", 3)
    assert not Path(spec.output).exists()
    assert "oops" in Path(spec.log_path).read_text()


def test_a_shell_task_that_writes_nothing_fails_naming_the_output_path(rt, tmp_path):
    spec = shell(tmp_path, ["true"])
    res = run(rt, spec)
    assert res.status == "fail" and res.reason == f"task wrote no output at {spec.output}"


def test_a_stale_output_file_is_removed_before_the_task_runs(rt, tmp_path):
    spec = shell(tmp_path, ["true"])
    Path(spec.output).parent.mkdir(parents=True)
    Path(spec.output).write_text("stale")
    assert run(rt, spec).reason.startswith("task wrote no output")


def test_a_run_recovers_when_its_output_and_log_directories_are_removed(rt, tmp_path):
    """Directories are made once per run; one removed under the run costs at most the task
    that found it missing, and the next task gets it back."""
    import shutil

    spec = shell(tmp_path, ["sh", "-c", "echo a > {output}"])
    assert run(rt, spec).ok
    shutil.rmtree(tmp_path / "out")
    shutil.rmtree(tmp_path / "logs")
    first = run(rt, spec)
    assert run(rt, spec).ok and (first.ok or first.status == "fail")
    assert Path(spec.output).read_text() == "a\n"


def test_a_missing_command_or_working_directory_fails_with_a_one_line_reason(rt, tmp_path):
    res = run(rt, shell(tmp_path, ["no-such-command-e3", "{output}"]))
    assert res.status == "fail" and res.reason == "command not found: no-such-command-e3"
    res = run(rt, shell(tmp_path, ["true"], cwd=str(tmp_path / "nowhere")))
    assert res.reason == f"working directory does not exist: {tmp_path / 'nowhere'}"


def test_a_shell_task_gets_its_env_and_working_directory(rt, tmp_path):
    (tmp_path / "wd").mkdir()
    spec = shell(tmp_path, ["sh", "-c", 'echo "$E3_LEASES $(pwd)" > {output}'],
                 env={"E3_LEASES": "db/sales:write"}, cwd=str(tmp_path / "wd"))
    assert run(rt, spec).ok
    assert Path(spec.output).read_text() == f"db/sales:write {tmp_path / 'wd'}\n"
    assert "E3_LEASES" not in os.environ


def test_relative_paths_are_taken_from_the_engines_working_directory(rt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "in.txt", b"rel\n")
    (tmp_path / "elsewhere").mkdir()
    spec = TaskSpec("shell", argv=("cp", "{input0}", "{output}"),
                    inputs=(InputRef("in.txt"),), output="out.txt", cwd="elsewhere")
    assert run(rt, spec).ok
    assert (tmp_path / "out.txt").read_text() == "rel\n"


# What a shell task's leader sees of how it was started: its pid and session, its stdin, the
# files its descriptors point at, and the SigIgn mask (hex) from /proc.
PROBE = ("echo $$ $(cut -d' ' -f6 /proc/$$/stat) $(readlink /proc/$$/fd/0) > {output}; "
         "ls -l /proc/$$/fd/ >> {output}; grep SigIgn /proc/$$/status >> {output}")


@pytest.mark.parametrize("how", ["in the engine's directory", "elsewhere", "with rlimits"])
def test_a_shell_task_starts_alone_in_its_session_whichever_way_it_is_spawned(
        how, tmp_path, monkeypatch):
    """Tasks in the engine's working directory without rlimits are spawned with posix_spawn,
    the others with Popen; both give the same start: own session, stdin /dev/null, no
    descriptor of the engine's beyond 0-2, SIGPIPE back to its default action."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wd").mkdir()
    leak = os.open(tmp_path / "engine-secret", os.O_WRONLY | os.O_CREAT)
    os.set_inheritable(leak, True)  # as if inherited by the engine from its parent
    rt = Runtimes(1, tmp_path / "cache")
    try:
        kw = {"in the engine's directory": dict(cwd=str(tmp_path)),
              "elsewhere": dict(cwd=str(tmp_path / "wd")),
              "with rlimits": dict(cwd=str(tmp_path), budget={"cpu_s": 30})}[how]
        spec = shell(tmp_path, ["sh", "-c", PROBE], **kw)
        res = run(rt, spec)
    finally:
        anyio.run(rt.aclose)
        os.close(leak)
    assert res.ok, res
    first, *fds, sigign = Path(spec.output).read_text().splitlines()
    pid, sid, stdin = first.split()
    assert int(pid) == int(sid) == res.pgid
    assert stdin == "/dev/null"
    assert not any("engine-secret" in line for line in fds)
    assert not int(sigign.split()[1], 16) & (1 << (signal.SIGPIPE - 1))
    targets = {line.split()[-3]: line.split()[-1] for line in fds if " -> " in line}
    assert targets["0"] == "/dev/null" and targets["2"] == spec.log_path


def test_a_shell_task_sees_the_engines_environment_as_it_is_when_the_task_starts(
        rt, tmp_path, monkeypatch):
    spec = shell(tmp_path, ["sh", "-c", 'echo "$E3_TEST_LATE $E3_EXECUTION" > {output}'],
                 env={"E3_EXECUTION": "k1"})
    monkeypatch.setenv("E3_TEST_LATE", "set after the runtimes were made")
    assert run(rt, spec).ok
    assert Path(spec.output).read_text() == "set after the runtimes were made k1\n"


def test_a_shell_task_with_its_own_path_finds_commands_on_it(rt, tmp_path):
    (tmp_path / "bin").mkdir()
    tool = tmp_path / "bin" / "e3-test-tool"
    tool.write_text("#!/bin/sh\necho tool > \"$1\"\n")
    tool.chmod(0o755)
    spec = shell(tmp_path, ["e3-test-tool", "{output}"],
                 env={"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"})
    assert run(rt, spec).ok
    assert Path(spec.output).read_text() == "tool\n"


def test_the_recorded_start_time_of_each_shell_task_is_the_one_in_proc(rt, tmp_path):
    """Start times are inferred from the clock around the spawn; they must equal /proc's
    field 22, since kill_orphans compares them to tell a group from a recycled pid."""
    seen = []

    def started(pgid):
        st = procs.proc_stat(pgid)  # the leader has not been reaped: its zombie stays
        seen.append((rt.running_groups()[pgid], procs.start_time(pgid), st.starttime))

    for i in range(40):
        assert run(rt, shell(tmp_path, ["sh", "-c", "echo > {output}"],
                             output=str(tmp_path / "out" / f"o{i}")), on_start=started).ok
    assert len(seen) == 40 and all(a == b == c for a, b, c in seen), seen
    assert rt.live_groups() == {}


def test_background_children_left_by_a_finished_shell_task_are_killed(rt, tmp_path):
    m = marker()
    spec = shell(tmp_path, ["sh", "-c", f"sleep {m} & echo x > {{output}}"])
    assert run(rt, spec).ok
    assert wait_until(lambda: not live_with_arg(m))


def test_shell_output_is_streamed_to_the_log_while_the_task_runs(rt, tmp_path):
    m = marker()
    spec = shell(tmp_path, ["sh", "-c", f"echo first line; sleep {m}"])
    seen = {}

    async def main():
        with anyio.CancelScope() as scope:
            async def watch():
                await anyio.to_thread.run_sync(
                    lambda: wait_until(lambda: "first line" in _read(spec.log_path)))
                seen["log"] = _read(spec.log_path)
                scope.cancel()
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                await rt.run(spec)
        return scope.cancelled_caught

    assert anyio.run(main)
    assert seen["log"] == "first line\n"
    assert not live_with_arg(m)


# -- {bundle}: the package's files, read-only --------------------------------------------------

CALC = {"calc.sh": b'read n < "$1"; echo "calc: $n" >&2; echo $((n * 2)) > "$2"\n',
        "lib/data.txt": b"7\n"}


def bundled(files=CALC):
    calls = []

    def load():
        calls.append(1)
        return dict(files)

    load.calls = calls
    return load


def test_bundle_expands_to_a_directory_path_alone_or_inside_a_larger_argument():
    assert expand_argv(["sh", "{bundle}/calc.sh", "--dir={bundle}", "{bundle}"], [], "/o",
                       "/c/bundles/h") == ["sh", "/c/bundles/h/calc.sh", "--dir=/c/bundles/h",
                                           "/c/bundles/h"]
    assert expand_argv(["sh", "-c", "sh {bundle}/x {output}"], [], "/o", "/my dir/h") == \
        ["sh", "-c", "sh '/my dir/h'/x /o"]
    with pytest.raises(TaskError, match=r"refers to \{bundle\} but the task has no bundled"):
        expand_argv(["sh", "{bundle}/calc.sh"], [], "/o")


def test_a_shell_task_runs_a_script_from_its_bundle_in_the_working_directory_it_was_given(
        rt, tmp_path):
    n = write(tmp_path / "in" / "n", b"21\n")
    load = bundled()
    spec = shell(tmp_path, ["sh", "-c", 'pwd > {output}.cwd; sh {bundle}/calc.sh "$1" "$2"', "t",
                            "{input0}", "{output}"], [n], modules_hash="calc-1", modules=load,
                 cwd=str(tmp_path))
    res = run(rt, spec)
    assert res.ok, res
    assert Path(spec.output).read_bytes() == b"42\n"
    assert Path(spec.output + ".cwd").read_text() == f"{tmp_path}\n"
    assert Path(spec.log_path).read_text() == "calc: 21\n"
    d = tmp_path / "cache" / "bundles" / "calc-1"
    assert (d / "lib" / "data.txt").read_bytes() == b"7\n"
    assert run(rt, spec).ok and len(load.calls) == 1  # materialized once per hash


def test_the_bundle_directory_is_read_only_and_written_whole(tmp_path):
    d = materialize_bundle(tmp_path, "ro-1", bundled())
    assert d == tmp_path / "bundles" / "ro-1"
    modes = {p.relative_to(d).as_posix(): p.stat().st_mode & 0o777 for p in d.rglob("*")}
    assert modes == {"calc.sh": 0o444, "lib": 0o555, "lib/data.txt": 0o444}
    assert d.stat().st_mode & 0o777 == 0o555
    assert [p.name for p in d.parent.iterdir()] == ["ro-1"]  # no temp directory left
    assert materialize_bundle(tmp_path, "ro-1", None) == d  # there already: not rewritten


def test_two_runtimes_materializing_one_bundle_at_once_both_see_it_whole(tmp_path):
    files = {f"f{i:03}.txt": bytes([65 + i % 26]) * 1000 for i in range(200)}
    n = 4
    outs = []

    async def main():
        rts = [Runtimes(1, tmp_path / "cache") for _ in range(n)]
        try:
            async with anyio.create_task_group() as tg:
                for i, r in enumerate(rts):
                    spec = shell(tmp_path, ["sh", "-c", "ls {bundle} | wc -l > {output}"],
                                 modules_hash="many", modules=bundled(files),
                                 output=str(tmp_path / "out" / f"o{i}"))
                    outs.append(spec.output)

                    async def one(r=r, spec=spec):
                        assert (await r.run(spec)).ok
                    tg.start_soon(one)
        finally:
            for r in rts:
                await r.aclose()

    anyio.run(main)
    assert [Path(o).read_text().strip() for o in outs] == ["200"] * n
    assert [p.name for p in (tmp_path / "cache" / "bundles").iterdir()] == ["many"]


def test_a_shell_task_writing_into_its_bundle_fails_saying_it_is_read_only(rt, tmp_path):
    load = bundled()
    spec = shell(tmp_path, ["sh", "-c", "echo x > {bundle}/calc.sh && echo ok > {output}"],
                 modules_hash="calc-w", modules=load)
    res = run(rt, spec)
    assert res.status == "fail", res
    assert "{bundle}" in res.reason and "is read-only" in res.reason, res.reason
    assert not Path(spec.output).exists()
    # whatever the task managed to do (as root, the mode bits do not stop it), the next task
    # sees the bundle as it was built
    good = shell(tmp_path, ["sh", "-c", "cat {bundle}/calc.sh > {output}"],
                 modules_hash="calc-w", modules=load)
    assert run(rt, good).ok
    assert Path(good.output).read_bytes() == CALC["calc.sh"]
    new = shell(tmp_path, ["sh", "-c", "touch {bundle}/new && echo ok > {output}"],
                modules_hash="calc-w", modules=load)
    res = run(rt, new)
    assert res.status == "fail" and "is read-only" in res.reason, res.reason
    assert not (tmp_path / "cache" / "bundles" / "calc-w" / "new").exists()
    undo = shell(tmp_path, ["sh", "-c", "chmod u+w {bundle}/calc.sh && echo x > {bundle}/calc.sh"
                                        " && echo ok > {output}"],
                 modules_hash="calc-w", modules=load)
    res = run(rt, undo)
    assert res.status == "fail" and "is read-only" in res.reason, res.reason
    assert run(rt, good).ok and Path(good.output).read_bytes() == CALC["calc.sh"]
    assert [p.name for p in (tmp_path / "cache" / "bundles").iterdir()] == ["calc-w"]


def test_a_task_reading_the_bundle_while_another_writes_into_it_fails_too_when_the_write_lands(
        rt, tmp_path):
    # the modes stop the write unless the tasks run as root; when it lands, the writer cannot be
    # told from a reader that ran meanwhile (and may have read the changed file): both fail
    load, m = bundled(), tmp_path / "wrote"
    writer = shell(tmp_path, ["sh", "-c", f"echo x > {{bundle}}/calc.sh; s=$?; touch {m}; "
                                          f"sleep 0.3; [ $s = 0 ] && echo ok > {{output}}"],
                   modules_hash="calc-rw", modules=load, output=str(tmp_path / "out" / "w"))
    reader = shell(tmp_path, ["sh", "-c", f"until [ -e {m} ]; do sleep 0.01; done; "
                                          f"cat {{bundle}}/calc.sh > {{output}}"],
                   modules_hash="calc-rw", modules=load, output=str(tmp_path / "out" / "r"))
    got = {}

    async def main():
        async def one(name, spec):
            got[name] = await rt.run(spec)
        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "writer", writer)
            tg.start_soon(one, "reader", reader)

    anyio.run(main)
    assert got["writer"].status == "fail" and "is read-only" in got["writer"].reason
    if os.geteuid() == 0:
        assert got["reader"].status == "fail", got["reader"]
        assert "changed while the task ran" in got["reader"].reason
    else:
        assert got["reader"].ok and Path(reader.output).read_bytes() == CALC["calc.sh"]


def test_a_task_without_a_modules_hash_referring_to_bundle_fails_in_one_line(rt, tmp_path):
    res = run(rt, shell(tmp_path, ["sh", "{bundle}/calc.sh"]))
    assert res.status == "fail"
    assert res.reason == ("argv template refers to {bundle} but the task has no bundled files "
                          "(no modules hash)")



def _read(path) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def test_a_shell_task_over_its_wall_budget_is_killed_with_the_reason(rt, tmp_path):
    m = marker()
    res = run(rt, shell(tmp_path, ["sh", "-c", f"sleep {m} & sleep {m}; wait"],
                        budget={"wall_s": 1}))
    assert (res.status, res.reason, res.budget) == ("fail", "budget wall_s=1 exceeded", "wall_s")
    assert not live_with_arg(m) and res.pgid not in rt.live_groups()


def test_the_wall_budget_follows_the_injected_clock(tmp_path):
    clock = FakeClock()
    rt = Runtimes(1, tmp_path / "cache", clock=clock)
    m = marker()
    spec = shell(tmp_path, ["sleep", m], budget={"wall_s": 3600})

    def started(pgid):
        clock.t += 3601  # an hour passes, on the injected clock

    try:
        res = run(rt, spec, on_start=started)
    finally:
        anyio.run(rt.aclose)
    assert res.reason == "budget wall_s=3600 exceeded" and res.duration_s >= 3601
    assert not live_with_arg(m)


def test_a_shell_task_over_its_cpu_budget_fails_with_the_reason(rt, tmp_path):
    res = run(rt, shell(tmp_path, ["sh", "-c", "while :; do :; done"], budget={"cpu_s": 0.5}))
    assert (res.status, res.reason, res.budget) == ("fail", "budget cpu_s=0.5 exceeded", "cpu_s")


def test_a_shell_task_over_its_memory_budget_fails_with_the_reason(rt, tmp_path):
    import sys
    res = run(rt, shell(tmp_path, [sys.executable, "-c", "b = bytearray(600 << 20)"],
                        budget={"mem_mb": 200}))
    assert res.status == "fail" and res.budget == "mem_mb"
    assert res.reason == "budget mem_mb=200 exceeded (exit 1)"


def test_a_shell_task_writing_more_than_its_io_budget_fails(rt, tmp_path):
    res = run(rt, shell(tmp_path, ["sh", "-c", "head -c 5000 /dev/zero > {output}"],
                        budget={"io_bytes": 1000}))
    assert (res.status, res.reason) == ("fail", "budget io_bytes=1000 exceeded")
    assert res.io_bytes == 5000


def test_a_shell_task_flooding_its_log_is_stopped_while_it_runs(rt, tmp_path):
    res = run(rt, shell(tmp_path, ["yes"], budget={"io_bytes": 100_000}))
    assert (res.status, res.budget) == ("fail", "io_bytes")
    assert res.io_bytes > 100_000


def test_cancelling_a_shell_task_kills_its_whole_process_group(rt, tmp_path):
    m = marker()
    spec = shell(tmp_path, ["sh", "-c", f"sleep {m} & sleep {m}; wait"])
    seen = {}

    async def main():
        with anyio.CancelScope() as scope:
            def started(pgid):
                seen["pgid"] = pgid
                seen["running"] = rt.running_pgids()
            async def cancel_when_started():
                await anyio.to_thread.run_sync(lambda: wait_until(lambda: len(live_with_arg(m)) == 2))
                scope.cancel()
            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_when_started)
                await rt.run(spec, on_start=started)
        return scope.cancelled_caught

    assert anyio.run(main)
    assert seen["running"] == [seen["pgid"]]
    assert not live_with_arg(m) and not procs.group_members(seen["pgid"])
    assert rt.running_pgids() == [] and seen["pgid"] not in rt.live_groups()
    assert not Path(spec.output).exists()


def test_a_task_ignoring_sigterm_is_sigkilled_after_the_grace(tmp_path):
    rt = Runtimes(1, tmp_path / "cache", grace=0.2)
    m = marker()
    spec = shell(tmp_path, ["sh", "-c", f"trap '' TERM; sleep {m}; sleep {m}"])

    async def main():
        with anyio.move_on_after(0.5):
            await rt.run(spec)
        await rt.aclose()

    anyio.run(main)
    assert not live_with_arg(m)


def test_cancel_by_pgid_returns_a_cxl_result(rt, tmp_path):
    m = marker()
    spec = shell(tmp_path, ["sh", "-c", f"sleep {m}"])

    def started(pgid):
        threading.Timer(0.1, rt.cancel, args=(pgid, "cancelled by e3 cancel")).start()

    res = run(rt, spec, on_start=started)
    assert (res.status, res.reason) == ("cxl", "cancelled by e3 cancel")
    assert not live_with_arg(m)
    assert rt.cancel(res.pgid) is False


def test_kill_all_kills_running_groups_and_their_runs_return_cxl(rt, tmp_path):
    m = marker()

    async def main():
        results = []
        async def one(i):
            results.append(await rt.run(shell(tmp_path, ["sh", "-c", f"sleep {m} & wait"],
                                              output=str(tmp_path / f"o{i}"))))
        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(one, i)
            while len(live_with_arg(m)) < 3:
                await anyio.sleep(0.02)
            assert len(rt.running_pgids()) == 3
            killed = rt.kill_all()
            assert sorted(killed) == rt.running_pgids()
        return results

    results = anyio.run(main)
    assert [r.status for r in results] == ["cxl"] * 3
    assert {r.reason for r in results} == {"killed"}
    assert not live_with_arg(m)


def test_a_bad_budget_or_runtime_is_a_failure_not_an_exception(rt, tmp_path):
    assert run(rt, shell(tmp_path, ["true"], budget={"wall": 1})).reason.startswith(
        "unknown budget key 'wall'")
    res = run(rt, TaskSpec("docker", output=str(tmp_path / "o")))
    assert res.status == "fail" and "unknown runtime 'docker'" in res.reason
    assert run(rt, TaskSpec("shell", argv=("true",))).reason == "the task has no output path"


def test_shell_tasks_run_on_the_trio_backend_too(tmp_path):
    rt = Runtimes(1, tmp_path / "cache")
    spec = shell(tmp_path, ["sh", "-c", "echo trio > {output}"])

    async def main():
        try:
            return await rt.run(spec)
        finally:
            await rt.aclose()

    assert anyio.run(main, backend="trio").ok
    assert Path(spec.output).read_text() == "trio\n"


# -- inline ------------------------------------------------------------------------------------

STEPS = b"""
import os
import helpers
CALLS = []

def double(x, raw):
    print("doubling", x)
    return {"pid": os.getpid(), "y": helpers.twice(x["v"]), "raw": raw.decode()}

def version(*_):
    return helpers.VERSION

def fails(*_):
    raise ValueError("bad input\\nsecond line")

def not_json(*_):
    return {1, 2}

def gen(*_):
    yield 1

def raw(*_):
    return b"\\x00\\x01"
"""


def modules(version: str):
    calls = []

    def load():
        calls.append(1)
        return {"steps.py": STEPS,
                "helpers.py": f"VERSION = {version!r}\ndef twice(v):\n    return 2 * v\n".encode()}

    load.calls = calls
    return load


def inline(tmp_path, entry, inputs=(), h="mods-a", mods=None, **kw) -> TaskSpec:
    kw.setdefault("output", str(tmp_path / "out" / entry.replace(":", "_")))
    kw.setdefault("log_path", str(tmp_path / "logs" / "inline.log"))
    return TaskSpec("inline", entry=entry, modules_hash=h, modules=mods or modules("a"),
                    inputs=tuple(inputs), **kw)


def test_an_inline_task_runs_in_the_engine_process_and_writes_canonical_json(rt, tmp_path):
    x = write(tmp_path / "x.json", {"v": 21, "z": 0})
    r = write(tmp_path / "r.bin", "é".encode())
    spec = inline(tmp_path, "steps:double", [x, r])
    res = run(rt, spec)
    assert res.status == "ok" and res.output_format == "json" and res.pgid is None
    assert Path(spec.output).read_bytes() == \
        f'{{"pid":{os.getpid()},"raw":"é","y":42}}'.encode()
    assert "doubling {'v': 21, 'z': 0}" in Path(spec.log_path).read_text()


def test_an_inline_task_returning_bytes_is_stored_raw(rt, tmp_path):
    spec = inline(tmp_path, "steps:raw")
    res = run(rt, spec)
    assert (res.status, res.output_format) == ("ok", "raw")
    assert Path(spec.output).read_bytes() == b"\x00\x01"


def test_an_inline_exception_is_a_failure_with_a_one_line_reason_and_a_logged_traceback(rt, tmp_path):
    spec = inline(tmp_path, "steps:fails")
    res = run(rt, spec)
    where = next(i for i, line in enumerate(STEPS.decode().splitlines(), 1)
                 if "raise ValueError" in line)
    assert (res.status, res.reason) == ("fail", f"ValueError: bad input (steps.py:{where})")
    log = Path(spec.log_path).read_text()
    assert f'Traceback (most recent call last):\n  File "steps.py", line {where}, in fails\n' in log
    assert "raise ValueError" in log and "runtimes.py" not in log and "cache" not in log


def test_an_inline_result_that_is_not_json_is_a_failure(rt, tmp_path):
    res = run(rt, inline(tmp_path, "steps:not_json"))
    assert res.status == "fail"
    assert res.reason == "output is not JSON-serializable: TypeError: Object of type set is not " \
                         "JSON serializable"


def test_an_inline_generator_run_through_run_is_a_failure_naming_the_executor(rt, tmp_path):
    res = run(rt, inline(tmp_path, "steps:gen"))
    assert res.status == "fail" and "generator" in res.reason and "executor" in res.reason


def test_an_unknown_entry_fails_naming_the_module_or_function(rt, tmp_path):
    res = run(rt, inline(tmp_path, "nosuch:f"))
    assert res.reason == "cannot import nosuch: no such module in the package's modules " \
                         "(helpers, steps)"
    res = run(rt, inline(tmp_path, "steps:nope"))
    assert res.reason == "task entry 'steps:nope': steps has no attribute 'nope'"
    res = run(rt, inline(tmp_path, "steps"))
    assert "must look like 'module:function'" in res.reason


def test_modules_are_materialized_once_per_hash_into_the_cache(rt, tmp_path):
    mods = modules("a")
    for _ in range(3):
        assert run(rt, inline(tmp_path, "steps:version", h="mods-once", mods=mods)).ok
    assert len(mods.calls) == 1
    d = tmp_path / "cache" / "modules" / "mods-once"
    assert sorted(p.name for p in d.iterdir() if p.suffix == ".py") == ["helpers.py", "steps.py"]
    assert not [p for p in d.parent.iterdir() if p.name.startswith(".tmp")]


def test_two_module_sets_with_the_same_names_do_not_collide(rt, tmp_path):
    a = inline(tmp_path, "steps:version", h="ver-one", mods=modules("one"),
               output=str(tmp_path / "a"))
    b = inline(tmp_path, "steps:version", h="ver-two", mods=modules("two"),
               output=str(tmp_path / "b"))
    assert run(rt, a).ok and run(rt, b).ok and run(rt, a).ok
    assert Path(a.output).read_text() == '"one"' and Path(b.output).read_text() == '"two"'


def test_materialize_refuses_paths_escaping_the_module_directory(tmp_path):
    with pytest.raises(TaskError, match="must be relative"):
        materialize(tmp_path, "evil", lambda: {"../x.py": b""})
    with pytest.raises(TaskError, match="must be relative"):
        materialize(tmp_path, "evil2", lambda: {"/etc/x.py": b""})
    assert not (tmp_path / "modules" / "evil").exists()
    with pytest.raises(TaskError, match="invalid modules hash"):
        materialize(tmp_path, "../up", lambda: {})


def test_a_failing_module_source_is_a_failure_not_an_engine_crash(rt, tmp_path):
    def broken():
        raise OSError("object store unreadable")
    res = run(rt, inline(tmp_path, "steps:version", h="broken", mods=broken))
    assert res.reason == "cannot load modules broken: OSError: object store unreadable"


def test_inline_tasks_run_in_the_pool_when_the_runtimes_isolate_the_engine(tmp_path):
    rt = Runtimes(1, tmp_path / "cache", isolate=True)
    spec = inline(tmp_path, "steps:double", [write(tmp_path / "x", {"v": 1}),
                                             write(tmp_path / "r", b"r")])
    try:
        res = run(rt, spec)
        pid = json.loads(Path(spec.output).read_text())["pid"]
        assert res.ok and res.pgid == pid and pid != os.getpid()
    finally:
        anyio.run(rt.aclose)


def test_an_inline_task_over_its_wall_budget_is_abandoned_with_the_reason(tmp_path):
    clock = FakeClock()
    rt = Runtimes(1, tmp_path / "cache", clock=clock)
    ev = threading.Event()
    mods = lambda: {"slow.py": b"import threading\nEV = None\ndef f():\n    EV.wait(10)\n    return 1\n"}
    spec = TaskSpec("inline", entry="slow:f", modules_hash="slow", modules=mods,
                    output=str(tmp_path / "o"), budget={"wall_s": 5})

    async def main():
        from e3logic.exec.runtimes import shared_spaces
        d = await rt._ensure_modules(spec)
        shared_spaces().resolve("slow:f", "slow", d).__globals__["EV"] = ev
        async with anyio.create_task_group() as tg:
            async def tick():
                await anyio.sleep(0.1)
                clock.t += 6
            tg.start_soon(tick)
            return await rt.run(spec)

    res = anyio.run(main)
    ev.set()
    assert res.status == "fail" and res.budget == "wall_s"
    assert res.reason.startswith("budget wall_s=5 exceeded")
    assert not Path(spec.output).exists()


def test_write_output_stores_canonical_json_and_refuses_what_it_cannot_store(tmp_path):
    from e3logic.exec.runtimes import write_output
    assert write_output(tmp_path / "w", {"b": 1, "a": [2]}) == ("json", 15)
    assert (tmp_path / "w").read_bytes() == b'{"a":[2],"b":1}'
    with pytest.raises(TaskError, match="not JSON-serializable"):
        write_output(tmp_path / "w2", {1j})


def test_each_runtime_of_the_table_is_placed_and_implemented(rt, tmp_path):
    from e3logic.core.runtimes import RUNTIMES
    for name, spec in RUNTIMES.items():
        assert rt.placed(name) is spec
        assert rt._impl(spec) is rt._impl(spec)  # made once per Runtimes
    iso = Runtimes(1, tmp_path / "iso", isolate=True)
    assert iso.placed("inline") is RUNTIMES["python"]
