"""api.Repo: the repository facade the CLI calls (checkout, status, datasets, versions,
workspaces, export, gc) over a real repository and working copy."""
import os
import time
import zipfile

import pytest

from e3logic.api import Repo
from e3logic.core import canon
from e3logic.core.errors import LockBusy, NotFound, UsageError
from e3logic.repo import packages

from .repo_helpers import make_package

V1 = {"inputs/sales": b"region,amount\nnorth,10\n", "inputs/horizon": 6,
      "inputs/old_only": b"dropped in 0.2.0"}
V2 = {"inputs/sales": b"region,amount\nnorth,10\nsouth,7\n", "inputs/horizon": 12,
      "inputs/new_only": b"added in 0.2.0"}
FLOWS = {"clean": {"task": "t", "inputs": ["inputs/sales"], "output": "rows"},
         "fit": {"task": "t", "inputs": ["outputs/clean/rows", "inputs/horizon"],
                 "output": "model"},
         "other": {"task": "t", "inputs": ["inputs/old_only"], "output": "x"}}


def settle(repo):
    """Age the working-copy files past the racy window, as seconds after a checkout."""
    t = time.time() - 10
    for top in ("inputs", "outputs"):
        for d, _, files in os.walk(repo.root / top):
            for f in files:
                os.utime(os.path.join(d, f), (t, t))


@pytest.fixture
def repo(tmp_path):
    r = Repo.init(tmp_path / "proj")
    make_package(r.r, "forecast", "0.1.0", datasets=V1, dataflows=FLOWS)
    make_package(r.r, "forecast", "0.2.0", datasets=V2, dataflows=FLOWS)
    return r


def files(repo, top="inputs"):
    base = repo.root / top
    return {str(p.relative_to(repo.root)): p.read_bytes() for p in sorted(base.rglob("*"))
            if p.is_file()}


def expected(datasets):
    return {p: (v if isinstance(v, bytes) else canon.dumps(v)) for p, v in datasets.items()}


def test_checkout_deploys_the_package_and_writes_its_datasets_as_files(repo):
    res = repo.checkout("forecast@0.1.0")
    assert res["workspace"] == "main" and res["package"] == "forecast"
    assert res["version"] == "0.1.0"
    assert res["root"] == repo.workspaces.root("main")
    assert files(repo) == expected(V1)


def test_checkout_without_a_version_takes_the_highest(repo):
    assert repo.checkout("forecast")["version"] == "0.2.0"


def test_checking_out_an_old_version_restores_its_datasets_exactly(repo):
    repo.checkout("forecast@0.2.0")
    repo.checkout("forecast@0.1.0")
    assert files(repo) == expected(V1)
    repo.checkout("forecast@0.2.0")
    assert files(repo) == expected(V2)


def test_an_unknown_package_or_version_suggests_near_misses(repo):
    with pytest.raises(NotFound) as e:
        repo.checkout("forcast")
    assert "did you mean 'forecast'" in str(e.value)
    with pytest.raises(NotFound) as e:
        repo.checkout("forecast@0.3.0")
    assert "0.1.0" in str(e.value) and "0.2.0" in str(e.value)


def test_status_after_checkout_is_clean_and_names_missing_outputs_as_stale(repo):
    repo.checkout("forecast@0.1.0")
    st = repo.status()
    assert st["modified"] == st["added"] == st["deleted"] == []
    assert st["stale"] == ["clean", "fit", "other"]
    assert (st["workspace"], st["package"], st["version"]) == ("main", "forecast", "0.1.0")


def test_status_sees_edits_of_input_files(repo):
    repo.checkout("forecast@0.1.0")
    (repo.root / "inputs/sales").write_bytes(b"edited")
    (repo.root / "inputs/old_only").unlink()
    (repo.root / "inputs/extra").write_bytes(b"new")
    st = repo.status()
    assert (st["modified"], st["added"], st["deleted"]) == \
        (["inputs/sales"], ["inputs/extra"], ["inputs/old_only"])


def test_status_after_touching_a_file_without_changing_it_reports_nothing(repo):
    repo.checkout("forecast@0.1.0")
    settle(repo)
    repo.status()
    os.utime(repo.root / "inputs/sales")
    st = repo.status()
    assert st["modified"] == st["added"] == st["deleted"] == []


def test_checkout_refuses_while_the_working_copy_has_edits_unless_forced(repo):
    repo.checkout("forecast@0.1.0")
    (repo.root / "inputs/sales").write_bytes(b"my edit")
    with pytest.raises(UsageError) as e:
        repo.checkout("forecast@0.2.0")
    assert "inputs/sales" in str(e.value) and "--force" in str(e.value)
    assert repo.workspaces.package("main")["version"] == "0.1.0"
    repo.checkout("forecast@0.2.0", force=True)
    assert files(repo) == expected(V2)


def test_set_stores_the_dataset_writes_the_file_and_moves_the_root(repo, tmp_path):
    repo.checkout("forecast@0.1.0")
    src = tmp_path / "new.csv"
    src.write_bytes(b"region,amount\n")
    res = repo.set("inputs/sales", src)
    assert res["root"] == repo.workspaces.root("main")
    assert repo.get("inputs/sales")[1] == b"region,amount\n"
    assert (repo.root / "inputs/sales").read_bytes() == b"region,amount\n"
    st = repo.status()
    assert st["modified"] == [] and st["stale"] == ["clean", "fit", "other"]


def test_set_keeps_a_json_datasets_format_and_refuses_bytes_that_are_not_json(repo):
    repo.checkout("forecast@0.1.0")
    repo.set("inputs/horizon", b"24")
    assert repo.get("inputs/horizon")[0]["format"] == "json"
    root = repo.workspaces.root("main")
    with pytest.raises(UsageError) as e:
        repo.set("inputs/horizon", b"twenty")
    assert "--format raw" in str(e.value)
    assert repo.workspaces.root("main") == root
    assert repo.set("inputs/horizon", b"twenty", fmt="raw")["path"] == "inputs/horizon"


def test_set_outside_the_working_copy_folders_writes_no_file(repo):
    repo.checkout("forecast@0.1.0")
    repo.set("extra/notes", b"n")
    assert repo.get("extra/notes")[1] == b"n" and not (repo.root / "extra").exists()


def test_set_of_a_missing_file_is_a_usage_error(repo, tmp_path):
    with pytest.raises(UsageError):
        repo.set("inputs/x", tmp_path / "nope")


def test_set_waits_for_no_one_but_is_refused_while_a_deploy_holds_the_workspace(repo):
    repo.checkout("forecast@0.1.0")
    with repo.workspaces.lock("main").acquire("deploy forecast@0.2.0"):
        with pytest.raises(LockBusy) as e:
            repo.set("inputs/x", b"1")
    assert f"pid {os.getpid()}" in str(e.value) and "deploy forecast@0.2.0" in str(e.value)


def test_ls_lists_datasets_with_hash_size_and_format(repo):
    repo.checkout("forecast@0.1.0")
    rows = repo.ls("inputs")
    assert [r["path"] for r in rows] == sorted(V1)
    sales = next(r for r in rows if r["path"] == "inputs/sales")
    assert sales["size"] == len(V1["inputs/sales"]) and sales["format"] == "raw"
    with pytest.raises(NotFound) as e:
        repo.ls("inputs/sale")
    assert "inputs/sales" in str(e.value)


def test_get_of_a_folder_or_unknown_dataset_is_a_usage_error(repo):
    repo.checkout("forecast@0.1.0")
    with pytest.raises(UsageError):
        repo.get("inputs")
    with pytest.raises(NotFound):
        repo.get("inputs/horizn")


def test_commit_bumps_the_requested_part_and_refuses_an_existing_version(repo):
    repo.checkout("forecast@0.1.0")
    (repo.root / "inputs/sales").write_bytes(b"edit")
    with pytest.raises(UsageError) as e:
        repo.commit("minor", "collides with the installed 0.2.0")
    assert "0.2.0 already exists" in str(e.value)
    res = repo.commit("patch", "fix sales")
    assert res == {"package": "forecast", "version": "0.1.1", "root": repo.workspaces.root("main")}
    pkg = repo.read_package(repo.workspaces.package("main")["hash"])
    assert pkg["parent"]["version"] == "0.1.0" and pkg["message"] == "fix sales"
    assert repo.get("inputs/sales")[1] == b"edit"
    assert repo.status()["modified"] == []


def test_commit_requires_a_deployed_package(tmp_path):
    r = Repo.init(tmp_path / "empty")
    with pytest.raises(UsageError) as e:
        r.commit("patch", "x")
    assert "e3 checkout" in str(e.value)


def test_repeating_a_commit_interrupted_after_its_version_was_written_completes_it(repo):
    repo.checkout("forecast@0.1.0")
    (repo.root / "inputs/sales").write_bytes(b"edit")
    real = repo.workspaces.set_package
    repo.workspaces.set_package = lambda *a: (_ for _ in ()).throw(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        repo.commit("patch", "fix")
    repo.workspaces.set_package = real
    assert repo.workspaces.package("main")["version"] == "0.1.0"  # the kill landed here
    assert repo.commit("patch", "fix")["version"] == "0.1.1"
    assert repo.workspaces.package("main")["version"] == "0.1.1"


def test_log_walks_the_versions_newest_first(repo):
    repo.checkout("forecast@0.1.0")
    for i in range(3):
        repo.set("inputs/horizon", str(i).encode())
        repo.commit("patch", f"horizon {i}")
    log = repo.log()
    assert [e["version"] for e in log] == ["0.1.3", "0.1.2", "0.1.1", "0.1.0"]
    assert [e["message"] for e in log] == ["horizon 2", "horizon 1", "horizon 0", ""]
    assert log[0]["root"] == repo.workspaces.root("main")


def test_diff_lists_datasets_changed_since_the_deployed_version_including_file_edits(repo):
    repo.checkout("forecast@0.1.0")
    assert repo.diff() == []
    (repo.root / "inputs/sales").write_bytes(b"edited")
    repo.set("inputs/added", b"a")
    (repo.root / "inputs/old_only").unlink()
    d = repo.diff()
    assert [(e["path"], e["old"] is None, e["new"] is None) for e in d] == [
        ("inputs/added", True, False), ("inputs/old_only", False, True),
        ("inputs/sales", False, False)]
    assert [e["path"] for e in repo.diff("inputs/sales")] == ["inputs/sales"]


def test_reset_puts_datasets_back_to_the_deployed_version(repo):
    repo.checkout("forecast@0.1.0")
    deployed = repo.workspaces.root("main")
    repo.set("inputs/sales", b"x")
    repo.set("inputs/horizon", b"99")
    repo.reset("inputs/sales")
    assert repo.get("inputs/sales")[1] == V1["inputs/sales"]
    assert repo.get("inputs/horizon")[1] == b"99"
    repo.set("inputs/added", b"a")
    (repo.root / "inputs/old_only").unlink()
    assert repo.reset()["root"] == deployed
    assert files(repo) == expected(V1)
    assert repo.status()["modified"] == []


def test_workspaces_switch_rewrites_the_working_copy(repo):
    repo.checkout("forecast@0.1.0")
    repo.checkout("forecast@0.2.0", ws="dev")
    assert repo.current == "dev" and files(repo) == expected(V2)
    repo.switch("main")
    assert repo.current == "main" and files(repo) == expected(V1)
    (repo.root / "inputs/sales").write_bytes(b"uncommitted")
    with pytest.raises(UsageError):
        repo.switch("dev")
    assert repo.switch("dev", force=True)["workspace"] == "dev"
    assert files(repo) == expected(V2)


def test_switch_removes_files_a_set_added_even_if_not_yet_synced(repo):
    repo.checkout("forecast@0.1.0")
    repo.workspaces.create("empty")
    repo.set("inputs/only_here", b"x")
    repo.r.index.execute("DELETE FROM meta WHERE key='wc_root'")  # as after a kill mid-set
    repo.switch("empty")
    assert files(repo) == {}


def test_an_interrupted_checkout_is_completed_by_the_next_command(repo):
    repo.checkout("forecast@0.1.0")
    settle(repo)
    repo.status()
    real = repo.wc.sync
    repo.wc.sync = lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):  # killed after the deploy, before any file
        repo.checkout("forecast@0.2.0")
    repo.wc.sync = real
    assert repo.workspaces.package("main")["version"] == "0.2.0"
    st = Repo.open(str(repo.root)).status()
    assert st["modified"] == st["added"] == st["deleted"] == []
    assert files(repo) == expected(V2)


def test_workspace_export_writes_a_bundle_of_the_current_datasets_and_installs_nothing(repo, tmp_path):
    make_package(repo.r, "plain", "0.1.0", datasets=V1)  # no dataflows: `add` checks their tasks
    repo.checkout("plain@0.1.0")
    repo.set("inputs/horizon", b"3")
    before = packages.list_packages(repo.r)
    res = repo.export_workspace("main", str(tmp_path / "ws.zip"))
    assert res["version"].startswith("0.1.0-") and packages.list_packages(repo.r) == before
    assert "e3package.json" in zipfile.ZipFile(tmp_path / "ws.zip").namelist()
    other = Repo.init(tmp_path / "other")
    added = packages.add(other.r, str(tmp_path / "ws.zip"))
    other.checkout(f"plain@{added['version']}")
    assert other.get("inputs/horizon")[1] == b"3"
    again = repo.export_workspace("main", str(tmp_path / "ws2.zip"))
    assert (tmp_path / "ws.zip").read_bytes() == (tmp_path / "ws2.zip").read_bytes()
    assert again["hash"] == res["hash"]


def test_gc_uses_the_configured_min_age(repo):
    (repo.root / "e3.toml").write_text("[gc]\nmin_age = 100000\n")
    h = repo.r.objects.write(b"orphan")
    t = time.time() - 1000
    os.utime(repo.r.objects.path(h), (t, t))
    assert Repo.open(str(repo.root)).gc()["deleted"] == 0
    assert repo.gc(min_age=10)["deleted"] == 1


def test_fsck_through_the_facade(repo):
    repo.checkout("forecast@0.1.0")
    assert repo.fsck()["ok"] is True


def test_checkout_refuses_to_replace_uncommitted_dataset_changes_unless_forced(repo):
    repo.checkout("forecast@0.1.0")
    repo.set("inputs/horizon", b"48")  # changed in the workspace, not in any file edit
    with pytest.raises(UsageError) as e:
        repo.checkout("forecast@0.2.0")
    assert "uncommitted input changes" in str(e.value) and "inputs/horizon" in str(e.value)
    assert repo.get("inputs/horizon")[1] == b"48"
    repo.checkout("forecast@0.2.0", ws="dev")  # another workspace: main keeps its change
    assert repo.workspaces.root("main") != repo.workspaces.root("dev")
    repo.switch("main")
    assert repo.get("inputs/horizon")[1] == b"48"
    repo.checkout("forecast@0.2.0", force=True)
    assert files(repo) == expected(V2)


def test_diff_only_reads_file_edits_it_does_not_take_them_in(repo):
    repo.checkout("forecast@0.1.0")
    root = repo.workspaces.root("main")
    (repo.root / "inputs/sales").write_bytes(b"edited")
    assert [e["path"] for e in repo.diff()] == ["inputs/sales"]
    assert repo.workspaces.root("main") == root
    assert repo.status()["modified"] == ["inputs/sales"]


def test_reset_of_a_path_keeps_file_edits_elsewhere(repo):
    repo.checkout("forecast@0.1.0")
    repo.set("inputs/horizon", b"99")
    (repo.root / "inputs/sales").write_bytes(b"my unsaved edit")
    repo.reset("inputs/horizon")
    assert (repo.root / "inputs/horizon").read_bytes() == canon.dumps(6)
    assert (repo.root / "inputs/sales").read_bytes() == b"my unsaved edit"
    assert repo.status()["modified"] == ["inputs/sales"]


def test_commit_is_refused_while_a_deploy_holds_the_workspace(repo):
    repo.checkout("forecast@0.1.0")
    (repo.root / "inputs/sales").write_bytes(b"edit")
    with repo.workspaces.lock("main").acquire("deploy forecast@0.2.0"):
        with pytest.raises(LockBusy):
            repo.commit("patch", "racing a deploy")
    assert repo.workspaces.package("main")["version"] == "0.1.0"
    assert repo.commit("patch", "after it")["version"] == "0.1.1"


def test_open_dataset_streams_the_bytes_of_a_dataset(repo):
    repo.checkout("forecast@0.1.0")
    entry, f = repo.open_dataset("inputs/sales")
    with f:
        assert f.read(6) == V1["inputs/sales"][:6]
    assert entry["size"] == len(V1["inputs/sales"])


def test_deploy_into_another_workspace_leaves_the_working_copy_and_guards_its_changes(repo):
    repo.checkout("forecast@0.1.0")
    res = repo.deploy("dev", "forecast@0.2.0")
    assert (res["workspace"], res["version"]) == ("dev", "0.2.0")
    assert repo.current == "main" and files(repo) == expected(V1)
    repo.switch("dev")
    repo.set("inputs/horizon", b"1")
    repo.switch("main")
    with pytest.raises(UsageError) as e:
        repo.deploy("dev", "forecast@0.1.0")
    assert "inputs/horizon" in str(e.value)
    assert repo.deploy("dev", "forecast@0.1.0", force=True)["version"] == "0.1.0"
    assert repo.deploy("main", "forecast@0.2.0")["workspace"] == "main"  # current: a checkout
    assert files(repo) == expected(V2)


def test_a_refused_checkout_leaves_no_pending_sync_behind(repo):
    repo.checkout("forecast@0.1.0")
    out = repo.root / "outputs/f/o"
    out.parent.mkdir(parents=True)
    out.write_bytes(b"a file the next command must not touch")
    with repo.workspaces.lock("main").acquire("set", shared=True):  # a concurrent `e3 set`
        with pytest.raises(LockBusy):
            repo.checkout("forecast@0.2.0")
    assert repo.r.index.get_meta("wc_target") is None
    assert Repo.open(str(repo.root)).status()["version"] == "0.1.0"
    assert files(repo) == expected(V1) and out.exists()


# -- the gc lock: the facade's object-holding methods and gc ----------------------------------
def _hold_gc_lock(root, shared, ready, release):
    from e3logic.repo.repository import Repository

    r = Repository(root)
    with (r.object_guard() if shared else r.gc_guard()):
        ready.set()
        release.wait(30)


@pytest.fixture
def gc_lock_holder(repo):
    """Start a child process holding .e3/gc.lock (shared or exclusive) until released."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    started = []

    def start(shared):
        ready, release = ctx.Event(), ctx.Event()
        p = ctx.Process(target=_hold_gc_lock, args=(repo.root, shared, ready, release))
        p.start()
        assert ready.wait(30)
        p.release = release
        started.append(p)
        return p

    yield start
    for p in started:
        p.release.set()
        p.join(10)
        if p.is_alive():
            p.kill()


def _wait_for_line(capsys, text, worker):
    seen = ""
    for _ in range(3000):
        seen += capsys.readouterr().err
        if text in seen:
            return seen
        assert worker.is_alive(), seen
        time.sleep(0.01)
    pytest.fail(f"never said {text!r}: {seen!r}")


def test_a_set_waits_for_a_running_gc_saying_so_and_changes_nothing_meanwhile(
        repo, gc_lock_holder, capsys):
    import threading

    repo.checkout("forecast@0.1.0")
    before = repo.workspaces.root("main")
    gc_ = gc_lock_holder(shared=False)
    done = []
    t = threading.Thread(target=lambda: done.append(repo.set("inputs/horizon", b"24")))
    t.start()
    said = _wait_for_line(capsys, "e3: waiting for gc to finish", t)
    assert f"pid {gc_.pid}: " in said
    assert repo.workspaces.root("main") == before and not done
    gc_.release.set()
    t.join(30)
    assert done and repo.get("inputs/horizon")[1] == b"24"


def test_gc_waits_for_a_command_holding_objects_and_names_it_on_stderr(
        repo, gc_lock_holder, capsys):
    import threading

    h = repo.r.objects.write(b"orphan")
    holder = gc_lock_holder(shared=True)
    res = []
    t = threading.Thread(target=lambda: res.append(repo.gc(min_age=0)))
    t.start()
    said = _wait_for_line(capsys, "gc: waiting for 1 running command to finish", t)
    assert f"(pid {holder.pid}: " in said
    assert repo.r.objects.exists(h) and not res  # nothing swept while it waits
    holder.release.set()
    t.join(30)
    assert res[0]["deleted"] == 1 and not repo.r.objects.exists(h)


def test_gc_inside_a_command_holding_objects_is_refused_in_one_line(repo):
    from e3logic.core.errors import ConflictError

    with repo.r.object_guard():
        with pytest.raises(ConflictError) as e:
            repo.gc(min_age=0)
    assert "\n" not in str(e.value)
    assert repo.gc(min_age=0)["deleted"] >= 0  # and fine on its own


def test_checkout_set_reset_and_deploy_hold_the_gc_lock_while_they_move_a_root(repo):
    from e3logic.repo.locks import held

    seen = []

    class Recording(Repo):
        def _on_root_changed(self, ws):  # the facade's hook, called after each root move
            seen.append(held(self.r.dir / "gc.lock"))

    r = Recording(repo.r)
    r.checkout("forecast@0.1.0")
    r.set("inputs/horizon", b"24")
    r.reset()
    r.deploy("dev", "forecast@0.2.0")
    assert seen == ["shared"] * 4
    assert held(repo.r.dir / "gc.lock") is None


# -- status against the deployed version (issue 16, item 4) -------------------------------
def test_status_lists_an_edit_go_took_in_as_a_change_not_yet_in_a_version_as_diff_does(repo):
    repo.checkout("forecast@0.1.0")
    (repo.root / "inputs/horizon").write_bytes(b"24")
    assert repo.status()["modified"] == ["inputs/horizon"]  # unsaved: only in the file
    repo.intake()  # what `go` does first: the edit is now in the workspace root
    st = repo.status()
    assert (st["modified"], st["added"], st["deleted"]) == ([], [], [])
    assert [e["path"] for e in st["uncommitted"]] == ["inputs/horizon"]
    assert st["uncommitted"] == repo.diff()
    with pytest.raises(UsageError, match="inputs/horizon"):
        repo.checkout("forecast@0.2.0")
    repo.commit("patch", "horizon 24")
    st = repo.status()
    assert st["uncommitted"] == [] and st["modified"] == []


def test_status_version_changes_hold_every_dataset_outside_outputs_and_no_output(repo):
    repo.checkout("forecast@0.1.0")
    repo.set("outputs/clean/rows", b"rows")  # as a run stores an output
    repo.set("params/seed", b"7")  # a dataset outside the working copy's folders
    repo.set("inputs/added", b"a")
    (repo.root / "inputs/old_only").unlink()
    repo.intake()
    st = repo.status()
    assert [(e["path"], e["old"] is None, e["new"] is None) for e in st["uncommitted"]] == [
        ("inputs/added", True, False), ("inputs/old_only", False, True),
        ("params/seed", True, False)]
    assert st["uncommitted"] == [e for e in repo.diff() if not e["path"].startswith("outputs/")]
    assert st["outputs_edited"] == []


def test_status_lists_output_files_edited_or_deleted_by_hand(repo):
    repo.checkout("forecast@0.1.0")
    repo.set("outputs/clean/rows", b"rows")
    repo.set("outputs/fit/model", b"model")
    settle(repo)
    assert repo.status()["outputs_edited"] == []
    (repo.root / "outputs/clean/rows").write_bytes(b"by hand")
    (repo.root / "outputs/fit/model").unlink()
    (repo.root / "outputs/notes").write_bytes(b"not a dataset: go leaves it")
    st = repo.status()
    assert st["outputs_edited"] == ["outputs/clean/rows", "outputs/fit/model"]
    assert (st["modified"], st["added"], st["deleted"], st["uncommitted"]) == ([], [], [], [])
    assert repo.get("outputs/clean/rows")[1] == b"rows"  # status only reads


def test_set_stores_a_json_dataset_in_canonical_form_so_the_same_value_is_the_same_dataset(
        tmp_path):
    from e3logic.api import Repo
    from e3logic.repo.trees import blob_entry

    api = Repo.init(tmp_path / "p")
    h = api.r.objects.write(b"6")
    api.workspaces.update_root("main", lambda r: api.r.trees.set(r, "inputs/k",
                                                               blob_entry(h, 1, "json")))
    got = api.set("inputs/k", b"6\n")
    assert got["hash"] == h
    assert api.set("inputs/k", b'{ "b": 1,\n  "a": [1, 2] }')["hash"] == \
        api.r.objects.write(b'{"a":[1,2],"b":1}')
