"""Scale: the engine's open descriptors do not grow with the work (issue "Scale", item 1).

A 10-layer DAG of a few thousand python or shell tasks runs end to end under
RLIMIT_NOFILE=64, with fsync on (the group-commit path): a descriptor held per task, per
object or per flush would exhaust the limit long before the end."""
from __future__ import annotations

import hashlib
import json
import resource
import subprocess
import sys

import pytest

from tests.flows import make_project, write_package
from tests.helpers import e3_env

LIMIT = 64
LAYERS = 10

PKG = '''
import json
from pathlib import Path
from e3logic import sdk

G = json.loads((Path(__file__).parent / "graph.json").read_text())
package = sdk.package("wide", "1.0.0")
package.module("steps.py")
package.task("h", "steps:h", runtime="python")
package.task("sh", ["sh", "-c", "cat {inputs} | md5sum > {output}"], runtime="shell")
for leaf in G["leaves"]:
    package.dataset("inputs/" + leaf, file="data/" + leaf)
for name, ins in G["tasks"].items():
    package.dataflow(name, task=G["task"], inputs=ins, output="out")
'''

STEPS = '''import hashlib


def h(*xs):
    return hashlib.md5(b"".join(xs)).hexdigest().encode() + b"  -\\n"
'''


def graph(n: int) -> tuple[dict, list]:
    """n tasks in 10 layers; node j of a layer reads nodes j, j+1 (mod width) of the last."""
    w = n // LAYERS
    leaves = [f"i{j:05d}" for j in range(w)]
    tasks = {}
    for layer in range(LAYERS):
        for j in range(w):
            src = [leaves[j], leaves[(j + 1) % w]] if layer == 0 else \
                [f"t{(layer - 1) * w + j:05d}", f"t{(layer - 1) * w + (j + 1) % w:05d}"]
            tasks[f"t{layer * w + j:05d}"] = [
                ("inputs/" + s) if s.startswith("i") else f"outputs/{s}/out" for s in src]
    return tasks, leaves


def expected(tasks: dict, leaves: list, content) -> dict:
    vals = {"inputs/" + x: content(x) for x in leaves}
    for t, ins in tasks.items():
        vals[f"outputs/{t}/out"] = hashlib.md5(b"".join(vals[i] for i in ins)).hexdigest() \
            .encode() + b"  -\n"
    return vals


def limited_e3(*args, cwd):
    def cap():
        resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))

    return subprocess.run([sys.executable, "-m", "e3logic", *args], cwd=cwd,
                          env=e3_env({"E3_FSYNC": "1"}), preexec_fn=cap, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("runtime", ["python", "shell"])
def test_thousands_of_tasks_run_under_a_limit_of_64_open_files(tmp_path, runtime):
    n = 2000
    tasks, leaves = graph(n)
    files = {"steps.py": STEPS,
             "graph.json": json.dumps({"tasks": tasks, "leaves": leaves,
                                       "task": "h" if runtime == "python" else "sh"})}
    files.update({f"data/{x}": f"{x}\n".encode() for x in leaves})
    proj = make_project(tmp_path / "p", write_package(tmp_path / "pkg", PKG, files), "wide",
                        "1.0.0")
    r = limited_e3("--json", "go", "-j2", cwd=proj)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(r.stdout and json.loads(r.stdout)["executed"]) == n

    (proj / "inputs" / leaves[3]).write_bytes(b"edited\n")  # an incremental run, same limit
    r = limited_e3("--json", "go", "-j2", cwd=proj)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 0 < len(json.loads(r.stdout)["executed"]) < n

    want = expected(tasks, leaves, lambda x: b"edited\n" if x == leaves[3] else f"{x}\n".encode())
    for t in sorted(tasks)[:: n // 50] + sorted(tasks)[-3:]:
        assert (proj / "outputs" / t / "out").read_bytes() == want[f"outputs/{t}/out"]
    r = limited_e3("fsck", cwd=proj)
    assert r.returncode == 0, r.stdout + r.stderr
