"""What the last settled run proves: the warm answer, the incremental lookup, the settle check."""
from __future__ import annotations

import shutil

import pytest

from e3logic.api import Repo
from e3logic.dataflow.go import Go
from e3logic.dataflow.settled import Settled
from tests.flows import Proj, copy_project


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    p = copy_project(tmp_path_factory, "flows", tmp_path_factory.mktemp("ran") / "p")
    p.go()
    return p


@pytest.fixture
def proj(ran, tmp_path):
    shutil.copytree(ran.path, tmp_path / "p", symlinks=True)
    return Proj(tmp_path / "p")


def settled_of(p: Proj, targets=(), pattern=None) -> tuple[Settled, str]:
    api = Repo.open(str(p.path))
    ws = api.ws()
    root = api.intake(ws)
    project, selected = Go(api, targets, pattern).prepare(ws)
    return Settled(api.r, ws, project, selected, targets, pattern), root


def test_an_unchanged_root_is_answered_warm_with_the_settled_receipt(proj):
    st, root = settled_of(proj)
    rows = st.warm_receipt(root)
    assert [r[0] for r in rows] == sorted(r[0] for r in rows) and len(rows) == 12
    assert st.sizes is None  # the caller decides whether the warm answer is taken


def test_another_selection_has_no_settled_run_to_lean_on(proj):
    st, root = settled_of(proj, ("upper",))
    assert st.rows() is None and st.warm_receipt(root) is None and st.incremental(root) is None


def test_after_an_edit_only_the_readers_and_their_dependents_are_looked_up(proj):
    proj.set_json("inputs/k", 3)
    st, root = settled_of(proj)
    assert st.warm_receipt(root) is None
    pred = st.incremental(root)
    assert pred.observed == 5 and sorted(pred.run) == ["combine", "final", "report", "scaled",
                                                       "side"]
    assert st.base is not None and "total" in st.base[1]


def test_a_missing_output_object_spoils_the_warm_answer(proj):
    st, root = settled_of(proj)
    name, _, h, _ = st.warm_receipt(root)[0]
    proj.object_path(h).unlink()
    st2, root2 = settled_of(proj)
    assert st2.warm_receipt(root2) is None
