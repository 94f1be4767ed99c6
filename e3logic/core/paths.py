"""Dataset and resource paths: slash-separated names; lease conflict semantics."""
from __future__ import annotations

import re

from .errors import UsageError

_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def check_path(path: str, what: str = "dataset path") -> str:
    """Validate a slash path ("inputs/sales"); returns it normalised (no trailing slash)."""
    p = path.strip().strip("/")
    if not p:
        raise UsageError(f"empty {what}: use a slash-separated name like 'inputs/sales'")
    for seg in p.split("/"):
        if seg in (".", "..") or not _SEGMENT.match(seg):
            raise UsageError(f"invalid {what} '{path}': segments are letters, digits, _ . - "
                             f"(no '..', no empty parts)")
    return p


def split(path: str) -> list[str]:
    return [s for s in path.split("/") if s]


def is_prefix(a: str, b: str) -> bool:
    """True when `a` is `b` or an ancestor of `b` (on segment boundaries)."""
    return a == b or b.startswith(a + "/")


def overlaps(a: str, b: str) -> bool:
    return is_prefix(a, b) or is_prefix(b, a)


def lease_conflict(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """(path, mode) leases: a write conflicts with any lease on the same path, an ancestor or a
    descendant; reads never conflict with reads."""
    (pa, ma), (pb, mb) = a, b
    if ma == "read" and mb == "read":
        return False
    return overlaps(pa, pb)


LEASE_MODES = ("read", "write")
