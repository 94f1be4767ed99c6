"""Installed packages: refs under `.e3/packages/<name>/<version>`, bundle import and export,
dependency resolution, task hashes.

A package ref is canonical JSON `{"kind":"package","hash":h,"name":…,"version":…}` naming a
package object (docs/internals.md). Import is all-or-nothing:

1. the zip is checked (names, sizes, manifest) before anything is extracted;
2. every object is streamed into a staging directory `.e3/objects/tmp/import-*` and its hash
   verified; the package object and every tree it reaches are parsed and every reference must be
   in the bundle or already in the store;
3. only then are objects renamed into the store (each rename atomic, blobs first, the package
   object last) and, last of all, the ref is written atomically.

A SIGKILL at any moment therefore leaves either no ref (plus complete, unreferenced objects and
a stale staging directory that gc removes past min-age) or a ref whose whole object graph exists.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from ..core import canon
from ..core.errors import E3Error, IntegrityError, NotFound, UsageError, did_you_mean
from ..core.hashing import is_hash
from ..core.semver import Constraint, Version
from .atomic import FSYNC
from .bundle import MAX_BYTES, MAX_RATIO, BundleReader, write_bundle
from .refs import read_ref, write_ref

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
LOCK_WAIT = 30.0

Reader = Callable[[str], bytes]


# -- names and specs -----------------------------------------------------------------------
def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise UsageError(f"invalid package name {name!r}: use letters, digits, _ . - "
                         f"(e.g. 'forecast')")
    return name


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
    except ValueError:
        raise IntegrityError(f"{label} is not valid JSON") from None
    if not isinstance(obj, dict) or obj.get("e3") != "package":
        raise IntegrityError(f"{label} is not a package object")
    for k in ("name", "version"):
        if not isinstance(obj.get(k), str):
            raise IntegrityError(f"{label} has no {k}")
    try:
        check_name(obj["name"])
        Version.parse(obj["version"])
    except UsageError as e:
        raise IntegrityError(f"{label}: {e}") from None
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


def _walk_refs(pkg: dict, read: Reader, sizes: Callable[[str], int | None] | None = None) -> list[str]:
    """Every object hash reachable from a package object (excluding the package object itself),
    sorted. `parent` is history metadata, not a reference. Checks tree shapes and blob sizes."""
    out: set[str] = set()
    stack = [pkg["modules"]["hash"], pkg["datasets"]["hash"]]
    while stack:
        h = stack.pop()
        if h in out:
            continue
        out.add(h)
        try:
            t = canon.loads(read(h))
        except NotFound:
            raise IntegrityError(f"tree {h[:12]} is missing") from None
        except ValueError:
            raise IntegrityError(f"tree {h[:12]} is not valid JSON") from None
        if not isinstance(t, dict) or t.get("e3") != "tree" or not isinstance(t.get("entries"), dict):
            raise IntegrityError(f"object {h[:12]} should be a tree but is not")
        for name, e in sorted(t["entries"].items()):
            if not isinstance(e, dict) or not is_hash(e.get("hash", "")):
                raise IntegrityError(f"tree {h[:12]} entry '{name}' is malformed")
            if e.get("kind") == "tree":
                stack.append(e["hash"])
            elif e.get("kind") == "blob":
                if sizes is not None:
                    s = sizes(e["hash"])
                    if s is None:
                        raise IntegrityError(f"blob {e['hash'][:12]} ('{name}') is missing")
                    if e.get("size") is not None and s != e["size"]:
                        raise IntegrityError(f"blob {e['hash'][:12]} ('{name}') has {s} bytes, "
                                             f"its tree says {e['size']}")
                out.add(e["hash"])
            else:
                raise IntegrityError(f"tree {h[:12]} entry '{name}' has unknown kind {e.get('kind')!r}")
    return sorted(out)


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
    """Check a bundle and read its package object without touching the repository; returns
    (package object hash, package object)."""
    mb, mr = _bounds(repo, max_bytes, max_ratio)
    with BundleReader(zip_path, mb, mr) as b:
        pkg = parse_package(b.read_object(b.hash), f"bundle '{Path(zip_path).name}'")
        _check_manifest(b, pkg)
        return b.hash, pkg


def _check_manifest(b: BundleReader, pkg: dict) -> None:
    if (pkg["name"], pkg["version"]) != (b.name, b.version):
        raise IntegrityError(f"bundle '{b.path.name}': manifest says {b.name}@{b.version} but "
                             f"the package object is {pkg['name']}@{pkg['version']}; rebuild it")


def import_bundle(repo, zip_path, max_bytes: int | None = None,
                  max_ratio: float | None = None) -> dict:
    """Install a bundle zip; returns {"name","version","hash","new"} (`new` is False when the
    identical package was already installed). Verifies every object's hash and every reference
    before writing anything; on any error the repository is unchanged. Dependencies are not
    checked here (see `add`)."""
    mb, mr = _bounds(repo, max_bytes, max_ratio)
    label = Path(zip_path).name
    store = repo.objects
    with BundleReader(zip_path, mb, mr) as b:
        pkg = parse_package(b.read_object(b.hash), f"bundle '{label}'")
        _check_manifest(b, pkg)
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
            sizes: dict[str, int] = {}
            for oh in sorted(b.objects):
                if store.exists(oh):
                    sizes[oh] = b.copy_object(oh, None)  # verify the bundle, keep ours
                    continue
                p = stage / oh
                with open(p, "wb") as f:
                    sizes[oh] = b.copy_object(oh, f)
                    if FSYNC:
                        f.flush()
                        os.fsync(f.fileno())
                staged[oh] = p

            def read(x: str) -> bytes:
                if x in staged:
                    return staged[x].read_bytes()
                if x in sizes or store.exists(x):
                    return store.read(x)
                raise IntegrityError(f"bundle '{label}': {name}@{version} references object "
                                     f"{x[:12]}, which is neither in the bundle nor installed")

            def size(x: str) -> int | None:
                if x in sizes:
                    return sizes[x]
                return store.size(x) if store.exists(x) else None

            try:
                refs = _walk_refs(pkg, read, size)
            except IntegrityError as e:
                raise IntegrityError(f"bundle '{label}': {e}; rebuild or re-export it") from None
            missing = [x for x in refs if size(x) is None]
            if missing:
                raise IntegrityError(f"bundle '{label}': {name}@{version} references object "
                                     f"{missing[0][:12]}, which is neither in the bundle nor "
                                     f"installed; rebuild or re-export it")
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
                if NAME_RE.match(n):
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
