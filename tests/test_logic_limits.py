"""Limits on rule evaluation (e3logic/logic/limits.py): settings, the guard, the watchdog."""
import threading
import time

import pytest

from e3logic.core.errors import UsageError
from e3logic.logic import LimitError, Limits, Program
from e3logic.logic.limits import DEFAULT_MAX_FACTS, DEFAULT_TIMEOUT_S, guarded

RUNAWAY = "n(0).\nn(Y + 1) :- n(Y).\n"


def test_the_defaults_are_five_million_facts_and_sixty_seconds():
    assert (Limits().max_facts, Limits().timeout_s) == (5_000_000, 60.0)
    assert (DEFAULT_MAX_FACTS, DEFAULT_TIMEOUT_S) == (5_000_000, 60.0)


@pytest.mark.parametrize("kw", [{"max_facts": 0}, {"max_facts": 1.5}, {"max_facts": True},
                                {"timeout_s": 0}, {"timeout_s": -1}, {"timeout_s": "1"}])
def test_a_limit_that_is_not_positive_is_a_usage_error(kw):
    with pytest.raises(UsageError, match="must be a positive"):
        Limits(**kw)


def test_options_win_over_e3_toml_which_wins_over_the_defaults():
    cfg = {"logic": {"max_facts": 10, "timeout_s": 2}}
    assert Limits.from_settings(cfg) == Limits(10, 2.0)
    assert Limits.from_settings(cfg, max_facts=7, timeout_s=0.5) == Limits(7, 0.5)
    assert Limits.from_settings({}) == Limits() == Limits.from_settings(None)
    assert Limits.from_settings({"logic": {"timeout_s": 5}}) == Limits(5_000_000, 5.0)


@pytest.mark.parametrize("cfg, words", [
    ({"logic": {"max_facts": "many"}}, "e3.toml [logic] max_facts must be a positive integer"),
    ({"logic": {"timeout_s": 0}}, "e3.toml [logic] timeout_s must be a positive number"),
    ({"logic": {"maxfacts": 3}}, "unknown key 'maxfacts'; did you mean 'max_facts'?"),
    ({"logic": 3}, "e3.toml [logic] must be a table"),
])
def test_bad_e3_toml_limits_are_one_line_naming_the_key(cfg, words):
    with pytest.raises(UsageError) as e:
        Limits.from_settings(cfg)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_a_limit_error_is_a_usage_class_error_with_exit_code_2():
    with pytest.raises(LimitError) as e:
        Program.parse(RUNAWAY).query("n(X)", engine="fast", limits=Limits(100))
    assert e.value.exit_code == 2


def test_nested_evaluations_in_one_thread_share_the_outer_guard():
    seen = []
    guarded(Limits(), "fast", lambda g: guarded(Limits(5), "fast", lambda h: seen.append(h is g)))
    assert seen == [True]


def test_no_stop_is_left_pending_after_a_timeout():
    with pytest.raises(LimitError, match="still running after 0.1 s"):
        Program.parse(RUNAWAY).query("n(X)", engine="fast", limits=Limits(None, 0.1))
    end = time.monotonic() + 0.6  # three retry periods of the watchdog: nothing arrives
    n = 0
    while time.monotonic() < end:
        n += 1
    assert n > 0


def test_an_evaluation_in_another_thread_is_stopped_in_that_thread():
    out = {}

    def run():
        try:
            Program.parse(RUNAWAY).query("n(X)", engine="fast", limits=Limits(None, 0.2))
        except LimitError as e:
            out["error"] = str(e)

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    assert "still running after 0.2 s" in out["error"]


def test_without_limits_a_bounded_program_runs_to_the_end():
    rows = Program.parse("n(0).\nn(Y + 1) :- n(Y), Y < 9999.").query(
        "n(X)", engine="fast", limits=Limits(None, None)).rows
    assert len(rows) == 10_000
