"""Clones of one project used by people with keys of their own, for the shared-cache tests
(tests/test_cli_share.py) and the `fed` conformance suite: `User` (an XDG_CONFIG_HOME, so a
signing key, of their own), `Clone` (a copy of the `flows` template driven through the real
`e3` as that user), `produce` (alice runs and pushes clone A to a directory remote),
`trusting` (a fresh clone whose user trusts alice) and `hostile_remote` (a copy of a remote
with one bad record of each kind)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.flows import FLOWS, Proj, copy_project
from tests.helpers import e3_env, run_e3


class User:
    """A person with a config directory of their own (their signing key lives there)."""

    def __init__(self, home: Path):
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.env = {"XDG_CONFIG_HOME": str(home)}
        self.public_key = None

    def keygen(self) -> str:
        r = run_e3("--json", "keygen", env=self.env)
        assert r.code == 0, r
        self.public_key = r.json["public_key"]
        return self.public_key


class Clone(Proj):
    """A clone of the project, used by `user`."""

    def __init__(self, path, user: User, extra_env: dict | None = None):
        super().__init__(path)
        self.user = user
        self.extra = dict(extra_env or {})

    def e3(self, *args, **kw):
        kw.setdefault("env", {**self.user.env, **self.extra})
        return run_e3(*args, cwd=self.path, **kw)

    def ok(self, *args):
        r = self.e3("--json", *args)
        assert r.code == 0, r
        return r.json

    def memo(self) -> dict[str, tuple]:
        return {k: (h, o) for k, h, o in self.db("SELECT key, output_hash, origin FROM memo")}

    def objects(self) -> set[str]:
        top = self.path / ".e3" / "objects"
        return {p.parent.name + p.name for p in top.glob("??/*")}


def clone(factory, tmp_path, name, user, extra_env=None) -> Clone:
    p = copy_project(factory, "flows", tmp_path / name)
    return Clone(p.path, user, extra_env)


def trusting(tmp_path_factory, tmp_path, produced, name="b") -> Clone:
    """A fresh clone used by bob, who trusts alice and names the team's remote."""
    a, alice, remote, _ = produced
    bob = User(tmp_path / f"{name}-user")
    bob.keygen()
    b = clone(tmp_path_factory, tmp_path, name, bob)
    b.ok("remote", "add", "team", str(remote))
    b.ok("trust", "add", "alice", alice.public_key)
    return b


def produce(tmp_path_factory):
    """Clone A of `flows`, run and pushed by alice to a directory remote: (A, alice, remote)."""
    base = tmp_path_factory.mktemp("share")
    alice = User(base / "alice")
    alice.keygen()
    a = clone(tmp_path_factory, base, "a", alice)
    remote = base / "remote"
    a.ok("remote", "add", "team", str(remote))
    first = a.go()
    assert first["executed"] == FLOWS
    pushed = a.ok("push")
    assert pushed["records"] == len(FLOWS) and pushed["refused"] == []
    return a, alice, remote, first


def hostile_remote(produced, tmp_path) -> tuple[Path, dict]:
    """A copy of the team's remote with one record of each hostile kind: {kind: key}."""
    _, alice, remote, _ = produced
    bad = tmp_path / "hostile"
    shutil.copytree(remote, bad)
    recs = sorted(p for p in (bad / "records").glob("*/*"))
    keyed = [(p.parent.name, p, json.loads(p.read_bytes())) for p in recs]
    # distinct output objects, so that damage to one touches one record
    by_out: dict[str, list] = {}
    for k, p, r in keyed:
        by_out.setdefault(r["output"], []).append((k, p, r))
    single = [v[0] for v in by_out.values() if len(v) == 1]
    (k1, _, r1), (k2, p2, r2), (k3, _, r3), (k4, p4, r4) = single[:4]
    # an object altered on the remote
    obj = bad / "objects" / r1["output"][:2] / r1["output"][2:]
    obj.write_bytes(obj.read_bytes() + b"tampered")
    # a record whose content no longer matches its signature
    r2 = dict(r2, output_format="json" if r2["output_format"] == "raw" else "raw")
    p2.write_bytes(json.dumps(r2, sort_keys=True, separators=(",", ":")).encode())
    # a record whose output object is missing
    (bad / "objects" / r3["output"][:2] / r3["output"][2:]).unlink()
    # a record signed by someone nobody trusts (mallory signs alice's result as his own)
    mallory = User(tmp_path / "mallory")
    mallory.keygen()
    code = ("import json, sys; from e3logic.repo.keys import load_signer; "
            "from e3logic.exec.share import make_record; r = json.loads(sys.argv[1]); "
            "n, d = make_record(load_signer(), r['key'], r['task'], "
            "list(zip(r['input_paths'], r['inputs'])), r['output'], r['output_format'], "
            "r['dataflow'], r['output_path']); sys.stdout.write(n + '\\n' + d.decode())")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(r4)], capture_output=True,
                         text=True, env=e3_env(mallory.env), check=True).stdout
    name, data = out.split("\n", 1)
    p4.unlink()  # only mallory vouches for this result now
    (bad / name).parent.mkdir(parents=True, exist_ok=True)
    (bad / name).write_text(data)
    return bad, {"altered": k1, "signature": k2, "missing": k3, "untrusted": k4,
                 "mallory": mallory.public_key, "objects": {k1: r1["output"],
                                                           k3: r3["output"]}}
