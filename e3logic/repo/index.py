"""index.db: SQLite (WAL) holding memo, executions, episodes, history, runs, receipts,
provenance, facts and the working-copy stat cache.

The schema is versioned with `PRAGMA user_version` and migrated on open: MIGRATIONS[i] takes a
database from version i to i+1 inside one transaction. Hot-path reads use the raw sqlite3
connection; schema work and bulk inserts go through sqlite-utils (`IndexDB.utils`).
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from ..core.errors import IntegrityError


def _v1(db) -> None:
    t = db.utils
    t["meta"].create({"key": str, "value": str}, pk="key")
    t["wc_stat"].create({"path": str, "size": int, "mtime_ns": int, "ino": int, "hash": str},
                        pk="path")
    t["executions"].create({
        "id": int, "key": str, "task_hash": str, "dataflow": str, "run": str, "workspace": str,
        "started": float, "ended": float, "duration": float, "status": str, "exit_code": int,
        "host": str, "output_hash": str, "error": str}, pk="id")
    t["executions"].create_index(["key"])
    t["executions"].create_index(["dataflow"])
    t["memo"].create({"key": str, "output_hash": str, "output_format": str, "task_hash": str,
                      "dataflow": str, "duration": float}, pk="key")
    t["provenance"].create({"key": str, "role": str, "pos": int, "path": str, "hash": str},
                           pk=("key", "role", "pos"))
    t["runs"].create({
        "run": str, "workspace": str, "seq": int, "started": float, "ended": float,
        "status": str, "parent_commit": str, "commit_hash": str, "state_root": str,
        "receipt_digest": str, "policy": str, "pid": int, "proc_start": str, "command": str,
        "cancel_requested": int, "pinned": int}, pk="run")
    t["receipts"].create({"run": str, "seq": int, "dataflow": str, "key": str,
                          "output_hash": str, "outcome": str}, pk=("run", "seq"))
    t["episodes"].create({"episode": str, "run": str, "dataflow": str, "key": str,
                          "profile": str, "state": str, "pgid": int}, pk="episode")
    t["episodes"].create_index(["run"])
    t["history"].create({"episode": str, "seq": int, "state": str, "beat": int, "note": str,
                         "ts": float}, pk=("episode", "seq"))
    t["awaits"].create({"episode": str, "awaited": str}, pk=("episode", "awaited"))
    t["facts"].create({"scope": str, "relation": str, "args": str}, pk=("scope", "relation", "args"))
    t["facts"].create_index(["relation"])
    t["peers"].create({"name": str, "url": str, "key": str}, pk="name")


def _v2(db) -> None:
    # process groups of running tasks, so a later run can stop what a killed engine left behind
    db.utils["procs"].create({"run": str, "episode": str, "pgid": int, "start": int},
                             pk=("run", "pgid"))


def _v3(db) -> None:
    # the warm path of `e3 go`: the package a run ran and whether its receipt was verified
    # against its state root (`settled`), the output sizes of its receipt rows, and an index
    # for "the latest run of a workspace"
    c = db.conn
    c.execute("ALTER TABLE runs ADD COLUMN package TEXT")
    c.execute("ALTER TABLE runs ADD COLUMN settled INTEGER")
    c.execute("ALTER TABLE receipts ADD COLUMN size INTEGER")
    c.execute("CREATE INDEX IF NOT EXISTS idx_runs_workspace_seq ON runs(workspace, seq)")


MIGRATIONS = [_v1, _v2, _v3]
SCHEMA_VERSION = len(MIGRATIONS)


class IndexDB:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                    check_same_thread=False)
        _wal(self.conn)
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=30000")
        self._utils = None
        self.migrate()

    @property
    def utils(self):
        """The sqlite-utils view of the same connection (imported lazily)."""
        if self._utils is None:
            import sqlite_utils

            self._utils = sqlite_utils.Database(self.conn)
        return self._utils

    @property
    def version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> None:
        """Bring the schema to `len(MIGRATIONS)`: each missing step, in order, all in one
        transaction taken with the write lock (concurrent openers: one migrates, the others
        find it done). A failing step leaves the database as it was."""
        target = len(MIGRATIONS)
        v = self.version
        if v == target:
            return
        if v > target:
            raise IntegrityError(f"index.db schema {v} is newer than this e3 ({target}); "
                                 f"upgrade e3logic")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            v = self.version  # re-read under the write lock: another process may have migrated
            for step in MIGRATIONS[v:]:
                step(self)
            self.conn.execute(f"PRAGMA user_version={max(v, target)}")
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def execute(self, sql: str, params=()):
        return self.conn.execute(sql, params)

    def query(self, sql: str, params=()) -> list[sqlite3.Row]:
        cur = self.conn.execute(sql, params)
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def transaction(self):
        return _Tx(self.conn)

    def get_meta(self, key: str) -> str | None:
        r = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return r[0] if r else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        self.conn.close()


def _wal(conn, patience: float = 30.0) -> None:
    """Switch to WAL. Several processes opening a new database at once can be refused at once
    ("database is locked": SQLite skips the busy handler where waiting could deadlock), so
    retry for a while; on an existing WAL database this is a read."""
    import time

    deadline = time.monotonic() + patience
    delay = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


class _Tx:
    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, et, ev, tb):
        self.conn.execute("ROLLBACK" if et else "COMMIT")
        return False
