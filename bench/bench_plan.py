"""Planner benchmark (issue 4): a layered DAG of 1k / 10k / 100k dataflows, cap 8, 30 % holding
a write lease on a path tree, `gpu: 1` on 5 % (capacity gpu = 1).

    PYTHONPATH=. python bench/bench_plan.py            # full run (1k, 10k, 100k)
    PYTHONPATH=. python bench/bench_plan.py --quick    # seconds-long smoke run

Reports the median of several runs of each phase: building the PlanInput (validation,
topological order), scheduling (of which time inside kanren searches), the same greedy
decisions made without kanren (checked equal), the cost simulation, and verifying the plan.
Also the greedy-vs-optimum comparison on small random DAGs.
The random generator is seeded; it builds inputs only and never reaches the planner.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time

from e3logic.plan.checker import verify
from e3logic.plan.cost import simulate
from e3logic.plan.model import Node, PlanInput
from e3logic.plan.scheduler import schedule

WIDTH = 100  # dataflows per layer


def path_tree(depth: int = 3, fanout: int = 4) -> list[str]:
    paths, level = [], [""]
    for _ in range(depth):
        level = [f"{p}/d{i}" if p else f"d{i}" for p in level for i in range(fanout)]
        paths.extend(level)
    return sorted(paths)


def layered(n: int, seed: int = 1, writers: float = 0.30, gpu: float = 0.05,
            width: int = WIDTH, paths: list[str] | None = None) -> list[Node]:
    rnd = random.Random(seed)
    paths = path_tree() if paths is None else paths
    nodes, prev = [], []
    for layer in range(0, n, width):
        cur = []
        for j in range(min(width, n - layer)):
            name = f"n{layer + j:06d}"
            deps = tuple(sorted(rnd.sample(prev, min(len(prev), rnd.randint(1, 3))))) \
                if prev else ()
            leases = (((rnd.choice(paths), "write"),) if rnd.random() < writers else ())
            resources = {"gpu": 1} if rnd.random() < gpu else {}
            nodes.append(Node(name, deps, leases, resources, cost=float(rnd.randint(1, 10))))
            cur.append(name)
        prev = cur
    return nodes


def plain_batches(pi: PlanInput) -> list[tuple[str, ...]]:
    """The same greedy decisions without kanren (ground checks called directly), to measure
    what kanren costs; must give the same batches."""
    import heapq

    from e3logic.plan.cost import bottom_levels, children_map
    from e3logic.plan.relations import BatchState, Candidates, Ctx, LeaseIndex

    ctx, kids = Ctx(pi), children_map(pi)
    bl = bottom_levels(pi, kids)
    indeg = {n: len(d) for n, d in ctx.deps.items()}
    heaps = ([], [])
    for n, k in indeg.items():
        if k == 0:
            heaps[ctx.is_free(n)].append((-bl[n], n))
    for h in heaps:
        heapq.heapify(h)
    batches = []
    while heaps[0] or heaps[1]:
        k = len(batches)
        cands = Candidates(*heaps)
        ctx.batch, ctx.index = k, LeaseIndex()
        st, i, j, chosen = BatchState.empty(len(ctx.capvec)), 0, None, []
        while ctx.slot_free(st):
            c = cands.main_at(i) if j is None else cands.free_at(j)
            if c is None:
                break
            i, j = (i + 1, None) if j is None else (i, j + 1)
            if ctx.deps_done(c, k) and ctx.leases_free(c, st) and ctx.resources_free(c, st):
                chosen.append(c)
                st = ctx.extend(c, st)
                st = BatchState(st.n, st.used, None, st.skips)
                for lease in ctx.leases[c]:
                    ctx.index.add(lease)
            else:
                st = BatchState(st.n, st.used, None, st.skips + 1)
                if j is None and st.skips >= ctx.skip_limit:
                    j = cands.free_before(i)
        taken = set(chosen)
        for key, name, free in cands.popped:
            if name not in taken:
                heapq.heappush(heaps[free], (key, name))
        for m in chosen:
            ctx.placed[m] = k
            for c in kids[m]:
                indeg[c] -= 1
                if indeg[c] == 0:
                    heapq.heappush(heaps[ctx.is_free(c)], (-bl[c], c))
        batches.append(tuple(chosen))
    return batches


def timed(fn, runs: int):
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, times


def bench_size(n: int, runs: int, cap: int = 8, **shape) -> dict:
    nodes = layered(n, **shape)
    pi, t_build = timed(lambda: PlanInput(tuple(nodes), {"gpu": 1}, cap), runs)
    kanren, cpu = [], []

    def run_schedule():
        stats = {}
        c0 = time.process_time()
        p = schedule(pi, stats=stats)
        cpu.append(time.process_time() - c0)
        kanren.append(stats)
        return p

    plan, t_sched = timed(run_schedule, runs)
    _, t_sim = timed(lambda: simulate(pi, plan.priority), runs)
    plain, t_plain = timed(lambda: plain_batches(pi), runs)
    assert plain == list(plan.batches), "kanren and the plain greedy disagree"
    violations, t_verify = timed(lambda: verify(plan, pi), max(1, runs // 2))
    assert not violations, violations[:3]
    k = [s["kanren_seconds"] for s in kanren]
    return {
        "n": n, "runs": runs, "batches": len(plan.batches), "lower": -(-n // cap),
        "build": statistics.median(t_build), "schedule": statistics.median(t_sched),
        "schedule_min": min(t_sched), "schedule_max": max(t_sched),
        "schedule_cpu": statistics.median(cpu),
        "kanren": statistics.median(k), "kanren_share": statistics.median(
            s["kanren_seconds"] / t for s, t in zip(kanren, t_sched)),
        "simulate": statistics.median(t_sim), "verify": statistics.median(t_verify),
        "plain": statistics.median(t_plain),
        "searches": kanren[0]["searches"], "candidates": kanren[0]["candidates"],
        "makespan": plan.makespan, "cp": plan.critical_path_length, "work": plan.total_work,
    }


def optimum_report(trials: int, seed: int = 7) -> dict:
    """Greedy barrier makespan vs the brute-force barrier optimum on random DAGs <= 8 nodes."""
    from e3logic.plan.checker import optimal_barrier_makespan

    rnd = random.Random(seed)
    paths = ["db", "db/a", "db/b", "fs", "fs/x"]
    ratios = []
    for _ in range(trials):
        k = rnd.randint(1, 8)
        nodes = []
        for i in range(k):
            deps = tuple(f"v{j}" for j in range(i) if rnd.random() < 0.3)
            leases = tuple({(rnd.choice(paths), rnd.choice(("read", "write")))
                            for _ in range(rnd.randint(0, 1))})
            res = {"gpu": 1} if rnd.random() < 0.2 else {}
            nodes.append(Node(f"v{i}", deps, leases, res, cost=float(rnd.randint(1, 5))))
        pi = PlanInput(tuple(nodes), {"gpu": 1}, rnd.choice([None, 1, 2, 3]))
        plan = schedule(pi)
        opt = optimal_barrier_makespan(pi)
        assert plan.critical_path_length <= opt <= plan.barrier_makespan
        ratios.append(plan.barrier_makespan / opt)
    return {"trials": trials, "optimal": sum(r == 1.0 for r in ratios),
            "mean": statistics.fmean(ratios), "max": max(ratios)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one run each")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    sizes, runs = ([1_000, 10_000], 1) if args.quick else ([1_000, 10_000, 100_000], args.runs)
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, "
          f"{'quick' if args.quick else f'median of {runs}'} runs")
    print("| dataflows | batches (n/cap bound) | build s | schedule s (min–max) | schedule CPU s | "
          "kanren s (share) | same greedy without kanren s | simulate s | verify s | candidates |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    cases = [(f"{n:,}", n, {}) for n in sizes]
    # conflict-heavy: half the dataflows write the same path, so they serialise
    heavy = 2_000 if args.quick else 10_000
    cases.append((f"{heavy:,}, 50 % write `db`", heavy, {"writers": 0.5, "paths": ["db"]}))
    for label, n, shape in cases:
        r = bench_size(n, runs if n < 100_000 else max(1, min(runs, 3)), **shape)
        print(f"| {label} | {r['batches']:,} ({r['lower']:,}) | {r['build']:.3f} | "
              f"{r['schedule']:.3f} ({r['schedule_min']:.3f}–{r['schedule_max']:.3f}) | "
              f"{r['schedule_cpu']:.3f} | "
              f"{r['kanren']:.3f} ({r['kanren_share']:.0%}) | {r['plain']:.3f} | "
              f"{r['simulate']:.3f} | "
              f"{r['verify']:.3f} | {r['candidates']:,} |", flush=True)
    o = optimum_report(60 if args.quick else 500)
    print(f"\ngreedy vs brute-force barrier optimum, {o['trials']} random DAGs of <= 8 nodes: "
          f"optimal in {o['optimal']}, mean ratio {o['mean']:.3f}, worst {o['max']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
