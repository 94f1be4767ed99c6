"""The memo: execution key → output hash, plus the append-only execution history and the
consumed/produced provenance rows that feed the logic layer. Failures are never memoized.

execution key = H(task hash, input content hashes in order)
"""
from __future__ import annotations

from dataclasses import dataclass

from ..core.hashing import hash_parts


def execution_key(task_hash: str, input_hashes: list[str] | tuple[str, ...]) -> str:
    return hash_parts(["e3-exec-v1", task_hash, *input_hashes])


@dataclass(frozen=True)
class MemoHit:
    output_hash: str
    output_format: str
    duration: float


@dataclass
class ExecutionRecord:
    """One finished execution attempt, staged for the commit of its beat."""

    key: str
    task_hash: str
    dataflow: str
    run: str
    workspace: str
    status: str  # ok | fail | cxl
    started: float
    ended: float
    exit_code: int | None = None
    output_hash: str | None = None
    output_format: str | None = None
    error: str | None = None
    inputs: tuple = ()  # ((path, hash), ...)
    output_path: str | None = None


def usable(objects, hit: MemoHit | None, size: int | None = None, verify: bool = False) -> bool:
    """Is a memo hit's output object there (of the expected size; with `verify`, hashing to
    its name)? A corrupt one is quarantined, so the re-execution can store the right bytes
    under its name."""
    if hit is None:
        return False
    p = objects.path(hit.output_hash)
    try:
        st = p.stat()
    except FileNotFoundError:
        return False
    ok = (size is None or st.st_size == size) and (not verify or objects.verify(hit.output_hash))
    if not ok:
        objects.quarantine(hit.output_hash)
    return ok


class Memo:
    def __init__(self, index):
        self.db = index
        self._host = None

    @property
    def host(self) -> str:
        if self._host is None:
            import socket

            self._host = socket.gethostname()
        return self._host

    def lookup(self, key: str) -> MemoHit | None:
        r = self.db.execute("SELECT output_hash, output_format, duration FROM memo WHERE key=?",
                            (key,)).fetchone()
        return MemoHit(r[0], r[1], r[2] or 0.0) if r else None

    def lookup_many(self, keys) -> dict[str, MemoHit]:
        keys = list(keys)
        out = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            q = ",".join("?" * len(chunk))
            for k, h, f, d in self.db.execute(
                    f"SELECT key, output_hash, output_format, duration FROM memo WHERE key IN ({q})",
                    chunk):
                out[k] = MemoHit(h, f, d or 0.0)
        return out

    def by_tasks(self, task_hashes) -> dict[str, MemoHit]:
        """Every memo entry of these tasks, in one query per 500 tasks (a run's prefetch)."""
        th = sorted(set(task_hashes))
        out = {}
        for i in range(0, len(th), 500):
            chunk = th[i:i + 500]
            q = ",".join("?" * len(chunk))
            for k, h, f, d in self.db.execute(
                    f"SELECT key, output_hash, output_format, duration FROM memo "
                    f"WHERE task_hash IN ({q})", chunk):
                out[k] = MemoHit(h, f, d or 0.0)
        return out

    def durations(self, task_hashes) -> dict[str, float]:
        """Median recorded duration of successful executions per task hash (cost estimates)."""
        th = sorted(set(task_hashes))
        out: dict[str, list[float]] = {}
        for i in range(0, len(th), 500):
            chunk = th[i:i + 500]
            q = ",".join("?" * len(chunk))
            for t, d in self.db.execute(
                    f"SELECT task_hash, duration FROM executions WHERE status='ok' AND "
                    f"task_hash IN ({q}) ORDER BY id DESC LIMIT 20000", chunk):
                out.setdefault(t, []).append(d or 0.0)
        med = {}
        for t, ds in out.items():
            ds.sort()
            med[t] = ds[len(ds) // 2]
        return med

    def record(self, conn, rec: ExecutionRecord) -> None:
        """Write one execution inside the caller's transaction (`conn`)."""
        self.record_many(conn, [rec])

    def record_many(self, conn, recs: list[ExecutionRecord]) -> None:
        """Write executions, in order, inside the caller's transaction (`conn`): one
        statement per table for the lot."""
        conn.executemany(
            "INSERT INTO executions(key, task_hash, dataflow, run, workspace, started, ended, "
            "duration, status, exit_code, host, output_hash, error) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(r.key, r.task_hash, r.dataflow, r.run, r.workspace, r.started, r.ended,
              r.ended - r.started, r.status, r.exit_code, self.host, r.output_hash, r.error)
             for r in recs])
        ok = [r for r in recs if r.status == "ok"]  # failures are never memoized
        conn.executemany(
            "INSERT OR REPLACE INTO memo(key, output_hash, output_format, task_hash, dataflow, "
            "duration) VALUES (?,?,?,?,?,?)",
            [(r.key, r.output_hash, r.output_format, r.task_hash, r.dataflow,
              r.ended - r.started) for r in ok])
        conn.executemany(
            "INSERT OR REPLACE INTO provenance(key, role, pos, path, hash) VALUES (?,?,?,?,?)",
            [row for r in ok for row in
             [(r.key, "in", i, p, h) for i, (p, h) in enumerate(r.inputs)]
             + [(r.key, "out", 0, r.output_path, r.output_hash)]])

    def provenance(self, key: str) -> dict:
        rows = self.db.execute("SELECT role, pos, path, hash FROM provenance WHERE key=? "
                               "ORDER BY role, pos", (key,)).fetchall()
        return {"inputs": [(p, h) for r, _, p, h in rows if r == "in"],
                "outputs": [(p, h) for r, _, p, h in rows if r == "out"]}

    def producer_of(self, path: str, h: str) -> str | None:
        """The latest execution key that produced `h` at `path`."""
        r = self.db.execute("SELECT p.key FROM provenance p JOIN memo m ON m.key = p.key "
                            "WHERE p.role='out' AND p.path=? AND p.hash=? LIMIT 1",
                            (path, h)).fetchone()
        return r[0] if r else None
