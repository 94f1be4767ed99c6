"""Refs: small JSON files naming an object and its kind, replaced atomically.

A ref is read only if it is a JSON object with a known kind and a hash of 64 lowercase hex
digits (and, for a workspace state, a well-formed package entry): a ref is a path into the
store, so anything else is refused with an error naming the file and `e3 fsck --repair`."""
from __future__ import annotations

import json
from pathlib import Path

from ..core import canon
from ..core.errors import DamagedMetadata
from ..core.hashing import is_hash
from .atomic import write_atomic

KINDS = ("tree", "blob", "package")


def write_ref(path: Path, kind: str, h: str, **extra) -> None:
    assert kind in KINDS, kind
    if not (isinstance(h, str) and is_hash(h)):
        raise ValueError(f"not an object hash: {h!r}")
    write_atomic(path, canon.dumps({"kind": kind, "hash": h, **extra}) + b"\n")


def ref_problem(data) -> str | None:
    """Why decoded ref `data` is not a valid ref, or None."""
    if not isinstance(data, dict):
        return "is not a JSON object"
    if data.get("kind") not in KINDS:
        return f"has an unknown kind {str(data.get('kind'))[:40]!r}"
    h = data.get("hash")
    if not (isinstance(h, str) and is_hash(h)):
        return "does not name an object (its hash is not 64 lowercase hex digits)"
    pkg = data.get("package")
    if pkg is not None and not (isinstance(pkg, dict) and isinstance(pkg.get("hash"), str)
                                and is_hash(pkg["hash"]) and isinstance(pkg.get("name"), str)
                                and isinstance(pkg.get("version"), str)):
        return "names a malformed package"
    return None


def read_ref(path: Path) -> dict | None:
    """The ref at `path`, None if there is none; DamagedMetadata if it is not a valid ref."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        raise DamagedMetadata(f"ref {path} is not valid JSON; run 'e3 fsck --repair'") from None
    problem = ref_problem(data)
    if problem:
        raise DamagedMetadata(f"ref {path} {problem}; run 'e3 fsck --repair'")
    return data
