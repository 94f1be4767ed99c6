"""`exec.dask_backend` (and its worker side, `exec.dask_worker`): `e3 go --executor
dask[:ADDRESS]` on a real LocalCluster and on real `dask scheduler` / `dask worker` processes
started here (tests/dask_cluster.py), through the real `e3` command. Never a mock of dask."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.dask_cluster import (FANOUT_FILES, FANOUT_PKG, GPU_PKG, GPU_STEPS, REMOTE, REMOTE_FILES,
                                REMOTE_PKG, SLOWPOKE_PKG, DaskCluster, can_switch_user, cmdline,
                                descendants, free_port, wait_for)
from tests.flows import (FLOWS, FLOWS_COLD, FLOWS_OUTPUTS, FLOWS_STEPS, LIMITS_REASONS, Proj,
                         copy_project, make_project, states, write_package)
from tests.helpers import e3_env

pytest.importorskip("distributed")

DIGESTS = ("state_root", "receipt", "commit")
CHECK_RAISES = next(i for i, line in enumerate(FLOWS_STEPS.splitlines(), 1)
                    if 'raise ValueError("flag says fail")' in line)


def digests(res: dict) -> dict:
    return {k: res[k] for k in DIGESTS}


def project(tmp_path, name: str, pkg: str, files: dict | None = None) -> Proj:
    src = write_package(tmp_path / f"{name}-src", pkg, files)
    return Proj(make_project(tmp_path / name, src, name))


def twin(p: Proj, dest) -> Proj:
    """A copy of a project in which nothing has run yet."""
    import shutil

    return Proj(shutil.copytree(p.path, dest, symlinks=True))


def local_go(p: Proj, *args, code: int = 0) -> dict:
    """`e3 --json go ARGS` on a LocalCluster whose workers keep their cache beside the
    project (`E3_WORKER_CACHE`, inherited by the worker processes)."""
    r = p.e3("--json", "go", "--executor", "dask", *args,
             env={"E3_WORKER_CACHE": str(p.path.parent / "worker-cache")})
    assert r.code == code, r
    return r.json


def local_env(p: Proj) -> dict:
    return e3_env({"E3_WORKER_CACHE": str(p.path.parent / "worker-cache")})


def workers_noted(p: Proj, run: str) -> dict[str, list[str]]:
    """dataflow -> the dask workers its episode's history names."""
    out = {}
    for ep in p.episodes(run):
        out[ep["dataflow"]] = [h["note"].removeprefix("on dask worker ") for h in ep["history"]
                               if h["note"].startswith("on dask worker ")]
    return out


# -- a LocalCluster for the run ------------------------------------------------------------------

@pytest.mark.slow
def test_a_local_cluster_run_has_the_commit_of_a_processes_run_at_1_2_and_4_workers(
        tmp_path_factory, tmp_path):
    local = copy_project(tmp_path_factory, "flows", tmp_path / "processes")
    assert digests(local.go("-j", "2", "--executor", "processes")) == FLOWS_COLD
    for j in ("1", "2", "4"):
        p = copy_project(tmp_path_factory, "flows", tmp_path / f"dask-{j}")
        res = local_go(p, "-j", j)
        assert res["executed"] == FLOWS and res["status"] == "ok"
        assert digests(res) == FLOWS_COLD, j
        for name, data in FLOWS_OUTPUTS.items():
            assert p.read(f"outputs/{name}/o") == data


def test_a_failing_task_on_a_worker_skips_its_dependents_with_its_reason(tmp_path_factory,
                                                                         tmp_path):
    p = copy_project(tmp_path_factory, "flows", tmp_path / "p")
    p.set_json("inputs/flag", "fail")
    res = local_go(p, "-j", "2", code=1)
    assert res["failed"] == ["check"] and res["skipped"] == ["after"]
    assert res["executed"] == sorted(set(FLOWS) - {"check", "after"})
    assert res["reasons"]["check"] == f"ValueError: flag says fail (steps.py:{CHECK_RAISES})"
    assert res["reasons"]["after"] == "check failed upstream"
    hist = p.histories(res["run"])
    assert states(hist["check"])[-1] == "fail"
    # the logs came back from the workers: a traceback naming the package's module as authored
    log = p.e3("logs", "check")
    assert f'File "steps.py", line {CHECK_RAISES}, in check' in log.out
    assert "total of 3 numbers" in p.e3("logs", "total").out
    assert "side-stderr" in p.e3("logs", "side").out
    # not memoized: fixed, it runs again with its dependent, the rest is cached
    p.set_json("inputs/flag", "ok")
    again = local_go(p, "-j", "2")
    assert again["executed"] == ["after", "check"]


def test_a_cached_object_that_no_longer_hashes_to_its_name_is_sent_again(tmp_path_factory,
                                                                         tmp_path):
    p = copy_project(tmp_path_factory, "flows", tmp_path / "p")
    first = local_go(p, "-j", "2")
    nums = p.file_hash("inputs/nums")
    kept = tmp_path / "worker-cache" / "objects" / nums
    assert kept.read_bytes() == p.read("inputs/nums")  # the workers kept what they were sent
    kept.chmod(0o644)
    kept.write_bytes(b"[6,6,6]")  # same size, other bytes
    again = local_go(p, "-j", "2", "--force")
    assert again["executed"] == FLOWS
    assert again["state_root"] == first["state_root"]  # no task was handed the bad bytes
    assert kept.read_bytes() == p.read("inputs/nums")


@pytest.mark.slow
def test_budgets_are_enforced_on_the_worker_and_a_breach_is_recorded_with_its_reason(
        tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "limits", tmp_path / "p")
    res = local_go(p, "-j", "2", code=1)
    hist = p.histories(res["run"])
    for name, reason in LIMITS_REASONS.items():
        assert name in res["failed"], name
        assert hist[name][-1]["note"] == reason
        assert res["reasons"][name] == reason
    assert "fine" in res["executed"] and res["skipped"] == ["after_crash"]
    assert p.read("outputs/fine/o") == b'{"fine":1}'


@pytest.mark.slow
def test_e3_cancel_cancels_the_cluster_tasks_kills_their_processes_and_exits_130(
        tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "pair", tmp_path / "p")
    proc = subprocess.Popen([sys.executable, "-m", "e3logic", "--json", "go", "-j", "2",
                             "--executor", "dask"], cwd=p.path, env=local_env(p),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def sleeping():
        return [d for d in descendants(proc.pid) if cmdline(d)[:2] == ["sleep", "30"]]

    try:
        tasks = wait_for(sleeping, timeout=60)
        r = p.e3("--json", "cancel")
        assert r.code == 0, r
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    res = json.loads(out)
    assert res["status"] == "cancelled" and res["cancelled"] == ["slow"]
    assert res["reasons"]["slow"] == "cancelled by 'e3 cancel'"
    assert res["failed"] == ["bad"] and res["skipped"] == ["later"]
    assert not any(os.path.exists(f"/proc/{t}") and cmdline(t)[:1] == ["sleep"] for t in tasks)


def test_sigint_cancels_a_dask_run_and_exits_130(tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "pair", tmp_path / "p")
    proc = subprocess.Popen([sys.executable, "-m", "e3logic", "--json", "go", "-j", "2",
                             "--executor", "dask", "slow"], cwd=p.path, env=local_env(p),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        tasks = wait_for(lambda: [d for d in descendants(proc.pid)
                                  if cmdline(d)[:2] == ["sleep", "30"]], timeout=60)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    res = json.loads(out)
    assert res["cancelled"] == ["slow"] and res["reasons"]["slow"] == "interrupted by SIGINT"
    assert not any(os.path.exists(f"/proc/{t}") and cmdline(t)[:1] == ["sleep"] for t in tasks)


# -- errors ----------------------------------------------------------------------------------------

def test_an_unreachable_scheduler_is_one_line_naming_the_address_and_exit_2(tmp_path_factory,
                                                                          tmp_path):
    p = copy_project(tmp_path_factory, "flows", tmp_path / "p")
    with open(p.path / "e3.toml", "a") as f:
        f.write("\n[executor]\nconnect_timeout = 1\n")
    address = f"tcp://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    r = p.e3("go", "--executor", f"dask:{address}")
    assert r.code == 2, r
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    assert f"cannot reach the dask scheduler at {address}" in r.err
    assert time.monotonic() - t0 < 30
    # the run left nothing held: a local run goes on
    assert p.go("--executor", "processes")["executed"] == FLOWS


def test_executor_backend_and_address_in_e3_toml_set_the_default(tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "flows", tmp_path / "p")
    address = f"tcp://127.0.0.1:{free_port()}"
    with open(p.path / "e3.toml", "a") as f:
        f.write(f'\n[executor]\nbackend = "dask"\naddress = "{address}"\nconnect_timeout = 1\n')
    r = p.e3("go")
    assert r.code == 2 and f"cannot reach the dask scheduler at {address}" in r.err, r
    # the command line wins
    assert p.go("--executor", "processes")["executed"] == FLOWS


def test_a_bad_executor_table_is_one_line_naming_the_key(tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "flows", tmp_path / "p")
    with open(p.path / "e3.toml", "a") as f:
        f.write('\n[executor]\nbackend = "dask"\nadress = "tcp://h:8786"\n')
    r = p.e3("go")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r
    assert "unknown key 'adress' in [executor]" in r.err and "address" in r.err


def test_without_dask_installed_the_dask_executor_is_one_line_naming_the_extra(
        tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "flows", tmp_path / "p")
    shim = tmp_path / "shim" / "distributed"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError(\"No module named 'distributed'\")\n")
    env = {"PYTHONPATH": f"{tmp_path / 'shim'}{os.pathsep}{e3_env()['PYTHONPATH']}"}
    r = p.e3("go", "--executor", "dask", env=env)
    assert r.code == 2, r
    assert len(r.err.strip().splitlines()) == 1
    assert "pip install 'e3logic[dask]'" in r.err


def test_a_warm_run_with_the_dask_executor_imports_no_dask(tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "flows", tmp_path / "p")
    p.go("--executor", "processes")
    cmd = [sys.executable, "-X", "importtime", "-m", "e3logic", "--json", "go", "--executor",
           "dask"]
    r = subprocess.run(cmd, cwd=p.path, env=e3_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["cached"] == FLOWS
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in r.stderr.splitlines()
                if line.startswith("import time:")}
    assert "e3logic" in imported
    assert not imported & {"dask", "distributed", "tornado"}


# -- real `dask scheduler` / `dask worker` processes -----------------------------------------------

@pytest.fixture(scope="module")
def outsider(tmp_path_factory):
    """A scheduler and one worker that cannot read the project directory: it runs as `nobody`
    (when the tests run as root) from a directory of its own."""
    c = DaskCluster(tmp_path_factory.mktemp("outsider"))
    try:
        c.worker("outsider", nthreads=2, user="nobody" if can_switch_user() else None)
        yield c
    finally:
        c.close()


@pytest.mark.slow
def test_a_worker_that_cannot_read_the_project_runs_its_tasks_with_the_commit_of_a_local_run(
        outsider, tmp_path):
    p = project(tmp_path, "remote", REMOTE_PKG, REMOTE_FILES)
    local = twin(p, tmp_path / "local")
    if can_switch_user():  # the worker really cannot look into the project
        r = subprocess.run(["setpriv", "--reuid", "nobody", "--regid", "nogroup",
                            "--clear-groups", "ls", str(p.path)], capture_output=True)
        assert r.returncode != 0
    res = p.go("-j", "2", "--executor", f"dask:{outsider.address}")
    assert res["executed"] == REMOTE and res["status"] == "ok", res
    ran_on = workers_noted(p, res["run"])
    assert all(ran_on[n] == [outsider.address_of("outsider")] for n in REMOTE), ran_on
    ref = local.go("-j", "2", "--executor", "processes")
    assert digests(res) == digests(ref)
    for n in REMOTE:
        assert p.read(f"outputs/{n}/o") == local.read(f"outputs/{n}/o")
    # the promised environment reached the python task on the worker
    envs = json.loads(p.read("outputs/envs/o"))
    assert envs["E3_DATAFLOW"] == "envs" and envs["E3_PROFILE"] == "ro"
    assert json.loads(envs["E3_LEASES"]) == [["db/x", "read"]]
    assert envs["E3_EXECUTION"] == json.loads(p.e3("--json", "logs", "envs").out)["execution"]
    # {bundle} worked there; both runtimes' logs came back
    assert p.read("outputs/calc/o") == 2 * p.read("outputs/double/o")
    assert "calc on [2,4,6]" in p.e3("logs", "calc").out
    assert "doubling 3 numbers" in p.e3("logs", "double").out


def test_a_resource_no_worker_offers_fails_its_dataflows_saying_so(outsider, tmp_path):
    p = project(tmp_path, "gpu", GPU_PKG, {"steps.py": GPU_STEPS})
    res = p.go("--executor", f"dask:{outsider.address}", code=1)
    assert res["failed"] == ["render", "train"] and res["executed"] == ["prep"], res["reasons"]
    why = res["reasons"]["train"]
    assert why.startswith(f"no worker of the dask cluster at {outsider.address} offers gpu=1")
    assert 'dask worker' in why and '--resources "gpu=1"' in why


@pytest.fixture(scope="module")
def pair_with_gpu(tmp_path_factory):
    """A scheduler, a plain worker and a worker started with `--resources gpu=1`."""
    c = DaskCluster(tmp_path_factory.mktemp("gpu"))
    try:
        c.worker("plain", nthreads=2)
        c.worker("gpu", nthreads=1, resources="gpu=1")
        yield c
    finally:
        c.close()


def test_a_gpu_dataflow_runs_only_on_the_worker_started_with_a_gpu_resource(pair_with_gpu,
                                                                           tmp_path):
    p = project(tmp_path, "gpu", GPU_PKG, {"steps.py": GPU_STEPS})
    toml = p.path / "e3.toml"  # the planner holds them to one at a time
    toml.write_text(toml.read_text().replace("[resources]\n", "[resources]\ngpu = 1\n"))
    for attempt in range(2):
        res = p.go("-j", "3", "--executor", f"dask:{pair_with_gpu.address}",
                   *(("--force",) if attempt else ()))
        assert sorted(res["executed"]) == ["prep", "render", "train"], res
        assert p.read("outputs/train/o") == b'"gpu"'
        assert p.read("outputs/render/o") == b"gpu"
        ran_on = workers_noted(p, res["run"])
        assert ran_on["train"] == ran_on["render"] == [pair_with_gpu.address_of("gpu")]


def test_each_input_and_module_set_reaches_a_worker_at_most_once_across_runs(pair_with_gpu,
                                                                             tmp_path):
    p = project(tmp_path, "fanout", FANOUT_PKG, FANOUT_FILES)
    big = f"e3-object-{p.file_hash('inputs/big')}"
    story = []  # what the scheduler did with the input's key, after each run
    for force in ((), ("--force",)):  # the second run finds everything in the workers' caches
        res = p.go("-j", "3", "--executor", f"dask:{pair_with_gpu.address}", *force)
        assert res["executed"] == [f"f{i}" for i in range(6)]
        assert p.read("outputs/f0/o") == f"{len(FANOUT_FILES['big.bin'])}\n0\n".encode()
        story.append(len(pair_with_gpu.client.story(big)))
    assert story[0] > 0 and story[1] == story[0], story  # sent by the first run only
    got = {n: [k for k in keys if k.startswith(("e3-object-", "e3-modules-"))]
           for n, keys in pair_with_gpu.incoming().items()}
    assert all(len(keys) == len(set(keys)) for keys in got.values()), got
    assert sum(keys.count(big) for keys in got.values()) <= 1, got


@pytest.mark.slow
def test_a_worker_killed_mid_task_runs_it_again_elsewhere_and_commits_each_output_once(
        tmp_path):
    p = project(tmp_path, "slowpoke", SLOWPOKE_PKG)
    local = twin(p, tmp_path / "local")
    c = DaskCluster(tmp_path / "cluster")
    try:
        workers = {n: c.worker(n) for n in ("w1", "w2")}
        proc = subprocess.Popen([sys.executable, "-m", "e3logic", "--json", "go", "-j", "2",
                                 "--executor", f"dask:{c.address}"], cwd=p.path, env=e3_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            def running_slow():
                for n, w in workers.items():
                    if any(cmdline(d)[:2] == ["sleep", "4"] for d in descendants(w.pid)):
                        return n
                return None

            victim = wait_for(running_slow, timeout=60)
            workers[victim].kill()  # SIGKILL, mid-task
            out, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        res = json.loads(out)
        assert res["executed"] == ["after", "quick", "slow"] and res["status"] == "ok", res
        survivor = c.address_of("w2" if victim == "w1" else "w1")
        assert workers_noted(p, res["run"])["slow"] == [survivor]
        # one execution row and one memo entry per dataflow: nothing committed twice
        rows = p.db("SELECT dataflow, status FROM executions ORDER BY dataflow")
        assert rows == [("after", "ok"), ("quick", "ok"), ("slow", "ok")]
        assert p.read("outputs/slow/o") == b'"ABC"'
        assert digests(res) == digests(local.go("--executor", "processes"))
        fsck = p.e3("--json", "fsck")
        assert fsck.code == 0 and fsck.json["ok"]
    finally:
        c.close()


def test_a_scheduler_lost_mid_run_fails_the_tasks_it_held_saying_so(tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "pair", tmp_path / "p")
    c = DaskCluster(tmp_path / "cluster")
    try:
        w = c.worker("w")
        proc = subprocess.Popen([sys.executable, "-m", "e3logic", "--json", "go", "-j", "2",
                                 "--executor", f"dask:{c.address}", "slow"], cwd=p.path,
                                env=e3_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            wait_for(lambda: [d for d in descendants(w.pid) if cmdline(d)[:2] == ["sleep", "30"]],
                     timeout=60)
            c.procs["scheduler"].kill()
            out, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
    finally:
        c.close()
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "distributed" not in err
    res = json.loads(out)
    assert res["failed"] == ["slow"] and res["status"] == "failed"
    assert res["reasons"]["slow"] == (f"the dask cluster at {c.address} dropped the task (its "
                                      f"scheduler went away or restarted)")


def test_a_worker_running_another_e3logic_fails_its_tasks_naming_both_versions(
        tmp_path_factory, tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text("import e3logic\ne3logic.__version__ = '9.9.9'\n")
    p = copy_project(tmp_path_factory, "pair", tmp_path / "p")
    c = DaskCluster(tmp_path / "cluster")
    try:
        c.worker("old", env={"PYTHONPATH": f"{shim}{os.pathsep}{e3_env()['PYTHONPATH']}"})
        res = p.go("--executor", f"dask:{c.address}", "bad", code=1)
    finally:
        c.close()
    from e3logic import __version__

    assert res["failed"] == ["bad"]
    assert res["reasons"]["bad"].startswith(f"dask worker {c.address.rsplit(':', 1)[0]}")
    assert f"runs e3logic 9.9.9 (wire 1), the engine e3logic {__version__} (wire 1)" in \
        res["reasons"]["bad"]
