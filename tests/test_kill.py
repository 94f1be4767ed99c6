"""A process killed with SIGKILL in the middle of `add`, `set`, `commit` or `checkout` leaves a
repository that `e3 fsck` calls clean and that still works (DESIGN.md §9: nothing is lost).

Each operation is first run uninterrupted to learn how long it takes here; it is then killed
once as soon as it is visibly under way (a marker on disk) and at a few fractions of that time.
After every kill the repository is checked and the operation (or the next one) must still
succeed. No assertion depends on timing: wherever the kill lands, the same invariants hold."""
import json
import os
import signal
import time

import pytest

from .helpers import run_e3
from .repo_helpers import kill_after, kill_when, spawn_e3, write_package_dir

N = 300                       # datasets in the big package (one file each in the working copy)
BIG = 32 << 20                # bytes of the big raw dataset used by `set`
FRACTIONS = (None, 0.5, 0.9)  # None: kill at the first sign of progress


def e3(cwd, *args, **kw):
    r = run_e3(*args, cwd=cwd, **kw)
    return r


def ok(r):
    assert r.code == 0, r
    return r


def fsck_clean(cwd):
    r = e3(cwd, "--json", "fsck")
    assert r.code == 0 and r.json["ok"] is True, r
    return r.json


def timed(cwd, *args) -> float:
    t = time.monotonic()
    ok(e3(cwd, *args))
    return time.monotonic() - t


def kill_at(cwd, fraction, duration, marker, *args):
    """Run `e3 args` and SIGKILL it after `fraction * duration` seconds, or (fraction None) as
    soon as `marker()` holds; returns the exit code (-9 when the kill landed)."""
    p = spawn_e3(*args, cwd=cwd)
    if fraction is None:
        return kill_when(p, marker)
    return kill_after(p, fraction * duration)


def temp_files(cwd, prefix):
    """A marker: the store has a temp file or staging directory named prefix* being written."""
    return lambda: any(n.startswith(prefix) for n in os.listdir(cwd / ".e3/objects/tmp"))


def sync_pending(cwd):
    """A marker: the working copy is being rewritten (index.db meta wc_target is set)."""
    import sqlite3

    def check():
        c = sqlite3.connect(f"file:{cwd / '.e3/index.db'}?mode=ro", uri=True, timeout=1)
        try:
            return c.execute("SELECT 1 FROM meta WHERE key='wc_target'").fetchone() is not None
        except sqlite3.Error:
            return False
        finally:
            c.close()
    return check


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("kill-bundles")
    for v in ("0.1.0", "0.2.0"):
        ok(run_e3("build", write_package_dir(d / f"src{v}", "big", v, n_values=N), "-o", d))
    return d


@pytest.fixture
def project(tmp_path, bundles):
    p = tmp_path / "proj"
    ok(run_e3("init", p, cwd=tmp_path))
    return p


def working_copy_matches_workspace(cwd):
    """Status is clean and every file holds its dataset: byte for byte, or — a JSON dataset,
    stored in canonical form — value for value (against the stored object, read from
    `.e3/objects/` as DESIGN.md §on-disk layout places it, after fsck found it intact)."""
    st = ok(e3(cwd, "--json", "status")).json
    assert (st["modified"], st["added"], st["deleted"]) == ([], [], []), st
    from e3logic.core.hashing import hash_bytes, hash_file
    for e in ok(e3(cwd, "--json", "ls", "inputs")).json:
        f = cwd / e["path"]
        if e.get("format") == "json":
            h = e["hash"]
            stored = (cwd / ".e3/objects" / h[:2] / h[2:]).read_bytes()
            assert hash_bytes(stored) == h, e["path"]
            assert json.loads(f.read_bytes()) == json.loads(stored), e["path"]
        else:
            assert hash_file(f) == e["hash"], e["path"]
    return st


def test_a_killed_add_leaves_a_clean_repository_and_a_later_add_succeeds(project, bundles):
    zp = bundles / "big-0.1.0.zip"
    duration = timed(project, "add", zp)
    outcomes = []
    for f in FRACTIONS:
        ok(e3(project, "remove", "big"))
        ok(e3(project, "gc", "--min-age", "0"))  # so that the next add imports every object
        outcomes.append(kill_at(project, f, duration, temp_files(project, "import-"), "add", zp))
        fsck_clean(project)
        listed = ok(e3(project, "--json", "packages")).json
        if listed:  # the kill came after the ref: the whole package must be there
            ok(e3(project, "export", "big@0.1.0", project / "x.zip"))
            assert (project / "x.zip").read_bytes() == zp.read_bytes()
        r = ok(e3(project, "--json", "add", zp))
        assert r.json["version"] == "0.1.0"
    assert -signal.SIGKILL in outcomes  # at least one kill landed mid-operation
    ok(e3(project, "export", "big@0.1.0", project / "y.zip"))
    assert (project / "y.zip").read_bytes() == zp.read_bytes()
    ok(e3(project, "gc", "--min-age", "0"))
    fsck_clean(project)


def test_a_killed_checkout_is_completed_by_the_next_command(project, bundles):
    for v in ("0.1.0", "0.2.0"):
        ok(e3(project, "add", bundles / f"big-{v}.zip"))
    ok(e3(project, "checkout", "big@0.1.0"))
    duration = timed(project, "checkout", "big@0.2.0")
    outcomes, target = [], "0.1.0"
    for f in FRACTIONS:
        outcomes.append(kill_at(project, f, duration, sync_pending(project),
                                "checkout", f"big@{target}", "--force"))
        fsck_clean(project)
        st = working_copy_matches_workspace(project)  # the next command finished the sync
        assert st["version"] in ("0.1.0", "0.2.0")
        target = "0.2.0" if st["version"] == "0.1.0" else "0.1.0"
        ok(e3(project, "checkout", f"big@{target}"))  # no --force needed: nothing looks edited
        st = ok(e3(project, "--json", "status")).json
        assert (st["version"], st["modified"], st["added"], st["deleted"]) == (target, [], [], [])
        target = "0.2.0" if target == "0.1.0" else "0.1.0"
    assert -signal.SIGKILL in outcomes
    value = json.loads((project / "inputs/gen/d00007").read_bytes())
    assert value == {"i": 7, "v": "0.2.0" if target == "0.1.0" else "0.1.0"}


def test_a_killed_set_leaves_the_old_or_the_new_dataset_never_a_mix(project, bundles, tmp_path):
    ok(e3(project, "add", bundles / "big-0.1.0.zip"))
    ok(e3(project, "checkout", "big@0.1.0"))
    srcs = []
    for i in range(len(FRACTIONS) + 1):
        s = tmp_path / f"big{i}.bin"
        with open(s, "wb") as fh:
            fh.write(os.urandom(1 << 20) * (BIG >> 20))  # 1 MB pattern: cheap to make
            fh.write(f"version {i}".encode())
        srcs.append(s)
    from e3logic.core.hashing import hash_file
    hashes = [hash_file(s) for s in srcs]
    duration = timed(project, "set", "inputs/big", srcs[0])
    outcomes, current = [], hashes[0]
    for i, f in enumerate(FRACTIONS, start=1):
        outcomes.append(kill_at(project, f, duration, temp_files(project, "w-"),
                                "set", "inputs/big", srcs[i]))
        fsck_clean(project)
        stored = next(e["hash"] for e in ok(e3(project, "--json", "ls", "inputs/big")).json)
        assert stored in (current, hashes[i])
        on_disk = hash_file(project / "inputs/big")
        assert on_disk in (current, hashes[i])  # the file was replaced whole, or not at all
        st = ok(e3(project, "--json", "status")).json
        assert st["modified"] == ([] if on_disk == stored else ["inputs/big"])
        r = ok(e3(project, "--json", "set", "inputs/big", srcs[i]))  # and set still works
        assert r.json["hash"] == hashes[i]
        current = hashes[i]
        working_copy_matches_workspace(project)
    assert -signal.SIGKILL in outcomes


def test_a_killed_commit_leaves_a_clean_repository_and_committing_again_succeeds(project, bundles):
    ok(e3(project, "add", bundles / "big-0.1.0.zip"))
    ok(e3(project, "checkout", "big@0.1.0"))
    gen = project / "inputs" / "gen"

    def edit_all(tag):
        for p in gen.iterdir():
            p.write_bytes(json.dumps({"edited": tag, "name": p.name}).encode())

    edit_all("first")
    duration = timed(project, "commit", "--patch", "-m", "first")
    outcomes, before = [], "0.1.1"
    for k, f in enumerate(FRACTIONS):
        tag = f"round {k}"
        edit_all(tag)
        outcomes.append(kill_at(project, f, duration, temp_files(project, "w-"),
                                "commit", "--patch", "-m", tag))
        fsck_clean(project)
        r = ok(e3(project, "--json", "commit", "--patch", "-m", tag))  # still works
        assert r.json["version"] != before
        before = r.json["version"]
        working_copy_matches_workspace(project)  # files == datasets, so reading a file reads it
        assert json.loads((gen / "d00042").read_bytes())["edited"] == tag
    assert -signal.SIGKILL in outcomes
    log = ok(e3(project, "--json", "log")).json
    versions = [e["version"] for e in log]
    assert versions[0] == before and versions[-1] == "0.1.0"
    assert len(versions) == len(set(versions))
