"""Helpers shared by command modules: output in human or JSON form."""
from __future__ import annotations

import json
import sys

import click

pass_opts = click.pass_obj


def emit(opts, data, human=None) -> None:
    """Print `data` as one JSON document with --json, else call `human(data)` (or print it)."""
    if opts.json:
        sys.stdout.write(json.dumps(data, indent=None, sort_keys=True) + "\n")
    elif human is not None:
        human(data)
    else:
        click.echo(data if isinstance(data, str) else json.dumps(data, indent=2, sort_keys=True))


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def table(columns, rows, title=None) -> None:
    """A rich table on a terminal, tab-separated lines otherwise."""
    if sys.stdout.isatty():
        from rich.table import Table

        t = Table(*columns, title=title)
        for r in rows:
            t.add_row(*[str(c) for c in r])
        console().print(t)
    else:
        for r in rows:
            click.echo("\t".join(str(c) for c in r))
