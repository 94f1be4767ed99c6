"""Conformance suite `cli`: the `e3` command's contract for issue 2 (shared/CLI.md): help for
every command, `--json` answers with the listed keys, one-line errors and exit codes."""
from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from e3logic import EXAMPLES_DIR
from e3logic.cli.main import COMMANDS, cli
from tests.helpers import run_e3

# the commands issue 2 covers, with the keys their --json answers must have (shared/CLI.md)
KEYS = {
    "init": {"repo"},
    "build": {"name", "version", "path", "hash"},
    "add": {"name", "version", "hash"},
    "remove": {"removed"},
    "packages": {"name", "version", "hash"},          # per element
    "export": {"path", "hash"},
    "checkout": {"workspace", "package", "version", "root"},
    "status": {"workspace", "package", "version", "root", "modified", "added", "deleted",
               "stale"},
    "ls": {"path", "hash", "size"},                    # per element
    "set": {"path", "hash", "root"},
    "commit": {"package", "version", "root"},
    "log": {"version", "message", "root"},             # per element
    "diff": {"path", "old", "new"},                    # per element
    "workspace list": {"name", "package", "version", "root", "current"},  # per element
    "gc": {"deleted", "bytes", "retained"},
    "fsck": {"ok", "corrupt", "missing"},
}


def all_commands():
    ctx = cli.make_context("e3", ["--help"], resilient_parsing=True)
    for name in sorted(COMMANDS):
        cmd = cli.get_command(ctx, name)
        yield name
        for sub in sorted(getattr(cmd, "commands", {}) or {}):
            yield f"{name} {sub}"


def ok(r):
    assert r.code == 0, r
    return r


def has_keys(answer, keys, per_element=False):
    items = answer if per_element else [answer]
    assert isinstance(items, list)
    for item in items:
        assert keys <= set(item), (keys - set(item), item)


@pytest.fixture
def proj(tmp_path):
    p = tmp_path / "proj"

    def e3(*args, **kw):
        kw.setdefault("cwd", p if p.exists() else tmp_path)
        return run_e3(*args, **kw)

    e3.root, e3.tmp = p, tmp_path
    return e3


def test_e3_help_lists_every_command_with_a_summary(proj):
    out = ok(proj("--help")).out
    assert out.startswith("Usage: e3 ")
    for name in COMMANDS:
        assert f"\n  {name} " in out, name


def test_every_command_and_subcommand_answers_help(proj):
    runner = CliRunner()
    for name in all_commands():
        r = runner.invoke(cli, [*name.split(), "--help"], prog_name="e3")
        assert r.exit_code == 0 and r.output.startswith(f"Usage: e3 {name}"), (name, r.output)
    for name in ("init", "checkout", "workspace", "workspace export", "gc"):
        assert ok(proj(*name.split(), "--help")).out.startswith(f"Usage: e3 {name}")


def test_version_answers_without_a_repository(proj):
    assert ok(proj("--version")).out.startswith("e3, version ")


def test_every_issue_2_command_answers_json_with_the_listed_keys(proj):
    t = proj.tmp
    has_keys(ok(proj("--json", "init", "proj")).json, KEYS["init"])
    built = ok(proj("--json", "build", EXAMPLES_DIR / "forecast", "-o", t / "dist")).json
    has_keys(built, KEYS["build"])
    has_keys(ok(proj("--json", "add", built["path"])).json, KEYS["add"])
    has_keys(ok(proj("--json", "packages")).json, KEYS["packages"], per_element=True)
    has_keys(ok(proj("--json", "export", "forecast@0.1.0", t / "x.zip")).json, KEYS["export"])
    has_keys(ok(proj("--json", "checkout", "forecast")).json, KEYS["checkout"])
    st = ok(proj("--json", "status")).json
    has_keys(st, KEYS["status"])
    assert all(st[k] == sorted(st[k]) for k in ("modified", "added", "deleted", "stale"))
    ls = ok(proj("--json", "ls")).json
    assert ls and ls == sorted(ls, key=lambda e: e["path"])
    has_keys(ls, KEYS["ls"], per_element=True)
    assert ok(proj("--json", "get", "inputs/horizon")).out == "6"  # get: bytes, no wrapper
    (t / "h").write_text("9")
    has_keys(ok(proj("--json", "set", "inputs/horizon", t / "h")).json, KEYS["set"])
    diff = ok(proj("--json", "diff")).json
    has_keys(diff, KEYS["diff"], per_element=True)
    assert len(diff) == 1
    has_keys(ok(proj("--json", "commit", "--patch", "-m", "m")).json, KEYS["commit"])
    has_keys(ok(proj("--json", "log")).json, KEYS["log"], per_element=True)
    assert ok(proj("--json", "reset")).code == 0
    has_keys(ok(proj("--json", "workspace", "list")).json, KEYS["workspace list"],
             per_element=True)
    for sub in (["create", "w2"], ["deploy", "w2", "forecast@0.1.0"], ["switch", "w2"],
                ["export", "w2", t / "w2.zip"], ["switch", "main"], ["remove", "w2"]):
        json.loads(ok(proj("--json", "workspace", *sub)).out)
    has_keys(ok(proj("--json", "gc", "--dry-run")).json, KEYS["gc"])
    has_keys(ok(proj("--json", "fsck")).json, KEYS["fsck"])
    has_keys(ok(proj("--json", "remove", "forecast@0.1.1", "--force")).json, KEYS["remove"])


def test_json_answers_are_one_document_on_stdout_only(proj):
    ok(proj("init", "proj"))
    r = ok(proj("--json", "build", EXAMPLES_DIR / "forecast", "-o", proj.tmp / "dist"))
    assert len(r.out.strip().splitlines()) == 1
    r = ok(proj("--json", "add", json.loads(r.out)["path"]))
    assert len(r.out.strip().splitlines()) == 1 and json.loads(r.out)


BAD = [
    (["stauts"], "unknown command 'stauts'; did you mean"),
    (["workspace", "swich", "x"], "Did you mean 'switch'"),
    (["checkout", "forcast"], "unknown package 'forcast'; did you mean 'forecast'"),
    (["get", "inputs/horizn"], "unknown dataset 'inputs/horizn'; did you mean 'inputs/horizon'"),
    (["workspace", "switch", "mian"], "unknown workspace 'mian'; did you mean 'main'"),
    (["ls", "inputs/../x"], "invalid dataset path"),
    (["set", "inputs/x"], "Missing argument"),
    (["status", "--bogus"], "No such option"),
    (["commit", "-m", "no part"], "--patch, --minor or --major"),
    (["init"], "already an e3 repository"),
]


def test_bad_input_and_unknown_names_are_one_line_errors_with_exit_2(proj):
    ok(proj("init", "proj"))
    built = ok(proj("--json", "build", EXAMPLES_DIR / "forecast", "-o", proj.tmp / "d")).json
    ok(proj("add", built["path"]))
    ok(proj("checkout", "forecast"))
    for args, needle in BAD:
        r = proj(*args)
        assert r.code == 2, (args, r)
        lines = r.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("e3: error: "), (args, r.err)
        assert needle in lines[0], (args, needle, lines[0])
        assert r.out == "", (args, r.out)


def test_a_command_that_needs_a_repository_and_finds_none_exits_2(proj):
    r = proj("status")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and "e3 init" in r.err


def test_a_failed_check_exits_1_and_verbose_adds_the_traceback(proj):
    ok(proj("init", "proj"))
    obj = next(p for p in (proj.root / ".e3/objects").rglob("*")
               if p.is_file() and p.parent.name != "tmp")
    os.chmod(obj, 0o644)
    obj.write_bytes(b"corrupt")
    assert proj("fsck").code == 1
    r = proj("-v", "get", "inputs/nothing")
    assert r.code == 2 and "Traceback (most recent call last)" in r.err
