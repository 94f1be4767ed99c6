"""The heartbeat executor, driven by an in-process fake runner on the `Local` and
`Cooperative` backends; assertions read the executor's state and event log."""
import anyio
import pytest

from e3logic.api import Repo
from e3logic.exec.backends import Cooperative, Local
from e3logic.exec.executor import Executor, Finished, Job, Outcomes
from e3logic.repo.trees import blob_entry


def make_repo(tmp_path, inputs: dict[str, bytes]):
    api = Repo.init(tmp_path / "p")
    r = api.r
    changes = {p: blob_entry(r.objects.write(b), len(b)) for p, b in inputs.items()}
    api.workspaces.update_root("main", lambda old: r.trees.set_many(old, changes))
    return api


def job(name, inputs, deps=(), leases=()):
    return Job(name=name, task_hash="t-" + name, runtime="python", entry="m:f", argv=None,
               inputs=tuple(inputs), output_path=f"outputs/{name}/out", deps=frozenset(deps),
               leases=tuple(leases))


class FakeRunner:
    """Output = the concatenated input bytes plus the job name; `fail` names jobs that fail."""

    def __init__(self, repo, fail=(), hold=None):
        self.repo, self.fail, self.ran = repo, set(fail), []
        self.hold = hold

    async def __call__(self, task):
        return await self.run(task.job, task.key, task.inputs, task.out_file, task.episode)

    async def run(self, j, key, ins, out_file, ep):
        self.ran.append(j.name)
        if self.hold and j.name in self.hold:
            await anyio.sleep(30)
        if j.name in self.fail:
            return Finished(j, key, "fail", tuple((p, h) for p, h, _ in ins), reason="exit 1",
                            exit_code=1)
        data = b"".join(self.repo.objects.read(h) for _, h, _ in ins) + j.name.encode()
        with open(out_file, "wb") as f:
            f.write(data)
        return Finished(j, key, "ok", tuple((p, h) for p, h, _ in ins), output_file=out_file,
                        output_format="raw")


def chain_jobs():
    return [job("a", ["inputs/x"]), job("b", ["outputs/a/out"], ["a"]),
            job("c", ["outputs/b/out"], ["b"])]


def run(api, jobs, runner, run_id="r1", cooperative=False, **kw):
    backend = Cooperative(runner) if cooperative else Local(runner)
    ex = Executor(api.r, "main", jobs, [j.name for j in jobs], run_id=run_id, backend=backend,
                  **kw)
    return anyio.run(ex.run)


@pytest.mark.parametrize("cooperative", [True, False])
def test_a_chain_runs_in_dependency_order_and_commits_each_output(tmp_path, cooperative):
    api = make_repo(tmp_path, {"inputs/x": b"x"})
    fr = FakeRunner(api.r)
    st = run(api, chain_jobs(), fr, cooperative=cooperative, cap=4)
    assert fr.ran == ["a", "b", "c"]
    assert st.outcome == {"a": "executed", "b": "executed", "c": "executed"}
    _, data = api.get("outputs/c/out")
    assert data == b"xabc"


def test_a_second_run_on_the_same_inputs_is_all_cache_hits(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x"})
    run(api, chain_jobs(), FakeRunner(api.r), cooperative=True)
    fr = FakeRunner(api.r)
    st = run(api, chain_jobs(), fr, run_id="r2", cooperative=True)
    assert fr.ran == []
    assert set(st.outcome.values()) == {"cached"}


def test_a_failure_skips_its_dependents_and_independent_branches_finish(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x", "inputs/y": b"y"})
    jobs = chain_jobs() + [job("z", ["inputs/y"])]
    st = run(api, jobs, FakeRunner(api.r, fail={"a"}), cooperative=True)
    assert st.outcome == {"a": "failed", "b": "skipped", "c": "skipped", "z": "executed"}


def test_failures_are_never_memoized(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x"})
    run(api, chain_jobs()[:1], FakeRunner(api.r, fail={"a"}), cooperative=True)
    fr = FakeRunner(api.r)
    st = run(api, chain_jobs()[:1], fr, run_id="r2", cooperative=True)
    assert fr.ran == ["a"] and st.outcome["a"] == "executed"
    rows = api.r.index.query("SELECT status FROM executions ORDER BY id")
    assert [r["status"] for r in rows] == ["fail", "ok"]


def test_fail_fast_skips_everything_not_started(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x", "inputs/y": b"y"})
    jobs = [job("a", ["inputs/x"]), job("z", ["inputs/y"], ["a"]), job("w", ["inputs/y"], ["a"])]
    st = run(api, jobs, FakeRunner(api.r, fail={"a"}), cooperative=True, fail_fast=True)
    assert st.outcome["a"] == "failed"
    assert st.outcome["z"] == "skipped" and st.outcome["w"] == "skipped"


def test_a_missing_input_fails_only_that_dataflow_with_the_reason(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x"})
    jobs = [job("a", ["inputs/nope"]), job("b", ["inputs/x"])]
    st = run(api, jobs, FakeRunner(api.r), cooperative=True)
    assert st.outcome == {"a": "failed", "b": "executed"}
    ep = next(e for e in st.episodes if e.dataflow == "a")
    assert "inputs/nope" in ep.history[-1][3]


def test_conflicting_write_leases_never_run_in_the_same_beat(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x"})
    jobs = [job("a", ["inputs/x"], leases=[("db", "write")]),
            job("b", ["inputs/x"], leases=[("db/sales", "write")]),
            job("c", ["inputs/x"], leases=[("db/sales", "read")])]
    st = run(api, jobs, FakeRunner(api.r), cap=3)
    starts = {}
    for beat, ev, name in st.log:
        if ev == "start":
            starts[name] = beat
    assert len(set(starts.values())) == 3  # each waited for the other's lease


def test_episode_histories_go_plan_run_ok_and_are_written_to_index_db(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x"})
    run(api, chain_jobs(), FakeRunner(api.r), cooperative=True)
    rows = api.r.index.query("SELECT episode, state FROM history ORDER BY episode, seq")
    assert [(r["episode"], r["state"]) for r in rows] == [
        ("r1:a", "plan"), ("r1:a", "run"), ("r1:a", "ok"),
        ("r1:b", "plan"), ("r1:b", "run"), ("r1:b", "ok"),
        ("r1:c", "plan"), ("r1:c", "run"), ("r1:c", "ok")]


def test_every_history_row_is_written_however_many_flushes_the_run_takes(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x"})
    jobs = [job("a", ["inputs/x"])] + [job(n, [f"outputs/{p}/out"], [p])
                                        for p, n in zip("abcdefg", "bcdefgh")]
    ticks = iter(range(10**6))  # a clock past the flush interval at every look
    st = run(api, jobs, FakeRunner(api.r), cap=1, timer=lambda: float(next(ticks)))
    assert st.flushes > 2
    rows = api.r.index.query("SELECT episode, state FROM history ORDER BY episode, seq")
    assert [(r["episode"], r["state"]) for r in rows] == [
        (f"r1:{n}", s) for n in "abcdefgh" for s in ("plan", "run", "ok")]


def test_a_note_on_an_episode_already_finished_and_written_is_written_too(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x"})
    fr = FakeRunner(api.r)
    ex = None

    async def runner(task):
        j = task.job
        if j.name == "b":
            first = next(e for e in ex.state.episodes if e.dataflow == "a")
            for _ in range(500):  # until a's rows have gone to a flush
                if first.final and first.unflushed == len(first.history):
                    break
                await anyio.sleep(0.01)
            ex.note(first, "a late note")
        return await fr(task)

    jobs = chain_jobs()[:2]
    ex = Executor(api.r, "main", jobs, ["a", "b"], run_id="r1", backend=Local(runner), cap=1,
                  flush_every=0.0)
    anyio.run(ex.run)
    rows = api.r.index.query("SELECT state, note FROM history WHERE episode='r1:a' ORDER BY seq")
    assert [(r["state"], r["note"]) for r in rows][-1] == ("ok", "a late note")


def test_a_cancel_request_stops_the_run_and_running_episodes_end_in_cxl(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x", "inputs/y": b"y"})
    jobs = [job("slow", ["inputs/x"]), job("after", ["outputs/slow/out"], ["slow"])]
    calls = []

    def should_cancel():
        calls.append(1)
        return "stop" if len(calls) > 2 else None

    st = run(api, jobs, FakeRunner(api.r, hold={"slow"}), cap=2, should_cancel=should_cancel,
             tick=0.01)
    assert st.outcome == {"slow": "cancelled", "after": "skipped"}
    ep = next(e for e in st.episodes if e.dataflow == "slow")
    assert ep.history[-1][1] == "cxl" and ep.history[-1][3] == "stop"


def test_results_commit_in_canonical_order_whatever_the_finish_order(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x"})
    jobs = [job(n, ["inputs/x"]) for n in ("c", "a", "b")]
    st1 = run(api, jobs, FakeRunner(api.r), cap=3)
    api2 = make_repo(tmp_path / "two", {"inputs/x": b"x"})
    st2 = run(api2, list(reversed(jobs)), FakeRunner(api2.r), cooperative=True)
    assert st1.root == st2.root


def test_two_dataflows_with_the_same_task_and_inputs_execute_once(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x"})
    twin = dict(runtime="python", entry="m:f", argv=None, inputs=("inputs/x",), deps=frozenset())
    jobs = [Job(name=n, task_hash="same", output_path=f"outputs/{n}/out", **twin)
            for n in ("left", "right")]
    fr = FakeRunner(api.r)
    st = run(api, jobs, fr, cap=2)
    assert len(fr.ran) == 1
    assert sorted(st.outcome.values()) == ["cached", "executed"]
    assert api.get("outputs/left/out")[1] == api.get("outputs/right/out")[1]


def test_resource_capacities_bound_what_runs_at_once(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x"})
    jobs = [Job(name=n, task_hash="t-" + n, runtime="python", entry="m:f", argv=None,
                inputs=("inputs/x",), output_path=f"outputs/{n}/out", deps=frozenset(),
                resources=(("gpu", 1),)) for n in ("a", "b", "c")]
    st = run(api, jobs, FakeRunner(api.r), cap=3, capacities={"gpu": 1})
    starts = [beat for beat, ev, _ in st.log if ev == "start"]
    assert len(set(starts)) == 3  # one gpu: one at a time
    assert set(st.outcome.values()) == {"executed"}


# -- group commit -------------------------------------------------------------------------------
def test_a_chain_runs_on_unflushed_results_and_flushes_them_together(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x"})
    jobs = [job("a", ["inputs/x"])] + [job(n, [f"outputs/{p}/out"], [p])
                                        for p, n in zip("abcde", "bcdef")]
    fr = FakeRunner(api.r)
    # a clock that never advances: flushes happen only when the executor would idle
    st = run(api, jobs, fr, cap=1, timer=lambda: 0.0)
    assert fr.ran == list("abcdef")     # each read its input before any flush (staged objects)
    assert st.flushes < len(jobs)
    assert api.get("outputs/f/out")[1] == b"xabcdef"
    assert api.r.objects.pending == {}


def test_an_outcome_is_reported_only_once_its_output_is_durable_in_the_root(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x"})
    seen = []

    def on_outcome(name, outcome, seconds, note):
        root = api.workspaces.root("main")  # read back from disk, as another process would
        e = api.r.trees.find(root, f"outputs/{name}/out")
        memo = api.r.index.query("SELECT count(*) AS n FROM memo WHERE dataflow=?", (name,))
        seen.append((name, outcome, e is not None, memo[0]["n"]))

    run(api, chain_jobs(), FakeRunner(api.r), cap=2, on_outcome=Outcomes(on_outcome),
        timer=lambda: 0.0)
    assert seen == [("a", "executed", True, 1), ("b", "executed", True, 1),
                    ("c", "executed", True, 1)]


def test_a_sink_with_many_gets_each_flushs_reports_in_one_call(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x"})
    calls = []

    class Sink:
        def started(self, name):
            pass

        def outcome(self, name, outcome, seconds, note=""):  # pragma: no cover - `many` takes them all
            raise AssertionError(f"{name} reported alone")

        def many(self, rows):
            calls.append([name for name, _, _, _ in rows])

    run(api, chain_jobs(), FakeRunner(api.r), cap=2, on_outcome=Sink(), timer=lambda: 0.0)
    assert [n for c in calls for n in c] == ["a", "b", "c"] and all(calls)


def test_a_flush_is_due_when_idle_or_past_its_interval_and_a_slow_one_stretches_it(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x"})
    now = [100.0]
    ex = Executor(api.r, "main", chain_jobs(), ["a", "b", "c"], run_id="r1",
                  backend=Local(FakeRunner(api.r)), flush_every=0.5, timer=lambda: now[0])
    assert not ex._flush_due()                      # nothing committed yet
    ex.state.view["outputs/a/out"] = blob_entry(api.r.objects.write(b"xa"), 2)
    assert ex.state.ready and not ex._flush_due()        # work is ready: wait for the interval
    now[0] += 0.5
    assert ex._flush_due()
    ex.state.flushing = True
    assert not ex._flush_due()                      # one flush at a time
    ex.state.flushing = False
    now[0] -= 0.4
    ex.state.ready.clear()
    assert ex._flush_due()                          # nothing else to do: flushing delays nothing
    snap = ex._flush_begin()
    now[0] += 2.0                                   # a slow flush...
    ex._flush_end(snap, ex._flush_durable(snap))
    assert ex.state.flush_interval == 2.0                # ...waits its own duration before the next


def test_how_results_are_grouped_into_flushes_never_reaches_the_root(tmp_path):
    jobs = [job(f"n{i:02d}", ["inputs/x"]) for i in range(12)]
    roots = []
    for i, (timer, every) in enumerate([(lambda: 0.0, 0.1), (None, 0.0)]):
        api = make_repo(tmp_path / str(i), {"inputs/x": b"x"})
        kw = {"timer": timer} if timer else {}
        roots.append(run(api, jobs, FakeRunner(api.r), cap=2, flush_every=every, **kw).root)
    assert roots[0] == roots[1]


def test_staged_outputs_are_gone_after_the_run(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x"})
    run(api, chain_jobs(), FakeRunner(api.r), cap=2)
    staging = api.r.dir / "staging"
    assert not staging.exists() or list(staging.iterdir()) == []


def test_an_input_changed_by_another_process_during_the_run_is_not_read_by_it(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x", "inputs/y": b"y"})
    r = api.r
    snapshot = api.workspaces.root("main")

    class Meddler(FakeRunner):
        async def run(self, j, key, ins, out_file, ep):
            if j.name == "b":  # `e3 set inputs/x` from elsewhere, after a read it
                h = r.objects.write(b"new x")
                api.workspaces.update_root("main", lambda old: r.trees.set_many(
                    old, {"inputs/x": blob_entry(h, 5)}))
            return await super().run(j, key, ins, out_file, ep)

    jobs = [job("a", ["inputs/x"]), job("b", ["inputs/y"], ["a"]),
            job("c", ["inputs/x", "outputs/b/out"], ["b"])]
    fr = Meddler(r)
    st = run(api, jobs, fr, cap=1, timer=lambda: 0.0, snapshot=snapshot)
    assert fr.ran == ["a", "b", "c"] and [ev for _, ev, _ in st.log if ev == "requeue"] == []
    # c read inputs/x from the run's snapshot, as a did: one run, one version of each input
    assert r.trees.get(st.root, "inputs/x")["hash"] == r.trees.get(snapshot, "inputs/x")["hash"]
    assert api.get("outputs/c/out")[1] == b"xybc"
    # the workspace keeps the newer input beside the run's outputs; what read it is stale
    assert api.get("inputs/x")[1] == b"new x"
    assert st.stale == ["a", "b", "c"]  # b follows a (its declared dependency)


def test_a_run_nobody_else_touched_reports_nothing_stale(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x"})
    st = run(api, chain_jobs(), FakeRunner(api.r), cap=1)
    assert st.stale == [] and st.root == api.workspaces.root("main")


def test_a_task_process_group_is_recorded_with_the_next_flush(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x"})
    seen = []

    class Grouped(FakeRunner):
        async def run(self, j, key, ins, out_file, ep):
            ex.record_group(("r1", ep.episode, 4242, 99))
            await anyio.sleep(0.3)  # meanwhile nothing else is ready: the flush goes ahead
            seen.append(api.r.index.query("SELECT run, episode, pgid, start FROM procs"))
            return await super().run(j, key, ins, out_file, ep)

    ex = Executor(api.r, "main", [job("a", ["inputs/x"])], ["a"], run_id="r1",
                  backend=Local(Grouped(api.r)), cap=1)
    anyio.run(ex.run)
    assert seen == [[{"run": "r1", "episode": "r1:a", "pgid": 4242, "start": 99}]]


def test_flushes_never_overlap_even_when_hits_commit_back_to_back(tmp_path):
    # a re-executed job whose output is unchanged makes its dependents memo hits, committed
    # beat after beat without a checkpoint: each beat once scheduled a flush of its own, and
    # a late one's end moved the run's root back to before the last flush
    import threading
    import time as _time

    class Constant(FakeRunner):  # output = the job's name: an early cutoff after `a`
        async def run(self, j, key, ins, out_file, ep):
            self.ran.append(j.name)
            await anyio.sleep(0)
            with open(out_file, "wb") as f:
                f.write(j.name.encode())
            return Finished(j, key, "ok", tuple((p, h) for p, h, _ in ins),
                            output_file=out_file, output_format="raw")

    class Spied(Executor):
        lock, inside, most = threading.Lock(), 0, 0

        def _flush_durable(self, snap):
            with Spied.lock:
                Spied.inside += 1
                Spied.most = max(Spied.most, Spied.inside)
            try:
                _time.sleep(0.05)
                return super()._flush_durable(snap)
            finally:
                with Spied.lock:
                    Spied.inside -= 1

    api = make_repo(tmp_path, {"inputs/x": b"x"})
    jobs = [job("a", ["inputs/x"]), job("b", ["outputs/a/out"], ["a"]),
            job("c", ["outputs/b/out"], ["b"]), job("d", ["outputs/c/out", "inputs/x"], ["c"])]
    clock = iter(range(10 ** 6))
    kw = dict(run_id="r1", backend=Cooperative(Constant(api.r)), cap=1, flush_every=0.0,
              timer=lambda: float(next(clock)))
    anyio.run(Spied(api.r, "main", jobs, [j.name for j in jobs], **kw).run)
    r = api.r
    h = r.objects.write(b"y")
    api.workspaces.update_root("main", lambda old: r.trees.set_many(
        old, {"inputs/x": blob_entry(h, 1)}))
    fr = Constant(api.r)
    ex = Spied(api.r, "main", jobs, [j.name for j in jobs], **{**kw, "run_id": "r2",
                                                                  "backend": Cooperative(fr)})
    st = anyio.run(ex.run)
    assert fr.ran == ["a", "d"] and st.outcome["b"] == st.outcome["c"] == "cached"
    assert Spied.most == 1
    assert st.root == api.workspaces.root("main")
    assert r.trees.find(st.root, "outputs/d/out")["hash"] == st.results["d"][1]


def _notes(api, jobs, runner, **kw):
    """name -> (outcome, note) as the run's `OutcomeSink` heard them."""
    heard = {}
    run(api, jobs, runner, on_outcome=Outcomes(
        lambda name, outcome, seconds, note: heard.__setitem__(name, (outcome, note))), **kw)
    return heard


def test_every_outcome_is_reported_with_why_it_failed_or_was_skipped(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x", "inputs/y": b"y"})
    jobs = chain_jobs() + [job("z", ["inputs/y"]), job("m", ["inputs/nope"])]
    heard = _notes(api, jobs, FakeRunner(api.r, fail={"a"}), cooperative=True)
    assert heard == {"a": ("failed", "exit 1"), "b": ("skipped", "a failed upstream"),
                     "c": ("skipped", "a failed upstream"), "z": ("executed", ""),
                     "m": ("failed", "input inputs/nope is missing")}


def test_a_skipped_dataflow_blames_the_failed_one_nearest_upstream_ties_by_name(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x"})
    #   a ── b ──┐
    #   q ───────┴─ d ── e        (a and q fail: d is one step from q, two from a)
    #   p ─────────────┘          (p fails too: e is one step from p)
    jobs = [job("a", ["inputs/x"]), job("b", ["outputs/a/out"], ["a"]),
            job("q", ["inputs/x"]), job("p", ["inputs/x"]),
            job("d", ["outputs/b/out", "outputs/q/out"], ["b", "q"]),
            job("e", ["outputs/d/out", "outputs/p/out"], ["d", "p"])]
    # (all three fail in one beat: a dependent is skipped, and blamed, at the next capture)
    heard = _notes(api, jobs, FakeRunner(api.r, fail={"a", "q", "p"}), cooperative=True, cap=4)
    assert {n: note for n, (o, note) in heard.items() if o == "skipped"} == {
        "b": "a failed upstream", "d": "q failed upstream", "e": "p failed upstream"}


def test_fail_fast_says_the_failure_upstream_or_else_why_the_run_stopped(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x", "inputs/y": b"y"})
    jobs = [job("a", ["inputs/x"]), job("z", ["inputs/y"], ["a"]), job("w", ["inputs/y"])]
    heard = _notes(api, jobs, FakeRunner(api.r, fail={"a"}), cooperative=True, cap=1,
                   fail_fast=True)
    assert heard == {"a": ("failed", "exit 1"), "z": ("skipped", "a failed upstream"),
                     "w": ("skipped", "fail-fast: a failed")}


def test_a_long_chain_of_skips_is_blamed_in_one_pass(tmp_path):
    api = make_repo(tmp_path, {"inputs/x": b"x"})
    jobs = [job("n0000", ["inputs/x"])] + [
        job(f"n{i:04d}", [f"outputs/n{i - 1:04d}/out"], [f"n{i - 1:04d}"]) for i in range(1, 3000)]
    heard = _notes(api, jobs, FakeRunner(api.r, fail={"n0000"}), cooperative=True)
    assert heard["n2999"] == ("skipped", "n0000 failed upstream")
    assert sum(o == "skipped" for o, _ in heard.values()) == 2999
