"""Integrity checking and repair (`e3 fsck [--repair]`).

`fsck` re-hashes every object, follows every ref and runs SQLite's quick_check on index.db.
`fsck(repair=True)` then mends what it found, each step atomic and nothing deleted:

1. a damaged index.db is rebuilt from the rows that still read (`index.rebuild`; the damaged
   file is kept as `index.db.damaged-N`);
2. corrupt objects are moved to `.e3/quarantine/`;
3. a bad package ref is rewritten from the package object of that name and version if the store
   holds exactly one, else moved to `.e3/quarantine/refs/`;
4. a bad workspace state is restored from the newest run of that workspace whose state root is
   whole, else the working copy's root, else the deployed package's datasets, else emptied; a
   HEAD naming no workspace is pointed at one;
5. datasets of a workspace root whose bytes are gone are restored from an identical
   working-copy file, else dropped from the root (`e3 go` recomputes outputs);
   the same entries leave the working copy's recorded roots and the state roots of runs (a
   mended run is no longer settled);
6. memo rows whose outputs are gone are dropped (their dataflows run again).

Run it while no other command writes to the repository.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3

from ..core.errors import E3Error, IntegrityError
from ..core.hashing import hash_file, is_hash
from . import index as index_mod
from .gc import roots
from .refs import read_ref, ref_problem, write_ref


def fsck(repo, repair: bool = False) -> dict:
    """Report corrupt and missing objects, bad refs and a damaged index.db; with `repair`,
    mend them first and report what was done under "repaired"."""
    if not repair:
        return check(repo)
    done = _repair(repo)
    res = check(repo)
    res["repaired"] = done
    return res


def check(repo) -> dict:
    bad_index = index_mod.check(repo.dir / "index.db")
    corrupt = []
    count = 0
    for h in repo.objects:
        count += 1
        try:
            if hash_file(repo.objects.path(h)) != h:
                corrupt.append(h)
        except OSError:
            corrupt.append(h)
    bad_refs: list[str] = []
    try:
        _, missing = roots(repo if bad_index is None else _without_index(repo), bad_refs)
    except sqlite3.DatabaseError as e:  # damage quick_check did not see
        if not index_mod.is_damage(e):
            raise
        bad_index, bad_refs = str(e), []
        _, missing = roots(_without_index(repo), bad_refs)
    except IntegrityError as e:  # the index opened but is unusable (e.g. a newer schema)
        bad_index, bad_refs = str(e), []
        _, missing = roots(_without_index(repo), bad_refs)
    head = repo.head
    if not _head_ok(repo, head):
        bad_refs.append(f"HEAD (names workspace '{head}', which does not exist)")
    missing = sorted(missing)
    return {"ok": not corrupt and not missing and not bad_refs and bad_index is None,
            "corrupt": sorted(corrupt), "missing": missing, "bad_refs": sorted(bad_refs),
            "bad_index": bad_index, "objects": count,
            "pending_temp_files": len(repo.objects.temp_files())}


def _head_ok(repo, head: str) -> bool:
    from .workspaces import _NAME

    return bool(_NAME.match(head)) and (repo.workspaces_dir / head / "state").exists()


def _without_index(repo):
    """`repo` seen with an empty index (when its own cannot be read)."""
    import copy

    shadow = copy.copy(repo)
    shadow.__dict__["index"] = index_mod.IndexDB(":memory:")
    return shadow


# -- repair -----------------------------------------------------------------------------------
def _repair(repo) -> dict:
    done = {"quarantined": [], "memo_dropped": 0, "refs_restored": [], "refs_removed": [],
            "index_rebuilt": False, "datasets_restored": [], "datasets_dropped": [],
            "runs_mended": []}
    problem = index_mod.check(repo.dir / "index.db")
    if problem is None:
        try:
            repo.journal.memo_size()
        except E3Error as e:
            problem = str(e)
    if problem is not None:
        old = repo.__dict__.pop("index", None)
        if old is not None:
            old.close()
        info = index_mod.rebuild(repo.dir / "index.db")
        done.update(index_rebuilt=True, index_moved_to=info["moved_to"],
                    index_salvaged=info["salvaged"])
    for h in list(repo.objects):
        try:
            good = hash_file(repo.objects.path(h)) == h
        except OSError:
            good = False
        if not good:
            _quarantine(repo, repo.objects.path(h), h)
            done["quarantined"].append(h)
    _repair_package_refs(repo, done)
    _repair_workspaces(repo, done)
    _repair_lost_datasets(repo, done)
    gone = [k for k, h in repo.journal.memo_outputs()
            if not (isinstance(h, str) and repo.objects.exists(h))]
    repo.journal.drop_memo(gone)
    done["memo_dropped"] = len(gone)
    return done


def _quarantine(repo, src, name: str) -> str:
    """Move `src` into `.e3/quarantine/NAME` (a free name: NAME.1, NAME.2, ... if taken)."""
    dest = repo.dir / "quarantine" / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    while dest.exists():
        n += 1
        dest = repo.dir / "quarantine" / f"{name}.{n}"
    os.rename(src, dest)
    return str(dest)


def _keep_copy(repo, ref_path, rel: str) -> None:
    """Copy a bad ref into the quarantine before it is rewritten (nothing is lost)."""
    dest = repo.dir / "quarantine" / "refs" / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    n, d = 0, dest
    while d.exists():
        n += 1
        d = dest.with_name(f"{dest.name}.{n}")
    shutil.copyfile(ref_path, d)


def _lenient(path) -> dict:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _package(repo, h) -> dict | None:
    from .packages import read_package

    if not (isinstance(h, str) and repo.objects.exists(h)):
        return None
    try:
        return read_package(repo, h)
    except (E3Error, OSError):
        return None


def _package_objects(repo) -> dict[tuple[str, str], list[str]]:
    """(name, version) -> hashes of every package object in the store."""
    out: dict[tuple[str, str], list[str]] = {}
    for h in repo.objects:
        p = repo.objects.path(h)
        try:
            if p.stat().st_size > (4 << 20):
                continue
            data = p.read_bytes()
        except OSError:
            continue
        if not data.startswith(b"{") or b'"e3":"package"' not in data:
            continue
        pkg = _package(repo, h)
        if pkg is not None:
            out.setdefault((pkg["name"], pkg["version"]), []).append(h)
    return {k: sorted(v) for k, v in out.items()}


def _repair_package_refs(repo, done: dict) -> None:
    d = repo.packages_dir
    if not d.is_dir():
        return
    found = None
    for name in sorted(os.listdir(d)):
        if name.startswith(".") or not (d / name).is_dir():
            continue
        for ver in sorted(os.listdir(d / name)):
            p = d / name / ver
            if ver.startswith(".") or not p.is_file():
                continue
            try:
                ref = read_ref(p)
            except IntegrityError:
                ref = None
            pkg = _package(repo, ref["hash"]) if ref and ref["kind"] == "package" else None
            if pkg is not None and (pkg["name"], pkg["version"]) == (name, ver):
                continue
            rel = f"packages/{name}/{ver}"
            if found is None:
                found = _package_objects(repo)
            hs = found.get((name, ver), [])
            _keep_copy(repo, p, rel)
            if len(hs) == 1:
                write_ref(p, "package", hs[0], name=name, version=ver)
                done["refs_restored"].append(f"{rel} (from package object {hs[0][:12]})")
            else:
                p.unlink()
                done["refs_removed"].append(rel)


def _readable(repo, root) -> bool:
    """Whether tree `root` is in the store and reads as a tree (what is lost below it is
    mended by `_repair_lost_datasets`)."""
    if not (isinstance(root, str) and is_hash(root) and repo.objects.exists(root)):
        return False
    try:
        repo.trees.read(root)
    except (E3Error, OSError):
        return False
    return True


def _repair_workspaces(repo, done: dict) -> None:
    from .workspaces import Workspaces

    wss = Workspaces(repo)
    d = repo.workspaces_dir
    names = sorted(n for n in os.listdir(d) if (d / n / "state").is_file()) if d.is_dir() else []
    for ws in names:
        p = d / ws / "state"
        try:
            st = read_ref(p)
        except IntegrityError:
            st = None
        pkg = st.get("package") if st else None
        pkg_ok = pkg is None or _package(repo, pkg["hash"]) is not None
        if st is not None and st["kind"] == "tree" and _readable(repo, st["hash"]) and pkg_ok:
            continue
        if st is None:  # keep what can be read of a ref with a bad hash or kind
            raw = _lenient(p).get("package")
            if raw is not None and ref_problem({"kind": "tree", "hash": "0" * 64,
                                                "package": raw}) is None:
                pkg = raw
        if pkg is not None and _package(repo, pkg["hash"]) is None:
            pkg = None
        root, source = None, None
        for run, state_root, run_pkg in repo.journal.state_roots_of(ws):
            if not _readable(repo, state_root):
                continue
            if pkg is not None and run_pkg not in (None, pkg["hash"]):
                continue
            found = _package(repo, run_pkg) if pkg is None else None
            if found is not None:
                pkg = {"name": found["name"], "version": found["version"], "hash": run_pkg}
            root, source = state_root, f"run {run}"
            break
        if root is None and ws == repo.head:
            wc = repo.journal.synced_root()
            if _readable(repo, wc):
                root, source = wc, "the working copy's root"
        if root is None and pkg is not None:
            ds = _package(repo, pkg["hash"])["datasets"]["hash"]
            if _readable(repo, ds):
                root, source = ds, f"package {pkg['name']}@{pkg['version']}"
        if root is None:
            root, source, pkg = repo.trees.empty, "empty (nothing whole to restore)", None
        _keep_copy(repo, p, f"workspaces/{ws}/state")
        write_ref(p, "tree", root, package=pkg)
        done["refs_restored"].append(f"workspaces/{ws}/state (from {source})")
    head = repo.head
    if not _head_ok(repo, head):
        names = wss.names()
        new = "main" if "main" in names else (names[0] if names else "main")
        if not names:
            wss.create(new)
        repo.set_head(new)
        done["refs_restored"].append(f"HEAD (was '{head[:40]}', now '{new}')")


def _lost(repo, root: str) -> list[tuple[str, dict]]:
    """(path, entry) of every entry below tree `root` whose object is not in the store."""
    out, stack = [], [("", root)]
    while stack:
        prefix, h = stack.pop()
        try:
            entries = repo.trees.read(h)
        except (E3Error, OSError):
            continue
        for name, e in sorted(entries.items()):
            if not isinstance(e, dict) or not isinstance(e.get("hash"), str):
                continue
            path = f"{prefix}/{name}" if prefix else name
            if not repo.objects.exists(e["hash"]):
                out.append((path, e))
            elif e.get("kind") == "tree":
                stack.append((path, e["hash"]))
    return sorted(out, key=lambda x: x[0])


def _repair_lost_datasets(repo, done: dict) -> None:
    """Restore lost dataset bytes from identical working-copy files; drop what stays lost from
    workspace roots, from the working copy's recorded roots and from the state roots of runs
    (such a run is no longer settled: `go` does not trust its receipt)."""
    from .workspaces import Workspaces

    wss = Workspaces(repo)

    def mend(root: str, label: str | None, restore: bool = False) -> str:
        drops = {}
        for path, e in _lost(repo, root):
            f = repo.root / path
            if restore and e.get("kind") == "blob" and f.is_file():
                try:
                    if hash_file(f) == e["hash"] and repo.objects.write_file(f) == e["hash"]:
                        done["datasets_restored"].append(f"{label}:{path}")
                        continue
                except OSError:
                    pass
            drops[path] = None
        if not drops:
            return root
        if label is not None:
            done["datasets_dropped"].extend(f"{label}:{p}" for p in sorted(drops))
        return repo.trees.set_many(root, drops)

    for ws in wss.names():
        root = wss.root(ws)
        new = mend(root, ws, restore=ws == repo.head)
        if new != root:
            wss.cas_root(ws, root, new)
    j = repo.journal
    for key in ("wc_root", "wc_target"):
        h = j.get_meta(key)
        if h and repo.objects.exists(h):
            new = mend(h, None)
            if new != h:
                j.set_meta(key, new)
    mended: dict[str, str | None] = {}
    changes = []
    for run, h in j.state_roots():
        if h not in mended:
            mended[h] = mend(h, None) if _readable(repo, h) else None
        if mended[h] != h:
            changes.append((mended[h], run))
    if changes:
        j.replace_state_roots(changes)
    done["runs_mended"] = [run for _, run in changes]
