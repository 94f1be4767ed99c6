"""End to end: the real `e3` command (python -m e3logic) on the repository commands."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from e3logic.cli.main import COMMANDS

from .helpers import e3_env, run_e3
from .repo_helpers import e3_cmd, write_package_dir

REPO_COMMANDS = ["init", "status", "ls", "get", "set", "checkout", "commit", "log", "diff",
                 "reset", "workspace", "gc", "fsck"]
WS_COMMANDS = ["create", "list", "remove", "switch", "deploy", "export"]

V1 = {"inputs/sales": b"region,amount\nnorth,10\n", "inputs/horizon": 6,
      "inputs/old_only": b"only in 0.1.0"}
V2 = {"inputs/sales": b"region,amount\nnorth,10\nsouth,7\n", "inputs/horizon": 12}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """demo-0.1.0.zip and demo-0.2.0.zip built once with the real `e3 build`."""
    d = tmp_path_factory.mktemp("bundles")
    for version, ds in (("0.1.0", V1), ("0.2.0", V2)):
        src = write_package_dir(d / f"src-{version}", "demo", version, ds)
        r = run_e3("build", src, "-o", d)
        assert r.code == 0, r
    return d


@pytest.fixture(scope="module")
def template(tmp_path_factory, bundles):
    """A project made once with the real commands: demo 0.1.0 and 0.2.0 added, 0.1.0 checked
    out. Tests get a copy (its stat cache then misses on inode numbers, so files are re-hashed
    once, as after a restore from backup)."""
    d = tmp_path_factory.mktemp("template") / "proj"
    d.mkdir()
    assert run_e3("init", cwd=d).code == 0
    for v in ("0.1.0", "0.2.0"):
        assert run_e3("add", bundles / f"demo-{v}.zip", cwd=d).code == 0
    r = run_e3("checkout", "demo@0.1.0", cwd=d)
    assert r.code == 0, r
    return d


@pytest.fixture
def proj(e3, template):
    """A fresh copy of the template project; `proj(*args)` runs e3 in it."""
    shutil.copytree(template, e3.cwd, dirs_exist_ok=True)
    return e3


def ok(r):
    assert r.code == 0, r
    return r


def one_line_error(r, code=2, *needles):
    assert r.code == code, r
    assert r.out == ""
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("e3: error: "), r.err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_help_lists_every_command(e3):
    r = ok(e3("--help"))
    for name in COMMANDS:
        assert f"  {name} " in r.out or f"  {name}\n" in r.out, name


def test_every_repository_command_answers_help(e3):
    from click.testing import CliRunner

    from e3logic.cli.main import cli
    for cmd in REPO_COMMANDS + [f"workspace {s}" for s in WS_COMMANDS]:
        r = CliRunner().invoke(cli, [*cmd.split(), "--help"], prog_name="e3")
        assert r.exit_code == 0 and r.output.startswith(f"Usage: e3 {cmd}"), (cmd, r.output)
        assert "--json" in r.output or cmd == "workspace", cmd
    for cmd in ("workspace", "status", "workspace switch"):  # and through the real command
        r = ok(e3(*cmd.split(), "--help"))
        assert r.out.startswith(f"Usage: e3 {cmd}")


def test_version_prints_the_package_version(e3):
    from e3logic import __version__
    assert ok(e3("--version")).out.strip() == f"e3, version {__version__}"


def test_init_answers_json_and_refuses_an_existing_repository(e3):
    r = ok(e3("--json", "init", "p"))
    assert r.json == {"repo": str((e3.cwd / "p").resolve())}
    one_line_error(e3("init", "p"), 2, "already an e3 repository")
    assert (e3.cwd / "p" / ".e3" / "HEAD").read_text() == "main\n"


def test_a_command_outside_any_repository_says_so_in_one_line(e3):
    one_line_error(e3("status"), 2, "not inside an e3 repository", "e3 init")
    one_line_error(e3("--repo", e3.cwd / "nowhere", "ls"), 2, "no e3 repository")


def test_the_repository_is_found_from_a_subdirectory_or_through_e3_repo(proj):
    sub = proj.cwd / "inputs"
    assert ok(proj("--json", "status", cwd=sub)).json["package"] == "demo"
    elsewhere = proj.cwd.parent
    r = ok(run_e3("--json", "status", cwd=elsewhere, env={"E3_REPO": str(proj.cwd)}))
    assert r.json["workspace"] == "main"


def test_usage_errors_are_one_line_with_exit_2(proj):
    one_line_error(proj("stauts"), 2, "unknown command 'stauts'; did you mean", "'status'")
    one_line_error(proj("workspace", "swich", "x"), 2, "switch")
    one_line_error(proj("set"), 2, "Missing argument")
    one_line_error(proj("status", "--bogus"), 2, "--bogus")
    one_line_error(proj("commit", "-m", "x"), 2, "--patch")
    one_line_error(proj("get", "inputs/sale"), 2, "did you mean", "'inputs/sales'")
    one_line_error(proj("checkout", "dmeo"), 2, "did you mean 'demo'")
    one_line_error(proj("workspace", "switch", "mian"), 2, "did you mean 'main'")
    one_line_error(proj("ls", "../etc"), 2, "invalid dataset path")


def test_verbose_errors_add_the_traceback(proj):
    r = proj("-v", "get", "inputs/sale")
    assert r.code == 2 and r.err.startswith("Traceback")
    assert r.err.strip().splitlines()[-1].startswith("e3: error: unknown dataset 'inputs/sale'")


def test_json_may_follow_the_command(proj):
    assert ok(proj("status", "--json")).json == ok(proj("--json", "status")).json


def test_checkout_and_status_answer_json_with_the_listed_keys(proj):
    r = ok(proj("--json", "checkout", "demo@0.2.0"))
    assert set(r.json) >= {"workspace", "package", "version", "root"}
    assert (r.json["package"], r.json["version"]) == ("demo", "0.2.0")
    st = ok(proj("--json", "status")).json
    assert set(st) >= {"workspace", "package", "version", "root", "modified", "added",
                       "deleted", "stale"}
    assert st["root"] == r.json["root"] and st["modified"] == []


def test_checkout_writes_byte_identical_files_and_restores_old_versions(proj):
    ok(proj("checkout", "demo@0.2.0"))
    assert not (proj.cwd / "inputs/old_only").exists()
    assert (proj.cwd / "inputs/sales").read_bytes() == V2["inputs/sales"]
    ok(proj("checkout", "demo@0.1.0"))
    assert (proj.cwd / "inputs/sales").read_bytes() == V1["inputs/sales"]
    assert (proj.cwd / "inputs/old_only").read_bytes() == V1["inputs/old_only"]
    assert json.loads((proj.cwd / "inputs/horizon").read_bytes()) == 6


def test_status_reports_edits_and_nothing_after_a_touch(proj):
    t = time.time() - 10
    for p in (proj.cwd / "inputs").iterdir():
        os.utime(p, (t, t))
    ok(proj("status"))
    os.utime(proj.cwd / "inputs/sales")  # touched, not changed
    st = ok(proj("--json", "status")).json
    assert (st["modified"], st["added"], st["deleted"]) == ([], [], [])
    (proj.cwd / "inputs/sales").write_bytes(b"changed")
    (proj.cwd / "inputs/new").write_bytes(b"n")
    (proj.cwd / "inputs/old_only").unlink()
    st = ok(proj("--json", "status")).json
    assert (st["modified"], st["added"], st["deleted"]) == \
        (["inputs/sales"], ["inputs/new"], ["inputs/old_only"])
    human = ok(proj("status")).out
    assert "M inputs/sales" in human and "A inputs/new" in human and "D inputs/old_only" in human


def test_ls_get_and_set_round_trip_dataset_bytes(proj, tmp_path):
    ls = ok(proj("--json", "ls")).json
    assert [e["path"] for e in ls] == sorted(V1)
    assert all(set(e) >= {"path", "hash", "size"} for e in ls)
    assert [e["path"] for e in ok(proj("--json", "ls", "inputs/sales")).json] == ["inputs/sales"]
    assert ok(proj("get", "inputs/sales")).out.encode() == V1["inputs/sales"]
    src = tmp_path / "s.csv"
    src.write_bytes(b"a,b\n1,2\n")
    r = ok(proj("--json", "set", "inputs/sales", src))
    assert set(r.json) >= {"path", "hash", "root"} and r.json["path"] == "inputs/sales"
    ok(proj("get", "inputs/sales", "-o", tmp_path / "out.csv"))
    assert (tmp_path / "out.csv").read_bytes() == b"a,b\n1,2\n"
    assert (proj.cwd / "inputs/sales").read_bytes() == b"a,b\n1,2\n"
    r = ok(proj("--json", "set", "inputs/horizon", "-", input="24"))
    assert ok(proj("get", "inputs/horizon")).out == "24"
    one_line_error(proj("set", "inputs/horizon", "-", input="not json"), 2, "not valid JSON")


def test_commit_log_diff_and_reset(proj):
    (proj.cwd / "inputs/sales").write_bytes(b"edited sales")
    d = ok(proj("--json", "diff")).json
    assert [(e["path"], e["old"] is not None, e["new"] is not None) for e in d] == \
        [("inputs/sales", True, True)]
    one_line_error(proj("commit", "--minor", "-m", "x"), 2, "0.2.0 already exists")
    r = ok(proj("--json", "commit", "--patch", "-m", "edit sales"))
    assert r.json["package"] == "demo" and r.json["version"] == "0.1.1" and "root" in r.json
    log = ok(proj("--json", "log")).json
    assert [(e["version"], e["message"]) for e in log] == [("0.1.1", "edit sales"), ("0.1.0", "")]
    assert all(set(e) >= {"version", "message", "root"} for e in log)
    assert ok(proj("--json", "diff")).json == []
    (proj.cwd / "inputs/horizon").write_bytes(b"99")
    ok(proj("reset", "inputs/horizon"))
    assert json.loads((proj.cwd / "inputs/horizon").read_bytes()) == 6
    assert ok(proj("--json", "status")).json["modified"] == []
    assert "demo@0.1.1" in ok(proj("packages")).out.replace("\t", "@")


def test_workspaces_create_list_deploy_switch_export_remove(proj, tmp_path):
    r = ok(proj("--json", "workspace", "create", "dev"))
    assert r.json["workspace"] == "dev"
    one_line_error(proj("workspace", "create", "dev"), 2, "already exists")
    r = ok(proj("--json", "workspace", "deploy", "dev", "demo@0.2.0"))
    assert (r.json["workspace"], r.json["version"]) == ("dev", "0.2.0")
    assert (proj.cwd / "inputs/old_only").exists()  # dev is not current: files untouched
    lst = ok(proj("--json", "workspace", "list")).json
    assert [(w["name"], w["version"], w["current"]) for w in lst] == \
        [("dev", "0.2.0", False), ("main", "0.1.0", True)]
    assert all(set(w) >= {"name", "package", "version", "root", "current"} for w in lst)
    ok(proj("workspace", "switch", "dev"))
    assert not (proj.cwd / "inputs/old_only").exists()
    assert (proj.cwd / "inputs/sales").read_bytes() == V2["inputs/sales"]
    assert ok(proj("--json", "status")).json["workspace"] == "dev"
    one_line_error(proj("workspace", "remove", "dev"), 2, "current")
    r = ok(proj("--json", "workspace", "export", "dev", tmp_path / "dev.zip"))
    assert r.json["path"] == str(tmp_path / "dev.zip") and len(r.json["hash"]) == 64
    ok(proj("workspace", "switch", "main"))
    assert ok(proj("--json", "workspace", "remove", "dev")).json == {"removed": ["dev"]}
    assert [w["name"] for w in ok(proj("--json", "workspace", "list")).json] == ["main"]


def test_workspace_deploy_refuses_an_unknown_workspace_with_did_you_mean_and_the_create_command(
        proj):
    one_line_error(proj("workspace", "deploy", "nosuch", "demo@0.2.0"), 2,
                   "unknown workspace 'nosuch'", "'e3 workspace create nosuch'")
    ok(proj("workspace", "create", "dev"))
    one_line_error(proj("workspace", "deploy", "dve", "demo@0.2.0"), 2,
                   "unknown workspace 'dve'; did you mean 'dev'?", "'e3 workspace create dve'")
    assert [w["name"] for w in ok(proj("--json", "workspace", "list")).json] == ["dev", "main"]
    ok(proj("workspace", "deploy", "dev", "demo@0.2.0"))


def test_a_bare_group_prints_its_help_with_its_subcommands_and_exits_2_as_click_does(proj):
    r = proj("workspace")
    assert r.code == 2 and r.out == ""
    assert r.err.startswith("Usage: e3 workspace [OPTIONS] COMMAND [ARGS]...\n")
    listed = r.err.split("Commands:\n", 1)[1].splitlines()
    assert [x.split()[0] for x in listed if x.strip()] == sorted(WS_COMMANDS)
    assert "e3: error" not in r.err
    r = proj()
    assert r.code == 2 and r.err.startswith("Usage: e3 [OPTIONS] COMMAND [ARGS]...\n")
    assert "  workspace  " in r.err and "e3: error" not in r.err


def test_global_options_may_follow_the_command_too(proj, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = ok(proj("--repo", proj.cwd, "--json", "status", cwd=elsewhere)).json
    assert ok(proj("status", "--repo", proj.cwd, "--json", cwd=elsewhere)).json == before
    assert ok(proj("status", f"--repo={proj.cwd}", "--json", cwd=elsewhere)).json == before
    lst = ok(proj("workspace", "list", "--repo", proj.cwd, "--json", cwd=elsewhere)).json
    assert [w["name"] for w in lst] == ["main"]
    assert ok(proj("workspace", "--repo", proj.cwd, "list", cwd=elsewhere)).out.split()[1] == \
        "main"
    r = proj("get", "inputs/sale", "-v")
    assert r.code == 2 and r.err.startswith("Traceback")
    r = proj("get", "inputs/sale", "--verbose")
    assert r.code == 2 and r.err.startswith("Traceback")
    one_line_error(proj("status", "--repo", elsewhere), 2, "no e3 repository")
    # a command's own option keeps its meaning: `workspace export --version` is not e3's
    r = ok(proj("--json", "workspace", "export", "main", tmp_path / "m.zip", "--version",
                "9.9.9"))
    assert r.json["version"] == "9.9.9"
    assert "--repo PATH" in ok(proj("ls", "--help")).out


def test_gc_dry_run_counts_match_the_real_run_and_fsck_is_clean(proj):
    ok(proj("remove", "demo@0.2.0"))
    dry = ok(proj("--json", "gc", "--dry-run", "--min-age", "0")).json
    assert set(dry) >= {"deleted", "bytes", "retained"} and dry["deleted"] > 0
    assert ok(proj("--json", "gc", "--dry-run", "--min-age", "0")).json == dry
    real = ok(proj("--json", "gc", "--min-age", "0")).json
    assert {k: real[k] for k in ("deleted", "bytes", "retained")} == \
        {k: dry[k] for k in ("deleted", "bytes", "retained")}
    assert ok(proj("--json", "gc", "--min-age", "0")).json["deleted"] == 0
    f = ok(proj("--json", "fsck")).json
    assert set(f) >= {"ok", "corrupt", "missing"} and f["ok"] is True
    assert ok(proj("status")).code == 0


def test_fsck_exits_1_and_names_a_corrupt_object(proj):
    obj = next(p for p in (proj.cwd / ".e3/objects").rglob("*")
               if p.is_file() and p.parent.name != "tmp")
    os.chmod(obj, 0o644)
    obj.write_bytes(b"bit rot")
    r = proj("--json", "fsck")
    assert r.code == 1 and r.json["ok"] is False
    assert r.json["corrupt"] == [obj.parent.name + obj.name]
    assert "corrupt: " + obj.parent.name + obj.name in proj("fsck").out


def test_concurrent_sets_of_different_paths_from_several_processes_all_land(proj, tmp_path):
    n, k = 5, 2
    srcs = []
    for i in range(n):
        s = tmp_path / f"src{i}"
        s.write_bytes(f"value {i}".encode())
        srcs.append(s)
    env = e3_env()
    cmds = [" && ".join(" ".join(map(str, e3_cmd("set", f"inputs/p{i}/d{j}", srcs[i])))
                        for j in range(k)) for i in range(n)]
    procs = [subprocess.Popen(["sh", "-c", c], cwd=proj.cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for c in cmds]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * n, outs
    paths = [e["path"] for e in ok(proj("--json", "ls", "inputs")).json]
    want = {f"inputs/p{i}/d{j}" for i in range(n) for j in range(k)}
    assert want <= set(paths)
    for i in range(n):
        assert ok(proj("get", f"inputs/p{i}/d{k - 1}")).out == f"value {i}"
    st = ok(proj("--json", "status")).json
    assert (st["modified"], st["added"], st["deleted"]) == ([], [], [])
    assert ok(proj("--json", "fsck")).json["ok"] is True


def test_export_then_import_into_a_fresh_repository_then_export_gives_identical_bytes(proj, tmp_path):
    ok(proj("commit", "--patch", "-m", "snapshot"))
    ok(proj("export", "demo@0.1.1", tmp_path / "a.zip"))
    fresh = tmp_path / "fresh"
    ok(run_e3("init", fresh, cwd=tmp_path))
    ok(run_e3("add", tmp_path / "a.zip", cwd=fresh))
    ok(run_e3("export", "demo@0.1.1", tmp_path / "b.zip", cwd=fresh))
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    ok(run_e3("checkout", "demo@0.1.1", cwd=fresh))
    assert (fresh / "inputs/sales").read_bytes() == V1["inputs/sales"]


def test_status_does_not_import_heavy_libraries_once_the_rules_are_cached(proj):
    # the first decision parses the rerun policy and keeps it in .e3/cache; later ones load it
    assert proj("status").code == 0
    code = ("import sys\nfrom e3logic.cli.main import main\n"
            "try:\n    main(['status'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('numpy', 'sqlite_utils', 'networkx', 'pyDatalog', 'kanren', "
            "'anyio', 'rich', 'lark') if m in sys.modules]\n"
            "print('HEAVY', ' '.join(heavy))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=proj.cwd, env=e3_env(),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].strip() == "HEAVY"


def test_fsck_repair_answers_the_repaired_summary_and_quarantines_a_corrupt_object(proj):
    h = ok(proj("--json", "ls", "inputs/sales")).json[0]["hash"]
    obj = proj.cwd / ".e3" / "objects" / h[:2] / h[2:]
    os.chmod(obj, 0o644)
    obj.write_bytes(b"rot")
    r = proj("--json", "fsck", "--repair")
    assert r.code == 0, r  # the working-copy file still holds the bytes: restored from it
    done = r.json["repaired"]
    assert set(done) >= {"quarantined", "memo_dropped", "refs_restored", "refs_removed",
                         "index_rebuilt"}
    assert done["quarantined"] == [h] and done["datasets_restored"] == ["main:inputs/sales"]
    assert (proj.cwd / ".e3" / "quarantine" / h).read_bytes() == b"rot"
    assert ok(proj("--json", "fsck")).json["ok"] is True


def test_a_damaged_index_stops_a_command_with_one_line_and_fsck_repair_mends_it(proj):
    with open(proj.cwd / ".e3" / "index.db", "r+b") as f:
        f.write(b"\0" * 100)
    one_line_error(proj("status"), 2, "index.db is damaged", "e3 fsck --repair")
    r = proj("fsck")
    assert r.code == 1 and "index.db is damaged" in r.out and "e3 fsck --repair" in r.out
    r = ok(proj("fsck", "--repair"))
    assert "rebuilt index.db" in r.out
    ok(proj("status"))


# -- status: the deployed version, unsaved edits, edited outputs, stale (issue 16, item 4) ----
@pytest.fixture
def ran(tmp_path_factory, tmp_path):
    """The `flows` package (tests/flows.py) checked out and run once, with the real command."""
    from tests.flows import copy_project

    p = copy_project(tmp_path_factory, "flows", tmp_path / "flows")
    p.go()
    return p


def test_after_go_takes_in_an_edited_input_status_is_not_clean_and_agrees_with_diff(ran):
    ran.set_json("inputs/k", 5)  # the issue's `inputs/horizon`: edited, then `go`
    ran.go()
    st = ok(ran.e3("--json", "status")).json
    assert (st["modified"], st["added"], st["deleted"]) == ([], [], [])
    assert [e["path"] for e in st["uncommitted"]] == ["inputs/k"]
    diff = ok(ran.e3("--json", "diff")).json
    assert "inputs/k" in [e["path"] for e in diff]
    assert st["uncommitted"] == [e for e in diff if not e["path"].startswith("outputs/")]
    human = ok(ran.e3("status")).out
    assert human.startswith("Package: flows@0.1.0")
    assert "Changes not yet in a package version (e3 commit):\n  M inputs/k\n" in human
    assert "clean" not in human
    one_line_error(ran.e3("checkout", "flows@0.1.0"), 2, "uncommitted", "inputs/k")
    ok(ran.e3("commit", "--patch", "-m", "k is 5"))
    st = ok(ran.e3("--json", "status")).json
    assert (st["uncommitted"], st["stale"], st["version"]) == ([], [], "0.1.1")
    assert ok(ran.e3("status")).out.splitlines()[1:] == ["clean: nothing modified, nothing stale"]


def test_status_shows_version_changes_unsaved_edits_and_stale_dataflows_in_their_sections(ran):
    ran.set_json("inputs/k", 5)
    ran.go()
    ran.write("inputs/flag", b'"maybe"')
    st = ok(ran.e3("--json", "status")).json
    assert [e["path"] for e in st["uncommitted"]] == ["inputs/k"]
    assert st["modified"] == ["inputs/flag"] and st["stale"] == ["after", "check"]
    diff = ok(ran.e3("--json", "diff")).json  # diff overlays the unsaved edit
    assert [e["path"] for e in diff if e["path"].startswith("inputs/")] == \
        ["inputs/flag", "inputs/k"]
    assert ok(ran.e3("status")).out.splitlines()[1:] == [
        "Changes not yet in a package version (e3 commit):", "  M inputs/k",
        "Unsaved edits in the working copy:", "  M inputs/flag",
        "Stale:", "  after: inputs/flag changed → check → after",
        "  check: inputs/flag changed → check"]


def test_status_lists_hand_edited_outputs_and_go_names_the_ones_it_put_back(ran):
    from tests.flows import FLOWS_OUTPUTS

    (ran.path / "outputs/report/o").write_bytes(b"improved by hand")
    (ran.path / "outputs/side/o").unlink()
    st = ok(ran.e3("--json", "status")).json
    assert st["outputs_edited"] == ["outputs/report/o", "outputs/side/o"]
    assert (st["uncommitted"], st["modified"], st["stale"]) == ([], [], [])
    assert ok(ran.e3("status")).out.splitlines()[1:] == [
        "Edited outputs (e3 go puts them back):", "  outputs/report/o", "  outputs/side/o"]
    res = ran.go()
    assert res["restored"] == ["outputs/report/o", "outputs/side/o"] and res["executed"] == []
    assert ran.read("outputs/report/o") == FLOWS_OUTPUTS["report"]
    assert ran.read("outputs/side/o") == FLOWS_OUTPUTS["side"]
    assert ok(ran.e3("--json", "status")).json["outputs_edited"] == []
    assert ok(ran.e3("status")).out.splitlines()[1:] == ["clean: nothing modified, nothing stale"]
    assert ran.go()["restored"] == []


def test_a_run_that_executes_also_names_the_hand_edited_outputs_it_put_back(tmp_path_factory,
                                                                           tmp_path):
    from tests.flows import copy_project

    p = copy_project(tmp_path_factory, "flows", tmp_path / "p")
    p.go()
    p.set_json("inputs/k", 5)
    (p.path / "outputs/total/o").write_text("junk")
    res = p.go()
    assert "scaled" in res["executed"] and res["restored"] == ["outputs/total/o"]
    assert (p.path / "outputs/total/o").read_text() != "junk"
    (p.path / "outputs/total/o").write_text("junk")
    assert "restored outputs/total/o (edited by hand)" in p.e3("go").out


# -- JSON inputs are compared and stored by value (issue 16, item 9) ------------------------
def test_a_json_input_rewritten_with_a_trailing_newline_is_clean_and_reruns_nothing(ran):
    ran.write("inputs/k", b"2\n")  # `echo 2 > inputs/k`: the value it holds
    ran.write("inputs/nums", b"[3, 9, 4]\n")
    assert ok(ran.e3("status")).out.splitlines()[1:] == ["clean: nothing modified, nothing stale"]
    res = ran.go()
    assert res["executed"] == []
    assert ok(ran.e3("--json", "status")).json["uncommitted"] == []
    assert ran.read("inputs/k") == b"2\n"  # the file stays as written


def test_a_changed_json_input_is_stored_canonically_so_another_spelling_reruns_nothing(ran):
    ran.write("inputs/k", b" 5 \n")
    st = ok(ran.e3("--json", "status")).json
    assert st["modified"] == ["inputs/k"] and "scaled" in st["stale"]
    assert "scaled" in ran.go()["executed"]
    assert ok(ran.e3("get", "inputs/k")).out == "5"
    assert ok(ran.e3("status")).out.splitlines()[1:] == [
        "Changes not yet in a package version (e3 commit):", "  M inputs/k"]
    for spelling in (b"5", b"5\n\n", b"\t5"):
        ran.write("inputs/k", spelling)
        assert ok(ran.e3("--json", "status")).json["modified"] == [], spelling
        assert ran.go()["executed"] == [], spelling


def test_a_json_input_that_is_not_json_stops_go_with_one_line_naming_the_path_and_the_fixes(ran):
    ran.write("inputs/k", b"five\n")
    assert ok(ran.e3("--json", "status")).json["modified"] == ["inputs/k"]
    line = one_line_error(ran.e3("go"), 2, "inputs/k is a JSON dataset but the file is not "
                                           "valid JSON", "'e3 reset inputs/k'",
                          "'e3 set inputs/k inputs/k --format raw'")
    assert "Expecting value" in line
    ok(ran.e3("reset", "inputs/k"))
    assert ran.go()["executed"] == []


# -- logs of an unknown name (issue 16, item 9) -----------------------------------------------
def test_logs_of_an_unknown_name_says_it_is_unknown_and_a_run_id_points_to_episodes(ran):
    one_line_error(ran.e3("logs", "r999"), 2, "unknown dataflow or execution 'r999'")
    one_line_error(ran.e3("logs", "totl"), 2, "unknown dataflow or execution 'totl'",
                   "did you mean 'total'?")
    run = ran.go()["run"]
    one_line_error(ran.e3("logs", run), 2, f"'{run}' is a run, not a dataflow or execution",
                   f"'e3 episodes --run {run}'")
