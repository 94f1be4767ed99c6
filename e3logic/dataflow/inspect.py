"""Read-side helpers for logs, stats and cancel."""
from __future__ import annotations

from pathlib import Path

from ..core.errors import NotFound, UsageError


def log_of(api, name: str | None) -> tuple[str, Path]:
    """(execution key, log path) for a dataflow's latest execution, or for a key (prefix)."""
    j = api.r.journal
    if name is None:
        key = j.latest_execution_key()
        if key is None:
            raise UsageError("no execution yet; run 'e3 go' first")
    else:
        key = j.latest_execution_key(name)
        if key is None and len(name) >= 6:
            key = j.execution_key_by_prefix(name)
        if key is None:
            key = j.latest_episode_key(name)  # a running episode has no execution row yet
        if key is None:
            raise NotFound("dataflow or execution", name, j.executed_dataflows(),
                           hint="it has not run yet; 'e3 go' first")
    return key, api.r.logs_dir / f"{key}.log"


def stats(api) -> dict:
    """Hit ratio over all runs' receipts, and the work recomputed vs saved (seconds)."""
    s = api.r.journal.stats()
    executed, cached = s["executed"], s["cached"]
    total = executed + cached
    return {"hit_ratio": (cached / total) if total else 0.0, "executed": executed,
            "cached": cached, "work_saved": round(s["saved"], 6),
            "work_done": round(s["done"], 6), "runs": s["runs"]}


def request_cancel(api, run_id: str | None) -> list[str]:
    """Ask a run (or every running run) to stop at its next beat; the runs asked."""
    j = api.r.journal
    if run_id:
        status = j.run_status(run_id)
        if status is None:
            raise NotFound("run", run_id, j.recent_runs(50))
        runs = [run_id] if status == "running" else []
    else:
        runs = [r for r, _, _ in j.running_runs()]
    j.request_cancel(runs)
    return runs
