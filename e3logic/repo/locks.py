"""Permanent lock files with fcntl.flock. Never deleted; a dead holder's lock is free (the
kernel drops flocks with the process). An exclusive holder writes who it is into the file so a
refused caller can name it."""
from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

from ..core.errors import LockBusy


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
