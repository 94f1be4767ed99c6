"""`core.runtimes`: the one table of runtime names and traits every layer asks."""
import importlib
import inspect

import pytest

from e3logic.core.errors import UsageError
from e3logic.core.runtimes import DEFAULT, RUNTIMES, runtime
from e3logic.sdk import RUNTIMES as SDK_RUNTIMES


def test_every_runtime_names_an_implementation_class_with_an_async_run():
    for name, spec in RUNTIMES.items():
        module, _, cls = spec.impl.partition(":")
        impl = getattr(importlib.import_module(module), cls)
        assert inspect.iscoroutinefunction(impl.run), name


def test_the_sdk_accepts_exactly_the_runtimes_of_the_table():
    assert SDK_RUNTIMES == tuple(RUNTIMES) and DEFAULT in RUNTIMES


def test_an_in_engine_runtime_has_an_isolated_way_that_runs_out_of_the_engine():
    for spec in RUNTIMES.values():
        if spec.in_engine:
            assert spec.isolated in RUNTIMES and not RUNTIMES[spec.isolated].in_engine
        else:
            assert spec.isolated is None


def test_an_unknown_runtime_is_a_usage_error_naming_the_known_ones():
    with pytest.raises(UsageError) as e:
        runtime("ruby")
    assert str(e.value) == "unknown runtime 'ruby'; use one of " + ", ".join(RUNTIMES)
    assert runtime("shell").argv
