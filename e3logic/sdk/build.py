"""Loading an `e3pkg.py` and building it into a package object and a deterministic bundle zip.

The object graph is built in a `MemoryStore` (modules tree, datasets tree, package object) and
written with `repo.bundle.write_bundle`; nothing here reads a clock, so identical sources give a
byte-identical zip.
"""
from __future__ import annotations

import builtins
import io
import sys
import traceback
from pathlib import Path

from ..core import canon
from ..core.errors import BuildError, E3Error
from ..repo.bundle import write_bundle
from ..repo.objects import MemoryStore
from ..repo.packages import MAX_PACKAGE_BYTES, object_graph
from ..repo.trees import Trees, blob_entry
from .builder import PackageBuilder, _loading

DEFAULT_OUTDIR = "dist"


def load(directory) -> PackageBuilder:
    """Execute `directory/e3pkg.py` and return its `package` (a PackageBuilder). The directory is
    on sys.path only while the file runs; modules it imported from there are forgotten after."""
    d = Path(directory).resolve()
    f = d / "e3pkg.py"
    if not f.is_file():
        raise BuildError(f"no e3pkg.py in {d}; create one that sets package = sdk.package(...) "
                         f"(see docs/packages.md)")
    try:
        code = compile(f.read_bytes(), str(f), "exec")
    except SyntaxError as e:
        raise BuildError(f"{f.name} line {e.lineno}: syntax error: {e.msg}; fix {f}") from None
    g = {"__name__": "__e3pkg__", "__file__": str(f), "__builtins__": builtins}
    saved_path = list(sys.path)
    before = set(sys.modules)
    sys.path.insert(0, str(d))
    _loading.append(d)
    try:
        exec(code, g)
    except E3Error as e:  # several problems (package.validate() in e3pkg.py): each its line
        at = f"{f.name} line {_lineno(e, f)}: "
        raise BuildError("\n".join(at + x for x in str(e).splitlines() or [""])) from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        raise BuildError(f"{f.name} line {_lineno(e, f)}: {type(e).__name__}: {e}; fix {f}") from None
    finally:
        _loading.pop()
        sys.path[:] = saved_path
        for name in sorted(set(sys.modules) - before):
            mf = getattr(sys.modules.get(name), "__file__", None)
            if mf and Path(mf).resolve().is_relative_to(d):
                del sys.modules[name]
    pkg = g.get("package")
    if not isinstance(pkg, PackageBuilder):
        raise BuildError(f"{f} must set package = sdk.package(name, version); it set "
                         f"{'nothing' if pkg is None else type(pkg).__name__}")
    return pkg


def _lineno(exc: BaseException, f: Path) -> str:
    line = "?"
    for fr in traceback.extract_tb(exc.__traceback__):
        if fr.filename == str(f):
            line = str(fr.lineno)
    return line


def collect_module_files(pkg: PackageBuilder, exclude=()) -> list[tuple[str, Path]]:
    """See `PackageBuilder.module_files`."""
    return pkg.module_files(exclude)


def build_objects(pkg: PackageBuilder, store=None, exclude=()) -> tuple[str, dict, object]:
    """Validate `pkg` and write its objects (module blobs, modules tree, dataset blobs, datasets
    tree, package object) into `store` (a new MemoryStore by default).
    Returns (package object hash, package object, store)."""
    pkg.validate()
    store = store if store is not None else MemoryStore()
    trees = Trees(store)
    mods = {}
    for rel, full in collect_module_files(pkg, exclude):
        data = full.read_bytes()
        mods[rel] = blob_entry(store.write(data), len(data), "raw")
    modules_root = trees.set_many(trees.empty, mods) if mods else trees.empty
    ds = {}
    for path, spec in sorted(pkg.datasets.items()):
        if "file" in spec:
            full = pkg.base_dir / spec["file"]
            try:
                data = full.read_bytes()
            except OSError as e:
                raise BuildError(f"dataset '{path}': cannot read '{spec['file']}' ({e.strerror})") from None
        else:
            data = canon.dumps(spec["value"])
        ds[path] = blob_entry(store.write(data), len(data), spec["format"])
    datasets_root = trees.set_many(trees.empty, ds) if ds else trees.empty
    obj = {
        "e3": "package", "name": pkg.name, "version": pkg.version,
        "dependencies": dict(sorted(pkg.dependencies.items())),
        "modules": {"kind": "tree", "hash": modules_root},
        "tasks": {n: dict(t) for n, t in sorted(pkg.tasks.items())},
        "dataflows": {n: dict(df) for n, df in sorted(pkg.dataflows.items())},
        "datasets": {"kind": "tree", "hash": datasets_root},
        "parent": None, "message": "",
    }
    data = canon.dumps(obj)
    if len(data) > MAX_PACKAGE_BYTES:  # `e3 add` would refuse the bundle: say so now
        raise BuildError(f"package {pkg.name}@{pkg.version} is too large: its package object "
                         f"(the declarations of its {len(pkg.dataflows):,} dataflows and "
                         f"{len(pkg.tasks):,} tasks) would be {len(data):,} bytes, and e3 add "
                         f"accepts at most {MAX_PACKAGE_BYTES:,}; declare fewer dataflows in "
                         f"one package")
    h = store.write(data)
    return h, obj, store


def bundle_name(name: str, version: str) -> str:
    return f"{name}-{version}.zip"


def build(directory, outdir=None) -> dict:
    """Build `directory/e3pkg.py` to `<outdir or directory/dist>/<name>-<version>.zip`,
    byte-identical for identical sources. Returns {"name","version","path","hash"}."""
    d = Path(directory).resolve()
    pkg = load(d)
    out = Path(outdir) if outdir is not None else d / DEFAULT_OUTDIR
    h, obj, store = build_objects(pkg, exclude=[out])
    hashes = object_graph(h, store.read)
    path = write_bundle(out / bundle_name(pkg.name, pkg.version), pkg.name, pkg.version, h,
                        hashes, lambda x: io.BytesIO(store.read(x)),
                        lambda x: len(store.read(x)))
    return {"name": pkg.name, "version": pkg.version, "path": str(path), "hash": h}
