"""e3logic.dataflow.watch: the debounce, the path → dataset → dataflow mapping, and the watcher
loop driven by a hand-fed event source (`ManualSource`) over a real repository and the real
`Go` (in this process, on the main thread, as `e3 watch` runs it). The watchfiles source is
exercised on real file edits at the end. No assertion depends on timing: waits are hang guards.
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from e3logic.api import Repo
from e3logic.dataflow.inspect import request_cancel
from e3logic.dataflow.watch import (Debouncer, ManualSource, Watcher, affected, dataset_paths,
                                    watchfiles_source)
from tests.naps import (NAMES, clear_marks, expected_outputs, kill_token_procs, new_token,
                        project_from_template, set_inputs, started, token_procs, wait_until)


# -- pure parts ------------------------------------------------------------------------------
def test_debouncer_is_due_only_once_the_window_passed_without_events():
    d = Debouncer(0.2)
    assert not d.pending and d.due_at() is None and not d.due(100.0)
    d.add(["inputs/a"], 10.0)
    d.add(["inputs/b"], 10.15)
    assert not d.due(10.3)          # 0.15 s after the last event
    assert d.due(10.35)
    assert d.take() == ["inputs/a", "inputs/b"]
    assert not d.pending and not d.due(99.0)


def test_debouncer_runs_a_steady_stream_of_edits_after_max_wait():
    d = Debouncer(0.2, max_wait=1.0)
    t = 0.0
    while t < 0.95:
        d.add(["inputs/log"], t)
        assert not d.due(t)
        t += 0.1
    d.add(["inputs/log"], 1.0)
    assert d.due(1.0)


def test_debouncer_ignores_an_empty_batch():
    d = Debouncer(0.2)
    d.add([], 1.0)
    assert not d.pending


def test_changed_files_map_to_dataset_paths_under_inputs_only(tmp_path):
    root = tmp_path
    paths = [root / "inputs" / "sales", root / "inputs" / "t" / "first", root / "outputs" / "x",
             root / ".e3" / "index.db", tmp_path.parent / "elsewhere", root / "inputs"]
    assert dataset_paths(root, map(str, paths)) == ["inputs", "inputs/sales", "inputs/t/first"]


def _fake_project():
    flows = {"first": ["inputs/seed", "inputs/t/first"],
             "second": ["outputs/first/o", "inputs/t/second"],
             "third": ["outputs/second/o", "inputs/t/third"],
             "side": ["inputs/seed", "inputs/t/side"],
             "big": ["outputs/first/o", "inputs/t/big", "inputs/size"]}
    deps = {"first": [], "second": ["first"], "third": ["second"], "side": [], "big": ["first"]}
    return SimpleNamespace(dataflows={n: {"inputs": i, "task": n} for n, i in flows.items()},
                           deps=deps, outputs={n: f"outputs/{n}/o" for n in flows})


ORDER = ["first", "side", "big", "second", "third"]


def test_affected_is_the_readers_of_a_changed_input_and_everything_downstream():
    p = _fake_project()
    assert affected(p, ORDER, ["inputs/t/second"]) == ["second", "third"]
    assert affected(p, ORDER, ["inputs/seed"]) == ["first", "side", "big", "second", "third"]
    assert affected(p, ORDER, ["inputs/size"]) == ["big"]
    assert affected(p, ORDER, ["inputs/notes"]) == []


def test_affected_of_a_folder_is_every_reader_below_it():
    p = _fake_project()
    assert affected(p, ORDER, ["inputs/t"]) == ORDER
    assert affected(p, ORDER, ["inputs"]) == ORDER


def test_affected_stays_inside_the_selection():
    p = _fake_project()
    assert affected(p, ["first", "second"], ["inputs/seed"]) == ["first", "second"]


# -- the watcher over a real repository ---------------------------------------------------------
@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return tmp_path_factory.mktemp("naps-watch")


@pytest.fixture
def project(template, tmp_path, monkeypatch):
    monkeypatch.setenv("E3_FSYNC", "0")
    token = new_token()
    monkeypatch.setenv("E3TEST_TOKEN", token)  # the tasks of in-process runs inherit it
    p = project_from_template(template, tmp_path / "proj")
    yield p
    kill_token_procs(token)


class Driver:
    """Runs `steps` in a helper thread while the watcher loop runs on the main thread (as in
    `e3 watch`: `go` installs signal handlers, which only the main thread may do)."""

    def __init__(self, watcher: Watcher, steps):
        self.watcher, self.error = watcher, None
        self.thread = threading.Thread(target=self._run, args=(steps,), daemon=True)

    def _run(self, steps):
        try:
            steps()
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            self.watcher.stop()

    def loop(self, **kw) -> int:
        self.thread.start()
        rc = self.watcher.loop(**kw)
        self.thread.join(30)
        if self.error:
            raise self.error
        return rc


def make_watcher(project: Path, src: ManualSource, **kw) -> Watcher:
    kw.setdefault("debounce_ms", 50)
    kw.setdefault("cap", 4)
    return Watcher(Repo.open(str(project)), source=src, **kw)


def runs_done(w: Watcher, n: int):
    return lambda: len([r for r in w.runs if r.result is not None]) >= n


def test_watcher_runs_everything_once_then_only_what_an_edit_affects(project):
    src = ManualSource()
    w = make_watcher(project, src)

    def steps():
        wait_until(runs_done(w, 1))
        set_inputs(project, second=0.01)
        src.put([project / "inputs" / "t" / "second"])
        wait_until(runs_done(w, 2))

    assert Driver(w, steps).loop() == 0
    first, second = [r.result for r in w.runs]
    assert first["status"] == "ok" and first["executed"] == NAMES
    assert w.runs[1].changed == ["inputs/t/second"]
    assert w.runs[1].targets == ["second", "third"]
    # `second`'s output does not depend on how long it slept: `third` is an early-cutoff hit
    assert second["executed"] == ["second"] and second["cached"] == ["first", "third"]
    assert (project / "outputs" / "third" / "o").read_bytes() == expected_outputs()["third"]


def test_an_edit_nobody_reads_starts_no_run_and_says_so(project):
    src = ManualSource()
    notes = []
    w = make_watcher(project, src, note=notes.append)

    def steps():
        wait_until(runs_done(w, 1))
        (project / "inputs" / "notes").write_text("hello")
        src.put([project / "inputs" / "notes", project / "inputs" / ".seed.swp"])
        wait_until(lambda: any("no dataflow reads it" in n for n in notes))

    assert Driver(w, steps).loop() == 0
    assert len(w.runs) == 1
    assert any("inputs/notes" in n and "no dataflow reads it" in n for n in notes)


def test_edits_within_the_debounce_window_make_one_run(project):
    src = ManualSource()
    w = make_watcher(project, src, debounce_ms=300)

    def steps():
        wait_until(runs_done(w, 1))
        set_inputs(project, side=0.01)
        src.put([project / "inputs" / "t" / "side"])
        set_inputs(project, size=10)
        src.put([project / "inputs" / "size"])
        wait_until(runs_done(w, 2))

    Driver(w, steps).loop()
    assert len(w.runs) == 2
    assert w.runs[1].changed == ["inputs/size", "inputs/t/side"]
    assert w.runs[1].result["executed"] == ["big", "side"]


def test_a_run_cancelled_from_another_shell_stops_the_watcher_with_130(project):
    clear_marks(project)
    set_inputs(project, second=30)
    src = ManualSource()
    w = make_watcher(project, src)
    cancelled = []

    def steps():
        wait_until(lambda: started(project, "second"))
        set_inputs(project, side=0.02)               # an edit while it runs: queued, not run
        src.put([project / "inputs" / "t" / "side"])
        cancelled.append(request_cancel(Repo.open(str(project)), None))

    rc = Driver(w, steps).loop()
    assert cancelled == [["r1"]]
    assert rc == 130
    assert len(w.runs) == 1
    assert w.runs[0].result["status"] == "cancelled" and not w.runs[0].aborted
    assert "second" in w.runs[0].result["cancelled"]


def test_a_change_queued_during_a_run_is_run_right_after_it(project):
    set_inputs(project, first=0.5)
    src = ManualSource()
    w = make_watcher(project, src)

    def steps():
        wait_until(lambda: started(project, "first"))
        set_inputs(project, side=0.02)
        src.put([project / "inputs" / "t" / "side"])
        wait_until(runs_done(w, 2))

    Driver(w, steps).loop()
    r1, r2 = w.runs[0].result, w.runs[1].result
    assert r1["status"] == "ok" and "side" in r1["executed"] + r1["cached"]
    assert w.runs[1].changed == ["inputs/t/side"]
    # the first run may or may not have seen the edit (it read inputs before it): either way
    # the second run leaves `side` computed from the new duration
    assert r2["status"] == "ok" and r2["executed"] + r2["cached"] == ["side"]
    assert (project / "outputs" / "side" / "o").read_bytes() == expected_outputs()["side"]


def test_abort_on_change_cancels_the_run_in_flight_and_runs_again_with_the_change(project):
    clear_marks(project)
    set_inputs(project, second=30)
    src = ManualSource()
    w = make_watcher(project, src, abort_on_change=True)

    def steps():
        wait_until(lambda: started(project, "second"))
        set_inputs(project, second=0.01)
        src.put([project / "inputs" / "t" / "second"])
        wait_until(runs_done(w, 2))

    assert Driver(w, steps).loop() == 0
    r1, r2 = w.runs
    assert r1.aborted and r1.result["status"] == "cancelled"
    assert "second" in r1.result["cancelled"] and "first" in r1.result["executed"]
    assert r2.changed == ["inputs/t/second"] and r2.result["status"] == "ok"
    assert r2.result["executed"] == ["second", "third"] and r2.result["cached"] == ["first"]
    assert not [p for p, cmd in token_procs(os.environ["E3TEST_TOKEN"]) if "sleep" in cmd]


def test_abort_on_change_ignores_an_edit_nobody_reads(project):
    clear_marks(project)
    set_inputs(project, second=0.6)
    src = ManualSource()
    w = make_watcher(project, src, abort_on_change=True)

    def steps():
        wait_until(lambda: started(project, "second"))
        src.put([project / "inputs" / "unrelated"])
        wait_until(runs_done(w, 1))

    Driver(w, steps).loop()
    assert len(w.runs) == 1 and w.runs[0].result["status"] == "ok" and not w.runs[0].aborted


def test_a_busy_workspace_is_retried_not_fatal(project):
    repo = Repo.open(str(project))
    lock = repo.workspaces.run_lock("main").acquire("go (a test holding the run lock)")
    notes = []
    src = ManualSource()
    w = make_watcher(project, src, note=notes.append, retry_s=0.05)

    def steps():
        wait_until(lambda: any("is busy" in n for n in notes))
        lock.release()
        wait_until(runs_done(w, 1))

    try:
        Driver(w, steps).loop()
    finally:
        lock.release()
    assert [r.busy for r in w.runs][:1] == [True]
    assert w.runs[-1].result["status"] == "ok"


def test_a_bad_input_is_reported_and_the_edit_that_fixes_it_runs(project):
    src = ManualSource()
    notes = []
    w = make_watcher(project, src, note=notes.append)
    seed = project / "inputs" / "seed"

    def steps():
        wait_until(runs_done(w, 1))
        seed.write_text('"seed-2')                   # a JSON dataset, broken
        src.put([seed])
        wait_until(lambda: any("not valid JSON" in n for n in notes))
        seed.write_text('"seed-2"')
        src.put([seed])
        wait_until(runs_done(w, 2))

    assert Driver(w, steps).loop() == 0
    assert [r.error is not None for r in w.runs] == [False, True, False]
    assert w.runs[-1].changed == ["inputs/seed"] and w.runs[-1].result["status"] == "ok"
    assert (project / "outputs" / "third" / "o").read_bytes() == \
        expected_outputs(seed="seed-2")["third"]


def test_stop_ends_the_loop_with_exit_0_and_no_run_after_it(project):
    src = ManualSource()
    w = make_watcher(project, src, initial=False)
    assert Driver(w, lambda: None).loop() == 0
    assert list(w.runs) == []


def test_a_filter_matching_nothing_is_a_usage_error_before_watching(project):
    from e3logic.core.errors import UsageError

    w = make_watcher(project, ManualSource(), pattern="nothing*")
    with pytest.raises(UsageError):
        w.loop()


# -- the watchfiles source on real files ----------------------------------------------------------
def _collect(directory: Path, action, want, timeout=20.0) -> list[set]:
    """Run watchfiles_source on `directory`; once a probe file is seen (the watch is armed),
    do `action()` and collect batches until `want(union of paths)`."""
    stop = threading.Event()
    batches: list[set] = []

    def consume():
        for b in watchfiles_source(directory, stop):
            if b:
                batches.append(b)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    probe = directory / ".probe"

    def armed():
        probe.write_text(str(time.monotonic()))
        return any(str(probe) in b for b in batches)

    try:
        wait_until(armed, timeout, step=0.05)
        probe.unlink()
        batches.clear()
        action()
        wait_until(lambda: want(set().union(*batches) if batches else set()), timeout)
    finally:
        stop.set()
        t.join(5)
    return batches


def test_watchfiles_source_reports_a_save_by_rename(tmp_path):
    d = tmp_path / "inputs"
    d.mkdir()
    (d / "sales").write_text("1")

    def save_like_vscode():
        tmp = d / ".sales.tmp"
        tmp.write_text("2")
        os.replace(tmp, d / "sales")

    seen = _collect(d, save_like_vscode, lambda s: str(d / "sales") in s)
    assert str(d / "sales") in set().union(*seen)


def test_watchfiles_source_keeps_watching_after_a_vim_style_save(tmp_path):
    d = tmp_path / "inputs"
    d.mkdir()
    (d / "sales").write_text("1")

    def vim_then_edit():
        os.rename(d / "sales", d / "sales~")
        (d / "sales").write_text("2")
        os.unlink(d / "sales~")
        time.sleep(0.2)
        (d / "other").write_text("3")

    seen = _collect(d, vim_then_edit, lambda s: str(d / "other") in s)
    assert {str(d / "sales"), str(d / "other")} <= set().union(*seen)


def test_watchfiles_source_rearms_on_a_replaced_inputs_folder(tmp_path):
    d = tmp_path / "inputs"
    d.mkdir()
    (d / "sales").write_text("1")

    def replace_folder():
        shutil.rmtree(d)
        d.mkdir()
        (d / "sales").write_text("restored")
        time.sleep(0.8)  # the re-armed watch sees the next edit
        (d / "sales").write_text("edited after")

    seen = _collect(d, replace_folder,
                    lambda s: str(d) in s and str(d / "sales") in s)
    assert str(d) in set().union(*seen)  # "everything under inputs/ may have changed"
