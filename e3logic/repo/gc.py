"""Garbage collection and integrity checking.

gc marks from every package (and its commit history through `parent`), every workspace root and
deployed package, every memo output and every pinned run's state root; it deletes only unmarked
objects (and temp files) older than `min_age` seconds, so an object being written by a concurrent
command is never taken.
"""
from __future__ import annotations

import time

from ..core import canon
from ..core.errors import E3Error
from ..core.hashing import hash_file


def _package_closure(repo, h: str, marked: set[str], missing: set[str]) -> None:
    from .packages import reachable as package_reachable

    seen_pkgs = set()
    while h and h not in seen_pkgs:
        seen_pkgs.add(h)
        if not repo.objects.exists(h):
            missing.add(h)
            return
        try:
            marked.update(package_reachable(repo, h))
        except E3Error:
            missing.add(h)
            return
        parent = (canon.loads(repo.objects.read(h)).get("parent") or {}).get("hash")
        h = parent if parent and repo.objects.exists(parent) else None


def _tree_closure(repo, root: str, marked: set[str], missing: set[str]) -> None:
    stack = [root]
    while stack:
        h = stack.pop()
        if h in marked:
            continue
        if not repo.objects.exists(h):
            missing.add(h)
            continue
        marked.add(h)
        try:
            entries = repo.trees.read(h)
        except E3Error:
            continue
        for e in entries.values():
            if e["kind"] == "tree":
                stack.append(e["hash"])
            elif repo.objects.exists(e["hash"]):
                marked.add(e["hash"])
            else:
                missing.add(e["hash"])


def roots(repo) -> tuple[set[str], set[str]]:
    """(every object reachable from a root, every referenced object that is absent)."""
    from .packages import list_packages
    from .workspaces import Workspaces

    marked: set[str] = set()
    missing: set[str] = set()
    for p in list_packages(repo):
        _package_closure(repo, p["hash"], marked, missing)
    ws = Workspaces(repo)
    for name in ws.names():
        st = ws.state(name)
        _tree_closure(repo, st["hash"], marked, missing)
        if st.get("package"):
            _package_closure(repo, st["package"]["hash"], marked, missing)
    db = repo.index
    for (h,) in db.execute("SELECT output_hash FROM memo"):
        (marked if repo.objects.exists(h) else missing).add(h)
    for (h,) in db.execute("SELECT state_root FROM runs WHERE pinned=1 AND state_root IS NOT NULL"):
        _tree_closure(repo, h, marked, missing)
    return marked, missing


def gc(repo, min_age: float = 60.0, dry_run: bool = False, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    marked, _ = roots(repo)
    deleted = nbytes = retained = 0
    for h in repo.objects:
        p = repo.objects.path(h)
        if h in marked:
            retained += 1
            continue
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        if now - st.st_mtime < min_age:
            retained += 1
            continue
        deleted += 1
        nbytes += st.st_size
        if not dry_run:
            p.unlink(missing_ok=True)
    for t in repo.objects.temp_files():
        try:
            st = t.stat()
        except FileNotFoundError:
            continue
        if now - st.st_mtime >= min_age and t.is_file():
            nbytes += st.st_size
            if not dry_run:
                t.unlink(missing_ok=True)
    if not dry_run:
        for d in repo.objects.root.iterdir():
            if len(d.name) == 2 and d.is_dir():
                try:
                    d.rmdir()  # only succeeds when empty
                except OSError:
                    pass
    return {"deleted": deleted, "bytes": nbytes, "retained": retained, "dry_run": dry_run}


def fsck(repo) -> dict:
    """Re-hash every object and follow every ref; report corrupt and missing objects."""
    corrupt = []
    count = 0
    for h in repo.objects:
        count += 1
        try:
            if hash_file(repo.objects.path(h)) != h:
                corrupt.append(h)
        except OSError:
            corrupt.append(h)
    _, missing = roots(repo)
    missing = sorted(missing)
    return {"ok": not corrupt and not missing, "corrupt": sorted(corrupt), "missing": missing,
            "objects": count, "pending_temp_files": len(repo.objects.temp_files())}
