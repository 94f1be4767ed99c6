"""Canonical encoding: JSON, sorted keys, no insignificant whitespace, UTF-8."""
from __future__ import annotations

import json
from typing import Any

from .hashing import hash_bytes


def dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def loads(data: bytes | str) -> Any:
    return json.loads(data)


def digest(value: Any) -> str:
    """Hash of the canonical encoding of `value`."""
    return hash_bytes(dumps(value))
