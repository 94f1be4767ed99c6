"""Real dask.distributed processes for the `dask` backend's tests and the `cluster`
conformance suite: `DaskCluster` starts a `dask scheduler` and `dask worker`s as subprocesses
(free ports, their own sessions, killed at `close()`), optionally a worker running as another
user (`nobody`, through `setpriv`, when the tests run as root) in a directory of its own.

Test packages:

`remote` — what a worker must do without the project: python and shell tasks, `{bundle}` (a
bundled `calc.sh`), the promised environment variables (`envs` returns them), a raw file
input, a read lease:

    inputs/nums ── double (P) ── calc (S, {bundle}/calc.sh) ─┐
    inputs/nums ── envs (P, read lease db/x) ────────────────┼─ both (S)
    inputs/blob ─────────────────────────────────────────────┘

`gpu` — `train` (python) and `render` (shell) demand `gpu: 1` and answer which worker ran
them (`$E3TEST_WORKER`, set in each test worker's environment); `prep` demands nothing.

`slowpoke` — `slow` (shell, sleeps 4 s, then upper-cases its input), `after` reads it, `quick`
does not.

`fanout` — six shell tasks reading one 256 KiB input (`inputs/big`) and the bundled `calc.sh`.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.helpers import ROOT, e3_env

REMOTE_PKG = '''
from e3logic import sdk

package = sdk.package("remote", "0.1.0")
package.module("steps.py")
package.module("calc.sh")
package.task("double", "steps:double", runtime="python")
package.task("envs", "steps:envs", runtime="python")
package.task("calc", ["sh", "{bundle}/calc.sh", "{input0}", "{output}"], runtime="shell")
package.task("concat", ["sh", "-c", "cat {inputs} > {output}"], runtime="shell")
package.dataset("inputs/nums", value=[1, 2, 3])
package.dataset("inputs/blob", file="data/blob.bin")
package.dataflow("double", task="double", inputs=["inputs/nums"], output="o")
package.dataflow("envs", task="envs", inputs=["inputs/nums"], output="o",
                 leases=[("db/x", "read")])
package.dataflow("calc", task="calc", inputs=["outputs/double/o"], output="o")
package.dataflow("both", task="concat", inputs=["outputs/calc/o", "outputs/envs/o",
                                                "inputs/blob"], output="o")
'''
REMOTE_STEPS = '''
import os


def double(nums):
    print("doubling", len(nums), "numbers")
    return [2 * n for n in nums]


def envs(nums):
    return {k: os.environ.get(k) for k in ("E3_DATAFLOW", "E3_EXECUTION", "E3_LEASES",
                                           "E3_PROFILE")}
'''
CALC_SH = 'echo "calc on $(cat "$1")" >&2\ncat "$1" "$1" > "$2"\n'
REMOTE_FILES = {"steps.py": REMOTE_STEPS, "calc.sh": CALC_SH,
                "data/blob.bin": bytes(range(256)) * 64}
REMOTE = ["both", "calc", "double", "envs"]

GPU_PKG = '''
from e3logic import sdk

package = sdk.package("gpu", "0.1.0")
package.module("steps.py")
package.task("who", "steps:who", runtime="python")
package.task("whosh", ["sh", "-c", "printf %s \\"$E3TEST_WORKER\\" > {output}"], runtime="shell")
package.dataset("inputs/x", value=1)
package.dataset("inputs/y", value=2)
package.dataflow("train", task="who", inputs=["inputs/x"], output="o", resources={"gpu": 1})
package.dataflow("render", task="whosh", inputs=["inputs/x"], output="o", resources={"gpu": 1})
package.dataflow("prep", task="who", inputs=["inputs/y"], output="o")
'''
GPU_STEPS = '''
import os


def who(x):
    return os.environ.get("E3TEST_WORKER")
'''

SLOWPOKE_PKG = '''
from e3logic import sdk

package = sdk.package("slowpoke", "0.1.0")
package.task("slow", ["sh", "-c", "sleep 4; tr a-z A-Z < {input0} > {output}"], runtime="shell")
package.task("copy", ["sh", "-c", "cat {inputs} > {output}"], runtime="shell")
package.dataset("inputs/x", value="abc")
package.dataflow("slow", task="slow", inputs=["inputs/x"], output="o")
package.dataflow("after", task="copy", inputs=["outputs/slow/o"], output="o")
package.dataflow("quick", task="copy", inputs=["inputs/x"], output="o")
'''

FANOUT_PKG = '''
from e3logic import sdk

package = sdk.package("fanout", "0.1.0")
package.module("calc.sh")
package.dataset("inputs/big", file="big.bin")
for i in range(6):
    package.task(f"t{i}", ["sh", "-c", f"wc -c < {{input0}} > {{output}}; echo {i} >> {{output}}; "
                                       f"sh {{bundle}}/calc.sh {{input0}} /dev/null"],
                 runtime="shell")
    package.dataflow(f"f{i}", task=f"t{i}", inputs=["inputs/big"], output="o")
'''
FANOUT_FILES = {"calc.sh": CALC_SH, "big.bin": bytes(range(256)) * 1024}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _site_packages() -> list[str]:
    import site

    return [d for d in site.getsitepackages() if os.path.isdir(d)]


_AS_USER: dict[str, tuple | None] = {}


def as_user(user: str = "nobody") -> tuple[list[str], dict] | None:
    """(the command prefix, the environment) that run this checkout's Python as `user` — an
    interpreter `user` can start, which can start itself again (a worker's task processes)
    and import e3logic and distributed — or None (not root, no setpriv, no such
    interpreter). A venv whose interpreter lies under a directory `user` cannot enter (a
    pyenv in /root) is reached through the system's python of the same version, with this
    environment's site-packages on PYTHONPATH."""
    if user in _AS_USER:
        return _AS_USER[user]
    found = None
    if os.geteuid() == 0 and shutil.which("setpriv"):
        pw = pwd.getpwnam(user)
        prefix = ["setpriv", "--reuid", str(pw.pw_uid), "--regid", str(pw.pw_gid),
                  "--clear-groups"]
        path = os.pathsep.join([str(ROOT), *_site_packages()])
        probe = ("import subprocess, sys; import e3logic, distributed; "
                 "subprocess.run([sys.executable, '-c', 'import e3logic'], check=True)")
        for py in dict.fromkeys([sys.executable, f"/usr/bin/python{sys.version_info[0]}."
                                                 f"{sys.version_info[1]}"]):
            env = e3_env({"PYTHONPATH": path})
            r = subprocess.run([*prefix, py, "-c", probe], env=env, cwd="/",
                               capture_output=True, timeout=60)
            if r.returncode == 0:
                found = ([*prefix, py], {"PYTHONPATH": path})
                break
    _AS_USER[user] = found
    return found


def can_switch_user() -> bool:
    return as_user() is not None


class DaskCluster:
    """A `dask scheduler` on a free port of 127.0.0.1 and the workers `worker()` starts."""

    def __init__(self, base: Path):
        import distributed

        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self.dirs: list[Path] = []
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self._spawn("scheduler", [sys.executable, "-m", "distributed.cli.dask_scheduler",
                                  "--host", "127.0.0.1", "--port", self.address.rsplit(":", 1)[1],
                                  "--no-dashboard"], env=self._env({}), cwd=self.base)
        self.client = distributed.Client(self.address, timeout=60, set_as_default=False)

    def _env(self, extra: dict) -> dict:
        env = e3_env(extra)
        env.pop("E3_FSYNC", None)
        return env

    def _spawn(self, name: str, cmd: list, env: dict, cwd: Path) -> subprocess.Popen:
        log = open(self.base / f"{name}.log", "ab")
        try:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                 cwd=cwd, start_new_session=True)
        finally:
            log.close()
        self.procs[name] = p
        return p

    def worker(self, name: str, *, nthreads: int = 1, resources: str | None = None,
               user: str | None = None, env: dict | None = None) -> subprocess.Popen:
        """Start worker `name` (no nanny: killing it kills it) in a directory of its own,
        its cache there (`E3_WORKER_CACHE`), `E3TEST_WORKER=name` in its environment; as
        `user` through setpriv when given. Returns once the scheduler knows it."""
        home = Path(tempfile.mkdtemp(prefix=f"e3-dask-{name}-"))
        self.dirs.append(home)
        python, extra = [sys.executable], {}
        if user is not None:
            python, extra = as_user(user)
            pw = pwd.getpwnam(user)
            os.chown(home, pw.pw_uid, pw.pw_gid)
        cmd = [*python, "-m", "distributed.cli.dask_worker", self.address,
               "--nthreads", str(nthreads), "--no-nanny", "--name", name, "--no-dashboard",
               "--local-directory", str(home / "dask"), "--death-timeout", "120"]
        if resources:
            cmd += ["--resources", resources]
        n = len(self.client.scheduler_info()["workers"])
        p = self._spawn(name, cmd, self._env({"E3_WORKER_CACHE": str(home / "cache"),
                                             "E3TEST_WORKER": name, "HOME": str(home),
                                             **extra, **(env or {})}), home)
        self.client.wait_for_workers(n + 1, timeout=90)
        return p

    def address_of(self, name: str) -> str:
        for addr, w in self.client.scheduler_info()["workers"].items():
            if w.get("name") == name:
                return addr
        raise KeyError(name)

    def incoming(self) -> dict[str, list[str]]:
        """Worker name -> the keys each one received from another worker, in order."""
        def keys(dask_worker):
            return [k for t in dask_worker.transfer_incoming_log for k in t["keys"]]

        got = self.client.run(keys)
        names = {a: w.get("name") for a, w in self.client.scheduler_info()["workers"].items()}
        return {names.get(a, a): [str(k) for k in ks] for a, ks in got.items()}

    def close(self) -> None:
        try:
            self.client.close(timeout=5)
        except Exception:
            pass
        for p in self.procs.values():
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


def descendants(pid: int) -> list[int]:
    """The live processes below `pid` (through /proc)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(d))
    out, stack = [], [pid]
    while stack:
        for c in children.get(stack.pop(), []):
            out.append(c)
            stack.append(c)
    return out


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def wait_for(predicate, timeout: float = 30.0, step: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = predicate()
        if got:
            return got
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {predicate}")


__all__ = [n for n in dir() if not n.startswith("_")]
