"""The working copy: `inputs/` and `outputs/` in the project directory, a file view of the
current workspace's root.

A stat cache in index.db (`wc_stat`: size, mtime_ns, inode → content hash, like git's index)
lets `status` re-hash only files whose stat changed. `meta.wc_root` is the root the files match;
`meta.wc_target` is set before files are rewritten and cleared after, so a sync interrupted by a
kill is completed by the next command instead of being mistaken for user edits.

JSON inputs: a file under inputs/ whose dataset is JSON (its tree entry's format) is compared by
value, not by bytes — `echo 6 > inputs/horizon` (a trailing newline) on a dataset holding 6 is
no edit — and a changed one is taken in as its canonical encoding (`core.canon`: sorted keys, no
insignificant whitespace), so the same value always has the same hash and reruns nothing. The
file itself is left as the user wrote it (never rewritten under an open editor); the stat cache
then holds, for that file, the hash of the dataset it is equal to. A file that is not valid JSON
is an edit, and taking it in is refused with one line naming the path and the fixes.

Names: a file or folder whose name breaks the name rule (`core.paths`: undecodable bytes,
control characters, a backslash …) is not a dataset — it is skipped with one warning line on
stderr. Nothing is written or removed at a path that breaks the rule or lies outside inputs/
and outputs/ (a tree that got such a name in by hand): it is skipped with a warning.
"""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from stat import S_ISREG

from ..core import canon
from ..core.errors import E3Error, UsageError
from ..core.hashing import hash_bytes, hash_file as _hash_file
from ..core.paths import MAX_PATH_BYTES, is_prefix, path_problem, segment_problem, show
from .trees import blob_entry

WC_DIRS = ("inputs", "outputs")
RACY_NS = 50_000_000  # a file modified this recently is re-hashed next time (racy-git rule)
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}")  # surely valid: no full check
_PLAIN_PATH = re.compile(r"(?:inputs|outputs)(?:/[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254})+")
_warned: set[str] = set()


def warn(message: str) -> None:
    """One warning line on stderr, once per process."""
    if message not in _warned:
        _warned.add(message)
        try:
            sys.stderr.write(f"e3: warning: {message}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def name_problem(name: str) -> str | None:
    """Why a file or folder name in the working copy is not a dataset name, or None."""
    return None if _PLAIN.fullmatch(name) else segment_problem(name)


def wc_path_problem(path: str) -> str | None:
    """Why nothing may be written or removed at dataset path `path` of the working copy (it
    breaks the name rule, or lies outside inputs/ and outputs/), or None."""
    if len(path) <= MAX_PATH_BYTES and _PLAIN_PATH.fullmatch(path):
        return None
    why = path_problem(path)
    if why is None and path.split("/", 1)[0] not in WC_DIRS:
        why = "outside inputs/ and outputs/"
    return why


def _refuse(path: str, why: str) -> str:
    return (f"not writing {show(path)} in the working copy: {why}; the workspace tree holds a "
            f"name e3 refuses — reset or redeploy it")


def hash_file(path) -> str:
    """Hash a working-copy file: read, never mapped (the user may truncate it meanwhile)."""
    return _hash_file(path, mmap=False)


class Changes:
    """Working-copy files that differ from a root: dataset paths `modified`, `added`,
    `deleted` (sorted), and `hashes` {changed path: new content hash}."""

    def __init__(self, modified=None, added=None, deleted=None, hashes=None):
        self.modified: list[str] = [] if modified is None else modified
        self.added: list[str] = [] if added is None else added
        self.deleted: list[str] = [] if deleted is None else deleted
        self.hashes: dict[str, str] = {} if hashes is None else hashes

    def __eq__(self, other):
        if not isinstance(other, Changes):
            return NotImplemented
        return (self.modified, self.added, self.deleted, self.hashes) == \
            (other.modified, other.added, other.deleted, other.hashes)

    def __repr__(self) -> str:
        return (f"Changes(modified={self.modified!r}, added={self.added!r}, "
                f"deleted={self.deleted!r}, hashes={self.hashes!r})")

    def __bool__(self):
        return bool(self.modified or self.added or self.deleted)

    def to_json(self) -> dict:
        return {"modified": self.modified, "added": self.added, "deleted": self.deleted}


class WorkingCopy:
    def __init__(self, repo, db=None):
        """`db`: an index.db connection of its own (e.g. for a run's flush thread)."""
        self.repo = repo
        self.root_dir: Path = repo.root
        self.tmp_dir: Path = repo.dir / "objects" / "tmp"
        self._db = db

    @property
    def db(self):
        return self._db or self.repo.index

    @property
    def journal(self):
        """The rows of `db` (the stat cache and the synced roots live there)."""
        return self.db.journal

    # -- stat cache -----------------------------------------------------------------------
    def _cache(self, top: str | None = None) -> dict[str, tuple]:
        """path -> (size, mtime_ns, ino, hash): every entry, or those under the folder `top`
        (a range of the primary key: a scan of inputs/ reads no row of outputs/)."""
        return self.journal.stat_cache(top)

    def _remember(self, rows: list[tuple], drop: list[str] = ()) -> None:
        """rows: (path, stat, hash); entries too fresh to trust are not cached."""
        now = time.time_ns()
        fresh = [(p, st, h) for p, st, h in rows if now - st.st_mtime_ns > RACY_NS]
        racy = [p for p, st, h in rows if now - st.st_mtime_ns <= RACY_NS]
        self.journal.remember_stats(
            [(p, st.st_size, st.st_mtime_ns, st.st_ino, h) for p, st, h in fresh],
            [*drop, *racy])

    @property
    def synced_root(self) -> str | None:
        return self.journal.synced_root()

    # -- scanning -------------------------------------------------------------------------
    def files(self, top: str = "inputs") -> dict[str, os.stat_result]:
        """Every regular file under `top`, by slash path (iterative walk)."""
        out = {}
        stack = [top]
        base = str(self.root_dir) + os.sep
        while stack:
            rel = stack.pop()
            try:
                it = os.scandir(base + rel)
            except (FileNotFoundError, NotADirectoryError):
                continue
            with it:
                for e in it:
                    if _ignored(e.name):
                        continue
                    p = f"{rel}/{e.name}"
                    is_dir = e.is_dir(follow_symlinks=False)
                    if not is_dir and not e.is_file(follow_symlinks=False):
                        continue
                    why = name_problem(e.name)
                    if why is None and len(p) > MAX_PATH_BYTES // 4:
                        why = path_problem(p)
                    if why:
                        warn(f"skipping {'folder' if is_dir else 'file'} {show(p)} in the "
                             f"working copy: its name is not a dataset name ({why}); rename "
                             f"it to track it")
                    elif is_dir:
                        stack.append(p)
                    else:
                        out[p] = e.stat(follow_symlinks=False)
        return out

    def scan(self, root: str, top: str = "inputs") -> Changes:
        """Compare the files under `top` with the datasets of `root` under it. Under inputs/,
        a JSON dataset's file is compared by value (`json_hash`): `hashes` holds the hash of
        the canonical bytes `intake_changes` will store."""
        tracked, as_json = {}, set()
        for p, e in self._walk(root, top):
            tracked[p] = e["hash"]
            if e.get("format") == "json" and top == "inputs":
                as_json.add(p)
        disk = self.files(top)
        cache = self._cache(top)
        ch = Changes()
        fresh = []
        for p, st in disk.items():
            c = cache.get(p)
            hit = c and c[0] == st.st_size and c[1] == st.st_mtime_ns and c[2] == st.st_ino
            h = c[3] if hit else hash_file(self.root_dir / p)
            old = tracked.get(p)
            if old is not None and old != h and p in as_json:
                h = self.json_hash(p, old, h)
            if not hit or h != c[3]:
                fresh.append((p, st, h))
            if old is None:
                ch.added.append(p)
                ch.hashes[p] = h
            elif old != h:
                ch.modified.append(p)
                ch.hashes[p] = h
        ch.deleted = [p for p in tracked if p not in disk]
        gone = sorted(cache.keys() - disk.keys())
        if fresh or gone:
            self._remember(fresh, gone)
        ch.modified.sort(), ch.added.sort(), ch.deleted.sort()
        return ch

    def json_hash(self, path: str, old: str, raw: str) -> str:
        """The hash the file at JSON dataset `path` (bytes hashing to `raw`) stands for: `old`
        (the dataset's) when it holds the same value, else the hash of its canonical encoding
        (what `intake_changes` stores), else — not valid JSON — `raw`."""
        try:
            data = canon.dumps(canon.loads((self.root_dir / path).read_bytes()))
        except (ValueError, RecursionError, OSError):
            return raw
        h = hash_bytes(data)
        if h != old:  # the dataset's own bytes may be another encoding of the same value
            try:
                if canon.dumps(canon.loads(self.repo.objects.read(old))) == data:
                    return old
            except (ValueError, RecursionError, OSError, E3Error):
                pass
        return h

    def _walk(self, root: str, top: str):
        if self.repo.trees.find(root, top) is None:
            return []
        return self.repo.trees.walk(root, top)

    # -- taking edits in ---------------------------------------------------------------------
    def intake_changes(self, root: str, ch: Changes) -> dict[str, dict | None]:
        """Store changed files as objects; return the tree changes {path: entry or None}. A
        JSON dataset (the format of its entry in `root`) is stored as the canonical encoding
        of the file's value; a file that is not valid JSON is refused."""
        changes: dict[str, dict | None] = {}
        rows = []
        for p in ch.modified + ch.added:
            src = self.root_dir / p
            old = self.repo.trees.find(root, p)
            fmt = old.get("format", "raw") if old else "raw"
            st = src.stat()
            if fmt == "json":
                try:
                    data = canon.dumps(canon.loads(src.read_bytes()))
                except (ValueError, RecursionError) as e:
                    why = " ".join(str(e).split()) or type(e).__name__
                    raise UsageError(f"{p} is a JSON dataset but the file is not valid JSON "
                                     f"({why}); fix it, 'e3 reset {p}', or keep its bytes as "
                                     f"they are with 'e3 set {p} {p} --format raw'") from None
                h, size = self.repo.objects.write(data), len(data)
            else:
                h, size = self.repo.objects.write_file(src), st.st_size
            changes[p] = blob_entry(h, size, fmt)
            rows.append((p, st, h))
        for p in ch.deleted:
            changes[p] = None
        self._remember(rows)
        return changes

    # -- writing files -----------------------------------------------------------------------
    def _place(self, path: str, h: str, made: set | None = None) -> None:
        """Write dataset `path`'s file (a copy of object `h`) by rename. `made`: directories
        known to exist (a caller placing many files makes each only once). Refuses a path
        that breaks the name rule or lies outside inputs/ and outputs/."""
        why = wc_path_problem(path)
        if why:
            raise UsageError(_refuse(path, why))
        dest = f"{self.root_dir}{os.sep}{path}"
        parent = os.path.dirname(dest)
        if made is None or parent not in made:
            try:
                os.makedirs(parent, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise UsageError(f"cannot write dataset {show(path)}: "
                                 f"{show(self._file_in_the_way(path))} is a file, not a folder; "
                                 f"choose another path or move that file") from None
            if made is not None:
                made.add(parent)
        from .objects import copy_fd

        store = self.repo.objects
        fd, tmp = store.quick_temp_file()  # locked until renamed: gc leaves it alone
        try:
            src = store.open_fd(h)
            try:
                copy_fd(src, fd)
            finally:
                os.close(src)
            os.fchmod(fd, 0o644)
            try:
                os.replace(tmp, dest)  # whole old file or whole new one
            except IsADirectoryError:
                raise UsageError(f"cannot write dataset {path}: a directory is in the way; "
                                 f"move it") from None
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        finally:
            os.close(fd)

    def _file_in_the_way(self, path: str) -> str:
        parts = path.split("/")
        for i in range(1, len(parts)):
            a = "/".join(parts[:i])
            if not (self.root_dir / a).is_dir():
                return a
        return path

    def begin_sync(self, target: str) -> None:
        """Record that the files are about to be rewritten to `target`: from here until `sync`
        finishes, a killed command is completed by the next one (`recover`) instead of its
        half-written files being mistaken for user edits. Call it before changing the
        workspace root the files follow."""
        self.journal.begin_sync(target)

    def cancel_sync(self) -> None:
        """Withdraw `begin_sync` when the root did not move after all (e.g. a refused deploy):
        otherwise the next command would 'finish' a sync that never started."""
        self.journal.cancel_sync()

    def sync(self, target: str, previous: str | list | None = None, force: bool = False,
             under: str | None = None) -> dict:
        """Make the files under inputs/ and outputs/ (only those under the dataset path `under`,
        if given) match `target`; files unchanged on disk are untouched. Files tracked by
        `previous` (a root, or several) but absent from `target` are removed. Returns counts."""
        if previous is None:
            previous = self.synced_root
        self.begin_sync(target)

        def leaves(root):
            out = {}
            for top in WC_DIRS:
                if under and not (is_prefix(top, under) or is_prefix(under, top)):
                    continue
                out.update({p: e["hash"] for p, e in self._walk(root, top)
                            if not under or is_prefix(under, p)})
            return out

        want = _safe(leaves(target))
        old = {}
        for prev in dict.fromkeys([previous] if isinstance(previous, str) else previous or []):
            if prev:
                old.update(_safe(leaves(prev)))
        cache = self._cache()
        written, rows = 0, []
        for p, h in sorted(want.items()):
            dest = self.root_dir / p
            c = cache.get(p)
            if c and c[3] == h and not force:
                try:
                    st = dest.stat()
                    if (st.st_size, st.st_mtime_ns, st.st_ino) == c[:3]:
                        continue
                except FileNotFoundError:
                    pass
            elif not force and dest.is_file() and hash_file(dest) == h:
                rows.append((p, dest.stat(), h))
                continue
            self._place(p, h)
            rows.append((p, dest.stat(), h))
            written += 1
        removed = []
        for p in sorted(set(old) - set(want)):
            try:
                (self.root_dir / p).unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
            _prune_dirs(self.root_dir, p)
        self._remember(rows, removed)
        self.journal.end_sync(target)
        return {"written": written, "removed": len(removed)}

    def ensure(self, items: list[tuple[str, str]]) -> list[str]:
        """Make each (path, hash) file match, re-writing only those whose stat or content
        differ from the stat cache. Returns the paths written (each was missing or held other
        bytes), in the order of `items`: where `items` are the workspace root's own entries
        (`go` putting back the outputs of cached dataflows), the files edited or deleted by
        hand."""
        items = list(_safe(dict(items)).items()) if items else items
        if len(items) > 2048:  # many: one scan of their folder (faster per row than a lookup)
            tops = {p.split("/", 1)[0] for p, _ in items}
            cache = self._cache(next(iter(tops))) if len(tops) == 1 else self._cache()
        else:  # a few, maybe of a big folder: looked up
            cache = self.journal.stat_cache_of(p for p, _ in items)
        base = str(self.root_dir) + os.sep
        stat = os.stat
        rows, written, made = [], [], set()
        for p, h in items:
            c = cache.get(p)
            try:
                st = stat(base + p)
            except (FileNotFoundError, NotADirectoryError):
                st = None
            if st is not None and c and c[3] == h and \
                    (st.st_size, st.st_mtime_ns, st.st_ino) == c[:3]:
                continue
            if st is not None and S_ISREG(st.st_mode) and hash_file(base + p) == h:
                rows.append((p, st, h))
                continue
            self._place(p, h, made)
            rows.append((p, stat(base + p), h))
            written.append(p)
        if rows:
            self._remember(rows)
        return written

    def write_one(self, path: str, h: str) -> None:
        """Write one dataset's file (`e3 set`). Refuses, before writing, a path that the
        synced root holds as a folder of datasets or that lies below one of its datasets."""
        root = self.synced_root
        if root is not None:
            self._check_not_conflicting(root, path)
        self._place(path, h)
        self._remember([(path, (self.root_dir / path).stat(), h)])

    def _check_not_conflicting(self, root: str, path: str) -> None:
        trees = self.repo.trees
        entry = {"kind": "tree", "hash": root}
        parts = path.split("/")
        for i, seg in enumerate(parts):
            if entry["kind"] != "tree":
                a = "/".join(parts[:i])
                raise UsageError(f"cannot set {path}: '{a}' is a dataset, not a folder; choose "
                                 f"another path (or remove '{a}' first)")
            entry = trees.read(entry["hash"]).get(seg)
            if entry is None:
                return
        if entry["kind"] == "tree":
            raise UsageError(f"cannot set {path}: it is a folder of datasets; set a path below "
                             f"it (see 'e3 ls {path}')")

    def remove_one(self, path: str) -> None:
        if wc_path_problem(path):
            return
        try:
            (self.root_dir / path).unlink()
        except FileNotFoundError:
            pass
        _prune_dirs(self.root_dir, path)
        self._remember([], [path])

    def recover(self, current_root: str) -> bool:
        """Finish a sync interrupted by a kill. True if one was pending."""
        target = self.journal.sync_target()
        if target is None:
            return False
        self.sync(current_root, previous=self.synced_root, force=False)
        return True


def _safe(leaves: dict[str, str]) -> dict[str, str]:
    """`leaves` without the paths nothing may be written or removed at (each warned about)."""
    out = {}
    for p, h in leaves.items():
        why = wc_path_problem(p)
        if why:
            warn(_refuse(p, why))
        else:
            out[p] = h
    return out


def _ignored(name: str) -> bool:
    """Editor and system droppings are not datasets: hidden files (vim's .x.swp, our own
    temps) and backups ending in ~."""
    return name.startswith(".") or name.endswith("~")


def _prune_dirs(root: Path, path: str) -> None:
    parts = path.split("/")[:-1]
    while len(parts) > 1:
        d = root.joinpath(*parts)
        try:
            d.rmdir()
        except OSError:
            return
        parts.pop()
