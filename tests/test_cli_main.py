"""The console entry point: `run()` exits quickly without losing what a command left to do."""
from __future__ import annotations

import subprocess
import sys

from .helpers import e3_env, run_e3


def _python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=e3_env(),
                          capture_output=True, text=True, timeout=60)


def test_quick_exit_joins_running_threads_and_runs_atexit_handlers_first(tmp_path):
    code = (
        "import atexit, threading, time, pathlib\n"
        "from e3logic.cli.main import quick_exit\n"
        "d = pathlib.Path('.')\n"
        "atexit.register(lambda: (d / 'atexit').write_text('ran'))\n"
        "def late():\n"
        "    time.sleep(0.3)\n"
        "    (d / 'thread').write_text('done')\n"
        "threading.Thread(target=late).start()\n"
        "print('buffered', end='')\n"
        "quick_exit(3)\n")
    r = _python(code, tmp_path)
    assert r.returncode == 3, r.stderr
    assert r.stdout == "buffered"
    assert (tmp_path / "thread").read_text() == "done"
    assert (tmp_path / "atexit").read_text() == "ran"


def test_quick_exit_lets_an_open_thread_pool_finish_its_work_instead_of_hanging(tmp_path):
    code = (
        "import time, pathlib\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from e3logic.cli.main import quick_exit\n"
        "pool = ThreadPoolExecutor(4)\n"
        "pool.submit(lambda: (time.sleep(0.3), pathlib.Path('queued').write_text('done')))\n"
        "quick_exit(0)\n")
    r = _python(code, tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "queued").read_text() == "done"


def test_under_cprofile_the_command_runs_and_the_profile_is_written(tmp_path):
    """`python -m cProfile -o F -m e3logic ...` (docs/benchmarks.md): the quick exit would end
    the process before the profiler writes F."""
    r = subprocess.run([sys.executable, "-m", "cProfile", "-o", "p.prof", "-m", "e3logic",
                        "status"], cwd=tmp_path, env=e3_env(), capture_output=True, text=True,
                       timeout=60)
    assert r.stderr.startswith("e3: error: not inside an e3 repository")  # (cProfile exits 0)
    import pstats

    assert pstats.Stats(str(tmp_path / "p.prof")).total_calls > 0


def test_the_entry_point_keeps_the_commands_exit_code_and_output(tmp_path):
    bad = run_e3("no-such-command", cwd=tmp_path)
    assert bad.code == 2
    assert bad.err.startswith("e3: error:") and len(bad.err.strip().splitlines()) == 1
    outside = run_e3("status", cwd=tmp_path)
    assert outside.code != 0 and outside.err.startswith("e3: error:")
    version = run_e3("--version", cwd=tmp_path)
    assert version.code == 0 and version.out.strip()


def test_a_non_integer_exit_is_printed_and_exits_with_one(tmp_path):
    code = ("import sys\nimport e3logic.cli.main as m\n"
            "def boom(argv=None):\n    sys.exit('gone wrong')\n"
            "m.main = boom\nm.run()\n")
    r = _python(code, tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip() == "gone wrong"


# -- errors that reach the command line -------------------------------------------------------
def test_an_e3_error_inside_nested_exception_groups_is_its_own_one_line():
    from e3logic.cli.main import explain
    from e3logic.core.errors import UsageError

    e = ExceptionGroup("tasks", [ValueError("noise"),
                                 ExceptionGroup("inner", [UsageError("bad name 'x'")])])
    assert explain(e) == (2, "e3: error: bad name 'x'")


def test_an_error_listing_several_problems_gives_each_its_own_error_line():
    from e3logic.cli.main import explain
    from e3logic.core.errors import BuildError

    assert explain(BuildError("first; fix a\nsecond; fix b")) == (
        2, "e3: error: first; fix a\ne3: error: second; fix b")


def test_global_options_after_a_command_keep_that_commands_own_options(tmp_path):
    from e3logic.cli.main import LazyGroup, cli

    ctx = cli.make_context("e3", ["workspace", "export", "main", "x.zip"])
    export = LazyGroup.get_command(cli, ctx, "workspace").commands["export"]
    opts = {o for p in export.params for o in p.opts}
    assert {"--repo", "--json", "-v", "--verbose", "--version"} <= opts
    assert [p.name for p in export.params if "--version" in p.opts] == ["version"]
    r = run_e3("init", "p", cwd=tmp_path)
    assert r.code == 0, r
    r = run_e3("workspace", "list", "--json", "--repo", tmp_path / "p", cwd=tmp_path)
    assert r.code == 0 and [w["name"] for w in r.json] == ["main"], r


def test_exhausted_resources_are_one_line_naming_the_limit_and_the_fix():
    import errno
    import resource

    from e3logic.cli.main import explain

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert explain(OSError(errno.EMFILE, "Too many open files")) == (
        1, f"e3: error: too many open files (limit {soft}); raise it with 'ulimit -n 4096'")
    code, line = explain(ExceptionGroup("g", [OSError(errno.ENOSPC, "No space", "/x/obj")]))
    assert code == 1 and line.startswith("e3: error: no space left on device at /x/obj; free")
    assert "quota" in explain(OSError(errno.EDQUOT, "Quota", "/x"))[1]
    assert explain(MemoryError())[1].startswith("e3: error: out of memory")
    assert "file table" in explain(OSError(errno.ENFILE, "Too many"))[1]


def test_a_damaged_or_read_only_index_is_exit_2_and_a_bug_is_still_an_internal_error():
    import sqlite3

    from e3logic.cli.main import explain

    code, line = explain(sqlite3.DatabaseError("database disk image is malformed"))
    assert code == 2 and "index.db is damaged" in line and "e3 fsck --repair" in line
    code, line = explain(sqlite3.OperationalError("attempt to write a readonly database"))
    assert code == 2 and "read-only" in line
    assert explain(KeyError("x"))[1].startswith("e3: internal error: KeyError")


def test_running_out_of_file_descriptors_for_real_is_one_line_not_an_internal_error(tmp_path):
    import resource
    import shutil

    from e3logic import EXAMPLES_DIR

    shutil.copytree(EXAMPLES_DIR / "forecast", tmp_path / "pkg")
    for args in (("init", "."), ("build", "pkg", "-o", "dist"),
                 ("add", "dist/forecast-0.1.0.zip"), ("checkout", "forecast")):
        assert run_e3(*args, cwd=tmp_path).code == 0, args

    for limit in (14, 16):  # past interpreter start-up, short of what a run with threads opens
        def tiny():
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        p = subprocess.run([sys.executable, "-m", "e3logic", "go", "--force"], cwd=tmp_path,
                           env=e3_env(), capture_output=True, text=True, preexec_fn=tiny,
                           timeout=120)
        assert p.returncode == 1, p
        lines = p.stderr.strip().splitlines()
        assert lines[-1].startswith("e3: error: ") and "internal error" not in p.stderr, p.stderr
        assert str(limit) in lines[-1] and "ulimit -n 4096" in lines[-1]
        assert "Traceback" not in p.stderr
