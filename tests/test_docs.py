"""Every CLI command has help text and an entry in docs/cli.md."""
import re
from pathlib import Path

from click.testing import CliRunner

from e3logic.cli.main import COMMANDS, SUMMARIES, LazyGroup, cli

DOCS = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def all_commands():
    ctx = cli.make_context("e3", ["--help"], resilient_parsing=True)
    for name in sorted(COMMANDS):
        cmd = cli.get_command(ctx, name)
        yield name, cmd
        for sub in sorted(getattr(cmd, "commands", {}) or {}):
            yield f"{name} {sub}", cmd.commands[sub]


def test_every_command_has_a_summary_and_help_text():
    missing = [n for n, c in all_commands() if not (c.help or "").strip()]
    assert missing == []
    assert sorted(SUMMARIES) == sorted(COMMANDS)


def test_every_command_has_a_docs_entry():
    text = DOCS.read_text()
    headings = set(re.findall(r"^### `e3 ([a-z ]+?)`", text, re.M))
    missing = [n for n, _ in all_commands() if n not in headings]
    assert missing == []


def test_every_command_answers_help():
    runner = CliRunner()
    for name, _ in all_commands():
        res = runner.invoke(cli, name.split() + ["--help"])
        assert res.exit_code == 0, (name, res.output)
        assert "Usage:" in res.output
