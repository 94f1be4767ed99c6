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
        _accept_json(cmd)
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


def _accept_json(cmd) -> None:
    """Let `--json` follow the command (`e3 status --json`) as well as precede it."""
    if getattr(cmd, "_e3_json", False):
        return
    cmd._e3_json = True
    if not any("--json" in p.opts for p in cmd.params):
        cmd.params.append(click.Option(["--json", "_e3_json"], is_flag=True, expose_value=False,
                                       callback=_set_json,
                                       help="Answer with one JSON document on stdout."))
    for sub in (getattr(cmd, "commands", None) or {}).values():
        _accept_json(sub)


class Options:
    """Global options, shared with every command through click's context object."""

    def __init__(self, repo: str | None, json: bool, verbose: bool):
        self.repo_path, self.json, self.verbose = repo, json, verbose
        self._repo = None

    def repo(self):
        if self._repo is None:
            from ..repo.repository import Repository

            self._repo = Repository.open(self.repo_path)
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
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass
    os._exit(code)


def main(argv=None) -> None:
    from ..core.errors import E3Error

    args = sys.argv[1:] if argv is None else argv
    verbose = "-v" in args or "--verbose" in args
    try:
        rv = cli.main(args=args, prog_name="e3", standalone_mode=False)
        sys.exit(rv if isinstance(rv, int) else 0)
    except E3Error as e:
        if verbose:
            import traceback

            traceback.print_exc()
        click.echo(f"e3: error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("e3: cancelled", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("e3: cancelled", err=True)
        sys.exit(130)
    except click.ClickException as e:  # bad usage: one line, like every other error
        msg = " ".join(e.format_message().split())
        ctx = getattr(e, "ctx", None)
        if ctx is not None:
            msg += f" (see '{ctx.command_path} --help')"
        click.echo(f"e3: error: {msg}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as e:  # a bug, not a user error: still one line unless -v
        if verbose:
            import traceback

            traceback.print_exc()
        click.echo(f"e3: internal error: {type(e).__name__}: {e} (run with -v for the traceback)",
                   err=True)
        sys.exit(1)
