"""`naps`: a package of shell `sleep` tasks, for the interruption tests, the `interrupt`
conformance suite and the stress scripts under bench/; plus process helpers reading /proc.

Every task is `sh -c NAP`: it reads its duration input (`inputs/t/<dataflow>`, a raw text file
`<dataflow> <seconds>`, so a test changes how long a task takes by editing a working-copy
file, and no two dataflows ever share an execution key), writes its pid to
`marks/<dataflow>.pid` (the shell leads the task's process group), sleeps, writes its output
(its data input plus its own name, so outputs form a checkable chain) and then touches
`marks/<dataflow>.done`. The `big` dataflow writes
`inputs/size` zero bytes, to make a commit that takes a while (the object's hash and the
working-copy copy).

    seed ─┬─ first ─┬─ second ── third
          │         └─ big
          └─ side

Processes are recognised by an environment token: `token_env()` puts `E3TEST_TOKEN=<uuid>`
into the environment of the `e3` commands a test starts, every task inherits it, and
`token_procs(token)` finds what is still alive (zombies count as gone).
"""
from __future__ import annotations

import json
import os
import sqlite3
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from e3logic.core.hashing import hash_bytes
from e3logic.repo.repository import Repository
from tests.helpers import ROOT, e3_env, run_e3

NAP = r"""set -e
read name secs < "$2"
mkdir -p marks
echo $$ > "marks/$name.pid"
sleep "$secs"
cat "$1" > "$3"
echo "$name" >> "$3"
touch "marks/$name.done"
"""

BIG = r"""set -e
read name secs < "$2"
mkdir -p marks
echo $$ > "marks/$name.pid"
sleep "$secs"
head -c "$(cat "$4")" /dev/zero > "$3"
cat "$1" >> "$3"
touch "marks/$name.done"
"""

FLOWS = {  # dataflow -> data input
    "first": "inputs/seed",
    "second": "outputs/first/o",
    "third": "outputs/second/o",
    "side": "inputs/seed",
    "big": "outputs/first/o",
}
NAMES = sorted(FLOWS)

E3PKG = f'''
from e3logic import sdk

package = sdk.package("naps", "0.1.0")
NAP = {NAP!r}
BIG = {BIG!r}
package.task("nap", ["sh", "-c", NAP, "nap", "{{input0}}", "{{input1}}", "{{output}}"],
             runtime="shell")
package.task("big", ["sh", "-c", BIG, "big", "{{input0}}", "{{input1}}", "{{output}}",
                     "{{input2}}"], runtime="shell")
package.dataset("inputs/seed", value="seed-1")
package.dataset("inputs/size", value=0)
for name in {NAMES!r}:
    package.dataset("inputs/t/" + name, file="t/" + name)
flows = {FLOWS!r}
for name, data in sorted(flows.items()):
    if name == "big":
        package.dataflow(name, task="big", inputs=[data, "inputs/t/big", "inputs/size"],
                         output="o")
    else:
        package.dataflow(name, task="nap", inputs=[data, "inputs/t/" + name], output="o")
'''


def write_package(d: Path) -> Path:
    (d / "t").mkdir(parents=True, exist_ok=True)
    (d / "e3pkg.py").write_text(E3PKG)
    for name in NAMES:
        (d / "t" / name).write_text(f"{name} 0\n")
    return d


def make_project(dest: Path, package_dir: Path | None = None) -> Path:
    """init + build + add + checkout of `naps` in `dest` (slow: ~5 commands)."""
    dest.mkdir(parents=True, exist_ok=True)
    src = write_package(package_dir or dest.parent / (dest.name + "-pkg"))
    for args in (("init", "."), ("build", str(src), "-o", "dist"),
                 ("add", "dist/naps-0.1.0.zip"), ("checkout", "naps")):
        r = run_e3(*args, cwd=dest)
        assert r.code == 0, (args, r)
    return dest


_TEMPLATES: dict[str, Path] = {}


def project_from_template(cache_dir: Path, dest: Path) -> Path:
    """A fresh copy of a `naps` project; the template is made once per `cache_dir`."""
    key = str(cache_dir)
    if key not in _TEMPLATES:
        _TEMPLATES[key] = make_project(cache_dir / "naps-template")
    shutil.copytree(_TEMPLATES[key], dest, symlinks=True)
    return dest


def set_inputs(project: Path, **values) -> None:
    """Edit working-copy input files: durations by dataflow name (`first=0.5`), `seed="x"`,
    `size=1000`. Written as a save-by-rename (temp file + rename)."""
    for name, v in values.items():
        if name in ("seed", "size"):
            path, text = project / "inputs" / name, json.dumps(v)
        else:
            path, text = project / "inputs" / "t" / name, f"{name} {v}\n"
        tmp = path.with_name("." + path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)


def expected_outputs(seed: str = "seed-1", size: int = 0) -> dict[str, bytes]:
    """What every dataflow's output holds for a seed value and a `big` size."""
    first = json.dumps(seed).encode() + b"first\n"
    second = first + b"second\n"
    return {"first": first, "second": second, "third": second + b"third\n",
            "side": json.dumps(seed).encode() + b"side\n", "big": b"\0" * size + first}


# -- processes ----------------------------------------------------------------------------------
def token_env(token: str, extra: dict | None = None) -> dict:
    env = e3_env(extra)
    env["E3TEST_TOKEN"] = token
    return env


def new_token() -> str:
    return uuid.uuid4().hex


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
        return data[data.rindex(")") + 2:].split()[0]
    except (OSError, ValueError, IndexError):
        return None


def token_procs(token: str) -> list[tuple[int, str]]:
    """Live processes (pid, command) whose environment holds `E3TEST_TOKEN=token`."""
    needle = f"E3TEST_TOKEN={token}".encode()
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        pid = int(d)
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
            if needle not in env.split(b"\0"):
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if _state(pid) not in (None, "Z", "X", "x"):
            out.append((pid, cmd))
    return out


def kill_token_procs(token: str) -> None:
    for pid, _ in token_procs(token):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def wait_until(pred, timeout: float = 30.0, step: float = 0.01):
    """Poll `pred()` until it returns something truthy (returned); AssertionError on timeout.
    A hang guard, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {pred}")
        time.sleep(step)


def wait_gone(token: str, timeout: float = 15.0) -> list[tuple[int, str]]:
    """Wait (bounded) for every token process to end; returns the survivors ([] = none)."""
    deadline = time.monotonic() + timeout
    while True:
        left = token_procs(token)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def start_e3(*args, cwd, env) -> subprocess.Popen:
    """Start the real `e3` command in the background (its own process group is *not* used:
    signals go to the e3 process only, as a terminal's Ctrl-C would reach it with its tasks
    in their own groups). SIGINT starts at its default action, as from a terminal, whatever
    the test runner's is: pytest started by a script in the background (`.ci/run &`) has it
    ignored, and a child would inherit that."""
    return subprocess.Popen([sys.executable, "-m", "e3logic", *map(str, args)], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def started(project: Path, name: str) -> bool:
    return (project / "marks" / f"{name}.pid").exists()


def done(project: Path, name: str) -> bool:
    return (project / "marks" / f"{name}.done").exists()


def clear_marks(project: Path) -> None:
    shutil.rmtree(project / "marks", ignore_errors=True)


def committed(project: Path, name: str) -> bool:
    """The dataflow's output is in the working copy (published at its commit)."""
    return (project / "outputs" / name / "o").exists()


# -- a project under test, and the moments of a run ---------------------------------------------
BIG = 64 * 1024 * 1024   # `big`'s output at the during-a-commit moment
FINAL = ("ok", "fail", "cxl")


class Proj:
    def __init__(self, path, token):
        self.path, self.token = path, token

    def e3(self, *args, **kw):
        return run_e3(*args, cwd=self.path, env={"E3TEST_TOKEN": self.token}, **kw)

    def go_bg(self, *args):
        return start_e3("--json", "go", "-j", "4", *args, cwd=self.path,
                        env=token_env(self.token))

    def runs(self) -> dict:
        """run id -> status, read from index.db (read-only)."""
        db = sqlite3.connect(f"file:{self.path / '.e3' / 'index.db'}?mode=ro", uri=True)
        try:
            return dict(db.execute("SELECT run, status FROM runs ORDER BY seq"))
        finally:
            db.close()

    def latest_run(self) -> str:
        return list(self.runs())[-1]

    def outputs_in_root(self) -> set:
        ls = self.e3("--json", "ls", "outputs")
        if ls.code != 0:  # nothing under outputs/ yet
            return set()
        return {e["path"].split("/")[1] for e in ls.json}

    def check_fsck(self):
        r = self.e3("--json", "fsck")
        assert r.code == 0 and r.json["ok"], r

    def histories(self, run_id) -> dict:
        r = self.e3("--json", "episodes", "--run", run_id)
        assert r.code == 0, r
        return {e["dataflow"]: [h["state"] for h in e["history"]] for e in r.json}


# -- moments ---------------------------------------------------------------------------------
def before_first_commit(p: Proj):
    set_inputs(p.path, first=30, side=30)
    proc = p.go_bg()
    wait_until(lambda: started(p.path, "first") and started(p.path, "side"))
    return proc


def between_commits(p: Proj):
    set_inputs(p.path, second=30)
    proc = p.go_bg()
    wait_until(lambda: started(p.path, "second") and committed(p.path, "first"))
    return proc


def during_a_commit(p: Proj):
    """Signal once `big`'s output object is in the store (adopted: the commit has begun) —
    its root update and the 64 MB working-copy copy are still to come."""
    obj = Repository(p.path).objects.path(hash_bytes(expected_outputs(size=BIG)["big"]))
    set_inputs(p.path, second=30, size=BIG)
    proc = p.go_bg()
    wait_until(lambda: obj.exists(), step=0.001)
    return proc


def after_the_last_root_update(p: Proj):
    """Once the root holds `big`'s output, committed last (the others are done by then), and
    before its 64 MB working-copy copy is complete."""
    h = hash_bytes(expected_outputs(size=BIG)["big"])
    repo = Repository(p.path)
    from e3logic.repo.workspaces import Workspaces

    ws = Workspaces(repo)

    def big_in_root():
        e = repo.trees.find(ws.root("main"), "outputs/big/o")
        return e is not None and e["hash"] == h

    set_inputs(p.path, big=0.3, size=BIG)
    proc = p.go_bg()
    wait_until(big_in_root, step=0.0005)
    return proc


def nothing_to_run_yet_outputs_are_right(p: Proj, size: int = BIG):
    """A `go` with nothing to run still leaves outputs/ matching the root; status is clean."""
    r = p.e3("--json", "go", "-j", "4")
    assert r.code == 0 and r.json["status"] == "ok", r
    assert r.json["executed"] == [], r.json
    want = expected_outputs(size=size)
    for n in NAMES:
        f = p.path / "outputs" / n / "o"
        assert f.exists() and f.read_bytes() == want[n], f"outputs/{n}/o is not the committed one"
    st = p.e3("--json", "status").json
    assert st["stale"] == [] and st["modified"] == []
    p.check_fsck()


MOMENTS = {"before-first-commit": before_first_commit, "between-commits": between_commits,
           "during-a-commit": during_a_commit}
RESET = dict(first=0, second=0, side=0)  # durations back to 0 for the next run


def next_run_reuses_what_was_committed(p: Proj, committed_before: set, size: int):
    set_inputs(p.path, **RESET)
    r = p.e3("--json", "go", "-j", "4")
    assert r.code == 0, r
    res = r.json
    assert res["status"] == "ok"
    assert sorted(res["executed"] + res["cached"]) == NAMES
    # durations changed only for tasks that were still sleeping: what committed is a hit
    assert committed_before <= set(res["cached"]), (committed_before, res)
    want = expected_outputs(size=size)
    for n in NAMES:
        assert (p.path / "outputs" / n / "o").read_bytes() == want[n], n
    return res


__all__ = [n for n in dir() if not n.startswith("_")] + ["ROOT"]
