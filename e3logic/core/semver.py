"""Semantic versions and constraints: exact, ^1.2, ~1.2.3, >=1,<2, *, comparisons."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from .errors import UsageError

_VERSION = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: tuple = ()

    @classmethod
    def parse(cls, text: str) -> "Version":
        m = _VERSION.match(text.strip())
        if not m:
            raise UsageError(f"invalid version '{text}': expected MAJOR.MINOR.PATCH, e.g. 1.0.0")
        pre = tuple(int(p) if p.isdigit() else p for p in m.group(4).split(".")) if m.group(4) else ()
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)), pre)

    def _key(self):
        # a pre-release sorts before its release; numeric identifiers before alphanumeric
        pre = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in self.pre)
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, pre)

    def __lt__(self, other: "Version") -> bool:
        return self._key() < other._key()

    def bump(self, part: str) -> "Version":
        if part == "major":
            return Version(self.major + 1, 0, 0)
        if part == "minor":
            return Version(self.major, self.minor + 1, 0)
        if part == "patch":
            return Version(self.major, self.minor, self.patch + 1)
        raise UsageError(f"unknown version part '{part}': use major, minor or patch")

    def __str__(self) -> str:
        s = f"{self.major}.{self.minor}.{self.patch}"
        return s + ("-" + ".".join(str(p) for p in self.pre) if self.pre else "")


def _partial(text: str) -> tuple[int, ...]:
    parts = text.strip().lstrip("v").split(".")
    try:
        nums = tuple(int(p) for p in parts if p not in ("x", "*"))
    except ValueError:
        raise UsageError(f"invalid version constraint part '{text}'") from None
    if not 1 <= len(nums) <= 3 and text.strip() not in ("*", "x"):
        raise UsageError(f"invalid version constraint part '{text}'")
    return nums


def _pad(nums: tuple[int, ...]) -> Version:
    n = nums + (0,) * (3 - len(nums))
    return Version(n[0], n[1], n[2])


class Constraint:
    """A set of versions: the intersection of comparator clauses."""

    def __init__(self, text: str):
        self.text = text.strip()
        self.clauses: list[tuple[str, Version]] = []
        if not self.text:
            raise UsageError("empty version constraint: use e.g. ^1.0, ~1.2.3, >=1,<2 or 1.2.3")
        for raw in self.text.split(","):
            self._add(raw.strip())

    def _add(self, c: str) -> None:
        if c in ("*", "x", ""):
            return
        if c.startswith("^"):
            nums = _partial(c[1:])
            lo = _pad(nums)
            if lo.major > 0 or len(nums) == 1:
                hi = Version(lo.major + 1, 0, 0)
            elif lo.minor > 0 or len(nums) == 2:
                hi = Version(0, lo.minor + 1, 0)
            else:
                hi = Version(0, 0, lo.patch + 1)
            self.clauses += [(">=", lo), ("<", hi)]
        elif c.startswith("~"):
            nums = _partial(c[1:])
            lo = _pad(nums)
            hi = Version(lo.major + 1, 0, 0) if len(nums) == 1 else Version(lo.major, lo.minor + 1, 0)
            self.clauses += [(">=", lo), ("<", hi)]
        else:
            m = re.match(r"^(>=|<=|>|<|==|=)?\s*(.+)$", c)
            op, ver = (m.group(1) or "=="), m.group(2)
            if op == "=":
                op = "=="
            try:
                v = Version.parse(ver)
                exact = True
            except UsageError:
                v, exact = _pad(_partial(ver)), False
            if op == "==" and not exact:  # "1.2" means 1.2.x
                nums = _partial(ver)
                self._add("~" + ver if len(nums) > 1 else "^" + ver)
                return
            self.clauses.append((op, v))

    def allows(self, v: Version | str) -> bool:
        if isinstance(v, str):
            v = Version.parse(v)
        if v.pre and not any(b.pre and (b.major, b.minor, b.patch) == (v.major, v.minor, v.patch)
                             for _, b in self.clauses):
            # a pre-release matches only a constraint that names a pre-release of the same
            # MAJOR.MINOR.PATCH (npm's rule): '^1.0' does not pick up 1.5.0-beta
            return False
        for op, bound in self.clauses:
            ok = {"==": v == bound, ">=": v >= bound, "<=": v <= bound, ">": v > bound,
                  "<": v < bound}[op]
            if not ok:
                return False
        return True

    def best(self, versions) -> str | None:
        """The highest allowed version among `versions` (strings), or None."""
        ok = [Version.parse(v) for v in versions if self.allows(v)]
        return str(max(ok)) if ok else None

    def __str__(self) -> str:
        return self.text
