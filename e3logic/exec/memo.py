"""The memo: execution key → output hash, plus the append-only execution history and the
consumed/produced provenance rows that feed the logic layer. Failures are never memoized.

execution key = H(task hash, input content hashes in order)
"""
from __future__ import annotations

from dataclasses import dataclass

from ..core.hashing import hash_parts
from ..repo.journal import write_executions


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
    """The memo of one index.db (`db`: its `IndexDB`), read and written through its Journal."""

    def __init__(self, index):
        self.db = index
        self.journal = index.journal
        self._host = None

    @property
    def host(self) -> str:
        if self._host is None:
            import socket

            self._host = socket.gethostname()
        return self._host

    def lookup(self, key: str) -> MemoHit | None:
        r = self.journal.memo_lookup(key)
        return MemoHit(r[0], r[1], r[2] or 0.0) if r else None

    def lookup_many(self, keys) -> dict[str, MemoHit]:
        """The memo hits among `keys`, in one query per 500 keys."""
        return {k: MemoHit(h, f, d or 0.0)
                for k, (h, f, d) in self.journal.memo_lookup_many(keys).items()}

    def by_tasks(self, task_hashes) -> dict[str, MemoHit]:
        """Every memo entry of these tasks, in one query per 500 tasks (a run's prefetch)."""
        return {k: MemoHit(h, f, d or 0.0)
                for k, (h, f, d) in self.journal.memo_by_tasks(task_hashes).items()}

    def durations(self, task_hashes) -> dict[str, float]:
        """Median recorded duration of successful executions per task hash (cost estimates)."""
        med = {}
        for t, ds in self.journal.ok_durations(task_hashes).items():
            ds.sort()
            med[t] = ds[len(ds) // 2]
        return med

    def record(self, conn, rec: ExecutionRecord) -> None:
        """Write one execution inside the caller's transaction (`conn`)."""
        self.record_many(conn, [rec])

    def record_many(self, conn, recs: list[ExecutionRecord]) -> None:
        """Write executions, in order, inside the caller's transaction (`conn`): one
        statement per table for the lot (`repo.journal.write_executions`)."""
        write_executions(conn, recs, self.host)

    def commit(self, recs: list[ExecutionRecord]) -> None:
        """Write executions in a transaction of their own."""
        self.journal.record_executions(recs, self.host)

    def provenance(self, key: str) -> dict:
        rows = self.journal.provenance(key)
        return {"inputs": [(p, h) for r, _, p, h in rows if r == "in"],
                "outputs": [(p, h) for r, _, p, h in rows if r == "out"]}

    def producer_of(self, path: str, h: str) -> str | None:
        """The latest memoized execution key that produced `h` at `path`."""
        return self.journal.producer_of(path, h)
