"""`e3 watch`: re-run the affected dataflows when working-copy input files change."""
from __future__ import annotations

import json
import signal
import sys

import click

from ..core.errors import EXIT_CANCELLED
from .common import pass_opts

OUTCOMES = ("executed", "cached", "failed", "skipped", "cancelled")


def human_line(run) -> str:
    d = run.result
    parts = [f"{len(d[k])} {k}" for k in OUTCOMES if d.get(k)]
    line = f"run {d['run']} {d['status']}: {', '.join(parts) or 'nothing to do'}"
    if d.get("commit"):
        line += f"; state {d['commit'][:12]}"
    if d.get("failed"):
        line += f"; see 'e3 logs {d['failed'][0]}'"
    if run.aborted:
        line += "; inputs changed during the run, running again"
    changed = run.changed
    line += (" (" + ", ".join(changed[:4]) + (" …" if len(changed) > 4 else "") + ")"
             if changed else " (initial run)")
    return line


@click.command()
@click.option("--filter", "pattern", metavar="GLOB", help="Only dataflows whose name matches GLOB.")
@click.option("--debounce", "debounce_ms", type=click.IntRange(0, 600_000), default=200,
              show_default=True, metavar="MS",
              help="Run once no input file changed for MS milliseconds.")
@click.option("--abort-on-change", is_flag=True,
              help="Cancel the run in flight when an input it reads changes (default: the "
                   "change is picked up by the next run).")
@click.option("-j", "--jobs", type=click.IntRange(1, 1024), help="At most N tasks at once (default: cores).")
@click.option("--executor", default=None, metavar="NAME",
              help="inline | threads | processes | dask | dask:tcp://HOST:PORT (default: "
                   "[executor] in e3.toml, else threads).")
@pass_opts
def watch(opts, pattern, debounce_ms, abort_on_change, jobs, executor):
    """Re-run the affected dataflows whenever files under inputs/ change.

    Runs everything once, then, after each burst of edits (debounced), only the dataflows
    reading a changed input and what depends on them. Prints one line per run (one JSON
    line with the `e3 go` keys with --json). Ctrl-C or SIGTERM stops it (exit 130), also when
    started in the background by a script (where the shell ignores Ctrl-C).
    """
    from ..dataflow.watch import Watcher, install_sigterm_as_sigint

    api = opts.api()

    def emit(run):
        if opts.json:
            d = dict(run.result, changed=run.changed, targets=run.targets, aborted=run.aborted)
            sys.stdout.write(json.dumps(d, sort_keys=True) + "\n")
        else:
            sys.stdout.write(human_line(run) + "\n")
        sys.stdout.flush()

    def note(msg):
        click.echo(f"e3 watch: {msg}", err=True)

    restore = install_sigterm_as_sigint()
    rc = EXIT_CANCELLED
    try:
        w = Watcher(api, pattern=pattern, debounce_ms=debounce_ms,
                    abort_on_change=abort_on_change, cap=jobs, executor=executor, emit=emit,
                    note=note)
        rc = w.loop()
    except KeyboardInterrupt:
        rc = EXIT_CANCELLED
    finally:
        if rc == EXIT_CANCELLED:
            # stopping: a further Ctrl-C must not turn exit 130 into death by SIGINT
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        else:
            restore()
    if rc == EXIT_CANCELLED:
        click.echo("e3: cancelled", err=True)
    return rc
