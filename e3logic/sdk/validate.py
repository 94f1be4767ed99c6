"""Whole-package checks run at build time. Each problem is one line naming the culprit(s) and
the fix; all of them are raised together, one a line in a fixed order (`e3 build` prints each
as its own `e3: error:` line).

Order: unknown tasks, python entry modules that look like typos of bundled ones, producers
(two producers of one path, a dataset that is also a folder), argv templates naming an input
their dataflow lacks (`{input2}` with two inputs), inputs nobody provides, cycles.
"""
from __future__ import annotations

import sys

from ..core.errors import BuildError, did_you_mean
from ..core.paths import is_prefix
from ..core.runtimes import argv_max_input
from .builder import output_path


def _suggest(name: str, candidates) -> str:
    near = did_you_mean(name, candidates)
    return f"did you mean {' or '.join(repr(s) for s in near)}? " if near else ""


def producers(pkg) -> dict[str, list[str]]:
    """{path: [producer descriptions]}: declared datasets and dataflow outputs."""
    out: dict[str, list[str]] = {}
    for p in pkg.datasets:
        out.setdefault(p, []).append(f"dataset '{p}'")
    for d, df in pkg.dataflows.items():
        out.setdefault(output_path(d, df["output"]), []).append(f"dataflow '{d}'")
    return out


def module_names(pkg) -> set[str]:
    """Top-level importable names the bundled module files provide (`steps.py` -> steps,
    `lib/util.py` -> lib)."""
    names = set()
    for rel, _ in pkg.module_files():
        first = rel.split("/")[0]
        names.add(first[:-3] if first.endswith(".py") else first)
    return names


def _importable(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def problems(pkg) -> list[str]:
    errs: list[str] = []
    # unknown tasks
    for d, df in sorted(pkg.dataflows.items()):
        if df["task"] not in pkg.tasks:
            errs.append(f"dataflow '{d}' uses unknown task '{df['task']}'; "
                        f"{_suggest(df['task'], pkg.tasks)}declare it with "
                        f"package.task('{df['task']}', ...)")
    # entry modules that are near-misses of bundled modules
    mods = module_names(pkg)
    for t, task in sorted(pkg.tasks.items()):
        if "entry" not in task:
            continue
        top = task["entry"].split(":")[0].split(".")[0]
        if top in mods or top in sys.stdlib_module_names:
            continue
        near = did_you_mean(top, mods)
        if near:
            errs.append(f"task '{t}' entry '{task['entry']}' names module '{top}', which is not "
                        f"bundled; did you mean '{near[0]}'? (or add package.module('{top}.py'))")
        elif not _importable(top):
            errs.append(f"task '{t}' entry '{task['entry']}' needs module '{top}', which is "
                        f"neither bundled nor installed; add package.module('{top}.py')")
    # producers
    prod = producers(pkg)
    for p, who in sorted(prod.items()):
        if len(who) > 1:
            errs.append(f"two producers of '{p}': {' and '.join(who)}; rename one of them")
    paths = sorted(prod)
    for i, a in enumerate(paths):
        for j in range(i + 1, len(paths)):  # indices, not a slice: a copy per path is quadratic
            b = paths[j]
            if not b.startswith(a + "/"):
                if b > a + "/":
                    break
                continue
            if is_prefix(a, b):
                errs.append(f"'{a}' ({prod[a][0]}) is also a folder holding '{b}' "
                            f"({prod[b][0]}); rename one of them")
    # argv templates referring to an input the dataflow does not have
    for d, df in sorted(pkg.dataflows.items()):
        task = pkg.tasks.get(df["task"])
        if not task or "argv" not in task:
            continue
        top = argv_max_input(task["argv"])
        n = len(df["inputs"])
        if top >= n:
            use = ("add inputs=[...]" if n == 0 else "add inputs or use {input0}" if n == 1
                   else f"add inputs or use {{input0}}…{{input{n - 1}}}")
            errs.append(f"dataflow '{d}' runs task '{df['task']}', whose argv refers to "
                        f"{{input{top}}}, but it has {n} input{'s' if n != 1 else ''}; {use}")
    # inputs nobody provides
    for d, df in sorted(pkg.dataflows.items()):
        for i in df["inputs"]:
            if i not in prod:
                errs.append(f"dataflow '{d}' reads '{i}', which nothing provides; "
                            f"{_suggest(i, prod)}declare it with package.dataset('{i}', ...) "
                            f"or make a dataflow output it")
    # cycles
    cyc = find_cycle(pkg)
    if cyc:
        errs.append(cyc)
    return errs


def graph(pkg):
    """networkx DiGraph of dataflows: an edge producer -> consumer labelled with the path."""
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(sorted(pkg.dataflows))
    made = {output_path(d, df["output"]): d for d, df in sorted(pkg.dataflows.items())}
    for d, df in sorted(pkg.dataflows.items()):
        for i in df["inputs"]:
            if i in made:
                g.add_edge(made[i], d, path=i)
    return g


def find_cycle(pkg) -> str | None:
    """A one-line description of a dataflow cycle, or None: the cycle a depth-first search
    finds from the first dataflow (by name) that reaches one. One pass over the graph (a
    search from every dataflow in turn re-walks what is downstream of each: quadratic)."""
    import networkx as nx

    g = graph(pkg)
    if nx.is_directed_acyclic_graph(g):
        return None
    # the dataflows that reach a cycle: those on one, and everything upstream of them
    reach = {v for c in nx.strongly_connected_components(g) if len(c) > 1 for v in c}
    reach |= {v for v in g if g.has_edge(v, v)}
    stack = list(reach)
    while stack:
        for u in g.predecessors(stack.pop()):
            if u not in reach:
                reach.add(u)
                stack.append(u)
    edges = nx.find_cycle(g, source=min(reach))
    names = [u for u, _ in edges] + [edges[-1][1]]
    via = ", ".join(f"'{v}' reads {g.edges[u, v]['path']}" for u, v in edges)
    return (f"dataflow cycle {' -> '.join(names)} ({via}); make one of these dataflows read "
            f"a dataset outside the cycle")


def validate(pkg) -> None:
    """Raise a BuildError listing every problem, one a line (none: return)."""
    errs = problems(pkg)
    if errs:
        raise BuildError("\n".join(errs))
