"""core.semver: versions, ordering, bumps and constraints (exact, ^, ~, ranges, *)."""
import pytest

from e3logic.core.errors import UsageError
from e3logic.core.semver import Constraint, Version


def V(s):
    return Version.parse(s)


def test_parse_and_print_round_trip():
    for s in ("0.0.0", "1.2.3", "10.20.30", "1.0.0-alpha.1"):
        assert str(V(s)) == s
    assert str(V("1.2.3+build.5")) == "1.2.3"


@pytest.mark.parametrize("bad", ["1", "1.2", "01.2.3", "1.2.3.4", "a.b.c", "", "1.2.-3"])
def test_malformed_versions_are_usage_errors(bad):
    with pytest.raises(UsageError):
        V(bad)


def test_ordering_is_numeric_and_pre_releases_sort_before_their_release():
    order = ["0.9.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
             "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.2.0", "1.10.0", "2.0.0"]
    assert sorted(order, key=V) == order
    assert V("1.2.3") == V("1.2.3+meta")


def test_bump_resets_the_lower_parts():
    assert str(V("1.2.3").bump("patch")) == "1.2.4"
    assert str(V("1.2.3").bump("minor")) == "1.3.0"
    assert str(V("1.2.3").bump("major")) == "2.0.0"
    assert str(V("1.2.3-rc.1").bump("patch")) == "1.2.4"
    with pytest.raises(UsageError):
        V("1.0.0").bump("micro")


@pytest.mark.parametrize("constraint,yes,no", [
    ("^1.2", ["1.2.0", "1.9.9"], ["1.1.9", "2.0.0", "0.9.0"]),
    ("^1.2.3", ["1.2.3", "1.3.0"], ["1.2.2", "2.0.0"]),
    ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0", "0.2.2"]),
    ("^0.0.3", ["0.0.3"], ["0.0.4", "0.0.2"]),
    ("^0", ["0.0.1", "0.9.0"], ["1.0.0"]),
    ("~1.2.3", ["1.2.3", "1.2.9"], ["1.3.0", "1.2.2"]),
    ("~1.2", ["1.2.0", "1.2.5"], ["1.3.0"]),
    ("~1", ["1.0.0", "1.9.0"], ["2.0.0"]),
    (">=1,<2", ["1.0.0", "1.99.0"], ["0.9.9", "2.0.0"]),
    (">1.0.0, <=1.5.0", ["1.0.1", "1.5.0"], ["1.0.0", "1.5.1"]),
    ("1.2.3", ["1.2.3"], ["1.2.4", "1.2.2"]),
    ("=1.2.3", ["1.2.3"], ["1.2.4"]),
    ("==1.2.3", ["1.2.3"], ["1.2.4"]),
    ("1.2", ["1.2.0", "1.2.7"], ["1.3.0"]),
    ("1", ["1.0.0", "1.5.0"], ["2.0.0"]),
    ("*", ["0.0.1", "9.9.9"], []),
])
def test_constraints_allow_exactly_their_versions(constraint, yes, no):
    c = Constraint(constraint)
    assert [v for v in yes if not c.allows(v)] == []
    assert [v for v in no if c.allows(v)] == []


def test_pre_releases_match_only_a_constraint_naming_a_pre_release_of_the_same_version():
    assert not Constraint("^1.0").allows("1.5.0-beta")
    assert not Constraint(">=1,<2").allows("2.0.0-rc.1")
    assert Constraint(">=1.5.0-beta").allows("1.5.0-beta.2")
    assert Constraint("1.5.0-beta").allows("1.5.0-beta")
    assert Constraint(">=1.5.0-beta").allows("1.6.0")


def test_best_picks_the_highest_allowed_version_or_none():
    vs = ["1.0.0", "1.4.2", "2.0.0", "1.10.0"]
    assert Constraint("^1.0").best(vs) == "1.10.0"
    assert Constraint("~1.4").best(vs) == "1.4.2"
    assert Constraint("^3").best(vs) is None


@pytest.mark.parametrize("bad", ["", "^", "^x.y", "1.2.3.4", ">=abc", "1.2.3 - 2"])
def test_malformed_constraints_are_usage_errors(bad):
    with pytest.raises(UsageError):
        Constraint(bad)


def test_constraint_prints_as_written():
    assert str(Constraint(" ^1.2 ")) == "^1.2"
