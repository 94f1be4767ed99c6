"""Package commands: build, add, remove, packages, export (docs/packages.md)."""
from __future__ import annotations

from pathlib import Path

import click

from .common import emit, pass_opts, table


def _short(h: str) -> str:
    return h[:12]


@click.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--outdir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write <name>-<version>.zip (default: DIR/dist).")
@pass_opts
def build(opts, directory, outdir):
    """Build DIR/e3pkg.py into a deterministic bundle zip.

    Identical sources give a byte-identical zip. Needs no repository.
    """
    from ..sdk import build as build_pkg

    res = build_pkg(directory, outdir)
    emit(opts, res, lambda r: click.echo(
        f"built {r['name']}@{r['version']} -> {r['path']} ({_short(r['hash'])})"))


def _registries(opts, given) -> list[str] | None:
    if given:
        return list(given)
    try:
        repo = opts.repo()
        cfg = (repo.config.get("packages") or {}).get("registries")
    except Exception:  # no config: no default registry
        return None
    if not cfg:
        return None
    if isinstance(cfg, str):
        cfg = [cfg]
    return [str((repo.root / c).resolve()) for c in cfg]


@click.command()
@click.argument("spec", metavar="ZIP|NAME[@VER]")
@click.option("--registry", "registry", multiple=True, metavar="DIR",
              help="Directory of <name>-<version>.zip bundles (repeatable; default: "
                   "[packages] registries in e3.toml). Missing dependencies come from it too.")
@pass_opts
def add(opts, spec, registry):
    """Install a package from a bundle zip, or NAME[@VERSION|CONSTRAINT] from a registry.

    Every object's hash is verified; on any error the repository is unchanged.
    """
    from ..repo.packages import add as add_pkg

    repo = opts.repo()
    with repo.object_guard():  # gc waits until the staged objects are reachable
        res = add_pkg(repo, spec, registry=_registries(opts, registry))

    def human(r):
        for dep in r["added"]:
            if (dep["name"], dep["version"]) != (r["name"], r["version"]):
                click.echo(f"added dependency {dep['name']}@{dep['version']} ({_short(dep['hash'])})")
        if r["new"]:
            click.echo(f"added {r['name']}@{r['version']} ({_short(r['hash'])})")
        else:
            click.echo(f"{r['name']}@{r['version']} is already installed ({_short(r['hash'])})")

    emit(opts, res, human)


@click.command()
@click.argument("spec", metavar="NAME[@VER]")
@click.option("--force", is_flag=True, help="Remove even if another package depends on it.")
@pass_opts
def remove(opts, spec, force):
    """Remove an installed package version (every version without @VER).

    Only the ref goes; its objects stay until 'e3 gc'.
    """
    from ..repo.packages import parse_spec, remove as remove_pkg

    name, version = parse_spec(spec)
    removed = remove_pkg(opts.repo(), name, version, force=force)
    emit(opts, {"removed": removed},
         lambda r: [click.echo(f"removed {x}") for x in r["removed"]])


@click.command()
@pass_opts
def packages(opts):
    """List installed packages (name, version, hash)."""
    from ..repo.packages import list_packages

    rows = list_packages(opts.repo())

    def human(rs):
        if not rs:
            click.echo("no packages installed; add one with 'e3 add ZIP'")
            return
        table(["name", "version", "hash"], [(r["name"], r["version"], _short(r["hash"])) for r in rs])

    emit(opts, rows, human)


@click.command()
@click.argument("spec", metavar="NAME[@VER]")
@click.argument("zip_path", metavar="ZIP", type=click.Path(dir_okay=False, path_type=Path))
@pass_opts
def export(opts, spec, zip_path):
    """Write an installed package (default: its highest version) to a bundle zip.

    The zip is deterministic: exporting the same package anywhere gives identical bytes.
    """
    from ..repo.packages import export_bundle, parse_spec

    name, version = parse_spec(spec)
    repo = opts.repo()
    with repo.object_guard():  # a concurrent remove + gc cannot take objects mid-export
        res = export_bundle(repo, name, version, zip_path)
    emit(opts, res, lambda r: click.echo(
        f"exported {r['name']}@{r['version']} -> {r['path']} ({_short(r['hash'])})"))
