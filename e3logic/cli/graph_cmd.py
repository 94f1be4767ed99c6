"""`e3 graph`: the dataflow DAG coloured by state — DOT text, a terminal drawing (`--format
text`), SVG/PNG through Graphviz's `dot`, or JSON nodes and edges (`--json`)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import click

from ..core.errors import E3Error, UsageError
from .common import emit, pass_opts

COLOURS = {"fresh": "palegreen", "stale": "orange", "failed": "salmon", "input": "white"}
TERMINAL = {"fresh": "green", "stale": "yellow", "failed": "red"}
NO_DOT = ("--format {fmt} needs Graphviz's 'dot' program, which is not on PATH; install "
          "Graphviz ('apt install graphviz', 'brew install graphviz') or use --format text "
          "(a drawing in the terminal) or --format dot")


def graph_data(api) -> dict:
    """The DAG of the current workspace's package: {"package","version","nodes","edges"}.

    `nodes`, sorted by name: the dataflows (`{"name","kind": "dataflow","state","task",
    "output","layer","upstream"}`, state fresh, stale or failed — failed in the last run —
    with the `reason` a stale one runs) and the input datasets they read (`{"name": path,
    "kind": "input","state": "input"}`); `edges`, sorted: `{"from","to","path"}`, from the
    dataflow producing `path` (or the input dataset `path` itself) to the dataflow reading
    it. `layer`: 1 for a dataflow reading only inputs, else one more than its deepest
    upstream; `upstream`: what it reads from (dataflows by name, input datasets by path), in
    the order it reads them."""
    from ..dataflow.model import Project

    ws = api.ws()
    pkg = api.workspaces.package(ws)
    if not pkg:
        raise UsageError(f"workspace '{ws}' has no package deployed; 'e3 checkout NAME' first")
    project = Project.load(api.r, pkg["hash"])
    reasons = api.stale_reasons(ws, api.changes(ws))
    failed = set(api.r.journal.failed_in_latest_commit(ws))
    nodes, edges, layer = [], set(), {}
    inputs = set()
    for n in project.topo:
        d = project.dataflows[n]
        ups = [project.producer[p] for p in d["inputs"] if p in project.producer]
        layer[n] = 1 + max((layer[u] for u in ups), default=0)
        state = "failed" if n in failed else "stale" if n in reasons else "fresh"
        upstream = list(dict.fromkeys(project.producer.get(p, p) for p in d["inputs"]))
        node = {"name": n, "kind": "dataflow", "state": state, "task": d["task"],
                "output": project.outputs[n], "layer": layer[n], "upstream": upstream}
        if n in reasons:
            node["reason"] = reasons[n]
        nodes.append(node)
        for p in d["inputs"]:
            src = project.producer.get(p)
            if src is None:
                inputs.add(p)
            edges.add((src or p, n, p))
    nodes += [{"name": p, "kind": "input", "state": "input"} for p in inputs]
    return {"package": project.pkg.get("name"), "version": project.pkg.get("version"),
            "nodes": sorted(nodes, key=lambda x: x["name"]),
            "edges": [{"from": a, "to": b, "path": p} for a, b, p in sorted(edges)]}


def dot_source(data: dict) -> str:
    lines = [f'digraph "{data["package"]}" {{', "  rankdir=LR;",
             '  node [shape=box, style="rounded,filled", fontname="Helvetica"];']
    for nd in data["nodes"]:
        if nd["kind"] == "input":
            lines.append(f'  "{nd["name"]}" [shape=note, fillcolor={COLOURS["input"]}];')
    for nd in _dataflows(data):
        lines.append(f'  "{nd["name"]}" [fillcolor={COLOURS[nd["state"]]}, '
                     f'tooltip="{nd["task"]} ({nd["state"]})"];')
    for e in data["edges"]:
        lines.append(f'  "{e["from"]}" -> "{e["to"]}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def text_drawing(data: dict, colour: bool = False) -> str:
    """The DAG for a terminal, layer by layer: a line per dataflow with its state and its
    upstreams (dataflows by name, input datasets by path), in the order it reads them.

        wordcount 0.1.0: 4 dataflows (2 fresh, 2 stale)
        inputs: inputs/n, inputs/stopwords, inputs/text
        layer 1
          words   fresh  ← inputs/text
        layer 2
          counts  stale  ← words, inputs/stopwords
    """
    flows = _dataflows(data)
    counts = {}
    for nd in flows:
        counts[nd["state"]] = counts.get(nd["state"], 0) + 1
    summary = ", ".join(f"{counts[s]} {s}" for s in ("fresh", "stale", "failed") if s in counts)
    out = [f"{data['package']} {data['version']}: {len(flows)} dataflow"
           f"{'' if len(flows) == 1 else 's'}" + (f" ({summary})" if summary else "")]
    inputs = [nd["name"] for nd in data["nodes"] if nd["kind"] == "input"]
    if inputs:
        out.append("inputs: " + ", ".join(inputs))
    wn = max((len(nd["name"]) for nd in flows), default=0)
    ws = max((len(nd["state"]) for nd in flows), default=0)
    for layer in sorted({nd["layer"] for nd in flows}):
        out.append(f"layer {layer}")
        for nd in (x for x in flows if x["layer"] == layer):
            ups = ", ".join(nd["upstream"]) or "-"
            state = f"{nd['state']:<{ws}}"
            if colour:
                state = click.style(state, fg=TERMINAL[nd["state"]])
            out.append(f"  {nd['name']:<{wn}}  {state}  ← {ups}")
    return "\n".join(out) + "\n"


def _dataflows(data):
    return [nd for nd in data["nodes"] if nd["kind"] == "dataflow"]


@click.command()
@click.option("--format", "fmt", type=click.Choice(["dot", "text", "svg", "png"]),
              default="dot", help="dot (Graphviz text), text (a drawing for the terminal), "
                                  "svg or png (need Graphviz's dot program).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE.")
@pass_opts
def graph(opts, fmt, output):
    """Draw the dataflow DAG coloured by state (fresh, stale, failed)."""
    if opts.json:  # nodes and edges, whatever the format
        emit(opts, graph_data(opts.api()))
        return
    dot = shutil.which("dot") if fmt in ("svg", "png") else None
    if fmt in ("svg", "png") and not dot:
        raise UsageError(NO_DOT.format(fmt=fmt))
    data = graph_data(opts.api())
    if fmt in ("dot", "text"):
        src = dot_source(data) if fmt == "dot" else text_drawing(data)
        if output:
            Path(output).write_text(src)
        elif fmt == "text":
            click.echo(text_drawing(data, colour=True), nl=False)
        else:
            click.echo(src, nl=False)
        return
    proc = subprocess.run([dot, f"-T{fmt}"], input=dot_source(data).encode(),
                          capture_output=True)
    if proc.returncode != 0:
        why = (proc.stderr.decode(errors="replace").strip().splitlines() or [""])[-1]
        raise E3Error(f"Graphviz's dot failed (exit {proc.returncode}) making {fmt}: "
                      f"{why or 'no message'}; --format text or --format dot need no Graphviz")
    if output:
        Path(output).write_bytes(proc.stdout)
    else:
        click.get_binary_stream("stdout").write(proc.stdout)
