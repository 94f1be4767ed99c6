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
