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


# -- the name rule ---------------------------------------------------------------------------
@pytest.mark.parametrize("ok", ["inputs/with space", "inputs/müller/straße", "inputs/日本語",
                                "inputs/a.b-c_d", "inputs/x" + "y" * 254])
def test_printable_unicode_names_with_inner_spaces_are_accepted(ok):
    assert paths.check_path(ok) == ok
    assert paths.path_problem(ok) is None


@pytest.mark.parametrize("bad,why", [
    ("inputs/../x", "no '..' segments"),
    ("inputs/./x", "no '.' segments"),
    ("inputs//x", "no empty segments"),
    ("/inputs/x", "no absolute paths"),
    ("inputs/a\\b", "no backslashes"),
    ("inputs/a\x00b", "no control or non-printable characters (U+0000)"),
    ("inputs/a\nb", "(U+000A)"),
    ("inputs/a\u200bb", "(U+200B)"),
    ("inputs/a\udcffb", "not valid UTF-8"),
    ("inputs/.hidden", "no segment starting with '.'"),
    ("inputs/-x", "no segment starting with '-'"),
    ("inputs/x~", "no segment ending with '~'"),
    ("inputs/ x", "no leading or trailing spaces"),
    ("inputs/" + "x" * 256, "a segment is 256 bytes, at most 255 are allowed"),
    ("inputs/" + "ü" * 128, "a segment is 256 bytes"),
    ("/".join(["inputs"] + ["d" * 200] * 6), "the path is 1212 bytes, at most 1024"),
])
def test_path_problem_names_the_rule_a_path_breaks(bad, why):
    assert why in paths.path_problem(bad)


def test_a_path_longer_than_1024_bytes_is_refused():
    p = "/".join(["inputs"] + ["d" * 200] * 6)
    assert len(p.encode()) > paths.MAX_PATH_BYTES
    assert paths.path_problem(p) == f"the path is {len(p)} bytes, at most 1024 are allowed"


def test_check_path_errors_show_control_characters_escaped_on_one_line():
    with pytest.raises(UsageError) as e:
        paths.check_path("inputs/a\nb")
    assert "'inputs/a\\nb'" in str(e.value) and "\n" not in str(e.value)


def test_a_tree_entry_holding_slashes_is_named_for_its_worst_part():
    assert paths.entry_problem("../../victim.txt") == "no '..' segments"
    assert paths.entry_problem("a/b") == "no '/' inside one name"
    assert paths.entry_problem("victim.txt") is None


@pytest.mark.parametrize("bad", ["", "a b", "../x", ".x", "-x", "x/y", "ü", "x\n", 3,
                                 "x" * 256])
def test_identifiers_are_ascii_letters_digits_and_punctuation(bad):
    assert paths.ident_problem(bad)
    with pytest.raises(UsageError, match="invalid task name"):
        paths.check_ident(bad, "task")


def test_show_escapes_undecodable_bytes_and_shortens_long_names():
    assert paths.show("a\udcffb") == "'a\\xffb'"
    assert paths.show("a\ud800") == "'a\\ud800'"
    long = paths.show("x" * 300)
    assert len(long) <= 82 and "…" in long
