"""Inline tasks driven across beats: yield, await (with timeout and deadlock), promotion of a
hybrid episode, and lease-checked handles whose refusals are recorded once."""
import textwrap

import pytest

STEPS = '''
from e3logic import sdk

def slow(x):
    yield sdk.yield_("step 1")
    yield sdk.yield_("step 2")
    return x + 1

def after(x):
    outcome = yield sdk.await_("slow", timeout_beats=200)
    return {"x": x, "slow": outcome}

def ping(x):
    yield sdk.await_("pong", timeout_beats=200)
    return 1

def pong(x):
    yield sdk.await_("ping", timeout_beats=200)
    return 2

def writer(x):
    try:
        sdk.lease("db/sales", "write")
    except sdk.LeaseRefused:
        pass
    try:
        sdk.lease("db/sales", "write")   # refused again: recorded once
    except sdk.LeaseRefused:
        pass
    yield sdk.promote()
    sdk.lease("db/sales", "write")
    return "wrote"

def nolease(x):
    sdk.lease("elsewhere", "read")
    return 0
'''

PKG = '''
from e3logic import sdk
package = sdk.package("fx", "0.1.0")
package.module("steps.py")
for t in ("slow", "after", "ping", "pong", "writer", "nolease"):
    package.task(t, "steps:" + t, runtime="inline")
package.dataset("inputs/x", value=1)
package.dataflow("slow", task="slow", inputs=["inputs/x"], output="o")
package.dataflow("after", task="after", inputs=["inputs/x"], output="o")
package.dataflow("ping", task="ping", inputs=["inputs/x"], output="o")
package.dataflow("pong", task="pong", inputs=["inputs/x"], output="o")
package.dataflow("writer", task="writer", inputs=["inputs/x"], output="o",
                 leases=[("db/sales", "write")], profile="hybrid")
package.dataflow("nolease", task="nolease", inputs=["inputs/x"], output="o")
'''


@pytest.fixture
def fx(e3, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "steps.py").write_text(textwrap.dedent(STEPS))
    (src / "e3pkg.py").write_text(textwrap.dedent(PKG))
    proj = tmp_path / "proj"
    assert e3("init", proj).code == 0
    for args in (("build", src, "-o", tmp_path / "dist"), ("add", tmp_path / "dist" / "fx-0.1.0.zip"),
                 ("checkout", "fx")):
        r = e3(*args, cwd=proj)
        assert r.code == 0, r
    return lambda *a, **kw: e3(*a, cwd=proj, **kw)


def histories(run):
    r = run("--json", "episodes")
    return {e["dataflow"]: e["history"] for e in r.json}


@pytest.mark.parametrize("executor", ["inline", "threads"])
def test_yield_await_deadlock_promotion_and_lease_refusals(fx, executor):
    r = fx("--json", "go", "-j", "2", "--executor", executor)
    res = r.json
    # one side of the ping/pong await cycle is cancelled as a deadlock; the other resumes
    assert len(res["cancelled"]) == 1 and res["cancelled"][0] in ("ping", "pong"), res
    survivor = ({"ping", "pong"} - set(res["cancelled"])).pop()
    assert sorted(res["executed"]) == sorted(["after", "slow", "writer", survivor]), res
    assert res["failed"] == ["nolease"]
    h = histories(fx)
    states = [x["state"] for x in h["slow"]]
    assert states == ["plan", "run", "yield", "run", "yield", "run", "ok"]
    assert [x["state"] for x in h["after"]][:3] == ["plan", "run", "await"]
    assert h["after"][2]["note"] == "slow" and h["after"][-1]["state"] == "ok"
    # an await cycle: one side is cancelled at once as a deadlock, the other resumes
    ends = {d: h[d][-1] for d in ("ping", "pong")}
    assert any(e["state"] == "cxl" and "deadlock" in e["note"] for e in ends.values()), ends
    notes = [x["note"] for x in h["writer"]]
    assert sum("refused" in n for n in notes) == 1          # recorded once
    assert "promoted to rw" in notes and h["writer"][-1]["state"] == "ok"
    assert "no read lease covers it" in h["nolease"][-1]["note"]
    out = fx("get", "outputs/after/o")
    assert out.out == '{"slow":"executed","x":1}'
