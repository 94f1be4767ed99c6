"""exec.share: signed execution records — what makes one accepted, and what refuses it — and
push, pull and go's remote lookup between two in-process repositories over a directory remote."""
from __future__ import annotations

import json

import pytest

from e3logic.core import canon
from e3logic.core.hashing import hash_bytes
from e3logic.exec.memo import execution_key
from e3logic.exec.share import (Refused, RemoteLookup, check_record, make_record, pull, push,
                                trusted_keys)
from e3logic.repo import keys
from e3logic.repo.remotes import DirRemote
from tests.flows import api_project, in_process_go, write_package

PKG = '''
from e3logic import sdk

package = sdk.package("tiny", "0.1.0")
package.module("steps.py")
package.task("double", "steps:double", runtime="inline")
package.task("inc", "steps:inc", runtime="inline")
package.dataset("inputs/x", value=3)
package.dataflow("double", task="double", inputs=["inputs/x"], output="o")
package.dataflow("inc", task="inc", inputs=["outputs/double/o"], output="o")
'''
STEPS = "def double(x):\n    return x * 2\n\n\ndef inc(x):\n    return x + 1\n"
H = [hash_bytes(str(i).encode()) for i in range(3)]


@pytest.fixture
def signer(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    keys.keygen()
    return keys.load_signer()


def record(signer, **change):
    key = execution_key(H[0], [H[1]])
    name, data = make_record(signer, key, H[0], [("inputs/x", H[1])], H[2], "json", "double",
                             "outputs/double/o")
    if change:
        rec = json.loads(data)
        rec.update(change)
        data = canon.dumps(rec)
    return name, data


def test_a_record_is_named_by_its_bytes_and_signing_it_again_gives_the_same_record(signer):
    name, data = record(signer)
    assert name == f"records/{execution_key(H[0], [H[1]])}/{hash_bytes(data)}"
    assert record(signer) == (name, data)
    c = check_record(name, data, {signer.public_key: ("me", False)})
    assert (c.key, c.output, c[3], c[5], c[8]) == (
        execution_key(H[0], [H[1]]), H[2], [("inputs/x", H[1])], "json", signer.public_key)


def test_a_record_whose_content_changed_after_signing_has_a_bad_signature(signer):
    trusted = {signer.public_key: ("me", False)}
    name, _ = record(signer)
    for change in ({"output": H[0]}, {"output_format": "raw"}, {"dataflow": "other"},
                   {"input_paths": ["inputs/y"]}):
        _, data = record(signer, **change)
        with pytest.raises(Refused, match="^bad signature"):
            check_record(name, data, trusted)


def test_a_record_is_refused_unless_its_signer_is_trusted_and_not_revoked(signer):
    name, data = record(signer)
    with pytest.raises(Refused, match=f"^signed by an untrusted key {signer.public_key}$"):
        check_record(name, data, {})
    with pytest.raises(Refused, match="^signed by revoked key me$"):
        check_record(name, data, {signer.public_key: ("me", True)})


def test_a_signed_record_whose_key_is_not_its_task_and_inputs_key_is_refused(signer):
    key = hash_bytes(b"some other key")
    name, data = make_record(signer, key, H[0], [("inputs/x", H[1])], H[2], "raw", "d",
                             "outputs/d/o")
    with pytest.raises(Refused, match="execution key is not the key of its task and inputs"):
        check_record(name, data, {signer.public_key: ("me", False)})


def test_malformed_records_are_refused_as_not_valid(signer):
    trusted = {signer.public_key: ("me", False)}
    name, data = record(signer)
    key = name.split("/")[1]
    for bad in (b"not json", b"[]", canon.dumps({"format": "other"}),
                record(signer, inputs="x")[1], record(signer, output_path="../escape")[1]):
        with pytest.raises(Refused, match="^not a valid record"):
            check_record(name, bad, trusted)
    with pytest.raises(Refused, match="filed under"):
        check_record(f"records/{hash_bytes(b'k')}/{hash_bytes(data)}", data, trusted)
    with pytest.raises(Refused, match="not a record name"):
        check_record(f"records/{key}", data, trusted)


class Recording(DirRemote):
    """A directory remote that remembers the order of its writes."""

    def __init__(self, *a):
        super().__init__(*a)
        self.puts: list[str] = []

    def put(self, name, data):
        super().put(name, data)
        self.puts.append(name)


@pytest.fixture
def two(tmp_path, signer):
    """Two in-process clones of `tiny` and a directory remote: (a, b, remote)."""
    pkg = write_package(tmp_path / "pkg", PKG, {"steps.py": STEPS})
    a = api_project(tmp_path / "a", pkg, "tiny")
    b = api_project(tmp_path / "b", pkg, "tiny")
    return a, b, Recording("team", str(tmp_path / "remote"))


def test_push_uploads_each_object_before_any_record_and_nothing_twice(two, signer):
    a, _, remote = two
    in_process_go(a, executor="inline")
    got = push(a.r, remote, signer)
    assert (got["objects"], got["records"], got["refused"]) == (2, 2, [])
    kinds = [n.split("/")[0] for n in remote.puts]
    assert kinds == ["objects", "objects", "records", "records"]
    assert push(a.r, remote, signer)["records"] == 0 and len(remote.puts) == 4


def test_pull_accepts_trusted_results_with_their_origin_and_skips_what_the_memo_has(two,
                                                                                   signer):
    a, b, remote = two
    in_process_go(a, executor="inline")
    push(a.r, remote, signer)
    b.trust_add("alice", signer.public_key)
    got = pull(b.r, remote)
    assert (got["records"], got["objects"], got["refused"]) == (2, 2, [])
    rows = b.r.journal.origin_rows()
    assert [(s, r) for _, s, r in rows] == [("alice", "team"), ("alice", "team")]
    assert pull(b.r, remote)["records"] == 0  # nothing new
    res = in_process_go(b, executor="inline")
    assert res["executed"] == [] and res["cached"] == ["double", "inc"]


def test_go_s_remote_lookup_adopts_results_level_by_level_and_commits_them_together(two,
                                                                                   signer):
    a, b, remote = two
    first = in_process_go(a, executor="inline")
    push(a.r, remote, signer)
    b.trust_add("alice", signer.public_key)
    b.remote_add("team", remote.url)
    res = in_process_go(b, executor="inline", remote="team")
    # `inc`'s key is known only once `double`'s pulled output is: both come from the remote
    assert res["pulled"] == ["double", "inc"] and res["executed"] == []
    assert res["state_root"] == first["state_root"] and res["refused"] == []
    assert b.r.journal.memo_size() == 2


def test_a_lookup_refuses_untrusted_records_and_adopts_nothing(two, signer):
    a, b, remote = two
    in_process_go(a, executor="inline")
    push(a.r, remote, signer)
    from e3logic.dataflow.model import Project

    ws = b.ws()
    project = Project.load(b.r, b.workspaces.package(ws)["hash"])
    look = RemoteLookup(b.r, remote, project, trusted_keys(b.r))
    key = next(iter(json.loads(remote.get(n))["key"] for n in remote.list("records/")
                    if json.loads(remote.get(n))["dataflow"] == "double"))
    assert look("double", key) is None
    assert look.adopted == {} and look.commit() == 0
    assert [r["reason"] for r in look.refused] == [
        f"signed by an untrusted key {signer.public_key}"]
