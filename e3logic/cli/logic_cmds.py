"""Questions answered with Datalog: query, deps, dependents, impact, why, facts, rules."""
from __future__ import annotations

import json
import sys

import click

from ..core.errors import NotFound
from .common import emit, pass_opts, table

ENGINES = click.Choice(["auto", "pydatalog", "fast"])


def limit_options(fn):
    """--max-facts and --timeout: the limits on rule evaluation (else e3.toml [logic])."""
    fn = click.option("--timeout", "timeout_s", type=click.FloatRange(0, min_open=True), default=None,
                      metavar="S", help="Stop rule evaluation after S seconds "
                                        "(default: e3.toml [logic] timeout_s, else 60).")(fn)
    return click.option("--max-facts", type=click.IntRange(min=1), default=None, metavar="N",
                        help="Stop rule evaluation past N derived facts "
                             "(default: e3.toml [logic] max_facts, else 5,000,000).")(fn)


def _logic(api, max_facts, timeout_s, rule_files=(), engine="auto"):
    """The repository's Logic under the limits of the options, e3.toml or the defaults."""
    from ..logic.limits import Limits

    limits = Limits.from_settings(api.r.config, max_facts, timeout_s)
    logic = api.logic(rule_files, engine)
    logic.limits = limits
    return logic


@click.command()
@click.argument("text", metavar="QUERY")
@click.option("-r", "--rules", "rule_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Extra .dl rule file (repeatable).")
@click.option("--engine", type=ENGINES, default="auto", help="Datalog engine (auto picks by fact-set size).")
@limit_options
@pass_opts
def query(opts, text, rule_files, engine, max_facts, timeout_s):
    """Datalog query over the repository's facts and rules, e.g. 'dirty(D)' or '?- deps(D, "fit").'

    The rerun policy's facts (miss, input_changed, never_run, ...) are the workspace's
    current ones, unsaved edits included: 'dirty(D)' is what 'e3 go' would run now."""
    res = _logic(opts.api(), max_facts, timeout_s, rule_files, engine).query(text)
    emit(opts, res.to_json(), _human_rows)


def _human_rows(d) -> None:
    """A header row naming the columns (`true` for a query without variables), then the rows
    (`yes` when such a query holds); the count on stderr."""
    columns = d["columns"] or ["true"]
    rows = d["rows"] if d["columns"] else [["yes"]] if d["rows"] else []
    if not sys.stdout.isatty():  # (a terminal's table has its own header)
        click.echo("\t".join(columns))
    table(columns, rows)
    click.echo(f"{len(d['rows'])} row(s), engine {d['engine']}", err=True)


def _dataflow(api, name):
    names = api.dataflow_names()
    if name not in names:
        raise NotFound("dataflow", name, names, hint="see 'e3 status'")
    return name


@click.command()
@click.argument("name")
@click.option("--transitive", is_flag=True, help="All upstream dataflows, not just direct ones.")
@limit_options
@pass_opts
def deps(opts, name, transitive, max_facts, timeout_s):
    """Upstream dataflows of NAME."""
    api = opts.api()
    data = _logic(api, max_facts, timeout_s).deps(_dataflow(api, name), transitive)
    emit(opts, data, lambda d: [click.echo(n) for n in d])


@click.command()
@click.argument("name")
@click.option("--transitive", is_flag=True, help="All downstream dataflows, not just direct ones.")
@limit_options
@pass_opts
def dependents(opts, name, transitive, max_facts, timeout_s):
    """Downstream dataflows of NAME."""
    api = opts.api()
    data = _logic(api, max_facts, timeout_s).dependents(_dataflow(api, name), transitive)
    emit(opts, data, lambda d: [click.echo(n) for n in d])


@click.command()
@click.argument("paths", nargs=-1, required=True)
@limit_options
@pass_opts
def impact(opts, paths, max_facts, timeout_s):
    """Dataflows that would rerun if these datasets changed (the dirty closure)."""
    api = opts.api()
    facts = api.facts(decision=False)
    known = {p for p, in facts.get("input_dataset", set())} | {
        p for _, p in facts.get("writes", set())}
    for p in paths:
        if p.strip("/") not in known:
            raise NotFound("dataset", p, known, hint="see 'e3 ls'")
    data = _logic(api, max_facts, timeout_s).dirty_closure([p.strip("/") for p in paths])
    emit(opts, data, lambda d: [click.echo(n) for n in d] or click.echo("nothing would rerun"))


@click.command()
@click.argument("path")
@pass_opts
def why(opts, path):
    """Provenance of a dataset: the execution, task and inputs with hashes, recursively."""
    api = opts.api()
    path = path.strip("/")
    facts = api.facts(decision=False)
    if path not in {p for p, _ in facts["current"]}:
        raise NotFound("dataset", path, [p for p, _ in facts["current"]],
                       hint="it has no value yet; run 'e3 go'")
    data = api.logic().why(path)

    def human(d):
        stack = [(d, 0)]
        while stack:
            n, depth = stack.pop()
            how = (f"execution {n['execution'][:12]} of {n['dataflow']}" if n.get("execution")
                   else f"dataflow {n['dataflow']} (not run yet)" if n.get("dataflow") else "input")
            click.echo(f"{'  ' * depth}{n['path']} = {(n['hash'] or '-')[:12]}  <- {how}")
            stack.extend((c, depth + 1) for c in reversed(n["inputs"]))

    emit(opts, data, human)


@click.command()
@click.argument("relation", required=False)
@pass_opts
def facts(opts, relation):
    """Facts of the repository (all relations, or one), as Datalog facts that 'e3 query -r'
    reads back.

    The rerun policy's facts (miss, input_changed, never_run, ...) are observed now, as
    'e3 status' observes them."""
    from ..dataflow.facts import DECISION_RELATIONS

    f = opts.api().facts(decision=relation is None or relation in DECISION_RELATIONS)
    if relation and relation not in f:
        raise NotFound("relation", relation, f)
    data = {r: sorted([list(t) for t in f[r]]) for r in sorted(f) if not relation or r == relation}
    emit(opts, data, lambda d: click.echo("".join(fact_line(r, t) for r, ts in d.items()
                                                  for t in ts), nl=False))


def fact_line(relation: str, row) -> str:
    """`relation("a", 1).` and a newline, in the rule language: strings double-quoted with
    JSON escapes, ints bare (what `Const` prints)."""
    args = ", ".join(str(v) if type(v) is int else json.dumps(v, ensure_ascii=False)
                     for v in row)
    return f"{relation}({args}).\n" if row else f"{relation}.\n"


@click.command()
@click.option("-r", "--rules", "rule_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Extra .dl rule file (repeatable).")
@pass_opts
def rules(opts, rule_files):
    """Relations the rules define, with their documentation."""
    data = _relations(rule_files)
    emit(opts, data, lambda d: table(("relation", "arity", "doc"),
                                     [(r["name"], r["arity"], r["doc"]) for r in d]))


def _relations(rule_files):
    from ..logic.queries import Logic

    return Logic({}, rule_files=rule_files).relations()
