"""repo.workingcopy: files under inputs/ and outputs/ as a view of a root; the stat cache."""
import os
import time

import pytest

from e3logic.core.errors import UsageError
from e3logic.repo import workingcopy
from e3logic.repo.repository import Repository
from e3logic.repo.trees import blob_entry
from e3logic.repo.workingcopy import WorkingCopy


@pytest.fixture
def repo(tmp_path):
    return Repository.init(tmp_path)


@pytest.fixture
def wc(repo):
    return WorkingCopy(repo)


def root_of(repo, datasets: dict, fmt="raw"):
    changes = {p: blob_entry(repo.objects.write(b), len(b), fmt) for p, b in datasets.items()}
    return repo.trees.set_many(repo.trees.empty, changes)


@pytest.fixture
def hashes(monkeypatch):
    """Records every file the working copy hashes."""
    seen = []
    real = workingcopy.hash_file

    def counting(p):
        seen.append("inputs/" + str(p).split("/inputs/", 1)[1])
        return real(p)

    monkeypatch.setattr(workingcopy, "hash_file", counting)
    return seen


def age(path, seconds=10):
    """Make a file look older than the racy window (as files are, seconds after writing)."""
    t = time.time() - seconds
    os.utime(path, (t, t))


def settle(wc, root):
    """Age every file and refresh the stat cache, as a later command would see them."""
    for p in wc.files("inputs"):
        age(wc.root_dir / p)
    wc.scan(root)


def test_sync_writes_every_dataset_as_a_byte_identical_file(wc, repo, tmp_path):
    root = root_of(repo, {"inputs/a": b"alpha", "inputs/d/b": b"beta", "outputs/f/o": b"out",
                          "other/x": b"not in the working copy"})
    assert wc.sync(root) == {"written": 3, "removed": 0}
    assert (tmp_path / "inputs/a").read_bytes() == b"alpha"
    assert (tmp_path / "inputs/d/b").read_bytes() == b"beta"
    assert (tmp_path / "outputs/f/o").read_bytes() == b"out"
    assert not (tmp_path / "other").exists()
    assert wc.synced_root == root and repo.index.get_meta("wc_target") is None


def test_working_copy_files_are_writable_by_the_user(wc, repo, tmp_path):
    wc.sync(root_of(repo, {"inputs/a": b"x"}))
    (tmp_path / "inputs/a").write_bytes(b"edited")  # not a read-only object file


def test_a_resync_leaves_unchanged_files_untouched(wc, repo, tmp_path):
    r1 = root_of(repo, {"inputs/a": b"same", "inputs/b": b"old"})
    wc.sync(r1)
    settle(wc, r1)
    st_a = (tmp_path / "inputs/a").stat()
    r2 = root_of(repo, {"inputs/a": b"same", "inputs/b": b"new"})
    assert wc.sync(r2, r1)["written"] == 1
    st_a2 = (tmp_path / "inputs/a").stat()
    assert (st_a2.st_ino, st_a2.st_mtime_ns) == (st_a.st_ino, st_a.st_mtime_ns)
    assert (tmp_path / "inputs/b").read_bytes() == b"new"


def test_sync_removes_files_of_the_previous_root_but_keeps_untracked_ones(wc, repo, tmp_path):
    r1 = root_of(repo, {"inputs/keep": b"k", "inputs/gone/deep": b"g"})
    wc.sync(r1)
    (tmp_path / "inputs/mine.txt").write_bytes(b"user file")
    r2 = root_of(repo, {"inputs/keep": b"k"})
    assert wc.sync(r2, r1)["removed"] == 1
    assert not (tmp_path / "inputs/gone").exists()  # emptied folders go too
    assert (tmp_path / "inputs/mine.txt").read_bytes() == b"user file"


def test_sync_accepts_several_previous_roots(wc, repo, tmp_path):
    r1 = root_of(repo, {"inputs/a": b"a"})
    r2 = root_of(repo, {"inputs/b": b"b"})
    wc.sync(r1)
    wc.write_one("inputs/b", repo.objects.write(b"b"))
    wc.sync(repo.trees.empty, [r1, r2])
    assert wc.files("inputs") == {}


def test_status_of_a_fresh_checkout_is_clean(wc, repo):
    root = root_of(repo, {"inputs/a": b"1", "inputs/b/c": b"2"})
    wc.sync(root)
    assert not wc.scan(root)


def test_scan_finds_modified_added_and_deleted_files_sorted(wc, repo, tmp_path):
    root = root_of(repo, {"inputs/a": b"1", "inputs/b": b"2", "inputs/c": b"3"})
    wc.sync(root)
    (tmp_path / "inputs/c").write_bytes(b"changed")
    (tmp_path / "inputs/a").write_bytes(b"1 changed")
    (tmp_path / "inputs/b").unlink()
    (tmp_path / "inputs/new/z").parent.mkdir()
    (tmp_path / "inputs/new/z").write_bytes(b"new")
    ch = wc.scan(root)
    assert ch.to_json() == {"modified": ["inputs/a", "inputs/c"], "added": ["inputs/new/z"],
                            "deleted": ["inputs/b"]}
    assert ch.hashes["inputs/c"] == repo.objects.write(b"changed")


def test_touching_a_file_without_changing_it_reports_nothing(wc, repo, tmp_path):
    root = root_of(repo, {"inputs/a": b"content"})
    wc.sync(root)
    settle(wc, root)
    os.utime(tmp_path / "inputs/a")  # new mtime, same bytes
    assert not wc.scan(root)


def test_a_second_scan_rehashes_only_files_whose_stat_changed(wc, repo, tmp_path, hashes):
    root = root_of(repo, {f"inputs/d{i}": f"{i}".encode() for i in range(20)})
    wc.sync(root)
    settle(wc, root)
    hashes.clear()
    assert not wc.scan(root)
    assert hashes == []
    (tmp_path / "inputs/d7").write_bytes(b"seven")
    age(tmp_path / "inputs/d7")
    os.utime(tmp_path / "inputs/d3")
    ch = wc.scan(root)
    assert ch.modified == ["inputs/d7"]
    assert sorted(hashes) == ["inputs/d3", "inputs/d7"]


def test_a_file_changed_within_the_racy_window_is_not_trusted_from_the_cache(wc, repo, tmp_path, hashes):
    root = root_of(repo, {"inputs/a": b"aaaa"})
    wc.sync(root)
    hashes.clear()
    wc.scan(root)  # the file is brand new: hashed, not cached
    wc.scan(root)
    assert hashes == ["inputs/a", "inputs/a"]
    # an edit within the same mtime tick and size is still seen
    st = (tmp_path / "inputs/a").stat()
    (tmp_path / "inputs/a").write_bytes(b"bbbb")
    os.utime(tmp_path / "inputs/a", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert wc.scan(root).modified == ["inputs/a"]


def test_a_replaced_file_with_the_same_size_and_mtime_is_seen_through_its_inode(wc, repo, tmp_path):
    root = root_of(repo, {"inputs/a": b"aaaa"})
    wc.sync(root)
    settle(wc, root)
    st = (tmp_path / "inputs/a").stat()
    tmp = tmp_path / "inputs/.swap"
    tmp.write_bytes(b"bbbb")
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, tmp_path / "inputs/a")  # how editors save
    assert wc.scan(root).modified == ["inputs/a"]


def test_intake_stores_changed_files_and_returns_tree_changes(wc, repo, tmp_path):
    root = root_of(repo, {"inputs/a": b"1", "inputs/b": b"2"})
    wc.sync(root)
    (tmp_path / "inputs/a").write_bytes(b"new a")
    (tmp_path / "inputs/b").unlink()
    (tmp_path / "inputs/c").write_bytes(b"c")
    changes = wc.intake_changes(root, wc.scan(root))
    assert changes["inputs/b"] is None
    assert changes["inputs/a"] == blob_entry(repo.objects.write(b"new a"), 5, "raw")
    assert repo.objects.read(changes["inputs/c"]["hash"]) == b"c"
    new = repo.trees.set_many(root, changes)
    assert not wc.scan(new)


def test_intake_keeps_a_json_datasets_format_and_refuses_invalid_json(wc, repo, tmp_path):
    root = root_of(repo, {"inputs/cfg": b'{"a": 1}'}, fmt="json")
    wc.sync(root)
    (tmp_path / "inputs/cfg").write_bytes(b'{"a": 2}')
    assert wc.intake_changes(root, wc.scan(root))["inputs/cfg"]["format"] == "json"
    (tmp_path / "inputs/cfg").write_bytes(b'{"a": ')
    with pytest.raises(UsageError) as e:
        wc.intake_changes(root, wc.scan(root))
    assert "inputs/cfg" in str(e.value) and "e3 reset inputs/cfg" in str(e.value)


def test_a_json_input_holding_the_same_value_in_other_bytes_is_no_edit(wc, repo, tmp_path,
                                                                     hashes):
    root = root_of(repo, {"inputs/horizon": b"6", "inputs/cfg": b'{"a":[1,2],"b":null}'},
                   fmt="json")
    wc.sync(root)
    (tmp_path / "inputs/horizon").write_bytes(b"6\n")  # `echo 6 > inputs/horizon`
    (tmp_path / "inputs/cfg").write_bytes(b'{\n  "b": null,\n  "a": [1, 2]\n}\n')
    assert not wc.scan(root)
    assert (tmp_path / "inputs/horizon").read_bytes() == b"6\n"  # the file is left as written
    settle(wc, root)
    hashes.clear()
    assert not wc.scan(root) and hashes == []  # the stat cache remembers the equivalence


def test_a_raw_input_is_still_compared_by_bytes(wc, repo, tmp_path):
    root = root_of(repo, {"inputs/n": b"6"})
    wc.sync(root)
    (tmp_path / "inputs/n").write_bytes(b"6\n")
    assert wc.scan(root).modified == ["inputs/n"]


def test_a_changed_json_input_is_taken_in_as_its_canonical_encoding(wc, repo, tmp_path):
    from e3logic.core import canon

    root = root_of(repo, {"inputs/cfg": b'{"a":1}'}, fmt="json")
    wc.sync(root)
    (tmp_path / "inputs/cfg").write_bytes(b'{ "b": 2,\n  "a": 1 }\n')
    ch = wc.scan(root)
    assert ch.modified == ["inputs/cfg"]
    want = canon.dumps({"a": 1, "b": 2})
    assert ch.hashes["inputs/cfg"] == repo.objects.write(want)  # what intake will store
    changes = wc.intake_changes(root, ch)
    assert changes["inputs/cfg"] == blob_entry(repo.objects.write(want), len(want), "json")
    new = repo.trees.set_many(root, changes)
    assert not wc.scan(new)  # the file keeps its layout and is not an edit of the new root
    (tmp_path / "inputs/cfg").write_bytes(want)
    assert not wc.scan(new)


def test_a_json_dataset_stored_in_other_bytes_matches_a_file_of_the_same_value(wc, repo,
                                                                              tmp_path):
    root = root_of(repo, {"inputs/k": b"[1, 2]\n"}, fmt="json")  # e.g. a package's file
    wc.sync(root)
    (tmp_path / "inputs/k").write_bytes(b"[1,2]")
    assert not wc.scan(root)
    (tmp_path / "inputs/k").write_bytes(b"[2,1]")
    assert wc.scan(root).modified == ["inputs/k"]


def test_a_json_input_that_is_not_json_is_an_edit_and_intake_names_the_path_and_the_fixes(
        wc, repo, tmp_path):
    root = root_of(repo, {"inputs/k": b"2"}, fmt="json")
    wc.sync(root)
    for bad in (b"two\n", b"NaN", b"[" * 100_000):
        (tmp_path / "inputs/k").write_bytes(bad)
        ch = wc.scan(root)
        assert ch.modified == ["inputs/k"], bad
        with pytest.raises(UsageError) as e:
            wc.intake_changes(root, ch)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith("inputs/k is a JSON dataset but the file is "
                                                  "not valid JSON (")
        assert "'e3 reset inputs/k'" in msg and "'e3 set inputs/k inputs/k --format raw'" in msg


def test_a_directory_in_the_way_of_a_dataset_is_a_usage_error(wc, repo, tmp_path):
    (tmp_path / "inputs/a").mkdir(parents=True)
    with pytest.raises(UsageError):
        wc.sync(root_of(repo, {"inputs/a": b"x"}))


def test_an_interrupted_sync_is_completed_by_recover(wc, repo, tmp_path):
    r1 = root_of(repo, {f"inputs/d{i}": b"old" for i in range(10)})
    wc.sync(r1)
    r2 = root_of(repo, {f"inputs/d{i}": b"new" for i in range(5, 15)})
    wc.begin_sync(r2)
    # the killed command had written a few files
    for i in (5, 6):
        (tmp_path / f"inputs/d{i}").write_bytes(b"new")
    assert wc.recover(r2) is True
    assert wc.files("inputs").keys() == {f"inputs/d{i}" for i in range(5, 15)}
    assert all((tmp_path / f"inputs/d{i}").read_bytes() == b"new" for i in range(5, 15))
    assert not wc.scan(r2)
    assert wc.recover(r2) is False  # nothing pending any more


def test_files_ignores_symlinks_and_directories(wc, tmp_path):
    (tmp_path / "inputs/sub").mkdir(parents=True)
    (tmp_path / "inputs/sub/f").write_bytes(b"x")
    os.symlink(tmp_path / "inputs/sub/f", tmp_path / "inputs/link")
    assert list(wc.files("inputs")) == ["inputs/sub/f"]


def test_editor_swap_and_backup_files_are_not_taken_in_as_datasets(tmp_path):
    from e3logic.api import Repo

    api = Repo.init(tmp_path / "p")
    (api.root / "inputs").mkdir()
    (api.root / "inputs" / "sales").write_text("a\n")
    (api.root / "inputs" / ".sales.swp").write_text("swap")
    (api.root / "inputs" / "sales~").write_text("backup")
    ch = api.changes()
    assert ch.added == ["inputs/sales"]


def cached_paths(wc):
    return sorted(wc._cache())


def synced(wc, repo, root) -> list:
    """Write `root`'s files, age them and let the stat cache learn them; returns the items."""
    wc.sync(root)
    items = [(p, e["hash"]) for p, e in repo.trees.walk(root)]
    for p, _ in items:
        age(wc.root_dir / p)
    wc.ensure(items)
    return items


def test_the_stat_cache_of_a_folder_holds_only_the_rows_below_it(wc, repo, tmp_path):
    synced(wc, repo, root_of(repo, {"inputs/a": b"1", "inputs/d/b": b"2", "outputs/f/o": b"3"}))
    with wc.db.transaction() as c:  # neighbours of the ranges' bounds
        c.executemany("INSERT INTO wc_stat(path, size, mtime_ns, ino, hash) VALUES (?,0,0,0,'h')",
                      [("inputs",), ("inputs.x",), ("inputs0",), ("inputsz/a",)])
    assert sorted(wc._cache("inputs")) == ["inputs/a", "inputs/d/b"]
    assert sorted(wc._cache("outputs")) == ["outputs/f/o"]
    assert len(wc._cache()) == 7


def test_a_scan_of_inputs_forgets_deleted_inputs_and_keeps_the_rows_of_outputs(wc, repo, tmp_path):
    root = root_of(repo, {"inputs/a": b"1", "inputs/b": b"2", "outputs/f/o": b"3"})
    synced(wc, repo, root)
    (tmp_path / "inputs/b").unlink()
    assert wc.scan(root).deleted == ["inputs/b"]
    assert cached_paths(wc) == ["inputs/a", "outputs/f/o"]


@pytest.mark.parametrize("more", [0, 2100])  # a few files looked up; many: their folder scanned
def test_ensure_puts_back_missing_and_edited_files_and_leaves_matching_ones_untouched(
        wc, repo, tmp_path, more):
    root = root_of(repo, {"outputs/a/o": b"alpha", "outputs/b/o": b"beta", "outputs/c/o": b"c",
                          **{f"outputs/m{i:04d}/o": b"%d" % i for i in range(more)}})
    items = synced(wc, repo, root)
    assert cached_paths(wc)[:3] == ["outputs/a/o", "outputs/b/o", "outputs/c/o"]
    assert wc.ensure(items) == []
    before = (tmp_path / "outputs/c/o").stat()
    (tmp_path / "outputs/a/o").unlink()
    (tmp_path / "outputs/b/o").write_bytes(b"edited by hand")
    assert wc.ensure(items) == ["outputs/a/o", "outputs/b/o"]  # the paths it put back
    assert (tmp_path / "outputs/a/o").read_bytes() == b"alpha"
    assert (tmp_path / "outputs/b/o").read_bytes() == b"beta"
    assert (tmp_path / "outputs/c/o").stat().st_ino == before.st_ino


def test_ensure_puts_back_and_names_an_edited_output_even_after_a_scan_has_seen_the_edit(
        wc, repo, tmp_path):
    root = root_of(repo, {"outputs/a/o": b"alpha", "outputs/b/o": b"beta"})
    items = synced(wc, repo, root)
    (tmp_path / "outputs/b/o").write_bytes(b"edited by hand")
    age(tmp_path / "outputs/b/o")
    assert wc.scan(root, "outputs").modified == ["outputs/b/o"]  # `status` caches the edit
    assert wc.ensure(items) == ["outputs/b/o"]
    assert (tmp_path / "outputs/b/o").read_bytes() == b"beta"
    assert not wc.scan(root, "outputs") and wc.ensure(items) == []


def test_ensure_refuses_a_directory_in_the_way_of_an_output(wc, repo, tmp_path):
    root = root_of(repo, {"outputs/a/o": b"alpha"})
    (tmp_path / "outputs/a/o").mkdir(parents=True)
    with pytest.raises(UsageError, match="outputs/a/o: a directory is in the way"):
        wc.ensure([(p, e["hash"]) for p, e in repo.trees.walk(root)])
    assert repo.objects.temp_files() == []  # the copy made for it is gone


# -- names: refused names are skipped, nothing is written or removed outside ---------------
@pytest.fixture
def proj(tmp_path):
    """A repository in tmp_path/proj, with a victim file beside it."""
    (tmp_path / "victim.txt").write_text("precious\n")
    r = Repository.init(tmp_path / "proj")
    return r, WorkingCopy(r), tmp_path / "victim.txt"


def test_sync_never_writes_a_dataset_whose_path_climbs_out_of_the_working_copy(proj, capsys):
    repo, wc, victim = proj
    root = root_of(repo, {"inputs/a": b"a", "inputs/../../victim.txt": b"pwned"})
    wc.sync(root)
    assert victim.read_text() == "precious\n"
    assert (repo.root / "inputs" / "a").read_bytes() == b"a"
    err = capsys.readouterr().err
    assert "not writing 'inputs/../../victim.txt' in the working copy: no '..' segments" in err


def test_sync_never_removes_a_file_outside_named_by_a_previous_root(proj):
    repo, wc, victim = proj
    old = root_of(repo, {"inputs/a": b"a", "inputs/../../victim.txt": b"pwned"})
    wc.sync(root_of(repo, {"inputs/b": b"b"}), previous=old, force=True)
    assert victim.read_text() == "precious\n"


def test_ensure_skips_an_output_path_that_climbs_out(proj):
    repo, wc, victim = proj
    h = repo.objects.write(b"pwned")
    assert wc.ensure([("outputs/../../victim.txt", h), ("outputs/f/o", h)]) == ["outputs/f/o"]
    assert victim.read_text() == "precious\n"
    assert (repo.root / "outputs" / "f" / "o").read_bytes() == b"pwned"


@pytest.mark.parametrize("path", ["inputs/../../victim.txt", "/etc/x", "elsewhere/x",
                                  "inputs/a\x00b"])
def test_writing_one_dataset_at_a_refused_path_is_a_usage_error(proj, path):
    repo, wc, victim = proj
    with pytest.raises(UsageError, match="not writing"):
        wc.write_one(path, repo.objects.write(b"pwned"))
    assert victim.read_text() == "precious\n"


def test_an_undecodable_file_name_is_skipped_with_one_warning(wc, repo, tmp_path, capsys):
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "ok").write_bytes(b"1")
    with open(os.path.join(os.fsencode(tmp_path), b"inputs", b"bad\xffname"), "wb") as f:
        f.write(b"2")
    assert sorted(wc.files("inputs")) == ["inputs/ok"]
    ch = wc.scan(repo.trees.empty)
    assert ch.added == ["inputs/ok"]
    err = capsys.readouterr().err.splitlines()
    assert err == ["e3: warning: skipping file 'inputs/bad\\xffname' in the working copy: its "
                   "name is not a dataset name (not valid UTF-8); rename it to track it"]


def test_a_folder_with_a_refused_name_is_skipped_with_a_warning(wc, tmp_path, capsys):
    d = tmp_path / "inputs" / "a\tb"
    d.mkdir(parents=True)
    (d / "x").write_bytes(b"1")
    assert wc.files("inputs") == {}
    assert "skipping folder 'inputs/a\\tb'" in capsys.readouterr().err


def test_names_with_spaces_and_non_ascii_letters_are_datasets(wc, repo, tmp_path):
    root = root_of(repo, {"inputs/with space": b"1", "inputs/müller/straße": b"2"})
    wc.sync(root)
    assert sorted(wc.files("inputs")) == ["inputs/müller/straße", "inputs/with space"]
    assert not wc.scan(root)


def test_setting_a_path_below_a_dataset_is_refused_before_any_file_is_written(wc, repo, tmp_path):
    root = root_of(repo, {"inputs/sales": b"1"})
    wc.sync(root)
    (tmp_path / "inputs" / "sales").unlink()  # even with the file gone from disk
    with pytest.raises(UsageError, match="cannot set inputs/sales/sub: 'inputs/sales' is a "
                                         "dataset, not a folder"):
        wc.write_one("inputs/sales/sub", repo.objects.write(b"2"))
    assert not (tmp_path / "inputs" / "sales").exists()


def test_setting_a_path_that_is_a_folder_of_datasets_is_refused(wc, repo, tmp_path):
    wc.sync(root_of(repo, {"inputs/sales/sub": b"1"}))
    with pytest.raises(UsageError, match="cannot set inputs/sales: it is a folder of datasets"):
        wc.write_one("inputs/sales", repo.objects.write(b"2"))
    assert (tmp_path / "inputs" / "sales" / "sub").read_bytes() == b"1"


def test_an_untracked_file_in_the_way_of_a_folder_is_a_usage_error(wc, repo, tmp_path):
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "sales").write_bytes(b"mine")
    with pytest.raises(UsageError, match="'inputs/sales' is a file, not a folder"):
        wc.write_one("inputs/sales/sub", repo.objects.write(b"2"))
    assert (tmp_path / "inputs" / "sales").read_bytes() == b"mine"
