"""End-to-end: the real `e3 watch` in a subprocess, real file edits (in place, save-by-rename as
VS Code does, vim's rename-write-delete, a replaced `inputs/` folder), real signals.

Waits are hang guards (`wait_until`, `Lines.wait`), never timing assertions; the latency of
watch mode is measured in bench/bench_watch.py.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.helpers import run_e3
from tests.naps import (NAMES, clear_marks, expected_outputs, kill_token_procs, new_token,
                        project_from_template, set_inputs, start_e3, started, token_env,
                        wait_gone, wait_until)


class Watch:
    """A running `e3 watch`: its stdout lines and stderr lines, read by threads."""

    def __init__(self, project, *args, json_out=True, background=False):
        self.project = project
        self.token = new_token()
        argv = (["--json"] if json_out else []) + ["watch", "-j", "4", *args]
        self.background = background
        if background:  # `e3 watch &` in a script: dash starts it with SIGINT ignored
            script = '"$0" -m e3logic "$@" & echo "watch pid $!" >&2; wait $!'
            self.proc = subprocess.Popen(["sh", "-c", script, sys.executable, *argv],
                                         cwd=project, env=token_env(self.token),
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
        else:
            self.proc = start_e3(*argv, cwd=project, env=token_env(self.token))
        self.out: "queue.Queue[str]" = queue.Queue()
        self.err_lines: list[str] = []
        self.lines: list[str] = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    @staticmethod
    def _read(stream, q):
        for line in stream:
            q.put(line.rstrip("\n"))

    def _read_err(self):
        for line in self.proc.stderr:
            self.err_lines.append(line.rstrip("\n"))

    def line(self, timeout=60.0) -> str:
        try:
            s = self.out.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line from e3 watch within {timeout}s; "
                                 f"stderr: {self.err_lines[-10:]}") from None
        self.lines.append(s)
        return s

    def run(self, timeout=60.0) -> dict:
        return json.loads(self.line(timeout))

    def armed(self):
        wait_until(lambda: any("watching inputs/" in l for l in self.err_lines), 30)

    def pid(self) -> int:
        """The e3 process (under `sh` when started in the background)."""
        if not self.background:
            return self.proc.pid
        wait_until(lambda: any(l.startswith("watch pid ") for l in self.err_lines), 30)
        return int(next(l for l in self.err_lines if l.startswith("watch pid ")).split()[-1])

    def stop(self, sig=signal.SIGINT, timeout=30) -> int:
        os.kill(self.pid(), sig)
        return self.proc.wait(timeout)  # `sh` exits with the status of the e3 it waits for

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        kill_token_procs(self.token)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return tmp_path_factory.mktemp("naps-cli-watch")


@pytest.fixture
def project(template, tmp_path):
    return project_from_template(template, tmp_path / "proj")


@pytest.fixture
def watch(project):
    started_ = []

    def start(*args, **kw):
        w = Watch(project, *args, **kw)
        started_.append(w)
        return w

    yield start
    for w in started_:
        w.close()


def test_watch_runs_everything_then_only_what_a_saved_edit_affects(project, watch):
    w = watch()
    first = w.run()
    assert first["status"] == "ok" and first["executed"] == NAMES and first["changed"] == []
    for key in ("run", "status", "executed", "cached", "failed", "skipped", "cancelled",
                "state_root", "commit", "receipt"):
        assert key in first
    w.armed()
    set_inputs(project, side=0.01)            # temp file + rename, as VS Code saves
    second = w.run()
    assert second["changed"] == ["inputs/t/side"] and second["targets"] == ["side"]
    assert second["executed"] == ["side"] and second["cached"] == []
    assert second["run"] != first["run"]
    assert w.stop() == 130
    assert (project / "outputs" / "side" / "o").read_bytes() == expected_outputs()["side"]


def test_watch_keeps_watching_a_file_after_vim_style_saves(project, watch):
    w = watch()
    w.run()
    w.armed()
    side = project / "inputs" / "t" / "side"
    for secs in ("0.01", "0.02"):            # vim: rename to backup, write anew, delete backup
        os.rename(side, side.with_name("side~"))
        side.write_text(f"side {secs}\n")
        os.unlink(side.with_name("side~"))
        r = w.run()
        assert r["changed"] == ["inputs/t/side"] and r["executed"] == ["side"]
    with open(side, "w") as f:               # and a plain in-place write after that
        f.write("side 0.03\n")
    r = w.run()
    assert r["changed"] == ["inputs/t/side"] and r["executed"] == ["side"]
    assert w.stop() == 130


def test_watch_notices_a_replaced_inputs_folder(project, watch):
    w = watch()
    w.run()
    w.armed()
    inputs = project / "inputs"
    shutil.copytree(inputs, project / "inputs.new")
    (project / "inputs.new" / "seed").write_text('"seed-2"')
    os.rename(inputs, project / "inputs.old")
    os.rename(project / "inputs.new", inputs)
    r = w.run()
    assert r["changed"] == ["inputs"] and r["status"] == "ok"
    assert r["executed"] == NAMES                # the seed feeds everything
    (inputs / "t" / "side").write_text("side 0.01\n")  # the new folder is watched too
    r = w.run()
    assert r["changed"] == ["inputs/t/side"] and r["executed"] == ["side"]
    assert w.stop() == 130
    assert (project / "outputs" / "third" / "o").read_bytes() == \
        expected_outputs(seed="seed-2")["third"]


def test_watch_prints_one_human_line_per_run(project, watch):
    w = watch(json_out=False)
    line = w.line()
    assert line.startswith("run r1 ok: 5 executed") and line.endswith("(initial run)")
    w.armed()
    set_inputs(project, size=3)
    line = w.line()
    assert line.startswith("run r2 ok: 1 executed") and line.endswith("(inputs/size)")
    assert w.stop() == 130
    assert w.out.empty()


def test_ctrl_c_stops_watch_in_the_middle_of_a_run_with_exit_130_and_no_task_left(project, watch):
    clear_marks(project)
    set_inputs(project, second=30)
    w = watch()
    wait_until(lambda: started(project, "second"))
    assert w.stop(signal.SIGINT) == 130
    assert wait_gone(w.token) == []
    r = w.run(timeout=5)                      # the interrupted run is still reported
    assert r["status"] == "cancelled" and "second" in r["cancelled"]
    eps = run_e3("--json", "episodes", "--run", r["run"], cwd=project).json
    second = next(e for e in eps if e["dataflow"] == "second")
    assert second["history"][-1]["state"] == "cxl"
    fsck = run_e3("--json", "fsck", cwd=project)
    assert fsck.code == 0 and fsck.json["ok"]


def test_ctrl_c_again_and_again_while_watch_stops_still_exits_130(project, watch):
    clear_marks(project)
    set_inputs(project, second=30)
    w = watch()
    wait_until(lambda: started(project, "second"))
    while w.proc.poll() is None:             # one lands in every phase of the stopping
        w.proc.send_signal(signal.SIGINT)
        time.sleep(0.005)
    assert w.proc.wait(30) == 130
    assert wait_gone(w.token) == []
    assert run_e3("--json", "fsck", cwd=project).json["ok"]


def test_sigterm_stops_an_idle_watch_with_exit_130(project, watch):
    w = watch()
    w.run()
    w.armed()
    assert w.stop(signal.SIGTERM) == 130
    assert wait_gone(w.token) == []


def sigint_disposition(pid: int) -> str:
    """'ignored' or 'caught' or 'default', from /proc/PID/status."""
    fields = dict(line.split(":\t", 1) for line in open(f"/proc/{pid}/status").read().splitlines()
                  if ":\t" in line)
    bit = 1 << (signal.SIGINT - 1)
    if int(fields["SigIgn"], 16) & bit:
        return "ignored"
    return "caught" if int(fields["SigCgt"], 16) & bit else "default"


def test_sigterm_stops_a_watch_a_script_started_in_the_background_within_2_s(project, watch):
    w = watch(background=True)
    assert sigint_disposition(w.pid()) == "ignored"  # what the shell gave it: Ctrl-C is off
    w.run()
    w.armed()
    time.sleep(0.3)  # idle, waiting for edits (the initial run is over)
    t0 = time.monotonic()
    code = w.stop(signal.SIGTERM, timeout=10)
    took = time.monotonic() - t0
    assert code == 130, w.err_lines
    assert took < 2.0, took
    assert "e3: cancelled" in w.err_lines
    assert not any("Traceback" in l for l in w.err_lines), w.err_lines
    assert wait_gone(w.token) == []
    assert run_e3("--json", "fsck", cwd=project).json["ok"]


def test_sigterm_stops_a_background_watch_in_the_middle_of_a_run_within_2_s(project, watch):
    clear_marks(project)
    set_inputs(project, second=30)
    w = watch(background=True)
    wait_until(lambda: started(project, "second"))
    t0 = time.monotonic()
    assert w.stop(signal.SIGTERM, timeout=10) == 130, w.err_lines
    assert time.monotonic() - t0 < 2.0
    assert wait_gone(w.token) == []
    r = w.run(timeout=5)                      # the interrupted run is still reported
    assert r["status"] == "cancelled" and "second" in r["cancelled"]
    assert run_e3("--json", "fsck", cwd=project).json["ok"]


def test_a_change_during_a_run_is_picked_up_by_the_next_run(project, watch):
    clear_marks(project)
    set_inputs(project, second=1)
    w = watch()
    wait_until(lambda: started(project, "second"))
    set_inputs(project, side=0.01)
    r1 = w.run()
    assert r1["status"] == "ok" and r1["changed"] == []
    r2 = w.run()
    assert r2["changed"] == ["inputs/t/side"] and r2["executed"] == ["side"]
    assert w.stop() == 130


def test_abort_on_change_cancels_the_run_and_runs_again_with_the_change(project, watch):
    clear_marks(project)
    set_inputs(project, second=30)
    w = watch("--abort-on-change")
    wait_until(lambda: started(project, "second"))
    w.armed()
    set_inputs(project, second=0.01)
    r1 = w.run()
    assert r1["status"] == "cancelled" and r1["aborted"] and "second" in r1["cancelled"]
    r2 = w.run()
    assert r2["status"] == "ok" and r2["changed"] == ["inputs/t/second"]
    assert r2["executed"] == ["second", "third"] and r2["cached"] == ["first"]
    assert w.proc.poll() is None              # still watching
    assert w.stop() == 130
    assert wait_gone(w.token) == []


def test_e3_cancel_from_another_shell_stops_the_watch_with_130(project, watch):
    clear_marks(project)
    set_inputs(project, second=30)
    w = watch()
    wait_until(lambda: started(project, "second"))
    c = run_e3("--json", "cancel", cwd=project)
    assert c.code == 0 and c.json == {"cancelled": ["r1"]}
    assert w.proc.wait(30) == 130
    r = w.run(timeout=5)
    assert r["status"] == "cancelled" and not r["aborted"]
    assert wait_gone(w.token) == []


def test_watch_without_a_deployed_package_or_with_a_filter_matching_nothing_exits_2(project, tmp_path):
    r = run_e3("watch", "--filter", "nothing*", cwd=project)
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and "nothing*" in r.err
    empty = tmp_path / "empty"
    assert run_e3("init", str(empty), cwd=tmp_path).code == 0
    r = run_e3("watch", cwd=empty)
    assert r.code == 2 and "checkout" in r.err and len(r.err.strip().splitlines()) == 1
