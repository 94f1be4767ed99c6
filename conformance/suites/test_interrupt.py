"""Conformance suite `interrupt`: Ctrl-C, SIGTERM, kill -9, two shells, `e3 cancel` and
`e3 watch` (issue 6), as scenarios run against the real `e3` command and real signals.

A scenario names a *moment* of an `e3 go` of the `naps` package (tests/naps.py: shell `sleep`
tasks; first → second → third, first → big, and side) and an *act* done at that moment. Every
scenario then checks what the issue promises for that act: the exit code, `e3 fsck` clean, the
episode histories (cancelled ones end in `cxl`; a killed run's are closed by the next `go`),
no task process left behind (found in /proc by an environment token), the run recorded as it
ended, and a next `go` that reuses everything committed before and leaves every output right.
"""
from __future__ import annotations

import json
import queue
import re
import signal
import threading
import time
from dataclasses import dataclass

import pytest

from tests.helpers import run_e3
from tests.naps import (BIG, FINAL, MOMENTS, NAMES, Proj, after_the_last_root_update,
                        clear_marks, expected_outputs, nothing_to_run_yet_outputs_are_right,
                        kill_token_procs, new_token, next_run_reuses_what_was_committed,
                        project_from_template, set_inputs, start_e3, started, token_env,
                        wait_gone, wait_until)


@dataclass(frozen=True)
class Scenario:
    moment: str   # a key of MOMENTS
    act: str      # what happens at that moment (see ACTS)

    @property
    def id(self) -> str:
        return f"{self.act}@{self.moment}"


SIGNAL_ACTS = {"ctrl-c": signal.SIGINT, "sigterm": signal.SIGTERM}
GO_SCENARIOS = [Scenario(m, a) for a in ("ctrl-c", "sigterm", "kill-9") for m in MOMENTS] + [
    Scenario("between-commits", "ctrl-c-repeated"),
    Scenario("between-commits", "e3-cancel"),
    Scenario("between-commits", "second-go"),
    Scenario("between-commits", "go-on-another-workspace"),
    Scenario("between-commits", "checkout"),
    Scenario("between-commits", "deploy"),
    Scenario("between-commits", "set-an-input"),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return tmp_path_factory.mktemp("naps-conformance")


@pytest.fixture
def proj(template, tmp_path):
    p = Proj(project_from_template(template, tmp_path / "proj"), new_token())
    clear_marks(p.path)
    yield p
    kill_token_procs(p.token)


def stop(proc, sig=signal.SIGINT) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(30)


def cancelled_cleanly(p: Proj, proc, out: str, size: int) -> None:
    """What a cancelled `go` must leave: exit 130, a cancelled answer, cxl histories, no task
    process, fsck clean, and a next run reusing every commit."""
    assert proc.returncode == 130, out
    res = json.loads(out)
    assert res["status"] == "cancelled" and res["cancelled"]
    assert wait_gone(p.token) == []
    p.check_fsck()
    hist = p.histories(res["run"])
    assert all(hist[n][-1] == "cxl" for n in res["cancelled"]), hist
    assert all(h[-1] in FINAL for h in hist.values()), hist
    before = p.outputs_in_root()
    assert set(res["executed"]) <= before
    next_run_reuses_what_was_committed(p, before, size)
    assert p.runs()[res["run"]] == "cancelled"


@pytest.mark.parametrize("sc", GO_SCENARIOS, ids=lambda s: s.id)
def test_interrupting_go(proj, sc):
    p = proj
    size = BIG if sc.moment == "during-a-commit" else 0
    if sc.act == "go-on-another-workspace":
        assert p.e3("workspace", "create", "ws2").code == 0
        assert p.e3("workspace", "deploy", "ws2", "naps").code == 0
    if sc.act in ("checkout", "deploy"):  # commit the slow input: refused only for the run
        set_inputs(p.path, second=30)
        assert p.e3("commit", "--patch", "-m", "slow second").code == 0
    proc = MOMENTS[sc.moment](p)
    try:
        if sc.act in SIGNAL_ACTS:
            proc.send_signal(SIGNAL_ACTS[sc.act])
            out, _ = proc.communicate(timeout=30)
            cancelled_cleanly(p, proc, out, size)
        elif sc.act == "ctrl-c-repeated":
            while proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                time.sleep(0.005)
            out, _ = proc.communicate(timeout=30)
            cancelled_cleanly(p, proc, out, size)
        elif sc.act == "kill-9":
            proc.kill()
            proc.communicate(timeout=30)
            killed = p.latest_run()
            p.check_fsck()
            before = p.outputs_in_root()
            next_run_reuses_what_was_committed(p, before, size)
            assert wait_gone(p.token) == []
            assert p.runs()[killed] != "running"
            assert all(h[-1] in FINAL for h in p.histories(killed).values())
        elif sc.act == "e3-cancel":
            run_id = p.latest_run()
            c = p.e3("--json", "cancel")
            assert c.code == 0 and c.json == {"cancelled": [run_id]}
            out, _ = proc.communicate(timeout=30)
            cancelled_cleanly(p, proc, out, size)
        elif sc.act == "second-go":
            r = p.e3("go", timeout=30)
            assert r.code not in (0, 130) and len(r.err.strip().splitlines()) == 1
            assert str(proc.pid) in r.err and "e3 go" in r.err
            assert re.search(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d", r.err)
            assert proc.poll() is None
            assert stop(proc) == 130
        elif sc.act == "go-on-another-workspace":
            r = p.e3("--json", "go", "-w", "ws2", "-j", "4", timeout=60)
            assert r.code == 0 and r.json["status"] == "ok" and r.json["workspace"] == "ws2", r
            assert proc.poll() is None
            assert stop(proc) == 130
        elif sc.act in ("checkout", "deploy"):
            args = (("checkout", "naps", "--force") if sc.act == "checkout"
                    else ("workspace", "deploy", "main", "naps"))
            r = p.e3(*args, timeout=30)
            assert r.code not in (0, 130) and str(proc.pid) in r.err and "e3 go" in r.err, r
            assert proc.poll() is None
            assert stop(proc) == 130
            p.check_fsck()
        elif sc.act == "set-an-input":
            src = p.path / "seed2.json"
            src.write_text('"seed-2"')
            assert p.e3("set", "inputs/seed", str(src)).code == 0
            set_inputs(p.path, second=0)  # only read by the next run: this one goes on
            assert stop(proc) == 130
            r = p.e3("--json", "go", "-j", "4")
            assert r.code == 0, r
            want = expected_outputs(seed="seed-2")
            for n in NAMES:
                assert (p.path / "outputs" / n / "o").read_bytes() == want[n], n
        else:  # pragma: no cover
            raise AssertionError(f"unknown act {sc.act}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_kill_9_after_the_last_root_update_then_a_go_with_nothing_to_run(proj):
    proc = after_the_last_root_update(proj)
    proc.kill()
    proc.communicate(timeout=30)
    nothing_to_run_yet_outputs_are_right(proj)
    assert wait_gone(proj.token) == []


# -- watch -------------------------------------------------------------------------------------
WATCH_SCENARIOS = ["edit-reruns-affected", "save-by-rename", "vim-save", "change-during-run",
                   "abort-on-change", "ctrl-c-during-run", "sigterm-idle", "e3-cancel"]


class Watch:
    def __init__(self, p: Proj, *args):
        self.p = p
        self.proc = start_e3("--json", "watch", "-j", "4", *args, cwd=p.path,
                             env=token_env(p.token))
        self.q: "queue.Queue[str]" = queue.Queue()
        self.err: list[str] = []
        threading.Thread(target=lambda: [self.q.put(x) for x in self.proc.stdout],
                         daemon=True).start()
        threading.Thread(target=lambda: [self.err.append(x) for x in self.proc.stderr],
                         daemon=True).start()

    def run(self, timeout=60) -> dict:
        return json.loads(self.q.get(timeout=timeout))

    def armed(self):
        wait_until(lambda: any("watching inputs/" in x for x in self.err), 30)


@pytest.mark.parametrize("name", WATCH_SCENARIOS)
def test_watch(proj, name):
    p = proj
    slow = name in ("change-during-run", "abort-on-change", "ctrl-c-during-run", "e3-cancel")
    if slow:
        set_inputs(p.path, second=1 if name == "change-during-run" else 30)
    w = Watch(p, *(["--abort-on-change"] if name == "abort-on-change" else []))
    try:
        if not slow:
            first = w.run()
            assert first["status"] == "ok" and sorted(first["executed"]) == NAMES
            w.armed()
        if name in ("edit-reruns-affected", "save-by-rename", "vim-save"):
            side = p.path / "inputs" / "t" / "side"
            if name == "edit-reruns-affected":
                side.write_text("side 0.01\n")
            elif name == "save-by-rename":
                set_inputs(p.path, side=0.01)
            else:
                side.rename(side.with_name("side~"))
                side.write_text("side 0.01\n")
                side.with_name("side~").unlink()
            r = w.run()
            assert r["changed"] == ["inputs/t/side"] and r["executed"] == ["side"]
            assert r["cached"] == [] and r["status"] == "ok"
            assert stop(w.proc) == 130
        elif name == "sigterm-idle":
            assert stop(w.proc, signal.SIGTERM) == 130
        elif name == "change-during-run":
            wait_until(lambda: started(p.path, "second"))
            set_inputs(p.path, side=0.01)
            assert w.run()["status"] == "ok"
            r = w.run()
            assert r["changed"] == ["inputs/t/side"] and r["executed"] == ["side"]
            assert stop(w.proc) == 130
        elif name == "abort-on-change":
            wait_until(lambda: started(p.path, "second"))
            w.armed()
            set_inputs(p.path, second=0)
            r1, r2 = w.run(), w.run()
            assert r1["status"] == "cancelled" and r1["aborted"]
            assert r2["status"] == "ok" and "second" in r2["executed"]
            assert stop(w.proc) == 130
        elif name == "ctrl-c-during-run":
            wait_until(lambda: started(p.path, "second"))
            assert stop(w.proc) == 130
            assert w.run(timeout=5)["status"] == "cancelled"
        elif name == "e3-cancel":
            wait_until(lambda: started(p.path, "second"))
            assert run_e3("--json", "cancel", cwd=p.path).json == {"cancelled": ["r1"]}
            assert w.proc.wait(30) == 130
        assert wait_gone(p.token) == []
        p.check_fsck()
    finally:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait(10)
