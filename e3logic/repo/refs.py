"""Refs: small JSON files naming an object and its kind, replaced atomically."""
from __future__ import annotations

import json
from pathlib import Path

from ..core import canon
from ..core.errors import IntegrityError
from .atomic import write_atomic

KINDS = ("tree", "blob", "package")


def write_ref(path: Path, kind: str, h: str, **extra) -> None:
    assert kind in KINDS, kind
    write_atomic(path, canon.dumps({"kind": kind, "hash": h, **extra}) + b"\n")


def read_ref(path: Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:
        raise IntegrityError(f"ref {path} is not valid JSON; run 'e3 fsck'") from None
    if not isinstance(data, dict) or data.get("kind") not in KINDS or "hash" not in data:
        raise IntegrityError(f"ref {path} is malformed; run 'e3 fsck'")
    return data
