"""A deployed package seen as a DAG of dataflows: producers, dependencies, task hashes."""
from __future__ import annotations

from functools import cached_property

from ..core import canon
from ..core.errors import NotFound, UsageError


def output_path(dataflow: str, output: str) -> str:
    return f"outputs/{dataflow}/{output}"


def task_hash(task: dict, module_hashes: dict[str, str]) -> str:
    """H(canonical task object + the content hashes of the package's module files)."""
    obj = {k: v for k, v in task.items() if k in ("runtime", "entry", "argv")}
    obj["modules"] = dict(sorted(module_hashes.items()))
    return canon.digest(obj)


class Project:
    """The deployed package of a workspace, indexed for the run: `pkg` the package object,
    `pkg_hash` its hash, `module_hashes` {relative path: blob hash} of its module files."""

    def __init__(self, pkg: dict, pkg_hash: str, module_hashes: dict, cache_dir=None):
        self.pkg = pkg
        self.pkg_hash = pkg_hash
        self.module_hashes = module_hashes
        self.cache_dir = cache_dir  # where `topo` is kept per package hash (None: not kept)

    def __repr__(self) -> str:
        return f"Project({self.pkg.get('name')}@{self.pkg.get('version')}, {self.pkg_hash[:12]})"

    @classmethod
    def load(cls, repo, pkg_hash: str) -> "Project":
        pkg = canon.loads(repo.objects.read(pkg_hash))
        mods = {}
        mref = pkg.get("modules")
        if mref:
            mods = {p: e["hash"] for p, e in repo.trees.walk(mref["hash"])}
        return cls(pkg, pkg_hash, mods, repo.dir / "cache")

    @property
    def dataflows(self) -> dict:
        return self.pkg.get("dataflows", {})

    @cached_property
    def outputs(self) -> dict[str, str]:
        return {n: f"outputs/{n}/{d['output']}" for n, d in self.dataflows.items()}

    @cached_property
    def producer(self) -> dict[str, str]:
        return {p: n for n, p in self.outputs.items()}

    @cached_property
    def deps(self) -> dict[str, list[str]]:
        get = self.producer.get
        out = {}
        for n, d in self.dataflows.items():
            ds = {get(p) for p in d["inputs"]}
            ds.discard(None)
            out[n] = sorted(ds)
        return out

    @cached_property
    def readers(self) -> dict[str, list[str]]:
        """{dataset path: the dataflows reading it as an input}, by name."""
        out: dict[str, list[str]] = {}
        for n in sorted(self.dataflows):
            for p in self.dataflows[n]["inputs"]:
                out.setdefault(p, []).append(n)
        return out

    @cached_property
    def downstream(self) -> dict[str, list[str]]:
        """{dataflow: the dataflows reading its output}, by name."""
        out: dict[str, list[str]] = {}
        for n, ds in self.deps.items():
            for u in ds:
                out.setdefault(u, []).append(n)
        for ds in out.values():
            ds.sort()
        return out

    @cached_property
    def task_hashes(self) -> dict[str, str]:
        return {t: task_hash(obj, self.module_hashes) for t, obj in self.pkg.get("tasks", {}).items()}

    @cached_property
    def modules_hash(self) -> str:
        return canon.digest(sorted(self.module_hashes.items()))

    @cached_property
    def topo(self) -> list[str]:
        """Dataflows in dependency order, ties by name (Kahn, deterministic). A function of the
        package alone, so it is kept in `cache/topo-<package hash>.json` once computed."""
        path = self.cache_dir / f"topo-{self.pkg_hash}.json" if self.cache_dir else None
        if path is not None:
            try:
                order = canon.loads(path.read_bytes())
                if (isinstance(order, list) and len(order) == len(self.dataflows)
                        and set(order) == self.dataflows.keys()):
                    return order
            except (OSError, ValueError):
                pass
        order = self._topo()
        if path is not None:
            try:
                from ..repo.atomic import write_atomic

                write_atomic(path, canon.dumps(order), fsync=False)  # a cache: rebuilt if lost
            except OSError:
                pass
        return order

    def _topo(self) -> list[str]:
        from heapq import heappop, heappush

        deps = self.deps
        indeg = {n: len(ds) for n, ds in deps.items()}
        down: dict[str, list[str]] = {n: [] for n in deps}
        for n, ds in deps.items():
            for d in ds:
                down[d].append(n)
        heap = sorted(n for n, k in indeg.items() if k == 0)
        out = []
        append = out.append
        while heap:
            n = heappop(heap)
            append(n)
            for m in down[n]:
                k = indeg[m] - 1
                indeg[m] = k
                if k == 0:
                    heappush(heap, m)
        if len(out) != len(indeg):
            raise UsageError("the package's dataflows contain a cycle; rebuild it with 'e3 build'")
        return out

    def resolve_targets(self, targets) -> set[str]:
        """Dataflow names or output paths -> the dataflows they need (ancestors included)."""
        names = set()
        for t in targets:
            t = t.strip("/")
            if t in self.dataflows:
                names.add(t)
            elif t in self.producer:
                names.add(self.producer[t])
            else:
                raise NotFound("target", t, list(self.dataflows) + list(self.producer),
                               hint="name a dataflow or an output path (see 'e3 ls outputs')")
        stack, seen = list(names), set(names)
        while stack:
            for d in self.deps[stack.pop()]:
                if d not in seen:
                    seen.add(d)
                    stack.append(d)
        return seen

    def select(self, targets=(), pattern: str | None = None) -> list[str]:
        sel = self.resolve_targets(targets) if targets else set(self.dataflows)
        if pattern:
            import fnmatch

            sel = {n for n in sel if fnmatch.fnmatchcase(n, pattern)}
            if not sel:
                raise NotFound("dataflow matching", pattern, list(self.dataflows),
                               hint="no dataflow matches; see 'e3 status'")
        return [n for n in self.topo if n in sel]

    def leases(self, name: str) -> tuple:
        d = self.dataflows[name]
        ls = [tuple(x) for x in d.get("leases", [])]
        if d.get("profile") == "rw":
            ls.append((self.outputs[name], "write"))
        return tuple(sorted(set(ls)))
