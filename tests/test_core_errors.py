"""core.errors: error classes map to exit codes; unknown names suggest near misses."""
from e3logic.core import errors as E


def test_exit_codes_follow_the_cli_contract():
    assert E.UsageError("x").exit_code == 2
    assert E.NotFound("package", "x").exit_code == 2
    assert E.NoRepository("x").exit_code == 2
    assert E.BuildError("x").exit_code == 2
    assert E.IntegrityError("x").exit_code == 1
    assert E.ConflictError("x").exit_code == 1
    assert E.LockBusy("x").exit_code == 1
    assert E.CheckFailed("x").exit_code == 1
    assert E.TaskFailed("x").exit_code == 1
    assert E.Cancelled("x").exit_code == 130


def test_every_error_is_an_e3_error():
    for cls in (E.UsageError, E.NotFound, E.NoRepository, E.BuildError, E.IntegrityError,
                E.ConflictError, E.LockBusy, E.CheckFailed, E.TaskFailed, E.Cancelled):
        assert issubclass(cls, E.E3Error)


def test_not_found_names_the_kind_and_suggests_near_misses():
    e = E.NotFound("workspace", "mian", ["main", "other"])
    assert str(e) == "unknown workspace 'mian'; did you mean 'main'?"
    assert e.suggestions == ["main"]
    assert "\n" not in str(e)


def test_not_found_without_near_miss_shows_the_hint():
    e = E.NotFound("package", "zzz", ["forecast"], hint="see 'e3 packages'")
    assert str(e) == "unknown package 'zzz'; see 'e3 packages'"


def test_did_you_mean_returns_at_most_two_close_candidates_without_duplicates():
    assert sorted(E.did_you_mean("stauts", ["status", "status", "stats", "log"])) == \
        ["stats", "status"]
    assert E.did_you_mean("x", []) == []
