"""Installed packages: refs under `.e3/packages/<name>/<version>`, bundle import and export,
dependency resolution, task hashes.

A package ref is canonical JSON `{"kind":"package","hash":h,"name":…,"version":…}` naming a
package object (docs/internals.md). Import is all-or-nothing:

1. the zip is checked (entry names, sizes, manifest) before anything is extracted;
2. the package object and every tree it reaches are read (verified, size- and depth-bounded)
   and every name in them must pass the name rule (`core.paths`, docs/packages.md); every
   reference must be in the bundle or already in the store, every object in the bundle must be
   reached, and each blob's entry must have the size its tree declares — a bundle failing any
   of this is refused whole (`BadBundle`, exit 2) before anything is staged;
3. the objects the store lacks are streamed into a staging directory `.e3/objects/tmp/import-*`,
   never past their declared sizes, and verified;
4. only then are objects renamed into the store (each rename atomic, blobs first, the package
   object last) and, last of all, the ref is written atomically.

A SIGKILL at any moment therefore leaves either no ref (plus complete, unreferenced objects and
a stale staging directory that gc removes past min-age) or a ref whose whole object graph exists.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from ..core import canon
from ..core.errors import BadBundle, E3Error, IntegrityError, NotFound, UsageError, did_you_mean
from ..core.hashing import is_hash
from ..core.paths import (LEASE_MODES, MAX_PATH_BYTES, entry_problem, ident_problem,
                          path_problem, show)
from ..core.semver import Constraint, Version
from .atomic import FSYNC
from .bundle import MAX_BYTES, MAX_RATIO, BundleReader, bad, loads_bounded, write_bundle
from .refs import read_ref, write_ref

LOCK_WAIT = 30.0
MAX_PACKAGE_BYTES = 16 << 20   # a package object in a bundle
MAX_TREE_BYTES = 64 << 20      # one tree object in a bundle
MAX_VERSION_CHARS = 128
MAX_TEXT_CHARS = 1 << 16       # a constraint, task entry or argv item, a commit message

Reader = Callable[[str], bytes]


# -- names and specs -----------------------------------------------------------------------
def check_name(name: str) -> str:
    why = ident_problem(name)
    if why:
        raise UsageError(f"invalid package name {show(name)}: {why} (e.g. 'forecast')")
    return name


def version_problem(v) -> str | None:
    """Why `v` is not a version string as a bundle may carry it (it names a ref file), or
    None."""
    if not isinstance(v, str):
        return "not a string"
    if len(v) > MAX_VERSION_CHARS:
        return f"{len(v)} characters, at most {MAX_VERSION_CHARS} are allowed"
    if v != v.strip() or not v.isprintable():
        return "spaces or control characters around or inside it"
    try:
        Version.parse(v)
    except UsageError:
        return "expected MAJOR.MINOR.PATCH, e.g. 1.0.0"
    return None


def parse_spec(spec: str) -> tuple[str, str | None]:
    """`NAME`, `NAME@1.2.3` or `NAME@^1.2` -> (name, version-or-constraint or None)."""
    name, sep, ver = spec.strip().partition("@")
    check_name(name)
    if sep and not ver.strip():
        raise UsageError(f"'{spec}' has an empty version; use NAME@1.2.3 or NAME@^1.2")
    return name, (ver.strip() or None)


# -- package objects -------------------------------------------------------------------------
def parse_package(data: bytes, label: str = "package object") -> dict:
    """Decode and shape-check a package object (does not follow its references)."""
    try:
        obj = canon.loads(data)
    except RecursionError:
        raise IntegrityError(f"{label} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise IntegrityError(f"{label} is not valid JSON") from None
    return check_package(obj, label)


def check_package(obj, label: str = "package object") -> dict:
    """Shape-check a decoded package object; returns it."""
    if not isinstance(obj, dict) or obj.get("e3") != "package":
        raise IntegrityError(f"{label} is not a package object")
    for k in ("name", "version"):
        if not isinstance(obj.get(k), str):
            raise IntegrityError(f"{label} has no {k}")
    try:
        check_name(obj["name"])
    except UsageError as e:
        raise IntegrityError(f"{label}: {e}") from None
    why = version_problem(obj["version"])
    if why:
        raise IntegrityError(f"{label}: invalid version {show(obj['version'])} ({why})")
    deps = obj.get("dependencies", {})
    if not isinstance(deps, dict) or not all(isinstance(v, str) for v in deps.values()):
        raise IntegrityError(f"{label}: dependencies must map names to constraint strings")
    for k in ("modules", "datasets"):
        ref = obj.get(k)
        if not (isinstance(ref, dict) and ref.get("kind") == "tree" and is_hash(ref.get("hash", ""))):
            raise IntegrityError(f"{label}: '{k}' must be a tree ref")
    for k in ("tasks", "dataflows"):
        if not isinstance(obj.get(k), dict):
            raise IntegrityError(f"{label}: '{k}' must be an object")
    return obj


def read_package(repo, h: str) -> dict:
    """The package object `h` as a dict."""
    return parse_package(repo.objects.read(h), f"package object {h[:12]}")


def package_problem(pkg: dict) -> str | None:
    """The first name in a (shape-checked) package object that breaks the name rule, as a
    phrase naming it, or None. Names checked: dependencies and their constraints, tasks and
    what they run, dataflows, their task, inputs, output (and where it lands), leases and
    resources."""
    def ident(kind, n):
        why = ident_problem(n)
        return f"{kind} name {show(n)} is not a valid name ({why})" if why else None

    def path(kind, p):
        why = path_problem(p)
        return f"{kind} {show(p)} is not a valid dataset path ({why})" if why else None

    def text(kind, t):
        if not isinstance(t, str) or len(t) > MAX_TEXT_CHARS:
            return f"{kind} must be a string of at most {MAX_TEXT_CHARS} characters"
        return None

    for dep, c in sorted(pkg.get("dependencies", {}).items()):
        why = ident("dependency", dep) or text(f"dependency '{dep}' constraint", c)
        if why:
            return why
        try:
            Constraint(c)
        except UsageError:
            return f"dependency '{dep}' has an invalid constraint {show(c)}"
    for t, task in sorted(pkg["tasks"].items()):
        why = ident("task", t)
        if why:
            return why
        if not isinstance(task, dict) or not isinstance(task.get("runtime"), str):
            return f"task '{t}' is malformed (it needs a runtime)"
        why = text(f"task '{t}' runtime", task["runtime"])
        if "argv" in task:
            argv = task["argv"]
            if not isinstance(argv, list) or not argv:
                return f"task '{t}' argv must be a non-empty list of strings"
            for a in argv:
                why = why or text(f"task '{t}' argv item", a)
        else:
            why = why or text(f"task '{t}' entry", task.get("entry"))
        if why:
            return why
    for d, df in sorted(pkg["dataflows"].items()):
        why = ident("dataflow", d)
        if why:
            return why
        if not isinstance(df, dict) or not isinstance(df.get("inputs", []), list):
            return f"dataflow '{d}' is malformed (it needs a task, inputs and an output)"
        why = text(f"dataflow '{d}' task", df.get("task"))
        if why:
            return why
        for i in df.get("inputs", []):
            why = path(f"dataflow '{d}' input", i)
            if why:
                return why
        out = df.get("output")
        why = path(f"dataflow '{d}' output", out) or path(f"dataflow '{d}' lands at",
                                                           f"outputs/{d}/{out}")
        if why:
            return why
        if not isinstance(df.get("leases", []), list):
            return f"dataflow '{d}' leases must be a list of [path, mode] pairs"
        for lease in df["leases"] if "leases" in df else []:
            if not (isinstance(lease, list) and len(lease) == 2 and lease[1] in LEASE_MODES):
                return f"dataflow '{d}' has a malformed lease {show(str(lease))}"
            why = path(f"dataflow '{d}' lease path", lease[0])
            if why:
                return why
        res = df.get("resources", {})
        if not isinstance(res, dict):
            return f"dataflow '{d}' resources must map names to numbers"
        for r in sorted(res):
            why = ident(f"dataflow '{d}' resource", r)
            if why:
                return why
        tags = df.get("tags", [])
        if not isinstance(tags, list):
            return f"dataflow '{d}' tags must be a list of names"
        for t in tags:
            why = ident(f"dataflow '{d}' tag", t)
            if why:
                return why
    msg = pkg.get("message", "")
    if msg is not None and text("message", msg):
        return text("message", msg)
    return None


def _graph(pkg: dict, read: Reader, sizes: Callable[[str], int | None] | None = None,
           names: bool = False) -> tuple[list[str], dict[str, int | None]]:
    """(trees, {blob: size declared by its tree entries}) reachable from a package object's
    modules and datasets trees. Checks tree shapes and, with `sizes`, that every blob exists
    with the size its entries declare. With `names`, also checks every entry name (the name
    rule), that blob entries declare a format and a size, and that no path under a tree is
    longer than MAX_PATH_BYTES. Raises IntegrityError naming the culprit."""
    trees: dict[str, str] = {}      # hash -> "dataset" / "module" (which tree it serves)
    children: dict[str, list] = {}  # hash -> [(name bytes, child tree hash or None)]
    blobs: dict[str, int | None] = {}
    stack = [(pkg["modules"]["hash"], "module"), (pkg["datasets"]["hash"], "dataset")]
    while stack:
        h, kind = stack.pop()
        if h in trees:
            continue
        trees[h] = kind
        try:
            t = read(h)
            t = canon.loads(t) if isinstance(t, (bytes, bytearray)) else t
        except NotFound:
            raise IntegrityError(f"tree {h[:12]} is missing") from None
        except RecursionError:
            raise IntegrityError(f"tree {h[:12]} is nested too deeply") from None
        except (ValueError, UnicodeDecodeError):
            raise IntegrityError(f"tree {h[:12]} is not valid JSON") from None
        if not isinstance(t, dict) or t.get("e3") != "tree" or not isinstance(t.get("entries"), dict):
            raise IntegrityError(f"object {h[:12]} should be a tree but is not")
        kids = children[h] = []
        for name, e in sorted(t["entries"].items()):
            if names:
                why = entry_problem(name)
                if why:
                    raise IntegrityError(f"{kind} tree entry {show(name)} is not a valid name "
                                         f"({why})")
            if not isinstance(e, dict) or not is_hash(e.get("hash", "")):
                raise IntegrityError(f"tree {h[:12]} entry {show(name)} is malformed")
            if e.get("kind") == "tree":
                stack.append((e["hash"], kind))
                kids.append((len(name.encode("utf-8")) if names else 0, name, e["hash"]))
            elif e.get("kind") == "blob":
                size = e.get("size")
                if names and (e.get("format") not in ("raw", "json") or type(size) is not int
                              or size < 0):
                    raise IntegrityError(f"{kind} tree entry {show(name)} is malformed (a blob "
                                         f"needs format raw or json and a size)")
                if size is not None and blobs.get(e["hash"], size) != size:
                    raise IntegrityError(f"blob {e['hash'][:12]} ({show(name)}) is declared "
                                         f"with two sizes")
                if sizes is not None:
                    s = sizes(e["hash"])
                    if s is None:
                        raise IntegrityError(f"blob {e['hash'][:12]} ({show(name)}) is missing")
                    if size is not None and s != size:
                        raise IntegrityError(f"blob {e['hash'][:12]} ({show(name)}) has {s} "
                                             f"bytes, its tree says {size}")
                blobs[e["hash"]] = size if size is not None else blobs.get(e["hash"])
                kids.append((len(name.encode("utf-8")) if names else 0, name, None))
            else:
                raise IntegrityError(f"tree {h[:12]} entry {show(name)} has unknown kind "
                                     f"{show(str(e.get('kind')))}")
    if names:
        for root in (pkg["modules"]["hash"], pkg["datasets"]["hash"]):
            n, longest = _longest(root, children)
            if n > MAX_PATH_BYTES:
                raise IntegrityError(f"{trees[root]} path {show(longest)} is {n} bytes, at most "
                                     f"{MAX_PATH_BYTES} are allowed")
    return sorted(trees), blobs


def _longest(root: str, children: dict) -> tuple[int, str]:
    """(bytes, path) of the longest leaf path below tree `root`: computed once per tree
    (trees share structure), iteratively."""
    best: dict[str, tuple[int, str]] = {}
    stack = [(root, False)]
    while stack:
        h, done = stack.pop()
        if h in best:
            continue
        if not done:
            stack.append((h, True))
            stack.extend((c, False) for _, _, c in children[h] if c is not None and c not in best)
            continue
        top = (0, "")
        for n, name, c in children[h]:
            bn, bp = best[c] if c is not None else (0, "")
            top = max(top, (n + 1 + bn, f"{name}/{bp}") if bp else (n, name))
        best[h] = top
    return best[root]


def _walk_refs(pkg: dict, read: Reader, sizes: Callable[[str], int | None] | None = None,
               names: bool = False) -> list[str]:
    """Every object hash reachable from a package object (excluding the package object itself),
    sorted. `parent` is history metadata, not a reference. See `_graph` for the checks."""
    trees, blobs = _graph(pkg, read, sizes, names)
    return sorted({*trees, *blobs})


def reachable(repo, h: str) -> list[str]:
    """Every object hash reachable from package object `h` (itself included), sorted: the
    package object, its modules and datasets trees and everything below them. The `parent`
    version is not followed (it is history, kept alive by its own ref)."""
    pkg = read_package(repo, h)
    return sorted({h, *_walk_refs(pkg, repo.objects.read)})


def object_graph(h: str, read: Reader) -> list[str]:
    """Like `reachable` over any object reader (`ObjectStore.read`, `MemoryStore.read`)."""
    pkg = parse_package(read(h), f"package object {h[:12]}")
    return sorted({h, *_walk_refs(pkg, read)})


def module_files(modules_tree: str, read: Reader) -> dict[str, str]:
    """{relative file path: blob hash} of a modules tree."""
    out: dict[str, str] = {}
    stack = [("", modules_tree)]
    while stack:
        where, h = stack.pop()
        for name, e in canon.loads(read(h))["entries"].items():
            p = f"{where}/{name}" if where else name
            if e["kind"] == "tree":
                stack.append((p, e["hash"]))
            else:
                out[p] = e["hash"]
    return dict(sorted(out.items()))


def task_object(package_obj: dict, task_name: str, read: Reader) -> dict:
    """The canonical task object whose digest is the task hash: runtime, entry (python/inline)
    or argv (shell), and the hashes of all of the package's module files."""
    tasks = package_obj["tasks"]
    if task_name not in tasks:
        raise NotFound("task", task_name, tasks,
                       hint=f"package {package_obj['name']} declares {', '.join(sorted(tasks)) or 'no tasks'}")
    t = tasks[task_name]
    obj = {"runtime": t["runtime"], "modules": module_files(package_obj["modules"]["hash"], read)}
    if "argv" in t:
        obj["argv"] = t["argv"]
    else:
        obj["entry"] = t["entry"]
    return obj


def task_hash(package_obj: dict, task_name: str, read: Reader) -> str:
    """Task hash = canon.digest({"runtime", "entry"|"argv", "modules": {path: blob hash}})
    (docs/internals.md). The task's name is excluded, so identical code shares memo entries.
    `read(h) -> bytes` reads objects (e.g. `repo.objects.read` or a MemoryStore's `read`)."""
    return canon.digest(task_object(package_obj, task_name, read))


# -- refs ------------------------------------------------------------------------------------
def _lock(repo):
    from .locks import FileLock

    return FileLock(repo.dir / "packages.lock", "the package list").acquire("packages",
                                                                            wait=LOCK_WAIT)


def installed(repo) -> dict[str, dict[str, str]]:
    """{name: {version: hash}} of installed packages."""
    out: dict[str, dict[str, str]] = {}
    root = repo.packages_dir
    if not root.is_dir():
        return out
    for name in sorted(os.listdir(root)):
        d = root / name
        if name.startswith(".") or not d.is_dir():
            continue
        for ver in sorted(os.listdir(d)):
            if ver.startswith("."):
                continue  # temp files of atomic writes
            ref = read_ref(d / ver)
            if ref is None or ref["kind"] != "package":
                continue
            out.setdefault(name, {})[ver] = ref["hash"]
    return out


def _vkey(v: str):
    try:
        return (0, Version.parse(v))
    except UsageError:
        return (1, v)


def list_packages(repo) -> list[dict]:
    """Installed packages, sorted by name then semver: [{"name","version","hash"}]."""
    out = []
    for name, versions in sorted(installed(repo).items()):
        for v in sorted(versions, key=_vkey):
            out.append({"name": name, "version": v, "hash": versions[v]})
    return out


def resolve_ref(repo, name: str, version_or_constraint: str | None = None) -> dict:
    """{"name","version","hash"} of an installed package: an exact version, else the highest
    version matching a constraint (`^1.2`, `~1.2.3`, `>=1,<2`), else the highest version."""
    inst = installed(repo)
    if name not in inst:
        raise NotFound("package", name, inst,
                       hint="install it with 'e3 add ZIP' or 'e3 add NAME --registry DIR'"
                       if not inst else f"installed: {', '.join(sorted(inst))}")
    versions = inst[name]
    spec = version_or_constraint
    if spec is None:
        v = max(versions, key=_vkey)
    elif spec in versions:
        v = spec
    else:
        try:
            c = Constraint(spec)
            v = c.best(versions)
        except UsageError:
            v = None
        if v is None:
            have = ", ".join(sorted(versions, key=_vkey))
            near = did_you_mean(spec, versions)
            hint = f"did you mean {' or '.join(repr(s) for s in near)}?" if near else \
                f"installed versions: {have}"
            raise NotFound("version", f"{name}@{spec}", (), hint=hint)
    return {"name": name, "version": v, "hash": versions[v]}


def resolve(repo, name: str, version_or_constraint: str | None = None) -> str:
    """The package object hash of `name` at an exact version, a constraint or (default) the
    highest installed version. Unknown names and versions raise NotFound with did-you-mean."""
    return resolve_ref(repo, name, version_or_constraint)["hash"]


def _write_pkg_ref(repo, name: str, version: str, h: str) -> bool:
    """Write the ref unless it already names `h`; refuse to replace a different package.
    Returns True when the ref was written. Call with the packages lock held."""
    path = repo.package_ref_path(name, version)
    old = read_ref(path)
    if old is not None:
        if old["hash"] == h:
            return False
        raise UsageError(f"package {name}@{version} is already installed with another hash "
                         f"({old['hash'][:12]}); remove it first with 'e3 remove {name}@{version}' "
                         f"or bump the version")
    write_ref(path, "package", h, name=name, version=version)
    return True


def install(repo, obj: dict) -> dict:
    """Store a package object whose referenced objects are already in the repository (e.g. made
    by `e3 commit`) and write its ref. Returns {"name","version","hash"}."""
    data = canon.dumps(obj)
    parse_package(data, f"package {obj.get('name')}@{obj.get('version')}")
    store = repo.objects
    try:
        _walk_refs(obj, store.read, lambda h: store.size(h) if store.exists(h) else None)
    except IntegrityError as e:
        raise IntegrityError(f"package {obj['name']}@{obj['version']}: {e}; write its objects "
                             f"first") from None
    h = store.write(data)
    with _lock(repo):
        _write_pkg_ref(repo, obj["name"], obj["version"], h)
    return {"name": obj["name"], "version": obj["version"], "hash": h}


# -- import ----------------------------------------------------------------------------------
def _bounds(repo, max_bytes, max_ratio) -> tuple[int, float]:
    cfg = {}
    try:
        cfg = repo.config.get("packages", {}) or {}
    except E3Error:
        pass
    return (int(max_bytes if max_bytes is not None else cfg.get("max_bundle_bytes", MAX_BYTES)),
            float(max_ratio if max_ratio is not None else cfg.get("max_ratio", MAX_RATIO)))


def peek_bundle(repo, zip_path, max_bytes: int | None = None,
                max_ratio: float | None = None) -> tuple[str, dict]:
    """Check a bundle whole (see the module doc, steps 1-2) without touching the repository;
    returns (package object hash, package object)."""
    mb, mr = _bounds(repo, max_bytes, max_ratio)
    with BundleReader(zip_path, mb, mr) as b:
        return b.hash, _inspect(repo, b)[0]


def _inspect(repo, b: BundleReader) -> tuple[dict, list[str]]:
    """(package object, every object it reaches but itself) of an open bundle, after every
    check of step 2; raises BadBundle naming the first culprit."""
    label, store = b.label, repo.objects
    obj = loads_bounded(b.read_object(b.hash, MAX_PACKAGE_BYTES, "a package object"), label,
                        "the package object")
    try:
        pkg = check_package(obj, "the package object")
    except IntegrityError as e:
        raise bad(label, str(e)) from None
    if (pkg["name"], pkg["version"]) != (b.name, b.version):
        raise bad(label, f"the manifest says {show(f'{b.name}@{b.version}')[1:-1]} but the package "
                  f"object is {pkg['name']}@{pkg['version']}")
    why = package_problem(pkg)
    if why:
        raise bad(label, why)

    def read(x: str):
        if x in b.objects:
            return b.read_object(x, MAX_TREE_BYTES, "a tree")
        if store.exists(x):
            return store.read(x)
        raise IntegrityError(f"{pkg['name']}@{pkg['version']} references object {x[:12]}, "
                             f"which is neither in the bundle nor installed")

    def size(x: str) -> int | None:
        if x in b.objects:
            return b.size(x)
        return store.size(x) if store.exists(x) else None

    try:
        trees, blobs = _graph(pkg, read, size, names=True)
    except BadBundle:
        raise
    except IntegrityError as e:
        raise bad(label, str(e)) from None
    reached = {b.hash, *trees, *blobs}
    extra = sorted(set(b.objects) - reached)
    if extra:
        raise bad(label, f"object {extra[0][:12]} is not reached from the package"
                  f"{f' (nor are {len(extra) - 1} more)' if len(extra) > 1 else ''}; a bundle "
                  f"holds only what its package uses")
    return pkg, sorted({*trees, *blobs})


def import_bundle(repo, zip_path, max_bytes: int | None = None,
                  max_ratio: float | None = None) -> dict:
    """Install a bundle zip; returns {"name","version","hash","new"} (`new` is False when the
    identical package was already installed). Checks the bundle whole and verifies every
    object before writing anything; on any error the repository is unchanged (nothing staged
    is left behind). Dependencies are not checked here (see `add`)."""
    mb, mr = _bounds(repo, max_bytes, max_ratio)
    store = repo.objects
    with BundleReader(zip_path, mb, mr) as b:
        pkg, refs = _inspect(repo, b)
        name, version, h = pkg["name"], pkg["version"], b.hash
        existing = read_ref(repo.package_ref_path(name, version))
        if existing is not None and existing["hash"] != h:
            raise UsageError(f"package {name}@{version} is already installed with another hash "
                             f"({existing['hash'][:12]}); remove it first with "
                             f"'e3 remove {name}@{version}' or bump the version")
        store.tmp.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=store.tmp, prefix="import-"))
        try:
            staged: dict[str, Path] = {}
            for oh in [x for x in refs if x in b.objects] + [h]:
                if store.exists(oh):
                    b.copy_object(oh, None)  # verify the bundle, keep ours
                    continue
                p = stage / oh
                with open(p, "wb") as f:
                    b.copy_object(oh, f)  # never past the size checked in _inspect
                    if FSYNC:
                        f.flush()
                        os.fsync(f.fileno())
                staged[oh] = p
            # install: leaves first (trees/blobs), then the package object, then the ref
            for oh in [x for x in refs if x in staged] + ([h] if h in staged else []):
                _install_file(store, staged[oh], oh)
            with _lock(repo):
                new = _write_pkg_ref(repo, name, version, h)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return {"name": name, "version": version, "hash": h, "new": new}


def _install_file(store, src: Path, h: str) -> None:
    dest = store.path(h)
    if dest.exists():
        return
    dest.parent.mkdir(exist_ok=True)
    os.chmod(src, 0o444)
    os.replace(src, dest)


# -- export ----------------------------------------------------------------------------------
def export_bundle(repo, name: str, version: str | None, zip_path) -> dict:
    """Write installed `name@version` (default: highest) to a deterministic bundle zip; returns
    {"path","hash","name","version"}. Export → import elsewhere → export gives identical bytes."""
    ref = resolve_ref(repo, name, version)
    h = ref["hash"]
    objs = reachable(repo, h)
    missing = [x for x in objs if not repo.objects.exists(x)]
    if missing:
        raise IntegrityError(f"{name}@{ref['version']} references missing object {missing[0][:12]}; "
                             f"run 'e3 fsck'")
    path = write_bundle(zip_path, ref["name"], ref["version"], h, objs, repo.objects.open,
                        repo.objects.size)
    return {"path": str(path), "hash": h, "name": ref["name"], "version": ref["version"]}


# -- remove ----------------------------------------------------------------------------------
def remove(repo, name: str, version: str | None = None, force: bool = False) -> list[str]:
    """Remove the ref of `name@version` (every version when None); objects stay until gc.
    Refuses, unless `force`, when another installed package would lose its only version
    satisfying its dependency. Returns the removed `name@version` strings, sorted."""
    with _lock(repo):
        inst = installed(repo)
        if name not in inst:
            raise NotFound("package", name, inst, hint="see 'e3 packages'")
        if version is None:
            gone = sorted(inst[name], key=_vkey)
        elif version in inst[name]:
            gone = [version]
        else:
            raise NotFound("version", f"{name}@{version}", [f"{name}@{v}" for v in inst[name]],
                           hint=f"installed: {', '.join(sorted(inst[name], key=_vkey))}")
        if not force:
            left = [v for v in inst[name] if v not in gone]
            for other, versions in sorted(inst.items()):
                for ov, oh in sorted(versions.items()):
                    if other == name and ov in gone:
                        continue
                    c = _deps_of(repo, oh).get(name)
                    if c is not None and not any(Constraint(c).allows(v) for v in left
                                                 if _vkey(v)[0] == 0):
                        raise UsageError(f"{other}@{ov} depends on {name} {c}; remove "
                                         f"{other}@{ov} first, or pass --force")
        for v in gone:
            try:
                os.unlink(repo.package_ref_path(name, v))
            except FileNotFoundError:
                pass
        try:
            (repo.packages_dir / name).rmdir()
        except OSError:
            pass
    return [f"{name}@{v}" for v in gone]


def _deps_of(repo, h: str) -> dict:
    try:
        return read_package(repo, h).get("dependencies", {})
    except E3Error:
        return {}


# -- add and dependency resolution -----------------------------------------------------------
def registry_index(registry) -> dict[str, dict[str, Path]]:
    """{name: {version: zip path}} of `<name>-<version>.zip` files in registry directories."""
    dirs = [registry] if isinstance(registry, (str, os.PathLike)) else list(registry or [])
    out: dict[str, dict[str, Path]] = {}
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise UsageError(f"registry '{d}' is not a directory; pass --registry DIR holding "
                             f"<name>-<version>.zip files")
        for f in sorted(d.iterdir()):
            if not f.name.endswith(".zip") or not f.is_file():
                continue
            stem = f.name[:-4]
            for i in [i for i, c in enumerate(stem) if c == "-"]:
                n, v = stem[:i], stem[i + 1:]
                try:
                    Version.parse(v)
                except UsageError:
                    continue
                if ident_problem(n) is None:
                    out.setdefault(n, {}).setdefault(v, f)
                break
    return out


def _pick(index: dict, name: str, spec: str | None, registry) -> tuple[str, Path]:
    if name not in index:
        raise NotFound("package", name, index, hint=f"registry {registry} has "
                       f"{', '.join(sorted(index)) or 'no packages'}")
    versions = index[name]
    if spec is None:
        v = max(versions, key=_vkey)
    elif spec in versions:
        v = spec
    else:
        v = Constraint(spec).best(versions)
        if v is None:
            raise NotFound("version", f"{name}@{spec}", (), hint=f"registry has "
                           f"{', '.join(sorted(versions, key=_vkey))}")
    return v, versions[v]


def _is_zip_spec(spec: str) -> bool:
    return spec.endswith(".zip") or os.sep in spec or "/" in spec or Path(spec).is_file()


def add(repo, spec: str, registry=None, max_bytes: int | None = None,
        max_ratio: float | None = None) -> dict:
    """Install `spec`: a bundle zip path, or `NAME`, `NAME@VER`, `NAME@CONSTRAINT` from a
    registry directory (or list of them) of `<name>-<version>.zip` files. Dependencies must be
    satisfied by installed packages; when a registry is given, missing ones are added from it
    first. Returns {"name","version","hash","new","added":[{"name","version","hash"}]} where
    `added` lists every package newly installed (dependencies first)."""
    index = registry_index(registry) if registry else None
    if Path(spec).is_dir():
        raise UsageError(f"'{spec}' is a directory; build it first with 'e3 build {spec}' and "
                         f"add the zip")
    if _is_zip_spec(spec):
        zips = [Path(spec)]
        if not zips[0].is_file():
            raise UsageError(f"bundle '{spec}' does not exist; check the path, or install by "
                             f"name with 'e3 add NAME --registry DIR'")
    else:
        name, ver = parse_spec(spec)
        if index is None:
            raise UsageError(f"'{spec}' is not a bundle file; to install by name pass "
                             f"--registry DIR (or set [packages] registries in e3.toml)")
        zips = [_pick(index, name, ver, registry)[1]]
    # resolve: depth-first, dependencies before dependents
    inst = {n: set(vs) for n, vs in installed(repo).items()}
    planned: list[tuple[Path, dict]] = []
    chosen: dict[str, set[str]] = {}
    visiting: list[str] = []

    def have(n: str) -> set[str]:
        return inst.get(n, set()) | chosen.get(n, set())

    def plan(zp: Path) -> dict:
        ph, pkg = peek_bundle(repo, zp, max_bytes, max_ratio)
        key = f"{pkg['name']}@{pkg['version']}"
        if key in visiting:
            raise UsageError(f"dependency cycle: {' -> '.join(visiting + [key])}; remove one of "
                             f"these dependencies")
        old = read_ref(repo.package_ref_path(pkg["name"], pkg["version"]))
        if old is not None and old["hash"] != ph:
            raise UsageError(f"package {key} is already installed with another hash "
                             f"({old['hash'][:12]}); remove it first with 'e3 remove {key}' "
                             f"or bump the version")
        visiting.append(key)
        for dep, c in sorted(pkg.get("dependencies", {}).items()):
            try:
                con = Constraint(c)
            except UsageError as e:
                raise UsageError(f"{key} has a bad constraint for {dep}: {e}") from None
            ok = [v for v in have(dep) if _vkey(v)[0] == 0 and con.allows(v)]
            if ok:
                continue
            if index is not None and dep in index and con.best(index[dep]):
                plan(index[dep][con.best(index[dep])])
                continue
            now = sorted(have(dep), key=_vkey)
            if now:
                msg = (f"{key} needs {dep} {c}, but installed {dep} versions are "
                       f"{', '.join(now)}; add a matching version")
            else:
                msg = f"{key} needs {dep} {c}, but {dep} is not installed; add it first"
            if index is not None:
                avail = sorted(index.get(dep, {}), key=_vkey)
                msg += (f" (registry has {dep} {', '.join(avail)})" if avail
                        else f" (registry has no {dep})")
            else:
                msg += f" (e3 add {dep}@'{c}' --registry DIR)"
            raise UsageError(msg)
        visiting.pop()
        if pkg["version"] not in chosen.get(pkg["name"], set()):
            chosen.setdefault(pkg["name"], set()).add(pkg["version"])
            planned.append((zp, pkg))
        return pkg

    plan(zips[0])
    results = [import_bundle(repo, zp, max_bytes, max_ratio) for zp, _ in planned]
    top = dict(results[-1])
    top["added"] = [{k: r[k] for k in ("name", "version", "hash")} for r in results if r["new"]]
    return top


__all__ = ["add", "check_name", "export_bundle", "import_bundle", "install", "installed",
           "list_packages", "module_files", "object_graph", "parse_package", "parse_spec", "peek_bundle",
           "reachable", "read_package", "registry_index", "remove", "resolve", "resolve_ref",
           "task_hash", "task_object"]
