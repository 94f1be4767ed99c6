"""Garbage collection (integrity checking is in `fsck`).

Roots — everything a later command reads: every package (and its commit history through
`parent`), every workspace root and deployed package, every memo output, the working-copy
roots (`wc_root`, `wc_target`), every pinned run's state root, and for each workspace the
state root and receipt outputs of its newest run and of its newest settled run (what `go`
compares the workspace against to decide what changed). gc deletes only unmarked objects
older than `min_age` seconds, and temp files nobody holds.

Concurrency, at any `min_age` (0 included): the mark and the sweep run under `.e3/gc.lock`
held exclusive (`Repository.gc_guard`). Every command that writes objects or holds objects no
root reaches yet — a run's snapshot, inputs handed to tasks and staged outputs; a `set`'s blob
before the root moves; an import before its ref lands — holds the same lock shared for its
whole duration (`Repository.object_guard`). So gc waits for running writers (saying so on
stderr) and writers started meanwhile wait for gc; when gc marks, every object a finished
command left behind is either reachable from a root or garbage. The kernel drops a killed
holder's flock, so a kill -9 never leaves the lock taken. `min_age` and the temp-file flocks
remain as a second line for writers that do not take the guard.
"""
from __future__ import annotations

import os
import time

from ..core import canon
from ..core.errors import E3Error, IntegrityError


def _package_closure(repo, h: str, marked: set[str], missing: set[str]) -> None:
    """Mark a package object, its modules and datasets trees (every object below them checked
    for existence) and the versions it was committed from (`parent`, while present)."""
    seen_pkgs = set()
    while h and h not in seen_pkgs:
        seen_pkgs.add(h)
        if not repo.objects.exists(h):
            missing.add(h)
            return
        marked.add(h)
        try:
            pkg = canon.loads(repo.objects.read(h))
        except ValueError:
            return  # unreadable bytes: fsck's re-hash reports the corruption
        if not isinstance(pkg, dict):
            return
        for key in ("modules", "datasets"):
            ref = pkg.get(key)
            if isinstance(ref, dict) and ref.get("kind") == "tree" and ref.get("hash"):
                _tree_closure(repo, ref["hash"], marked, missing)
        # a bundle carries no history: a parent absent from this store is not "missing"
        parent = (pkg.get("parent") or {}).get("hash")
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
            if not isinstance(e, dict) or not isinstance(e.get("hash"), str):
                continue  # a malformed tree: its bytes still hash right, so nothing to follow
            if e.get("kind") == "tree":
                stack.append(e["hash"])
            elif repo.objects.exists(e["hash"]):
                marked.add(e["hash"])
            else:
                missing.add(e["hash"])


def _package_refs(repo, bad: list[str]) -> list[str]:
    """Hashes named by every package ref; unreadable refs are appended to `bad`."""
    from .refs import read_ref

    out = []
    d = repo.packages_dir
    if not d.is_dir():
        return out
    for name in sorted(os.listdir(d)):
        if name.startswith(".") or not (d / name).is_dir():
            continue
        for ver in sorted(os.listdir(d / name)):
            if ver.startswith("."):
                continue  # temp files of atomic writes
            try:
                ref = read_ref(d / name / ver)
            except IntegrityError:
                bad.append(f"packages/{name}/{ver}")
                continue
            if ref is not None and ref["kind"] == "package":
                out.append(ref["hash"])
            elif ref is not None:
                bad.append(f"packages/{name}/{ver}")
    return out


def roots(repo, bad_refs: list[str] | None = None) -> tuple[set[str], set[str]]:
    """(every object reachable from a root, every referenced object that is absent).

    With `bad_refs` (a list), unreadable refs are recorded there and skipped; without it they
    raise, so that gc never deletes what an unreadable ref might name."""
    from .workspaces import Workspaces

    bad: list[str] = [] if bad_refs is None else bad_refs
    marked: set[str] = set()
    missing: set[str] = set()
    for h in _package_refs(repo, bad):
        _package_closure(repo, h, marked, missing)
    ws = Workspaces(repo)
    for name in ws.names():
        try:
            st = ws.state(name)
        except IntegrityError:
            bad.append(f"workspaces/{name}/state")
            continue
        _tree_closure(repo, st["hash"], marked, missing)
        if st.get("package"):
            _package_closure(repo, st["package"]["hash"], marked, missing)
    if bad and bad_refs is None:
        raise IntegrityError(f"unreadable ref {bad[0]}; run 'e3 fsck' and repair it before gc")
    j = repo.journal
    for h in j.memo_output_hashes():
        (marked if repo.objects.exists(h) else missing).add(h)
    for h in j.pinned_state_roots():
        _tree_closure(repo, h, marked, missing)
    # per workspace its newest run, its newest run with a state root and its newest settled
    # run: `go` compares the workspace root with the state root of such a run
    for run, h in j.runs_go_reads():
        _tree_closure(repo, h, marked, missing)
        for o in j.receipt_outputs(run):
            if repo.objects.exists(o):
                marked.add(o)  # an absent one makes `go` re-execute: not a missing object
    # the roots the working copy was synced to / is being synced to: a later sync reads them
    # to know which files to remove, even when no workspace points at them any more
    for key in ("wc_root", "wc_target"):
        h = j.get_meta(key)
        if h and repo.objects.exists(h):
            _tree_closure(repo, h, marked, missing)
    return marked, missing


def gc(repo, min_age: float = 60.0, dry_run: bool = False, now: float | None = None,
       on_wait=None) -> dict:
    """Mark and sweep under the exclusive gc lock (see the module docstring). `on_wait(holders)`
    is called once if running commands hold objects and gc must wait for them."""
    with repo.gc_guard(on_wait):
        return _mark_and_sweep(repo, min_age, dry_run, now)


def _mark_and_sweep(repo, min_age: float, dry_run: bool, now: float | None) -> dict:
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
    # a temp file or staging directory still being written is flock'ed by its writer; only
    # one that is not, and older than min-age, was left behind by a dead writer
    temp, tbytes = repo.objects.sweep_temp(min_age, now=now, dry_run=dry_run)
    nbytes += tbytes
    if not dry_run:
        for d in repo.objects.root.iterdir():
            if len(d.name) == 2 and d.is_dir():
                try:
                    d.rmdir()  # only succeeds when empty
                except OSError:
                    pass
    return {"deleted": deleted, "bytes": nbytes, "retained": retained, "temp_files": temp,
            "dry_run": dry_run}
