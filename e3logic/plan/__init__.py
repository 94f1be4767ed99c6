"""The planner (DESIGN.md §7): kanren constraint scheduler, lease assignment, cost model,
checker and optimizer, over a plain input model (see docs/plan.md).

    from e3logic.plan import Node, PlanInput, schedule, verify
    plan = schedule(PlanInput(nodes, capacities={"gpu": 1}, cap=8))

Names are loaded on first use, so importing the package does not import kanren.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "Lease": "model", "Node": "model", "PlanInput": "model", "Plan": "model",
    "PlanError": "model", "LeaseGrant": "model", "TABLE_COLUMNS": "model", "select": "model",
    "topological_order": "model",
    "schedule": "scheduler", "make_plan": "scheduler", "Admitter": "scheduler",
    "verify": "verify", "check": "verify", "Violation": "verify",
    "optimal_barrier_makespan": "verify",
    "bottom_levels": "cost", "critical_path": "cost", "simulate": "cost",
    "barrier_makespan": "cost", "total_work": "cost",
    "optimize": "optimize", "Optimized": "optimize", "eliminate_dead": "optimize",
    "share_common": "optimize", "apply_sharing": "optimize", "fuse_inline": "optimize",
    "apply_fusion": "optimize",
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
