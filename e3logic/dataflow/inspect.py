"""Read-side helpers for logs, stats and cancel."""
from __future__ import annotations

from pathlib import Path

from ..core.errors import NotFound, UsageError


def log_of(api, name: str | None) -> tuple[str, Path]:
    """(execution key, log path) for a dataflow's latest execution, or for a key (prefix)."""
    db = api.r.index
    if name is None:
        r = db.execute("SELECT key FROM executions ORDER BY id DESC LIMIT 1").fetchone()
        if not r:
            raise UsageError("no execution yet; run 'e3 go' first")
        key = r[0]
    else:
        r = db.execute("SELECT key FROM executions WHERE dataflow=? ORDER BY id DESC LIMIT 1",
                       (name,)).fetchone()
        if r is None and len(name) >= 6:
            r = db.execute("SELECT key FROM executions WHERE key LIKE ? ORDER BY id DESC LIMIT 1",
                           (name + "%",)).fetchone()
        if r is None:
            # a running episode has no execution row yet
            r = db.execute("SELECT key FROM episodes WHERE dataflow=? AND key IS NOT NULL "
                           "ORDER BY rowid DESC LIMIT 1", (name,)).fetchone()
        if r is None:
            names = [x[0] for x in db.execute("SELECT DISTINCT dataflow FROM executions")]
            raise NotFound("dataflow or execution", name, names,
                           hint="it has not run yet; 'e3 go' first")
        key = r[0]
    return key, api.r.logs_dir / f"{key}.log"


def stats(api) -> dict:
    """Hit ratio over all runs' receipts, and the work recomputed vs saved (seconds)."""
    db = api.r.index
    executed = db.execute("SELECT COUNT(*) FROM receipts WHERE outcome='executed'").fetchone()[0]
    cached = db.execute("SELECT COUNT(*) FROM receipts WHERE outcome='cached'").fetchone()[0]
    done = db.execute("SELECT COALESCE(SUM(duration), 0) FROM executions WHERE status='ok'").fetchone()[0]
    saved = db.execute("SELECT COALESCE(SUM(m.duration), 0) FROM receipts r JOIN memo m "
                       "ON m.key = r.key WHERE r.outcome='cached'").fetchone()[0]
    total = executed + cached
    return {"hit_ratio": (cached / total) if total else 0.0, "executed": executed,
            "cached": cached, "work_saved": round(saved, 6), "work_done": round(done, 6),
            "runs": db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]}


def request_cancel(api, run_id: str | None) -> list[str]:
    db = api.r.index
    if run_id:
        r = db.execute("SELECT status FROM runs WHERE run=?", (run_id,)).fetchone()
        if r is None:
            names = [x[0] for x in db.execute("SELECT run FROM runs ORDER BY seq DESC LIMIT 50")]
            raise NotFound("run", run_id, names)
        runs = [run_id] if r[0] == "running" else []
    else:
        runs = [x[0] for x in db.execute("SELECT run FROM runs WHERE status='running' ORDER BY seq")]
    with db.transaction() as c:
        c.executemany("UPDATE runs SET cancel_requested=1 WHERE run=?", [(r,) for r in runs])
    return runs
