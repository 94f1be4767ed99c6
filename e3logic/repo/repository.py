"""The repository: `.e3/` layout and the low-level handles every higher layer uses.

    project/e3.toml, inputs/, outputs/      settings and the working copy
    .e3/objects/ab/cdef…                    ObjectStore
    .e3/packages/<name>/<version>           package refs
    .e3/workspaces/<ws>/{root,package,lock,root.lock,run.lock}
    .e3/HEAD                                current workspace name
    .e3/index.db                            IndexDB, its rows through `journal`
    .e3/gc.lock                             held shared by commands holding objects, by gc
                                            exclusive (`object_guard`, `gc_guard`)
    .e3/logs/<execution>.log
"""
from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from ..core.errors import NoRepository, UsageError
from .atomic import write_atomic
from .objects import ObjectStore

DEFAULT_TOML = """\
# e3logic repository settings
[defaults]
workspace = "main"
executor = "threads"

[resources]
# capacities for dataflows' resource demands, e.g. gpu = 1, mem_gb = 16

[gc]
min_age = 60
"""


def _say_waiting_for_gc(holders: list[str]) -> None:
    import sys

    who = f" ({holders[0]})" if holders else ""
    print(f"e3: waiting for gc to finish{who}…", file=sys.stderr, flush=True)


def find_root(start: Path | None = None, explicit: str | None = None) -> Path:
    """`--repo`, else $E3_REPO, else the nearest directory upward holding `.e3/`."""
    if explicit or os.environ.get("E3_REPO"):
        p = Path(explicit or os.environ["E3_REPO"]).resolve()
        if not (p / ".e3").is_dir():
            raise NoRepository(f"no e3 repository at {p}; create one with 'e3 init {p}'")
        return p
    here = (start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / ".e3").is_dir():
            return p
    raise NoRepository("not inside an e3 repository (no .e3/ here or above); "
                       "run 'e3 init' or pass --repo PATH")


class Repository:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.dir = self.root / ".e3"
        self.objects = ObjectStore(self.dir / "objects")
        self.packages_dir = self.dir / "packages"
        self.workspaces_dir = self.dir / "workspaces"
        self.logs_dir = self.dir / "logs"

    # -- creation / lookup ------------------------------------------------------------
    @classmethod
    def init(cls, path: Path, workspace: str = "main") -> "Repository":
        """Create `path/.e3/` whole or not at all: objects, the first (empty) workspace, HEAD
        and index.db are prepared in a private temp directory beside it, then renamed into
        place; `e3.toml` is written first (and kept if it exists)."""
        root = Path(path).resolve()
        e3 = root / ".e3"
        if e3.exists():
            raise UsageError(f"{root} is already an e3 repository; use it, or pick another PATH")
        if root.exists() and not root.is_dir():
            raise UsageError(f"{root} is a file; give a directory for the new repository")
        root.mkdir(parents=True, exist_ok=True)
        if not (root / "e3.toml").exists():
            write_atomic(root / "e3.toml", DEFAULT_TOML.encode())
        import shutil
        import tempfile

        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".e3.init-"))
        try:
            os.chmod(tmp, 0o755)  # mkdtemp makes 0700
            for sub in ("objects/tmp", "packages", "workspaces", "logs"):
                (tmp / sub).mkdir(parents=True)
            staged = cls(root)
            staged.dir = tmp
            staged.objects = ObjectStore(tmp / "objects")
            staged.packages_dir, staged.workspaces_dir = tmp / "packages", tmp / "workspaces"
            staged.logs_dir = tmp / "logs"
            from .workspaces import Workspaces

            Workspaces(staged).create(workspace)
            write_atomic(tmp / "HEAD", (workspace + "\n").encode())
            (tmp / "gc.lock").touch()
            from .index import IndexDB

            IndexDB(tmp / "index.db").close()
            try:
                os.rename(tmp, e3)  # the repository appears whole or not at all
            except OSError:
                if e3.exists():  # a concurrent `e3 init` won
                    raise UsageError(f"{root} is already an e3 repository; use it, or pick "
                                     f"another PATH") from None
                raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return cls(root)

    @classmethod
    def open(cls, path: str | None = None) -> "Repository":
        return cls(find_root(explicit=path))

    # -- lazily opened parts -----------------------------------------------------------
    @cached_property
    def trees(self):
        from .trees import Trees

        return Trees(self.objects)

    @cached_property
    def index(self):
        from .index import IndexDB

        return IndexDB(self.dir / "index.db")

    @property
    def journal(self):
        """index.db's rows (`repo.journal.Journal` over `index`): the only code that reads or
        writes them."""
        return self.index.journal

    @cached_property
    def config(self) -> dict:
        """e3.toml's settings ({} without the file), parsed once per command."""
        try:
            text = (self.root / "e3.toml").read_text()
        except FileNotFoundError:
            return {}
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise UsageError(f"e3.toml is not valid TOML ({e}); fix the file") from None

    # -- the gc lock ---------------------------------------------------------------------
    def object_guard(self):
        """Context manager: hold `.e3/gc.lock` shared, so that no gc sweeps while this command
        writes objects, or holds objects that no root reaches yet (a run's snapshot and staged
        outputs, a set's blob before the root moves). Reentrant within the process; waits for a
        running gc (saying so on stderr); a no-op on a read-only `.e3`. Costs one open + flock."""
        from .locks import ProcessLock

        return ProcessLock(self.dir / "gc.lock", True, "write", _say_waiting_for_gc, "the gc lock")

    def gc_guard(self, on_wait=None):
        """Context manager: hold `.e3/gc.lock` exclusive (gc's mark and sweep). Waits for every
        command holding `object_guard`, calling `on_wait(holders)` once first (holders: a list of
        'pid N (command)'); refused (ConflictError) inside this process's own object_guard."""
        from .locks import ProcessLock

        return ProcessLock(self.dir / "gc.lock", False, "gc", on_wait, "the gc lock")

    # -- paths ---------------------------------------------------------------------------
    def package_ref_path(self, name: str, version: str) -> Path:
        return self.packages_dir / name / version

    def workspace_dir(self, ws: str) -> Path:
        return self.workspaces_dir / ws

    @property
    def head(self) -> str:
        try:
            return (self.dir / "HEAD").read_text().strip() or "main"
        except FileNotFoundError:
            return "main"

    def set_head(self, ws: str) -> None:
        write_atomic(self.dir / "HEAD", (ws + "\n").encode())
