"""Trees: structured objects mapping names to typed refs, with structural sharing.

A tree object is canonical JSON `{"e3": "tree", "entries": {name: entry}}`; an entry is
`{"kind": "tree", "hash": h}` or `{"kind": "blob", "hash": h, "format": "raw"|"json", "size": n}`.
Setting a leaf rewrites only the trees on its path.
"""
from __future__ import annotations

import threading
from typing import Iterator

from ..core import canon
from ..core.errors import IntegrityError, NotFound, UsageError
from ..core.paths import split
from .objects import ObjectStore

FORMATS = ("raw", "json")


def blob_entry(h: str, size: int, fmt: str = "raw") -> dict:
    assert fmt in FORMATS, fmt
    return {"kind": "blob", "hash": h, "format": fmt, "size": size}


class _Leaf:
    """A change at a leaf of `set_many`'s nested plan (a class, so no name can collide)."""

    __slots__ = ("entry",)

    def __init__(self, entry: dict | None):
        self.entry = entry


#: parsed tree entries a `Trees` keeps at most (about 50-400 bytes each). A run rewrites its
#: outputs tree at every flush: kept forever, every version of a 100,000-entry tree made
#: memory (1.2 GB) and full garbage collections grow with the run (issue 20).
CACHE_ENTRIES = 1 << 20


class Trees:
    """Tree operations over an object store; parsed trees are cached (objects are immutable),
    up to `cache_entries` entries in all: past it, the older half (in the order they were read
    or written) is dropped, and read again if asked for. Safe to share between threads (a
    run's flush writes trees in a worker thread while its loop reads them)."""

    def __init__(self, store: ObjectStore, cache_entries: int = CACHE_ENTRIES):
        self.store = store
        self._cache: dict[str, dict] = {}
        self._held = 0  # entries in _cache
        self._lock = threading.Lock()  # held while _cache changes (hits read it without)
        self.cache_entries = cache_entries
        self.empty = self.write({})

    def read(self, h: str) -> dict:
        t = self._cache.get(h)
        if t is None:
            try:
                obj = canon.loads(self.store.read(h))
            except ValueError:
                obj = None
            if not isinstance(obj, dict) or obj.get("e3") != "tree":
                raise IntegrityError(f"object {h[:12]} is not a tree")
            t = obj["entries"]
            self._keep(h, t)
        return t

    def write(self, entries: dict, store=None) -> str:
        """`store`: where to write instead (e.g. an object `Batch`)."""
        h = (store or self.store).write(canon.dumps({"e3": "tree", "entries": entries}))
        self._keep(h, entries)
        return h

    def _keep(self, h: str, entries: dict) -> None:
        with self._lock:
            old = self._cache.pop(h, None)
            if old is not None:
                self._held -= len(old)
            self._cache[h] = entries
            self._held += len(entries)
            if self._held > self.cache_entries:
                drop, excess = [], self._held - self.cache_entries // 2
                for k, v in self._cache.items():  # oldest first; never the one just kept
                    if excess <= 0 or k == h:
                        break
                    drop.append(k)
                    excess -= len(v)
                for k in drop:
                    self._held -= len(self._cache.pop(k))

    def get(self, root: str, path: str) -> dict:
        """The entry at `path` (a tree or a blob entry)."""
        entry = {"kind": "tree", "hash": root}
        for seg in split(path):
            if entry["kind"] != "tree":
                raise NotFound("dataset", path)
            entries = self.read(entry["hash"])
            if seg not in entries:
                raise NotFound("dataset", path, self._near(root, path))
            entry = entries[seg]
        return entry

    def find(self, root: str, path: str) -> dict | None:
        """The entry at `path`, or None. (Not `get` and its NotFound: a miss must not walk
        the whole root for "did you mean" suggestions — quadratic when a run looks up
        thousands of outputs a root does not hold yet, e.g. results pulled from a remote.)"""
        entry = {"kind": "tree", "hash": root}
        try:
            for seg in split(path):
                if entry["kind"] != "tree":
                    return None
                entry = self.read(entry["hash"]).get(seg)
                if entry is None:
                    return None
        except NotFound:  # a tree object that is gone
            return None
        return entry

    def _near(self, root: str, path: str) -> list[str]:
        try:
            return [p for p, _ in self.walk(root)]
        except Exception:  # suggestions are best-effort
            return []

    def set(self, root: str, path: str, entry: dict | None) -> str:
        return self.set_many(root, {path: entry})

    def set_many(self, root: str, changes: dict[str, dict | None], store=None) -> str:
        """Apply {path: entry or None (remove)} and return the new root; each tree on a changed
        path is rewritten once. Empty trees left by removals are pruned."""
        nested: dict = {}
        for path, entry in changes.items():
            segs = split(path)
            if not segs:
                raise UsageError("cannot set the root itself; name a dataset path")
            node = nested
            for s in segs[:-1]:
                node = node.setdefault(s, {})
                if isinstance(node, _Leaf):
                    raise UsageError(f"'{path}' is below a dataset, not a folder")
            if isinstance(node.get(segs[-1]), dict):
                raise UsageError(f"'{path}' is a folder of the other changes, not a dataset")
            node[segs[-1]] = _Leaf(entry)
        return self._apply(root, nested, "", store) or self.empty

    def _apply(self, root: str | None, nested: dict, where: str, store=None) -> str | None:
        """Rewrite the trees on the changed paths, bottom-up (iterative: any depth)."""

        class Frame:
            __slots__ = ("entries", "changes", "where", "names", "i", "pending")

            def __init__(fr, h, changes, where):
                fr.entries = dict(self.read(h)) if h else {}
                fr.changes, fr.where = changes, where
                fr.names, fr.i, fr.pending = sorted(changes), 0, None

        stack = [Frame(root, nested, where)]
        result: str | None = None
        while stack:
            f = stack[-1]
            if f.pending is not None:  # the rewritten child folder came back as `result`
                if result is None:
                    f.entries.pop(f.pending, None)
                else:
                    f.entries[f.pending] = {"kind": "tree", "hash": result}
                f.pending = None
            descended = False
            while f.i < len(f.names):
                name = f.names[f.i]
                f.i += 1
                sub = f.changes[name]
                old = f.entries.get(name)
                if isinstance(sub, _Leaf):
                    if sub.entry is None:
                        f.entries.pop(name, None)
                    else:
                        if old is not None and old["kind"] == "tree" and sub.entry["kind"] != "tree":
                            raise UsageError(f"'{f.where}{name}' is a folder of datasets; set a "
                                             f"path below it")
                        f.entries[name] = sub.entry
                    continue
                if old is not None and old["kind"] != "tree":
                    raise UsageError(f"'{f.where}{name}' is a dataset, not a folder")
                f.pending = name
                stack.append(Frame(old["hash"] if old else None, sub, f"{f.where}{name}/"))
                descended = True
                break
            if not descended:
                stack.pop()
                result = self.write(f.entries, store) if f.entries else None
        return result

    def walk(self, root: str, prefix: str = "") -> Iterator[tuple[str, dict]]:
        """(path, blob entry) for every leaf under `prefix`, sorted by path (iterative)."""
        start = self.get(root, prefix) if prefix else {"kind": "tree", "hash": root}
        base = prefix.strip("/")
        if start["kind"] != "tree":
            yield base, start
            return
        stack = [(base, start["hash"])]
        out = []
        while stack:
            where, h = stack.pop()
            for name, e in self.read(h).items():
                p = f"{where}/{name}" if where else name
                if e["kind"] == "tree":
                    stack.append((p, e["hash"]))
                else:
                    out.append((p, e))
        out.sort()
        yield from out

    def changed(self, a: str, b: str) -> set[str]:
        """Leaf paths whose entry differs between roots `a` and `b` (added, removed or
        changed); only subtrees whose hashes differ are read."""
        out: set[str] = set()
        stack = [("", a, b)]
        while stack:
            where, ha, hb = stack.pop()
            ea = self.read(ha) if ha else {}
            eb = self.read(hb) if hb else {}
            for name in ea.keys() | eb.keys():
                x, y = ea.get(name), eb.get(name)
                if x == y:
                    continue
                p = f"{where}{name}"
                xt = x is not None and x["kind"] == "tree"
                yt = y is not None and y["kind"] == "tree"
                if xt or yt:
                    stack.append((p + "/", x["hash"] if xt else None, y["hash"] if yt else None))
                if (x is not None and not xt) or (y is not None and not yt):
                    out.add(p)
        return out

    def reachable(self, root: str) -> Iterator[str]:
        """Every object hash reachable from tree `root` (trees and blobs)."""
        stack = [root]
        seen = set()
        while stack:
            h = stack.pop()
            if h in seen:
                continue
            seen.add(h)
            yield h
            for e in self.read(h).values():
                if e["kind"] == "tree":
                    stack.append(e["hash"])
                elif e["hash"] not in seen:
                    seen.add(e["hash"])
                    yield e["hash"]
