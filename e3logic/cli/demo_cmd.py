"""`e3 demo`: the main job on the bundled example, in a temp project, with real commands."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from .. import EXAMPLES_DIR
from .common import emit

# (title, argv, key of its answer in `e3 --json demo`'s summary, or None)
STEPS = [
    ("Create a repository", ["init", "."], None),
    ("Build the example package (byte-identical for identical sources)",
     ["build", "{example}", "-o", "dist"], "build"),
    ("Install it", ["add", "dist/forecast-0.1.0.zip"], None),
    ("Deploy it and write the working copy", ["checkout", "forecast"], None),
    ("What would run, in which batches, holding which leases", ["plan"], "plan"),
    ("Cold run: everything executes", ["go"], "cold"),
    ("Warm run: nothing changed, everything is a cache hit", ["go"], "warm"),
    ("Change one input (a longer forecast horizon)", ["set", "inputs/horizon", "{horizon}"], None),
    ("What is stale now", ["status"], "status"),
    ("Incremental run: only what depends on the horizon re-runs", ["go"], "incremental"),
    ("Where did the report come from", ["why", "outputs/report/markdown"], "why"),
    ("Memo statistics", ["stats"], "stats"),
    ("The report", ["get", "outputs/report/markdown"], "report"),
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
    summary: dict = {"ok": False, "steps": []}
    try:
        for title, args, key in STEPS:
            if args[0] not in COMMANDS:
                continue
            args = [a.format(example=example, horizon=horizon) for a in args]
            if opts.json:
                rc = _json_step(summary, tmp, env, title, args, key)
                if rc:
                    break
                continue
            click.secho(f"\n# {title}", fg="cyan", bold=True)
            click.secho("$ e3 " + " ".join(args), bold=True)
            proc = subprocess.run([sys.executable, "-m", "e3logic", *args], cwd=tmp, env=env)
            if proc.returncode != 0:
                click.secho(f"step failed with exit {proc.returncode}", fg="red")
                rc = proc.returncode
                break
    finally:
        if keep:
            summary["project"] = str(tmp)
            if not opts.json:
                click.echo(f"\nproject kept at {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if opts.json:
        summary["ok"] = rc == 0
        emit(opts, summary)
    elif rc == 0:
        click.secho("\ndemo finished: cold, warm and incremental runs done", fg="green")
    return rc


def _json_step(summary: dict, tmp: Path, env: dict, title: str, args: list, key) -> int:
    """Run one step with `--json` (its progress lines captured) and note it in `summary`:
    `steps` gets `{"title","command","exit","seconds"}`; a step with a key adds its answer
    (a `go`: run, status, executed and cached counts, seconds and why each executed)."""
    argv = args if args[0] == "get" else ["--json", *args]
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "e3logic", *argv], cwd=tmp, env=env,
                          capture_output=True, text=True)
    seconds = round(time.monotonic() - t0, 3)
    summary["steps"].append({"title": title, "command": "e3 " + " ".join(args),
                             "exit": proc.returncode, "seconds": seconds})
    if proc.returncode != 0:
        summary["failed"] = {"command": "e3 " + " ".join(args), "exit": proc.returncode,
                             "stderr": proc.stderr.strip()[-2000:]}
        return proc.returncode
    if key is None:
        return 0
    if key == "report":
        summary[key] = proc.stdout
        return 0
    answer = json.loads(proc.stdout)
    if args[0] == "go":
        answer = {"run": answer["run"], "status": answer["status"],
                  "executed": len(answer["executed"]), "cached": len(answer["cached"]),
                  "seconds": seconds,
                  "reasons": {n: answer["reasons"].get(n, "") for n in answer["executed"]}}
    elif key == "status":
        answer = {"stale": answer["stale"], "reasons": answer["reasons"]}
    summary[key] = answer
    return 0
