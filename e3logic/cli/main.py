"""The `e3` command. Subcommands live in `cmd_*.py` modules, imported only when invoked so
that `e3 --version` and `e3 --help` start fast."""
from __future__ import annotations

import importlib
import sys

import click

from .. import __version__

#: command name -> (module, function); the single registry of the CLI
COMMANDS = {
    "init": ("repo_cmds", "init"),
    "status": ("repo_cmds", "status"),
    "ls": ("repo_cmds", "ls"),
    "get": ("repo_cmds", "get"),
    "set": ("repo_cmds", "set_"),
    "checkout": ("repo_cmds", "checkout"),
    "commit": ("repo_cmds", "commit"),
    "log": ("repo_cmds", "log"),
    "diff": ("repo_cmds", "diff"),
    "reset": ("repo_cmds", "reset"),
    "workspace": ("repo_cmds", "workspace"),
    "gc": ("repo_cmds", "gc"),
    "fsck": ("repo_cmds", "fsck"),
    "build": ("pkg_cmds", "build"),
    "add": ("pkg_cmds", "add"),
    "remove": ("pkg_cmds", "remove"),
    "packages": ("pkg_cmds", "packages"),
    "export": ("pkg_cmds", "export"),
    "demo": ("demo_cmd", "demo"),
    "go": ("run_cmds", "go"),
    "run": ("run_cmds", "run"),
    "plan": ("run_cmds", "plan"),
    "logs": ("run_cmds", "logs"),
    "episodes": ("run_cmds", "episodes"),
    "stats": ("run_cmds", "stats"),
    "cancel": ("run_cmds", "cancel"),
    "watch": ("watch_cmd", "watch"),
    "query": ("logic_cmds", "query"),
    "deps": ("logic_cmds", "deps"),
    "dependents": ("logic_cmds", "dependents"),
    "impact": ("logic_cmds", "impact"),
    "why": ("logic_cmds", "why"),
    "facts": ("logic_cmds", "facts"),
    "rules": ("logic_cmds", "rules"),
    "graph": ("graph_cmd", "graph"),
    "remote": ("share_cmds", "remote"),
    "keygen": ("share_cmds", "keygen"),
    "trust": ("share_cmds", "trust"),
    "push": ("share_cmds", "push"),
    "pull": ("share_cmds", "pull"),
}

#: one-line help for each command, shown by `e3 --help` without importing the command
SUMMARIES = {
    "init": "Create a new repository.",
    "status": "Show the package, modified inputs and stale dataflows.",
    "ls": "List datasets of the current workspace.",
    "get": "Print (or write) a dataset's bytes.",
    "set": "Set a dataset from a file.",
    "checkout": "Deploy a package version into a workspace and write the working copy.",
    "commit": "Make a new package version from the workspace.",
    "log": "Show the version history of the deployed package.",
    "diff": "Show datasets changed since the deployed version.",
    "reset": "Discard changes to datasets since the deployed version.",
    "workspace": "Manage named workspaces.",
    "gc": "Delete unreachable objects older than min-age.",
    "fsck": "Verify every object's hash and every ref.",
    "build": "Build a package directory (e3pkg.py) into a bundle zip.",
    "add": "Install a package bundle (zip) or a package from a registry directory.",
    "remove": "Remove an installed package version.",
    "packages": "List installed packages.",
    "export": "Write an installed package to a bundle zip.",
    "demo": "Run the main job on the bundled example in a temp project.",
    "go": "Run the dataflows (only what changed, only what the targets need).",
    "run": "Execute one task of a package on files (ad hoc, memoized).",
    "plan": "Show batches and lease assignment for what would run.",
    "logs": "Show a task's output (streamed while it runs).",
    "episodes": "Show the episode histories of a run.",
    "stats": "Show the memo hit ratio and work saved.",
    "cancel": "Cancel a running 'e3 go' from another shell.",
    "watch": "Re-run the affected dataflows when input files change.",
    "query": "Ask a Datalog query over the repository's facts and rules.",
    "deps": "List upstream dataflows.",
    "dependents": "List downstream dataflows.",
    "impact": "List dataflows that would rerun if datasets changed.",
    "why": "Show where a dataset's value came from (provenance).",
    "facts": "Show facts projected from the repository.",
    "rules": "List the relations the rules define, with docs.",
    "graph": "Draw the dataflow DAG coloured by state.",
    "remote": "Manage the remotes of the shared cache.",
    "keygen": "Make your ed25519 signing key and print its public key.",
    "trust": "Manage whose signed results this repository accepts.",
    "push": "Sign and upload computed results to a remote.",
    "pull": "Download trusted, verified results from a remote.",
}


def register(name: str, module: str, func: str, summary: str) -> None:
    COMMANDS[name] = (module, func)
    SUMMARIES[name] = summary


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        mod, func = COMMANDS[name]
        cmd = getattr(importlib.import_module(f"e3logic.cli.{mod}"), func)
        _accept_globals(cmd)
        return cmd

    def format_commands(self, ctx, formatter):
        rows = [(n, SUMMARIES.get(n, "")) for n in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def resolve_command(self, ctx, args):
        name = args[0] if args else None
        if name and name not in COMMANDS and not name.startswith("-"):
            from ..core.errors import NotFound

            raise NotFound("command", name, COMMANDS, hint="see 'e3 --help'")
        return super().resolve_command(ctx, args)


def _set_json(ctx, param, value):
    if value:
        ctx.obj.json = True


def _set_repo(ctx, param, value):
    if value is not None:
        ctx.obj.repo_path = value


def _set_verbose(ctx, param, value):
    if value:
        ctx.obj.verbose = True


#: the global options a command accepts after its name too (`e3 status --repo X --json -v`):
#: (option names, help, callback, flag); `--version` stays global only (`workspace export
#: --version` is that command's own option)
GLOBAL_AFTER = (
    (["--repo", "_e3_repo"], "Repository (default: $E3_REPO or nearest .e3/ upward).", _set_repo,
     False),
    (["--json", "_e3_json"], "Answer with one JSON document on stdout.", _set_json, True),
    (["-v", "--verbose", "_e3_verbose"], "Show tracebacks on errors.", _set_verbose, True),
)


def _accept_globals(cmd) -> None:
    """Let the global options follow the command (`e3 status --json`, `e3 status --repo X`,
    `e3 workspace list -v`) as well as precede it; an option name the command defines itself
    keeps the command's meaning."""
    if getattr(cmd, "_e3_globals", False):
        return
    cmd._e3_globals = True
    own = {o for p in cmd.params for o in p.opts}
    for decls, text, callback, flag in GLOBAL_AFTER:
        names = [d for d in decls if d.startswith("-") and d not in own]
        if not names:
            continue
        extra = {"is_flag": True} if flag else {"metavar": "PATH"}
        cmd.params.append(click.Option([*names, decls[-1]], expose_value=False,
                                       callback=callback, help=text, **extra))
    for sub in (getattr(cmd, "commands", None) or {}).values():
        _accept_globals(sub)


#: commands that only read the repository (as `e3 NAME` or `e3 GROUP NAME`); with `go
#: --dry-run` and `fsck` without `--repair` they are what a read-only repository allows
READ_COMMANDS = frozenset({
    "status", "ls", "get", "log", "diff", "why", "deps", "dependents", "impact", "query",
    "facts", "rules", "graph", "plan", "packages", "export", "logs", "episodes", "stats",
    "workspace list", "workspace export", "remote list", "trust list", "push", "keygen"})

_OPTIONS = None  # the current command's Options (errors name its repository)


def read_only_path(repo) -> str | None:
    """The first part of `repo`'s .e3/ this process may not write, or None."""
    import os

    for p in (repo.dir, repo.dir / "index.db", repo.objects.root, repo.workspaces_dir):
        if p.exists() and not os.access(p, os.W_OK):
            return str(p)
    return None


def refuse_writes_to_read_only(repo) -> None:
    """Refuse a command that writes before it starts when the repository is read-only."""
    try:
        ctx = click.get_current_context()
    except RuntimeError:
        return
    name = " ".join(ctx.command_path.split()[1:])
    if name in READ_COMMANDS or (name == "go" and ctx.params.get("dry_run")) or \
            (name == "fsck" and not ctx.params.get("repair")):
        return
    where = read_only_path(repo)
    if where is not None:
        from ..core.errors import ReadOnlyRepository

        raise ReadOnlyRepository(f"the repository is read-only here ({where} is not writable) "
                                 f"and 'e3 {name}' writes to it; run it as a user who can "
                                 f"write {repo.dir}")


class Options:
    """Global options, shared with every command through click's context object."""

    def __init__(self, repo: str | None, json: bool, verbose: bool):
        global _OPTIONS
        self.repo_path, self.json, self.verbose = repo, json, verbose
        self._repo = None
        _OPTIONS = self

    def repo(self):
        if self._repo is None:
            from ..repo.repository import Repository

            repo = Repository.open(self.repo_path)
            refuse_writes_to_read_only(repo)
            self._repo = repo
        return self._repo

    def api(self):
        """The `Repo` facade over the same repository."""
        from ..api import Repo

        return Repo(self.repo())


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--repo", metavar="PATH", help="Repository (default: $E3_REPO or nearest .e3/ upward).")
@click.option("--json", "as_json", is_flag=True, help="Answer with one JSON document on stdout.")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(__version__, "--version", prog_name="e3")
@click.pass_context
def cli(ctx, repo, as_json, verbose):
    """e3: reproducible, content-addressed dataflows with a logic core."""
    ctx.obj = Options(repo, as_json, verbose)


def run() -> None:
    """The console entry point: `main()`, then a quick exit. Once the command has returned,
    its work is on disk; what is left is interpreter teardown (freeing every object, GC),
    which after a large run costs tens of milliseconds. Non-daemon threads are joined and
    atexit handlers run first, as a normal exit would."""
    try:
        main()
        code = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    quick_exit(code)


def quick_exit(code: int) -> None:
    """Exit now with `code`: join non-daemon threads (thread pools shut down first), run
    atexit handlers, flush the standard streams, then `os._exit` (no module teardown)."""
    import atexit
    import os
    import threading

    # what the interpreter does first at exit: threading's own exit hooks (a thread pool lets
    # its idle workers go) and a join of every non-daemon thread
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None and threading.current_thread() is threading.main_thread():
        shutdown()
    if sys.getprofile() is not None:  # under `python -m cProfile -o F -m e3logic`: let the
        sys.exit(code)                # profiler write F (it does so once the program returns)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass
    os._exit(code)


def main(argv=None) -> None:
    args = sys.argv[1:] if argv is None else argv
    verbose = "-v" in args or "--verbose" in args
    try:
        rv = cli.main(args=args, prog_name="e3", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.NoArgsIsHelpError as e:  # `e3`, `e3 workspace`: a group's help,
        click.echo(e.ctx.get_help(), err=True)      # on stderr with exit 2, as click does
        sys.exit(2)
    except click.ClickException as e:  # bad usage: one line, like every other error
        msg = " ".join(e.format_message().split())
        ctx = getattr(e, "ctx", None)
        if ctx is not None:
            msg += f" (see '{ctx.command_path} --help')"
        click.echo(f"e3: error: {msg}", err=True)
        sys.exit(2)
    except (SystemExit, GeneratorExit):
        raise
    except BaseException as e:  # noqa: B036 — every other error becomes one line
        code, line = explain(e)
        if verbose and code not in (0, 130):
            import traceback

            traceback.print_exception(e)
        if line:
            click.echo(line, err=True)
        sys.exit(code)
    sys.exit(rv if isinstance(rv, int) else 0)


def leaf(e: BaseException) -> BaseException:
    """The error that matters inside (nested) exception groups (anyio wraps task errors):
    a user-facing or resource error first, else the first one."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        inner = [leaf(x) for x in e.exceptions]
        e = next((x for x in inner if _known(x)), inner[0])
    return e


def _known(e: BaseException) -> bool:
    from ..core.errors import E3Error

    return isinstance(e, (E3Error, KeyboardInterrupt, MemoryError, OSError, click.Abort)) or \
        _sqlite_line(e) is not None


#: errno -> what ran out; the message names the limit and the fix (exit 1: the command failed
#: for want of a resource, not for bad input)
RESOURCE_ERRNOS = ("EMFILE", "ENFILE", "ENOSPC", "EDQUOT", "ENOMEM")


def resource_line(e: BaseException) -> str | None:
    """One line for an exhausted system resource, or None."""
    import errno

    if isinstance(e, MemoryError):
        return ("out of memory; free memory, run fewer tasks at once ('e3 go -j 1') or lower "
                "the tasks' mem_mb budgets")
    if not isinstance(e, OSError):
        return None
    where = f" at {e.filename}" if e.filename else _repo_dir_hint()
    if e.errno == errno.EMFILE:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return f"too many open files (limit {soft}); raise it with 'ulimit -n 4096'"
    if e.errno == errno.ENFILE:
        return ("too many open files in the system (the kernel's file table is full); close "
                "programs or raise 'sysctl fs.file-max'")
    if e.errno == errno.ENOSPC:
        return f"no space left on device{where}; free space (e.g. 'e3 gc') and retry"
    if e.errno == errno.EDQUOT:
        return f"disk quota exceeded{where}; free space (e.g. 'e3 gc') or raise the quota"
    if e.errno == errno.ENOMEM:
        return "out of memory (the system could not allocate); free memory or run fewer tasks"
    return None


def _repo_dir_hint() -> str:
    repo = getattr(_OPTIONS, "_repo", None)
    return f" at {repo.dir}" if repo is not None else ""


def _sqlite_line(e: BaseException) -> str | None:
    """One line for an index.db that is damaged, read-only or on a full disk, or None."""
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is None or not isinstance(e, sqlite3.Error):
        return None
    from ..repo.index import damaged_message, is_damage

    repo = getattr(_OPTIONS, "_repo", None)
    path = repo.dir / "index.db" if repo is not None else "index.db"
    msg = str(e).lower()
    if "unable to open" in msg:  # SQLite hides the errno: is it the open-file limit?
        import os

        try:
            os.close(os.open(os.devnull, os.O_RDONLY))
        except OSError as probe:
            line = resource_line(probe)
            if line:
                return line
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft < 1024:
            return (f"cannot open {path} ({e}); the open-file limit is low ({soft}): raise it "
                    f"with 'ulimit -n 4096'")
    if is_damage(e):
        return damaged_message(path, e)
    if "readonly" in msg or "read-only" in msg:
        return f"{path} is read-only; run the command as a user who can write it"
    if "disk is full" in msg:
        return f"no space left on device at {path}; free space (e.g. 'e3 gc') and retry"
    return None


def explain(e: BaseException) -> tuple[int, str | None]:
    """(exit code, the one line on stderr) for an error that reached the command line."""
    from ..core.errors import EXIT_FAILED, EXIT_USAGE, E3Error

    e = leaf(e)
    if isinstance(e, E3Error):  # several problems (e3 build): one line each
        return e.exit_code, "\n".join(f"e3: error: {x}" for x in str(e).splitlines() or [""])
    if isinstance(e, (KeyboardInterrupt, click.Abort)):
        return 130, "e3: cancelled"
    if isinstance(e, BrokenPipeError):
        return 0, None
    line = resource_line(e)
    if line:
        return EXIT_FAILED, f"e3: error: {line}"
    line = _sqlite_line(e)
    if line:
        code = EXIT_USAGE if "is damaged" in line or "is read-only" in line else EXIT_FAILED
        return code, f"e3: error: {line}"
    import errno

    if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS) \
            and e.filename:
        return EXIT_USAGE, (f"e3: error: {e.strerror.lower()}: {e.filename}; run the command as "
                            f"a user who may write there (or on a writable copy)")
    return EXIT_FAILED, (f"e3: internal error: {type(e).__name__}: {e} (run with -v for the "
                         f"traceback)")
