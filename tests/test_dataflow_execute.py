"""`dataflow.execute.execute`: a decided run goes to the backend named by `--executor`, its
outcomes reach the reporter once durable, its outputs the working copy."""
import pytest

from tests.flows import api_project, in_process_go, write_flows


class Reporter:
    """A go reporter recording what it is told (the CLI's prints lines)."""

    def __init__(self):
        self.n, self.calls = None, []

    def start(self, n):
        self.n = n

    def explain(self, reasons):
        pass

    def started(self, name):
        pass

    def outcome(self, name, outcome, seconds, note=""):  # pragma: no cover - flushes report in bulk
        self.calls.append([(name, outcome)])

    def many(self, rows):
        self.calls.append([(name, outcome) for name, outcome, _, _ in rows])

    def outcomes(self, names, outcome, seconds=0.0):
        self.calls.append([(n, outcome) for n in names])


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    return write_flows(tmp_path_factory.mktemp("src"))


@pytest.fixture(scope="module")
def cold(tmp_path_factory, src):
    """The flows package run cold once per backend: {backend: (api, go result, reporter)}."""
    out = {}
    for name in ("inline", "threads", "processes"):
        api = api_project(tmp_path_factory.mktemp(name) / "p", src, "flows")
        rep = Reporter()
        res = in_process_go(api, executor=name, reporter=rep)
        out[name] = (api, res, rep)
    return out


def test_every_backend_gives_the_same_root_receipt_and_commit(cold):
    seen = {(res["state_root"], res["commit"], str(res["receipt"])) for _, res, _ in cold.values()}
    assert len(seen) == 1, seen
    root, commit, receipt = seen.pop()
    assert root and commit and receipt


@pytest.mark.parametrize("name", ["inline", "threads", "processes"])
def test_the_reporter_hears_every_dataflow_once_in_flush_sized_calls(cold, name):
    api, res, rep = cold[name]
    heard = [row for call in rep.calls for row in call]
    assert rep.n == len(heard) and all(rep.calls)
    assert len({n for n, _ in heard}) == len(heard)  # once each
    assert {n for n, o in heard if o == "executed"} == set(res["executed"])


def test_outputs_are_published_into_the_working_copy(cold):
    api, res, _ = cold["threads"]
    for name in res["executed"]:
        out = next(p for p in (api.r.root / "outputs" / name).iterdir())
        assert out.read_bytes() == api.get(f"outputs/{name}/{out.name}")[1]
