"""index.db: SQLite (WAL) holding memo, executions, episodes, history, runs, receipts,
provenance, facts, the working-copy stat cache and the shared cache's remotes, trusted keys and
origins.

A read-only index.db (or `.e3/`: another user's repository, a read-only mount) is read into
an in-memory copy, so read commands work and their cache writes (stat cache, facts) go nowhere;
commands that write are refused before they start (the CLI). A damaged file is refused with
`DamagedMetadata` naming `e3 fsck --repair`, which salvages what it can (`rebuild`).

The schema is versioned with `PRAGMA user_version` and migrated on open: MIGRATIONS[i] takes a
database from version i to i+1 inside one transaction. Rows are read and written only
through the Journal (`repo.journal`, `IndexDB.journal`); this module holds the schema, the
connection and the salvage of a damaged file. Schema work goes through sqlite-utils
(`IndexDB.utils`).
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from ..core.errors import DamagedMetadata, IntegrityError


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


def _v4(db) -> None:
    # a team's shared cache (docs/sharing.md): named remotes, the keys whose signed results are
    # trusted (and revoked), where each pulled result came from, and which memo rows were pulled
    # (`memo.origin`: the signer's public key; NULL for a result computed here)
    t = db.utils
    t["remotes"].create({"name": str, "url": str, "endpoint_url": str}, pk="name")
    t["trust"].create({"name": str, "public_key": str, "revoked": int}, pk="name")
    t["trust"].create_index(["public_key"], unique=True)
    t["origins"].create({"key": str, "signer": str, "remote": str, "record": str,
                         "output_hash": str}, pk=("key", "signer"))
    db.conn.execute("ALTER TABLE memo ADD COLUMN origin TEXT")
    db.conn.execute("CREATE INDEX IF NOT EXISTS idx_memo_origin ON memo(origin)")


def _v5(db) -> None:
    # a warm no-op's receipt is the rows of the run it repeats (`runs.receipt_of`: that run,
    # never itself a repeat), each read as `cached`: 100,000 rows are not copied per no-op.
    # The memo's generation (meta 'memo_gen'): moved on, whoever writes, by every change of
    # what a key already maps to (another output or format, a deletion) — not by a new key;
    # `runs.memo_gen`: the generation at which a settled run's receipt was all in the memo —
    # while it stands, the next warm run need not join them again
    c = db.conn
    c.execute("ALTER TABLE runs ADD COLUMN receipt_of TEXT")
    c.execute("ALTER TABLE runs ADD COLUMN memo_gen INTEGER")
    c.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('memo_gen', '0')")
    bump = "BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'memo_gen'; END"
    # (an INSERT OR REPLACE deletes the old row without firing delete triggers — recursive
    # triggers are off, SQLite's default — so a replacement is judged before it happens)
    c.execute("CREATE TRIGGER IF NOT EXISTS memo_gen_replace BEFORE INSERT ON memo WHEN EXISTS "
              "(SELECT 1 FROM memo WHERE key = NEW.key AND (output_hash IS NOT NEW.output_hash "
              f"OR output_format IS NOT NEW.output_format)) {bump}")
    c.execute("CREATE TRIGGER IF NOT EXISTS memo_gen_update AFTER UPDATE ON memo WHEN "
              "OLD.key IS NOT NEW.key OR OLD.output_hash IS NOT NEW.output_hash OR "
              f"OLD.output_format IS NOT NEW.output_format {bump}")
    c.execute(f"CREATE TRIGGER IF NOT EXISTS memo_gen_delete AFTER DELETE ON memo {bump}")


MIGRATIONS = [_v1, _v2, _v3, _v4, _v5]
SCHEMA_VERSION = len(MIGRATIONS)


class IndexDB:
    def __init__(self, path: Path, readonly: bool | None = None):
        """Open (creating) index.db. `readonly`: None decides by whether this process may
        write the file and its directory; True reads it into memory (see the module doc)."""
        self.path = Path(path)
        memory = str(path) == ":memory:"
        self.readonly = (not memory and not writable(self.path)) if readonly is None else readonly
        self._utils = None
        try:
            if self.readonly:
                self.conn = _memory_copy(self.path)
            else:
                self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                            check_same_thread=False)
                _wal(self.conn)
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.execute("PRAGMA busy_timeout=30000")
            self.migrate()
        except sqlite3.DatabaseError as e:
            if is_damage(e):
                raise DamagedMetadata(damaged_message(self.path, e)) from None
            raise

    @property
    def utils(self):
        """The sqlite-utils view of the same connection (imported lazily)."""
        if self._utils is None:
            import sqlite_utils

            # (recursive triggers off, SQLite's default: an INSERT OR REPLACE of a memo row must
            # not fire the delete trigger of `_v5`, whose replace trigger judges it)
            self._utils = sqlite_utils.Database(self.conn, recursive_triggers=False)
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

    @property
    def journal(self):
        """The rows of this database (`repo.journal.Journal`): every statement e3 runs on
        them."""
        from .journal import Journal

        return Journal(self)

    def execute(self, sql: str, params=()):
        """Raw SQL, for tests and for callers not yet moved to the Journal."""
        return self.conn.execute(sql, params)

    def query(self, sql: str, params=()) -> list[dict]:
        """Raw SQL returning dicts, for tests (see `execute`)."""
        cur = self.conn.execute(sql, params)
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def transaction(self):
        """`BEGIN IMMEDIATE` … `COMMIT` (`ROLLBACK` on an exception), yielding the
        connection."""
        return _Tx(self.conn)

    def get_meta(self, key: str) -> str | None:
        return self.journal.get_meta(key)

    def set_meta(self, key: str, value: str) -> None:
        self.journal.set_meta(key, value)

    def close(self) -> None:
        self.conn.close()


def writable(path: Path) -> bool:
    """Whether this process may write index.db at `path` (and its directory, for the WAL)."""
    path = Path(path)
    if not os.access(path.parent, os.W_OK):
        return False
    return not path.exists() or os.access(path, os.W_OK)


def is_damage(e: BaseException) -> bool:
    """Whether a sqlite3 error means the file is damaged (not busy, not read-only)."""
    if not isinstance(e, sqlite3.DatabaseError):
        return False
    msg = str(e).lower()
    if "malformed" in msg or "not a database" in msg or "corrupt" in msg:
        return True
    return type(e) is sqlite3.DatabaseError


def damaged_message(path, e) -> str:
    return f"index.db is damaged ({e}: {path}); run 'e3 fsck --repair'"


def _ro_uri(path: Path, immutable: bool = False) -> str:
    return f"file:{quote(str(Path(path).resolve()))}?mode=ro" + ("&immutable=1" if immutable else "")


def _memory_copy(path: Path) -> sqlite3.Connection:
    """index.db read without writing anything beside it, copied into memory. Read-only WAL
    needs the -shm file to exist; without it (a cleanly closed database) the file is whole
    and is read as immutable."""
    mem = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    if not Path(path).exists():
        return mem  # nothing yet: an empty index (migrated in memory)
    err = None
    for immutable in (False, True):
        try:
            src = sqlite3.connect(_ro_uri(path, immutable), uri=True, timeout=30)
            try:
                src.backup(mem)
            finally:
                src.close()
            return mem
        except sqlite3.OperationalError as e:
            err = e
    raise err


def check(path: Path) -> str | None:
    """Why index.db at `path` is damaged (SQLite's quick_check), or None if it reads whole."""
    path = Path(path)
    if not path.exists():
        return None
    rows: list = []
    for immutable in (False, True):  # immutable: read-only, without a -shm file (see above)
        try:
            con = sqlite3.connect(_ro_uri(path, immutable), uri=True, timeout=30)
            try:
                rows = [r[0] for r in con.execute("PRAGMA quick_check").fetchall()]
            finally:
                con.close()
            break
        except sqlite3.DatabaseError as e:
            if is_damage(e):
                return str(e)
            if immutable:
                raise
    if rows != ["ok"]:
        return "; ".join(rows[:3])
    return None


#: tables whose rows `rebuild` carries over (the stat cache and facts are re-derived)
SALVAGE = ("meta", "executions", "memo", "provenance", "runs", "receipts", "episodes",
           "history", "awaits", "peers", "procs", "remotes", "trust", "origins")


def _salvage_rows(old: sqlite3.Connection, table: str, cols: list[str]) -> list[tuple]:
    """Every row of `table` that still reads, in rowid order; a damaged stretch is skipped by
    probing past it at growing distances."""
    sel = ", ".join(f'"{c}"' for c in cols)
    out: list[tuple] = []
    after, skip = 0, 0
    for _ in range(32):
        try:
            for r in old.execute(f'SELECT rowid, {sel} FROM "{table}" WHERE rowid > ? '
                                 f'ORDER BY rowid', (after + skip,)):
                out.append(tuple(r[1:]))
                after, skip = r[0], 0
            return out
        except sqlite3.DatabaseError:
            skip = min(max(1, skip * 4), 1 << 60)
    return out


def rebuild(path: Path) -> dict:
    """Replace a damaged index.db by a new one holding every row that still reads. The new
    database is built beside it and put in place last; the damaged file (and its -wal/-shm)
    is kept as `index.db.damaged-N`. Returns {"moved_to", "salvaged": {table: rows}}."""
    path = Path(path)
    tmp = path.with_name(path.name + ".rebuild")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")):
        p.unlink(missing_ok=True)
    new = IndexDB(tmp, readonly=False)
    salvaged: dict[str, int] = {}
    try:
        old = sqlite3.connect(_ro_uri(path), uri=True, timeout=30)
    except sqlite3.Error:
        old = None
    try:
        for table in SALVAGE if old is not None else ():
            try:
                have = {r[1] for r in old.execute(f'PRAGMA table_info("{table}")')}
            except sqlite3.DatabaseError:
                continue
            want = [r[1] for r in new.conn.execute(f'PRAGMA table_info("{table}")')]
            cols = [c for c in want if c in have]
            if not cols:
                continue
            rows = _salvage_rows(old, table, cols)
            marks = ", ".join("?" * len(cols))
            names = ", ".join(f'"{c}"' for c in cols)
            with new.transaction() as c:
                c.executemany(f'INSERT OR IGNORE INTO "{table}" ({names}) VALUES ({marks})',
                              rows)
            salvaged[table] = len(rows)
        with new.transaction() as c:  # salvaged memo rows: no warm run's check stands
            c.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 + (SELECT "
                      "COALESCE(MAX(memo_gen), 0) FROM runs) WHERE key = 'memo_gen'")
    finally:
        if old is not None:
            old.close()
        new.conn.execute("PRAGMA journal_mode=DELETE")  # one self-contained file to move in
        new.close()
    n = 1
    while any(Path(f"{path}.damaged-{n}{s}").exists() for s in ("", "-wal", "-shm")):
        n += 1
    moved = Path(f"{path}.damaged-{n}")
    # the -wal goes first: a stale WAL beside a new database would be replayed into it
    for s in ("-wal", "-shm"):
        if Path(f"{path}{s}").exists():
            os.rename(f"{path}{s}", f"{moved}{s}")
    if path.exists():
        os.rename(path, moved)
    os.rename(tmp, path)
    return {"moved_to": str(moved), "salvaged": salvaged}


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
