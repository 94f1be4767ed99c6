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
@click.option("--force", is_flag=True,
              help="Remove even if a workspace deploys it or another package depends on it.")
@pass_opts
def remove(opts, spec, force):
    """Remove an installed package version (every version without @VER).

    Only the ref goes; its objects stay until 'e3 gc'. Refuses, without --force, a version a
    workspace deploys.
    """
    from ..repo.packages import parse_spec, remove as remove_pkg

    name, version = parse_spec(spec)
    repo = opts.repo()
    if not force:
        _refuse_deployed(repo, name, version)
    removed = remove_pkg(repo, name, version, force=force)
    emit(opts, {"removed": removed},
         lambda r: [click.echo(f"removed {x}") for x in r["removed"]])


def _refuse_deployed(repo, name: str, version: str | None) -> None:
    """A UsageError naming the workspaces that deploy the installed version(s) of `name` that
    `e3 remove NAME[@VERSION]` would remove; nothing when none does."""
    from ..core.errors import UsageError
    from ..repo.packages import installed
    from ..repo.workspaces import Workspaces

    versions = installed(repo).get(name, {})
    gone = set(versions) if version is None else {version} & set(versions)
    using = [(w["name"], w["version"]) for w in Workspaces(repo).list()
             if w["package"] == name and w["version"] in gone]
    if not using:
        return
    names = [f"'{w}'" for w, _ in using]
    where = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    what = sorted({f"{name}@{v}" for _, v in using})
    raise UsageError(f"{', '.join(what)} {'is' if len(what) == 1 else 'are'} deployed in "
                     f"workspace{'s' if len(using) > 1 else ''} {where}; deploy another version "
                     f"there first, or pass --force to remove {'it' if len(what) == 1 else 'them'} "
                     f"anyway")


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
