"""End-to-end interruptions of the real `e3 go` (issue 6): real signals (SIGINT, SIGTERM,
SIGKILL) at several moments of a run of `naps` (shell `sleep` tasks, tests/naps.py), and two
shells on one repository.

After every interruption: the exit code (130 for SIGINT/SIGTERM), `e3 fsck` clean, the episode
histories (cancelled ones end in `cxl`; a killed run's are closed by the next `go`), no task
process left (read from /proc by an environment token), and the next run's cache hits
(everything committed before the signal is `cached`, every output right).

Moments: *before the first commit* (every started task still sleeping), *between commits*
(`first` committed, `second` sleeping) and *during a commit* (the signal follows the
adoption of `big`'s 64 MB output into the object store, before its root update and
working-copy copy).
Waits are hang guards, not timing assertions.
"""
from __future__ import annotations

import json
import re
import signal
import time

import pytest

from tests.naps import (BIG, FINAL, MOMENTS, NAMES, Proj, after_the_last_root_update,
                        between_commits, clear_marks, nothing_to_run_yet_outputs_are_right,
                        expected_outputs, kill_token_procs, new_token,
                        next_run_reuses_what_was_committed, project_from_template,
                        set_inputs, started, wait_gone, wait_until)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return tmp_path_factory.mktemp("naps-interrupt")


@pytest.fixture
def proj(template, tmp_path):
    p = Proj(project_from_template(template, tmp_path / "proj"), new_token())
    clear_marks(p.path)
    yield p
    kill_token_procs(p.token)


@pytest.mark.parametrize("moment", list(MOMENTS))
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_cancels_the_run_with_exit_130_keeping_what_committed(proj, moment, sig):
    proc = MOMENTS[moment](proj)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out, err)
    res = json.loads(out)
    assert res["status"] == "cancelled" and res["cancelled"], res
    # no task process outlives the command
    assert wait_gone(proj.token) == []
    proj.check_fsck()
    hist = proj.histories(res["run"])
    for name in res["cancelled"]:
        assert hist[name][-1] == "cxl", (name, hist[name])
    assert all(h[-1] in FINAL for h in hist.values()), hist
    before = proj.outputs_in_root()
    assert set(res["executed"]) <= before
    size = BIG if moment == "during-a-commit" else 0
    next_run_reuses_what_was_committed(proj, before, size)
    # the interrupted run stays recorded as cancelled
    assert proj.runs()[res["run"]] == "cancelled"


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_sigkill_at_any_moment_loses_nothing_and_the_next_go_cleans_up(proj, moment):
    proc = MOMENTS[moment](proj)
    proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed = proj.latest_run()
    assert proj.runs()[killed] == "running"    # nobody could say otherwise yet
    proj.check_fsck()
    before = proj.outputs_in_root()
    size = BIG if moment == "during-a-commit" else 0
    # the next go takes the lock without --force, stops the orphaned sleeps, reuses commits
    next_run_reuses_what_was_committed(proj, before, size)
    assert wait_gone(proj.token) == [], "task processes of the killed run are still running"
    assert proj.runs()[killed] != "running"
    hist = proj.histories(killed)
    assert all(h[-1] in FINAL for h in hist.values()), hist
    proj.check_fsck()


def test_sigkill_after_the_last_root_update_but_before_the_working_copy_write_is_repaired(proj):
    """The last commit's root update is done, its 64 MB working-copy copy is not: the next
    `go` has nothing to run, yet must leave outputs/ matching the root."""
    proc = after_the_last_root_update(proj)
    proc.kill()
    proc.communicate(timeout=30)
    nothing_to_run_yet_outputs_are_right(proj)


def test_a_second_ctrl_c_while_cleaning_up_changes_nothing(proj):
    proc = between_commits(proj)
    # Ctrl-C again and again until it exits, so that one lands in every phase of the cleanup
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.005)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out, err)
    res = json.loads(out)
    assert res["status"] == "cancelled"
    assert wait_gone(proj.token) == []
    proj.check_fsck()
    assert proj.runs()[res["run"]] == "cancelled"
    next_run_reuses_what_was_committed(proj, proj.outputs_in_root(), 0)


# -- two shells ------------------------------------------------------------------------------
def test_a_second_go_on_the_same_workspace_fails_fast_naming_the_first(proj):
    proc = between_commits(proj)
    try:
        r = proj.e3("go", timeout=30)
        assert r.code not in (0, 130), r
        assert len(r.err.strip().splitlines()) == 1, r
        assert str(proc.pid) in r.err                       # pid
        assert re.search(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d", r.err), r.err  # start time
        assert "e3 go" in r.err                             # command
        assert proc.poll() is None                          # the first one goes on
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130


def test_go_on_another_workspace_of_the_same_repository_runs_in_parallel(proj):
    assert proj.e3("workspace", "create", "ws2").code == 0
    assert proj.e3("workspace", "deploy", "ws2", "naps").code == 0
    proc = between_commits(proj)
    try:
        r = proj.e3("--json", "go", "-w", "ws2", "-j", "4", timeout=60)
        assert r.code == 0, r
        # the memo is shared by workspaces: what main already committed is a cache hit here
        assert r.json["status"] == "ok"
        assert sorted(r.json["executed"] + r.json["cached"]) == NAMES
        assert r.json["workspace"] == "ws2"
        assert proc.poll() is None          # main's run was going on all along
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130


def test_e3_set_during_a_run_succeeds_and_no_output_mixes_old_and_new_inputs(proj):
    set_inputs(proj.path, second=1.5)
    proc = proj.go_bg()
    wait_until(lambda: started(proj.path, "second"))
    new_seed = proj.path / "seed2.json"
    new_seed.write_text('"seed-2"')
    s = proj.e3("--json", "set", "inputs/seed", str(new_seed))
    assert s.code == 0, s
    out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 1), (out, err)
    res = json.loads(out)
    # each output is either computed from the new seed, or reported stale: never a mix
    want = expected_outputs(seed="seed-2")
    got = {n: (proj.path / "outputs" / n / "o").read_bytes() for n in NAMES}
    old = expected_outputs(seed="seed-1")
    for n in NAMES:
        assert got[n] == want[n] or (n in res["stale"] and got[n] == old[n]), (n, got[n], res)
    # and the next go finishes the job
    r = proj.e3("--json", "go", "-j", "4")
    assert r.code == 0, r
    for n in NAMES:
        assert (proj.path / "outputs" / n / "o").read_bytes() == want[n]


def test_deploy_and_checkout_during_a_run_are_refused_naming_the_run(proj):
    # the slow duration is committed first: the refusal can only be about the run
    set_inputs(proj.path, second=30)
    assert proj.e3("commit", "--patch", "-m", "slow second").code == 0
    proc = between_commits(proj)
    try:
        for args in (("checkout", "naps", "--force"), ("workspace", "deploy", "main", "naps")):
            r = proj.e3(*args, timeout=30)
            assert r.code not in (0, 130), (args, r)
            assert str(proc.pid) in r.err and "e3 go" in r.err, (args, r.err)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
    proj.check_fsck()


def test_e3_cancel_from_another_shell_stops_the_run(proj):
    proc = between_commits(proj)
    run_id = proj.latest_run()
    c = proj.e3("--json", "cancel")
    assert c.code == 0 and c.json == {"cancelled": [run_id]}, c
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out, err)
    res = json.loads(out)
    assert res["status"] == "cancelled" and "second" in res["cancelled"]
    assert proj.histories(run_id)["second"][-1] == "cxl"
    assert wait_gone(proj.token) == []
    # nothing is running any more: a second cancel finds nothing
    c = proj.e3("--json", "cancel")
    assert c.code == 0 and c.json == {"cancelled": []}
