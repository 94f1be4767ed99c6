"""Repository commands: init, status, ls, get, set, checkout, commit, log, diff, reset,
workspace, gc, fsck."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import emit, pass_opts, table


@click.command()
@click.argument("path", default=".", type=click.Path(file_okay=False))
@pass_opts
def init(opts, path):
    """Create PATH/.e3/ and PATH/e3.toml (refuses an existing repository)."""
    from ..api import Repo

    repo = Repo.init(path)
    emit(opts, {"repo": str(repo.root)}, lambda d: click.echo(f"initialized e3 repository in {d['repo']}"))


@click.command()
@pass_opts
def status(opts):
    """Show the deployed package, changes not yet in a package version, unsaved edits, edited
    outputs and stale dataflows."""
    data = opts.api().status()

    def human(d):
        pkg = f"{d['package']}@{d['version']}" if d["package"] else "(none deployed)"
        click.echo(f"Package: {pkg}  (workspace {d['workspace']}, root {d['root'][:12]})")
        if d["uncommitted"]:
            click.echo("Changes not yet in a package version (e3 commit):")
            for e in d["uncommitted"]:
                mark = "A" if e["old"] is None else "D" if e["new"] is None else "M"
                click.echo(f"  {mark} {e['path']}")
        edits = [(mark, p) for key, mark in (("modified", "M"), ("added", "A"), ("deleted", "D"))
                 for p in d[key]]
        if edits:
            click.echo("Unsaved edits in the working copy:")
            for mark, p in sorted(edits, key=lambda e: e[1]):
                click.echo(f"  {mark} {p}")
        if d["outputs_edited"]:
            click.echo("Edited outputs (e3 go puts them back):")
            for p in d["outputs_edited"]:
                click.echo(f"  {p}")
        if d["stale"]:
            click.echo("Stale:")
            for n in d["stale"]:
                click.echo(f"  {n}: {d['reasons'].get(n, '')}")
        if not (d["uncommitted"] or edits or d["outputs_edited"] or d["stale"]):
            click.echo("clean: nothing modified, nothing stale")

    emit(opts, data, human)


@click.command()
@click.argument("path", default="")
@pass_opts
def ls(opts, path):
    """List datasets under PATH (all by default) with hash and size."""
    rows = opts.api().ls(path)
    data = [{"path": r["path"], "hash": r["hash"], "size": r["size"],
             "format": r.get("format") or "raw"} for r in rows]
    emit(opts, data, lambda d: table(("path", "hash", "size"),
                                     [(r["path"], r["hash"][:12], r["size"]) for r in d]))


@click.command()
@click.argument("path")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE instead of stdout.")
@pass_opts
def get(opts, path, output):
    """Print a dataset's bytes (no JSON wrapper), or write them to FILE."""
    import shutil

    _, src = opts.api().open_dataset(path)  # streamed: a dataset of any size
    with src:
        if output:
            with open(output, "wb") as f:
                shutil.copyfileobj(src, f, 1 << 20)
        else:
            shutil.copyfileobj(src, sys.stdout.buffer, 1 << 20)
            sys.stdout.flush()


@click.command("set")
@click.argument("path")
@click.argument("file")
@click.option("--format", "fmt", type=click.Choice(["raw", "json"]),
              help="How python tasks receive it (default: keep the dataset's format, else raw).")
@pass_opts
def set_(opts, path, file, fmt):
    """Set dataset PATH from FILE ('-' reads standard input)."""
    api = opts.api()
    if file != "-":
        data = api.set(path, Path(file), fmt)
    else:  # spooled to a (locked) temp file in the store: a large stream never sits in memory
        import os
        import shutil

        fd, tmp = api.r.objects.temp_file("stdin-")
        try:
            with os.fdopen(fd, "wb") as t:
                shutil.copyfileobj(sys.stdin.buffer, t, 1 << 20)
                t.flush()
                data = api.set(path, Path(tmp), fmt)
        finally:
            Path(tmp).unlink(missing_ok=True)
    emit(opts, data, lambda d: click.echo(f"{d['path']} = {d['hash'][:12]} (root {d['root'][:12]})"))


@click.command()
@click.argument("spec", metavar="NAME[@VER]")
@click.option("-w", "--workspace", help="Workspace to deploy into (default: the current one).")
@click.option("--force", is_flag=True, help="Discard uncommitted working-copy changes.")
@pass_opts
def checkout(opts, spec, workspace, force):
    """Deploy a package version into a workspace and write the working copy."""
    data = opts.api().checkout(spec, workspace, force=force)
    emit(opts, data, lambda d: click.echo(
        f"{d['package']}@{d['version']} deployed to workspace {d['workspace']} (root {d['root'][:12]})"))


@click.command()
@click.option("--patch", "part", flag_value="patch", help="Bump the patch version.")
@click.option("--minor", "part", flag_value="minor", help="Bump the minor version.")
@click.option("--major", "part", flag_value="major", help="Bump the major version.")
@click.option("-m", "--message", required=True, help="What changed.")
@pass_opts
def commit(opts, part, message):
    """Make a new package version from the workspace (working-copy edits included)."""
    if not part:
        raise click.UsageError("say which part to bump: --patch, --minor or --major")
    data = opts.api().commit(part, message)
    emit(opts, data, lambda d: click.echo(f"committed {d['package']}@{d['version']} (root {d['root'][:12]})"))


@click.command()
@pass_opts
def log(opts):
    """Version history of the deployed package, newest first."""
    data = [{k: e[k] for k in ("version", "message", "root")} for e in opts.api().log()]
    emit(opts, data, lambda d: [click.echo(f"{e['version']:<12} {e['root'][:12]}  {e['message']}") for e in d])


@click.command()
@click.argument("path", default="")
@pass_opts
def diff(opts, path):
    """Datasets changed since the deployed version (working-copy edits included)."""
    data = opts.api().diff(path)

    def human(d):
        for e in d:
            mark = "A" if e["old"] is None else "D" if e["new"] is None else "M"
            click.echo(f"{mark} {e['path']}  {(e['old'] or '-')[:12]} -> {(e['new'] or '-')[:12]}")
        if not d:
            click.echo("no changes")

    emit(opts, data, human)


@click.command()
@click.argument("path", default="")
@pass_opts
def reset(opts, path):
    """Discard changes under PATH (all by default) back to the deployed version."""
    data = opts.api().reset(path)
    emit(opts, data, lambda d: click.echo(f"workspace {d['workspace']} reset (root {d['root'][:12]})"))


@click.group()
def workspace():
    """Named workspaces: create, list, remove, switch, deploy, export."""


@workspace.command("create")
@click.argument("name")
@pass_opts
def ws_create(opts, name):
    """Create an empty workspace NAME."""
    api = opts.api()
    with api.r.object_guard():
        api.workspaces.create(name)
    emit(opts, {"workspace": name, "root": api.workspaces.root(name)},
         lambda d: click.echo(f"created workspace {name}"))


@workspace.command("list")
@pass_opts
def ws_list(opts):
    """List workspaces with their package and root."""
    data = opts.api().workspaces.list()
    emit(opts, data, lambda d: table(("", "name", "package", "version", "root"), [
        ("*" if w["current"] else "", w["name"], w["package"] or "-", w["version"] or "-",
         w["root"][:12]) for w in d]))


@workspace.command("remove")
@click.argument("name")
@pass_opts
def ws_remove(opts, name):
    """Remove workspace NAME (not the current one)."""
    opts.api().workspaces.remove(name)
    emit(opts, {"removed": [name]}, lambda d: click.echo(f"removed workspace {name}"))


@workspace.command("switch")
@click.argument("name")
@click.option("--force", is_flag=True, help="Discard uncommitted working-copy changes.")
@pass_opts
def ws_switch(opts, name, force):
    """Make NAME the current workspace and rewrite the working copy."""
    data = opts.api().switch(name, force=force)
    emit(opts, data, lambda d: click.echo(f"switched to workspace {name}"))


@workspace.command("deploy")
@click.argument("name")
@click.argument("spec", metavar="PKG[@VER]")
@click.option("--force", is_flag=True, help="Replace uncommitted changes of the workspace.")
@pass_opts
def ws_deploy(opts, name, spec, force):
    """Deploy package PKG[@VER] into existing workspace NAME (the working copy follows if it
    is current; create a new one with 'e3 workspace create NAME')."""
    data = opts.api().deploy(name, spec, force=force, create=False)
    emit(opts, data, lambda d: click.echo(f"{d['package']}@{d['version']} deployed to {d['workspace']}"))


@workspace.command("export")
@click.argument("name")
@click.argument("zip_path", metavar="ZIP")
@click.option("--as", "as_name", help="Package name (default: the deployed package's).")
@click.option("--version", help="Package version (default: <deployed>-<root[:8]>).")
@pass_opts
def ws_export(opts, name, zip_path, as_name, version):
    """Export workspace NAME's current datasets as a package bundle."""
    data = opts.api().export_workspace(name, zip_path, as_name, version)
    emit(opts, data, lambda d: click.echo(f"wrote {d['path']}"))


@click.command()
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--min-age", type=float, default=None, help="Keep objects younger than SECONDS (default 60).")
@pass_opts
def gc(opts, dry_run, min_age):
    """Delete unreachable objects older than min-age."""
    data = opts.api().gc(min_age=min_age, dry_run=dry_run)
    emit(opts, data, lambda d: click.echo(
        f"{'would delete' if dry_run else 'deleted'} {d['deleted']} objects ({d['bytes']} bytes), "
        f"retained {d['retained']}"))


@click.command()
@click.option("--repair", is_flag=True,
              help="Quarantine corrupt objects, drop memo rows whose outputs are gone, restore "
                   "or remove bad refs, rebuild a damaged index.db.")
@pass_opts
def fsck(opts, repair):
    """Re-hash every object and follow every ref; exit 1 on corruption (after --repair: on
    what is left)."""
    data = opts.api().fsck(repair=repair)

    def human(d):
        done = d.get("repaired")
        if done:
            if done["index_rebuilt"]:
                click.echo(f"rebuilt index.db (damaged file kept as {done['index_moved_to']})")
            for h in done["quarantined"]:
                click.echo(f"quarantined: {h}")
            for r in done["refs_restored"]:
                click.echo(f"restored ref: {r}")
            for r in done["refs_removed"]:
                click.echo(f"removed ref: {r}")
            for p in done["datasets_restored"]:
                click.echo(f"restored from the working copy: {p}")
            for p in done["datasets_dropped"]:
                click.echo(f"dropped (bytes lost): {p}")
            if done["memo_dropped"]:
                click.echo(f"dropped {done['memo_dropped']} memo rows whose outputs are gone "
                           f"('e3 go' recomputes them)")
        if d["ok"]:
            click.echo(f"ok: {d['objects']} objects verified")
        for h in d["corrupt"]:
            click.echo(f"corrupt: {h}")
        for h in d["missing"]:
            click.echo(f"missing: {h}")
        for r in d.get("bad_refs", []):
            click.echo(f"bad ref: {r}")
        if d.get("bad_index"):
            click.echo(f"index.db is damaged: {d['bad_index']}")
        if not d["ok"] and not done:
            click.echo("run 'e3 fsck --repair' to repair what can be repaired")

    emit(opts, data, human)
    return 0 if data["ok"] else 1
