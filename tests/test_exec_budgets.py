"""Budgets: validation, reasons, and real rlimits in children and workers."""
from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from e3logic.exec.budgets import (KEYS, Budget, WorkerLimits, address_space_bytes, child_limits,
                                  cpu_seconds_self, exceeded, fmt_value, parse_budget)


def test_a_budget_may_hold_any_subset_of_the_four_keys():
    assert parse_budget({}) == Budget()
    assert not parse_budget(None)
    b = parse_budget({"wall_s": 2, "io_bytes": 10_000_000})
    assert b.wall_s == 2 and b.io_bytes == 10_000_000 and b.cpu_s is None and b.mem_mb is None
    assert b.as_dict() == {"wall_s": 2, "io_bytes": 10_000_000}
    full = parse_budget({"wall_s": 60, "cpu_s": 30.5, "io_bytes": 1e6, "mem_mb": 2048})
    assert full.io_bytes == 1_000_000 and isinstance(full.io_bytes, int)
    assert set(full.as_dict()) == set(KEYS)


@pytest.mark.parametrize("raw, words", [
    ({"wall": 2}, "unknown budget key 'wall'"),
    ({"cpu_s": -1}, "cpu_s must be a positive number"),
    ({"mem_mb": 0}, "mem_mb must be a positive number"),
    ({"wall_s": True}, "wall_s must be a positive number"),
    ({"wall_s": "2"}, "wall_s must be a positive number"),
    ({"wall_s": float("inf")}, "wall_s must be a positive number"),
    ([("wall_s", 1)], "budget must be a mapping"),
])
def test_a_malformed_budget_is_refused_with_a_reason_naming_the_key(raw, words):
    with pytest.raises(ValueError, match=words):
        parse_budget(raw)


def test_overrun_reasons_name_the_budget_and_its_value():
    assert exceeded("wall_s", Budget(wall_s=2)) == "budget wall_s=2 exceeded"
    assert exceeded("wall_s", Budget(wall_s=2.0)) == "budget wall_s=2 exceeded"
    assert exceeded("cpu_s", Budget(cpu_s=0.5)) == "budget cpu_s=0.5 exceeded"
    assert exceeded("io_bytes", Budget(io_bytes=10_000_000)) == "budget io_bytes=10000000 exceeded"
    assert fmt_value(3) == "3"


def _child_rlimits(budget: Budget) -> list[str]:
    code = ("import resource as r; print(*r.getrlimit(r.RLIMIT_CPU)); "
            "print(*r.getrlimit(r.RLIMIT_AS)); print(*r.getrlimit(r.RLIMIT_CORE))")
    out = subprocess.run([sys.executable, "-c", code], preexec_fn=child_limits(budget),
                         capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def test_child_limits_set_cpu_and_address_space_rlimits_in_the_child_only():
    before = (resource.getrlimit(resource.RLIMIT_CPU), resource.getrlimit(resource.RLIMIT_AS))
    cpu, mem, core = _child_rlimits(Budget(cpu_s=2.5, mem_mb=512))
    assert cpu.split()[0] == "3" and int(cpu.split()[1]) in (4, before[0][1])
    assert int(mem.split()[0]) == 512 << 20
    assert core.split()[0] == "0"
    after = (resource.getrlimit(resource.RLIMIT_CPU), resource.getrlimit(resource.RLIMIT_AS))
    assert after == before


def test_child_limits_is_none_without_cpu_or_memory_budgets():
    assert child_limits(Budget()) is None
    assert child_limits(Budget(wall_s=1, io_bytes=10)) is None


def test_a_child_over_its_cpu_budget_is_killed_by_sigxcpu():
    p = subprocess.run([sys.executable, "-c", "while True: pass"],
                       preexec_fn=child_limits(Budget(cpu_s=1)), timeout=30)
    assert p.returncode in (-24, -9)  # SIGXCPU at the soft limit, SIGKILL at the hard one


def test_a_child_over_its_memory_budget_gets_memory_error():
    p = subprocess.run([sys.executable, "-c", "b = bytearray(400 << 20)"],
                       preexec_fn=child_limits(Budget(mem_mb=200)), capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 1 and "MemoryError" in p.stderr


def test_worker_limits_are_relative_to_usage_so_far_and_restored_afterwards():
    before_cpu = resource.getrlimit(resource.RLIMIT_CPU)
    before_as = resource.getrlimit(resource.RLIMIT_AS)
    used = cpu_seconds_self()
    vsz = address_space_bytes()
    lim = WorkerLimits(Budget(cpu_s=5, mem_mb=300))
    try:
        soft_cpu = resource.getrlimit(resource.RLIMIT_CPU)[0]
        soft_as = resource.getrlimit(resource.RLIMIT_AS)[0]
        assert used + 5 <= soft_cpu <= used + 7
        assert vsz + (300 << 20) <= soft_as <= address_space_bytes() + (300 << 20) + (64 << 20)
    finally:
        lim.restore()
    assert resource.getrlimit(resource.RLIMIT_CPU) == before_cpu
    assert resource.getrlimit(resource.RLIMIT_AS) == before_as


def test_worker_limits_on_memory_make_a_large_allocation_fail_then_allow_it_again():
    lim = WorkerLimits(Budget(mem_mb=64))
    try:
        with pytest.raises(MemoryError):
            bytearray(512 << 20)
    finally:
        lim.restore()
    assert len(bytearray(128 << 20)) == 128 << 20
