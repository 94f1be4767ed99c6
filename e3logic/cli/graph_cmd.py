"""`e3 graph`: the dataflow DAG as DOT, coloured by state (SVG/PNG through Graphviz's `dot`)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import click

from ..core.errors import UsageError
from .common import pass_opts

COLOURS = {"fresh": "palegreen", "stale": "orange", "failed": "salmon", "input": "white"}


def dot_source(api) -> str:
    from ..dataflow.model import Project

    ws = api.ws()
    pkg = api.workspaces.package(ws)
    if not pkg:
        raise UsageError(f"workspace '{ws}' has no package deployed; 'e3 checkout NAME' first")
    project = Project.load(api.r, pkg["hash"])
    stale = set(api.stale(ws, api.changes(ws)))
    failed = set(api.r.journal.failed_in_latest_commit(ws))
    lines = [f'digraph "{project.pkg["name"]}" {{', "  rankdir=LR;",
             '  node [shape=box, style="rounded,filled", fontname="Helvetica"];']
    inputs = sorted({p for d in project.dataflows.values() for p in d["inputs"]
                     if p not in project.producer})
    for p in inputs:
        lines.append(f'  "{p}" [shape=note, fillcolor={COLOURS["input"]}];')
    for n in project.topo:
        state = "failed" if n in failed else "stale" if n in stale else "fresh"
        task = project.dataflows[n]["task"]
        lines.append(f'  "{n}" [fillcolor={COLOURS[state]}, tooltip="{task} ({state})"];')
    for n in project.topo:
        for p in project.dataflows[n]["inputs"]:
            src = project.producer.get(p, p)
            lines.append(f'  "{src}" -> "{n}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--format", "fmt", type=click.Choice(["dot", "svg", "png"]), default="dot",
              help="Output format (svg/png need Graphviz's dot).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE.")
@pass_opts
def graph(opts, fmt, output):
    """Draw the dataflow DAG coloured by state (fresh, stale, failed)."""
    src = dot_source(opts.api())
    if fmt == "dot":
        if output:
            Path(output).write_text(src)
        else:
            click.echo(src, nl=False)
        return
    dot = shutil.which("dot")
    if not dot:
        raise UsageError(f"--format {fmt} needs Graphviz's 'dot' program; install it "
                         f"(apt-get install graphviz) or use --format dot")
    data = subprocess.run([dot, f"-T{fmt}"], input=src.encode(), capture_output=True,
                          check=True).stdout
    if output:
        Path(output).write_bytes(data)
    else:
        click.get_binary_stream("stdout").write(data)
