"""Integrity end to end, through the real `e3` command: verified reads, corrupt objects
quarantined and recomputed, good bytes replacing a corrupt file, one snapshot per run, `go`
healing when objects are deleted by hand."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from e3logic.core.hashing import hash_bytes
from tests.flows import Proj, make_project, write_package
from tests.helpers import e3_env

PKG = '''
from e3logic import sdk

package = sdk.package("chain", "0.1.0")
package.module("steps.py")
package.task("up", "steps:up", runtime="python")
package.task("join", "steps:join", runtime="python")
package.task("cat", ["sh", "-c", "cat {inputs} > {output}"], runtime="shell")
package.dataset("inputs/s", file="data/s")
package.dataset("inputs/k", file="data/k")
package.dataset("inputs/t", file="data/t")
package.dataflow("a", task="up", inputs=["inputs/s"], output="o")
package.dataflow("b", task="join", inputs=["outputs/a/o", "inputs/k"], output="o")
package.dataflow("c", task="cat", inputs=["inputs/t"], output="o")
'''

STEPS = '''
def up(s):
    return s.upper()


def join(a, k):
    return a + b"|" + k
'''


@pytest.fixture
def proj(tmp_path) -> Proj:
    src = write_package(tmp_path / "pkg", PKG, {
        "steps.py": STEPS, "data/s": b"sss\n", "data/k": b"kkk\n", "data/t": b"ttt\n"})
    return Proj(make_project(tmp_path / "p", src, "chain"))


def corrupt(proj: Proj, h: str) -> bytes:
    """Overwrite object `h` with other bytes of the same size; returns them."""
    p = proj.object_path(h)
    bad = bytes(b ^ 0x20 for b in p.read_bytes())
    os.chmod(p, 0o644)
    p.write_bytes(bad)
    return bad


def quarantined(proj: Proj) -> list[str]:
    q = proj.path / ".e3" / "quarantine"
    return sorted(os.listdir(q)) if q.is_dir() else []


def test_a_corrupt_cached_output_is_recomputed_before_a_dependent_reads_it(proj):
    proj.go()
    h = proj.file_hash("outputs/a/o")
    bad = corrupt(proj, h)
    proj.write("inputs/k", b"KKK\n")                 # b must run, reading a's cached output
    res = proj.go()
    assert res["executed"] == ["a", "b"] and res["cached"] == ["c"]
    assert proj.read("outputs/b/o") == b"SSS\n|KKK\n"  # never the corrupt bytes
    assert proj.object_path(h).read_bytes() == b"SSS\n"
    assert quarantined(proj) == [h] and (proj.path / ".e3/quarantine" / h).read_bytes() == bad
    assert proj.e3("fsck").code == 0


def test_a_corrupt_input_dataset_stops_only_its_dependents_with_a_reason_naming_it(proj):
    proj.go()
    h = proj.file_hash("inputs/k")
    corrupt(proj, h)
    res = proj.go("--force", code=1)
    assert res["failed"] == ["b"] and sorted(res["executed"]) == ["a", "c"]
    hist = proj.histories(res["run"])["b"]
    note = hist[-1]["note"]
    assert hist[-1]["state"] == "fail"
    assert "inputs/k" in note and "corrupt" in note and "e3 fsck --repair" in note
    assert quarantined(proj) == [h]


def test_setting_the_original_bytes_replaces_a_corrupt_object(proj, tmp_path):
    proj.go()
    h = proj.file_hash("inputs/k")
    corrupt(proj, h)
    (tmp_path / "k").write_bytes(b"kkk\n")
    r = proj.e3("set", "inputs/k", str(tmp_path / "k"))
    assert r.code == 0, r
    assert hash_bytes(proj.object_path(h).read_bytes()) == h
    assert proj.e3("fsck").code == 0


def test_go_heals_when_the_settled_runs_root_or_a_memo_output_is_deleted_by_hand(proj, tmp_path):
    first = proj.go()
    (tmp_path / "t").write_bytes(b"TTT\n")
    assert proj.e3("set", "inputs/t", str(tmp_path / "t")).code == 0  # the root moves on
    os.unlink(proj.object_path(first["state_root"]))  # what the next go compares against
    os.unlink(proj.object_path(proj.file_hash("outputs/a/o")))
    res = proj.go()
    assert sorted(res["executed"]) == ["a", "c"] and res["cached"] == ["b"]
    assert proj.read("outputs/c/o") == b"TTT\n"
    assert proj.go()["executed"] == []


WIDE = '''
from e3logic import sdk

package = sdk.package("wide", "0.1.0")
package.task("slow", ["sh", "-c", "sleep 0.2; cat {inputs} > {output}"], runtime="shell")
package.dataset("inputs/s1", value="v0")
for i in range(15):
    package.dataflow(f"r{i:02d}", task="slow", inputs=["inputs/s1"], output="o")
'''


def test_a_set_during_a_run_is_never_mixed_into_it(tmp_path):
    proj = Proj(make_project(tmp_path / "p", write_package(tmp_path / "pkg", WIDE), "wide"))
    go = subprocess.Popen([sys.executable, "-m", "e3logic", "--json", "go", "-j", "2"],
                          cwd=proj.path, env=e3_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    values = []
    while go.poll() is None and len(values) < 40:
        v = json.dumps(f"v{len(values) + 1}").encode()
        (tmp_path / "v").write_bytes(v)
        r = proj.e3("set", "inputs/s1", str(tmp_path / "v"))
        assert r.code == 0, r
        values.append(v)
        time.sleep(0.05)
    out, err = go.communicate(timeout=120)
    assert go.returncode == 0, err
    res = json.loads(out)
    assert len(values) >= 2                          # the sets really overlapped the run
    read = proj.db("SELECT r.dataflow, p.hash FROM receipts r JOIN provenance p ON p.key = r.key "
                   "AND p.role = 'in' WHERE r.run = ?", (res["run"],))
    assert len(read) == 15 and len({h for _, h in read}) == 1  # one run, one version of s1
    assert all(proj.read(f"outputs/r{i:02d}/o") == proj.read("outputs/r00/o") for i in range(15))
    # the workspace keeps the newest value; everything that read the old one is stale
    assert proj.read("inputs/s1") == values[-1]
    assert res["stale"] == [f"r{i:02d}" for i in range(15)]
    st = proj.e3("--json", "status").json
    assert st["stale"] == [f"r{i:02d}" for i in range(15)]
    again = proj.go()                                # one execution, shared by all 15
    assert sorted(again["executed"] + again["cached"]) == [f"r{i:02d}" for i in range(15)]
    assert proj.read("outputs/r07/o") == values[-1]
