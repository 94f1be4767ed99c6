"""The constraint relations: the lease index, each ground relation, the batch search."""
from __future__ import annotations

from hypothesis import given, strategies as st
from kanren import eq, run, var

from e3logic.core.paths import lease_conflict
from e3logic.plan.model import Node, PlanInput
from e3logic.plan.relations import (WINDOW, BatchState, Candidates, Ctx, LeaseIndex, batcho,
                                    dependso, fitso, holds, leases_freeo, prefixes,
                                    resources_freeo, search_window, skip_limit, slot_freeo)

from tests.test_plan_scheduler import PATHS

leases = st.tuples(st.sampled_from(PATHS + ("db/sales/eu/q1", "dbx")),
                   st.sampled_from(("read", "write")))


def info(lease):
    return (lease[0], lease[1], prefixes(lease[0]))


def test_prefixes_lists_a_path_and_its_ancestors():
    assert prefixes("db/sales/eu") == ("db", "db/sales", "db/sales/eu")
    assert prefixes("db") == ("db",)


@given(st.lists(leases, max_size=6), leases)
def test_lease_index_agrees_with_pairwise_lease_conflict(held, lease):
    index = LeaseIndex()
    for x in held:
        index.add(info(x))
    assert index.conflicts(info(lease)) == any(lease_conflict(lease, x) for x in held)


@given(st.lists(leases, max_size=6), st.data())
def test_lease_index_forgets_removed_leases(held, data):
    index = LeaseIndex()
    for x in held:
        index.add(info(x))
    gone = data.draw(st.lists(st.sampled_from(held), unique=True)) if held else []
    for x in gone:
        index.remove(info(x))
    left = list(held)
    for x in gone:
        left.remove(x)
    for probe in [(p, m) for p in PATHS for m in ("read", "write")]:
        assert index.conflicts(info(probe)) == any(lease_conflict(probe, x) for x in left)
    for x in left:
        index.remove(info(x))
    assert not (index.reads or index.writes or index.reads_below or index.writes_below)


def test_dbx_is_not_under_db():
    index = LeaseIndex()
    index.add(info(("db", "write")))
    assert not index.conflicts(info(("dbx", "write")))


def context(cap=2):
    pi = PlanInput((Node("a"), Node("b", ("a",)), Node("w", leases=(("db", "write"),)),
                    Node("r", leases=(("db/x", "read"),)), Node("g", resources={"gpu": 1}),
                    Node("h", resources={"gpu": 1})), {"gpu": 1}, cap)
    return pi, Ctx(pi)


def test_dependso_holds_only_when_every_dependency_is_in_an_earlier_batch():
    _, ctx = context()
    ctx.placed = {"a": 0}
    assert holds(dependso("b", 1, ctx))
    assert not holds(dependso("b", 0, ctx))
    ctx.placed = {}
    assert not holds(dependso("b", 5, ctx))
    assert holds(dependso("a", 0, ctx))


def test_slot_freeo_holds_below_the_cap():
    _, ctx = context(cap=2)
    st0 = BatchState.empty(1)
    assert holds(slot_freeo(ctx.extend("a", st0), ctx))
    assert not holds(slot_freeo(ctx.extend("b", ctx.extend("a", st0)), ctx))


def test_leases_freeo_sees_window_members_and_the_index():
    _, ctx = context()
    st1 = ctx.extend("w", BatchState.empty(1))
    assert not holds(leases_freeo("r", st1, ctx))
    assert holds(leases_freeo("a", st1, ctx))
    ctx.index.add(info(("db", "write")))
    assert not holds(leases_freeo("r", BatchState.empty(1), ctx))


def test_resources_freeo_holds_within_capacity():
    _, ctx = context()
    st1 = ctx.extend("g", BatchState.empty(1))
    assert st1.used == (1,)
    assert holds(resources_freeo("g", BatchState.empty(1), ctx))
    assert not holds(resources_freeo("h", st1, ctx))


def test_relations_walk_logic_variables_bound_earlier_in_the_conjunction():
    _, ctx = context()
    ctx.placed = {"a": 0}
    x, k = var(), var()
    assert run(0, (x, k), eq(x, "b"), eq(k, 1), dependso(x, k, ctx)) == (("b", 1),)
    assert run(0, x, eq(x, "b"), eq(k, 0), dependso(x, k, ctx)) == ()
    assert run(0, True, fitso("a", BatchState.empty(1), ctx)) == (True,)


def candidates(ctx, names):
    return Candidates.from_list(names, ctx.is_free)


def test_candidates_merge_constrained_and_free_in_key_order():
    c = Candidates([(1, "w"), (4, "r")], [(2, "p"), (3, "q"), (5, "s")])
    assert [c.main_at(i) for i in range(6)] == ["w", "p", "q", "r", "s", None]
    assert [c.free_before(i) for i in range(6)] == [0, 0, 1, 2, 2, 3]
    assert [c.free_at(j) for j in range(4)] == ["p", "q", "s", None]
    assert sorted(c.popped) == [(1, "w", False), (2, "p", True), (3, "q", True),
                                (4, "r", False), (5, "s", True)]


def test_candidates_are_read_from_the_heaps_only_as_needed():
    c = Candidates([(1, "w"), (4, "r")], [(2, "p"), (3, "q")])
    assert c.main_at(0) == "w" and c.considered() == 2  # w, and p peeked at to merge
    assert c._c == [(4, "r")] and c._f == [(3, "q")]


def test_batcho_first_answer_is_the_greedy_batch_in_candidate_order():
    _, ctx = context(cap=3)
    ctx.placed = {}
    ctx.candidates = candidates(ctx, ["w", "r", "g", "h", "a"])
    state, i, j, reason = search_window(ctx, 0, None, BatchState.empty(1))
    assert state.window_members() == ["w", "g", "a"]
    assert (i, j, reason, state.skips) == (5, None, "full", 2)


def test_batcho_enumerates_other_valid_batches_after_the_first():
    _, ctx = context(cap=None)
    ctx.candidates = candidates(ctx, ["w", "r"])
    q = var()
    answers = run(0, q, batcho(q, 0, None, 0, BatchState.empty(1), ctx))
    assert [a[0].window_members() for a in answers] == [["w"], ["r"], []]


def test_the_search_stops_at_the_window_edge():
    pi = PlanInput(tuple(Node(f"t{i:03d}") for i in range(WINDOW + 3)), {}, None)
    ctx = Ctx(pi)
    ctx.candidates = candidates(ctx, pi.names)
    state, i, j, reason = search_window(ctx, 0, None, BatchState.empty(0))
    assert (state.n, i, j, reason) == (WINDOW, WINDOW, None, "window")
    state, i, j, reason = search_window(ctx, i, j, BatchState(state.n, state.used, None, 0))
    assert (state.n, i, j, reason) == (WINDOW + 3, WINDOW + 3, None, "exhausted")


def test_after_the_skip_limit_the_search_walks_free_candidates_only():
    nodes = [Node(f"w{i:03d}", leases=(("db", "write"),)) for i in range(40)]
    nodes += [Node("free1"), Node("free2")]
    pi = PlanInput(tuple(nodes), {}, 3)
    ctx = Ctx(pi)
    order = [f"w{i:03d}" for i in range(20)] + ["free1"] + [f"w{i:03d}" for i in range(20, 40)]
    ctx.candidates = candidates(ctx, order + ["free2"])
    state, i, j, reason = search_window(ctx, 0, None, BatchState.empty(0))
    assert state.window_members() == ["w000", "free1", "free2"]
    assert state.skips == skip_limit(3) and reason == "full"
    assert (i, j) == (1 + skip_limit(3), 2)


def test_skip_limit_grows_with_the_cap():
    assert skip_limit(1) == 16 and skip_limit(8) == 16 and skip_limit(12) == 24
    assert skip_limit(None) == 64
