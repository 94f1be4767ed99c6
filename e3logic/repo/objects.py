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
from .atomic import FSYNC

TMP = "tmp"


class ObjectStore:
    def __init__(self, root: Path, fsync: bool = FSYNC):
        self.root = Path(root)
        self._sroot = str(self.root)
        self.tmp = self.root / TMP
        self.fsync = fsync

    def path(self, h: str) -> Path:
        return self.root / h[:2] / h[2:]

    def _spath(self, h: str) -> str:
        """The same path as a string: the hot read path skips pathlib."""
        return f"{self._sroot}/{h[:2]}/{h[2:]}"

    def exists(self, h: str) -> bool:
        return is_hash(h) and os.path.isfile(self._spath(h))

    def _tempfile(self, prefix: str = "w-"):
        """(fd, path) of a new temp file in `tmp/`, exclusively flock'ed through `fd`: keep the
        fd open until the file is renamed away, and gc will not delete it."""
        while True:
            self.tmp.mkdir(parents=True, exist_ok=True)
            fd, path = tempfile.mkstemp(dir=self.tmp, prefix=prefix, suffix=".part")
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:  # a gc may have taken the file between its creation and our lock
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return fd, path
            except FileNotFoundError:
                pass
            os.close(fd)

    temp_file = _tempfile

    def _freshen(self, h: str) -> bool:
        """True if object `h` exists; its mtime is bumped so that a concurrent gc, which spares
        objects younger than min-age, cannot delete an object a writer just relied on."""
        try:
            os.utime(self.path(h))
            return True
        except FileNotFoundError:
            return False
        except OSError:  # e.g. a read-only store: existence is what matters
            return self.path(h).exists()

    def _install(self, tmp: str, h: str) -> None:
        dest = self.path(h)
        if self._freshen(h):
            os.unlink(tmp)
            return
        os.chmod(tmp, 0o444)
        for attempt in range(10):
            dest.parent.mkdir(exist_ok=True)
            try:
                os.replace(tmp, dest)  # same bytes either way: last rename wins harmlessly
                return
            except FileNotFoundError:
                # gc removed the (empty) fan-out directory between mkdir and rename
                if attempt == 9 or not os.path.exists(tmp):
                    raise

    def write(self, data: bytes) -> str:
        h = hash_bytes(data)
        if self._freshen(h):
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
            _unlink(tmp)
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
                if self.fsync and not self.path(h).exists():
                    os.fsync(out.fileno())
                self._install(tmp, h)
        except BaseException:
            _unlink(tmp)
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


def _unlink(p: str) -> None:
    try:
        os.unlink(p)
    except FileNotFoundError:
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
