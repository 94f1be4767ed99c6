"""Named workspaces: a mutable pointer to a root tree plus the deployed package.

`.e3/workspaces/<ws>/state` is one ref `{"kind":"tree","hash":ROOT,"package":{name,version,hash}}`
so a deploy changes root and package in one atomic rename. The root changes only by
compare-and-swap under the short `root.lock`. `lock` is the permanent workspace lock: shared for
dataset writes, exclusive for deploy/remove.
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
from pathlib import Path
from typing import Callable

from ..core.errors import ConflictError, LockBusy, NotFound, UsageError
from .locks import FileLock
from .refs import read_ref, write_ref

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise UsageError(f"invalid workspace name '{name}': use letters, digits, _ . - "
                         f"(at most 64)")
    return name


class _Lock(FileLock):
    """A workspace lock that also works on a read-only repository: a lock file this process
    may not open for writing is flocked through a read-only descriptor (flock does not care),
    without recording the holder. Commands that write are refused before they get here."""

    def acquire(self, op: str, shared: bool = False, wait: float = 0.0) -> "FileLock":
        try:
            return super().acquire(op, shared, wait)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS) or not self.path.exists():
                raise
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockBusy(f"{self.what} is busy: held by another e3 command; wait for it "
                           f"to finish") from None
        self.fd, self.exclusive = fd, False  # nothing to clear on release
        return self


class Workspaces:
    def __init__(self, repo):
        self.repo = repo
        self.dir: Path = repo.workspaces_dir

    # -- state --------------------------------------------------------------------------
    def names(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(p.name for p in self.dir.iterdir() if (p / "state").exists())

    def exists(self, ws: str) -> bool:
        return (self.dir / ws / "state").exists()

    def require(self, ws: str) -> str:
        if not self.exists(ws):
            raise NotFound("workspace", ws, self.names(),
                           hint="create it with 'e3 workspace create NAME' or 'e3 checkout PKG'")
        return ws

    def state(self, ws: str) -> dict:
        ref = read_ref(self.dir / self.require(ws) / "state")
        return ref

    def root(self, ws: str) -> str:
        return self.state(ws)["hash"]

    def package(self, ws: str) -> dict | None:
        return self.state(ws).get("package")

    def lock(self, ws: str) -> FileLock:
        return _Lock(self.dir / ws / "lock", f"workspace '{ws}'")

    def run_lock(self, ws: str) -> FileLock:
        """Held by `e3 go` for the whole run; deploy/remove/checkout take it to refuse a run."""
        return _Lock(self.dir / ws / "run.lock", f"workspace '{ws}' (a run: e3 go)")

    # -- changes ------------------------------------------------------------------------
    def create(self, ws: str, exist_ok: bool = False) -> None:
        check_name(ws)
        if self.exists(ws):
            if exist_ok:
                return
            raise UsageError(f"workspace '{ws}' already exists; pick another name or "
                             f"'e3 workspace switch {ws}'")
        d = self.dir / ws
        d.mkdir(parents=True, exist_ok=True)
        write_ref(d / "state", "tree", self.repo.trees.empty, package=None)

    def _write_state(self, ws: str, root: str, package: dict | None) -> None:
        write_ref(self.dir / ws / "state", "tree", root, package=package)

    def cas_root(self, ws: str, expected: str, new: str) -> None:
        """Set the root to `new` only if it is still `expected`."""
        with FileLock(self.dir / ws / "root.lock", f"workspace '{ws}' root").acquire(
                "cas", wait=30):
            st = self.state(ws)
            if st["hash"] != expected:
                raise ConflictError(f"workspace '{ws}' changed while writing; retry")
            if new != expected:
                self._write_state(ws, new, st.get("package"))

    def update_root(self, ws: str, change: Callable[[str], str], attempts: int = 50) -> str:
        """Apply `change(old_root) -> new_root` by compare-and-swap, retrying on races."""
        for _ in range(attempts):
            old = self.root(ws)
            new = change(old)
            try:
                self.cas_root(ws, old, new)
                return new
            except ConflictError:
                continue
        raise ConflictError(f"workspace '{ws}' kept changing; retry the command")

    def deploy(self, ws: str, name: str, version: str, pkg_hash: str, root: str) -> None:
        """Point `ws` at a package version and its datasets root, atomically."""
        self.create(ws, exist_ok=True)
        with self.run_lock(ws).acquire(f"deploy {name}@{version}"), \
                self.lock(ws).acquire(f"deploy {name}@{version}"):
            with FileLock(self.dir / ws / "root.lock", f"workspace '{ws}' root").acquire(
                    "deploy", wait=30):
                self._write_state(ws, root, {"name": name, "version": version, "hash": pkg_hash})

    def set_package(self, ws: str, name: str, version: str, pkg_hash: str) -> None:
        with FileLock(self.dir / ws / "root.lock", f"workspace '{ws}' root").acquire(
                "commit", wait=30):
            st = self.state(ws)
            self._write_state(ws, st["hash"], {"name": name, "version": version, "hash": pkg_hash})

    def remove(self, ws: str) -> None:
        self.require(ws)
        if ws == self.repo.head:
            others = [n for n in self.names() if n != ws]
            raise UsageError(f"workspace '{ws}' is the current one; switch first "
                             f"(e.g. 'e3 workspace switch {others[0] if others else 'NAME'}')")
        with self.run_lock(ws).acquire("remove"), self.lock(ws).acquire("remove"):
            # the state ref goes first (atomic: the workspace is gone), the rest after
            (self.dir / ws / "state").unlink()
            for p in (self.dir / ws).iterdir():
                if not p.name.endswith("lock"):  # lock files are never deleted
                    if p.is_dir():
                        shutil.rmtree(p)
                    else:
                        p.unlink()

    def list(self) -> list[dict]:
        head = self.repo.head
        out = []
        for n in self.names():
            st = self.state(n)
            pkg = st.get("package") or {}
            out.append({"name": n, "package": pkg.get("name"), "version": pkg.get("version"),
                        "root": st["hash"], "current": n == head})
        return out
