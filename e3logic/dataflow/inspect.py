"""Read-side helpers for logs, stats and cancel."""
from __future__ import annotations

from pathlib import Path

from ..core.errors import E3Error, NotFound, UsageError


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


def latest_outcome(api, name: str, runs: int = 50) -> tuple[str | None, str | None, str | None]:
    """How dataflow `name` ended in the newest of the last `runs` runs whose receipt holds
    it: (outcome, execution key there, why it failed). The outcome is "failed" or "ok" (its
    receipt row names an execution: executed, cached, or cancelled) or None (skipped, or in
    no receipt). Why it failed is its episode's last failure note (`ValueError: flag says
    fail (steps.py:27)`, `exit 3`, `budget wall_s=1 exceeded`, `input inputs/x is missing`);
    the key is None for a failure before any execution (a missing input)."""
    j = api.r.journal
    for run in j.recent_runs(runs):
        keys = j.receipt_keys(run)
        if name not in keys:
            continue
        if name in j.failed_in_run(run):
            return "failed", keys[name], dict(j.failure_notes(run)).get(name) or "failed"
        return ("ok" if keys[name] else None), keys[name], None
    return None, None, None


def log_view(api, name: str | None) -> dict:
    """What `e3 logs [NAME]` shows: {"execution": key or None, "path": its log (None: no
    execution to show), "reason": why the dataflow's latest run failed, or None}.

    A dataflow running now shows its running execution's log; else the execution its latest
    run's receipt names (a failed one with the reason; none when it failed before running, a
    missing input; after a fix, the execution whose output the workspace holds); else, and for
    an execution key, `log_of`. A dataflow of the checked-out package that never ran is a
    `UsageError` saying so."""
    if name is not None:
        j = api.r.journal
        running = j.latest_episode_key(name)
        if running is not None and j.episode_running(running):
            return {"execution": running, "path": api.r.logs_dir / f"{running}.log",
                    "reason": None}
        outcome, key, reason = latest_outcome(api, name)
        if outcome is not None:
            return {"execution": key, "path": api.r.logs_dir / f"{key}.log" if key else None,
                    "reason": reason}
    try:
        key, path = log_of(api, name)
    except NotFound:
        names = _dataflow_names(api)
        if name in names:
            raise UsageError(f"dataflow '{name}' has not run yet; 'e3 go {name}' runs it") \
                from None
        raise NotFound("dataflow or execution", name,
                       sorted({*names, *api.r.journal.executed_dataflows()}),
                       hint="neither a dataflow of the checked-out package nor an execution "
                            "key") from None
    return {"execution": key, "path": path, "reason": None}


def _dataflow_names(api) -> list[str]:
    """The checked-out package's dataflows ([] when none is checked out)."""
    try:
        return api.dataflow_names()
    except (E3Error, OSError, ValueError, KeyError):
        return []


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
