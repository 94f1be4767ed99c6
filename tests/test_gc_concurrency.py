"""gc cannot break a repository (issue 15, "Integrity"): what a later `go` compares against is a
root, and `e3 gc --min-age 0` beside running `go`, `set`, `reset` and `checkout` commands — real
processes, through the real `e3` command — leaves a repository that fsck finds clean and whose
outputs are what an independent computation gives."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.flows import Proj, make_project, write_package
from tests.helpers import e3_env, run_e3

N = 4  # chains: inputs/t{i} -> up{i} (upper case) -> twice{i} (the text twice); 8 dataflows
SLOW_PKG = f'''
from e3logic import sdk

package = sdk.package("slow", "0.1.0")
package.task("up", ["sh", "-c", "sleep 0.3; tr a-z A-Z < {{input0}} > {{output}}"],
             runtime="shell")
package.task("twice", ["sh", "-c", "sleep 0.3; cat {{input0}} {{input0}} > {{output}}"],
             runtime="shell")
for i in range({N}):
    package.dataset(f"inputs/t{{i}}", file=f"data/t{{i}}.txt")
    package.dataflow(f"up{{i}}", task="up", inputs=[f"inputs/t{{i}}"], output="o")
    package.dataflow(f"twice{{i}}", task="twice", inputs=[f"outputs/up{{i}}/o"], output="o")
'''
FLOWS = sorted([f"up{i}" for i in range(N)] + [f"twice{i}" for i in range(N)])


@pytest.fixture(scope="module")
def slow_template(tmp_path_factory):
    d = tmp_path_factory.mktemp("gc-slow")
    pkg = write_package(d / "pkg", SLOW_PKG,
                        {f"data/t{i}.txt": f"text number {i}\n" for i in range(N)})
    return make_project(d / "proj", pkg, "slow")


@pytest.fixture
def slow_proj(slow_template, tmp_path):
    """A project of package `slow` checked out, nothing run."""
    shutil.copytree(slow_template, tmp_path / "p", symlinks=True)
    return Proj(tmp_path / "p")


def expected(text: bytes) -> dict[str, bytes]:
    """An independent computation of the chain on one input."""
    up = text.upper()
    return {"up": up, "twice": up + up}


def check_outputs(proj: Proj) -> None:
    """Every output in the workspace (read with `e3 get`) is the independent computation of
    the workspace's inputs."""
    for i in range(N):
        r = proj.e3("get", f"inputs/t{i}")
        assert r.code == 0, r
        want = expected(r.out.encode())
        for step in ("up", "twice"):
            out = proj.e3("get", f"outputs/{step}{i}/o")
            assert out.code == 0, out
            assert out.out.encode() == want[step], (step, i)


def fsck_clean(proj: Proj) -> None:
    r = proj.e3("--json", "fsck")
    assert r.code == 0 and r.json["ok"] is True, r


def set_text(proj: Proj, i: int, text: str) -> dict:
    f = proj.path.parent / f"new-t{i}.txt"
    f.write_text(text)
    r = proj.e3("--json", "set", f"inputs/t{i}", str(f))
    assert r.code == 0, r
    return r.json


class GcLoop:
    """`e3 gc --min-age 0` again and again, each a real process, until stopped."""

    def __init__(self, proj: Proj):
        self.proj, self.results = proj, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self.stop.is_set():
            self.results.append(self.proj.e3("--json", "gc", "--min-age", "0"))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(120)
        assert self.results, "gc never ran"
        for r in self.results:
            assert r.code == 0 and "error" not in r.err, r


def start_go(proj: Proj, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "e3logic", "--json", "go", "-j", "2", *args],
                            cwd=proj.path, env=e3_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_running(proj: Proj, go: subprocess.Popen) -> None:
    """Until the run (the project's first) has started its episodes, asking `e3 episodes`."""
    for _ in range(600):
        assert go.poll() is None, go.communicate()
        r = proj.e3("--json", "episodes")
        if r.code == 0 and r.json:
            return
        time.sleep(0.05)
    pytest.fail("the run never started")


# -- no concurrency: what go compares against is a root ---------------------------------------
def test_go_and_its_dry_run_work_after_a_set_and_a_gc_at_min_age_zero(slow_proj):
    proj = slow_proj
    assert sorted(proj.go()["executed"]) == FLOWS
    set_text(proj, 0, "a new horizon\n")
    gc = proj.e3("--json", "gc", "--min-age", "0")
    assert gc.code == 0, gc
    dry = proj.e3("--json", "go", "--dry-run")
    assert dry.code == 0, dry
    assert dry.json["would_run"] == ["twice0", "up0"]
    res = proj.go()
    assert res["executed"] == ["twice0", "up0"] and len(res["cached"]) == 6
    check_outputs(proj)
    fsck_clean(proj)


def test_go_works_after_a_reset_and_a_gc_at_min_age_zero(slow_proj):
    proj = slow_proj
    proj.go()
    set_text(proj, 1, "edited\n")
    assert proj.go()["executed"] == ["twice1", "up1"]
    assert proj.e3("reset").code == 0
    assert proj.e3("gc", "--min-age", "0").code == 0
    dry = proj.e3("--json", "go", "--dry-run")
    assert dry.code == 0, dry
    res = proj.go()
    assert res["executed"] == [] and res["cached"] == FLOWS  # the memo still has them
    check_outputs(proj)
    fsck_clean(proj)


def test_a_settled_run_survives_gc_after_a_set_and_after_a_checkout(slow_proj):
    proj = slow_proj
    proj.go()
    set_text(proj, 2, "two\n")
    assert proj.e3("gc", "--min-age", "0").code == 0
    assert proj.e3("checkout", "slow", "--force").code == 0  # back to the deployed inputs
    assert proj.e3("gc", "--min-age", "0").code == 0
    assert proj.go()["executed"] == []
    set_text(proj, 3, "three\n")
    assert proj.e3("gc", "--min-age", "0").code == 0
    assert proj.go()["executed"] == ["twice3", "up3"]
    check_outputs(proj)
    fsck_clean(proj)


# -- gc beside running commands ---------------------------------------------------------------
def test_gc_looping_beside_a_run_with_slow_tasks_breaks_nothing(slow_proj):
    proj = slow_proj
    with GcLoop(proj) as loop:
        go = start_go(proj)
        wait_running(proj, go)
        # the run's snapshot no longer is the workspace root: only the run holds the inputs of
        # the tasks it has yet to start
        for i in range(N):
            set_text(proj, i, f"changed while running {i}\n")
        out, err = go.communicate(timeout=120)
        assert go.returncode == 0, err
        rounds = len(loop.results)
        while len(loop.results) < rounds + 2:  # gc again after the run, before the next one
            time.sleep(0.05)
        res = proj.go()  # the edits made every dataflow stale
        assert res["status"] == "ok" and res["executed"] == FLOWS
    assert "unknown object" not in err
    fsck_clean(proj)
    check_outputs(proj)
    again = proj.go()
    assert again["executed"] == [] and again["cached"] == FLOWS
    check_outputs(proj)


def test_gc_beside_a_loop_of_sets_loses_no_dataset(slow_proj):
    proj = slow_proj
    proj.go()
    with GcLoop(proj):
        for k in range(12):
            i = k % N
            set_text(proj, i, f"value {k}\n")
            r = proj.e3("get", f"inputs/t{i}")
            assert r.code == 0 and r.out == f"value {k}\n", r
        res = proj.go()
        assert res["status"] == "ok" and sorted(res["executed"]) == FLOWS
    fsck_clean(proj)
    check_outputs(proj)
    for i in range(N):
        assert proj.e3("get", f"inputs/t{i}").out == f"value {8 + i}\n"


def test_gc_waits_for_a_running_go_and_names_it(slow_proj):
    proj = slow_proj
    go = start_go(proj)
    wait_running(proj, go)
    gc = proj.e3("--json", "gc", "--min-age", "0")
    out, err = go.communicate(timeout=120)
    assert go.returncode == 0, err
    assert gc.code == 0, gc
    assert "gc: waiting for 1 running command to finish" in gc.err
    assert f"pid {go.pid}: e3 --json go" in gc.err
    fsck_clean(proj)
    check_outputs(proj)


def test_a_killed_go_leaves_no_lock_behind_for_gc(slow_proj):
    proj = slow_proj
    go = start_go(proj)
    wait_running(proj, go)
    os.kill(go.pid, signal.SIGKILL)
    go.communicate(timeout=60)
    gc = proj.e3("--json", "gc", "--min-age", "0")  # does not wait for the dead run
    assert gc.code == 0 and "waiting" not in gc.err, gc
    res = proj.go()
    assert res["status"] == "ok"
    fsck_clean(proj)
    check_outputs(proj)


def test_gc_beside_checkouts_and_resets_keeps_the_working_copy_whole(slow_proj):
    proj = slow_proj
    proj.go()
    with GcLoop(proj):
        for k in range(4):
            set_text(proj, 0, f"edit {k}\n")
            assert proj.e3("reset").code == 0
            assert proj.e3("checkout", "slow", "--force").code == 0
            assert proj.e3("--json", "status").code == 0
    fsck_clean(proj)
    res = proj.go()
    assert res["executed"] == [] and res["cached"] == FLOWS
    check_outputs(proj)


def test_gc_looping_beside_adds_leaves_every_installed_package_whole(slow_proj):
    proj = slow_proj
    zips = []
    many = ("\nfor j in range(300):\n"  # objects enough for an install to take a while
            "    package.dataset(f'inputs/more/m{j}', value=f'{package.version} {j}')\n")
    for k in range(1, 6):  # versions 0.2.k, each with its own datasets
        d = write_package(proj.path.parent / f"pkg-{k}",
                          SLOW_PKG.replace('"0.1.0"', f'"0.2.{k}"') + many,
                          {f"data/t{i}.txt": f"version {k} text {i}\n" for i in range(N)})
        r = run_e3("--json", "build", str(d), "-o", str(proj.path.parent / "dist"))
        assert r.code == 0, r
        zips.append(r.json["path"])
    with GcLoop(proj):
        for z in zips:
            r = proj.e3("--json", "add", z)
            assert r.code == 0, r
    fsck_clean(proj)
    for k in range(1, 6):
        assert proj.e3("checkout", f"slow@0.2.{k}", "--force").code == 0
        assert proj.e3("get", "inputs/t1").out == f"version {k} text 1\n"
