"""Execution benchmark (issue 5): the whole `e3 go` command beside make, doit, Snakemake and DVC
on the same workloads, in one script, so the ratios come from one run on one machine.

    python bench/bench_go.py --quick                  # seconds-long smoke run: e3 (+ floor), 10 tasks
    python bench/bench_go.py --install-peers          # venv bench/_work/peers-venv: doit, snakemake, dvc
    python bench/bench_go.py                          # the full run (see --help for the matrix)
    python bench/bench_go.py --results bench/RESULTS.md   # ... and rewrite its `## Execution` section
    python bench/bench_go.py --tools e3 --e3 before=09e746f --e3 after=HEAD   # A/B of two e3s

Workloads (bench/peers/workload.py): a chain and a 10-layer DAG (2-3 inputs per task) of 10, 100,
1,000 and 10,000 tasks; shell tasks (`cat inputs | md5sum > output`) and python tasks (md5 of the
inputs, in e3's worker pool); three states: cold (fresh repository / clean directory), warm
(nothing changed: a no-op) and incremental (one leaf input edited so that ~12 % of the tasks are
downstream of it; the count that actually reran is reported and checked).

Method: every command is timed as a whole with `time.perf_counter()` around `subprocess.run`
(start-up included): e3 as `sys.executable -m e3logic --json go -j N` (the real interpreter, no
pyenv shim), bytecode cached under bench/_work/pycache as an installed package has it. For each
workload the contenders are interleaved within each repetition (cold: e3, make, doit, ...; then
again), so drifting machine load hits them alike. Medians of --runs repetitions (default 3; cold
runs at >= 10,000 tasks once). Outputs are checked against md5s computed here, after every run.
Noise: the min-max spread of each cell and the 1-minute load average are in the JSON output.

A/B of e3 builds: `--e3 NAME=REV` given several times measures each revision as a contender of
its own (`e3[NAME] -jN`), interleaved like the peers and in alternating order (A B, then B A, ...)
so that neither always runs first; the rendered section then has an A/B table: each cell's
median with its min-max, and each later build against the first one pair by pair (the runs of
one repetition are neighbours in time: their ratio is what the interleaving makes fair).

The floor (`--tools ...,floor-spawn,floor-record,floor-imports`, bench/peers/floor_engine.py):
a minimal engine in Python, make's loop plus the least that e3 must record, with and without the
imports e3's design runs on — what any engine built that way pays on this machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers import tools as T  # noqa: E402
from peers import workload as W  # noqa: E402

WORK = HERE / "_work"
PEERS_VENV = WORK / "peers-venv"
PEER_PACKAGES = {"doit": "doit", "snakemake": "snakemake", "dvc": "dvc"}
STATES = ("cold", "warm", "incr")


# -- contenders ------------------------------------------------------------------------------

class Contender:
    """One tool with its options (jobs, fsync), working in its own directory."""

    def __init__(self, label: str, tool: T.Tool, jobs: int, env: dict | None = None):
        self.label = label
        self.tool = tool
        self.jobs = jobs
        self.env = env or {}


def make_contenders(args, work: Path, n: int, shape: str = "dag") -> list[Contender]:
    env = dict(os.environ)
    # e3 imports its own modules from the source tree: cache their bytecode like an install would
    e3env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    e3env["PYTHONPYCACHEPREFIX"] = str(WORK / "pycache")
    bindir = Path(args.peers_venv) / "bin"
    out = []
    for name in args.tools:
        variants = shape in args.variant_shapes and not args.quick
        j1 = n in args.j1_sizes and variants
        if name == "e3":
            for tag, src in args.e3_srcs:   # one build, or several for an A/B (`e3[tag]`)
                lb, d = (f"e3[{tag}]", f"e3-{tag}") if len(args.e3_srcs) > 1 else ("e3", "e3")
                out.append(Contender(f"{lb} -j{args.jobs}", T.E3(work / d, e3env, fsync=True, src=src),
                                     args.jobs))
                if n in args.nofsync_sizes and variants:
                    out.append(Contender(f"{lb} -j{args.jobs} E3_FSYNC=0",
                                         T.E3(work / f"{d}-nofsync", e3env, fsync=False, src=src),
                                         args.jobs))
                if j1:
                    out.append(Contender(f"{lb} -j1", T.E3(work / f"{d}-j1", e3env, fsync=True, src=src), 1))
        elif name == "make":
            out.append(Contender(f"make -j{args.jobs}", T.Make(work / "make", env), args.jobs))
            if j1:
                out.append(Contender("make -j1", T.Make(work / "make-j1", env), 1))
        elif name == "doit":
            out.append(Contender(f"doit -n{args.jobs}", T.Doit(work / "doit", env, bindir), args.jobs))
        elif name == "snakemake":
            out.append(Contender(f"snakemake -c{args.jobs}",
                                 T.Snakemake(work / "snakemake", env, bindir), args.jobs))
        elif name.startswith("floor-"):  # floor-spawn, floor-record, floor-imports
            out.append(Contender(f"{name} -j{args.jobs}", T.Floor(work / name, e3env, name[6:]),
                                 args.jobs))
        elif name == "dvc":
            out.append(Contender("dvc repro", T.Dvc(work / "dvc", env, bindir), 1))
        else:
            raise SystemExit(f"unknown tool {name!r}")
    for c in out:
        c.tool.work.mkdir(parents=True, exist_ok=True)
    return out


# -- running ---------------------------------------------------------------------------------

def timed_run(c: Contender, timeout: float) -> dict:
    """Run the contender's command once; wall seconds, CPU seconds of it and its children."""
    tool = c.tool
    before = tool._snapshot()
    env = {**tool.env, **c.env}
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    with open(tool.work / "last.stdout", "wb") as so, open(tool.work / "last.stderr", "wb") as se:
        t0 = time.perf_counter()
        p = subprocess.Popen(tool.command(c.jobs), cwd=tool.dir, env=env, stdin=subprocess.DEVNULL,
                             stdout=so, stderr=se, start_new_session=True)
        # a blocking wait, the timeout enforced by a timer: `Popen.wait(timeout=…)` polls with
        # sleeps of up to 50 ms, which rounded every figure up by as much
        expired = threading.Event()

        def kill():
            expired.set()
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            rc = p.wait()
        except BaseException:   # Ctrl-C / SIGTERM: take the tool's whole process group down
            os.killpg(p.pid, signal.SIGKILL)
            raise
        finally:
            timer.cancel()
        dt = time.perf_counter() - t0
        if expired.is_set():
            return {"timeout": timeout}
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        err = (tool.work / "last.stderr").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{c.label} exited {rc}: {err}")
    return {"seconds": dt, "cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
            "executed": tool._executed(before), "load": load}


def verify(c: Contender, w: W.Workload, expected: dict, tasks: list[str]) -> None:
    for t in tasks:
        got = c.tool.output_file(t).read_bytes()
        if got != expected[t]:
            raise RuntimeError(f"{c.label}: wrong output for {t}: {got!r} != {expected[t]!r}")


def bench_workload(args, w: W.Workload, runtime: str, log) -> dict:
    """All contenders on one workload: cold, warm and incremental, interleaved."""
    work = Path(args.work)
    cons = []
    skipped = {}
    for c in make_contenders(args, work, w.n, w.shape):
        try:
            c.tool.check(w, runtime, args.max_n)
        except T.Skip as e:
            skipped[c.label] = str(e)
            continue
        t0 = time.perf_counter()
        c.tool.prepare(w, runtime)
        log(f"  prepared {c.label} ({time.perf_counter() - t0:.1f}s)")
        cons.append(c)
    leaf, downstream = w.edit_leaf()
    last = list(w.tasks)[-1]
    down_tasks = w.downstream(leaf)
    check = sorted({last, down_tasks[-1]} if down_tasks else {last})
    res = {c.label: {s: [] for s in STATES} for c in cons}
    dead = set()   # contenders that timed out cold: no warm/incremental figures

    def one(c, state, expected):
        if c.label in dead:
            return
        r = timed_run(c, args.timeout)
        res[c.label][state].append(r)
        if "timeout" in r:
            dead.add(c.label)
            log(f"  {c.label:24s} {state}: timeout after {args.timeout:.0f}s")
            return
        verify(c, w, expected, check)
        log(f"  {c.label:24s} {state}: {r['seconds']:8.3f}s  cpu {r['cpu']:7.2f}s  "
            f"ran {r['executed']}")

    base = w.expected()
    def runs(c):
        return args.tool_runs.get(c.tool.name, 1 << 30)

    def order(i):   # an A/B of e3 builds alternates who goes first
        return cons[::-1] if len(args.e3_srcs) > 1 and i % 2 else cons

    cold_runs = args.cold_runs_large if w.n >= 10_000 else args.state_runs.get("cold", args.runs)
    for i in range(cold_runs):
        for c in order(i):
            if c.label in dead or i >= min(cold_runs, runs(c)):
                continue
            c.tool.reset()
            one(c, "cold", base)
    for i in range(args.state_runs.get("warm", args.runs)):
        for c in order(i):
            if i < runs(c):
                one(c, "warm", base)
    for i in range(args.state_runs.get("incr", args.runs)):
        edit = i + 1
        exp = w.expected({leaf: edit})
        for c in order(i):
            if c.label in dead or i >= runs(c):
                continue
            c.tool.leaf_file(leaf).write_bytes(w.leaf_content(leaf, edit))
            one(c, "incr", exp)
    for c in cons:
        c.tool.retire()  # deleted with the work directory at the end, after every timed run
    out = {"workload": w.label, "shape": w.shape, "n": w.n, "runtime": runtime,
           "edited_leaf": leaf, "downstream": len(down_tasks), "skipped": skipped, "results": {}}
    for label, states in res.items():
        out["results"][label] = {s: summarize(rs) for s, rs in states.items() if rs}
    return out


def summarize(rs: list[dict]) -> dict:
    if any("timeout" in r for r in rs):
        return {"timeout": rs[0].get("timeout") or next(r["timeout"] for r in rs if "timeout" in r),
                "runs": len(rs)}
    secs = [r["seconds"] for r in rs]
    med = statistics.median(secs)
    return {"median": med, "min": min(secs), "max": max(secs), "runs": len(rs), "seconds": secs,
            "cpus": [r["cpu"] for r in rs],
            "spread": (max(secs) - min(secs)) / med if med else 0.0,
            "cpu": statistics.median(r["cpu"] for r in rs),
            "executed": sorted({r["executed"] for r in rs}),
            "load": statistics.median(r["load"] for r in rs)}


# -- reporting ---------------------------------------------------------------------------------

def _num(s: float) -> str:
    return f"{s:.3f}" if s < 1 else f"{s:.2f}" if s < 100 else f"{s:.0f}"


def fmt(cell: dict | None, state: str) -> str:
    """`wall / cpu` medians in seconds; incremental cells add (tasks that reran)."""
    if not cell:
        return "—"
    if "timeout" in cell:
        return f">{cell['timeout']:.0f}"
    txt = f"{_num(cell['median'])} / {_num(cell['cpu'])}"
    if state == "incr":
        txt += f" ({'/'.join(map(str, cell['executed']))})"
    if cell["runs"] == 1:
        txt += " ¹"
    return txt


def markdown(report: dict) -> str:
    rows = report["workloads"]
    labels = []
    for r in rows:
        for label in r["results"]:
            if label not in labels:
                labels.append(label)
    lines = []
    for runtime in ("shell", "python"):
        shapes = list(dict.fromkeys(r["shape"] for r in rows))
        rs = sorted((r for r in rows if r["runtime"] == runtime),
                    key=lambda r: (shapes.index(r["shape"]), r["n"]))
        if not rs:
            continue
        cols = [lb for lb in labels if any(lb in r["results"] for r in rs)]
        e3, mk = _main_label(cols, "e3"), _main_label(cols, "make")
        ratio = e3 and mk
        lines += [f"### {runtime.capitalize()} tasks", "",
                  "| workload | state | " + " | ".join(cols) + (" | e3 / make |" if ratio else " |"),
                  "|---|---|" + "---:|" * (len(cols) + (1 if ratio else 0))]
        for r in rs:
            for state in STATES:
                cells = [fmt(r["results"].get(lb, {}).get(state), state) for lb in cols]
                extra = ""
                if ratio:
                    a = r["results"].get(e3, {}).get(state, {})
                    b = r["results"].get(mk, {}).get(state, {})
                    extra = (f" | {a['median'] / b['median']:.1f}× / {a['cpu'] / b['cpu']:.1f}×"
                             if "median" in a and "median" in b and b["median"] and b["cpu"]
                             else " | —")
                name = f"{r['shape']} {r['n']:,}" if state == "cold" else ""
                st = state if state != "incr" else f"incr ({r['downstream']} downstream)"
                lines.append(f"| {name} | {st} | " + " | ".join(cells) + extra + " |")
        lines.append("")
    return "\n".join(lines)


def _main_label(cols, tool):
    for c in cols:
        if (c.startswith(tool + " ") or c.startswith(tool + "[")) and "FSYNC" not in c \
                and not c.endswith("-j1"):
            return c
    return None


def _paired(a: list[float], b: list[float]) -> str:
    """The median [min-max] of b's per-repetition ratios to a, and in how many b was slower."""
    pairs = list(zip(a, b))
    ratios = sorted(y / x for x, y in pairs if x)
    if not ratios:
        return "—"
    return (f"{statistics.median(ratios):.3f} [{ratios[0]:.2f}–{ratios[-1]:.2f}] "
            f"({sum(1 for x, y in pairs if y > x)}/{len(pairs)})")


def ab_table(report: dict) -> str:
    """The A/B of e3 builds: per cell, each build's median [min-max] wall seconds; for every
    build after the first, the median of its per-repetition ratios to the first build (runs of
    one repetition are neighbours in time) and in how many repetitions it was slower."""
    labels = [lb for lb in report.get("e3_labels", []) if lb]
    if len(labels) < 2:
        return ""
    base = labels[0]
    lines = ["| workload | state | " + " | ".join(labels) + " | "
             + " | ".join(f"{lb.split()[0]} / {base.split()[0]} (slower in)" for lb in labels[1:])
             + " | load |",
             "|---|---|" + "---:|" * (2 * len(labels))]
    for r in report["workloads"]:
        for state in STATES:
            cells = [r["results"].get(lb, {}).get(state) for lb in labels]
            if not any(cells):
                continue
            txt = []
            for c in cells:
                txt.append("—" if not c or "median" not in c else
                           f"{_num(c['median'])} [{_num(c['min'])}–{_num(c['max'])}]"
                           + (f" ({'/'.join(map(str, c['executed']))})" if state == "incr" else ""))
            a = cells[0]
            for c in cells[1:]:
                if not a or not c or "seconds" not in a or "seconds" not in c:
                    txt.append("—")
                    continue
                txt.append(_paired(a["seconds"], c["seconds"]))
                if "cpus" in a and "cpus" in c:
                    txt[-1] += " · CPU " + _paired(a["cpus"], c["cpus"])
            loads = [c["load"] for c in cells if c and "load" in c]
            name = f"{r['runtime']} {r['shape']} {r['n']:,}"
            load = f"{statistics.median(loads):.1f}" if loads else "—"
            lines.append(f"| {name} | {state} | " + " | ".join(txt) + f" | {load} |")
    return "\n".join(lines)


def targets(report: dict, jobs: int) -> list[tuple[str, str, str]]:
    """(target, figure, verdict) for the issue's targets, from this run's figures."""
    def get(shape, n, runtime, label, state):
        for r in report["workloads"]:
            if (r["shape"], r["n"], r["runtime"]) == (shape, n, runtime):
                return r["results"].get(label, {}).get(state)
        return None

    def med(cell):
        return cell.get("median") if cell else None

    e3 = report.get("e3_label") or f"e3 -j{jobs}"
    mk = f"make -j{jobs}"
    out = []

    def verdict(ok):
        return "met" if ok else "MISSED"

    for n, limit in ((1000, 0.2), (10_000, 1.0)):
        cells = [(f"{s} {rt}", med(get(s, n, rt, e3, "warm")))
                 for s in ("dag", "chain") for rt in ("shell", "python")]
        cells = [(k, v) for k, v in cells if v is not None]
        if cells:
            worst = max(v for _, v in cells)
            out.append((f"warm no-op at {n:,} tasks < {limit} s",
                        ", ".join(f"{k} {v:.3f} s" for k, v in cells), verdict(worst < limit)))
    for n in (1000, 10_000, 100):
        for s in ("dag", "chain"):
            ca, cb = get(s, n, "shell", e3, "cold"), get(s, n, "shell", mk, "cold")
            a, b = med(ca), med(cb)
            if a and b:
                out.append((f"cold shell within 1.3× make ({s} {n:,}, -j{jobs})",
                            f"e3 {a:.2f} s = {a / n * 1000:.2f} ms/task, make {b:.2f} s = "
                            f"{b / n * 1000:.2f} ms/task: {a / b:.2f}× (CPU: {ca['cpu']:.2f} s vs "
                            f"{cb['cpu']:.2f} s, {ca['cpu'] / max(cb['cpu'], 1e-9):.2f}×)",
                            verdict(a / b <= 1.3)))
    for n in (1000, 10_000):
        for label in (e3, "e3 -j1"):
            for s in ("dag", "chain"):
                a = med(get(s, n, "python", label, "cold"))
                if a:
                    out.append((f"python tasks < 2 ms/task ({s} {n:,}, {label})",
                                f"{a:.2f} s / {n:,} = {a / n * 1000:.2f} ms/task (start-up included)",
                                verdict(a / n < 0.002)))
    for s in ("dag", "chain"):
        a, b = med(get(s, 1000, "shell", e3, "incr")), med(get(s, 1000, "shell", mk, "incr"))
        if a:
            out.append((f"incremental under make's 0.49 s ({s} 1,000 shell)",
                        f"e3 {a:.3f} s" + (f", make here {b:.3f} s" if b else ""),
                        verdict(a < 0.49 and (b is None or a < b))))
    return out


def render(report: dict, append: str | None = None) -> str:
    m = report["machine"]
    lines = ["## Execution", "",
             f"`python bench/bench_go.py {' '.join(report['argv'])}` — {report['date']}, "
             f"e3 at {report.get('e3', '?')}, "
             f"{m['cpus']} CPUs, {m['platform']}, Python {m['python']}; peers: "
             + ", ".join(f"{k} {v}" for k, v in report["peers"].items()) + ".", "",
             "Each cell: median **wall seconds** of the whole command (start-up included) / "
             "median **CPU seconds** of it and its children, over "
             f"{report['runs']} runs (¹: a single run — cold at 10,000 tasks, DVC); incremental "
             "cells add (tasks that reran). `—`: not run (see notes). Ratios e3 / make: wall / "
             "CPU. Method and caveats: docs/benchmarks.md.", "",
             markdown(report)]
    ab = ab_table(report)
    if ab:
        lines += ["### A/B of e3 builds", "",
                  "Median wall seconds [min–max]; then, for each build against "
                  f"{report['e3_labels'][0].split()[0]}: the median [min–max] of the "
                  "per-repetition ratios (> 1: slower) and in how many repetitions it was "
                  "slower, of wall seconds and (· CPU) of CPU seconds; the 1-minute load "
                  "average (median of the cell's runs).", "", ab, ""]
    lines += ["### Targets (issue 5)", "", "| target | this run | verdict |", "|---|---|---|"]
    for t, fig, v in targets(report, report["jobs"]):
        lines.append(f"| {t} | {fig} | {v} |")
    lines += ["", "### Notes", ""]
    lines += [f"- {n}" for n in report.get("notes", [])]
    sp = [(r["workload"], r["runtime"], lb, s, c["spread"]) for r in report["workloads"]
          for lb, st in r["results"].items() for s, c in st.items() if c.get("spread") is not None
          and c["runs"] > 1]
    if sp:
        spreads = sorted(x[-1] for x in sp)
        loads = [c["load"] for r in report["workloads"] for st in r["results"].values()
                 for c in st.values() if "load" in c]
        lines.append(f"- Noise: (max−min)/median per cell: median {statistics.median(spreads):.0%}, "
                     f"90th percentile {spreads[int(0.9 * (len(spreads) - 1))]:.0%}; 1-minute load "
                     f"average during the runs: median {statistics.median(loads):.1f} "
                     f"(max {max(loads):.1f}) on {m['cpus']} CPUs.")
    skipped = {}
    for r in report["workloads"]:
        for lb, why in r["skipped"].items():
            skipped.setdefault(why, []).append(f"{r['workload']} {r['runtime']}")
    for why, where in skipped.items():
        lines.append(f"- Not run: {why} ({len(where)} workloads).")
    if append:
        lines += ["", Path(append).read_text().rstrip()]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace (or append) the `## Execution` section of RESULTS.md, leaving the rest alone."""
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.rstrip() == "## Execution"), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        new = "".join(lines[:start]) + section + ("\n" if end < len(lines) else "") + "".join(lines[end:])
    path.write_text(new)


def e3_source(spec: str) -> tuple[Path, str]:
    """The e3logic to measure: `worktree` (the live source tree, with whatever is uncommitted)
    or a git revision, exported once (e3logic/ and rules/) to bench/_work/e3src-<sha> so that a
    long run measures one fixed version even while the tree changes under it."""
    def git(*a):
        return subprocess.run(["git", "-C", str(T.REPO), *a], check=True, capture_output=True,
                              text=True).stdout.strip()

    if spec == "worktree":
        try:
            dirty = git("status", "--short", "e3logic")
            return T.REPO, git("rev-parse", "--short=12", "HEAD") + (
                " + uncommitted changes" if dirty else "")
        except (OSError, subprocess.CalledProcessError):   # no git: still measure the tree
            return T.REPO, "the working tree"
    sha = git("rev-parse", spec + "^{commit}")
    dest = WORK / f"e3src-{sha[:12]}"
    if not dest.exists():
        tmp = WORK / f"e3src-{sha[:12]}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        # the package and the shipped rules beside it (e3logic.RULES_DIR), where the rev has them
        parts = [p for p in ("e3logic", "rules") if git("ls-tree", "--name-only", sha, p)]
        tar = subprocess.run(["git", "-C", str(T.REPO), "archive", sha, *parts], check=True,
                             capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=tar, check=True)
        tmp.rename(dest)
    return dest, sha[:12]


def merge(reports: list[dict]) -> dict:
    """The first report, with cells of later ones (e.g. a longer-timeout e3 run at 10,000 tasks)
    filled in where the first has none or only a timeout; each such merge is noted."""
    base = reports[0]
    for extra in reports[1:]:
        for wl in extra["workloads"]:
            mine = next((r for r in base["workloads"] if (r["workload"], r["runtime"])
                         == (wl["workload"], wl["runtime"])), None)
            if mine is None:
                base["workloads"].append(wl)
                failed = f"{wl['workload']} {wl['runtime']}: FAILED"
                base["notes"] = [n for n in base.get("notes", []) if not n.startswith(failed)]
                mine = wl
                took = list(wl["results"])
            else:
                took = []
                for label, states in wl["results"].items():
                    have = mine["results"].setdefault(label, {})
                    for st, cell in states.items():
                        if st not in have or "timeout" in have[st]:
                            have[st] = cell
                            took.append(f"{label} {st}")
            run = f"`bench_go.py {' '.join(extra['argv'])}`, e3 at {extra.get('e3', '?')}"
            if mine is wl:
                base.setdefault("notes", []).append(
                    f"{wl['workload']} {wl['runtime']}: the whole row from a separate run ({run}).")
            elif took:
                base.setdefault("notes", []).append(
                    f"{wl['workload']} {wl['runtime']}: {', '.join(sorted(set(took)))} from a "
                    f"separate run ({run}) — not interleaved with the peers.")
    return base


# -- peers -------------------------------------------------------------------------------------

def peer_versions(venv: Path) -> dict:
    out = {}
    try:
        out["make"] = subprocess.run(["make", "--version"], capture_output=True, text=True
                                     ).stdout.split("\n")[0].replace("GNU Make ", "")
    except OSError:
        pass
    py = venv / "bin" / "python"
    for name in PEER_PACKAGES:
        if (venv / "bin" / name).exists():
            r = subprocess.run([str(py), "-c", f"import importlib.metadata as m; "
                                f"print(m.version({name!r}))"], capture_output=True, text=True)
            if r.returncode == 0:
                out[name] = r.stdout.strip()
    return out


def install_peers(venv: Path, names) -> None:
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                    *[PEER_PACKAGES[n] for n in names]], check=True)


# -- main --------------------------------------------------------------------------------------

def ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: e3 and the floor engine, dag of 10, 1 run")
    ap.add_argument("--sizes", type=ints, default=[10, 100, 1000, 10_000])
    ap.add_argument("--shapes", type=lambda s: s.split(","), default=["dag", "chain"])
    ap.add_argument("--runtimes", type=lambda s: s.split(","), default=["shell", "python"])
    ap.add_argument("--tools", type=lambda s: s.split(","),
                    default=["e3", "make", "doit", "snakemake", "dvc"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cold-runs-large", type=int, default=1, help="cold runs at >= 10,000 tasks")
    ap.add_argument("--state-runs", action="append", default=[], metavar="STATE=N",
                    help="repetitions of one state instead of --runs (e.g. warm=30: the no-op "
                         "is cheap and its differences small; cold at >= 10,000: "
                         "--cold-runs-large)")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--tool-runs", action="append", default=["dvc=1"], metavar="TOOL=N",
                    help="fewer runs for a slow tool (default: dvc=1)")
    ap.add_argument("--large-shapes", type=lambda s: s.split(","), default=["dag"],
                    help="shapes run at >= 10,000 tasks")
    ap.add_argument("--large-runtimes", type=lambda s: s.split(","), default=["shell"],
                    help="runtimes run at >= 10,000 tasks")
    ap.add_argument("--variant-shapes", type=lambda s: s.split(","), default=["dag"],
                    help="shapes where the -j1 and E3_FSYNC=0 variants run")
    ap.add_argument("--j1-sizes", type=ints, default=[1000],
                    help="sizes where e3 and make also run with -j 1")
    ap.add_argument("--nofsync-sizes", type=ints, default=[1000],
                    help="sizes where e3 also runs with E3_FSYNC=0")
    ap.add_argument("--max-n", action="append", default=[], metavar="TOOL[:RUNTIME]=N",
                    help="largest workload for a tool (defaults: snakemake=1000, "
                         "snakemake:python=10, make:python=1000, dvc=100)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per command")
    ap.add_argument("--e3", metavar="[NAME=]REV|worktree", action="append",
                    help="the e3logic to measure: a git revision (default HEAD, exported to "
                         "bench/_work) or `worktree` (the live tree; the default with --quick); "
                         "several (NAME=REV each) for an A/B: contenders e3[NAME], interleaved "
                         "in alternating order")
    ap.add_argument("--peers-venv", default=str(PEERS_VENV))
    ap.add_argument("--install-peers", action="store_true",
                    help="create --peers-venv and pip install doit, snakemake, dvc, then exit")
    ap.add_argument("--work", help="default bench/_work/go (--quick: bench/_work/go-quick)")
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    ap.add_argument("--json-out", help="default bench/_work/bench_go[-quick].json")
    ap.add_argument("--results", help="rewrite the `## Execution` section of this markdown file")
    ap.add_argument("--from-json", help="only render a previous run's JSON (several, comma-"
                                        "separated: later ones fill cells the first lacks)")
    ap.add_argument("--append", help="a markdown file appended to the rendered section "
                                     "(e.g. profile findings)")
    args = ap.parse_args(argv)

    if args.install_peers:
        install_peers(Path(args.peers_venv), [t for t in PEER_PACKAGES])
        print(peer_versions(Path(args.peers_venv)))
        return 0
    if args.from_json:
        report = merge([json.loads(Path(f).read_text()) for f in args.from_json.split(",")])
        section = render(report, args.append)
        if args.results:
            write_section(Path(args.results), section)
        print(section)
        return 0
    if args.quick:
        args.sizes, args.shapes, args.tools, args.runs = [10], ["dag"], ["e3", "floor-imports"], 1
        args.cold_runs_large = 1
    args.e3 = args.e3 or ["worktree" if args.quick else "HEAD"]
    args.json_out = args.json_out or str(WORK / ("bench_go-quick.json" if args.quick
                                                 else "bench_go.json"))
    args.work = str(Path(args.work or WORK / ("go-quick" if args.quick else "go")).resolve())
    args.max_n = {"snakemake:python": 10, "make:python": 1000,
                  **{k: int(v) for k, v in (x.split("=") for x in args.max_n)}}
    args.tool_runs = {k: int(v) for k, v in (x.split("=") for x in args.tool_runs)}
    args.state_runs = {k: int(v) for k, v in (x.split("=") for x in args.state_runs)}
    if set(args.state_runs) - set(STATES):
        raise SystemExit(f"--state-runs: states are {', '.join(STATES)}")
    Path(args.work).mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", file=sys.stderr, flush=True)

    args.e3_srcs, versions = [], []
    for spec in args.e3:
        tag, _, rev = spec.rpartition("=")
        src, version = e3_source(rev)
        tag = tag or (rev if len(args.e3) > 1 and rev.replace("-", "").replace(".", "").isalnum()
                      else version.split()[0][:8])
        if any(t == tag for t, _ in args.e3_srcs):
            raise SystemExit(f"--e3: two builds named {tag!r}; name them NAME=REV")
        args.e3_srcs.append((tag, src))
        versions.append(version if len(args.e3) == 1 else f"{tag}={version}")
        if "e3" in args.tools:   # compile e3's bytecode into the cache once (not timed)
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(src / "e3logic")],
                           env={**os.environ, "PYTHONPYCACHEPREFIX": str(WORK / "pycache")},
                           stdout=subprocess.DEVNULL, check=True)
    e3_version = ", ".join(versions)
    e3_labels = ([f"e3[{t}] -j{args.jobs}" for t, _ in args.e3_srcs] if len(args.e3_srcs) > 1
                 else [f"e3 -j{args.jobs}"])
    report = {"argv": sys.argv[1:] if argv is None else list(argv),
              "date": time.strftime("%Y-%m-%d"), "runs": args.runs, "e3": e3_version,
              "cold_runs_large": args.cold_runs_large, "jobs": args.jobs,
              "e3_labels": e3_labels, "e3_label": e3_labels[0], "state_runs": args.state_runs,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(terse=True),
                          "python": platform.python_version(), "executable": sys.executable},
              "peers": {} if args.quick else peer_versions(Path(args.peers_venv)),
              "workloads": [], "notes": []}
    failed = False
    for runtime in args.runtimes:
        for shape in args.shapes:
            for n in args.sizes:
                if n >= 10_000 and (shape not in args.large_shapes
                                    or runtime not in args.large_runtimes):
                    continue
                w = W.make(shape, n)
                log(f"{w.label} {runtime}")
                try:
                    report["workloads"].append(bench_workload(args, w, runtime, log))
                except Exception as e:  # a wrong output or a failed command: report, go on
                    log(f"  FAILED: {e}")
                    report["notes"].append(f"{w.label} {runtime}: FAILED: {str(e)[:300]}")
                    failed = True
                Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.json_out).write_text(json.dumps(report, indent=1))
    report["seconds"] = time.perf_counter() - t_start
    Path(args.json_out).write_text(json.dumps(report, indent=1))
    section = render(report, args.append)
    if args.results:
        write_section(Path(args.results), section)
    print(section)
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)
    return 1 if failed else 0


def _sigterm(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _sigterm)
    sys.exit(main())
