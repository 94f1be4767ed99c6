"""Docs that cannot rot: every CLI command has help text and an entry in docs/cli.md; the
README's and the tutorial's shell blocks run as written and print what the tutorial shows; the
packages.md authoring example builds; no doc links to a file or heading a clone lacks."""
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
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


# --- The README and the tutorial run as written -------------------------------------------
#
# Every ```sh / ```bash / ```console block of README.md and docs/tutorial.md runs, in document
# order, in one bash process per document, in a fresh temp directory, with the bin directory of
# the Python running the tests (the venv: `e3`, `python`) first on PATH. Each command (a line,
# with its `\` continuation lines and heredoc bodies; in a console block, each `$ ` line) must
# exit 0. Two markers, an HTML comment on the line before a block's opening fence (invisible
# on GitHub):
#   <!-- no-test: WHY -->  the block is not run (WHY is required: say it in the doc);
#   <!-- output -->        a ```text block: each of its non-blank lines is printed by the
#                          shell block just before it (in any order; numbers with a decimal
#                          point, such as durations, and `[i/N]` counters match any value;
#                          `…` matches any text).

ROOT = Path(__file__).resolve().parent.parent
SHELLS = ("sh", "bash", "console")
FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)")
MARKER = re.compile(r"^<!--\s*(no-test|output)\b(.*?)-->\s*$")
HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z_]\w*)\2")


@dataclass
class Block:
    lang: str
    line: int                      # 1-based line of the opening fence
    body: list
    marker: str = ""
    why: str = ""
    commands: list = field(default_factory=list)   # [(line, text)]


def doc_blocks(path):
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2).lower()
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            j += 1
        prev = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        mm = MARKER.match(prev)
        block = Block(lang, i + 1, lines[i + 1:j],
                      marker=mm.group(1) if mm else "", why=mm.group(2).strip(" :") if mm else "")
        if lang in SHELLS:
            block.commands = list(shell_commands(block.body, lang, i + 2))
        blocks.append(block)
        i = j + 1
    return blocks


def shell_commands(body, lang, first_line):
    """(line number, command text) for each command of a shell block."""
    i = 0
    while i < len(body):
        line, lineno = body[i], first_line + i
        i += 1
        if lang == "console":
            if line.startswith("$ "):
                yield lineno, line[2:]
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cmd = [line]
        while cmd[-1].endswith("\\") and i < len(body):
            cmd.append(body[i])
            i += 1
        for dash, _, delim in HEREDOC.findall("\n".join(cmd)):
            while i < len(body):
                cmd.append(body[i])
                i += 1
                if (cmd[-1].lstrip("\t") if dash else cmd[-1]) == delim:
                    break
            else:
                raise AssertionError(f"line {lineno}: heredoc {delim} is not closed")
        yield lineno, "\n".join(cmd)


def run_doc(doc, tmp_path, setup=None):
    """Run every shell block of `doc` in tmp_path: (blocks, {block line: its stdout lines})."""
    blocks = doc_blocks(doc)
    for b in blocks:
        if b.marker == "no-test":
            assert b.why, f"{doc.name}:{b.line}: say why the block is not tested"
    script = ["set -o pipefail"]
    where = []
    for b in blocks:
        if b.lang not in SHELLS or b.marker == "no-test":
            continue
        script.append(f"echo '@@e3doc-block {b.line}@@'")
        for lineno, cmd in b.commands:
            where.append((lineno, cmd))
            script += [cmd, f"__rc=$?; if [ $__rc -ne 0 ]; then "
                            f"echo \"@@e3doc-failed {len(where) - 1} $__rc@@\"; exit 97; fi"]
    if setup:
        setup(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("E3_")}
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "e3").exists(), f"no e3 beside {sys.executable}: pip install -e ."
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    proc = subprocess.run(["bash", "-c", "\n".join(script) + "\n"], cwd=tmp_path, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    failed = re.search(r"@@e3doc-failed (\d+) (\d+)@@", proc.stdout)
    if failed or proc.returncode != 0:
        lineno, cmd = where[int(failed.group(1))] if failed else (0, "?")
        rc = failed.group(2) if failed else proc.returncode
        tail = proc.stdout.split("@@e3doc-failed")[0][-2000:]
        pytest.fail(f"{_rel(doc)}:{lineno}: exit {rc}: {cmd}\n"
                    f"--- stdout (tail) ---\n{tail}\n--- stderr ---\n{proc.stderr[-2000:]}")
    outputs, current = {}, None
    for line in proc.stdout.splitlines():
        m = re.fullmatch(r"@@e3doc-block (\d+)@@", line)
        if m:
            current = int(m.group(1))
            outputs[current] = []
        elif current is not None:
            outputs[current].append(line)
    return blocks, outputs


def _rel(doc):
    return doc.relative_to(ROOT) if doc.is_relative_to(ROOT) else doc.name


def _normal(line):
    line = re.sub(r"\[\d+/\d+\]", "[i/N]", line.rstrip())
    return re.sub(r"\d+\.\d+", "#", line)


def check_outputs(doc, blocks, outputs):
    """Each `<!-- output -->` block's lines appear in the output of the shell block before it."""
    last_shell = None
    for b in blocks:
        if b.lang in SHELLS and b.marker != "no-test":
            last_shell = b
        if b.marker != "output":
            continue
        assert last_shell is not None, f"{doc.name}:{b.line}: no shell block before the output"
        got = [_normal(x) for x in outputs[last_shell.line]]
        for want in filter(str.strip, b.body):
            pat = ".*?".join(map(re.escape, _normal(want).split("…")))
            assert any(re.fullmatch(pat, g) for g in got), (
                f"{_rel(doc)}:{b.line}: {want!r} is not in the output of the block "
                f"at line {last_shell.line}:\n" + "\n".join(outputs[last_shell.line]))


def _clone_root(tmp_path):
    # The README's commands run from a clone's root: give the temp directory what they read.
    shutil.copytree(ROOT / "e3logic" / "examples", tmp_path / "e3logic" / "examples",
                    ignore=shutil.ignore_patterns("__pycache__", "dist"))


@pytest.mark.parametrize("name, setup", [("README.md", _clone_root),
                                         ("docs/tutorial.md", None)])
def test_the_docs_shell_blocks_run_as_written(name, setup, tmp_path):
    doc = ROOT / name
    blocks, outputs = run_doc(doc, tmp_path, setup)
    assert any(b.commands for b in blocks if b.marker != "no-test")
    check_outputs(doc, blocks, outputs)


def test_the_readme_opens_with_the_install_and_test_commands():
    # a fresh machine with Python 3.11: one line installs and runs the main job, one installs
    # and runs the tests (.ci/run runs that one)
    venv = "python3 -m venv .venv && "
    demo = venv + ".venv/bin/pip install -q -e . && .venv/bin/e3 demo"
    tests = venv + ".venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest"
    first = doc_blocks(ROOT / "README.md")[0]
    assert first.line == 4 and first.marker == "no-test"
    assert first.commands == [(5, demo), (6, tests)]
    assert tests in (ROOT / ".ci" / "run").read_text()


def _anchors(doc):
    """GitHub's heading anchors of a markdown file."""
    heads = re.findall(r"^#+ (.+)$", re.sub(r"(?ms)^```.*?^```", "", doc.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_no_doc_links_to_files_a_clone_lacks():
    # the upstream design and command reference (../shared/) are not in a clone: docs/design.md
    # and docs/cli.md are the project's own
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        assert "../shared" not in text and "/work/shared" not in text, doc.name
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
            if "://" in target:
                continue
            path = doc.parent / target if target else doc
            assert path.exists(), f"{doc.name} links to missing {target}"
            if anchor and path.suffix == ".md":
                assert anchor in _anchors(path), f"{doc.name} links to missing {target}#{anchor}"


def test_the_packages_authoring_example_builds(tmp_path):
    text = (ROOT / "docs" / "packages.md").read_text()
    source = next(b for b in doc_blocks(ROOT / "docs" / "packages.md")
                  if b.lang == "python" and "sdk.package(" in "\n".join(b.body))
    (tmp_path / "e3pkg.py").write_text("\n".join(source.body) + "\n")
    # the files it names, as the text beside it describes them
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sales.csv").write_text("month,region,sales\n2024-01,north,10\n")
    (tmp_path / "params.json").write_text('{"alpha": 0.5}\n')
    (tmp_path / "steps.py").write_text(
        "def clean(raw):\n    return raw.decode().splitlines()\n\n"
        "def fit(rows, params):\n    return {'n': len(rows), **params}\n\n"
        "def summary(model, horizon):\n    return {'horizon': horizon, **model}\n")
    from e3logic import sdk
    res = sdk.build(tmp_path, outdir=tmp_path / "dist")
    assert (res["name"], res["version"]) == ("forecast", "0.1.0")
    assert Path(res["path"]).exists()
    assert "steps.py" in text and "data/sales.csv" in text and "params.json" in text


def test_the_docs_harness_fails_on_a_failing_command_and_on_wrong_output(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- no-test: it would fail -->\n```sh\nfalse\n```\n\n"
                   "```bash\ncat > f <<'EOF'\nx 1.5\nEOF\ncat f \\\n  f\n```\n\n"
                   "<!-- output -->\n```text\nx 2.0\n```\n\n```console\n$ echo ok\nok\n```\n")
    blocks = doc_blocks(doc)
    assert [c for b in blocks for c in b.commands] == [
        (3, "false"), (7, "cat > f <<'EOF'\nx 1.5\nEOF"), (10, "cat f \\\n  f"), (20, "echo ok")]
    blocks, outputs = run_doc(doc, tmp_path)
    assert outputs == {6: ["x 1.5", "x 1.5"], 19: ["ok"]}
    check_outputs(doc, blocks, outputs)                 # numbers with a point match any value
    doc.write_text(doc.read_text().replace("x 2.0", "y 2.0"))
    with pytest.raises(AssertionError, match="'y 2.0' is not in the output"):
        check_outputs(doc, doc_blocks(doc), outputs)
    doc.write_text(doc.read_text().replace("<!-- no-test: it would fail -->\n", ""))
    with pytest.raises(pytest.fail.Exception, match=r"doc.md:2: exit 1: false"):
        run_doc(doc, tmp_path)
