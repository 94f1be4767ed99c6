"""`e3 graph` (DOT, the terminal drawing, SVG/PNG through Graphviz, JSON nodes and edges) and
`e3 --json demo`, end to end through the real `e3` command, on the `flows` package."""
from __future__ import annotations

import re
import shutil

import pytest

from tests.flows import FLOWS, FLOWS_DEPS, Proj, copy_project, run_e3

# after a good run, `check` failing and `inputs/k` edited (not yet taken in)
FAILED = {"check"}
STALE = {"after", "scaled", "side", "report", "combine", "final"}
FRESH = set(FLOWS) - FAILED - STALE
INPUTS = ["inputs/flag", "inputs/k", "inputs/nums", "inputs/text"]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A `flows` project with every state: fresh, stale (an unsaved edit) and failed."""
    p = copy_project(tmp_path_factory, "flows", tmp_path_factory.mktemp("cli-graph") / "p")
    p.go()
    p.set_json("inputs/flag", "fail")
    assert p.go(code=1)["failed"] == ["check"]
    p.set_json("inputs/k", 3)
    return p


@pytest.fixture
def proj(mixed, tmp_path):
    shutil.copytree(mixed.path, tmp_path / "p", symlinks=True)
    return Proj(tmp_path / "p")


def test_graph_json_lists_nodes_with_their_states_and_sorted_edges(mixed):
    r = mixed.e3("--json", "graph")
    assert r.code == 0, r
    g = r.json
    assert (g["package"], g["version"]) == ("flows", "0.1.0")
    names = [n["name"] for n in g["nodes"]]
    assert names == sorted(FLOWS + INPUTS)
    state = {n["name"]: n["state"] for n in g["nodes"]}
    assert {n for n, s in state.items() if s == "failed"} == FAILED
    assert {n for n, s in state.items() if s == "stale"} == STALE
    assert {n for n, s in state.items() if s == "fresh"} == FRESH
    assert all(state[p] == "input" for p in INPUTS)
    node = {n["name"]: n for n in g["nodes"]}
    assert node["scaled"]["reason"] == "inputs/k changed → scaled"
    assert node["scaled"]["upstream"] == ["peak", "inputs/k"]
    assert node["final"]["layer"] == 5 and node["total"]["layer"] == 1
    assert "reason" not in node["total"]
    edges = [(e["from"], e["to"], e["path"]) for e in g["edges"]]
    assert edges == sorted(edges)
    assert {(a, b) for a, b, _ in edges if a in FLOWS} == {
        (d, n) for n, ds in FLOWS_DEPS.items() for d in ds}
    assert ("peak", "scaled", "outputs/peak/o") in edges
    assert ("inputs/k", "side", "inputs/k") in edges


def test_graph_format_text_draws_one_line_per_dataflow_by_layer_with_state_and_upstreams(mixed):
    r = mixed.e3("graph", "--format", "text")
    assert r.code == 0, r
    lines = r.out.splitlines()
    assert lines[0] == "flows 0.1.0: 12 dataflows (5 fresh, 6 stale, 1 failed)"
    assert lines[1] == "inputs: " + ", ".join(INPUTS)
    assert "\x1b" not in r.out  # no colours when not on a terminal
    rows = {}
    layer = None
    for line in lines[2:]:
        if m := re.fullmatch(r"layer (\d+)", line):
            layer = int(m.group(1))
            continue
        m = re.fullmatch(r"  ([a-z]+) +(fresh|stale|failed) +← (.+)", line)
        assert m, line
        rows[m.group(1)] = (layer, m.group(2), m.group(3).split(", "))
    assert sorted(rows) == FLOWS
    assert rows["scaled"] == (2, "stale", ["peak", "inputs/k"])
    assert rows["check"] == (1, "failed", ["inputs/flag"])
    assert rows["final"] == (5, "stale", ["combine", "count"])
    for n, deps in FLOWS_DEPS.items():  # a dataflow is drawn below what it reads
        assert all(rows[d][0] < rows[n][0] for d in deps), n
    # the columns line up
    assert len({line.index("←") for line in lines if "←" in line}) == 1


def test_graph_format_text_or_dot_can_be_written_to_a_file(proj):
    assert proj.e3("graph", "--format", "text", "-o", "g.txt").code == 0
    assert (proj.path / "g.txt").read_text() == proj.e3("graph", "--format", "text").out
    assert proj.e3("graph", "-o", "g.dot").code == 0
    dot = (proj.path / "g.dot").read_text()
    assert dot.startswith('digraph "flows" {') and '  "peak" -> "scaled";' in dot
    assert '"check" [fillcolor=salmon' in dot and '"side" [fillcolor=orange' in dot


def test_graph_svg_without_graphviz_is_one_line_naming_dot_how_to_install_it_and_format_text(
        proj, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    for fmt in ("svg", "png"):
        r = proj.e3("graph", "--format", fmt, "-o", "g." + fmt, env={"PATH": str(empty)})
        assert r.code == 2, r
        assert r.out == "" and len(r.err.strip().splitlines()) == 1, r
        assert r.err.startswith(f"e3: error: --format {fmt} needs Graphviz's 'dot' program")
        for needle in ("apt install graphviz", "brew install graphviz", "--format text"):
            assert needle in r.err, needle
        assert not (proj.path / ("g." + fmt)).exists()


def test_graph_svg_pipes_the_dot_text_through_graphviz_and_a_failing_dot_is_one_line(
        proj, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dot"
    fake.write_text(f'#!/bin/sh\nprintf "<svg format=%s>" "$1"; {shutil.which("grep")} -c -- "->"; '
                    'printf "</svg>"\n')  # PATH is only bin_dir: grep by its full path
    fake.chmod(0o755)
    r = proj.e3("graph", "--format", "svg", env={"PATH": str(bin_dir)})
    edges = len(proj.e3("--json", "graph").json["edges"])
    assert (r.code, r.out) == (0, f"<svg format=-Tsvg>{edges}\n</svg>"), r
    fake.write_text('#!/bin/sh\ncat >/dev/null; echo "Error: <stdin>: syntax error" >&2; '
                    "exit 3\n")
    r = proj.e3("graph", "--format", "png", env={"PATH": str(bin_dir)})
    assert r.code == 1 and len(r.err.strip().splitlines()) == 1, r
    assert "Graphviz's dot failed (exit 3) making png: Error: <stdin>: syntax error" in r.err
    assert "Traceback" not in r.err


def test_demo_json_answers_one_document_summing_up_its_runs_plan_and_why(tmp_path):
    r = run_e3("--json", "demo", cwd=tmp_path, timeout=300)
    assert r.code == 0, r
    d = r.json
    assert d["ok"] is True and "project" not in d
    assert [s["command"].split()[1] for s in d["steps"]] == [
        "init", "build", "add", "checkout", "plan", "go", "go", "set", "status", "go", "why",
        "stats", "get"]
    assert all(s["exit"] == 0 and s["seconds"] >= 0 for s in d["steps"])
    cold, warm, incr = d["cold"], d["warm"], d["incremental"]
    assert (cold["run"], cold["executed"], cold["cached"]) == ("r1", 6, 0)
    assert (warm["run"], warm["executed"], warm["cached"]) == ("r2", 0, 6)
    assert (incr["run"], incr["executed"], incr["cached"]) == ("r3", 3, 3)
    assert all(x["status"] == "ok" and x["seconds"] > 0 for x in (cold, warm, incr))
    assert set(cold["reasons"].values()) == {"never run"} and warm["reasons"] == {}
    assert incr["reasons"]["forecast"] == "inputs/horizon changed → forecast"
    assert sorted(n for b in d["plan"]["batches"] for n in b) == sorted(cold["reasons"])
    assert d["status"]["stale"] == sorted(incr["reasons"])
    assert d["why"]["path"] == "outputs/report/markdown" and d["why"]["dataflow"] == "report"
    assert d["stats"]["executed"] == 9 and d["stats"]["cached"] == 9
    assert d["report"].startswith("# Sales forecast")
