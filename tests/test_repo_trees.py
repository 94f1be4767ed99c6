"""repo.trees: slash-path get/set/list/remove with structural sharing."""
import pytest

from e3logic.core import canon
from e3logic.core.errors import IntegrityError, NotFound, UsageError
from e3logic.repo.objects import ObjectStore
from e3logic.repo.trees import Trees, blob_entry


@pytest.fixture
def trees(tmp_path):
    return Trees(ObjectStore(tmp_path / "objects", fsync=False))


def blob(trees, data: bytes, fmt="raw"):
    return blob_entry(trees.store.write(data), len(data), fmt)


def test_the_empty_tree_is_a_canonical_object(trees):
    assert trees.store.read(trees.empty) == b'{"e3":"tree","entries":{}}'


def test_set_then_get_returns_the_entry_and_creates_intermediate_trees(trees):
    e = blob(trees, b"x")
    root = trees.set(trees.empty, "inputs/a/b", e)
    assert trees.get(root, "inputs/a/b") == e
    assert trees.get(root, "inputs/a")["kind"] == "tree"
    assert trees.get(root, "")["hash"] == root


def test_tree_objects_are_canonical_json_with_explicit_kinds(trees):
    root = trees.set(trees.empty, "inputs/x", blob(trees, b"1", "json"))
    obj = canon.loads(trees.store.read(root))
    assert obj == {"e3": "tree", "entries": {"inputs": {"kind": "tree", "hash": obj["entries"]["inputs"]["hash"]}}}
    leaf = canon.loads(trees.store.read(obj["entries"]["inputs"]["hash"]))["entries"]["x"]
    assert leaf == {"kind": "blob", "hash": trees.store.write(b"1"), "format": "json", "size": 1}


def test_the_same_datasets_give_the_same_root_whatever_the_order_of_setting(trees):
    a, b = blob(trees, b"a"), blob(trees, b"b")
    r1 = trees.set(trees.set(trees.empty, "x/a", a), "y/b", b)
    r2 = trees.set(trees.set(trees.empty, "y/b", b), "x/a", a)
    r3 = trees.set_many(trees.empty, {"y/b": b, "x/a": a})
    assert r1 == r2 == r3


def test_setting_one_leaf_rewrites_only_the_trees_on_its_path(trees):
    changes = {f"inputs/g{g}/s{s}/d{d}": blob(trees, f"{g}{s}{d}".encode())
               for g in range(4) for s in range(4) for d in range(4)}
    root = trees.set_many(trees.empty, changes)
    before = set(trees.store)
    new_root = trees.set(root, "inputs/g2/s1/d3", blob(trees, b"changed"))
    new_objects = set(trees.store) - before
    # the new blob + one new tree per level: root, inputs, g2, s1
    assert len(new_objects) == 5
    assert trees.store.write(b"changed") in new_objects
    old_g0 = trees.get(root, "inputs/g0")["hash"]
    assert trees.get(new_root, "inputs/g0")["hash"] == old_g0  # shared, not copied
    assert trees.get(new_root, "inputs/g2/s0")["hash"] == trees.get(root, "inputs/g2/s0")["hash"]


def test_set_many_rewrites_each_tree_on_the_changed_paths_once(trees):
    root = trees.set_many(trees.empty, {f"a/b/{i}": blob(trees, bytes([i])) for i in range(10)})
    before = set(trees.store)
    trees.set_many(root, {"a/b/1": blob(trees, b"n1"), "a/b/2": blob(trees, b"n2")})
    assert len(set(trees.store) - before) == 2 + 3  # two blobs, trees root, a, a/b


def test_removing_the_last_leaf_prunes_empty_folders(trees):
    root = trees.set_many(trees.empty, {"a/b/c": blob(trees, b"1"), "a/x": blob(trees, b"2")})
    r = trees.set(root, "a/b/c", None)
    assert trees.find(r, "a/b") is None and trees.find(r, "a/x") is not None
    assert trees.set(r, "a/x", None) == trees.empty


def test_removing_a_missing_path_changes_nothing(trees):
    root = trees.set(trees.empty, "a/b", blob(trees, b"1"))
    assert trees.set(root, "a/zz", None) == root
    assert trees.set(root, "q/r/s", None) == root


def test_walk_lists_every_leaf_sorted_with_its_entry(trees):
    paths = ["inputs/b", "inputs/a/z", "outputs/f/o", "inputs/a/y"]
    root = trees.set_many(trees.empty, {p: blob(trees, p.encode()) for p in paths})
    assert [p for p, _ in trees.walk(root)] == sorted(paths)
    assert [p for p, _ in trees.walk(root, "inputs/a")] == ["inputs/a/y", "inputs/a/z"]
    assert [p for p, _ in trees.walk(root, "inputs/b")] == ["inputs/b"]
    assert list(trees.walk(trees.empty)) == []


def test_walk_handles_deep_trees_without_recursion_limits(trees):
    deep = "/".join(f"d{i}" for i in range(1500))
    root = trees.set(trees.empty, deep, blob(trees, b"deep"))
    assert [p for p, _ in trees.walk(root)] == [deep]


def test_get_of_an_unknown_path_suggests_near_misses(trees):
    root = trees.set(trees.empty, "inputs/sales", blob(trees, b"1"))
    with pytest.raises(NotFound) as e:
        trees.get(root, "inputs/sale")
    assert "inputs/sales" in str(e.value)
    with pytest.raises(NotFound):
        trees.get(root, "inputs/sales/below")
    assert trees.find(root, "nope") is None


def test_a_dataset_cannot_be_a_folder_and_a_folder_cannot_be_replaced_by_a_dataset(trees):
    root = trees.set(trees.empty, "inputs/a/b", blob(trees, b"1"))
    with pytest.raises(UsageError):
        trees.set(root, "inputs/a/b/c", blob(trees, b"2"))
    with pytest.raises(UsageError):
        trees.set(root, "inputs/a", blob(trees, b"2"))
    with pytest.raises(UsageError):
        trees.set_many(root, {"x": blob(trees, b"1"), "x/y": blob(trees, b"2")})
    with pytest.raises(UsageError):
        trees.set_many(root, {"x/y": blob(trees, b"1"), "x": blob(trees, b"2")})
    with pytest.raises(UsageError):
        trees.set(root, "", blob(trees, b"1"))


def test_names_that_look_like_internal_markers_are_ordinary_datasets(trees):
    e = blob(trees, b"odd")
    root = trees.set_many(trees.empty, {"a/__leaf__": e, "a/__leaf__x": e})
    assert [p for p, _ in trees.walk(root)] == ["a/__leaf__", "a/__leaf__x"]
    root2 = trees.set(root, "a/__leaf__", None)
    assert [p for p, _ in trees.walk(root2)] == ["a/__leaf__x"]


def test_reachable_lists_every_tree_and_blob_once(trees):
    e = blob(trees, b"shared")
    root = trees.set_many(trees.empty, {"a/x": e, "b/y": e, "c": blob(trees, b"c")})
    got = list(trees.reachable(root))
    assert len(got) == len(set(got))
    assert set(got) == {root, trees.get(root, "a")["hash"], trees.get(root, "b")["hash"],
                        e["hash"], trees.get(root, "c")["hash"]}


def test_reading_a_blob_as_a_tree_is_an_integrity_error(trees):
    h = trees.store.write(b'{"e3":"package"}')
    with pytest.raises(IntegrityError):
        trees.read(h)
    with pytest.raises(IntegrityError):
        trees.read(trees.store.write(b"not json"))


def test_changed_names_exactly_the_leaves_that_differ_between_two_roots(tmp_path):
    from e3logic.repo.objects import ObjectStore
    from e3logic.repo.trees import Trees, blob_entry

    st = ObjectStore(tmp_path / "o", fsync=False)
    t = Trees(st)

    def b(x):
        return blob_entry(st.write(x), len(x))

    a = t.set_many(t.empty, {"inputs/x": b(b"1"), "inputs/y": b(b"2"), "outputs/f/o": b(b"3"),
                             "deep/a/b/c": b(b"4")})
    bb = t.set_many(a, {"inputs/x": b(b"one"), "outputs/g/o": b(b"5"), "deep/a/b/c": None})
    bb = t.set_many(bb, {"deep/a/b": b(b"now a dataset")})
    assert t.changed(a, a) == set()
    assert t.changed(a, bb) == {"inputs/x", "outputs/g/o", "deep/a/b/c", "deep/a/b"}
    assert t.changed(bb, a) == t.changed(a, bb)


def test_the_parsed_tree_cache_stays_within_its_budget_and_reads_dropped_trees_again(tmp_path):
    """A run rewrites its outputs tree at every flush (issue 20): the versions it no longer
    reads must not all stay in memory. Answers are the same with a tiny cache."""
    st = ObjectStore(tmp_path / "o", fsync=False)
    small, big = Trees(st, cache_entries=40), Trees(st)
    roots, root = [], small.empty
    for i in range(60):  # each version of outputs/ is one entry larger
        root = small.set_many(root, {f"outputs/d{i:02d}/out": blob_entry(st.write(b"%d" % i), 1)})
        roots.append(root)
        assert small._held <= 40 + (i + 1)  # the budget, plus the one tree kept last
    assert small._held == sum(len(v) for v in small._cache.values())
    assert len(small._cache) < 60
    for i, r in enumerate(roots):  # every version still answers, read back where dropped
        assert [p for p, _ in small.walk(r)] == [f"outputs/d{k:02d}/out" for k in range(i + 1)]
        assert list(small.walk(r)) == list(big.walk(r))



def test_a_tree_kept_by_another_thread_while_old_ones_are_dropped_waits_its_turn(tmp_path):
    """A run's flush writes trees in a worker thread while its loop reads them (issue 20:
    'dictionary changed size during iteration' in a 100,000-task run): another thread keeping
    a tree in the middle of a drop must not change the cache under it."""
    import threading

    st = ObjectStore(tmp_path / "o", fsync=False)
    t = Trees(st, cache_entries=8)
    other, fired = [], []

    class Interleaved(dict):
        def items(self):
            for i, kv in enumerate(dict.items(self)):
                if i == 1 and not fired:  # mid-drop: another thread writes a tree
                    fired.append(True)
                    other.append(threading.Thread(target=t.write, args=({"late": blob_entry(
                        st.write(b"late"), 4)},)))
                    other[0].start()
                    other[0].join(0.2)  # (it waits for the drop to finish)
                yield kv

    t._cache = Interleaved(t._cache)
    for k in range(6):
        t.write({f"k{k}": blob_entry(st.write(b"%d" % k), 1), "pad": blob_entry(st.write(b"p"), 1)})
    other[0].join()
    assert fired and t._held == sum(len(v) for v in t._cache.values()) <= 8 + 2
