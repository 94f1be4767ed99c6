"""Conformance: scenario suites (one per capability) driving the public API and the `e3` command.

Each suite is `conformance/suites/test_<suite>.py`; `python -m conformance` runs them all with
pytest, writes `conformance/SCOREBOARD.md` (passed/total per suite) and exits 1 on any failure.
"""
