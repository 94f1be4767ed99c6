"""Scale benchmark (issue 20, items 3-4): every command of a project of N dataflows, and `e3 go`
cold, warm and incremental, under `ulimit -n 1024`.

    python bench/bench_scale.py --quick                    # seconds: 200 tasks, shell and python
    python bench/bench_scale.py                            # 100,000 tasks, shell and python
    python bench/bench_scale.py --sizes 10000,100000 --runtimes python
    python bench/bench_scale.py --sizes 1000000 --runtimes shell --steps build,add,checkout,plan,dry-run
    python bench/bench_scale.py --e3 HEAD~3                # a commit instead of the live tree

Workload: the 10-layer DAG of bench_go (bench/peers/workload.py: width N/10, 2-3 inputs a task,
N/10 leaf inputs), shell tasks (`cat | md5sum`) or python tasks (md5 in e3's worker pool).

Steps, in order, each one fresh `e3` process timed as a whole (start-up included), in one
project under --work (default /tmp/e3scale; it is deleted at the end unless --keep):
`build` (the package directory into a bundle), `init` (not timed), `add`, `checkout`, `status`,
`plan`, `dry-run` (`go --dry-run`), `cold` (`go -j J`), `warm` (`go -j J` again: the no-op,
--warm-runs times), `incr` (1 % of the leaf inputs edited — the first ones, so ~1 % of the
tasks are downstream — then `go -j J`), `status2`, `deps` (`e3 deps` of the last dataflow),
`query` (`e3 query 'deps("<last>", U)'`), `gc` (`gc --min-age 0`), `fsck`. --steps picks a
subset (a step whose prerequisites were not run fails as e3 would).

How each figure is measured: the command runs with RLIMIT_NOFILE = --nofile (soft and hard, set
in the child before exec). `wall`: time.perf_counter() around it. `cpu`: user+sys of the engine
and every task process it waited for (os.wait4's rusage). `engine cpu`: the engine process's own
user+sys, read from /proc/PID/stat once it has exited but before it is reaped (waitid WNOWAIT).
`engine rss`: the engine process's own peak RSS, VmHWM of /proc/PID/status polled every 20 ms
(a high-water mark, so only growth in the last 20 ms can be missed). `tree rss`: os.wait4's
ru_maxrss, the largest peak of the engine and of any task process it reaped — the engine's own
figure whenever the two agree. `load`: the 1-minute load average as the step starts (2 CPUs,
shared: compare CPU seconds as well as wall). After `cold` and `incr` every output file is
checked against md5s computed here, and the number of tasks `go --json` executed is recorded.
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

from bench_go import WORK, e3_source  # noqa: E402
from peers import gen  # noqa: E402
from peers import workload as W  # noqa: E402

STEPS = ("build", "add", "checkout", "status", "plan", "dry-run", "cold", "warm", "incr",
         "status2", "deps", "query", "gc", "fsck")
TICK = os.sysconf("SC_CLK_TCK")


def measure(cmd: list[str], cwd: Path, env: dict, nofile: int, timeout: float,
            out: Path) -> dict:
    """Run `cmd` once in a fresh child under RLIMIT_NOFILE=nofile; see the module docstring."""
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    load = os.getloadavg()[0]
    hwm = [0]
    done = threading.Event()
    with open(out / "last.stdout", "wb") as so, open(out / "last.stderr", "wb") as se:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=so,
                             stderr=se, preexec_fn=limit, start_new_session=True)

        def poll():
            path = f"/proc/{p.pid}/status"
            while not done.is_set():
                try:
                    with open(path) as f:
                        for line in f:
                            if line.startswith("VmHWM:"):
                                hwm[0] = max(hwm[0], int(line.split()[1]))
                                break
                except OSError:
                    pass
                done.wait(0.02)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
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
            os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)   # exited, not yet reaped
            dt = time.perf_counter() - t0
            try:
                with open(f"/proc/{p.pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                engine_cpu = (int(fields[11]) + int(fields[12])) / TICK
            except (OSError, IndexError, ValueError):
                engine_cpu = None
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
        except BaseException:
            kill()
            raise
        finally:
            timer.cancel()
            done.set()
            poller.join()
    r = {"wall": dt, "cpu": ru.ru_utime + ru.ru_stime, "engine_cpu": engine_cpu,
         "engine_rss_mb": hwm[0] / 1024, "tree_rss_mb": ru.ru_maxrss / 1024, "load": load,
         "rc": p.returncode}
    if expired.is_set():
        r["timeout"] = timeout
    if p.returncode != 0:
        r["error"] = (out / "last.stderr").read_text(errors="replace")[-2000:]
    return r


class Project:
    """One e3 project of the 10-layer DAG at one size and runtime, driven step by step."""

    def __init__(self, args, n: int, runtime: str, src: Path, log, work: Path | None = None,
                 pkg: Path | None = None):
        self.args, self.n, self.runtime, self.log = args, n, runtime, log
        self.w = W.make("dag", n)
        self.work = work or Path(args.work) / f"dag-{n}-{runtime}"
        self.pkg = pkg or self.work / "pkg"
        self.dir = self.work / "proj"
        self.label = ""
        env = {k: v for k, v in os.environ.items()
               if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("E3_")}
        self.env = {**env, "PYTHONPATH": str(src) + os.pathsep + env.get("PYTHONPATH", ""),
                    "PYTHONPYCACHEPREFIX": str(WORK / "pycache"), "E3_FSYNC": "1"}
        self.edits = 0
        self.results: dict[str, list[dict]] = {}

    def e3(self, *a) -> list[str]:
        return [sys.executable, "-m", "e3logic", *a]

    def run(self, step: str, cmd: list[str], cwd: Path | None = None) -> dict:
        r = measure(cmd, cwd or self.dir, self.env, self.args.nofile, self.args.timeout,
                    self.work)
        r["step"] = step
        if r["rc"] == 0 and cmd[3:4] == ["--json"] and cmd[4:5] == ["go"]:
            d = json.loads((self.work / "last.stdout").read_text())
            r["executed"] = len(d.get("executed", []))
            r["would_run"] = len(d.get("would_run", [])) if "would_run" in d else None
            r["status"] = d.get("status")
        self.results.setdefault(step, []).append(r)
        extra = f" ran {r['executed']}" if "executed" in r else ""
        self.log(f"  {self.label}{self.runtime} {self.n:,} {step:8s} {r['wall']:8.2f}s  cpu {r['cpu']:7.2f}s"
                 f"  engine cpu {r['engine_cpu'] or 0:7.2f}s  engine rss {r['engine_rss_mb']:6.0f}"
                 f" MB  tree rss {r['tree_rss_mb']:6.0f} MB  load {r['load']:.1f}{extra}"
                 + (f"  FAILED rc={r['rc']}: {r['error'].strip().splitlines()[-1:]}"
                    if r["rc"] else ""))
        return r

    def settle_copy(self, step: str) -> None:
        """A copy has new inode numbers: the stat cache misses on every file, and the first
        command would hash them all again. One untimed command lets it learn them (a warm
        `go` where outputs exist, else `status`) before `step` is measured."""
        if step in ("build", "add", "checkout", "cold"):
            return
        after_cold = STEPS.index(step) > STEPS.index("cold")
        cmd = self.e3("go", "-j", str(self.args.jobs)) if after_cold else self.e3("status")
        subprocess.run(cmd, cwd=self.dir, env=self.env, check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # -- the steps ---------------------------------------------------------------------------
    def prepare(self) -> None:
        if self.args.reuse and (self.dir / ".e3").is_dir():
            self.log(f"  {self.runtime} {self.n:,} reusing {self.dir}")
            return
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        t0 = time.perf_counter()
        gen.e3(self.w, self.runtime, self.pkg)
        self.dir.mkdir()
        subprocess.run(self.e3("init", "."), cwd=self.dir, env=self.env, check=True,
                       stdout=subprocess.DEVNULL)
        self.log(f"  {self.runtime} {self.n:,} generated ({time.perf_counter() - t0:.1f}s)")

    def step(self, name: str) -> dict | None:
        zip_ = self.pkg / "dist" / "bench-1.0.0.zip"
        last = list(self.w.tasks)[-1]
        if name == "build":
            return self.run(name, self.e3("build", str(self.pkg), "-o", str(self.pkg / "dist")),
                            cwd=self.pkg)
        if name == "add":
            return self.run(name, self.e3("add", str(zip_)))
        if name == "checkout":
            return self.run(name, self.e3("checkout", "bench"))
        if name in ("status", "status2"):
            return self.run(name, self.e3("--json", "status"))
        if name == "plan":
            return self.run(name, self.e3("--json", "plan", "-j", str(self.args.jobs)))
        if name == "dry-run":
            return self.run(name, self.e3("--json", "go", "--dry-run", "-j", str(self.args.jobs)))
        if name == "cold":
            r = self.run(name, self.e3("--json", "go", "-j", str(self.args.jobs)))
            self.verify(r, {})
            return r
        if name == "warm":
            for _ in range(self.args.warm_runs):
                r = self.run(name, self.e3("--json", "go", "-j", str(self.args.jobs)))
                if r["rc"] or r.get("executed"):
                    r["wrong"] = f"warm run executed {r.get('executed')}"
            return r
        if name == "incr":
            self.edits += 1
            leaves = self.edited_leaves()
            for leaf in leaves:
                (self.dir / gen.e3_leaf_path(leaf)).write_bytes(
                    self.w.leaf_content(leaf, self.edits))
            r = self.run(name, self.e3("--json", "go", "-j", str(self.args.jobs)))
            r["edited"] = len(leaves)
            self.verify(r, {leaf: self.edits for leaf in leaves})
            return r
        if name == "deps":
            return self.run(name, self.e3("--json", "deps", last))
        if name == "query":
            return self.run(name, self.e3("--json", "query", f'deps("{last}", U)'))
        if name == "gc":
            return self.run(name, self.e3("--json", "gc", "--min-age", "0"))
        if name == "fsck":
            return self.run(name, self.e3("--json", "fsck"))
        raise SystemExit(f"unknown step {name!r}")

    def edited_leaves(self) -> list[str]:
        """1 % of the leaf inputs (at least one): the first ones, adjacent, so that their
        downstream closure is ~1 % of the tasks too (it widens by two nodes a layer)."""
        k = max(1, len(self.w.leaves) // 100)
        return self.w.leaves[:k]

    def verify(self, r: dict, edits: dict) -> None:
        """Every output file against md5s computed here; the executed count against the
        downstream closure of the edits (everything on a cold run)."""
        if r["rc"]:
            return
        want = self.w.expected(edits)
        bad = [t for t, b in want.items()
               if (self.dir / gen.e3_output_path(t)).read_bytes() != b]
        if bad:
            r["wrong"] = f"{len(bad)} wrong outputs, e.g. {bad[:3]}"
        expect = len(want) if not edits else len(self._downstream(set(edits)))
        r["expected_executed"] = expect
        if r.get("executed") != expect:
            r["wrong"] = (r.get("wrong", "") + f" executed {r.get('executed')} != {expect}").strip()
        if "wrong" in r:
            self.log(f"  WRONG: {r['wrong']}")

    def _downstream(self, leaves: set) -> list[str]:
        dirty = {("leaf", x) for x in leaves}
        out = []
        for t, ins in self.w.tasks.items():
            if any(i in dirty for i in ins):
                dirty.add(("task", t))
                out.append(t)
        return out


# -- A/B of e3 builds ---------------------------------------------------------------------------

def _copy(src: Path, dest: Path, trash: Path) -> None:
    """dest := a copy of src (the old dest moved aside: deleting many files right before a timed
    run slows the file creation of that run, see bench/peers/tools.py)."""
    if dest.exists():
        trash.mkdir(exist_ok=True)
        os.rename(dest, trash / f"{dest.name}-{time.monotonic_ns()}")
    subprocess.run(["cp", "-a", str(src), str(dest)], check=True)


def ab(args, n: int, runtime: str, builds: list, log) -> dict:
    """Each of args.ab_steps measured for every build, interleaved in alternating order (A B,
    then B A, ...), args.runs times. The state before a step is made once, untimed, with the
    first build; each build then works on a copy of its own (`cold` starts from a fresh copy
    every time; `warm`, `incr` and the read-only steps go on in theirs, so every build does the
    same work: incr edits the same inputs with the same new bytes; see `settle_copy`)."""
    base = Project(args, n, runtime, builds[0][1], log)
    base.label = "(state) "
    base.prepare()
    trash = base.work / "old-copies"
    out = {}
    last = max(STEPS.index(s) for s in args.ab_steps)
    for step in STEPS[:last + 1]:
        if step in args.ab_steps:
            pristine = base.work / "pristine"
            _copy(base.dir, pristine, trash)
            clones = {}
            for tag, src in builds:
                c = Project(args, n, runtime, src, log, work=base.work / f"ab-{tag}", pkg=base.pkg)
                c.label, c.edits = f"[{tag}] ", base.edits
                c.work.mkdir(exist_ok=True)
                _copy(pristine, c.dir, trash)
                c.settle_copy(step)
                clones[tag] = c
            for i in range(args.runs):
                for tag, _ in (builds if i % 2 == 0 else builds[::-1]):
                    c = clones[tag]
                    if step == "cold" and i:
                        _copy(pristine, c.dir, trash)
                    c.step(step)
            out[step] = {tag: c.results[step] for tag, c in clones.items()}
            if STEPS.index(step) == last:
                break
        r = base.step(step)
        if r["rc"] or "wrong" in r:
            raise RuntimeError(f"the state for the A/B failed at {step}: {r.get('error') or r['wrong']}")
    return out


def _paired(a: list[float], b: list[float]) -> str:
    ratios = sorted(y / x for x, y in zip(a, b) if x)
    if not ratios:
        return "—"
    return (f"{statistics.median(ratios):.3f} [{ratios[0]:.2f}–{ratios[-1]:.2f}] "
            f"({sum(1 for x, y in zip(a, b) if y > x)}/{len(ratios)})")


def ab_table(results: list[dict], tags: list[str]) -> str:
    """Per size, runtime and step: each build's median wall [min-max], CPU and engine CPU and
    peak RSS; each later build against the first, paired by round (wall and CPU ratio: > 1
    slower, and in how many rounds it was slower)."""
    a = tags[0]
    lines = ["| workload | step | " + " | ".join(f"{t}: wall s [min–max] / CPU s / engine "
                                                  f"RSS MB" for t in tags)
             + " | " + " | ".join(f"{t} / {a} wall (slower in) | CPU" for t in tags[1:])
             + " | load |",
             "|---|---|" + "---:|" * (len(tags) + 2 * (len(tags) - 1) + 1)]
    med = statistics.median
    for res in results:
        for step, by in res["steps"].items():
            cells, loads = [], []
            for t in tags:
                rs = [r for r in by[t] if not r["rc"]]
                if not rs:
                    cells.append("failed")
                    continue
                w = [r["wall"] for r in rs]
                loads += [r["load"] for r in rs]
                cells.append(f"{med(w):.2f} [{min(w):.2f}–{max(w):.2f}] / "
                             f"{med(r['cpu'] for r in rs):.2f} / "
                             f"{max(r['engine_rss_mb'] for r in rs):.0f}")
            for t in tags[1:]:
                cells.append(_paired([r["wall"] for r in by[a]], [r["wall"] for r in by[t]]))
                cells.append(_paired([r["cpu"] for r in by[a]], [r["cpu"] for r in by[t]]))
            lines.append(f"| {res['runtime']} dag {res['n']:,} | {step} | " + " | ".join(cells)
                         + f" | {med(loads):.1f} |" if loads else " | — |")
    return "\n".join(lines)


def summarize(rs: list[dict]) -> dict:
    ok = [r for r in rs if not r["rc"]]
    if not ok:
        return {"failed": rs[0].get("error", "")[-500:], "rc": rs[0]["rc"],
                "timeout": rs[0].get("timeout"), "wall": rs[0]["wall"],
                "engine_rss_mb": rs[0]["engine_rss_mb"], "load": rs[0]["load"]}
    med = statistics.median
    out = {k: med(r[k] for r in ok) for k in ("wall", "cpu", "load")}
    out["engine_cpu"] = med(r["engine_cpu"] or 0 for r in ok)
    out["engine_rss_mb"] = max(r["engine_rss_mb"] for r in ok)
    out["tree_rss_mb"] = max(r["tree_rss_mb"] for r in ok)
    out["runs"] = len(ok)
    out["walls"] = [r["wall"] for r in ok]
    for k in ("executed", "would_run", "edited", "wrong"):
        if k in ok[-1]:
            out[k] = ok[-1][k]
    return out


def table(report: dict) -> str:
    lines = []
    for sz in report["sizes"]:
        lines += [f"#### {sz['runtime']} dag {sz['n']:,}", "",
                  "| step | wall s | CPU s (engine + tasks) | engine CPU s | engine peak RSS MB "
                  "| tree peak RSS MB | load | notes |",
                  "|---|---:|---:|---:|---:|---:|---:|---|"]
        for step, c in sz["steps"].items():
            if "failed" in c:
                what = f"timeout after {c['timeout']:.0f} s" if c.get("timeout") else \
                    f"FAILED (exit {c['rc']}): " + (c["failed"].strip().splitlines() or [""])[-1]
                lines.append(f"| {step} | {c['wall']:.2f} | — | — | {c['engine_rss_mb']:.0f} "
                             f"| — | {c['load']:.1f} | {what} |")
                continue
            notes = []
            if c["runs"] > 1:
                notes.append(f"median of {c['runs']} [{min(c['walls']):.2f}–{max(c['walls']):.2f}]")
            if c.get("would_run") is not None:
                notes.append(f"would run {c['would_run']:,}")
            elif "executed" in c:
                notes.append(f"executed {c['executed']:,}")
            if "edited" in c:
                notes.append(f"{c['edited']} inputs edited")
            if "wrong" in c:
                notes.append(f"WRONG: {c['wrong']}")
            lines.append(f"| {step} | {c['wall']:.2f} | {c['cpu']:.2f} | {c['engine_cpu']:.2f} | "
                         f"{c['engine_rss_mb']:.0f} | {c['tree_rss_mb']:.0f} | {c['load']:.1f} | "
                         f"{'; '.join(notes)} |")
        lines.append("")
    return "\n".join(lines)


def ints(s: str) -> list[int]:
    return [int(x.replace("_", "")) for x in s.split(",") if x]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 200 tasks, 1 warm run")
    ap.add_argument("--sizes", type=ints, default=[100_000])
    ap.add_argument("--runtimes", type=lambda s: s.split(","), default=["shell", "python"])
    ap.add_argument("--steps", type=lambda s: s.split(","), default=list(STEPS))
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--warm-runs", type=int, default=3)
    ap.add_argument("--nofile", type=int, default=1024, help="RLIMIT_NOFILE of every command")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per command")
    ap.add_argument("--e3", action="append", default=None, metavar="[NAME=]REV",
                    help="a git revision to measure (exported to bench/_work), `worktree` "
                    "(default: the live tree), or a directory holding an e3logic/ source tree; "
                    "several NAME=REV: an interleaved A/B of those builds on --ab-steps")
    ap.add_argument("--ab-steps", type=lambda s: s.split(","), default=["cold", "warm", "incr"],
                    help="the steps an A/B measures (default cold,warm,incr)")
    ap.add_argument("--runs", type=int, default=5, help="rounds of an A/B")
    ap.add_argument("--work", default="/tmp/e3scale")
    ap.add_argument("--keep", action="store_true", help="keep the projects under --work")
    ap.add_argument("--reuse", action="store_true", help="go on in a project kept by an earlier "
                    "--keep run (e.g. --steps add,checkout after a build), instead of a new one")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.warm_runs, args.timeout = [200], 1, 120.0
        args.work = str(WORK / "scale-quick")
    bad = set(args.steps) - set(STEPS)
    if bad:
        raise SystemExit(f"--steps: unknown {sorted(bad)}; steps are {', '.join(STEPS)}")
    args.json_out = args.json_out or str(WORK / ("bench_scale-quick.json" if args.quick
                                                 else "bench_scale.json"))
    builds, versions = [], []
    for spec in args.e3 or ["worktree"]:
        tag, _, rev = spec.rpartition("=")
        if (Path(rev) / "e3logic").is_dir():   # a source tree (e.g. patched)
            src, version = Path(rev).resolve(), f"the source tree {rev}"
        else:
            src, version = e3_source(rev)
        builds.append((tag or rev, src))
        versions.append(f"{tag}={version}" if tag else version)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(src / "e3logic")],
                       env={**os.environ, "PYTHONPYCACHEPREFIX": str(WORK / "pycache")},
                       stdout=subprocess.DEVNULL, check=True)
    src, version = builds[0][1], ", ".join(versions)
    if len({t for t, _ in builds}) != len(builds):
        raise SystemExit("--e3: name the builds of an A/B NAME=REV, each name once")
    t_start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", file=sys.stderr, flush=True)

    report = {"argv": sys.argv[1:] if argv is None else list(argv), "e3": version,
              "date": time.strftime("%Y-%m-%d"), "jobs": args.jobs, "nofile": args.nofile,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(terse=True),
                          "python": platform.python_version()}, "sizes": []}
    if len(builds) > 1:
        bad = set(args.ab_steps) - set(STEPS)
        if bad:
            raise SystemExit(f"--ab-steps: unknown {sorted(bad)}")
        results = []
        for n in args.sizes:
            for runtime in args.runtimes:
                log(f"A/B dag {n:,} {runtime}: {', '.join(versions)}")
                results.append({"n": n, "runtime": runtime,
                                "steps": ab(args, n, runtime, builds, log)})
                report["ab"] = results
                Path(args.json_out).write_text(json.dumps(report, indent=1))
                if not args.keep:
                    shutil.rmtree(Path(args.work) / f"dag-{n}-{runtime}", ignore_errors=True)
        print(f"`python bench/bench_scale.py {' '.join(report['argv'])}` — {report['date']}, "
              f"{version}, -j{args.jobs}, ulimit -n {args.nofile}, {args.runs} rounds\n")
        print(ab_table(results, [t for t, _ in builds]))
        return 0
    failed = False
    for n in args.sizes:
        for runtime in args.runtimes:
            log(f"dag {n:,} {runtime}")
            p = Project(args, n, runtime, src, log)
            entry = {"n": n, "runtime": runtime, "steps": {}}
            report["sizes"].append(entry)
            try:
                p.prepare()
                for s in [s for s in STEPS if s in args.steps]:
                    r = p.step(s)
                    entry["steps"][s] = summarize(p.results[s])
                    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
                    Path(args.json_out).write_text(json.dumps(report, indent=1))
                    if r["rc"] or "wrong" in r:
                        failed = True
                        log(f"  stopping {runtime} {n:,} at {s}")
                        break
            finally:
                if not args.keep:
                    shutil.rmtree(p.work, ignore_errors=True)
    report["seconds"] = time.perf_counter() - t_start
    Path(args.json_out).write_text(json.dumps(report, indent=1))
    print(f"`python bench/bench_scale.py {' '.join(report['argv'])}` — {report['date']}, e3 at "
          f"{version}, -j{args.jobs}, ulimit -n {args.nofile}, {os.cpu_count()} CPUs\n")
    print(table(report))
    return 1 if failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    sys.exit(main())
