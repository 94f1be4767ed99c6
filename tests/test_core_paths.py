"""core.paths: dataset paths and the lease conflict rule (DESIGN.md glossary)."""
import pytest

from e3logic.core import paths
from e3logic.core.errors import UsageError


def test_valid_paths_are_normalised_without_surrounding_slashes():
    assert paths.check_path("inputs/sales") == "inputs/sales"
    assert paths.check_path("/inputs/sales/ ") == "inputs/sales"
    assert paths.check_path("outputs/pre-process/v1.2_x") == "outputs/pre-process/v1.2_x"


@pytest.mark.parametrize("bad", ["", "/", "inputs//sales", "inputs/../x", "./a", "a/./b",
                                 "in\tputs/a", ".hidden", "a/-x", "a\\b"])
def test_invalid_paths_are_refused_with_one_line(bad):
    with pytest.raises(UsageError) as e:
        paths.check_path(bad)
    assert "\n" not in str(e.value)


def test_split_drops_empty_segments():
    assert paths.split("/a//b/") == ["a", "b"]


def test_prefix_is_on_segment_boundaries():
    assert paths.is_prefix("db", "db/sales")
    assert paths.is_prefix("db", "db")
    assert not paths.is_prefix("db", "dbx/sales")
    assert not paths.is_prefix("db/sales", "db")


def test_a_write_lease_conflicts_with_the_same_path_an_ancestor_or_a_descendant():
    w = "write"
    assert paths.lease_conflict(("db", w), ("db", "read"))
    assert paths.lease_conflict(("db", "read"), ("db/sales", w))
    assert paths.lease_conflict(("db/sales", w), ("db", w))
    assert not paths.lease_conflict(("db/sales", w), ("db/costs", w))
    assert not paths.lease_conflict(("db", w), ("dbx", w))


def test_reads_never_conflict_with_reads():
    assert not paths.lease_conflict(("db", "read"), ("db", "read"))
    assert not paths.lease_conflict(("db", "read"), ("db/sales", "read"))
