"""Conformance suite `install`: a newcomer's path on a normal install (issue 16, item 1). The
wheel `pip install .` would install, in a fresh venv, run from a temp directory without
PYTHONPATH: the README's quick start on the bundled example, then questions the shipped rules
answer."""
from __future__ import annotations

import json

import pytest

from tests.installed import build_wheel, install


@pytest.mark.slow
def test_a_newcomer_runs_and_questions_the_bundled_example_from_a_wheel_install(tmp_path):
    venv = install(build_wheel(tmp_path), tmp_path)
    assert venv.inside(venv.python("import e3logic; print(e3logic.__file__)").strip())
    example = venv.python("import e3logic; print(e3logic.EXAMPLES_DIR / 'forecast')").strip()
    assert venv.inside(example)

    def ok(*args, cwd=None):
        r = venv.e3(*args, cwd=cwd or proj)
        assert r.code == 0, (args, r)
        return r

    proj = venv.cwd / "myproject"
    ok("init", proj, cwd=venv.cwd)
    ok("build", example, "-o", "dist")
    ok("add", "dist/forecast-0.1.0.zip")
    ok("checkout", "forecast")
    cold = ok("--json", "go").json
    assert sorted(cold["executed"]) == ["clean", "features", "fit", "forecast", "report",
                                        "summary"]
    assert ok("--json", "go").json["executed"] == []  # warm: everything is a cache hit
    (venv.cwd / "horizon.json").write_text("9\n")
    ok("set", "inputs/horizon", venv.cwd / "horizon.json")
    assert ok("--json", "impact", "inputs/horizon").json == ["forecast", "report", "summary"]
    incremental = ok("--json", "go").json
    assert sorted(incremental["executed"]) == ["forecast", "report", "summary"]
    assert "Next 9 months" in ok("get", "outputs/report/markdown").out
    rows = ok("--json", "query", 'ancestors("report", U)').json["rows"]
    assert sorted(r[0] for r in rows) == ["clean", "features", "fit", "forecast"]
    assert ok("--json", "deps", "report").json == ["forecast"]
    why = ok("--json", "why", "outputs/report/markdown").json
    assert why["dataflow"] == "report" and json.dumps(why).count("inputs/horizon") >= 1
