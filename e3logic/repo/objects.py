"""Content-addressed object store: `objects/ab/cdef…`, named by BLAKE3-256 of the bytes.

Writes go to `objects/tmp/` (never mistaken for an object), are fsynced, then renamed into
place; writing existing bytes is a no-op, and concurrent writers of the same bytes both succeed.
A temp file is flock'ed by its writer until it is renamed, so gc can tell "still being written"
from "left behind by a killed writer" whatever its age.
"""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from ..core.errors import IntegrityError, NotFound
from ..core.hashing import hash_bytes, hash_file, is_hash
from .atomic import FSYNC, remove_file

TMP = "tmp"
LEFTOVER_AGE = 10.0
"""A writer removes unlocked temp files older than this (seconds) when it starts; gc does
so at its own min-age. The margin covers the instant between a temp file's creation and
its writer's lock."""


class ObjectStore:
    def __init__(self, root: Path, fsync: bool = FSYNC):
        self.root = Path(root)
        self._sroot = str(self.root)
        self.tmp = self.root / TMP
        self.fsync = fsync
        # hash -> file: objects of an open `Batch`, readable by this process before they are
        # installed (a run's next task reads its input from the staged file)
        self.pending: dict[str, str] = {}
        self._seq = 0
        self._swept = False

    def path(self, h: str) -> Path:
        if self.pending:
            p = self.pending.get(h)
            if p is not None:
                return Path(p)
        return self.root / h[:2] / h[2:]

    def _spath(self, h: str) -> str:
        """The same path as a string: the hot read path skips pathlib."""
        if self.pending:
            p = self.pending.get(h)
            if p is not None:
                return p
        return f"{self._sroot}/{h[:2]}/{h[2:]}"

    path_str = _spath

    def installed(self, h: str) -> Path:
        """Where object `h` lives once installed (whether or not it is pending)."""
        return self.root / h[:2] / h[2:]

    def _dest(self, h: str) -> str:
        return f"{self._sroot}/{h[:2]}/{h[2:]}"

    def batch(self) -> "Batch":
        return Batch(self)

    def exists(self, h: str) -> bool:
        return is_hash(h) and os.path.isfile(self._spath(h))

    def _tempfile(self, prefix: str = "w-"):
        """(fd, path) of a new temp file in `tmp/`, exclusively flock'ed through `fd`: keep the
        fd open until the file is renamed away, and gc will not delete it."""
        self._sweep_once()
        while True:
            self.tmp.mkdir(parents=True, exist_ok=True)
            fd, path = tempfile.mkstemp(dir=self.tmp, prefix=prefix, suffix=".part")
            if self._locked(fd, path):
                return fd, path

    temp_file = _tempfile

    @staticmethod
    def _locked(fd: int, path: str) -> bool:
        """Lock a new temp file or directory; False (fd closed) if a sweep took it between
        its creation and the lock."""
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return True
        except FileNotFoundError:
            pass
        os.close(fd)
        return False

    def _quick_tempfile(self) -> tuple[int, str]:
        """Like `_tempfile`, named by a counter instead of mkstemp's random retries."""
        self._sweep_once()
        while True:
            self._seq += 1
            path = f"{self._sroot}/{TMP}/q-{os.getpid()}-{self._seq}.part"
            try:
                # read-only from the start (the mode binds later opens, not this fd)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
            except FileExistsError:  # left by an earlier process with our pid
                continue
            except FileNotFoundError:  # gc removed tmp/
                self.tmp.mkdir(parents=True, exist_ok=True)
                continue
            if self._locked(fd, path):
                return fd, path

    quick_temp_file = _quick_tempfile

    def quick_temp_dir(self) -> tuple[int, str]:
        """(fd, path) of a new staging directory in `tmp/`, flock'ed through `fd` (a batch's
        one descriptor): files written inside it are safe from gc while `fd` is open."""
        self._sweep_once()
        while True:
            self._seq += 1
            path = f"{self._sroot}/{TMP}/b-{os.getpid()}-{self._seq}.d"
            try:
                os.mkdir(path, 0o755)
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileExistsError:  # left by an earlier process with our pid
                continue
            except FileNotFoundError:  # gc removed tmp/, or the new directory
                self.tmp.mkdir(parents=True, exist_ok=True)
                continue
            if self._locked(fd, path):
                return fd, path

    def _sweep_once(self) -> None:
        """The first writer of a process removes temp files left by killed writers."""
        if not self._swept:
            self._swept = True
            self.sweep_temp(LEFTOVER_AGE)

    def sweep_temp(self, min_age: float, now: float | None = None,
                   dry_run: bool = False) -> tuple[int, int]:
        """Remove every temp file or staging directory in `tmp/` that no writer holds
        (flock) and that is older than `min_age` seconds: (how many, bytes)."""
        import time

        now = time.time() if now is None else now
        count = nbytes = 0
        try:
            names = sorted(os.listdir(self.tmp))
        except (FileNotFoundError, NotADirectoryError):
            return 0, 0
        for name in names:
            t = f"{self.tmp}/{name}"
            try:
                fd = os.open(t, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:  # gone, or not ours to read
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # being written
                if os.path.isdir(t):
                    sizes = _tree_sizes(t)
                    if now - max(m for _, m in sizes) < min_age:
                        continue
                    size = sum(n for n, _ in sizes)
                    if not dry_run:
                        shutil.rmtree(t, ignore_errors=True)
                else:
                    st = os.fstat(fd)
                    if now - st.st_mtime < min_age:
                        continue
                    size = st.st_size
                    if not dry_run:
                        remove_file(t)
                count += 1
                nbytes += size
            except FileNotFoundError:
                continue
            finally:
                os.close(fd)
        return count, nbytes

    def _freshen(self, h: str) -> bool:
        """True if object `h` is installed; its mtime is bumped so that a concurrent gc, which
        spares objects younger than min-age, cannot delete an object a writer just relied on."""
        dest = self._dest(h)
        try:
            os.utime(dest)
            return True
        except FileNotFoundError:
            return False
        except OSError:  # e.g. a read-only store: existence is what matters
            return os.path.exists(dest)

    def _good(self, h: str) -> bool:
        """True if object `h` is installed with bytes that hash to its name (freshened, as
        `_freshen`). A writer holding good bytes for `h` asks this, not mere existence: a
        corrupt file is then quarantined and replaced by what it writes."""
        if not self._freshen(h):
            return False
        if self.intact(h):
            return True
        self.quarantine(h)
        return False

    def intact(self, h: str) -> bool:
        """Do the installed bytes of `h` hash to its name? (False if it is absent.)"""
        try:
            return hash_file(self._dest(h)) == h
        except (FileNotFoundError, NotADirectoryError):
            return False

    def quarantine(self, h: str) -> str | None:
        """Move the installed file of `h` (corrupt) to `.e3/quarantine/`, never deleting it;
        returns where it went (None if it was gone already)."""
        qdir = self.root.parent / "quarantine"
        qdir.mkdir(exist_ok=True)
        for n in range(1000):
            dest = f"{qdir}/{h}" + (f".{n}" if n else "")
            if os.path.lexists(dest):
                continue
            try:
                os.link(self._dest(h), dest)
            except FileExistsError:
                continue
            except FileNotFoundError:
                return None
            remove_file(self._dest(h))
            return dest
        raise IntegrityError(f"object {h[:12]} is corrupt and .e3/quarantine is full; "
                             f"clear it, then run 'e3 fsck --repair'")

    def _install(self, tmp: str, h: str, keep: bool = False) -> None:
        """Rename `tmp` into place (`keep`: hard-link it, leaving `tmp` readable where it is)."""
        dest = self.installed(h)
        if self._good(h):
            if not keep:
                os.unlink(tmp)
            return
        os.chmod(tmp, 0o444)
        for attempt in range(10):
            _ensure_dir(str(dest.parent))
            try:
                if keep:
                    try:
                        os.link(tmp, dest)
                    except FileExistsError:  # a concurrent writer of the same bytes
                        pass
                else:
                    os.replace(tmp, dest)  # same bytes either way: last rename wins harmlessly
                return
            except FileNotFoundError:
                # gc removed the (empty) fan-out directory between mkdir and rename
                if attempt == 9 or not os.path.exists(tmp):
                    raise
            except OSError as e:  # no hard links here: install a copy
                if not keep or e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK,
                                               errno.EOPNOTSUPP):
                    raise
                self.write_file(tmp)
                return

    def write(self, data: bytes) -> str:
        h = hash_bytes(data)
        if self._good(h):
            return h
        fd, tmp = self._tempfile()
        try:
            with os.fdopen(fd, "wb") as f:  # the lock lives as long as the fd: until installed
                f.write(data)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
                self._install(tmp, h)
        except BaseException:
            remove_file(tmp)
            raise
        return h

    def write_file(self, src: Path | str) -> str:
        """Store a file's bytes without loading them in memory: copy (kernel-side), hash the
        copy, rename it into place."""
        fd, tmp = self._tempfile()
        try:
            with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                copy_fd(inp.fileno(), out.fileno())
                h = hash_file(tmp)
                if self.fsync and not self._good(h):
                    os.fsync(out.fileno())
                self._install(tmp, h)
        except BaseException:
            remove_file(tmp)
            raise
        return h

    def adopt(self, src: Path | str) -> str:
        """Move a finished file (e.g. a task's output in `tmp/`) into the store; returns its hash."""
        h = hash_file(src)
        if self.fsync:
            with open(src, "rb") as f:
                os.fsync(f.fileno())
        self._install(str(src), h)
        return h

    def read(self, h: str) -> bytes:
        try:
            with open(self._spath(h), "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound("object", h, hint="run 'e3 fsck' to check the store") from None

    def open(self, h: str):
        try:
            return open(self.path(h), "rb")
        except FileNotFoundError:
            raise NotFound("object", h, hint="run 'e3 fsck' to check the store") from None

    def open_fd(self, h: str) -> int:
        """A read-only descriptor of object `h` (the caller closes it)."""
        try:
            return os.open(self._spath(h), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound("object", h, hint="run 'e3 fsck' to check the store") from None

    def size(self, h: str) -> int:
        return os.stat(self._spath(h)).st_size

    def copy_to(self, h: str, dest: Path) -> None:
        shutil.copyfile(self.path(h), dest)

    def verify(self, h: str) -> bool:
        return hash_file(self.path(h)) == h

    def check(self, h: str, data: bytes) -> None:
        if hash_bytes(data) != h:
            raise IntegrityError(f"object {h[:12]} does not match its hash")

    def __iter__(self) -> Iterator[str]:
        """Every stored object's hash, sorted."""
        if not self.root.is_dir():
            return
        for d in sorted(os.listdir(self.root)):
            if len(d) != 2:
                continue
            try:
                names = os.listdir(self.root / d)
            except (FileNotFoundError, NotADirectoryError):  # emptied and removed by gc
                continue
            for name in sorted(names):
                if is_hash(d + name):
                    yield d + name

    def temp_files(self) -> list[Path]:
        return sorted(self.tmp.iterdir()) if self.tmp.is_dir() else []


class Batch:
    """Objects made durable together (a group commit): their bytes are synced in one pass
    before any of them is installed, so an installed object never names unsynced bytes.

    Written objects wait in one staging directory `tmp/b-…/`, flock'ed through a single
    descriptor until the batch ends (gc leaves a locked directory alone); each file is closed
    as soon as it is written, so a batch of any size holds one descriptor.

    Until `commit()`, a batch's objects are readable by this process from where they were
    written (`ObjectStore.pending`). Adopted files are hard-linked into the store, so a task
    already given a staged file's path can still open it."""

    def __init__(self, store: ObjectStore):
        self.store = store
        self._items: list[tuple[str, str, bool]] = []  # (file, hash, written by this batch)
        self._hashes: set[str] = set()
        self._dir: str | None = None  # the staging directory, while the batch has written
        self._dir_fd: int | None = None
        self._seq = 0

    def __len__(self) -> int:
        return len(self._items)

    def _stage(self) -> str:
        if self._dir is None:
            self._dir_fd, self._dir = self.store.quick_temp_dir()
        self._seq += 1
        return f"{self._dir}/{self._seq}"

    def write(self, data: bytes) -> str:
        h = hash_bytes(data)
        if h in self._hashes or self.store._good(h):
            return h
        tmp = self._stage()
        # read-only from the start (the mode binds later opens, not this fd)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except BaseException:
            os.close(fd)
            remove_file(tmp)
            raise
        os.close(fd)
        self._add(tmp, h, True)
        return h

    def adopt(self, src: str, h: str | None = None) -> str:
        """Take a finished file (a task's staged output) into the batch; returns its hash.
        `h`: its hash when the writer computed it from the bytes it wrote (not re-read)."""
        if h is None:
            h = hash_file(src)
        if h not in self._hashes:
            self._add(str(src), h, False)
        return h

    def _add(self, path: str, h: str, written: bool) -> None:
        self._items.append((path, h, written))
        self._hashes.add(h)
        self.store.pending.setdefault(h, path)

    def commit(self) -> None:
        items, self._items = self._items, []
        self._hashes = set()
        if not items:
            self._release()
            return
        store = self.store
        try:
            if store.fsync:
                sync_files([p for p, _, _ in items])
            for path, h, written in items:
                self._install(path, h, not written)
                if store.pending.get(h) == path:
                    del store.pending[h]
        except BaseException:
            for path, h, _ in items:  # what was not installed stays unnamed
                if store.pending.get(h) == path:
                    del store.pending[h]
            raise
        finally:
            self._release()

    def _release(self) -> None:
        """Remove the staging directory (with any file never installed) and drop its lock."""
        if self._dir is None:
            return
        d, fd = self._dir, self._dir_fd
        self._dir = self._dir_fd = None
        self._seq = 0
        try:
            shutil.rmtree(d, ignore_errors=True)
        finally:
            os.close(fd)

    def _install(self, path: str, h: str, adopted: bool) -> None:
        """A temp file (read-only since its creation) is renamed into place; an adopted file is
        hard-linked, so whoever was given its staged name can still open it. Whether the
        object already exists is not asked first: the rename is harmless (same bytes), the link
        fails, and either way that is one system call."""
        store = self.store
        dest = store._dest(h)
        for attempt in range(10):
            try:
                if adopted:
                    os.chmod(path, 0o444)
                    os.link(path, dest)
                else:
                    os.replace(path, dest)
                return
            except FileExistsError:  # adopted bytes that were stored already
                if store._good(h):
                    return
                continue  # it was corrupt: quarantined, now link the good bytes
            except FileNotFoundError:  # a new fan-out directory (or one gc just removed)
                if attempt < 9 and os.path.exists(path):
                    _ensure_dir(os.path.dirname(dest))
                    continue
                raise
            except OSError:  # no hard links on this filesystem: the careful path
                store._install(path, h, keep=adopted)
                return

    def abort(self) -> None:
        """Forget the batch: written files are removed; adopted files are left to their owner."""
        items, self._items = self._items, []
        self._hashes = set()
        for path, h, _ in items:
            if self.store.pending.get(h) == path:
                del self.store.pending[h]
        self._release()


_SYNC_POOL = None

SYNCFS_MIN = 16
"""From this many files, one syncfs(2) per filesystem instead of an fsync each: it writes
back the filesystem's dirty data and metadata in one pass (10x faster at 1,000 small files
here). Used on Linux >= 5.8 only, where it reports a writeback error as fsync would."""

_syncfs = None  # libc's syncfs once looked up; False where there is none (or too old)


def _kernel_reports_syncfs_errors(release: str) -> bool:
    """Linux >= 5.8 (`os.uname().release`, e.g. '6.1.0-13-amd64')."""
    try:
        major, minor = (int(x) for x in release.split("-")[0].split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 8)


def _syncfs_fn():
    global _syncfs
    if _syncfs is None:
        _syncfs = False
        u = os.uname()
        if u.sysname == "Linux" and _kernel_reports_syncfs_errors(u.release):
            try:
                import ctypes

                fn = ctypes.CDLL(None, use_errno=True).syncfs
                fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
                _syncfs = fn
            except (OSError, AttributeError):
                pass
    return _syncfs or None


def _sync_filesystems(syncfs, paths: list[str], fds) -> None:
    """One syncfs per filesystem holding `paths` / `fds` (usually one)."""
    import ctypes

    seen: set[int] = set()
    for x in [*fds, *paths]:
        is_fd = isinstance(x, int)
        dev = (os.fstat(x) if is_fd else os.stat(x)).st_dev
        if dev in seen:
            continue
        seen.add(dev)
        fd = x if is_fd else os.open(x, os.O_RDONLY)
        try:
            if syncfs(fd) != 0:
                e = ctypes.get_errno()
                raise OSError(e, f"syncfs: {os.strerror(e)}", None if is_fd else x)
        finally:
            if not is_fd:
                os.close(fd)


def sync_files(paths: list[str], fds: list[int] = ()) -> None:
    """Make every file durable: many at once by syncfs, else an fsync each, several at once
    (the journal commits them together)."""
    if len(paths) + len(fds) >= SYNCFS_MIN:
        syncfs = _syncfs_fn()
        if syncfs is not None:
            _sync_filesystems(syncfs, paths, fds)
            return

    def sync_path(p):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    jobs = [(sync_path, p) for p in paths] + [(os.fsync, fd) for fd in fds]
    if len(jobs) <= 2:
        for fn, arg in jobs:
            fn(arg)
        return
    global _SYNC_POOL
    if _SYNC_POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _SYNC_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="e3-fsync")
    for f in [_SYNC_POOL.submit(fn, arg) for fn, arg in jobs]:
        f.result()


def copy_fd(src: int, dst: int) -> None:
    """Copy from the current offset of `src` to `dst` kernel-side (copy_file_range, else
    sendfile), falling back to a bounded read/write loop; never holds the data in memory."""
    for how in ("copy_file_range", "sendfile"):
        try:
            while True:
                n = (os.copy_file_range(src, dst, 1 << 30) if how == "copy_file_range"
                     else os.sendfile(dst, src, None, 1 << 30))
                if n == 0:
                    return
        except (AttributeError, OSError) as e:
            if isinstance(e, OSError) and e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL,
                                                           errno.EOPNOTSUPP, errno.EBADF):
                raise
    while True:
        block = os.read(src, 1 << 20)
        if not block:
            return
        os.write(dst, block)


def _tree_sizes(top: str) -> list[tuple[int, float]]:
    """(size, mtime) of a directory and of everything below it."""
    out = [(0, os.stat(top).st_mtime)]
    for dirpath, dirnames, filenames in os.walk(top):
        for n in dirnames + filenames:
            try:
                st = os.stat(os.path.join(dirpath, n))
            except FileNotFoundError:
                continue
            out.append((st.st_size if n in filenames else 0, st.st_mtime))
    return out


def _ensure_dir(d: str) -> None:
    """mkdir that tolerates gc removing an empty fan-out directory at the same moment (pathlib's
    `mkdir(exist_ok=True)` raises when the directory vanishes between its two checks); the
    caller's rename retries if it is gone again."""
    try:
        os.mkdir(d)
    except FileExistsError:
        pass
    except FileNotFoundError:  # the store itself is new
        try:
            os.makedirs(d)
        except FileExistsError:
            pass


class MemoryStore:
    """An in-memory object store with the same read/write interface (for building bundles)."""

    def __init__(self):
        self.objects: dict[str, bytes] = {}

    def write(self, data: bytes) -> str:
        h = hash_bytes(data)
        self.objects.setdefault(h, data)
        return h

    def read(self, h: str) -> bytes:
        try:
            return self.objects[h]
        except KeyError:
            raise NotFound("object", h) from None

    def exists(self, h: str) -> bool:
        return h in self.objects

    def __iter__(self):
        return iter(sorted(self.objects))
