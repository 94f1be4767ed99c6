"""Atomic file replacement: temp file in the same directory, fsync, rename."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

FSYNC = os.environ.get("E3_FSYNC", "1") != "0"


def write_atomic(path: Path, data: bytes, fsync: bool = FSYNC, mode: int = 0o644) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # mkstemp makes 0600; refs and settings are plain files
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
