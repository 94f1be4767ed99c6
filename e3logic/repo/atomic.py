"""Atomic file replacement: temp file in the same directory, fsync, rename."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

FSYNC = os.environ.get("E3_FSYNC", "1") != "0"

_UMASK: int | None = None


def umask() -> int:
    """The process's umask, read once (from /proc where it can be read without changing it)."""
    global _UMASK
    if _UMASK is None:
        try:
            with open("/proc/self/status", "rb") as f:
                for line in f:
                    if line.startswith(b"Umask:"):
                        _UMASK = int(line.split()[1], 8)
                        break
        except OSError:
            pass
        if _UMASK is None:  # no /proc: set and restore (before any thread writes files)
            _UMASK = os.umask(0o022)
            os.umask(_UMASK)
    return _UMASK


def file_mode(mode: int = 0o666) -> int:
    """`mode` as the umask lets a new file have it (what open(2) would give)."""
    return mode & ~umask()


def write_atomic(path: Path, data: bytes, fsync: bool = FSYNC, mode: int | None = None) -> None:
    """Replace `path` with `data` whole; `mode` defaults to 0o666 less the umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            # mkstemp makes 0600; refs and settings are plain files, as open(2) would make them
            os.fchmod(f.fileno(), file_mode() if mode is None else mode)
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def remove_file(path: str) -> None:
    """Unlink `path`; already gone is fine."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
