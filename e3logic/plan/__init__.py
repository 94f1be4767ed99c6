"""The planner (DESIGN.md §7): kanren constraint scheduler, lease assignment, cost model,
checker and optimizer, over a plain input model (see docs/plan.md).

    from e3logic.plan import Node, PlanInput, schedule, verify
    plan = schedule(PlanInput(nodes, capacities={"gpu": 1}, cap=8))
    plan = schedule_optimized(pi, inputs)   # the same, identical executions planned once

Names are loaded on first use, so importing the package does not import kanren.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "Lease": "model", "Node": "model", "PlanInput": "model", "Plan": "model",
    "PlanError": "model", "LeaseGrant": "model", "TABLE_COLUMNS": "model", "select": "model",
    "topological_order": "model",
    "schedule": "scheduler", "make_plan": "scheduler", "Admitter": "scheduler",
    "verify": "checker", "check": "checker", "Violation": "checker",
    "optimal_barrier_makespan": "checker",
    "bottom_levels": "cost", "critical_path": "cost", "simulate": "cost",
    "barrier_makespan": "cost", "total_work": "cost",
    "optimize": "optimizer", "Optimized": "optimizer", "eliminate_dead": "optimizer",
    "needed": "optimizer", "share_common": "optimizer", "apply_sharing": "optimizer",
    "schedule_optimized": "optimizer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'e3logic.plan' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
