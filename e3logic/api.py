"""The `Repo` facade: what the CLI (and users' scripts) call.

It composes the low-level `Repository` (objects, trees, refs, index.db) with workspaces, the
working copy, packages and — as they land — logic, plan and exec. One instance per command.
"""
from __future__ import annotations

from functools import cached_property, wraps
from pathlib import Path

from .core import canon
from .core.errors import E3Error, NotFound, UsageError
from .core.paths import check_path
from .repo.repository import Repository
from .repo.trees import blob_entry
from .repo.workingcopy import Changes, WorkingCopy
from .repo.workspaces import Workspaces


def _holds_objects(method):
    """Run the method under `Repository.object_guard()`: no gc sweeps while it writes objects,
    or reads objects through a root that may move meanwhile (repo/gc.py)."""
    @wraps(method)
    def guarded(self, *args, **kwargs):
        with self.r.object_guard():
            return method(self, *args, **kwargs)
    return guarded


def _say_gc_waits(holders: list[str]) -> None:
    import sys

    n = len(holders)
    what = f"{n} running command{'s' if n != 1 else ''}" if n else "running commands"
    who = f" ({'; '.join(holders[:3])}{'; …' if n > 3 else ''})" if holders else ""
    print(f"gc: waiting for {what} to finish{who}…", file=sys.stderr, flush=True)


class Repo:
    def __init__(self, repository: Repository):
        self.r = repository
        self.root = repository.root

    @classmethod
    def open(cls, path: str | None = None) -> "Repo":
        return cls(Repository.open(path))

    @classmethod
    def init(cls, path) -> "Repo":
        repo = cls(Repository.init(Path(path)))
        repo.workspaces.create(repo.r.head, exist_ok=True)
        return repo

    @cached_property
    def workspaces(self) -> Workspaces:
        return Workspaces(self.r)

    @cached_property
    def wc(self) -> WorkingCopy:
        return WorkingCopy(self.r)

    @property
    def current(self) -> str:
        return self.r.head

    def ws(self, name: str | None = None) -> str:
        ws = name or self.current
        self.workspaces.require(ws)
        return ws

    @_holds_objects
    def recover(self) -> None:
        """Finish a working-copy sync a killed command left half done."""
        ws = self.current
        if self.workspaces.exists(ws):
            self.wc.recover(self.workspaces.root(ws))

    # -- packages -------------------------------------------------------------------------
    def read_package(self, h: str) -> dict:
        from .repo.packages import read_package

        return read_package(self.r, h)

    def resolve(self, spec: str) -> tuple[str, str, str]:
        """NAME[@VER|@CONSTRAINT] -> (name, version, hash)."""
        from .repo.packages import resolve

        name, _, ver = spec.partition("@")
        h = resolve(self.r, name, ver or None)
        pkg = self.read_package(h)
        return pkg["name"], pkg["version"], h

    # -- workspace / working copy -------------------------------------------------------------
    def changes(self, ws: str | None = None) -> Changes:
        ws = self.ws(ws)
        if ws != self.current:
            return Changes()
        return self.wc.scan(self.workspaces.root(ws))

    @_holds_objects
    def intake(self, ws: str | None = None) -> str:
        """Take modified working-copy input files into the workspace root; returns the root."""
        ws = self.ws(ws)
        self.recover()
        if ws != self.current:
            return self.workspaces.root(ws)
        with self.workspaces.lock(ws).acquire("set", shared=True):
            root = self.workspaces.root(ws)
            ch = self.wc.scan(root)
            if not ch:
                return root
            tree_changes = self.wc.intake_changes(root, ch)
            new = self.workspaces.update_root(
                ws, lambda old: self.r.trees.set_many(old, tree_changes))
            self.r.index.set_meta("wc_root", new)
            self._on_root_changed(ws)
            return new

    def _on_root_changed(self, ws: str) -> None:
        """Hook for fact projection (logic layer)."""

    @_holds_objects
    def checkout(self, spec: str, ws: str | None = None, force: bool = False) -> dict:
        self.recover()
        name, version, h = self.resolve(spec)
        pkg = self.read_package(h)
        target_ws = ws or self.current
        if not force and self.workspaces.exists(self.current):
            ch = self.changes(self.current)
            if ch:
                raise UsageError(f"the working copy has uncommitted changes "
                                 f"({', '.join((ch.modified + ch.added + ch.deleted)[:3])}); "
                                 f"'e3 commit' or 'e3 reset' them, or pass --force")
        if not force and self.workspaces.exists(target_ws):
            changed = self._uncommitted_inputs(target_ws)  # a deploy replaces the root
            if changed:
                raise UsageError(f"workspace '{target_ws}' has uncommitted input changes "
                                 f"({', '.join(changed[:3])}); 'e3 commit' or 'e3 reset' them, "
                                 f"or pass --force")
        previous = [self.wc.synced_root]
        if self.workspaces.exists(self.current):
            previous.append(self.workspaces.root(self.current))
        root = pkg["datasets"]["hash"]
        self.wc.begin_sync(root)  # a kill from here on is completed by the next command
        try:
            self.workspaces.deploy(target_ws, name, version, h, root)
        except E3Error:  # refused (a lock is busy) before anything moved
            self.wc.cancel_sync()
            raise
        if target_ws != self.current:
            self.r.set_head(target_ws)
        self.wc.sync(root, previous)
        self._on_root_changed(target_ws)
        return {"workspace": target_ws, "package": name, "version": version, "root": root}

    @_holds_objects
    def deploy(self, ws: str, spec: str, force: bool = False, create: bool = True) -> dict:
        """Point workspace `ws` at a package version; when `ws` is the current workspace this
        is `checkout` (the working copy follows). A new `ws` is created, unless `create` is
        False (`e3 workspace deploy`): then an unknown name is refused with the names near it
        and the command that creates it. Refuses to replace uncommitted input changes of `ws`
        unless `force`."""
        if ws == self.current:
            return self.checkout(spec, ws, force=force)
        if not create and not self.workspaces.exists(ws):
            make = f"create it with 'e3 workspace create {ws}' first"
            e = NotFound("workspace", ws, self.workspaces.names(), hint=make)
            if e.suggestions:  # both: the near names and how to make a new one
                e.args = (f"{e} (or {make})",)
            raise e
        name, version, h = self.resolve(spec)
        if not force and self.workspaces.exists(ws):
            changed = self._uncommitted_inputs(ws)
            if changed:
                raise UsageError(f"workspace '{ws}' has uncommitted input changes "
                                 f"({', '.join(changed[:3])}); 'e3 commit' them there, or pass "
                                 f"--force")
        root = self.read_package(h)["datasets"]["hash"]
        self.workspaces.deploy(ws, name, version, h, root)
        self._on_root_changed(ws)
        return {"workspace": ws, "package": name, "version": version, "root": root}

    @_holds_objects
    def status(self) -> dict:
        """The deployed package and everything that differs from it or from what `go` would
        leave: `uncommitted` (datasets of the workspace root, outside outputs/, that differ
        from the deployed version: what `e3 commit` would record and `checkout` refuses to
        replace), `modified`/`added`/`deleted` (unsaved input-file edits against the root),
        `outputs_edited` (files under outputs/ edited or deleted by hand: `go` puts them back)
        and the `stale` dataflows with their `reasons`."""
        self.recover()
        ws = self.ws()
        st = self.workspaces.state(ws)
        pkg = st.get("package") or {}
        root = st["hash"]
        ch = self.wc.scan(root)
        outs = self.wc.scan(root, "outputs")
        reasons = self.stale_reasons(ws, ch)
        return {"workspace": ws, "package": pkg.get("name"), "version": pkg.get("version"),
                "root": root, **ch.to_json(),
                "uncommitted": self.version_changes(ws, root),
                "outputs_edited": sorted(outs.modified + outs.deleted),
                "stale": sorted(reasons), "reasons": reasons}

    def version_changes(self, ws: str, root: str | None = None) -> list[dict]:
        """[{"path","old","new"}] (content hashes, None when absent): the datasets outside
        outputs/ whose content in the workspace root (or `root`) differs from the deployed
        version's — set with `e3 set` or taken in by `go`/`commit` from edited files, not yet
        in a package version; sorted by path. `e3 diff` lists these too, with the outputs `go`
        computed and unsaved file edits. Only subtrees whose hashes differ are read."""
        root = root or self.workspaces.root(ws)
        base = self._deployed_root(ws)
        if root == base:
            return []
        trees = self.r.trees
        top_old, top_new = trees.read(base), trees.read(root)
        paths: set[str] = set()
        for name in top_old.keys() | top_new.keys():
            x, y = top_old.get(name), top_new.get(name)
            if name == "outputs" or x == y:
                continue
            xt = x["hash"] if x is not None and x["kind"] == "tree" else None
            yt = y["hash"] if y is not None and y["kind"] == "tree" else None
            if xt or yt:
                paths.update(f"{name}/{p}" for p in trees.changed(xt, yt))
            if (x is not None and not xt) or (y is not None and not yt):
                paths.add(name)

        def leaf(r, p):
            e = trees.find(r, p)
            return e["hash"] if e is not None and e["kind"] != "tree" else None

        out = []
        for p in sorted(paths):
            old, new = leaf(base, p), leaf(root, p)
            if old != new:
                out.append({"path": p, "old": old, "new": new})
        return out

    def stale(self, ws: str, ch: Changes | None = None) -> list[str]:
        return sorted(self.stale_reasons(ws, ch))

    @_holds_objects
    def stale_reasons(self, ws: str, ch: Changes | None = None) -> dict[str, str]:
        """{dataflow: why} for the dataflows a `go` would execute (decided by the rerun
        policy, as `go` decides, unsaved working-copy edits included) or whose output in the
        workspace is not the memo's."""
        from .dataflow.go import Go

        if not self.workspaces.package(ws):
            return {}
        over = {}
        if ch:
            over = {p: ch.hashes.get(p) for p in ch.modified + ch.added}
            over.update({p: None for p in ch.deleted})
        root = self.workspaces.root(ws)
        project, _, _, pred = Go(self, workspace=ws).decide_now(ws, root, over)
        reasons = dict(pred.reasons)
        for n in pred.cached:
            e = self.r.trees.find(root, project.outputs[n])
            if e is None or e["hash"] != pred.outputs[n]:
                reasons[n] = "output differs from the memo's ('e3 go' puts it back)"
        return dict(sorted(reasons.items()))

    # -- datasets -------------------------------------------------------------------------------
    @_holds_objects
    def ls(self, prefix: str = "") -> list[dict]:
        root = self.workspaces.root(self.ws())
        if prefix:
            check_path(prefix)
            if self.r.trees.find(root, prefix) is None:
                raise NotFound("dataset path", prefix, [p for p, _ in self.r.trees.walk(root)])
        return [{"path": p, "hash": e["hash"], "size": e.get("size"), "format": e.get("format")}
                for p, e in self.r.trees.walk(root, prefix)]

    @_holds_objects
    def get(self, path: str) -> tuple[dict, bytes]:
        e, f = self.open_dataset(path)
        with f:
            return e, f.read()

    @_holds_objects
    def open_dataset(self, path: str):
        """(entry, binary file) of a dataset of the current workspace, for streaming reads."""
        path = check_path(path)
        root = self.workspaces.root(self.ws())
        e = self.r.trees.get(root, path)
        if e["kind"] != "blob":
            raise UsageError(f"'{path}' is a folder of datasets; list it with 'e3 ls {path}'")
        return e, self.r.objects.open(e["hash"])

    @_holds_objects
    def set(self, path: str, src: Path | bytes, fmt: str | None = None) -> dict:
        path = check_path(path)
        ws = self.ws()
        self.recover()
        with self.workspaces.lock(ws).acquire("set", shared=True):
            if isinstance(src, (bytes, bytearray)):
                h = self.r.objects.write(bytes(src))
            else:
                src = Path(src)
                if not src.is_file():
                    raise UsageError(f"no such file '{src}'; give a file to read the dataset from")
                h = self.r.objects.write_file(src)
            size = self.r.objects.size(h)
            old = self.r.trees.find(self.workspaces.root(ws), path)
            fmt = fmt or (old.get("format") if old and old["kind"] == "blob" else "raw")
            if fmt == "json":
                try:
                    value = canon.loads(self.r.objects.read(h))
                except ValueError as e:
                    raise UsageError(f"{path} is a JSON dataset but the new bytes are not valid "
                                     f"JSON ({e}); fix them or pass --format raw") from None
                # stored in canonical form: the same value is the same dataset, whatever its
                # layout (`6` and `6\n` do not rerun anything)
                h = self.r.objects.write(canon.dumps(value))
                size = self.r.objects.size(h)
            entry = blob_entry(h, size, fmt)
            in_wc = ws == self.current and path.split("/")[0] in ("inputs", "outputs")
            if in_wc:
                # file first: a kill between here and the CAS leaves a visible edit, not a loss
                self.wc.write_one(path, h)
            new = self.workspaces.update_root(ws, lambda r: self.r.trees.set(r, path, entry))
            if in_wc and self.wc.synced_root is not None:
                self.r.index.set_meta("wc_root", new)
        self._on_root_changed(ws)
        return {"path": path, "hash": h, "root": new}

    # -- versions -------------------------------------------------------------------------------
    @_holds_objects
    def commit(self, part: str, message: str) -> dict:
        ws = self.ws()
        # shared, like a dataset write: no deploy can swap the package between intake and the
        # new version being recorded
        with self.workspaces.lock(ws).acquire("commit", shared=True):
            pkg_ref = self.workspaces.package(ws)
            if not pkg_ref:
                raise UsageError(f"workspace '{ws}' has no package deployed; 'e3 checkout NAME' "
                                 f"first")
            root = self.intake(ws)
            old = self.read_package(pkg_ref["hash"])
            from .core.semver import Version

            version = str(Version.parse(old["version"]).bump(part))
            new = dict(old, version=version, datasets={"kind": "tree", "hash": root},
                       parent={"version": old["version"], "hash": pkg_ref["hash"]},
                       message=message)
            from .repo.packages import install
            from .repo.refs import read_ref

            existing = read_ref(self.r.package_ref_path(old["name"], version))
            if existing is not None and existing["hash"] != canon.digest(new):
                raise UsageError(f"{old['name']}@{version} already exists; use a larger bump "
                                 f"(--minor or --major)")
            # object + ref under the package lock; re-running a commit a kill interrupted is a
            # no-op
            h = install(self.r, new)["hash"]
            self.workspaces.set_package(ws, old["name"], version, h)
        return {"package": old["name"], "version": version, "root": root}

    @_holds_objects
    def log(self) -> list[dict]:
        pkg_ref = self.workspaces.package(self.ws())
        out, h, seen = [], pkg_ref and pkg_ref["hash"], set()
        while h and h not in seen and self.r.objects.exists(h):
            seen.add(h)
            p = self.read_package(h)
            out.append({"version": p["version"], "message": p.get("message") or "",
                        "root": p["datasets"]["hash"], "hash": h})
            h = (p.get("parent") or {}).get("hash")
        return out

    def _uncommitted_inputs(self, ws: str) -> list[str]:
        """Input datasets of the workspace root that differ from its deployed version's (set
        with `e3 set` or taken in from edited files, not yet committed), sorted."""
        root, base = self.workspaces.root(ws), self._deployed_root(ws)
        a, b = self.r.trees.find(root, "inputs"), self.r.trees.find(base, "inputs")
        if (a and a["hash"]) == (b and b["hash"]):
            return []
        old, new = dict(self._leaves(base, "inputs")), dict(self._leaves(root, "inputs"))
        return sorted(p for p in set(old) | set(new) if old.get(p) != new.get(p))

    def _deployed_root(self, ws: str) -> str:
        pkg_ref = self.workspaces.package(ws)
        if not pkg_ref:
            return self.r.trees.empty
        return self.read_package(pkg_ref["hash"])["datasets"]["hash"]

    @_holds_objects
    def diff(self, prefix: str = "") -> list[dict]:
        ws = self.ws()
        self.recover()
        root = self.workspaces.root(ws)
        base = self._deployed_root(ws)
        prefix = check_path(prefix) if prefix else ""
        old = dict(self._leaves(base, prefix))
        new = dict(self._leaves(root, prefix))
        if ws == self.current:  # working-copy edits, overlaid (diff only reads)
            ch = self.wc.scan(root)
            for p in ch.modified + ch.added:
                if not prefix or p == prefix or p.startswith(prefix + "/"):
                    new[p] = ch.hashes[p]
            for p in ch.deleted:
                new.pop(p, None)
        return [{"path": p, "old": old.get(p), "new": new.get(p)}
                for p in sorted(set(old) | set(new)) if old.get(p) != new.get(p)]

    def _leaves(self, root: str, prefix: str):
        if prefix and self.r.trees.find(root, prefix) is None:
            return []
        return ((p, e["hash"]) for p, e in self.r.trees.walk(root, prefix))

    @_holds_objects
    def reset(self, prefix: str = "") -> dict:
        ws = self.ws()
        self.recover()
        base = self._deployed_root(ws)
        prefix = check_path(prefix) if prefix else ""
        with self.workspaces.lock(ws).acquire("reset", shared=True):
            before = self.workspaces.root(ws)
            if not prefix:
                new = self.workspaces.update_root(ws, lambda r: base)
            else:
                want = dict(self.r.trees.walk(base, prefix)) if self.r.trees.find(base, prefix) else {}

                def change(r):
                    have = dict(self.r.trees.walk(r, prefix)) if self.r.trees.find(r, prefix) else {}
                    ch = {p: None for p in have if p not in want}
                    ch.update(want)
                    return self.r.trees.set_many(r, ch) if ch else r
                new = self.workspaces.update_root(ws, change)
            if ws == self.current:  # rewrite only what is under PATH: other edits stay
                self.wc.sync(new, [self.wc.synced_root, before], under=prefix or None)
        self._on_root_changed(ws)
        return {"workspace": ws, "root": new}

    # -- workspaces -------------------------------------------------------------------------------
    @_holds_objects
    def switch(self, ws: str, force: bool = False) -> dict:
        self.workspaces.require(ws)
        self.recover()
        if not force and self.changes(self.current):
            raise UsageError("the working copy has uncommitted changes; 'e3 commit' or "
                             "'e3 reset' them, or pass --force")
        previous = [self.wc.synced_root]
        if self.workspaces.exists(self.current):
            previous.append(self.workspaces.root(self.current))
        root = self.workspaces.root(ws)
        self.wc.begin_sync(root)  # a kill from here on is completed by the next command
        self.r.set_head(ws)
        self.wc.sync(root, previous)
        return {"workspace": ws, "root": root}

    @_holds_objects
    def export_workspace(self, ws: str, zip_path: str, name: str | None = None,
                         version: str | None = None) -> dict:
        """Export a workspace's current state as a package bundle."""
        ws = self.ws(ws)
        root = self.intake(ws) if ws == self.current else self.workspaces.root(ws)
        pkg_ref = self.workspaces.package(ws)
        if not pkg_ref:
            raise UsageError(f"workspace '{ws}' has no package deployed; nothing to export")
        old = self.read_package(pkg_ref["hash"])
        name = name or old["name"]
        version = version or f"{old['version']}-{root[:8]}"
        from .core.semver import Version

        Version.parse(version)
        new = dict(old, name=name, version=version, datasets={"kind": "tree", "hash": root},
                   parent={"version": old["version"], "hash": pkg_ref["hash"]},
                   message="workspace export")  # same state -> same package -> same bytes
        # the bundle is written straight from the objects: exporting installs nothing
        from .repo.bundle import write_bundle
        from .repo.packages import reachable

        h = self.r.objects.write(canon.dumps(new))
        path = write_bundle(zip_path, name, version, h, reachable(self.r, h),
                            self.r.objects.open, self.r.objects.size)
        return {"path": str(path), "hash": h, "name": name, "version": version}

    # -- logic ----------------------------------------------------------------------------------
    @_holds_objects
    def facts(self, ws: str | None = None, decision: bool = True) -> dict:
        """Every fact relation of workspace `ws` (default: current): those projected from the
        repository and, unless `decision` is False, the rerun policy's facts observed now
        (`decision_facts`)."""
        from .dataflow.facts import repository_facts

        facts = repository_facts(self.r, ws)
        if decision:
            facts.update(self.decision_facts(ws))
        return facts

    @_holds_objects
    def decision_facts(self, ws: str | None = None) -> dict:
        """The facts `go` would decide on now (miss, forced, input_changed, input_missing,
        code_changed, output_lost, failed_last, never_run), observed as `status` observes
        them: over them `dirty(D)` is what a `go` would execute."""
        from .dataflow.facts import decision_facts

        return decision_facts(self, ws)

    def logic(self, rule_files=(), engine: str = "auto"):
        """A `Logic` over this repository's facts, the shipped rules, the project's own
        `rules/*.dl` and `rule_files`. The decision facts are observed on the first query
        that needs them (`dirty(D)`, `reason(D, K, A)`, ...; `dataflow.facts.RepositoryLogic`)."""
        from .dataflow.facts import repository_logic

        own = sorted((self.root / "rules").glob("*.dl")) if (self.root / "rules").is_dir() else []
        return repository_logic(self.facts(decision=False), self.decision_facts,
                                rule_files=[*own, *rule_files], engine=engine, trusted=True)

    def dataflow_names(self) -> list[str]:
        pkg = self.workspaces.package(self.ws())
        return sorted(self.read_package(pkg["hash"]).get("dataflows", {})) if pkg else []

    # -- the shared cache (docs/sharing.md) -------------------------------------------------------
    def remote_add(self, name: str, url: str, endpoint_url: str | None = None) -> dict:
        """Name a remote: a directory (or file://…) or s3://bucket/prefix (`endpoint_url` for
        a server other than AWS)."""
        from .core.paths import check_ident
        from .repo.remotes import check_url

        check_ident(name, "remote")
        url, endpoint_url = check_url(url, endpoint_url)
        if not self.r.journal.add_remote(name, url, endpoint_url):
            raise UsageError(f"remote '{name}' exists; remove it first ('e3 remote remove "
                             f"{name}') or pick another name")
        return {"name": name, "url": url, "endpoint_url": endpoint_url}

    def remote_list(self) -> list[dict]:
        return [{"name": n, "url": u, "endpoint_url": e} for n, u, e in self.r.journal.remotes()]

    def remote_remove(self, name: str) -> dict:
        if not self.r.journal.remove_remote(name):
            raise NotFound("remote", name, [r["name"] for r in self.remote_list()],
                           hint="see 'e3 remote list'")
        return {"removed": name}

    def trust_add(self, name: str, public_key: str) -> dict:
        """Accept results signed by `public_key` (what `e3 keygen` printed), named `name`."""
        from .core.paths import check_ident
        from .repo.keys import parse_public_key

        check_ident(name, "key")
        pk = parse_public_key(public_key)
        had = self.r.journal.trust_key(name, pk)
        if had is not None:
            n, k, revoked = had
            if n == name and k == pk and not revoked:
                pass  # trusted already: nothing to do
            elif n == name and k == pk:
                raise UsageError(f"'{name}' was revoked; a revoked key is never trusted again "
                                 f"(trust a new key under a new name)")
            elif n == name:
                raise UsageError(f"'{name}' already names another key ({k}); pick another "
                                 f"name")
            else:
                raise UsageError(f"this key is already trusted as '{n}'")
        return {"name": name, "public_key": pk, "revoked": False}

    def trust_list(self) -> list[dict]:
        return [{"name": n, "public_key": k, "revoked": bool(r)}
                for n, k, r in self.r.journal.trusted_keys()]

    def trust_revoke(self, name: str) -> dict:
        """Stop trusting the key named `name`: the memo rows pulled under it are dropped, and
        what was produced under it, or computed from such results, is stale
        (`revoked_producer`, rules/trust.dl's `tainted(P)`)."""
        dropped = self.r.journal.revoke_key(name)
        if dropped is None:
            raise NotFound("trusted key", name, [t["name"] for t in self.trust_list()],
                           hint="see 'e3 trust list'")
        pk = next(t["public_key"] for t in self.trust_list() if t["name"] == name)
        return {"name": name, "public_key": pk, "revoked": True, "dropped": len(dropped)}

    @_holds_objects
    def push(self, remote: str | None = None) -> dict:
        """Sign and upload what this repository computed (`exec.share.push`)."""
        from .exec.share import push, remote_for
        from .repo.keys import load_signer

        target = remote_for(self.r, remote)
        return push(self.r, target, load_signer())

    @_holds_objects
    def pull(self, remote: str | None = None) -> dict:
        """Download, verify and memoize the trusted results the memo lacks
        (`exec.share.pull`)."""
        from .exec.share import pull, remote_for

        return pull(self.r, remote_for(self.r, remote))

    # -- maintenance ----------------------------------------------------------------------------------
    def gc(self, min_age: float | None = None, dry_run: bool = False) -> dict:
        if min_age is None:
            min_age = float(self.r.config.get("gc", {}).get("min_age", 60))
        from .repo import gc as gc_mod

        return gc_mod.gc(self.r, min_age=min_age, dry_run=dry_run, on_wait=_say_gc_waits)

    def fsck(self, repair: bool = False) -> dict:
        """Verify objects, refs and index.db; `repair` mends what it can (repo/fsck.py)."""
        from .repo import fsck as fsck_mod

        if not repair:
            return fsck_mod.fsck(self.r)
        with self.r.gc_guard():  # a repair moves objects and rewrites refs: nobody else writes
            return fsck_mod.fsck(self.r, repair=True)
