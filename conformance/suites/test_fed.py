"""Conformance suite `fed` (issue 19; CLI.md "Shared cache"): a team's shared cache — remotes,
keys, trust, push, pull, `go --remote`, signed records, revocation as Datalog.

Driven through the real `e3` on clones of the `flows` package (tests/flows.py), each used by
a person with a config directory, hence a signing key, of their own (tests/shares.py); remotes
are a directory and a real local S3-compatible server (moto in server mode,
tests/s3server.py).

    A (alice): go, push ─► remote ─► B (bob, trusts alice): go --remote: pulls all, runs nothing
                                  └► C (carol, trusts nobody): pulls nothing
"""
from __future__ import annotations

import pytest

from tests.flows import FLOWS, FLOWS_OUTPUTS
from tests.helpers import run_e3
from tests.s3server import SECRET, CutProxy, S3Server
from tests.shares import Clone, User, clone, hostile_remote, produce, trusting


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    return produce(tmp_path_factory)


@pytest.fixture(scope="module")
def s3():
    with S3Server() as server:
        yield server


# -- the contract: commands and their JSON keys ------------------------------------------------
def test_keygen_answers_a_public_key_and_keeps_the_private_one_0600(tmp_path):
    u = User(tmp_path / "u")
    r = run_e3("--json", "keygen", env=u.env)
    assert r.code == 0 and {"public_key"} <= set(r.json)
    assert (tmp_path / "u" / "e3" / "signing-key.pem").stat().st_mode & 0o777 == 0o600


def test_remote_and_trust_lists_have_the_documented_keys(tmp_path_factory, tmp_path, produced):
    b = trusting(tmp_path_factory, tmp_path, produced)
    remotes = b.ok("remote", "list")
    assert [{"name", "url"} <= set(r) for r in remotes] == [True]
    assert remotes[0]["name"] == "team"
    trusted = b.ok("trust", "list")
    assert trusted == [{"name": "alice", "public_key": produced[1].public_key,
                        "revoked": False}]
    b.ok("remote", "remove", "team")
    assert b.ok("remote", "list") == []


def test_push_and_pull_answer_objects_records_and_refused(tmp_path_factory, tmp_path, produced):
    b = trusting(tmp_path_factory, tmp_path, produced)
    got = b.ok("pull")
    assert {"objects", "records", "refused"} <= set(got)
    assert got["records"] == len(FLOWS) and got["refused"] == []
    pushed = b.ok("push")  # bob computed nothing himself: nothing of his to sign
    assert {"objects", "records", "refused"} <= set(pushed) and pushed["records"] == 0


# -- the scenario of item 6 ----------------------------------------------------------------------
def test_a_trusting_clone_executes_nothing_and_gets_the_producer_s_outputs_and_state_root(
        tmp_path_factory, tmp_path, produced):
    _, _, _, first = produced
    b = trusting(tmp_path_factory, tmp_path, produced)
    res = b.go("--remote", "team")
    assert res["executed"] == [] and res["pulled"] == FLOWS
    assert res["state_root"] == first["state_root"]
    assert all(b.read(f"outputs/{n}/o") == FLOWS_OUTPUTS[n] for n in FLOWS)


def test_revoking_the_producer_makes_every_dataflow_stale_with_that_reason_and_go_reruns_all(
        tmp_path_factory, tmp_path, produced):
    b = trusting(tmp_path_factory, tmp_path, produced)
    b.go("--remote", "team")
    b.ok("trust", "revoke", "alice")
    st = b.ok("status")
    assert st["stale"] == FLOWS
    assert all(st["reasons"][n] == "produced under revoked key alice" for n in FLOWS)
    assert len(b.ok("query", "tainted(P)")["rows"]) == len(FLOWS)
    res = b.go()
    assert res["executed"] == FLOWS


def test_a_clone_that_does_not_trust_the_producer_pulls_nothing(tmp_path_factory, tmp_path,
                                                                produced):
    c = clone(tmp_path_factory, tmp_path, "c", User(tmp_path / "carol"))
    c.ok("remote", "add", "team", str(produced[2]))
    got = c.ok("pull")
    assert got["records"] == 0 and len(got["refused"]) == len(FLOWS)
    assert c.memo() == {}
    assert c.go("--remote", "team")["pulled"] == []


# -- hostility -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, reason", [
    ("altered", "does not hash to its name (altered on the remote)"),
    ("signature", "bad signature"),
    ("untrusted", "signed by an untrusted key"),
    ("missing", "is missing on the remote"),
])
def test_a_hostile_record_is_refused_and_reported_and_adds_nothing(kind, reason,
                                                                   tmp_path_factory, tmp_path,
                                                                   produced):
    bad, kinds = hostile_remote(produced, tmp_path)
    b = trusting(tmp_path_factory, tmp_path, produced)
    b.ok("remote", "add", "hostile", str(bad))
    got = b.ok("pull", "hostile")
    mine = [r for r in got["refused"] if r["record"].split("/")[1] == kinds[kind]]
    assert len(mine) == 1 and reason in mine[0]["reason"]
    assert kinds[kind] not in b.memo()


# -- S3 and faults -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_an_s3_remote_carries_the_scenario(tmp_path_factory, tmp_path, produced, s3):
    a, alice, _, first = produced
    url = f"s3://{s3.bucket('fed-scenario')}/e3"
    a2 = Clone(a.path, alice, s3.env)
    a2.ok("remote", "add", "s3", url, "--endpoint-url", s3.endpoint)
    try:
        assert a2.ok("push", "s3")["records"] == len(FLOWS)
    finally:
        a2.e3("remote", "remove", "s3")
    b = trusting(tmp_path_factory, tmp_path, produced)
    b.extra = dict(s3.env)
    b.ok("remote", "add", "s3", url, "--endpoint-url", s3.endpoint)
    res = b.go("--remote", "s3")
    assert res["executed"] == [] and res["state_root"] == first["state_root"]


@pytest.mark.slow
def test_a_remote_unreachable_mid_pull_commits_nothing_one_line_exit_2_no_credentials(
        tmp_path_factory, tmp_path, produced, s3):
    a, alice, _, _ = produced
    bucket = s3.bucket("fed-cut")
    a2 = Clone(a.path, alice, s3.env)
    a2.ok("remote", "add", "cut", f"s3://{bucket}", "--endpoint-url", s3.endpoint)
    try:
        a2.ok("push", "cut")
    finally:
        a2.e3("remote", "remove", "cut")
    b = trusting(tmp_path_factory, tmp_path, produced)
    b.extra = dict(s3.env)
    with CutProxy(("127.0.0.1", s3.port), budget=15) as proxy:
        b.ok("remote", "add", "cut", f"s3://{bucket}", "--endpoint-url", proxy.endpoint)
        r = b.e3("pull", "cut")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r
    assert SECRET not in r.err + r.out
    assert b.memo() == {}
