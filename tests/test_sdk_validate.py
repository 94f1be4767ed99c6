"""Whole-package validation at build time: each problem named in one line with its fix."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e3logic.core.errors import BuildError
from e3logic.sdk.builder import PackageBuilder
from e3logic.sdk.validate import find_cycle, graph, problems


@pytest.fixture
def pkg(tmp_path):
    (tmp_path / "steps.py").write_text("def f(*a):\n    return 1\n")
    p = PackageBuilder("demo", "0.1.0", base_dir=tmp_path)
    p.module("steps.py")
    p.task("f", "steps:f")
    p.dataset("inputs/sales", value=[1, 2])
    return p


def test_a_consistent_package_validates(pkg):
    pkg.dataflow("clean", task="f", inputs=["inputs/sales"], output="rows")
    pkg.dataflow("fit", task="f", inputs=["outputs/clean/rows"], output="model")
    pkg.validate()
    assert problems(pkg) == []


def test_a_cycle_is_named_with_its_dataflows_and_paths(pkg):
    pkg.dataflow("a", task="f", inputs=["outputs/c/out"], output="out")
    pkg.dataflow("b", task="f", inputs=["outputs/a/out"], output="out")
    pkg.dataflow("c", task="f", inputs=["outputs/b/out", "inputs/sales"], output="out")
    with pytest.raises(BuildError) as e:
        pkg.validate()
    msg = str(e.value)
    assert msg.startswith("dataflow cycle a -> b -> c -> a (")
    assert "'b' reads outputs/a/out" in msg and "'a' reads outputs/c/out" in msg
    assert msg.endswith("make one of these dataflows read a dataset outside the cycle")
    assert "\n" not in msg


def test_a_dataflow_reading_its_own_output_is_a_cycle(pkg):
    pkg.dataflow("loop", task="f", inputs=["outputs/loop/out"], output="out")
    assert find_cycle(pkg).startswith("dataflow cycle loop -> loop")


def _cycle_by_search_from_each(pkg) -> str | None:
    """The former find_cycle: a search from every dataflow in name order (quadratic)."""
    import networkx as nx

    g = graph(pkg)
    for start in sorted(g.nodes):
        try:
            edges = nx.find_cycle(g, source=start)
        except nx.NetworkXNoCycle:
            continue
        names = [u for u, _ in edges] + [edges[-1][1]]
        via = ", ".join(f"'{v}' reads {g.edges[u, v]['path']}" for u, v in edges)
        return (f"dataflow cycle {' -> '.join(names)} ({via}); make one of these dataflows read "
                f"a dataset outside the cycle")
    return None


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 9).flatmap(lambda n: st.lists(
    st.lists(st.integers(0, n - 1), max_size=3, unique=True), min_size=n, max_size=n)))
def test_the_cycle_named_is_the_one_a_search_from_each_dataflow_finds(reads):
    """One pass over the graph (issue 20: the search from each dataflow was quadratic at
    100,000) names the same cycle, on random graphs with and without cycles."""
    p = PackageBuilder("demo", "0.1.0", base_dir=".")
    p.task("f", "steps:f")
    p.dataset("inputs/x", value=1)
    for i, ups in enumerate(reads):
        p.dataflow(f"d{i}", task="f", inputs=["inputs/x"] + [f"outputs/d{u}/out" for u in ups])
    assert find_cycle(p) == _cycle_by_search_from_each(p)


def test_graph_edges_go_from_producer_to_consumer(pkg):
    pkg.dataflow("clean", task="f", inputs=["inputs/sales"], output="rows")
    pkg.dataflow("fit", task="f", inputs=["outputs/clean/rows"], output="model")
    g = graph(pkg)
    assert list(g.edges(data="path")) == [("clean", "fit", "outputs/clean/rows")]


def test_an_unknown_task_gets_a_did_you_mean(pkg):
    pkg.task("forecast", "steps:f")
    pkg.dataflow("d", task="forcast", inputs=["inputs/sales"], output="o")
    with pytest.raises(BuildError, match="dataflow 'd' uses unknown task 'forcast'; did you mean "
                                         "'forecast'\\? declare it"):
        pkg.validate()


def test_an_input_nobody_provides_gets_a_did_you_mean(pkg):
    pkg.dataflow("d", task="f", inputs=["inputs/sale"], output="o")
    with pytest.raises(BuildError, match="dataflow 'd' reads 'inputs/sale', which nothing provides; "
                                         "did you mean 'inputs/sales'\\?"):
        pkg.validate()


def test_two_producers_of_one_path_are_both_named(pkg):
    pkg.dataset("outputs/d/o", value=1)
    pkg.dataflow("d", task="f", inputs=["inputs/sales"], output="o")
    with pytest.raises(BuildError, match="two producers of 'outputs/d/o': dataset 'outputs/d/o' "
                                         "and dataflow 'd'; rename one"):
        pkg.validate()


def test_a_dataset_that_is_also_a_folder_is_refused(pkg):
    pkg.dataset("inputs/sales/extra", value=1)
    with pytest.raises(BuildError, match="'inputs/sales' \\(dataset 'inputs/sales'\\) is also a "
                                         "folder holding 'inputs/sales/extra'"):
        pkg.validate()


def test_sibling_paths_sharing_a_prefix_string_are_not_folders(pkg):
    pkg.dataset("inputs/sales-2", value=1)
    pkg.dataset("inputs/salesx", value=1)
    pkg.validate()


def test_an_entry_module_that_looks_like_a_typo_is_named(pkg):
    pkg.task("g", "stepz:f")
    with pytest.raises(BuildError, match="entry 'stepz:f' names module 'stepz', which is not "
                                         "bundled; did you mean 'steps'"):
        pkg.validate()


def test_an_entry_module_neither_bundled_nor_installed_is_named(tmp_path):
    p = PackageBuilder("demo", "0.1.0", base_dir=tmp_path)
    p.task("g", "no_such_module_here:f")
    with pytest.raises(BuildError, match="needs module 'no_such_module_here', which is neither "
                                         "bundled nor installed; add package.module"):
        p.validate()


def test_stdlib_entry_modules_are_allowed(tmp_path):
    p = PackageBuilder("demo", "0.1.0", base_dir=tmp_path)
    p.task("g", "json:dumps", runtime="inline")
    p.validate()


def test_several_problems_are_all_listed_one_a_line_in_order(pkg):
    pkg.dataflow("a", task="nope", inputs=["inputs/x"], output="o")
    pkg.dataflow("b", task="nope", inputs=["inputs/y"], output="o")
    with pytest.raises(BuildError) as e:
        pkg.validate()
    lines = str(e.value).splitlines()
    assert len(lines) == 4
    assert [x.split(";")[0] for x in lines] == [
        "dataflow 'a' uses unknown task 'nope'", "dataflow 'b' uses unknown task 'nope'",
        "dataflow 'a' reads 'inputs/x', which nothing provides",
        "dataflow 'b' reads 'inputs/y', which nothing provides"]
