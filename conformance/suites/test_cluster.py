"""Conformance suite `cluster` (issue 18): `e3 go --executor dask` on a LocalCluster started
and closed by the run, and `--executor dask:tcp://HOST:PORT` on real `dask scheduler` /
`dask worker` processes (tests/dask_cluster.py). The cluster must give the answer a local run
gives — the pinned digests of the `flows` package (tests/flows.py), the same early cutoff, the
same confined failures and budget reasons — and cancel like one.

Every LocalCluster here keeps its worker cache beside its project (`E3_WORKER_CACHE`).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.dask_cluster import DaskCluster, cmdline, descendants, wait_for
from tests.flows import (FLOWS, FLOWS_COLD, FLOWS_OUTPUTS, LIMITS_REASONS, Proj, copy_project,
                         states)
from tests.helpers import e3_env

pytest.importorskip("distributed")

DIGESTS = ("state_root", "receipt", "commit")


def env(p: Proj) -> dict:
    return {"E3_WORKER_CACHE": str(p.path.parent / f"{p.path.name}-worker-cache")}


def go(p: Proj, *args, code: int = 0, executor: str = "dask") -> dict:
    r = p.e3("--json", "go", "--executor", executor, *args, env=env(p))
    assert r.code == code, r
    return r.json


def lists(res: dict) -> dict:
    return {k: res[k] for k in ("executed", "cached", "failed", "skipped", "cancelled") if res[k]}


@pytest.mark.parametrize("jobs", ["1", "4"])
def test_a_cold_run_on_a_local_cluster_gives_the_pinned_digests(jobs, tmp_path_factory,
                                                                tmp_path):
    p = copy_project(tmp_path_factory, "flows", tmp_path / "p")
    res = go(p, "-j", jobs)
    assert res["executed"] == FLOWS
    assert {k: res[k] for k in DIGESTS} == FLOWS_COLD
    for name, data in FLOWS_OUTPUTS.items():
        assert p.read(f"outputs/{name}/o") == data


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    p = copy_project(tmp_path_factory, "flows", tmp_path_factory.mktemp("cluster") / "p")
    go(p, "-j", "2")
    return p


def test_after_a_cluster_run_everything_is_cached(warm, tmp_path):
    p = Proj(shutil.copytree(warm.path, tmp_path / "p", symlinks=True))
    assert lists(go(p)) == {"cached": FLOWS}


def test_early_cutoff_on_the_cluster_is_the_local_one(warm, tmp_path):
    p = Proj(shutil.copytree(warm.path, tmp_path / "p", symlinks=True))
    p.set_json("inputs/nums", [9, 1, 2, 3])  # the same maximum: `scaled` keeps its input
    res = go(p, "-j", "2")
    assert res["executed"] == ["combine", "final", "peak", "report", "total"]
    assert "scaled" in res["cached"]


def test_a_failure_on_a_worker_is_confined_to_its_dependents_with_its_reason(warm, tmp_path):
    p = Proj(shutil.copytree(warm.path, tmp_path / "p", symlinks=True))
    p.set_json("inputs/flag", "fail")
    res = go(p, "-j", "2", code=1)
    assert lists(res) == {"failed": ["check"], "skipped": ["after"],
                          "cached": sorted(set(FLOWS) - {"check", "after"})}
    assert res["reasons"]["check"].startswith("ValueError: flag says fail (steps.py:")
    assert res["reasons"]["after"] == "check failed upstream"
    assert states(p.histories(res["run"])["check"])[-1] == "fail"
    assert "ValueError: flag says fail" in p.e3("logs", "check").out


def test_every_budget_is_enforced_on_the_worker_with_its_reason(tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "limits", tmp_path / "p")
    res = go(p, "-j", "2", code=1)
    hist = p.histories(res["run"])
    assert {n: hist[n][-1]["note"] for n in LIMITS_REASONS} == LIMITS_REASONS
    assert "fine" in res["executed"] and res["skipped"] == ["after_crash"]


def test_e3_cancel_cancels_the_tasks_on_the_cluster_and_exits_130(tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "pair", tmp_path / "p")
    proc = subprocess.Popen([sys.executable, "-m", "e3logic", "--json", "go", "-j", "2",
                             "--executor", "dask", "slow"], cwd=p.path, env=e3_env(env(p)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        tasks = wait_for(lambda: [d for d in descendants(proc.pid)
                                  if cmdline(d)[:2] == ["sleep", "30"]], timeout=60)
        assert p.e3("cancel").code == 0
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    res = json.loads(out)
    assert res["status"] == "cancelled" and res["cancelled"] == ["slow"]
    assert not any(cmdline(t)[:1] == ["sleep"] for t in tasks)


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    c = DaskCluster(tmp_path_factory.mktemp("scheduler"))
    try:
        c.worker("a", nthreads=2)
        c.worker("b", nthreads=1)
        yield c
    finally:
        c.close()


def test_a_running_scheduler_gives_the_pinned_digests(scheduler, tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "flows", tmp_path / "p")
    res = go(p, "-j", "3", executor=f"dask:{scheduler.address}")
    assert res["executed"] == FLOWS
    assert {k: res[k] for k in DIGESTS} == FLOWS_COLD
    again = go(p, "-j", "3", "--force", executor=f"dask:{scheduler.address}")
    assert again["state_root"] == FLOWS_COLD["state_root"]
