"""Names: dataset and resource paths, identifiers (package, task, dataflow names); lease
conflict semantics.

The name rule (docs/packages.md) is applied everywhere a name enters: authoring, `e3 add` of a
bundle (every tree entry and every name in the package object), the working copy and the
dataset commands. A path is segments joined by '/'; a segment is printable Unicode (letters of
any script, digits, spaces inside, punctuation) with:

- no empty, '.' or '..' segment, no '/' inside a segment, no backslash;
- no control or other non-printable character (NUL, newline, tab, U+200B …);
- no leading '.' (hidden files are not datasets), no leading '-' (it reads as an option), no
  trailing '~' (editor backups are not datasets), no leading or trailing space;
- at most 255 UTF-8 bytes per segment and 1024 per path (what file systems allow).

Identifiers are stricter, ASCII: letters, digits, `_ . -`, not starting with `.` or `-`.
"""
from __future__ import annotations

import re

from .errors import UsageError

MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 1024

_IDENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def _char(c: str) -> str:
    return f"U+{ord(c):04X}"


def segment_problem(seg) -> str | None:
    """Why `seg` cannot be one segment of a name (a short phrase), or None when it can."""
    if not isinstance(seg, str):
        return f"a name must be a string, not {type(seg).__name__}"
    if seg == "":
        return "no empty segments"
    if seg in (".", ".."):
        return f"no '{seg}' segments"
    if "/" in seg:
        return "no '/' inside one name"
    if "\\" in seg:
        return "no backslashes"
    try:
        n = len(seg.encode("utf-8"))
    except UnicodeEncodeError:
        return "not valid UTF-8"
    bad = next((c for c in seg if not c.isprintable()), None)
    if bad is not None:
        return f"no control or non-printable characters ({_char(bad)})"
    if n > MAX_SEGMENT_BYTES:
        return f"a segment is {n} bytes, at most {MAX_SEGMENT_BYTES} are allowed"
    if seg[0] in ".-":
        return f"no segment starting with '{seg[0]}'"
    if seg.endswith("~"):
        return "no segment ending with '~'"
    if seg != seg.strip():
        return "no leading or trailing spaces in a segment"
    return None


def path_problem(path) -> str | None:
    """Why `path` is not a valid slash path exactly as given (no normalising: a leading '/'
    is an absolute path), or None."""
    if not isinstance(path, str):
        return f"a path must be a string, not {type(path).__name__}"
    if path == "":
        return "no empty paths"
    if path.startswith("/"):
        return "no absolute paths"
    for seg in path.split("/"):
        why = segment_problem(seg)
        if why:
            return why
    n = len(path.encode("utf-8"))
    if n > MAX_PATH_BYTES:
        return f"the path is {n} bytes, at most {MAX_PATH_BYTES} are allowed"
    return None


def entry_problem(name) -> str | None:
    """Why `name` cannot be one entry of a tree, or None: each '/'-separated part is checked
    first, so `../../x` is named for its '..' segments."""
    if isinstance(name, str) and "/" in name:
        for seg in name.split("/"):
            why = segment_problem(seg)
            if why:
                return why
    return segment_problem(name)


def check_path(path: str, what: str = "dataset path") -> str:
    """Validate a slash path ("inputs/sales") given by a user; returns it normalised (no
    surrounding whitespace or slashes)."""
    if not isinstance(path, str):
        raise UsageError(f"{what} must be a string like 'inputs/sales', not "
                         f"{type(path).__name__}")
    p = path.strip().strip("/")
    if not p:
        raise UsageError(f"empty {what}: use a slash-separated name like 'inputs/sales'")
    why = path_problem(p)
    if why:
        raise UsageError(f"invalid {what} {show(path)}: {why}; use a slash-separated name like "
                         f"'inputs/sales' (see docs/packages.md, names)")
    return p


def ident_problem(name) -> str | None:
    """Why `name` is not an identifier (package, dependency, task, dataflow, resource), or
    None."""
    if not isinstance(name, str):
        return f"a name must be a string, not {type(name).__name__}"
    if not _IDENT.fullmatch(name):
        return "use letters, digits, _ . - (not starting with . or -; no slashes or spaces)"
    if len(name) > MAX_SEGMENT_BYTES:
        return f"it is {len(name)} characters, at most {MAX_SEGMENT_BYTES} are allowed"
    return None


def check_ident(name, kind: str) -> str:
    """Validate an identifier; `kind` names it in the error ('task', 'package' …)."""
    why = ident_problem(name)
    if why:
        raise UsageError(f"invalid {kind} name {show(name)}: {why}, e.g. 'clean'")
    return name


def show(name, limit: int = 80) -> str:
    """A name quoted for a one-line message: escapes control characters and undecodable
    bytes, shortens very long names."""
    if not isinstance(name, str):
        return repr(name)
    try:  # undecodable file-name bytes (surrogateescape) show as \xNN
        s = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        s = name.encode("utf-8", "backslashreplace").decode("utf-8")
    s = "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode()
                for c in s)
    if len(s) > limit:
        s = s[:limit - 20] + "…" + s[-19:]
    return f"'{s}'"


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
