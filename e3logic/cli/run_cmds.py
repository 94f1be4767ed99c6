"""Running: go, run, plan, logs, episodes, stats, cancel."""
from __future__ import annotations

import gc
import sys
import time

import click

from ..core.errors import EXIT_CANCELLED, EXIT_FAILED
from .common import emit, pass_opts, table


class Reporter:
    """`[i/N] name... done (0.5s)` lines (stderr with --json). On a terminal, a live area
    instead (rich), drawn from the first start or non-cached outcome (a run answered at once
    draws nothing): a counts line (`e3 go ━━━━╺━━ 3/6 1 done, 2 cached, 2 running`: done never
    exceeds the run's N) over a line per running dataflow with its elapsed time (redrawn 4 times
    a second); each finished dataflow's line printed above it without a number (`name... done
    (3.0s): why`, `name... FAILED (0.5s): exit 3`; cached ones only counted); at the end the
    area goes and its counts line stays (`e3 go 6/6: 2 done, 4 cached`)."""

    WORDS = {"executed": "done", "cached": "cached", "pulled": "pulled", "failed": "FAILED",
             "skipped": "skipped", "cancelled": "cancelled"}
    COUNTS = (("pulled", "pulled"), ("executed", "done"), ("cached", "cached"), ("failed", "failed"),
              ("skipped", "skipped"), ("cancelled", "cancelled"))
    SHOWN = 10  # running lines at most (then `… and 7 more`)

    def __init__(self, to_stderr: bool):
        import threading

        self.stream = sys.stderr if to_stderr else sys.stdout
        self.tty = self.stream.isatty()
        self.i = 0
        self.n = 0
        self.progress = None  # the rich Live area on a terminal, while drawn
        self.reasons: dict = {}
        self.counts: dict = {}  # outcome -> how many (terminal)
        self.running: dict = {}  # name -> time.monotonic() at its start (terminal)
        self.lock = threading.Lock()  # the area redraws from rich's thread

    def start(self, n: int) -> None:
        self.n = n

    def explain(self, reasons: dict) -> None:
        """Why each dataflow about to run runs: shown on its line when it is done."""
        self.reasons = dict(reasons)

    def started(self, name: str) -> None:
        """`name` runs from now: a running line on a terminal (nothing otherwise)."""
        if not (self.tty and self.n):
            return
        with self.lock:
            self.running[name] = time.monotonic()
        self._area()

    def _area(self):
        if self.progress is None:
            from rich.console import Console
            from rich.live import Live

            # no stdout/stderr redirection: inline tasks route their prints themselves
            # (drawn from `__rich__` at each render: a line printed above it redraws it current)
            self.progress = Live(self, console=Console(file=self.stream), refresh_per_second=4,
                                 transient=True, redirect_stdout=False, redirect_stderr=False)
            self.progress.start()
        return self.progress

    def _summary(self) -> str:
        """`2 done, 4 cached` (lock held)."""
        return ", ".join(f"{self.counts[k]} {word}" for k, word in self.COUNTS
                         if self.counts.get(k))

    def __rich__(self):
        """The live area now (rich renders it from its refresh thread)."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        with self.lock:
            now = time.monotonic()
            done = min(self.i, self.n)
            parts = [self._summary()] if self.counts else []
            if self.running:
                parts.append(f"{len(self.running)} running")
            runs = sorted(self.running.items(), key=lambda kv: (kv[1], kv[0]))
        head = Table.grid(padding=(0, 1))
        head.add_row(Text("e3 go"), ProgressBar(total=max(self.n, 1), completed=done, width=24),
                     Text(f"{done}/{self.n}"), Text(", ".join(parts)))
        width = max((len(n) for n, _ in runs[:self.SHOWN]), default=0)
        lines = [Text(f"  {n:<{width}}  {_elapsed(now - t0)}") for n, t0 in runs[:self.SHOWN]]
        if len(runs) > self.SHOWN:
            lines.append(Text(f"  … and {len(runs) - self.SHOWN} more"))
        return Group(head, *lines)

    def _text(self, name: str, outcome: str, seconds: float, note: str = "") -> str:
        """`name... done (0.5s): why it ran`; a failed, skipped or cancelled one says why with
        its `note` (`FAILED (0.0s): ValueError: flag says fail (steps.py:27)`)."""
        line = f"{name}... {self.WORDS.get(outcome, outcome)}"
        if outcome in ("executed", "failed"):
            line += f" ({seconds:.1f}s)"
        why = self.reasons.get(name) if outcome == "executed" else note
        if why:
            line += f": {why}"
        return line

    def _line(self, name: str, outcome: str, seconds: float, note: str = "") -> str:
        """`[i/N] name... done (0.5s): why it ran`."""
        self.i += 1
        return f"[{self.i}/{self.n}] " + self._text(name, outcome, seconds, note)

    def _count(self, names, outcome: str) -> None:
        """Terminal: `names` finished with `outcome` (no longer running)."""
        with self.lock:
            for name in names:
                self.i += 1
                self.counts[outcome] = self.counts.get(outcome, 0) + 1
                self.running.pop(name, None)

    def outcome(self, name: str, outcome: str, seconds: float, note: str = "") -> None:
        if self.tty and self.n:
            self._count([name], outcome)
            if outcome not in ("cached", "pulled"):  # a reason is text, never rich markup
                self._area().console.print(self._text(name, outcome, seconds, note),
                                           markup=False, highlight=False, soft_wrap=True)
        else:
            print(self._line(name, outcome, seconds, note), file=self.stream, flush=True)

    def many(self, rows) -> None:
        """Reports `(name, outcome, seconds[, note])` that arrived together: one write for
        them all when not on a terminal."""
        if self.tty and self.n:
            for row in rows:
                self.outcome(*row)
            return
        if rows:
            self.stream.write("\n".join(self._line(*row) for row in rows) + "\n")
            self.stream.flush()

    def outcomes(self, names, outcome: str, seconds: float = 0.0) -> None:
        """The same lines for many dataflows at once, in one write (on a terminal they are
        only counted: a live area, which would only flash, is not drawn for them)."""
        if self.tty:
            self._count(list(names), outcome)
            return
        lines = [self._line(n, outcome, seconds) for n in names]
        if lines:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()

    def stop(self) -> None:
        """Remove the live area, leaving its counts line (`e3 go 6/6: 2 done, 4 cached`)."""
        live, self.progress = self.progress, None
        if live is None:
            return
        live.stop()
        with self.lock:
            line = f"e3 go {min(self.i, self.n)}/{self.n}: {self._summary() or 'nothing done'}"
            if self.running:
                line += f"; {len(self.running)} still running"
        live.console.print(line, markup=False, highlight=False, soft_wrap=True)


def _elapsed(s: float) -> str:
    """`3.2s`, `1m05s`, `1h02m`."""
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(s), 60)
    return f"{m}m{sec:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


@click.command()
@click.argument("targets", nargs=-1)
@click.option("--filter", "pattern", metavar="GLOB", help="Only dataflows whose name matches GLOB.")
@click.option("-j", "--jobs", type=click.IntRange(1, 1024), help="At most N tasks at once (default: cores).")
@click.option("--executor", default=None, metavar="NAME",
              help="inline | threads | processes | dask | dask:tcp://HOST:PORT (default: "
                   "[executor] in e3.toml, else threads).")
@click.option("--force", is_flag=True, help="Re-execute even on memo hits.")
@click.option("--dry-run", is_flag=True, help="Print the plan and what is cached; run nothing.")
@click.option("--keep-going/--fail-fast", default=True,
              help="On failure, finish independent branches (default) or stop at once.")
@click.option("--strict-batches", is_flag=True, help="Run the plan batch by batch.")
@click.option("-w", "--workspace", help="Run in this workspace (default: the current one).")
@click.option("--remote", metavar="NAME",
              help="Fetch trusted results from this remote instead of computing them "
                   "(default: [cache] remote in e3.toml).")
@click.option("--no-remote", is_flag=True, help="Ask no remote, whatever e3.toml says.")
@click.option("--push", is_flag=True, help="After the run, push what was computed to the remote.")
@pass_opts
def go(opts, targets, pattern, jobs, executor, force, dry_run, keep_going, strict_batches,
       workspace, remote, no_remote, push):
    """Run the dataflows (TARGETS: dataflow names or output paths; only what they need runs)."""
    from ..dataflow.go import Go

    api = opts.api()
    if executor is None:
        from ..exec.backends import configured_executor

        executor = configured_executor(api.r.config)
    if remote is None and not no_remote:
        remote = (api.r.config.get("cache") or {}).get("remote")
    elif no_remote:
        remote = None
    rep = None if dry_run else Reporter(to_stderr=opts.json)
    try:
        # this process ends with the run: what lives to its end leaves the collected
        # generations (see Go.freeze)
        res = Go(api, targets, pattern, jobs, executor, force, dry_run, not keep_going,
                 strict_batches, reporter=rep, workspace=workspace, freeze=gc.freeze,
                 remote=remote, push=push)()
    finally:
        if rep:
            rep.stop()

    def human(d):
        if d["status"] == "dry-run":
            click.echo(f"would run {len(d['would_run'])}, cached {len(d['cached'])}")
            for b, names in enumerate(d["plan"]["batches"]):
                click.echo(f"  batch {b}: {', '.join(names)}")
            for n in d["would_run"]:
                click.echo(f"  {n}: {d['reasons'].get(n, '')}")
            return
        parts = [f"{len(d[k])} {k}" for k in ("pulled", "executed", "cached", "failed",
                                               "skipped", "cancelled") if d.get(k)]
        # the run's state (JSON `commit`), not to be confused with `e3 commit`'s versions
        click.echo(f"run {d['run']} {d['status']}: {', '.join(parts) or 'nothing to do'}; "
                   f"state {d['commit'][:12]}")
        for p in d.get("restored", []):
            click.echo(f"restored {p} (edited by hand)")
        if d.get("refused"):  # one line: the first reason stands for the kind of trouble
            r = d["refused"]
            click.echo(f"refused {len(r)} record{'s' if len(r) != 1 else ''} of the remote "
                       f"(first: {r[0]['record']}: {r[0]['reason']}); see 'e3 --json go'")
        if "pushed" in d:
            pu = d["pushed"]
            click.echo(f"pushed {pu['objects']} objects, {pu['records']} records to "
                       f"'{pu['remote']}'" + (f"; {len(pu['refused'])} refused"
                                               if pu["refused"] else ""))
        for n in d["failed"]:
            click.echo(f"  FAILED {n}: {d['reasons'].get(n) or 'failed'}; see 'e3 logs {n}'")
        for n in d["skipped"]:
            click.echo(f"  skipped {n}: {d['reasons'].get(n, '')}")
        for n in d["cancelled"]:
            click.echo(f"  cancelled {n}: {d['reasons'].get(n) or 'cancelled'}")

    emit(opts, res, human)
    if res["status"] == "cancelled":
        return EXIT_CANCELLED
    return EXIT_FAILED if res["status"] == "failed" else 0


@click.command()
@click.argument("spec", metavar="PKG/TASK")
@click.argument("inputs", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Where to write the output.")
@click.option("--force", is_flag=True, help="Re-execute even on a memo hit.")
@pass_opts
def run(opts, spec, inputs, output, force):
    """Ad-hoc execution of a package's task on files."""
    from ..dataflow.adhoc import run_task

    api = opts.api()
    with api.r.object_guard():  # its input objects are reachable from no root
        res = run_task(api, spec, list(inputs), output, force=force)
    emit(opts, res, lambda d: click.echo(
        f"{'cached' if d['cached'] else 'done'} ({d['seconds']:.2f}s): {output} = {d['output_hash'][:12]}"))
    return 0 if res.get("status", "ok") == "ok" else EXIT_FAILED


@click.command()
@click.argument("targets", nargs=-1)
@click.option("-j", "--jobs", type=click.IntRange(1, 1024), help="Cap (default: cores).")
@click.option("--all", "everything", is_flag=True, help="Plan every selected dataflow, cached or not.")
@pass_opts
def plan(opts, targets, jobs, everything):
    """Batches and lease assignment for what would run."""
    from ..dataflow.go import Go

    api = opts.api()
    g = Go(api, targets, None, jobs, force=everything)
    ws = api.ws()
    with api.r.object_guard():  # the trees read after intake stay while they are read
        project, _, _, pred = g.decide_now(ws, api.intake(ws))
        p = g.plan(project, pred)
    data = p.to_json()

    def human(d):
        runs_as = p.runs_as
        rows = [(b, name, leases or (f"shares {runs_as[name]}" if name in runs_as else "-"),
                 f"{cost:.2f}") for b, name, leases, cost in p.table()]
        if not rows:
            click.echo(f"nothing would run ({len(pred.cached)} cached)")
            return
        columns = ("batch", "dataflow", "leases", "est. cost")
        if not sys.stdout.isatty():  # a terminal's table has its own header
            click.echo("\t".join(columns))
        table(columns, rows)
        if d["shared"]:
            n = len(d["priority"])
            click.echo(f"shared: {n} dataflows, {n - len(runs_as)} executions; " + "; ".join(
                f"{', '.join(dups)} take{'s' if len(dups) == 1 else ''} {rep}'s result"
                for rep, dups in d["shared"].items()))
        click.echo(f"critical path: {' -> '.join(d['critical_path']) or '-'}; "
                   f"makespan {d['makespan']:.2f}")

    emit(opts, data, human)


@click.command()
@click.argument("name", required=False)
@click.option("--follow", "-f", is_flag=True, help="Keep printing as the log grows (until the task ends).")
@pass_opts
def logs(opts, name, follow):
    """Task output of a dataflow's latest execution (or an execution key), and why it failed
    when its latest run failed."""
    from ..core.errors import NotFound, UsageError
    from ..dataflow.inspect import log_view

    api = opts.api()
    try:
        view = log_view(api, name)
    except NotFound:  # unknown, with the names near it; a run id gets a pointer instead
        if name and api.r.journal.run_status(name) is not None:
            raise UsageError(f"'{name}' is a run, not a dataflow or execution; 'e3 episodes "
                             f"--run {name}' shows what it ran, 'e3 logs DATAFLOW' a task's "
                             f"output") from None
        raise
    key, path = view["execution"], view["path"]
    if opts.json and not follow:
        text = path.read_text(errors="replace") if path is not None and path.exists() else ""
        emit(opts, {"execution": key, "log": text, "reason": view["reason"]})
        return
    pos, last = 0, "\n"
    while path is not None:
        if path.exists():
            with open(path, "rb") as f:
                f.seek(pos)
                chunk = f.read()
                pos += len(chunk)
                if chunk:
                    text = chunk.decode(errors="replace")
                    sys.stdout.write(text)
                    sys.stdout.flush()
                    last = text[-1]
        if not follow or not _running(api, key):
            break
        time.sleep(0.2)
    if follow and name is not None:  # the run it followed may have failed meanwhile
        view = log_view(api, name)
    if view["reason"]:
        sep = "" if last == "\n" else "\n"
        click.echo(f"{sep}e3: {name} failed: {view['reason']}")


def _running(api, key) -> bool:
    return api.r.journal.episode_running(key)


@click.command()
@click.option("--run", "run_id", help="Run id (default: the latest run).")
@pass_opts
def episodes(opts, run_id):
    """Episode histories of a run."""
    from ..exec.episodes import load

    db = opts.api().r.index
    j = db.journal
    if not run_id:
        run_id = j.latest_run_id()
    elif j.run_status(run_id) is None:
        from ..core.errors import NotFound

        raise NotFound("run", run_id, j.recent_runs(20),
                       hint="see 'e3 episodes' for the latest run")
    data = load(db, run_id) if run_id else []
    out = [{"episode": e["episode"], "dataflow": e["dataflow"], "history": e["history"]} for e in data]

    def human(d):
        for e in d:
            states = " → ".join(f"{h['state']}@{h['beat']}" + (f" ({h['note']})" if h["note"] else "")
                                for h in e["history"])
            click.echo(f"{e['episode']}: {states}")

    emit(opts, out, human)


@click.command()
@pass_opts
def stats(opts):
    """Memo hit ratio and work recomputed vs saved."""
    from ..dataflow.inspect import stats as compute

    data = compute(opts.api())
    emit(opts, data, lambda d: click.echo(
        f"hit ratio {d['hit_ratio']:.0%}: {d['executed']} executed, {d['cached']} cached; "
        f"work saved {d['work_saved']:.2f}s of {d['work_saved'] + d['work_done']:.2f}s"))


@click.command()
@click.argument("run_id", required=False, metavar="RUN")
@pass_opts
def cancel(opts, run_id):
    """Cancel a running `e3 go` from another shell (it stops at its next beat)."""
    from ..dataflow.inspect import request_cancel

    data = {"cancelled": request_cancel(opts.api(), run_id)}
    emit(opts, data, lambda d: click.echo(
        ("cancel requested: " + ", ".join(d["cancelled"])) if d["cancelled"] else "no running run"))
