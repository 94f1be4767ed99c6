"""Benchmarks of the logic layer (issue 3): `python bench/bench_logic.py [--quick] [--write]`.

Graphs of dataflows (chain; layered with 3 random parents per node in the previous layer of
width sqrt(n); tree with fan-out 10) projected to the repository's fact relations. For each,
through the public query API with the shipped rules:

- single-source reachability from the root (`reachable`),
- the dirty closure of a random 1 % of the datasets (`dirty_closure`, seeded),

on the fast engine — cold (`queries.reachable(facts, ...)`: checks and indexes the facts)
and prepared (`Logic(facts).reachable(...)` after a first call) — beside a hand-written
breadth-first search over the same adjacency and networkx `descendants` (both given their
graph ready-built, and both returning a sorted list like the API), and pyDatalog where it
finishes in reasonable time. Figures are medians; `--write` replaces the `## Logic` section
of bench/RESULTS.md. `--quick` is a seconds-long smoke run. Also measures where `auto`
should switch from pyDatalog to the fast engine.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import networkx as nx  # noqa: E402

from e3logic.logic import AUTO_THRESHOLD, Logic, queries  # noqa: E402

PYDATALOG_MAX = 10_000  # pyDatalog is measured up to this many nodes (it is 20-100x slower)


# ----------------------------------------------------------------------------- graphs

def chain(n: int) -> list[tuple[int, int]]:
    return [(i - 1, i) for i in range(1, n)]


def layered(n: int, parents: int = 3, seed: int = 1) -> list[tuple[int, int]]:
    rnd = random.Random(seed)
    width = max(parents + 1, int(math.sqrt(n)))
    edges = []
    for i in range(width, n):
        lo = (i // width - 1) * width
        edges += [(p, i) for p in rnd.sample(range(lo, lo + width), parents)]
    return edges


def tree(n: int, fanout: int = 10) -> list[tuple[int, int]]:
    return [((i - 1) // fanout, i) for i in range(1, n)]


SHAPES = {"chain": chain, "layered": layered, "tree": tree}


def project(n: int, edges) -> dict:
    """Dataflow d<i> writes p<i> and reads p<j> for each edge j → i; sources read in<i>."""
    has_parent = {b for _, b in edges}
    reads = {(f"d{b}", f"p{a}") for a, b in edges}
    reads |= {(f"d{i}", f"in{i}") for i in range(n) if i not in has_parent}
    return {
        "dataflow": {(f"d{i}", "task") for i in range(n)},
        "writes": {(f"d{i}", f"p{i}") for i in range(n)},
        "reads": reads,
        "edge": {(f"d{a}", f"d{b}") for a, b in edges},
        "input_dataset": {(f"in{i}",) for i in range(n) if i not in has_parent},
    }


# ----------------------------------------------------------------------------- baselines

def bfs(adj: dict, starts) -> list:
    seen = set(starts)
    frontier = list(seen)
    while frontier:
        nxt = []
        for x in frontier:
            for y in adj.get(x, ()):
                if y not in seen:
                    seen.add(y)
                    nxt.append(y)
        frontier = nxt
    return sorted(seen)


def nx_reach(g, source) -> list:
    return sorted(nx.descendants(g, source))


def nx_dirty(g, starts) -> list:
    g.add_node("__changed__")
    g.add_edges_from(("__changed__", s) for s in starts)
    try:
        return sorted(nx.descendants(g, "__changed__"))
    finally:
        g.remove_node("__changed__")


# ----------------------------------------------------------------------------- timing

def timed(fn, reps: int):
    """(median CPU seconds of this process, result of the last run)."""
    times, result = [], None
    for _ in range(reps):
        gc.collect()
        t = time.process_time()
        result = fn()
        times.append(time.process_time() - t)
    return statistics.median(times), result


def interleaved(fns: dict, reps: int) -> tuple[dict, dict, dict]:
    """Run the functions in turn, `reps` rounds, so machine noise hits them alike.
    Returns ({name: median CPU s}, {name: median wall s}, {name: last result})."""
    cpu: dict = {k: [] for k in fns}
    wall: dict = {k: [] for k in fns}
    results: dict = {}
    for _ in range(reps):
        for name, fn in fns.items():
            gc.collect()
            w, c = time.perf_counter(), time.process_time()
            results[name] = fn()
            cpu[name].append(time.process_time() - c)
            wall[name].append(time.perf_counter() - w)
    return ({k: statistics.median(v) for k, v in cpu.items()},
            {k: statistics.median(v) for k, v in wall.items()}, results)


def ms(s) -> str:
    return "—" if s is None else (f"{s * 1000:.1f}" if s < 10 else f"{s * 1000:.0f}")


def bench_graph(shape: str, n: int, reps: int, cold_reps: int, pyd: bool) -> list[dict]:
    edges = SHAPES[shape](n)
    facts = project(n, edges)
    adj: dict = {}
    for a, b in facts["edge"]:
        adj.setdefault(a, []).append(b)
    readers: dict = {}
    for d, p in facts["reads"]:
        readers.setdefault(p, []).append(d)
    g = nx.DiGraph()
    g.add_edges_from(facts["edge"])
    g.add_nodes_from(d for d, _ in facts["dataflow"])
    changed = random.Random(7).sample(sorted(f"p{i}" for i in range(n)), max(1, n // 100))
    starts = sorted({d for p in changed for d in readers.get(p, ())})

    rows = []
    lg = Logic(facts, engine="fast")
    for what in ("reach", "dirty"):
        if what == "reach":
            def api():
                return lg.reachable("d0")

            def cold():
                return queries.reachable(facts, "d0", engine="fast")

            def base_bfs():
                return bfs(adj, adj.get("d0", ()))

            def base_nx():
                return nx_reach(g, "d0")

            def pydatalog():
                return queries.reachable(facts, "d0", engine="pydatalog")
        else:
            def api():
                return lg.dirty_closure(changed)

            def cold():
                return queries.dirty_closure(facts, changed, engine="fast")

            def base_bfs():
                return bfs(adj, starts)

            def base_nx():
                return nx_dirty(g, starts)

            def pydatalog():
                return queries.dirty_closure(facts, changed, engine="pydatalog")

        api()  # index the facts and compute the unaffected strata once
        fns = {"prepared": api, "bfs": base_bfs, "nx": base_nx}
        if what == "dirty":
            extra = {"changed": {(p,) for p in changed}}
            fns["relation"] = lambda: lg.evaluate(only=["dirty"], extra=extra)["dirty"]
        med, wall, res = interleaved(fns, reps)
        if what == "dirty":
            assert sorted(d for (d,) in res["relation"]) == res["prepared"]
        t_cold, r_cold = timed(cold, cold_reps)
        r_api = res["prepared"]
        assert r_api == r_cold == res["bfs"] == res["nx"], f"{shape} {n} {what}: results differ"
        t_pyd = None
        if pyd and n <= PYDATALOG_MAX:
            t_pyd, r_pyd = timed(pydatalog, 1)
            assert r_pyd == r_api, f"{shape} {n} {what}: pydatalog differs"
        t_api, t_bfs, t_nx = med["prepared"], med["bfs"], med["nx"]
        rows.append({"shape": shape, "n": n, "query": what, "result": len(r_api),
                     "prepared": t_api, "prepared_wall": wall["prepared"], "cold": t_cold,
                     "relation": med.get("relation"),
                     "bfs": t_bfs, "nx": t_nx, "pydatalog": t_pyd,
                     "ratio": t_api / max(t_bfs, 1e-9)})
        print(f"{shape:8} {n:>8} {what:6} |R|={len(r_api):>8}  prepared {ms(t_api):>7} ms"
              f" (wall {ms(wall['prepared'])})  cold {ms(t_cold):>7}  bfs {ms(t_bfs):>7}"
              f"  nx {ms(t_nx):>7}  pydatalog {ms(t_pyd):>7}  relation {ms(med.get('relation'))}"
              f"  prepared/bfs {t_api / max(t_bfs, 1e-9):4.2f}", flush=True)
    return rows


def bench_auto(sizes, reps: int) -> list[dict]:
    """Cold named queries (facts in, sorted list out) on both engines at small sizes."""
    rows = []
    for n in sizes:
        for shape in ("chain", "layered"):
            facts = project(n, SHAPES[shape](n))
            nfacts = sum(map(len, facts.values()))
            row = {"shape": shape, "n": n, "facts": nfacts}
            for engine in ("pydatalog", "fast"):
                for what, fn in (("reach", lambda e: queries.reachable(facts, "d0", engine=e)),
                                 ("dirty", lambda e: queries.dirty_closure(facts, ["p0"],
                                                                          engine=e))):
                    row[f"{engine}_{what}"], _ = timed(lambda: fn(engine), reps)
            rows.append(row)
            print(f"auto {shape:8} n={n:>5} facts={nfacts:>6}  pydatalog reach "
                  f"{ms(row['pydatalog_reach']):>6} dirty {ms(row['pydatalog_dirty']):>6} ms"
                  f"   fast reach {ms(row['fast_reach']):>5} dirty {ms(row['fast_dirty']):>5}",
                  flush=True)
    return rows


# ----------------------------------------------------------------------------- report

def report(rows: list[dict], auto_rows: list[dict], args) -> str:
    out = ["## Logic", "",
           "Generated by `python bench/bench_logic.py --write`"
           f"{' --quick' if args.quick else ''}; "
           f"Python {platform.python_version()}, {os.cpu_count()} cores. Medians of "
           f"{args.reps} runs (cold: {args.cold_reps}; pyDatalog: 1; 1M nodes: 3 and 1). "
           "Times in ms of CPU time of the benchmark process (`time.process_time`), which "
           "other jobs on this shared 2-core machine disturb far less than wall time "
           f"(load average {os.getloadavg()[0]:.0f} when the run ended); the prepared "
           "column also gives the wall-clock median.", "",
           "Queries go through the public API with the shipped rules and return a sorted "
           "list: *prepared* = `Logic(facts).reachable(...)` / `.dirty_closure(...)` after a "
           "first call (facts indexed, unaffected strata cached); *cold* = "
           "`queries.reachable(facts, ...)` (checks and indexes the facts each time). "
           "*bfs* = hand-written breadth-first search over a ready adjacency dict, *nx* = "
           "networkx `descendants` on a ready DiGraph; both sort their answer like the API. "
           f"pyDatalog only up to {PYDATALOG_MAX:,} nodes (— above: too slow).", "",
           "*relation* = the unsorted `dirty` relation itself "
           "(`Logic.evaluate(only=['dirty'], extra={'changed': ...})`, prepared). "
           "Prepared, relation, bfs and nx run interleaved so load hits them alike.", "",
           "| graph | nodes | query | answer | fast prepared (wall) | relation | fast cold "
           "| bfs | nx | pydatalog | prepared / bfs |",
           "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['shape']} | {r['n']:,} | {r['query']} | {r['result']:,} "
                   f"| {ms(r['prepared'])} ({ms(r['prepared_wall'])}) | {ms(r['relation'])} "
                   f"| {ms(r['cold'])} | {ms(r['bfs'])} | {ms(r['nx'])} "
                   f"| {ms(r['pydatalog'])} | {r['ratio']:.2f} |")
    big = [r for r in rows if r["n"] >= 10_000 and r["result"] >= 1_000]
    if big:
        worst = max(big, key=lambda r: r["ratio"])
        out += ["", f"Fast prepared vs hand-written BFS, graphs of 10k nodes or more with "
                f"answers of 1,000 or more: at most **{worst['ratio']:.2f}×** "
                f"({worst['shape']} {worst['n']:,} {worst['query']}); target ≤ 2×."]
    dirty = [r for r in rows if r["n"] == 100_000 and r["query"] == "dirty"]
    if dirty:
        out += ["", "Dirty closure of a random 1 % change, 100k nodes, prepared (target "
                "< 100 ms): " + "; ".join(
                    f"{r['shape']} {ms(r['prepared'])} ms sorted list / {ms(r['relation'])} ms "
                    f"relation {'✓' if r['prepared'] < 0.1 else '✗'} ({r['result'] / r['n']:.0%}"
                    f" of the dataflows dirty; bfs {ms(r['bfs'])} ms)" for r in dirty) + ". "
                "On a chain or a 3-parent layered DAG a random 1 % reaches nearly every node, "
                "so the answer is ~100k dataflows and even the hand-written BFS takes longer "
                "than 100 ms in CPython; the engine matches it. When the change is local "
                "(the tree), the closure takes a few ms."]
    out += ["", "### auto: where pyDatalog stops being cheap", "",
            "Cold named queries (facts in, sorted list out), chain and layered graphs.", "",
            "| graph | nodes | facts | pydatalog reach | pydatalog dirty | fast reach "
            "| fast dirty |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in auto_rows:
        out.append(f"| {r['shape']} | {r['n']} | {r['facts']} | {ms(r['pydatalog_reach'])} "
                   f"| {ms(r['pydatalog_dirty'])} | {ms(r['fast_reach'])} "
                   f"| {ms(r['fast_dirty'])} |")
    out += ["", f"`auto` threshold: pyDatalog while the given facts number at most "
            f"**{AUTO_THRESHOLD}** (`e3logic.logic.AUTO_THRESHOLD`), fast above. The fast "
            "engine is faster at every size; the threshold keeps the reference engine in use "
            "where its cold named queries stay around 30 ms of CPU (about 50 ms of wall time "
            "on this shared machine), below what a person notices.", ""]
    return "\n".join(out)


def write_section(text: str) -> Path:
    path = ROOT / "bench" / "RESULTS.md"
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = old.splitlines()
    start = next((i for i, l in enumerate(lines) if l.strip() == "## Logic"), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        new = "\n".join(lines[:start] + text.splitlines() + [""] + lines[end:])
    path.write_text(new.rstrip("\n") + "\n")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    ap.add_argument("--sizes", type=int, nargs="*", help="node counts (default 10k 100k 1M)")
    ap.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--no-pydatalog", action="store_true")
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    ap.add_argument("--json", help="also save the raw figures to this file")
    args = ap.parse_args(argv)
    sizes = args.sizes or ([1_000] if args.quick else [10_000, 100_000, 1_000_000])
    args.reps = 3 if args.quick else 5
    args.cold_reps = 1 if args.quick else 3
    rows = []
    for n in sizes:
        for shape in args.shapes:
            big = n >= 1_000_000
            rows += bench_graph(shape, n, 3 if big else args.reps,
                                1 if big else args.cold_reps, not args.no_pydatalog)
    auto_sizes = [10, 50] if args.quick else [10, 25, 50, 100, 200, 400, 1000]
    auto_rows = bench_auto(auto_sizes, 1 if args.quick else 3)
    text = report(rows, auto_rows, args)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "auto": auto_rows}, indent=1))
    if args.write:
        print(f"wrote {write_section(text)}")
    else:
        print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
