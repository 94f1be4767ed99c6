"""Conformance suite `execute`: `e3 go` and `e3 run` (issue 5, items 1, 2, 4, 5) as scenarios
on the `flows` package (tests/flows.py: 12 dataflows over python, inline and shell tasks).

A scenario names a starting state (`fresh`: checked out, nothing run; `warm`: after a cold
run), edits to working-copy inputs, the `go` arguments, and the exact outcome lists expected.
Every scenario also checks the exit code, the status, that an episode exists exactly for what
was started, and that every output in the working copy is what its inputs give.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field

import pytest

from tests.flows import FLOWS, LISTS, Proj, closure, copy_project, states

ALL = set(FLOWS)


def rest(*names) -> list[str]:
    return sorted(ALL - set().union(*map(set, names)))


@dataclass(frozen=True)
class Scenario:
    id: str
    start: str                                   # "fresh" | "warm"
    args: tuple = ()
    edits: dict = field(default_factory=dict)    # input path -> JSON value or bytes
    expect: dict = field(default_factory=dict)   # outcome list -> names (others empty)
    code: int = 0


K = closure(["scaled", "side"])
SCENARIOS = [
    Scenario("cold-run-executes-everything", "fresh", expect={"executed": FLOWS}),
    Scenario("warm-run-caches-everything", "warm", expect={"cached": FLOWS}),
    Scenario("an-edit-reruns-exactly-its-dirty-closure", "warm", edits={"inputs/k": 3},
             expect={"executed": K, "cached": rest(K)}),
    Scenario("two-edits-rerun-the-union-of-their-closures", "warm",
             edits={"inputs/k": 3, "inputs/flag": "on"},
             expect={"executed": sorted(K + ["check", "after"]),
                     "cached": rest(K, ["check", "after"])}),
    Scenario("early-cutoff-an-unchanged-max", "warm", edits={"inputs/nums": [3, 9, 5]},
             expect={"executed": ["combine", "final", "peak", "report", "total"],
                     "cached": rest(["combine", "final", "peak", "report", "total"])}),
    Scenario("early-cutoff-a-whitespace-only-edit", "warm",
             edits={"inputs/text": b"hello\tworld  foo\n\nbar"},
             expect={"executed": ["norm"], "cached": rest(["norm"])}),
    Scenario("a-dataflow-target-runs-its-ancestors-only", "fresh", args=("report",),
             expect={"executed": ["peak", "report", "scaled", "total"]}),
    Scenario("an-output-path-target-runs-its-producer-and-ancestors", "fresh",
             args=("outputs/count/o",), expect={"executed": ["count", "norm"]}),
    Scenario("two-targets-share-their-ancestors", "fresh", args=("upper", "count"),
             expect={"executed": ["count", "norm", "upper"]}),
    Scenario("a-target-on-a-warm-repo-is-cached", "warm", args=("after",),
             expect={"cached": ["after", "check"]}),
    Scenario("filter-selects-by-glob", "warm", args=("--filter", "*e*"), edits={"inputs/k": 4},
             expect={"executed": ["combine", "report", "scaled", "side"],
                     "cached": ["after", "check", "peak", "upper"]}),
    Scenario("force-reexecutes-cached-work", "warm", args=("--force",),
             expect={"executed": FLOWS}),
    Scenario("force-with-a-target-reexecutes-only-the-selection", "warm",
             args=("--force", "upper"), expect={"executed": ["norm", "upper"]}),
    Scenario("keep-going-confines-a-failure", "fresh", edits={"inputs/flag": "fail"},
             expect={"executed": rest(["check", "after"]), "failed": ["check"],
                     "skipped": ["after"]}, code=1),
    Scenario("one-worker-inline-executor", "fresh", args=("-j", "1", "--executor", "inline"),
             expect={"executed": FLOWS}),
    Scenario("processes-executor", "warm", args=("-j", "4", "--executor", "processes"),
             edits={"inputs/text": b"one two\n"},
             expect={"executed": ["combine", "count", "final", "norm", "upper"],
                     "cached": rest(["combine", "count", "final", "norm", "upper"])}),
]


@pytest.fixture(scope="module")
def warm_template(tmp_path_factory):
    p = copy_project(tmp_path_factory, "flows", tmp_path_factory.mktemp("execute") / "warm")
    p.go()
    return p


def expected_outputs(edits: dict) -> dict[str, bytes]:
    """What the package computes from the shipped inputs with `edits` applied (a model of
    steps.py and the shell tasks)."""
    import json

    nums = edits.get("inputs/nums", [3, 9, 4])
    k = edits.get("inputs/k", 2)
    text = edits.get("inputs/text", b"hello   world\nfoo bar\n")
    flag = edits.get("inputs/flag", "ok")
    dump = lambda v: json.dumps(v, sort_keys=True, separators=(",", ":")).encode()  # noqa: E731
    norm = b" ".join(text.split()) + b"\n"
    report = dump(sum(nums)) + dump(max(nums) * k)
    combine = report + norm.upper()
    out = {"total": dump(sum(nums)), "peak": dump(max(nums)), "scaled": dump(max(nums) * k),
           "report": report, "side": dump(k) * 2, "norm": norm, "upper": norm.upper(),
           "count": dump({"words": len(norm.split())}), "combine": combine,
           "final": dump({"bytes": len(combine), "words": len(norm.split())})}
    if flag != "fail":
        out["check"] = out["after"] = dump({"flag": flag})
    return out


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: s.id)
def test_go(sc: Scenario, tmp_path_factory, tmp_path, request):
    if sc.start == "warm":
        src = request.getfixturevalue("warm_template")
        p = Proj(shutil.copytree(src.path, tmp_path / "p", symlinks=True))
    else:
        p = copy_project(tmp_path_factory, "flows", tmp_path / "p")
    for path, v in sc.edits.items():
        if isinstance(v, bytes):
            p.write(path, v)
        else:
            p.set_json(path, v)
    res = p.go(*sc.args, code=sc.code)
    assert {k: res[k] for k in LISTS if res[k]} == sc.expect
    assert res["status"] == ("failed" if sc.code else "ok")
    hist = p.histories(res["run"])
    started = set(res["executed"]) | set(res["failed"])
    assert set(hist) == started
    for n in res["executed"]:
        assert states(hist[n]) == ["plan", "run", "ok"], n
    for n in res["failed"]:
        assert states(hist[n])[-1] == "fail", n
    want = expected_outputs(sc.edits)
    selected = set().union(*map(set, sc.expect.values())) - set(res["failed"]) - set(res["skipped"])
    for n in selected:
        assert p.read(f"outputs/{n}/o") == want[n], n


def test_dry_run_reports_what_would_run_and_runs_nothing(warm_template, tmp_path):
    p = Proj(shutil.copytree(warm_template.path, tmp_path / "p", symlinks=True))
    p.set_json("inputs/k", 9)
    dry = p.go("--dry-run")
    assert dry["status"] == "dry-run" and dry["would_run"] == K and dry["executed"] == []
    assert p.read("outputs/scaled/o") == b"18"
    assert p.go()["executed"] == K


def test_fail_fast_stops_at_the_first_failure(tmp_path_factory, tmp_path):
    p = copy_project(tmp_path_factory, "flows", tmp_path / "p")
    p.set_json("inputs/flag", "fail")
    res = p.go("-j", "1", "--fail-fast", code=1)
    assert res["failed"] == ["check"] and res["reason"] == "fail-fast: check failed"
    assert "after" in res["skipped"] and len(res["skipped"]) > 1
    assert sorted(res["executed"] + res["failed"] + res["skipped"]) == FLOWS


def test_run_is_memoized_and_force_reexecutes(warm_template, tmp_path):
    p = warm_template
    (tmp_path / "n.json").write_text("[10, 20]")
    args = ("--json", "run", "flows/peak", tmp_path / "n.json", "-o", tmp_path / "o")
    first, second = p.e3(*args), p.e3(*args)
    forced = p.e3(*args, "--force")
    assert [r.json["cached"] for r in (first, second, forced)] == [False, True, False]
    assert len({r.json["execution"] for r in (first, second, forced)}) == 1
    assert (tmp_path / "o").read_bytes() == b"20"


# -- issue 16, item 8: a shell task sees its package's files as {bundle} ---------------------------
BUNDLE_PKG = '''
from e3logic import sdk

package = sdk.package("calc", "VERSION")
package.module("bin")
package.task("calc", ["sh", "{bundle}/bin/calc.sh", "{input0}", "{output}"], runtime="shell")
package.task("scribble", ["sh", "-c", "echo x > {bundle}/bin/calc.sh && cp {input0} {output}"],
             runtime="shell")
package.dataset("inputs/n", value=5)
package.dataflow("calc", task="calc", inputs=["inputs/n"], output="o")
package.dataflow("scribble", task="scribble", inputs=["inputs/n"], output="o")
'''


def test_a_shell_task_runs_its_bundled_script_and_an_edit_to_it_reruns_the_task(tmp_path):
    from tests.flows import make_project, write_package

    def src(version, factor):
        return write_package(tmp_path / version, BUNDLE_PKG.replace("VERSION", version), {
            "bin/calc.sh": f'echo $(( $(cat "$1") * {factor} )) > "$2"\n'})

    p = Proj(make_project(tmp_path / "p", src("0.1.0", 2), "calc"))
    assert p.go("calc")["executed"] == ["calc"] and p.read("outputs/calc/o") == b"10\n"
    assert p.go("calc")["cached"] == ["calc"]
    v2 = src("0.2.0", 3)
    for args in (("build", v2, "-o", v2 / "dist"), ("add", v2 / "dist/calc-0.2.0.zip"),
                 ("checkout", "calc@0.2.0")):
        assert p.e3(*args).code == 0, args
    res = p.go("calc")
    assert res["executed"] == ["calc"] and res["reasons"] == {"calc": "task code of calc changed"}
    assert p.read("outputs/calc/o") == b"15\n"
    bad = p.go("scribble", code=1)
    assert bad["failed"] == ["scribble"] and "is read-only" in bad["reasons"]["scribble"]
    assert p.go("--force", "calc")["executed"] == ["calc"]
    assert p.read("outputs/calc/o") == b"15\n"
