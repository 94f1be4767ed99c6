"""repo.index: index.db in WAL mode, schema versioned by user_version and migrated on open."""
import multiprocessing as mp
import sqlite3

import pytest

from e3logic.core.errors import IntegrityError
from e3logic.repo import index
from e3logic.repo.index import IndexDB

BASE = len(index.MIGRATIONS)  # the shipped schema version (later issues append migrations)
TABLES = {"meta", "wc_stat", "executions", "memo", "provenance", "runs", "receipts", "episodes",
          "history", "awaits", "facts", "peers"}


def tables(path):
    with sqlite3.connect(path) as c:
        return {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def user_version(path):
    with sqlite3.connect(path) as c:
        return c.execute("PRAGMA user_version").fetchone()[0]


def test_a_new_database_gets_every_documented_table_at_the_current_version(tmp_path):
    db = IndexDB(tmp_path / "index.db")
    assert TABLES <= tables(tmp_path / "index.db")
    assert db.version == BASE == index.SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reopening_a_current_database_runs_no_migration(tmp_path, monkeypatch):
    IndexDB(tmp_path / "index.db").close()
    calls = []

    def counting(step):
        return lambda db: (calls.append(step.__name__), step(db))

    monkeypatch.setattr(index, "MIGRATIONS", [counting(s) for s in index.MIGRATIONS])
    IndexDB(tmp_path / "index.db").close()
    assert calls == []


def _vnext_adds_a_column_and_a_row(db):
    db.execute("ALTER TABLE memo ADD COLUMN size INTEGER")
    db.execute("CREATE TABLE IF NOT EXISTS applied (n INTEGER)")
    db.execute("INSERT INTO applied VALUES (1)")


def test_an_appended_migration_is_applied_once_and_bumps_user_version(tmp_path, monkeypatch):
    IndexDB(tmp_path / "index.db").close()
    monkeypatch.setattr(index, "MIGRATIONS", index.MIGRATIONS + [_vnext_adds_a_column_and_a_row])
    for _ in range(3):
        IndexDB(tmp_path / "index.db").close()
    assert user_version(tmp_path / "index.db") == BASE + 1
    with sqlite3.connect(tmp_path / "index.db") as c:
        assert c.execute("SELECT count(*) FROM applied").fetchone()[0] == 1
        assert "size" in [r[1] for r in c.execute("PRAGMA table_info(memo)")]


def test_a_failing_migration_leaves_the_database_as_it_was_and_is_retried(tmp_path, monkeypatch):
    IndexDB(tmp_path / "index.db").close()

    def half_then_fail(db):
        db.execute("CREATE TABLE half (x)")
        raise RuntimeError("bug in migration")

    monkeypatch.setattr(index, "MIGRATIONS", index.MIGRATIONS + [half_then_fail])
    with pytest.raises(RuntimeError):
        IndexDB(tmp_path / "index.db")
    assert user_version(tmp_path / "index.db") == BASE
    assert "half" not in tables(tmp_path / "index.db")
    monkeypatch.setattr(index, "MIGRATIONS",
                        index.MIGRATIONS[:BASE] + [_vnext_adds_a_column_and_a_row])
    IndexDB(tmp_path / "index.db").close()
    assert user_version(tmp_path / "index.db") == BASE + 1


def test_the_first_migration_is_atomic_too(tmp_path, monkeypatch):
    def crash(db):
        raise RuntimeError("crash after creating tables")

    monkeypatch.setattr(index, "MIGRATIONS", index.MIGRATIONS + [crash])
    with pytest.raises(RuntimeError):
        IndexDB(tmp_path / "index.db")
    assert tables(tmp_path / "index.db") == set()
    monkeypatch.setattr(index, "MIGRATIONS", index.MIGRATIONS[:BASE])
    assert IndexDB(tmp_path / "index.db").version == BASE


def test_a_database_from_a_newer_e3_is_refused(tmp_path):
    IndexDB(tmp_path / "index.db").close()
    with sqlite3.connect(tmp_path / "index.db") as c:
        c.execute("PRAGMA user_version=99")
    with pytest.raises(IntegrityError) as e:
        IndexDB(tmp_path / "index.db")
    assert "newer" in str(e.value) and "upgrade" in str(e.value)


def _open(path, barrier, q):
    try:
        barrier.wait()
        db = IndexDB(path)
        q.put(("ok", db.version))
        db.close()
    except Exception as e:  # pragma: no cover - reported to the parent
        q.put(("error", repr(e)))


def test_concurrent_openers_of_a_new_database_migrate_it_exactly_once(tmp_path, monkeypatch):
    monkeypatch.setattr(index, "MIGRATIONS", index.MIGRATIONS + [_vnext_adds_a_column_and_a_row])
    ctx = mp.get_context("fork")  # children inherit the extra migration
    n = 6
    barrier, q = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_open, args=(tmp_path / "index.db", barrier, q)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert results == [("ok", BASE + 1)] * n
    with sqlite3.connect(tmp_path / "index.db") as c:
        assert c.execute("SELECT count(*) FROM applied").fetchone()[0] == 1


def test_meta_values_round_trip_and_transactions_roll_back_on_error(tmp_path):
    db = IndexDB(tmp_path / "index.db")
    assert db.get_meta("k") is None
    db.set_meta("k", "v1")
    db.set_meta("k", "v2")
    assert db.get_meta("k") == "v2"
    with pytest.raises(ValueError):
        with db.transaction() as c:
            c.execute("INSERT INTO meta VALUES ('t', 'x')")
            raise ValueError("abort")
    assert db.get_meta("t") is None
    assert db.query("SELECT key, value FROM meta WHERE key != 'memo_gen'") == [
        {"key": "k", "value": "v2"}]


def test_opening_a_migrated_database_does_not_import_sqlite_utils(tmp_path):
    """sqlite-utils (which imports numpy) is for schema work, not for every command."""
    import subprocess
    import sys

    from .helpers import ROOT

    IndexDB(tmp_path / "index.db").close()
    code = ("import sys; from e3logic.repo.index import IndexDB; "
            f"IndexDB({str(tmp_path / 'index.db')!r}).get_meta('x'); "
            "print('sqlite_utils' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT)}, check=True).stdout
    assert out.split() == ["False", "False"]


def test_a_version_2_database_gains_the_warm_path_columns_and_its_old_runs_stay_unsettled(
        tmp_path, monkeypatch):
    monkeypatch.setattr(index, "MIGRATIONS", index.MIGRATIONS[:2])
    db = IndexDB(tmp_path / "index.db")
    db.execute("INSERT INTO runs(run, workspace, seq, status) VALUES ('r1', 'main', 1, 'ok')")
    db.execute("INSERT INTO receipts(run, seq, dataflow) VALUES ('r1', 0, 'a')")
    db.close()
    monkeypatch.undo()
    db = IndexDB(tmp_path / "index.db")
    assert db.version == index.SCHEMA_VERSION >= 3
    assert db.query("SELECT run, settled, package FROM runs") == \
        [{"run": "r1", "settled": None, "package": None}]
    assert db.query("SELECT dataflow, size FROM receipts") == [{"dataflow": "a", "size": None}]
    plan = db.execute("EXPLAIN QUERY PLAN SELECT run FROM runs WHERE workspace='main' "
                      "ORDER BY seq DESC LIMIT 1").fetchall()
    assert "idx_runs_workspace_seq" in str(plan)


def test_switching_to_wal_retries_while_another_opener_holds_the_new_database():
    from e3logic.repo.index import _wal

    class Conn:
        calls = 0

        def execute(self, sql):
            Conn.calls += 1
            if Conn.calls < 3:
                raise sqlite3.OperationalError("database is locked")

    _wal(Conn())
    assert Conn.calls == 3


def test_switching_to_wal_gives_up_on_other_errors_at_once():
    from e3logic.repo.index import _wal

    class Conn:
        def execute(self, sql):
            raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError, match="disk"):
        _wal(Conn())


def test_a_file_that_is_not_a_database_is_refused_naming_fsck_repair(tmp_path):
    from e3logic.core.errors import DamagedMetadata

    p = tmp_path / "index.db"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DamagedMetadata) as e:
        IndexDB(p)
    assert "index.db is damaged" in str(e.value) and "e3 fsck --repair" in str(e.value)
    assert e.value.exit_code == 2
    assert index.check(p) is not None


def test_a_read_only_open_reads_a_copy_in_memory_and_never_touches_the_file(tmp_path):
    p = tmp_path / "index.db"
    db = IndexDB(p)
    db.set_meta("k", "v")
    db.close()
    before = p.read_bytes()
    ro = IndexDB(p, readonly=True)
    assert ro.readonly and ro.get_meta("k") == "v"
    ro.set_meta("k", "changed in memory")  # a cache write of a read command: goes nowhere
    ro.close()
    assert p.read_bytes() == before
    assert IndexDB(p).get_meta("k") == "v"


def test_a_healthy_database_passes_the_check(tmp_path):
    IndexDB(tmp_path / "index.db").close()
    assert index.check(tmp_path / "index.db") is None
    assert index.check(tmp_path / "absent.db") is None


def test_rebuild_keeps_every_readable_row_and_the_old_file_beside_it(tmp_path):
    p = tmp_path / "index.db"
    db = IndexDB(p)
    with db.transaction() as c:
        c.executemany("INSERT INTO memo(key, output_hash) VALUES (?, ?)",
                      [(f"k{i}", "a" * 64) for i in range(50)])
        c.execute("INSERT INTO wc_stat(path, hash) VALUES ('inputs/x', 'h')")
    db.close()
    info = index.rebuild(p)
    assert info["salvaged"]["memo"] == 50 and "wc_stat" not in info["salvaged"]
    assert (tmp_path / "index.db.damaged-1").exists() and info["moved_to"].endswith("damaged-1")
    assert not (tmp_path / "index.db.rebuild").exists()
    db = IndexDB(p)
    assert db.execute("SELECT COUNT(*) FROM memo").fetchone()[0] == 50
    assert db.execute("SELECT COUNT(*) FROM wc_stat").fetchone()[0] == 0  # a cache: re-derived
    assert index.check(p) is None


def test_after_a_rebuild_no_warm_runs_memo_check_stands(tmp_path):
    p = tmp_path / "index.db"
    db = IndexDB(p)
    with db.transaction() as c:  # a warm run recorded a generation far past the memo's rows
        c.execute("INSERT INTO memo(key, output_hash) VALUES ('k', 'h')")
        c.execute("UPDATE meta SET value='500' WHERE key='memo_gen'")
        c.execute("INSERT INTO runs(run, seq, memo_gen) VALUES ('r1', 1, 500)")
    db.close()
    index.rebuild(p)
    db = IndexDB(p)
    assert db.journal.memo_generation() > 500  # the salvaged memo is read again


def test_rebuild_of_a_file_that_is_not_a_database_gives_a_fresh_one(tmp_path):
    p = tmp_path / "index.db"
    p.write_bytes(b"garbage" * 1000)
    (tmp_path / "index.db-wal").write_bytes(b"stale wal")
    index.rebuild(p)
    assert (tmp_path / "index.db.damaged-1").read_bytes() == b"garbage" * 1000
    assert (tmp_path / "index.db.damaged-1-wal").read_bytes() == b"stale wal"
    assert not (tmp_path / "index.db-wal").exists()
    assert IndexDB(p).version == index.SCHEMA_VERSION
    index.rebuild(p)  # a second rebuild keeps the first damaged file
    assert (tmp_path / "index.db.damaged-2").exists() and (tmp_path / "index.db.damaged-1").exists()
