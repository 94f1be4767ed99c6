"""The `e3pkg.py` authoring API: `package(name, version)` returns a `PackageBuilder`.

Each method checks its own arguments at once (a `BuildError` naming the argument and the fix);
checks that need the whole package (unknown tasks, producers, missing inputs, cycles) run in
`PackageBuilder.validate()` (see `validate.py`) when the package is built.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from ..core import canon
from ..core.errors import BuildError, UsageError
from ..core.paths import LEASE_MODES, check_path, ident_problem, path_problem, show
from ..core.runtimes import DEFAULT as DEFAULT_RUNTIME
from ..core.runtimes import RUNTIMES as _RUNTIMES
from ..core.runtimes import argv_problem
from ..core.semver import Constraint, Version

RUNTIMES = tuple(_RUNTIMES)  # the names, from the one table (core/runtimes.py)
PROFILES = ("ro", "rw", "hybrid")
BUDGET_KEYS = ("wall_s", "cpu_s", "io_bytes", "mem_mb")
FORMATS = ("raw", "json")
SKIP_DIRS = {"__pycache__"}
SKIP_SUFFIXES = (".pyc", ".pyo")
ENTRY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")

#: set by `load()` while an e3pkg.py executes: the directory relative paths are taken from
_loading: list[Path] = []


def output_path(dataflow: str, output: str) -> str:
    """Where a dataflow's output lands: `outputs/<dataflow>/<output>`."""
    return f"outputs/{dataflow}/{output}"


def _ident(kind: str, name: Any) -> str:
    why = ident_problem(name)
    if why:
        raise BuildError(f"invalid {kind} name {show(name)}: {why}, e.g. 'clean'")
    return name


def _path(p: Any, what: str) -> str:
    if not isinstance(p, str):
        raise BuildError(f"{what} must be a string like 'inputs/sales', not {type(p).__name__}")
    try:
        return check_path(p, what)
    except UsageError as e:
        raise BuildError(str(e)) from None


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and v not in (
        float("inf"), float("-inf"))


class PackageBuilder:
    """A package being declared. Every method returns the builder, so calls may be chained."""

    def __init__(self, name: str, version: str, dependencies: dict | None = None,
                 base_dir: Path | str | None = None):
        self.name = _ident("package", name)
        if not isinstance(version, str):
            raise BuildError(f"package version must be a string like '0.1.0', not {version!r}")
        try:
            Version.parse(version)
        except UsageError as e:
            raise BuildError(f"package {name}: {e}") from None
        self.version = version.strip()
        deps = dict(dependencies or {})
        for dep, c in deps.items():
            _ident("dependency", dep)
            if dep == name:
                raise BuildError(f"package {name} lists itself as a dependency; remove it")
            if not isinstance(c, str):
                raise BuildError(f"dependency {dep}: constraint must be a string like '^1.0'")
            try:
                Constraint(c)
            except UsageError as e:
                raise BuildError(f"dependency {dep}: {e}") from None
        self.dependencies = dict(sorted(deps.items()))
        if base_dir is None:
            base_dir = _loading[-1] if _loading else Path.cwd()
        self.base_dir = Path(base_dir).resolve()
        self.modules: list[str] = []                  # relative paths, in declaration order
        self.tasks: dict[str, dict] = {}
        self.datasets: dict[str, dict] = {}            # path -> {"file": rel, "format"} | {"value"}
        self.dataflows: dict[str, dict] = {}

    def __repr__(self) -> str:
        return (f"<PackageBuilder {self.name}@{self.version}: {len(self.modules)} modules, "
                f"{len(self.tasks)} tasks, {len(self.datasets)} datasets, "
                f"{len(self.dataflows)} dataflows>")

    # -- files ----------------------------------------------------------------------------
    def _local(self, rel: Any, what: str) -> tuple[str, Path]:
        """(normalised relative posix path, absolute path) of a file inside the package dir."""
        if not isinstance(rel, (str, os.PathLike)):
            raise BuildError(f"{what} must be a relative path string, not {type(rel).__name__}")
        raw = os.fspath(rel)
        if os.path.isabs(raw):
            raise BuildError(f"{what} '{raw}' is absolute; use a path relative to "
                             f"{self.base_dir}")
        full = (self.base_dir / raw).resolve()
        if not full.is_relative_to(self.base_dir):
            raise BuildError(f"{what} '{raw}' is outside the package directory {self.base_dir}; "
                             f"copy the file into it")
        if not full.exists():
            raise BuildError(f"{what} '{raw}' does not exist in {self.base_dir}; check the name")
        relp = full.relative_to(self.base_dir).as_posix()
        return ("." if relp == "" else relp), full

    def module(self, path: str) -> "PackageBuilder":
        """Bundle a source file, or every file of a directory (recursively; skips hidden files,
        `__pycache__` and compiled files), given relative to the e3pkg.py's directory."""
        rel, _ = self._local(path, "module path")
        if rel not in self.modules:
            self.modules.append(rel)
        return self

    def module_files(self, exclude=()) -> list[tuple[str, Path]]:
        """(relative posix path, absolute path) of every bundled module file, sorted. Directories
        are walked recursively, skipping hidden entries, __pycache__, compiled files and `exclude`
        (e.g. the build output directory)."""
        base = self.base_dir
        skip = [Path(x).resolve() for x in exclude]
        files: dict[str, Path] = {}

        def add(full: Path) -> None:
            real = full.resolve()
            if not real.is_relative_to(base):
                raise BuildError(f"module file '{full.relative_to(base).as_posix()}' links outside "
                                 f"the package directory {base}; copy the file into it")
            rel = full.relative_to(base).as_posix()
            why = path_problem(rel)
            if why:
                raise BuildError(f"module file {show(rel)} has a name e3 refuses ({why}); "
                                 f"rename it (see docs/packages.md, names)")
            files[rel] = real

        for rel in self.modules:
            full = base / rel if rel != "." else base
            if full.is_file():
                add(full)
                continue
            if not full.is_dir():
                raise BuildError(f"module path '{rel}' no longer exists in {base}")
            for root, dirs, names in os.walk(full):
                r = Path(root)
                dirs[:] = sorted(x for x in dirs if not x.startswith(".") and x not in SKIP_DIRS
                                 and (r / x).resolve() not in skip)
                for n in sorted(names):
                    if n.startswith(".") or n.endswith(SKIP_SUFFIXES):
                        continue
                    add(r / n)
        return sorted(files.items())

    # -- tasks ------------------------------------------------------------------------------
    def task(self, name: str, entry_or_argv, runtime: str = DEFAULT_RUNTIME) -> "PackageBuilder":
        """Declare a task: `module:function` for runtime `python`/`inline`, an argv list of
        strings (with `{inputs}`, `{input0}`…, `{output}`, `{bundle}`: a read-only directory
        holding the bundled module files) for runtime `shell` (a runtime whose
        `RuntimeSpec.argv` is set)."""
        _ident("task", name)
        if name in self.tasks:
            raise BuildError(f"task '{name}' is declared twice; give the second one another name")
        spec = _RUNTIMES.get(runtime) if isinstance(runtime, str) else None
        if spec is None:
            raise BuildError(f"task '{name}': unknown runtime {runtime!r}; use one of "
                             f"{', '.join(RUNTIMES)}")
        if spec.argv:
            if (not isinstance(entry_or_argv, (list, tuple)) or not entry_or_argv
                    or not all(isinstance(a, str) for a in entry_or_argv)):
                raise BuildError(f"task '{name}': a {runtime} task needs an argv list of "
                                 f"strings, e.g. ['sh', '-c', 'cat {{inputs}} > {{output}}'], "
                                 f"not {entry_or_argv!r}")
            why = argv_problem(entry_or_argv)
            if why:
                raise BuildError(f"task '{name}': {why}")
            self.tasks[name] = {"runtime": runtime, "argv": list(entry_or_argv)}
        else:
            if isinstance(entry_or_argv, (list, tuple)):
                takes = " or ".join(f"runtime='{n}'" for n, s in _RUNTIMES.items() if s.argv)
                raise BuildError(f"task '{name}': an argv list needs {takes}; a "
                                 f"{runtime} task takes 'module:function'")
            if not isinstance(entry_or_argv, str) or not ENTRY_RE.match(entry_or_argv):
                raise BuildError(f"task '{name}': entry {entry_or_argv!r} is not "
                                 f"'module:function' (e.g. 'steps:clean')")
            self.tasks[name] = {"runtime": runtime, "entry": entry_or_argv}
        return self

    # -- datasets -------------------------------------------------------------------------------
    def dataset(self, path: str, file: str | None = None, value: Any = None,
                format: str | None = None, **kw) -> "PackageBuilder":
        """Declare an input dataset: `file=` (raw bytes of a file in the package directory) or
        `value=` (a JSON value). `format="json"` with `file=` marks a JSON file (checked)."""
        if kw:
            raise BuildError(f"dataset '{path}': unknown argument(s) {', '.join(sorted(kw))}; "
                             f"use file=, value= or format=")
        p = _path(path, "dataset path")
        if p in self.datasets:
            raise BuildError(f"dataset '{p}' is declared twice; keep one declaration")
        has_value = value is not None
        if (file is None) == (not has_value):
            raise BuildError(f"dataset '{p}': give exactly one of file= (a file in the package) "
                             f"or value= (a JSON value)")
        if format is not None and format not in FORMATS:
            raise BuildError(f"dataset '{p}': unknown format {format!r}; use 'raw' or 'json'")
        if file is not None:
            rel, full = self._local(file, f"dataset '{p}' file")
            if not full.is_file():
                raise BuildError(f"dataset '{p}' file '{file}' is not a regular file")
            fmt = format or "raw"
            if fmt == "json":
                try:
                    canon.loads(full.read_bytes())
                except (ValueError, UnicodeDecodeError) as e:
                    raise BuildError(f"dataset '{p}' file '{file}' is not valid JSON ({e}); fix "
                                     f"it or drop format='json'") from None
            self.datasets[p] = {"file": rel, "format": fmt}
        else:
            if format not in (None, "json"):
                raise BuildError(f"dataset '{p}': value= datasets are JSON; drop format=")
            try:
                data = canon.dumps(value)
            except (TypeError, ValueError) as e:
                raise BuildError(f"dataset '{p}': value is not JSON-serialisable ({e}); use "
                                 f"numbers, strings, lists, dicts, booleans or file=") from None
            self.datasets[p] = {"value": canon.loads(data), "format": "json"}
        return self

    # -- dataflows -------------------------------------------------------------------------------
    def dataflow(self, name: str, task: str, inputs=(), output: str = "out", leases=(),
                 resources: dict | None = None, budget: dict | None = None,
                 profile: str | None = None, tags=()) -> "PackageBuilder":
        """Declare a dataflow: `task` applied to `inputs` (dataset paths, in order), writing
        `outputs/<name>/<output>`. Leases are (path, "read"|"write") pairs; resources map names
        to amounts; budget keys are wall_s, cpu_s, io_bytes, mem_mb; profile is ro/rw/hybrid
        (default rw with a write lease, else ro); tags are names fed to the rules as
        `tag(D, T)` facts (e.g. `tags=["volatile"]` for a project rule to rerun it)."""
        _ident("dataflow", name)
        if name in self.dataflows:
            raise BuildError(f"dataflow '{name}' is declared twice; give the second one another "
                             f"name")
        if not isinstance(task, str):
            raise BuildError(f"dataflow '{name}': task must be a task name string")
        if isinstance(inputs, str):
            inputs = [inputs]
        ins = [_path(i, f"dataflow '{name}' input") for i in inputs]
        dup = sorted({i for i in ins if ins.count(i) > 1})
        if dup:
            raise BuildError(f"dataflow '{name}' reads '{dup[0]}' twice; list each input once")
        out = _path(output, f"dataflow '{name}' output")
        _path(output_path(name, out), f"dataflow '{name}' output path")
        ls = []
        for lease in leases or ():
            if (not isinstance(lease, (list, tuple)) or len(lease) != 2
                    or not isinstance(lease[0], str)):
                raise BuildError(f"dataflow '{name}': lease {lease!r} must be a (path, mode) "
                                 f"pair, e.g. ('db/sales', 'write')")
            lp = _path(lease[0], f"dataflow '{name}' lease path")
            if lease[1] not in LEASE_MODES:
                raise BuildError(f"dataflow '{name}': lease '{lp}' has bad mode {lease[1]!r}; "
                                 f"use 'read' or 'write'")
            if [lp, lease[1]] not in ls:
                ls.append([lp, lease[1]])
        ls.sort()
        res = dict(resources or {})
        for k, v in res.items():
            if ident_problem(k):
                raise BuildError(f"dataflow '{name}': bad resource name {k!r}; use e.g. 'gpu'")
            if not _number(v) or v < 0:
                raise BuildError(f"dataflow '{name}': resource '{k}' needs a non-negative "
                                 f"number, not {v!r}")
        bud = dict(budget or {})
        bad = sorted(str(k) for k in bud if k not in BUDGET_KEYS)
        if bad:
            raise BuildError(f"dataflow '{name}': unknown budget key(s) {', '.join(bad)}; "
                             f"allowed: {', '.join(BUDGET_KEYS)}")
        for k, v in bud.items():
            if not _number(v) or v <= 0:
                raise BuildError(f"dataflow '{name}': budget '{k}' needs a positive number, "
                                 f"not {v!r}")
        writes = [lp for lp, m in ls if m == "write"]
        if profile is None:
            profile = "rw" if writes else "ro"
        elif profile not in PROFILES:
            raise BuildError(f"dataflow '{name}': unknown profile {profile!r}; use ro, rw or "
                             f"hybrid")
        elif profile == "ro" and writes:
            raise BuildError(f"dataflow '{name}' has profile 'ro' but a write lease on "
                             f"'{writes[0]}'; use profile='rw' or make the lease 'read'")
        if isinstance(tags, str):
            tags = [tags]
        for t in tags:
            if not isinstance(t, str) or ident_problem(t):
                raise BuildError(f"dataflow '{name}': bad tag {t!r}; use a name such as "
                                 f"'volatile'")
        df = {"task": task, "inputs": ins, "output": out, "leases": ls,
              "resources": dict(sorted(res.items())), "budget": dict(sorted(bud.items())),
              "profile": profile}
        if tags:  # absent when empty: packages built before tags keep their hashes
            df["tags"] = sorted(set(tags))
        self.dataflows[name] = df
        return self

    def output_path(self, dataflow: str) -> str:
        """Where one of this package's dataflows writes."""
        return output_path(dataflow, self.dataflows[dataflow]["output"])

    # -- build ---------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise BuildError when the declared package is inconsistent (see validate.py)."""
        from .validate import validate

        validate(self)


def _caller_dir(depth: int = 2) -> Path:
    """The directory relative paths are taken from: the e3pkg.py being loaded, else the
    directory of the calling file, else the current directory."""
    if _loading:
        return _loading[-1]
    f = sys._getframe(depth).f_globals.get("__file__")
    return Path(f).resolve().parent if f else Path.cwd().resolve()


def package(name: str, version: str, dependencies: dict | None = None) -> PackageBuilder:
    """Start declaring package `name@version` (`dependencies`: {name: semver constraint}).
    Relative paths are taken from the e3pkg.py's directory."""
    return PackageBuilder(name, version, dependencies, base_dir=_caller_dir())
