"""Running a task's Python code: module namespaces per content hash, inputs, outputs.

Shared by the pool worker process (`worker_main`) and the in-process `inline` runtime, so it
imports only the standard library and `core.canon` (worker start-up stays fast).

Module namespaces. The modules of a package are materialized once per content hash into
`<cache>/modules/<hash>/` and imported as the submodules of a synthetic package
`_e3m_<hash>` (module `steps.py` becomes `_e3m_<hash>.steps`). Every module loaded from that
directory gets its own `__builtins__` whose `__import__` maps absolute imports of the bundle's
top-level names (`import helpers`, `from pkg.sub import x`) into the same namespace. So two
package versions with the same module names never collide, each version is imported once per
process, and user code imports its siblings as if its directory were on `sys.path` — without
touching `sys.path` or the engine's own modules. (`importlib.import_module("helpers")` from
task code is not remapped.)
"""
from __future__ import annotations

import builtins
import importlib
import importlib.machinery
import importlib.util
import inspect
import json
import os
import re
import shutil
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, Callable

from ..core import canon

PREFIX = "_e3m_"
_HASH_RE = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
_ENTRY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
REASON_MAX = 300


class TaskError(Exception):
    """A task failure with a one-line reason (and the budget it exceeded, if any)."""

    def __init__(self, reason: str, budget: str | None = None, replace_worker: bool = False):
        super().__init__(reason)
        self.reason = one_line(reason)
        self.budget = budget
        self.replace_worker = replace_worker


def one_line(text: str, limit: int = REASON_MAX) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def exc_reason(exc: BaseException) -> str:
    """'ValueError: bad value' (first line of the message only)."""
    msg = str(exc).strip().splitlines()
    name = type(exc).__name__
    return one_line(f"{name}: {msg[0]}" if msg and msg[0] else name)


# -- materializing modules (engine side) ------------------------------------------------------

def modules_dir(cache_dir: str | os.PathLike, modules_hash: str) -> Path:
    if not _HASH_RE.match(modules_hash or "") or modules_hash in (".", ".."):
        raise TaskError(f"invalid modules hash {modules_hash!r}")
    return Path(cache_dir) / "modules" / modules_hash


def _safe_relpath(rel: str) -> Path:
    p = Path(rel)
    if not rel or p.is_absolute() or "\\" in rel or any(part in ("", ".", "..") for part in
                                                        rel.split("/")):
        raise TaskError(f"module path {rel!r} must be relative, without '..'")
    return p


def materialize(cache_dir: str | os.PathLike, modules_hash: str,
                modules: Callable[[], dict[str, bytes]] | None) -> Path:
    """Write the module set once per hash into `<cache>/modules/<hash>/`, atomically (a temp
    directory renamed into place; a concurrent writer of the same hash wins harmlessly)."""
    return _materialize(modules_dir(cache_dir, modules_hash), modules_hash, modules)


def bundle_dir(cache_dir: str | os.PathLike, modules_hash: str) -> Path:
    """Where a shell task's `{bundle}` of module set `modules_hash` lives."""
    return modules_dir(cache_dir, modules_hash).parent.parent / "bundles" / modules_hash


def materialize_bundle(cache_dir: str | os.PathLike, modules_hash: str,
                       modules: Callable[[], dict[str, bytes]] | None) -> Path:
    """The module set once per hash in `<cache>/bundles/<hash>/`, read-only (files 0o444,
    directories 0o555), written to a temp directory and renamed into place: a concurrent run
    sees it whole or not at all. Apart from `modules/<hash>/`, which python workers import
    from (and write `__pycache__` into)."""
    return _materialize(bundle_dir(cache_dir, modules_hash), modules_hash, modules,
                        read_only=True)


def _materialize(target: Path, modules_hash: str, modules, read_only: bool = False) -> Path:
    if target.is_dir():
        return target
    if modules is None:
        raise TaskError(f"modules {modules_hash[:12]} are not materialized and no source was given")
    try:
        files = modules()
    except Exception as e:  # the repository could not produce them
        raise TaskError(f"cannot load modules {modules_hash[:12]}: {exc_reason(e)}") from e
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{modules_hash}-{os.getpid()}-{threading.get_ident()}"
    remove_tree(tmp)
    try:
        tmp.mkdir()
        for rel in sorted(files):
            dest = tmp / _safe_relpath(rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            data = files[rel]
            dest.write_bytes(data.encode() if isinstance(data, str) else bytes(data))
        if read_only:
            _make_read_only(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        remove_tree(tmp)
    return target


def _make_read_only(top: Path) -> None:
    for root, dirs, files in os.walk(top, topdown=False):
        for f in files:
            os.chmod(os.path.join(root, f), 0o444)
        os.chmod(root, 0o555)


def remove_tree(path: str | os.PathLike) -> None:
    """rm -rf, read-only directories included; quiet when it is not there."""
    def writable(func, p, _exc):
        try:
            os.chmod(os.path.dirname(p) or ".", 0o755)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o755)
            func(p)
        except OSError:
            pass

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=writable)


def tree_state(top: str | os.PathLike) -> dict | None:
    """What a (read-only) directory holds, to tell whether a task changed it: every entry's
    kind, mode, size, inode and modification times; a directory by its sorted entries, so
    `__pycache__` (which a python started by the task may write into it when run as root) is
    left out. None when `top` is not a directory."""
    out: dict[str, tuple] = {}
    stack = [""]
    try:
        if not os.path.isdir(top):
            return None
        while stack:
            rel = stack.pop()
            names = []
            with os.scandir(os.path.join(top, rel) if rel else top) as it:
                for e in it:
                    if e.name == "__pycache__":
                        continue
                    names.append(e.name)
                    sub = f"{rel}/{e.name}" if rel else e.name
                    st = e.stat(follow_symlinks=False)
                    if e.is_dir(follow_symlinks=False):
                        out[sub] = ("d", st.st_mode, st.st_ino)
                        stack.append(sub)
                    else:
                        out[sub] = ("f", st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns,
                                    st.st_ctime_ns)
            out[rel + "/"] = (os.stat(os.path.join(top, rel) if rel else top).st_mode,
                              tuple(sorted(names)))
    except OSError:
        return None
    return out


# -- module namespaces (worker and inline side) ------------------------------------------------

def _top_names(directory: Path) -> frozenset[str]:
    names = set()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return frozenset()
    for e in entries:
        if e.name.startswith(".") or e.name == "__pycache__":
            continue
        if e.is_dir():
            if e.name.isidentifier():
                names.add(e.name)
        elif e.name.endswith(".py") and e.name[:-3].isidentifier():
            names.add(e.name[:-3])
    return frozenset(names)


class _Space:
    def __init__(self, key: str, directory: Path):
        self.pkg = PREFIX + re.sub(r"\W", "_", key)
        self.dir = directory
        self.names = _top_names(directory)
        real_import = builtins.__import__
        pkg, names, modules = self.pkg, self.names, sys.modules

        def __import__(name, globals=None, locals=None, fromlist=(), level=0):
            if level == 0:
                top = name.partition(".")[0]
                if top in names:
                    mod = real_import(f"{pkg}.{name}", globals, locals, fromlist, 0)
                    return mod if fromlist else modules[f"{pkg}.{top}"]
            return real_import(name, globals, locals, fromlist, level)

        self.builtins = dict(builtins.__dict__)
        self.builtins["__import__"] = __import__
        spec = importlib.machinery.ModuleSpec(self.pkg, None, is_package=True)
        spec.submodule_search_locations = [str(directory)]
        module = importlib.util.module_from_spec(spec)
        module.__path__ = [str(directory)]
        sys.modules[self.pkg] = module


class _SpaceLoader(importlib.machinery.SourceFileLoader):
    space: _Space

    def exec_module(self, module):
        module.__dict__["__builtins__"] = self.space.builtins
        super().exec_module(module)


class _SpaceFinder:
    """Meta-path finder for `_e3m_<hash>.*`: standard file lookup, our loader."""

    def __init__(self, spaces: "ModuleSpaces"):
        self.spaces = spaces

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(PREFIX) or "." not in fullname:
            return None
        space = self.spaces.by_pkg(fullname.partition(".")[0])
        if space is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and type(spec.loader) is importlib.machinery.SourceFileLoader:
            loader = _SpaceLoader(fullname, spec.origin)
            loader.space = space
            spec.loader = loader
        return spec

    def invalidate_caches(self):
        pass


class ModuleSpaces:
    """Imports task entry points, one namespace per modules hash, each imported once."""

    def __init__(self) -> None:
        self._by_pkg: dict[str, _Space] = {}
        self._lock = threading.Lock()
        self._finder = _SpaceFinder(self)
        sys.meta_path.insert(0, self._finder)

    def by_pkg(self, pkg: str) -> _Space | None:
        return self._by_pkg.get(pkg)

    def space(self, modules_hash: str, directory: str | os.PathLike) -> _Space:
        pkg = PREFIX + re.sub(r"\W", "_", modules_hash)
        sp = self._by_pkg.get(pkg)
        if sp is None:
            with self._lock:
                sp = self._by_pkg.get(pkg)
                if sp is None:
                    sp = _Space(modules_hash, Path(directory))
                    self._by_pkg[pkg] = sp
        return sp

    def resolve(self, entry: str, modules_hash: str | None = None,
                directory: str | os.PathLike | None = None) -> Callable:
        """The callable named by `module:function` (attribute paths allowed after the colon).
        Without a modules hash the module is imported from the engine's own `sys.path`."""
        if not isinstance(entry, str) or not _ENTRY_RE.match(entry):
            raise TaskError(f"task entry {entry!r} must look like 'module:function'")
        modname, _, attr = entry.partition(":")
        if modules_hash:
            sp = self.space(modules_hash, directory)
            if modname.partition(".")[0] not in sp.names:
                raise TaskError(f"cannot import {modname}: no such module in the package's "
                                f"modules ({', '.join(sorted(sp.names)) or 'none'})")
            full = f"{sp.pkg}.{modname}"
        else:
            full = modname
        try:
            obj: Any = importlib.import_module(full)
        except TaskError:
            raise
        except BaseException as e:
            print_user_traceback(e)
            raise TaskError(f"cannot import {modname}: {exc_reason(e)}",
                            budget=None) from e
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise TaskError(f"task entry {entry!r}: {modname} has no attribute {attr!r}") from None
        if not callable(obj):
            raise TaskError(f"task entry {entry!r} is not callable")
        return obj


# -- inputs and outputs -----------------------------------------------------------------------

def load_inputs(inputs) -> list:
    """Decode input files in order: `json` → the JSON value, `raw` → bytes.
    `inputs` holds (path, format[, name]) tuples or objects with those attributes."""
    values = []
    for i, ref in enumerate(inputs):
        path, fmt, name = _ref(ref)
        label = f"input {i} ({name})" if name else f"input {i}"
        try:
            data = read_file(path)
        except OSError as e:
            raise TaskError(f"cannot read {label} at {path}: {e.strerror or e}") from e
        if fmt == "json":
            try:
                values.append(json.loads(data))
            except ValueError as e:
                raise TaskError(f"{label} is not valid JSON: {exc_reason(e)}") from e
        elif fmt == "raw":
            values.append(data)
        else:
            raise TaskError(f"{label} has unknown format {fmt!r} (expected raw or json)")
    return values


def _ref(ref) -> tuple[str, str, str]:
    if isinstance(ref, (tuple, list)):
        path, fmt = ref[0], ref[1]
        name = ref[2] if len(ref) > 2 else ""
        return str(path), fmt, name
    return str(ref.path), ref.format, getattr(ref, "name", "")


def encode_output(value: Any) -> tuple[bytes, str]:
    """`bytes` → (the bytes, "raw"); a JSON-able value → (canonical JSON, "json")."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), "raw"
    if inspect.isgenerator(value) or inspect.isasyncgen(value):
        raise TaskError("task returned a generator; only inline tasks run by the executor may "
                        "yield")
    if inspect.iscoroutine(value):
        value.close()
        raise TaskError("task returned a coroutine; tasks must be plain functions")
    try:
        return canon.dumps(value), "json"
    except (TypeError, ValueError, RecursionError) as e:
        raise TaskError(f"output is not JSON-serializable: {exc_reason(e)}") from e


def read_file(path: str) -> bytes:
    """A file's bytes through bare descriptors (a Python file object costs three more system
    calls, paid for every input of every task)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                return b"".join(chunks)
            chunks.append(b)
    finally:
        os.close(fd)


def write_staged(path: str | os.PathLike, data: bytes) -> None:
    """Write a task's output to its staged file, created here: the file is the attempt's own
    and is read only after the task has answered ok (a task that dies mid-write fails, and its
    staged file is removed), so no temp file and rename are needed. A file already at `path`
    (left by a killed command; it may be a hard link into the object store) is replaced, never
    written into."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        os.unlink(path)
        fd = os.open(path, flags, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def print_user_traceback(exc: BaseException, skip: int = 0, file=None) -> None:
    """Print the exception's traceback to (the task's) stderr, without our own frames."""
    tb = exc.__traceback__
    for _ in range(skip):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    try:
        text = "".join(traceback.format_exception(type(exc), exc, tb))
        (file or sys.stderr).write(text)
        (file or sys.stderr).flush()
    except Exception:  # a broken log must not hide the failure itself
        pass


def call(fn: Callable, args: list) -> Any:
    """Call the task function; exceptions propagate with this frame first in the traceback."""
    return fn(*args)
