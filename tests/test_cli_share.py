"""The shared cache end to end through the real `e3` (cli/share_cmds.py: remote, keygen, trust,
push, pull; go --remote/--push): clones of one project, each user with a key of their own (an
XDG_CONFIG_HOME per user), a directory remote and a real local S3 server (moto in server
mode, tests/s3server.py)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from e3logic.core.hashing import hash_bytes
from tests.flows import FLOWS, FLOWS_OUTPUTS
from tests.helpers import e3_env, run_e3
from tests.s3server import SECRET, CutProxy, S3Server
from tests.shares import Clone, User, clone, hostile_remote, produce, trusting


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    """Clone A of `flows`, run and pushed by alice to a directory remote: (A, alice, remote,
    A's go answer)."""
    return produce(tmp_path_factory)


def test_a_clone_that_trusts_the_producer_executes_nothing_and_reaches_the_same_state(
        tmp_path_factory, tmp_path, produced):
    a, _, _, first = produced
    b = trusting(tmp_path_factory, tmp_path, produced)
    res = b.go("--remote", "team")
    assert res["executed"] == [] and res["pulled"] == FLOWS and res["refused"] == []
    assert res["state_root"] == first["state_root"]
    # the commit differs only through the receipt: pulled here, executed there
    assert res["commit"] != first["commit"]
    got = b.db("SELECT dataflow, key, output_hash, outcome FROM receipts WHERE run=?",
               (res["run"],))
    want = a.db("SELECT dataflow, key, output_hash FROM receipts WHERE run=?", (first["run"],))
    assert sorted(r[:3] for r in got) == sorted(want)
    assert {r[3] for r in got} == {"pulled"}
    for n in FLOWS:
        assert b.read(f"outputs/{n}/o") == FLOWS_OUTPUTS[n]
    # pulled rows carry their origin: alice's key
    assert {o for _, o in b.memo().values()} == {a.user.public_key}
    # and from now on they are plain memo hits; nothing is stale
    again = b.go("--remote", "team")
    assert again["cached"] == FLOWS and again["pulled"] == []
    assert b.ok("status")["stale"] == []


def test_the_human_summary_counts_pulled_and_executed_dataflows(tmp_path_factory, tmp_path,
                                                               produced):
    b = trusting(tmp_path_factory, tmp_path, produced)
    b.set_json("inputs/k", 5)  # scaled, report, combine, final and side must now be computed
    r = b.e3("go", "-j", "2", "--remote", "team")
    assert r.code == 0, r
    assert "run r1 ok: 7 pulled, 5 executed;" in r.out
    assert "[1/12] after... pulled" in r.out


def test_revoking_the_producer_makes_what_it_produced_stale_and_go_recomputes_it(
        tmp_path_factory, tmp_path, produced):
    b = trusting(tmp_path_factory, tmp_path, produced)
    b.go("--remote", "team")
    assert b.ok("query", "tainted(P)")["rows"] == []
    rev = b.ok("trust", "revoke", "alice")
    assert rev == {"name": "alice", "public_key": produced[1].public_key, "revoked": True,
                   "dropped": len(FLOWS)}
    st = b.ok("status")
    assert st["stale"] == FLOWS
    assert set(st["reasons"].values()) == {"produced under revoked key alice"}
    tainted = b.ok("query", "tainted(P)")["rows"]
    assert tainted == [[f"outputs/{n}/o"] for n in FLOWS]
    assert b.ok("trust", "list") == [{"name": "alice", "public_key": produced[1].public_key,
                                      "revoked": True}]
    # the remote still holds alice's records: refused now, so everything is recomputed
    res = b.go("--remote", "team")
    assert res["executed"] == FLOWS and res["pulled"] == []
    assert {r["reason"] for r in res["refused"]} == {"signed by revoked key alice"}
    assert set(res["reasons"].values()) == {"produced under revoked key alice"}
    assert b.ok("query", "tainted(P)")["rows"] == []
    assert b.ok("status")["stale"] == []
    assert {o for _, o in b.memo().values()} == {None}  # computed here


def test_results_computed_from_a_revoked_producer_s_output_are_tainted_too(
        tmp_path_factory, tmp_path, produced):
    b = trusting(tmp_path_factory, tmp_path, produced)
    b.go("--remote", "team", "peak")  # only peak comes from alice
    res = b.go()  # scaled (reads peak), report, combine, final computed here from it
    assert "scaled" in res["executed"]
    b.ok("trust", "revoke", "alice")
    tainted = {r[0] for r in b.ok("query", "tainted(P)")["rows"]}
    assert {"outputs/peak/o", "outputs/scaled/o", "outputs/report/o",
            "outputs/combine/o", "outputs/final/o"} <= tainted
    assert "outputs/norm/o" not in tainted  # computed here from inputs only
    st = b.ok("status")
    assert st["reasons"]["peak"] == "produced under revoked key alice"
    assert st["reasons"]["scaled"] == "produced under revoked key alice → peak → scaled"


def test_a_clone_that_does_not_trust_the_producer_pulls_nothing_from_it(
        tmp_path_factory, tmp_path, produced):
    _, alice, remote, _ = produced
    carol = User(tmp_path / "carol")
    c = clone(tmp_path_factory, tmp_path, "c", carol)
    c.ok("remote", "add", "team", f"file://{remote}")
    before = c.objects()
    got = c.ok("pull")
    assert got["records"] == 0 and got["objects"] == 0
    assert len(got["refused"]) == len(FLOWS)
    assert {r["reason"] for r in got["refused"]} == {
        f"signed by an untrusted key {alice.public_key}"}
    assert c.memo() == {} and c.objects() == before
    res = c.go("--remote", "team")
    assert res["pulled"] == [] and res["executed"] == FLOWS


def test_pull_fills_the_memo_and_a_plain_go_then_finds_every_result_cached(
        tmp_path_factory, tmp_path, produced):
    b = trusting(tmp_path_factory, tmp_path, produced)
    got = b.ok("pull", "team")
    assert got["records"] == len(FLOWS) and got["refused"] == []
    assert got["objects"] == len(set(FLOWS_OUTPUTS.values()))
    res = b.go()
    assert res["executed"] == [] and res["cached"] == FLOWS
    assert res["state_root"] == produced[3]["state_root"]
    assert b.ok("pull")["records"] == 0  # nothing new


def test_a_hostile_remote_s_bad_records_are_refused_with_reasons_and_add_nothing(
        tmp_path_factory, tmp_path, produced):
    bad, kinds = hostile_remote(produced, tmp_path)
    b = trusting(tmp_path_factory, tmp_path, produced)
    b.ok("remote", "add", "hostile", str(bad))
    got = b.ok("pull", "hostile")
    reasons = {r["record"].split("/")[1]: r["reason"] for r in got["refused"]}
    k = kinds
    assert reasons[k["altered"]] == (f"output object {k['objects'][k['altered']]} does not "
                                     f"hash to its name (altered on the remote)")
    assert reasons[k["signature"]].startswith("bad signature")
    assert reasons[k["missing"]] == (f"output object {k['objects'][k['missing']]} is missing "
                                     f"on the remote")
    assert reasons[k["untrusted"]] == f"signed by an untrusted key {k['mallory']}"
    assert len(got["refused"]) == 4 and got["records"] == len(FLOWS) - 4
    memo = b.memo()
    assert not {k["altered"], k["signature"], k["missing"], k["untrusted"]} & set(memo)
    assert k["objects"][k["altered"]] not in b.objects()
    # what was refused is computed, the rest pulled
    res = b.go()
    assert len(res["executed"]) >= 4 and res["state_root"] == produced[3]["state_root"]


def test_go_push_uploads_what_the_run_computed(tmp_path_factory, tmp_path):
    dave = User(tmp_path / "dave")
    dave.keygen()
    d = clone(tmp_path_factory, tmp_path, "d", dave)
    d.ok("remote", "add", "team", str(tmp_path / "r"))
    res = d.go("--push")
    assert res["executed"] == FLOWS
    assert res["pushed"]["records"] == len(FLOWS) and res["pushed"]["refused"] == []
    assert len(list((tmp_path / "r" / "records").glob("*/*"))) == len(FLOWS)
    # what is on the remote is whole: every object hashes to its name
    for p in (tmp_path / "r" / "objects").glob("??/*"):
        assert hash_bytes(p.read_bytes()) == p.parent.name + p.name
    assert d.ok("push")["records"] == 0  # pushed already


def test_two_clones_pushing_at_once_never_clash(tmp_path_factory, tmp_path, produced):
    remote = tmp_path / "shared"
    users = [User(tmp_path / f"u{i}") for i in range(2)]
    clones = []
    for i, u in enumerate(users):
        u.keygen()
        c = clone(tmp_path_factory, tmp_path, f"p{i}", u)
        c.ok("remote", "add", "team", str(remote))
        c.go()
        clones.append(c)
    procs = [subprocess.Popen([sys.executable, "-m", "e3logic", "--json", "push"], cwd=c.path,
                              env=e3_env(c.user.env), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for c in clones]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    # one record per result and signer; a clone trusting both accepts every one
    assert len(list((remote / "records").glob("*/*"))) == 2 * len(FLOWS)
    erin = User(tmp_path / "erin")
    e = clone(tmp_path_factory, tmp_path, "e", erin)
    e.ok("remote", "add", "team", str(remote))
    for i, u in enumerate(users):
        e.ok("trust", "add", f"u{i}", u.public_key)
    got = e.ok("pull")
    assert got["refused"] == [] and got["records"] == len(FLOWS)


# -- commands, answers and bad input ---------------------------------------------------------
def test_keygen_keeps_the_private_key_private_and_answers_its_public_key(tmp_path):
    u = User(tmp_path / "cfg")
    pk = u.keygen()
    key = tmp_path / "cfg" / "e3" / "signing-key.pem"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert pk.startswith("ed25519:") and len(pk) == 8 + 64
    assert u.keygen() == pk  # kept
    r = run_e3("keygen", "--force", env=u.env)
    assert r.code == 0 and r.out.strip() != pk


def test_remote_and_trust_commands_answer_their_json_and_refuse_bad_input_in_one_line(
        tmp_path):
    u = User(tmp_path / "cfg")
    pk = u.keygen()
    r = run_e3("init", str(tmp_path / "p"))
    assert r.code == 0
    c = Clone(tmp_path / "p", u)
    c.ok("remote", "add", "team", "rel/dir")
    c.ok("remote", "add", "s3", "s3://bucket/some/prefix", "--endpoint-url",
         "http://127.0.0.1:9000")
    assert c.ok("remote", "list") == [
        {"name": "s3", "url": "s3://bucket/some/prefix", "endpoint_url": "http://127.0.0.1:9000"},
        {"name": "team", "url": str((tmp_path / "p" / "rel" / "dir").resolve()),
         "endpoint_url": None}]
    assert c.ok("trust", "add", "me", pk) == {"name": "me", "public_key": pk, "revoked": False}
    bad = [
        (("remote", "add", "team", "/elsewhere"), "remote 'team' exists"),
        (("remote", "add", "x", f"s3://key:{SECRET}@bucket/p"), "must not carry credentials"),
        (("remote", "add", "x", "ftp://host/p"), "not a remote e3 can use"),
        (("remote", "add", "x", "/d", "--endpoint-url", "http://h:1"), "is for s3:// remotes"),
        (("remote", "remove", "tem"), "did you mean 'team'"),
        (("trust", "add", "x", "nonsense"), "is not a public key"),
        (("trust", "add", "me2", pk), "already trusted as 'me'"),
        (("trust", "revoke", "nobody"), "unknown trusted key 'nobody'"),
        (("push",), "2 remotes (s3, team); name one"),
        (("pull", "nope"), "unknown remote 'nope'"),
    ]
    for args, want in bad:
        r = c.e3(*args)
        assert r.code == 2, (args, r)
        lines = r.err.strip().splitlines()
        assert len(lines) == 1 and want in lines[0], (args, r.err)
        assert SECRET not in r.err + r.out
    assert c.ok("remote", "remove", "s3") == {"removed": "s3"}
    r = c.e3("push", env={"XDG_CONFIG_HOME": str(tmp_path / "nobody")})
    assert r.code == 2 and "make one with 'e3 keygen'" in r.err


# -- a real S3-compatible server ---------------------------------------------------------------
@pytest.fixture(scope="module")
def s3():
    with S3Server() as server:
        yield server


@pytest.mark.slow
def test_an_s3_remote_carries_results_from_one_clone_to_another_and_no_credential_leaks(
        tmp_path_factory, tmp_path, produced, s3):
    a, alice, _, first = produced
    bucket = s3.bucket("team-a")
    url = f"s3://{bucket}/cache"
    a2 = Clone(a.path, alice, s3.env)
    a2.ok("remote", "add", "s3", url, "--endpoint-url", s3.endpoint)
    try:
        pushed = a2.ok("push", "s3")
        assert pushed["records"] == len(FLOWS) and pushed["refused"] == []
        b = trusting(tmp_path_factory, tmp_path, produced)
        b.extra = dict(s3.env)
        b.ok("remote", "add", "s3", url, "--endpoint-url", s3.endpoint)
        res = b.go("--remote", "s3")
        assert res["executed"] == [] and res["pulled"] == FLOWS
        assert res["state_root"] == first["state_root"]
        # an unreachable endpoint: one line, exit 2, no secret
        b.ok("remote", "add", "off", url, "--endpoint-url", "http://127.0.0.1:9")
        r = b.e3("pull", "off")
        assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r
        assert "is unreachable" in r.err
        r = b.e3("-v", "pull", "off")  # the traceback names no credential either
        assert r.code == 2 and SECRET not in r.err
        r = b.e3("--json", "query", "origin(K, S, R)")
        assert {row[2] for row in r.json["rows"]} == {"s3"}
        for c in (a2, b):
            for f in (c.path / ".e3").rglob("*"):
                if f.is_file():
                    assert SECRET.encode() not in f.read_bytes(), f
    finally:
        a2.e3("remote", "remove", "s3")


@pytest.mark.slow
def test_a_remote_that_goes_away_mid_pull_commits_nothing_and_says_so_in_one_line(
        tmp_path_factory, tmp_path, produced, s3):
    a, alice, _, _ = produced
    bucket = s3.bucket("team-cut")
    a2 = Clone(a.path, alice, s3.env)
    a2.ok("remote", "add", "cut", f"s3://{bucket}", "--endpoint-url", s3.endpoint)
    try:
        a2.ok("push", "cut")
    finally:
        a2.e3("remote", "remove", "cut")
    b = trusting(tmp_path_factory, tmp_path, produced)
    b.extra = dict(s3.env)
    before = b.objects()
    # 1 listing + 12 records, then the objects: the connection drops after 15 requests
    with CutProxy(("127.0.0.1", s3.port), budget=15) as proxy:
        b.ok("remote", "add", "cut", f"s3://{bucket}", "--endpoint-url", proxy.endpoint)
        r = b.e3("pull", "cut")
    assert r.code == 2, r
    assert len(r.err.strip().splitlines()) == 1 and "is unreachable" in r.err
    assert SECRET not in r.err
    assert b.memo() == {} and b.objects() == before
    assert b.db("SELECT COUNT(*) FROM origins") == [(0,)]


@pytest.mark.slow
def test_a_push_cut_mid_way_leaves_only_whole_objects_and_records_whose_objects_are_there(
        tmp_path_factory, tmp_path, produced, s3):
    a, alice, _, _ = produced
    bucket = s3.bucket("team-push-cut")
    a2 = Clone(a.path, alice, s3.env)
    try:
        # 2 listings, 11 object PUTs, then records: the connection drops after 16 requests
        with CutProxy(("127.0.0.1", s3.port), budget=16) as proxy:
            a2.ok("remote", "add", "cut", f"s3://{bucket}", "--endpoint-url", proxy.endpoint)
            r = a2.e3("push", "cut")
        assert r.code == 2 and "is unreachable" in r.err, r
        client = s3.client()
        names = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
        objects = {n for n in names if n.startswith("objects/")}
        records = [n for n in names if n.startswith("records/")]
        assert objects and len(records) < len(FLOWS)
        for n in objects:
            body = client.get_object(Bucket=bucket, Key=n)["Body"].read()
            assert hash_bytes(body) == n.split("/", 1)[1].replace("/", "")
        for n in records:
            rec = json.loads(client.get_object(Bucket=bucket, Key=n)["Body"].read())
            assert f"objects/{rec['output'][:2]}/{rec['output'][2:]}" in objects
        a2.e3("remote", "remove", "cut")
        a2.ok("remote", "add", "cut", f"s3://{bucket}", "--endpoint-url", s3.endpoint)
        again = a2.ok("push", "cut")  # the rest
        assert again["records"] == len(FLOWS) - len(records)
    finally:
        a2.e3("remote", "remove", "cut")


def test_cache_remote_in_e3_toml_makes_every_go_ask_it_unless_told_not_to(
        tmp_path_factory, tmp_path, produced):
    b = trusting(tmp_path_factory, tmp_path, produced)
    with open(b.path / "e3.toml", "a") as f:
        f.write('\n[cache]\nremote = "team"\n')
    assert b.go("--no-remote", "peak")["executed"] == ["peak"]
    res = b.go()
    assert res["pulled"] == [n for n in FLOWS if n != "peak"]
    r = b.e3("pull")  # the default remote; human summary
    assert r.code == 0 and r.out.startswith("pulled 0 records (0 objects) from 'team'"), r


def test_gc_keeps_pulled_results_and_fsck_finds_them_whole(tmp_path_factory, tmp_path,
                                                           produced):
    b = trusting(tmp_path_factory, tmp_path, produced)
    b.ok("pull")
    pulled = {h for h, _ in b.memo().values()}
    gc = b.ok("gc", "--min-age", "0")
    assert pulled <= b.objects(), gc  # memo outputs are roots, pulled or not
    assert b.ok("fsck")["ok"] is True
    res = b.go()
    assert res["cached"] == FLOWS and res["state_root"] == produced[3]["state_root"]
