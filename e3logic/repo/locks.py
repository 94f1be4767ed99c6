"""Permanent lock files with fcntl.flock. Never deleted; a dead holder's lock is free (the
kernel drops flocks with the process). An exclusive holder writes who it is into the file so a
refused caller can name it."""
from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import threading
import time
from pathlib import Path

from ..core.errors import ConflictError, LockBusy


def process_start(pid: int) -> str | None:
    """Process start time in clock ticks since boot (Linux), to tell a recycled pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
        return data[data.rindex(")") + 2:].split()[19]
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int, start: str | None) -> bool:
    if pid <= 0:
        return False
    cur = process_start(pid)
    if cur is None:
        return False
    return start is None or cur == start


class FileLock:
    def __init__(self, path: Path, what: str):
        self.path = Path(path)
        self.what = what  # e.g. "workspace 'main'"
        self.fd: int | None = None
        self.exclusive = False

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self, op: str, shared: bool = False, wait: float = 0.0) -> "FileLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        flag = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, flag)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    who = self._settled_holder(fd, flag, shared)
                    if who is None:  # the holder let go while we looked: it is ours now
                        break
                    os.close(fd)
                    raise LockBusy(f"{self.what} is busy: held by {who}; "
                                   f"wait for it to finish or stop it") from None
                time.sleep(0.02)
        self.fd = fd
        self.exclusive = not shared
        if not shared:
            info = {"pid": os.getpid(), "op": op, "proc_start": process_start(os.getpid()),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "command": " ".join(sys.argv[:6])}
            data = json.dumps(info).encode()
            os.pwrite(fd, data, 0)   # one write, then cut: a reader never sees an empty file
            os.ftruncate(fd, len(data))
        return self

    def _settled_holder(self, fd: int, flag: int, shared: bool, settle: float = 0.5) -> str | None:
        """Describe the holder for a refusal. A holder that has just taken the lock may not
        have written who it is yet (and one releasing leaves stale info): look again for a
        moment until a live holder is named, or the lock comes free (None)."""
        end = time.monotonic() + settle
        while True:
            who = self.describe_holder()
            if who != "another e3 command" or time.monotonic() >= end:
                return who
            time.sleep(0.01)
            try:
                fcntl.flock(fd, flag)
                return None
            except BlockingIOError:
                continue

    def describe_holder(self) -> str:
        """Who holds the lock, for a refusal message: the exclusive holder's pid and operation
        when it recorded them (and is still that process), else a generic description."""
        h = self.holder()
        pid = h.get("pid")
        if isinstance(pid, int) and alive(pid, h.get("proc_start")):
            return f"pid {pid} ({h.get('op')}, started {h.get('started')})"
        return "another e3 command"

    def release(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                if self.exclusive:
                    os.ftruncate(fd, 0)  # a refused caller seeing no info waits for the next
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


# -- the per-process guard lock (`Repository.object_guard`, `Repository.gc_guard`) ------------
class _Held:
    __slots__ = ("fd", "depth", "shared", "pid")

    def __init__(self, fd, shared):
        self.fd, self.depth, self.shared, self.pid = fd, 0, shared, os.getpid()


_held: dict[str, _Held] = {}  # lock path -> this process's hold on it
_held_mutex = threading.Lock()


class ProcessLock:
    """A reentrant, per-process flock on a permanent lock file: entering it again in the same
    process (any thread) only counts; the first entry takes the lock, the last exit drops it.
    It waits (no timeout) for a conflicting holder, calling `on_wait(description)` once first.

    A shared holder may not enter it exclusive (an upgrade would deadlock against another
    shared holder doing the same): that raises ConflictError. Where the lock file cannot be
    opened for writing (a read-only `.e3`), it is a no-op: nothing there can be written or
    deleted anyway."""

    __slots__ = ("path", "key", "shared", "op", "on_wait", "what")

    def __init__(self, path: Path, shared: bool, op: str, on_wait=None, what: str = "lock"):
        self.path, self.key = path, str(path)
        self.shared, self.op, self.on_wait, self.what = shared, op, on_wait, what

    def __enter__(self):
        with _held_mutex:
            h = _held.get(self.key)
            if h is not None and h.pid != os.getpid():
                h = None  # inherited through fork: the parent's hold, not ours
                _held.pop(self.key)
            if h is None:
                fd = self._take()
                h = _held[self.key] = _Held(fd, self.shared)
            elif h.shared and not self.shared:
                raise ConflictError(f"{self.what}: this process already holds it shared and "
                                    f"cannot take it exclusive; run it as its own command")
            h.depth += 1
        return self

    def _take(self) -> int | None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                return None  # a read-only repository
            raise
        flag = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        try:
            try:
                fcntl.flock(fd, flag | fcntl.LOCK_NB)
            except BlockingIOError:
                if self.on_wait is not None:
                    self.on_wait(self._describe_others(fd))
                fcntl.flock(fd, flag)  # wait: released by the kernel if the holder dies
            if not self.shared:
                info = {"pid": os.getpid(), "op": self.op,
                        "proc_start": process_start(os.getpid()),
                        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                        "command": " ".join(sys.argv[:6])}
                data = json.dumps(info).encode()
                os.pwrite(fd, data, 0)
                os.ftruncate(fd, len(data))
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _describe_others(self, fd: int) -> list[str]:
        """Who holds the lock, each as 'pid N: command': the exclusive holder it recorded,
        else the holders the kernel lists (Linux /proc/locks)."""
        if self.shared:  # we wait for an exclusive holder, which says who it is
            try:
                h = json.loads(os.pread(fd, 4096, 0) or b"{}")
            except (OSError, ValueError):
                h = {}
            pid = h.get("pid") if isinstance(h, dict) else None
            if isinstance(pid, int) and alive(pid, h.get("proc_start")):
                return [f"pid {pid}: {command_of(pid, h.get('op'))}"]
        return [f"pid {p}: {command_of(p)}" for p in flock_holders(fd) if p != os.getpid()]

    def __exit__(self, *exc):
        with _held_mutex:
            h = _held.get(self.key)
            if h is None or h.pid != os.getpid():
                return
            h.depth -= 1
            if h.depth > 0:
                return
            del _held[self.key]
            if h.fd is not None:
                try:
                    if not h.shared:
                        os.ftruncate(h.fd, 0)
                    fcntl.flock(h.fd, fcntl.LOCK_UN)
                finally:
                    os.close(h.fd)


def held(path: Path) -> str | None:
    """'shared' or 'exclusive' when this process holds the ProcessLock on `path`, else None."""
    h = _held.get(str(path))
    if h is None or h.pid != os.getpid():
        return None
    return "shared" if h.shared else "exclusive"


def flock_holders(fd: int) -> list[int]:
    """Pids holding a flock on the file open at `fd` (granted locks only), from /proc/locks;
    [] where that is not available."""
    ino = os.fstat(fd).st_ino
    out = []
    try:
        with open("/proc/locks") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 6 or parts[1] != "FLOCK":  # "->" lines are waiters
                    continue
                try:
                    if int(parts[5].rsplit(":", 1)[1]) == ino:
                        out.append(int(parts[4]))
                except (ValueError, IndexError):
                    continue
    except OSError:
        return []
    return sorted(set(out))


def command_of(pid: int, default: str | None = None) -> str:
    """A short description of a process's command line ('e3 go -j 2'), else `default`, else
    'another process'."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return default or "another process"
    for i, a in enumerate(argv):
        if a == "e3logic" or os.path.basename(a) == "e3":
            return " ".join(["e3", *argv[i + 1:i + 5]])
    return " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(argv[:5])) \
        or default or "another process"
