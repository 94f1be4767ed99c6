"""The shared cache: remote, keygen, trust, push, pull (docs/sharing.md)."""
from __future__ import annotations

import click

from .common import emit, pass_opts, table


@click.group()
def remote():
    """Remotes of the shared cache: add, list, remove."""


@remote.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--endpoint-url", metavar="URL",
              help="The S3 endpoint of a server other than AWS (MinIO, Ceph, moto).")
@pass_opts
def remote_add(opts, name, url, endpoint_url):
    """Name a remote: a directory, file:///path or s3://bucket/prefix."""
    data = opts.api().remote_add(name, url, endpoint_url)
    emit(opts, data, lambda d: click.echo(f"added remote {d['name']}: {d['url']}"))


@remote.command("list")
@pass_opts
def remote_list(opts):
    """List the remotes with their URLs."""
    data = opts.api().remote_list()
    emit(opts, data, lambda d: table(("name", "url"), [
        (r["name"], r["url"] + (f" (endpoint {r['endpoint_url']})" if r["endpoint_url"] else ""))
        for r in d]))


@remote.command("remove")
@click.argument("name")
@pass_opts
def remote_remove(opts, name):
    """Forget remote NAME (nothing on it is touched)."""
    data = opts.api().remote_remove(name)
    emit(opts, data, lambda d: click.echo(f"removed remote {name}"))


@click.command()
@click.option("--force", is_flag=True, help="Replace an existing key (its results stay signed "
                                            "by the old one).")
@pass_opts
def keygen(opts, force):
    """Make your ed25519 signing key (kept in your config directory, mode 0600) and print its
    public key; an existing key is kept and printed."""
    from ..repo.keys import keygen as make

    data = make(force=force)

    def human(d):
        if not d["created"]:
            click.echo(f"a key exists at {d['path']} (--force replaces it); its public key:",
                       err=True)
        click.echo(d["public_key"])

    emit(opts, data, human)


@click.group()
def trust():
    """Whose signed results this repository accepts: add, list, revoke."""


@trust.command("add")
@click.argument("name")
@click.argument("public_key", metavar="PUBKEY")
@pass_opts
def trust_add(opts, name, public_key):
    """Accept results signed by PUBKEY (what 'e3 keygen' printed), named NAME."""
    data = opts.api().trust_add(name, public_key)
    emit(opts, data, lambda d: click.echo(f"trusting {d['name']}: {d['public_key']}"))


@trust.command("list")
@pass_opts
def trust_list(opts):
    """List the trusted keys, revoked ones included."""
    data = opts.api().trust_list()
    emit(opts, data, lambda d: table(("name", "public_key", "revoked"), [
        (t["name"], t["public_key"], "revoked" if t["revoked"] else "") for t in d]))


@trust.command("revoke")
@click.argument("name")
@pass_opts
def trust_revoke(opts, name):
    """Stop trusting key NAME: its pulled results are dropped and what depends on them is
    stale ('e3 status' says why, 'e3 go' recomputes it)."""
    data = opts.api().trust_revoke(name)
    emit(opts, data, lambda d: click.echo(
        f"revoked {d['name']}: dropped {d['dropped']} pulled result"
        f"{'s' if d['dropped'] != 1 else ''}; 'e3 status' lists what must rerun"))


def _summary(verb: str, prep: str):
    def human(d):
        click.echo(f"{verb} {d['records']} record{'s' if d['records'] != 1 else ''} "
                   f"({d['objects']} object{'s' if d['objects'] != 1 else ''}) {prep} "
                   f"'{d['remote']}'")
        if d["refused"]:
            click.echo(f"refused {len(d['refused'])}:")
            for r in d["refused"]:
                click.echo(f"  {r['record']}: {r['reason']}")
    return human


@click.command()
@click.argument("name", metavar="[REMOTE]", required=False)
@pass_opts
def push(opts, name):
    """Sign and upload the results computed here, with their objects, to REMOTE."""
    data = opts.api().push(name)
    emit(opts, data, _summary("pushed", "to"))


@click.command()
@click.argument("name", metavar="[REMOTE]", required=False)
@pass_opts
def pull(opts, name):
    """Download the results of REMOTE this memo lacks; keep those signed by a trusted key whose
    objects hash to their names, and say what was refused and why."""
    data = opts.api().pull(name)
    emit(opts, data, _summary("pulled", "from"))
