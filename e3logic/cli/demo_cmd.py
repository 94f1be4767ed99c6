"""`e3 demo`: the main job on the bundled example, in a temp project, with real commands."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from .. import EXAMPLES_DIR

STEPS = [
    ("Create a repository", ["init", "."]),
    ("Build the example package (byte-identical for identical sources)",
     ["build", "{example}", "-o", "dist"]),
    ("Install it", ["add", "dist/forecast-0.1.0.zip"]),
    ("Deploy it and write the working copy", ["checkout", "forecast"]),
    ("What would run, in which batches, holding which leases", ["plan"]),
    ("Cold run: everything executes", ["go"]),
    ("Warm run: nothing changed, everything is a cache hit", ["go"]),
    ("Change one input (a longer forecast horizon)", ["set", "inputs/horizon", "{horizon}"]),
    ("What is stale now", ["status"]),
    ("Incremental run: only what depends on the horizon re-runs", ["go"]),
    ("Where did the report come from", ["why", "outputs/report/markdown"]),
    ("Memo statistics", ["stats"]),
    ("The report", ["get", "outputs/report/markdown"]),
]


@click.command()
@click.option("--keep", is_flag=True, help="Keep the temp project and print its path.")
@click.pass_obj
def demo(opts, keep):
    """Run the main job on the bundled example in a temp project: build, add, checkout, plan,
    cold run, warm run, one input changed, incremental run, why and stats."""
    example = EXAMPLES_DIR / "forecast"
    if not (example / "e3pkg.py").exists():
        raise click.ClickException(f"the bundled example is missing at {example}")
    tmp = Path(tempfile.mkdtemp(prefix="e3-demo-"))
    horizon = tmp / "horizon.json"
    horizon.write_text("9\n")
    env = {k: v for k, v in os.environ.items() if k != "E3_REPO"}
    from ..exec.workers import _worker_pythonpath

    pp = _worker_pythonpath(env.get("PYTHONPATH", ""))
    if pp is not None:  # a source checkout: the steps (run in the temp project) use this e3logic
        env["PYTHONPATH"] = pp
    from ..cli.main import COMMANDS

    rc = 0
    try:
        for title, args in STEPS:
            if args[0] not in COMMANDS:
                continue
            args = [a.format(example=example, horizon=horizon) for a in args]
            click.secho(f"\n# {title}", fg="cyan", bold=True)
            click.secho("$ e3 " + " ".join(args), bold=True)
            proc = subprocess.run([sys.executable, "-m", "e3logic", *args], cwd=tmp, env=env)
            if proc.returncode != 0:
                click.secho(f"step failed with exit {proc.returncode}", fg="red")
                rc = proc.returncode
                break
    finally:
        if keep:
            click.echo(f"\nproject kept at {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if rc == 0:
        click.secho("\ndemo finished: cold, warm and incremental runs done", fg="green")
    return rc
