"""The Journal: the only code that reads and writes index.db's rows.

Every SQL statement of e3logic is a method here, named for what it means; the schema, its
migrations and the connection (pragmas, WAL, the damaged-file salvage) stay in `index.py`.
A `Journal` wraps one `IndexDB` connection and keeps no state of its own, so making one is
free: `repo.journal`, or `Journal(IndexDB(path))` over a connection of a thread's own (the
executor's flush, the working-copy publisher).

Transactions. A method that writes more than one row takes the write lock once (`BEGIN
IMMEDIATE` … `COMMIT`) and either writes everything or nothing: `flush` (executions, memo,
provenance, episodes, history, process groups of one beat), `start_run` (the next seq and the
run row), `end_run` (the run row and its receipt), `abandon_run` (the run, its unfinished
episodes and their history, its process groups). The `write_*` functions write inside the
caller's transaction (`with index.transaction() as conn:`), for callers that compose one.

Determinism. Every query whose rows can reach an identity, a plan, a receipt or a report is
ordered (`ORDER BY`); listings read only into sets are ordered by rowid, which costs nothing.
Batches stay batched: lookups by many keys are one statement per 500 keys, writes of many rows
one `executemany` per table.

Tables (see docs/internals.md, "index.db"): meta, wc_stat, executions, memo, provenance, runs,
receipts, episodes, history, awaits, procs, facts, peers; the shared cache's remotes, trust and
origins (docs/sharing.md).
"""
from __future__ import annotations

import os
import time

#: the unfinished and the final states of an episode (`exec.episodes`)
_UNFINISHED = "('plan','run','yield','await')"
_FINAL = "('ok','fail','cxl')"
#: keys per `IN (...)` statement: well under SQLite's host-parameter limit
CHUNK = 500


# -- writers inside the caller's transaction ------------------------------------------------
def write_executions(conn, recs, host: str) -> None:
    """Write finished executions (`exec.memo.ExecutionRecord`s), in order: one history row each
    in `executions`; for the successful ones (failures are never memoized) the memo row and
    the consumed (`in`, by position) and produced (`out`) provenance rows. One statement per
    table for the lot."""
    conn.executemany(
        "INSERT INTO executions(key, task_hash, dataflow, run, workspace, started, ended, "
        "duration, status, exit_code, host, output_hash, error) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [(r.key, r.task_hash, r.dataflow, r.run, r.workspace, r.started, r.ended,
          r.ended - r.started, r.status, r.exit_code, host, r.output_hash, r.error)
         for r in recs])
    ok = [r for r in recs if r.status == "ok"]
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


def write_episode_rows(conn, rows: tuple[list, list]) -> None:
    """Write (episode rows, history rows) as `exec.episodes.take_rows` makes them: episode rows
    `(episode, run, dataflow, key, profile, state, pgid)` replace the episode's row; history
    rows `(episode, seq, state, beat, note, ts)` are appended (a seq written twice keeps the
    last)."""
    eps, hist = rows
    conn.executemany("INSERT OR REPLACE INTO episodes(episode, run, dataflow, key, profile, "
                     "state, pgid) VALUES (?,?,?,?,?,?,?)", eps)
    conn.executemany("INSERT OR REPLACE INTO history(episode, seq, state, beat, note, ts) "
                     "VALUES (?,?,?,?,?,?)", hist)


def write_process_groups(conn, rows) -> None:
    """Record task process groups `(run, episode, pgid, start)`: a later run stops what a
    killed engine left behind (`Journal.process_groups`)."""
    conn.executemany("INSERT OR REPLACE INTO procs(run, episode, pgid, start) "
                     "VALUES (?,?,?,?)", rows)


def _chunks(items):
    for i in range(0, len(items), CHUNK):
        chunk = items[i:i + CHUNK]
        yield chunk, ",".join("?" * len(chunk))


#: a run `p`'s receipt rows `r`: its own, or those of the run it repeats (`runs.receipt_of`)
_ROWS_OF = "FROM runs p JOIN receipts r ON r.run = COALESCE(p.receipt_of, p.run)"


class Journal:
    """index.db's rows, through one `IndexDB` (see the module docstring)."""

    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index

    @property
    def _c(self):
        return self.index.conn

    def transaction(self):
        """`BEGIN IMMEDIATE` … `COMMIT` (or `ROLLBACK` on an exception), yielding the
        connection for the `write_*` functions."""
        return self.index.transaction()

    # -- meta: small named values ------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        r = self._c.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return r[0] if r else None

    def set_meta(self, key: str, value: str) -> None:
        self._c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def delete_meta(self, key: str) -> None:
        self._c.execute("DELETE FROM meta WHERE key=?", (key,))

    # -- the working copy: which root its files follow, and the stat cache --------------------
    def synced_root(self) -> str | None:
        """The root the working copy's files were last synced to (`wc_root`)."""
        return self.get_meta("wc_root")

    def sync_target(self) -> str | None:
        """The root a sync in progress is writing (`wc_target`): set means a command was
        killed mid-sync and the next one completes it."""
        return self.get_meta("wc_target")

    def begin_sync(self, target: str) -> None:
        self.set_meta("wc_target", target)

    def cancel_sync(self) -> None:
        self.delete_meta("wc_target")

    def end_sync(self, root: str) -> None:
        """The files now follow `root`: `wc_root` moves and the pending target is dropped, in
        one transaction."""
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('wc_root', ?)", (root,))
            c.execute("DELETE FROM meta WHERE key='wc_target'")

    def stat_cache(self, top: str | None = None) -> dict[str, tuple]:
        """path → (size, mtime_ns, ino, hash): every entry, or those under the folder `top` (a
        range of the primary key: a scan of inputs/ reads no row of outputs/)."""
        if top is None:
            cur = self._c.execute("SELECT path, size, mtime_ns, ino, hash FROM wc_stat "
                                  "ORDER BY path")
        else:  # '0' follows '/': exactly the paths below top/
            cur = self._c.execute("SELECT path, size, mtime_ns, ino, hash FROM wc_stat "
                                  "WHERE path > ? AND path < ? ORDER BY path",
                                  (top + "/", top + "0"))
        return {r[0]: r[1:] for r in cur}

    def stat_cache_of(self, paths) -> dict[str, tuple]:
        """path → (size, mtime_ns, ino, hash) for those of `paths` the cache holds (keyed
        lookups: ~1.5 times a scanned row's cost per path, so for a few paths of a big
        folder, not for most of it)."""
        out = {}
        for chunk, marks in _chunks(list(paths)):
            for r in self._c.execute("SELECT path, size, mtime_ns, ino, hash FROM wc_stat "
                                     f"WHERE path IN ({marks})", chunk):
                out[r[0]] = r[1:]
        return out

    def remember_stats(self, keep, drop=()) -> None:
        """One transaction: forget the paths `drop`, then cache `keep` rows
        `(path, size, mtime_ns, ino, hash)`."""
        with self.transaction() as c:
            c.executemany("DELETE FROM wc_stat WHERE path=?", [(p,) for p in drop])
            c.executemany("INSERT OR REPLACE INTO wc_stat(path,size,mtime_ns,ino,hash) "
                          "VALUES (?,?,?,?,?)", keep)

    # -- memo, executions, provenance ---------------------------------------------------------
    def memo_lookup(self, key: str) -> tuple | None:
        """(output hash, output format, duration) memoized for an execution key, or None."""
        return self._c.execute("SELECT output_hash, output_format, duration FROM memo "
                               "WHERE key=?", (key,)).fetchone()

    def memo_lookup_many(self, keys) -> dict[str, tuple]:
        """key → (output hash, format, duration) for those of `keys` memoized."""
        out = {}
        for chunk, q in _chunks(sorted(set(keys))):
            for k, h, f, d in self._c.execute(
                    f"SELECT key, output_hash, output_format, duration FROM memo "
                    f"WHERE key IN ({q}) ORDER BY key", chunk):
                out[k] = (h, f, d)
        return out

    def memo_by_tasks(self, task_hashes) -> dict[str, tuple]:
        """key → (output hash, format, duration) of every memo entry of these tasks: one query
        per 500 tasks (a run's prefetch)."""
        out = {}
        for chunk, q in _chunks(sorted(set(task_hashes))):
            for k, h, f, d in self._c.execute(
                    f"SELECT key, output_hash, output_format, duration FROM memo "
                    f"WHERE task_hash IN ({q}) ORDER BY key", chunk):
                out[k] = (h, f, d)
        return out

    def ok_durations(self, task_hashes) -> dict[str, list[float]]:
        """task hash → the durations of its successful executions, newest first (at most
        20,000 rows per 500 tasks)."""
        out: dict[str, list[float]] = {}
        for chunk, q in _chunks(sorted(set(task_hashes))):
            for t, d in self._c.execute(
                    f"SELECT task_hash, duration FROM executions WHERE status='ok' AND "
                    f"task_hash IN ({q}) ORDER BY id DESC LIMIT 20000", chunk):
                out.setdefault(t, []).append(d or 0.0)
        return out

    def record_executions(self, recs, host: str) -> None:
        """`write_executions` in a transaction of its own."""
        with self.transaction() as c:
            write_executions(c, recs, host)

    def provenance(self, key: str) -> list[tuple]:
        """(role, pos, path, hash) rows of an execution: `in` rows by position, then `out`."""
        return self._c.execute("SELECT role, pos, path, hash FROM provenance WHERE key=? "
                               "ORDER BY role, pos", (key,)).fetchall()

    def producer_of(self, path: str, h: str) -> str | None:
        """The memoized execution key that last wrote `h` at `path` (its produced row)."""
        r = self._c.execute("SELECT p.key FROM provenance p JOIN memo m ON m.key = p.key "
                            "WHERE p.role='out' AND p.path=? AND p.hash=? "
                            "ORDER BY p.rowid DESC LIMIT 1", (path, h)).fetchone()
        return r[0] if r else None

    def memo_outputs(self) -> list[tuple[str, str | None]]:
        """(key, output hash) of every memo entry, by key."""
        return self._c.execute("SELECT key, output_hash FROM memo ORDER BY key").fetchall()

    def memo_output_hashes(self) -> list[str]:
        """Every output hash the memo names (gc's roots)."""
        return [h for h, in self._c.execute("SELECT output_hash FROM memo "
                                            "WHERE output_hash IS NOT NULL ORDER BY rowid")]

    def memo_size(self) -> int:
        """How many memo entries (also fsck's probe that the file reads)."""
        return self._c.execute("SELECT COUNT(*) FROM memo").fetchone()[0]

    def drop_memo(self, keys) -> None:
        """Forget these memo entries (their outputs are gone), in one transaction."""
        with self.transaction() as c:
            c.executemany("DELETE FROM memo WHERE key=?", [(k,) for k in keys])

    def memo_executions(self) -> list[tuple[str, str, str]]:
        """(key, dataflow, task hash) of every memo entry, by key (the `execution` facts)."""
        return self._c.execute("SELECT key, dataflow, task_hash FROM memo "
                               "ORDER BY key").fetchall()

    def provenance_rows(self) -> list[tuple]:
        """(key, role, path, hash) of every provenance row (`consumed`/`produced` facts)."""
        return self._c.execute("SELECT key, role, path, hash FROM provenance "
                               "ORDER BY key, role, pos").fetchall()

    def latest_execution_key(self, dataflow: str | None = None) -> str | None:
        """The key of the newest execution (of `dataflow`)."""
        if dataflow is None:
            r = self._c.execute("SELECT key FROM executions ORDER BY id DESC LIMIT 1").fetchone()
        else:
            r = self._c.execute("SELECT key FROM executions WHERE dataflow=? "
                                "ORDER BY id DESC LIMIT 1", (dataflow,)).fetchone()
        return r[0] if r else None

    def execution_key_by_prefix(self, prefix: str) -> str | None:
        """The newest execution whose key starts with `prefix`."""
        r = self._c.execute("SELECT key FROM executions WHERE key LIKE ? "
                            "ORDER BY id DESC LIMIT 1", (prefix + "%",)).fetchone()
        return r[0] if r else None

    def ever_executed(self, names) -> set[str]:
        """Those of `names` with an execution row (any run, any outcome); one indexed
        statement per 500 names."""
        names = sorted(set(names))
        out: set[str] = set()
        for i in range(0, len(names), 500):
            part = names[i:i + 500]
            out.update(x for x, in self._c.execute(
                "SELECT DISTINCT dataflow FROM executions WHERE dataflow IN "
                f"({','.join('?' * len(part))})", part))
        return out

    def executed_dataflows(self) -> list[str]:
        """Every dataflow with an execution row, by name."""
        return [x for x, in self._c.execute("SELECT DISTINCT dataflow FROM executions "
                                            "ORDER BY dataflow")]

    def stats(self) -> dict:
        """Receipt outcomes over all runs and the work they represent, in one read:
        {executed, cached, done (seconds of successful executions), saved (memoized seconds of
        cached receipt rows), runs}."""
        r = self._c.execute(
            "SELECT (SELECT COUNT(*) FROM receipts WHERE outcome='executed'), "
            "(SELECT COUNT(*) FROM receipts WHERE outcome='cached'), "
            "(SELECT COALESCE(SUM(duration), 0) FROM executions WHERE status='ok'), "
            "(SELECT COALESCE(SUM(m.duration), 0) FROM receipts r JOIN memo m "
            " ON m.key = r.key WHERE r.outcome='cached'), "
            "(SELECT COUNT(*) FROM runs), "
            # the repeats' rows (those of the run each repeats, every one cached)
            "(SELECT COUNT(*) FROM runs p JOIN receipts r ON r.run = p.receipt_of), "
            "(SELECT COALESCE(SUM(m.duration), 0) FROM runs p JOIN receipts r "
            " ON r.run = p.receipt_of JOIN memo m ON m.key = r.key)").fetchone()
        out = dict(zip(("executed", "cached", "done", "saved", "runs"), r))
        out["cached"] += r[5]
        out["saved"] += r[6]
        return out

    # -- runs and receipts --------------------------------------------------------------------
    def start_run(self, ws: str, command: str = "", package: str | None = None, *,
                  now: float | None = None, pid: int | None = None) -> str:
        """Register a running run of `ws` (`r<seq>`, seq = the highest so far + 1, taken in the
        same transaction as the row) by this process (`pid`, with its start time so a reused
        pid is told apart). Returns the run id."""
        from .locks import process_start

        pid = os.getpid() if pid is None else pid
        now = time.time() if now is None else now
        with self.transaction() as c:
            seq = (c.execute("SELECT COALESCE(MAX(seq), 0) FROM runs").fetchone()[0] or 0) + 1
            run_id = f"r{seq}"
            c.execute("INSERT INTO runs(run, workspace, seq, started, status, pid, proc_start, "
                      "command, cancel_requested, pinned, package) VALUES (?,?,?,?,?,?,?,?,0,0,?)",
                      (run_id, ws, seq, now, "running", pid, process_start(pid),
                       command[:500], package))
        return run_id

    def end_run(self, run_id: str, status: str, *, commit: str | None = None,
                state_root: str | None = None, receipt_digest: str | None = None,
                parent: str | None = None, policy: str | None = None, receipt=None,
                sizes: dict | None = None, now: float | None = None,
                receipt_of: str | None = None, copied=None,
                memo_gen: int | None = None) -> bool:
        """Close the run row and write its receipt rows (`receipt`: [{dataflow, key, output,
        outcome}] in receipt order), in one transaction. `sizes` {dataflow: output size}: the
        run is settled. `receipt_of`: a run with the same receipt order whose rows stand for
        this run's, each `cached`, instead of sent row by row: a warm no-op repeating it keeps
        none of its own (`runs.receipt_of` names the run holding them), an incremental run
        copies those of `copied` (dataflow names: the rows of `receipt` they would be) inside
        the database and writes the others. `memo_gen`: a generation of the memo at which every
        key of the receipt mapped to its output (`settled_receipt`). A cancelled run is never
        overwritten by another status: False then."""
        sizes = sizes or {}
        now = time.time() if now is None else now
        with self.transaction() as c:
            cur = c.execute("SELECT status FROM runs WHERE run=?", (run_id,)).fetchone()
            if cur and cur[0] == "cancelled" and status != "cancelled":
                return False
            c.execute("UPDATE runs SET status=?, ended=?, commit_hash=?, state_root=?, "
                      "receipt_digest=?, parent_commit=?, policy=?, settled=?, memo_gen=? "
                      "WHERE run=?", (status, now, commit, state_root, receipt_digest, parent,
                                      policy, 1 if sizes else 0, memo_gen, run_id))
            if receipt_of is not None:  # the run holding the rows (a repeat's: its own)
                src = c.execute("SELECT COALESCE(receipt_of, run) FROM runs WHERE run=?",
                                (receipt_of,)).fetchone()
                receipt_of = src[0] if src else receipt_of
            if receipt_of is not None and copied is None:
                c.execute("UPDATE runs SET receipt_of=? WHERE run=?", (receipt_of, run_id))
            elif receipt_of is not None:
                c.execute("INSERT OR REPLACE INTO receipts(run, seq, dataflow, key, output_hash, "
                          "outcome, size) SELECT ?, seq, dataflow, key, output_hash, 'cached', "
                          "CASE WHEN ? THEN size END FROM receipts WHERE run=?",
                          (run_id, 1 if sizes else 0, receipt_of))
            if receipt is not None and (receipt_of is None or copied is not None):
                skip = copied or ()
                c.executemany("INSERT OR REPLACE INTO receipts(run, seq, dataflow, key, "
                              "output_hash, outcome, size) VALUES (?,?,?,?,?,?,?)",
                              [(run_id, i, r["dataflow"], r["key"], r["output"], r["outcome"],
                                sizes.get(r["dataflow"])) for i, r in enumerate(receipt)
                               if r["dataflow"] not in skip])
        return True

    def running_runs(self, ws: str | None = None) -> list[tuple[str, int, str | None]]:
        """(run, pid, process start time) of the runs marked running (of `ws`), by seq."""
        if ws is None:
            cur = self._c.execute("SELECT run, pid, proc_start FROM runs "
                                  "WHERE status='running' ORDER BY seq")
        else:
            cur = self._c.execute("SELECT run, pid, proc_start FROM runs WHERE workspace=? "
                                  "AND status='running' ORDER BY seq", (ws,))
        return cur.fetchall()

    def abandon_run(self, run_id: str, note: str, now: float | None = None) -> list[str]:
        """A run whose engine died: in one transaction the run becomes `abandoned` (if still
        running), each unfinished episode gets a `cxl` history row (next seq, its last beat,
        `note`) and state `cxl` — written as the executor writes episode rows
        (`write_episode_rows`) — and its process-group rows go. Returns the episodes
        cancelled, by name."""
        now = time.time() if now is None else now
        with self.transaction() as c:
            c.execute("UPDATE runs SET status='abandoned', ended=? WHERE run=? AND "
                      "status='running'", (now, run_id))
            eps = c.execute("SELECT episode, run, dataflow, key, profile, pgid FROM episodes "
                            f"WHERE run=? AND state NOT IN {_FINAL} ORDER BY episode",
                            (run_id,)).fetchall()
            marks = {ep: (seq, beat) for ep, seq, beat in c.execute(
                "SELECT episode, MAX(seq)+1, COALESCE(MAX(beat),0) FROM history "
                "WHERE episode IN (SELECT episode FROM episodes "
                f"WHERE run=? AND state NOT IN {_FINAL}) GROUP BY episode", (run_id,))}
            hist = []
            for ep, *_ in eps:
                seq, beat = marks.get(ep, (0, 0))
                hist.append((ep, seq, "cxl", beat, note, now))
            write_episode_rows(c, (
                [(ep, run, d, key, prof, "cxl", pg) for ep, run, d, key, prof, pg in eps], hist))
            c.execute("DELETE FROM procs WHERE run=?", (run_id,))
        return [e[0] for e in eps]

    def cancel_requested(self, run_id: str) -> bool:
        """Has `e3 cancel` asked this run to stop?"""
        r = self._c.execute("SELECT cancel_requested FROM runs WHERE run=?",
                            (run_id,)).fetchone()
        return bool(r and r[0])

    def request_cancel(self, runs) -> None:
        """Ask these runs to stop at their next beat (`runs.cancel_requested`), together."""
        with self.transaction() as c:
            c.executemany("UPDATE runs SET cancel_requested=1 WHERE run=?", [(r,) for r in runs])

    def run_status(self, run_id: str) -> str | None:
        """A run's status (running, ok, failed, cancelled, abandoned), None if no such run."""
        r = self._c.execute("SELECT status FROM runs WHERE run=?", (run_id,)).fetchone()
        return r[0] if r else None

    def recent_runs(self, limit: int = 50) -> list[str]:
        """The newest run ids, newest first."""
        return [x for x, in self._c.execute("SELECT run FROM runs ORDER BY seq DESC LIMIT ?",
                                            (limit,))]

    def latest_run_id(self) -> str | None:
        r = self.recent_runs(1)
        return r[0] if r else None

    def max_run_seq(self) -> int:
        """The highest run seq so far (0 before the first run)."""
        return int(self._c.execute("SELECT COALESCE(MAX(seq), 0) FROM runs").fetchone()[0] or 0)

    def newest_running_run(self, pid: int, after_seq: int = 0) -> str | None:
        """The newest run marked running by process `pid` with a seq above `after_seq`."""
        r = self._c.execute("SELECT run FROM runs WHERE status='running' AND pid=? AND seq>? "
                            "ORDER BY seq DESC LIMIT 1", (pid, after_seq)).fetchone()
        return r[0] if r else None

    def latest_run(self, ws: str) -> tuple | None:
        """(run, status, settled, package, state root, policy) of `ws`'s newest run."""
        return self._c.execute(
            "SELECT run, status, settled, package, state_root, policy FROM runs "
            "WHERE workspace=? ORDER BY seq DESC LIMIT 1", (ws,)).fetchone()

    def memo_generation(self) -> int:
        """The memo's generation: moved on by every change of what a key already maps to
        (another output or format, a deletion), not by a new key."""
        r = self._c.execute("SELECT value FROM meta WHERE key='memo_gen'").fetchone()
        return int(r[0]) if r else 0

    def settled_receipt(self, run_id: str, memo_gen: int | None = None) -> list[tuple]:
        """A run's receipt rows in order, each with what the memo says of its key now:
        (dataflow, key, output hash, size, memo output hash, memo output format, outcome).
        `memo_gen`: the memo's generation now (read before this call) — when the run's
        receipt was all in the memo at that very generation, the memo is not read again: its
        columns are then the row's output and None."""
        memo, join = "m.output_hash, m.output_format", " LEFT JOIN memo m ON m.key = r.key"
        if memo_gen is not None and self._c.execute(
                "SELECT memo_gen FROM runs WHERE run=?", (run_id,)).fetchone() == (memo_gen,):
            memo, join = "r.output_hash, NULL", ""
        return self._c.execute(
            "SELECT r.dataflow, r.key, r.output_hash, "
            "CASE WHEN p.receipt_of IS NULL OR p.settled THEN r.size END, "
            f"{memo}, CASE WHEN p.receipt_of IS NULL THEN r.outcome ELSE 'cached' END "
            f"{_ROWS_OF}{join} WHERE p.run=? ORDER BY r.seq", (run_id,)).fetchall()

    def receipt_digest(self, run_id: str) -> str | None:
        """The digest of a run's receipt (None if it has none)."""
        r = self._c.execute("SELECT receipt_digest FROM runs WHERE run=?", (run_id,)).fetchone()
        return r[0] if r else None

    def parent_commit(self, ws: str) -> str:
        """The commit hash of `ws`'s newest committed run ("" before the first)."""
        r = self._c.execute(
            "SELECT commit_hash FROM runs WHERE workspace=? AND commit_hash IS NOT NULL "
            "ORDER BY seq DESC LIMIT 1", (ws,)).fetchone()
        return r[0] if r else ""

    def failed_in_latest_commit(self, ws: str) -> list[str]:
        """The dataflows that failed in `ws`'s newest committed run, in receipt order."""
        return [d for d, in self._c.execute(
            "SELECT dataflow FROM receipts WHERE run=(SELECT run FROM runs WHERE workspace=? "
            "AND commit_hash IS NOT NULL ORDER BY seq DESC LIMIT 1) AND outcome='failed' "
            "ORDER BY seq", (ws,))]  # (a repeat has no rows of its own, and nothing failed)

    def latest_settled_run(self, ws: str) -> tuple[str, str, str | None] | None:
        """(run, state root, package) of `ws`'s newest settled run."""
        return self._c.execute("SELECT run, state_root, package FROM runs WHERE workspace=? "
                               "AND settled=1 ORDER BY seq DESC LIMIT 1", (ws,)).fetchone()

    def latest_finished_run(self, ws: str) -> str | None:
        """`ws`'s newest run that finished (ok or failed; not cancelled nor abandoned)."""
        r = self._c.execute("SELECT run FROM runs WHERE workspace=? AND status IN "
                            "('ok','failed') ORDER BY seq DESC LIMIT 1", (ws,)).fetchone()
        return r[0] if r else None

    def receipt_keys(self, run_id: str) -> dict[str, str | None]:
        """dataflow → execution key of a run's receipt, in receipt order."""
        return dict(self._c.execute(f"SELECT r.dataflow, r.key {_ROWS_OF} WHERE p.run=? "
                                    "ORDER BY r.seq", (run_id,)))

    def failed_in_run(self, run_id: str) -> list[str]:
        """The dataflows a run's receipt says failed, in receipt order (a repeat has no rows
        of its own, and nothing failed)."""
        return [d for d, in self._c.execute("SELECT dataflow FROM receipts WHERE run=? AND "
                                            "outcome='failed' ORDER BY seq", (run_id,))]

    def pinned_state_roots(self) -> list[str]:
        """The state roots of pinned runs, by seq."""
        return [h for h, in self._c.execute("SELECT state_root FROM runs WHERE pinned=1 AND "
                                            "state_root IS NOT NULL ORDER BY seq")]

    def runs_go_reads(self) -> list[tuple[str, str]]:
        """(run, state root), by seq, of the runs `go` may compare a workspace with: per
        workspace its newest run, its newest run with a state root and its newest settled run
        (gc keeps their trees and receipt outputs)."""
        return self._c.execute("""
SELECT run, state_root FROM runs AS r
WHERE state_root IS NOT NULL AND workspace IS NOT NULL AND (
    seq = (SELECT MAX(seq) FROM runs WHERE workspace = r.workspace)
 OR seq = (SELECT MAX(seq) FROM runs WHERE workspace = r.workspace AND state_root IS NOT NULL)
 OR seq = (SELECT MAX(seq) FROM runs WHERE workspace = r.workspace AND status = 'ok'
           AND settled = 1))
ORDER BY seq""").fetchall()

    def receipt_outputs(self, run_id: str) -> list[str]:
        """The output hashes a run's receipt names, in receipt order."""
        return [o for o, in self._c.execute(f"SELECT r.output_hash {_ROWS_OF} WHERE p.run=? "
                                            "AND r.output_hash IS NOT NULL ORDER BY r.seq",
                                            (run_id,))]

    def state_roots_of(self, ws: str) -> list[tuple[str, str, str | None]]:
        """(run, state root, package) of `ws`'s runs with a state root, newest first."""
        return self._c.execute("SELECT run, state_root, package FROM runs WHERE workspace=? "
                               "AND state_root IS NOT NULL ORDER BY seq DESC", (ws,)).fetchall()

    def state_roots(self) -> list[tuple[str, str]]:
        """(run, state root) of every run with one, by seq."""
        return self._c.execute("SELECT run, state_root FROM runs WHERE state_root IS NOT NULL "
                               "ORDER BY seq").fetchall()

    def replace_state_roots(self, changes) -> None:
        """(new state root, run) pairs: each run's state root is replaced and the run no longer
        counts as settled (fsck's mend), in one transaction."""
        with self.transaction() as c:
            c.executemany("UPDATE runs SET state_root=?, settled=0 WHERE run=?", changes)

    # -- episodes, history, awaits, process groups --------------------------------------------
    def record_episode_rows(self, rows: tuple[list, list]) -> None:
        """`write_episode_rows` in a transaction of its own."""
        with self.transaction() as c:
            write_episode_rows(c, rows)

    def episode_histories(self, run: str | None = None) -> list[dict]:
        """Episodes (of one run, or all) by run and name, each with its history
        [{state, beat, note}] by seq: two queries whatever the number of episodes."""
        if run:
            eps = self._c.execute("SELECT episode, run, dataflow, state FROM episodes "
                                  "WHERE run=? ORDER BY run, episode", (run,)).fetchall()
            hist = self._c.execute(
                "SELECT h.episode, h.state, h.beat, h.note FROM history h JOIN episodes e "
                "ON e.episode = h.episode WHERE e.run=? ORDER BY h.episode, h.seq", (run,))
        else:
            eps = self._c.execute("SELECT episode, run, dataflow, state FROM episodes "
                                  "ORDER BY run, episode").fetchall()
            hist = self._c.execute("SELECT episode, state, beat, note FROM history "
                                   "ORDER BY episode, seq")
        by_ep: dict[str, list] = {}
        for e, s, b, n in hist:
            by_ep.setdefault(e, []).append({"state": s, "beat": b, "note": n})
        return [{"episode": e, "run": r, "dataflow": d, "state": s, "history": by_ep.get(e, [])}
                for e, r, d, s in eps]

    def failure_notes(self, run_id: str) -> list[tuple[str, str]]:
        """(dataflow, note) of each `fail` history row of a run's episodes, by episode and
        seq (as a dict: each dataflow's last failure note)."""
        return self._c.execute("SELECT e.dataflow, h.note FROM episodes e JOIN history h ON "
                               "h.episode = e.episode WHERE e.run=? AND h.state='fail' "
                               "ORDER BY e.episode, h.seq", (run_id,)).fetchall()

    def episode_running(self, key: str) -> bool:
        """Is an episode of this execution key still unfinished?"""
        r = self._c.execute(f"SELECT 1 FROM episodes WHERE key=? AND state IN {_UNFINISHED} "
                            "LIMIT 1", (key,)).fetchone()
        return r is not None

    def latest_episode_key(self, dataflow: str) -> str | None:
        """The execution key of `dataflow`'s most recently written episode (a running one has
        no execution row yet)."""
        r = self._c.execute("SELECT key FROM episodes WHERE dataflow=? AND key IS NOT NULL "
                            "ORDER BY rowid DESC LIMIT 1", (dataflow,)).fetchone()
        return r[0] if r else None

    def episode_states(self) -> list[tuple[str, str, str]]:
        """(episode, dataflow, state) of every episode, by name (`episode`/`state` facts)."""
        return self._c.execute("SELECT episode, dataflow, state FROM episodes "
                               "ORDER BY episode").fetchall()

    def record_await(self, episode: str, awaited: str) -> None:
        """Episode `episode` waits for `awaited` (`run:dataflow`); recorded once."""
        with self.transaction() as c:
            c.execute("INSERT OR IGNORE INTO awaits(episode, awaited) VALUES (?,?)",
                      (episode, awaited))

    def await_edges(self) -> list[tuple[str, str]]:
        """(episode, awaited) of every await, in order (`awaits` facts)."""
        return self._c.execute("SELECT episode, awaited FROM awaits "
                               "ORDER BY episode, awaited").fetchall()

    def record_process_groups(self, rows) -> None:
        """`write_process_groups` in a transaction of its own."""
        with self.transaction() as c:
            write_process_groups(c, rows)

    def process_groups(self, run_id: str) -> dict[int, int]:
        """pgid → leader start time of the task process groups a run recorded, by pgid."""
        return dict(self._c.execute("SELECT pgid, start FROM procs WHERE run=? ORDER BY pgid",
                                    (run_id,)))

    def clear_process_groups(self, run_id: str) -> None:
        """A run's process groups are gone (it ended)."""
        self._c.execute("DELETE FROM procs WHERE run=?", (run_id,))

    # -- the executor's flush -----------------------------------------------------------------
    def flush(self, records, episode_rows: tuple[list, list], procs, host: str) -> bool:
        """One beat's rows in one transaction: executions (with memo and provenance for the
        successful ones), episode and history rows, process groups. Nothing is written (and
        False returned) when there is nothing to write."""
        if not (records or episode_rows[0] or episode_rows[1] or procs):
            return False
        with self.transaction() as c:
            write_executions(c, records, host)
            write_episode_rows(c, episode_rows)
            write_process_groups(c, procs)
        return True

    # -- facts --------------------------------------------------------------------------------
    def facts(self, scope: str) -> list[tuple[str, str]]:
        """(relation, canonical-JSON args) stored under `scope`, in order."""
        return self._c.execute("SELECT relation, args FROM facts WHERE scope=? "
                               "ORDER BY relation, args", (scope,)).fetchall()

    def store_facts(self, scope: str, rows) -> None:
        """Keep (relation, args JSON) rows under `scope` (rows already there stay), in one
        transaction."""
        with self.transaction() as c:
            c.executemany("INSERT OR IGNORE INTO facts(scope, relation, args) VALUES (?,?,?)",
                          [(scope, rel, args) for rel, args in rows])

    # -- the shared cache: remotes, trusted keys, pulled results (docs/sharing.md) ------------
    def remotes(self) -> list[tuple[str, str, str | None]]:
        """(name, url, endpoint url) of every remote, by name."""
        return self._c.execute("SELECT name, url, endpoint_url FROM remotes "
                               "ORDER BY name").fetchall()

    def add_remote(self, name: str, url: str, endpoint_url: str | None = None) -> bool:
        """Record a remote; False (nothing written) when the name is taken."""
        with self.transaction() as c:
            if c.execute("SELECT 1 FROM remotes WHERE name=?", (name,)).fetchone():
                return False
            c.execute("INSERT INTO remotes(name, url, endpoint_url) VALUES (?,?,?)",
                      (name, url, endpoint_url))
        return True

    def remove_remote(self, name: str) -> bool:
        """Forget a remote; False when there is none of that name."""
        with self.transaction() as c:
            return c.execute("DELETE FROM remotes WHERE name=?", (name,)).rowcount > 0

    def trusted_keys(self) -> list[tuple[str, str, int]]:
        """(name, public key, revoked 0/1) of every key named by `trust add`, by name."""
        return self._c.execute("SELECT name, public_key, revoked FROM trust "
                               "ORDER BY name").fetchall()

    def trust_key(self, name: str, public_key: str) -> tuple[str, str, int] | None:
        """Trust `public_key` under `name`, unless the name or the key is already there: then
        nothing is written and that row (name, public key, revoked) is returned."""
        with self.transaction() as c:
            r = c.execute("SELECT name, public_key, revoked FROM trust WHERE name=? OR "
                          "public_key=? ORDER BY name LIMIT 1", (name, public_key)).fetchone()
            if r is not None:
                return r
            c.execute("INSERT INTO trust(name, public_key, revoked) VALUES (?,?,0)",
                      (name, public_key))
        return None

    def revoke_key(self, name: str) -> list[str] | None:
        """Revoke the key trusted as `name` and drop the memo rows pulled under it, in one
        transaction: the dropped execution keys, sorted (None: no such name). Their origins
        stay, so what they produced is still known to be tainted (rules/trust.dl)."""
        with self.transaction() as c:
            r = c.execute("SELECT public_key FROM trust WHERE name=?", (name,)).fetchone()
            if r is None:
                return None
            c.execute("UPDATE trust SET revoked=1 WHERE name=?", (name,))
            keys = [k for k, in c.execute("SELECT key FROM memo WHERE origin=? ORDER BY key",
                                          (r[0],))]
            c.execute("DELETE FROM memo WHERE origin=?", (r[0],))
        return keys

    def shareable_results(self) -> list[tuple]:
        """What `e3 push` signs: every memo entry computed here (not pulled) by a dataflow
        (its produced row names a dataset under outputs/), with its consumed inputs in order:
        (key, task hash, output hash, output format, dataflow, output path,
        [(input path, input hash), ...]), by key."""
        rows = self._c.execute(
            "SELECT m.key, m.task_hash, m.output_hash, m.output_format, m.dataflow, p.path "
            "FROM memo m JOIN provenance p ON p.key = m.key AND p.role='out' "
            "WHERE m.origin IS NULL AND m.output_hash IS NOT NULL AND p.path LIKE 'outputs/%' "
            "ORDER BY m.key").fetchall()
        ins: dict[str, list] = {}
        for k, path, h in self._c.execute(
                "SELECT p.key, p.path, p.hash FROM provenance p JOIN memo m ON m.key = p.key "
                "WHERE p.role='in' AND m.origin IS NULL ORDER BY p.key, p.pos"):
            ins.setdefault(k, []).append((path, h))
        return [(*r, ins.get(r[0], [])) for r in rows]

    def add_pulled(self, results) -> int:
        """Memo rows for results pulled from a remote, in one transaction: each
        `(key, task hash, output hash, output format, dataflow, output path, [(input path,
        hash), ...], signer, remote, record)` gets a memo row with its origin (the signer), its
        consumed and produced provenance rows and an `origins` row. A key the memo already
        holds (computed here, or pulled before) keeps its row. Returns how many memo rows
        were added."""
        added = 0
        with self.transaction() as c:
            for (key, task, out, fmt, dataflow, out_path, inputs, signer, remote,
                 record) in results:
                cur = c.execute("INSERT OR IGNORE INTO memo(key, output_hash, output_format, "
                                "task_hash, dataflow, duration, origin) VALUES (?,?,?,?,?,0,?)",
                                (key, out, fmt, task, dataflow, signer))
                if cur.rowcount:
                    added += 1
                    c.executemany("INSERT OR REPLACE INTO provenance(key, role, pos, path, "
                                  "hash) VALUES (?,?,?,?,?)",
                                  [(key, "in", i, p, h) for i, (p, h) in enumerate(inputs)]
                                  + [(key, "out", 0, out_path, out)])
                c.execute("INSERT OR IGNORE INTO origins(key, signer, remote, record, "
                          "output_hash) VALUES (?,?,?,?,?)", (key, signer, remote, record, out))
        return added

    def origin_rows(self) -> list[tuple[str, str, str]]:
        """(execution key, signer's trusted name, remote) of every pulled result that still
        stands for its key: the memo row is the one pulled, or a revocation dropped it (a
        result computed here since supersedes it), by key (the `origin` facts)."""
        return self._c.execute(
            "SELECT o.key, t.name, o.remote FROM origins o JOIN trust t ON t.public_key = "
            "o.signer LEFT JOIN memo m ON m.key = o.key WHERE m.key IS NULL OR "
            "m.origin = o.signer ORDER BY o.key, t.name, o.remote").fetchall()

    def revoked_results(self) -> list[tuple[str, str, str]]:
        """(execution key, revoked key's name, output hash) of every pulled result signed by
        a key since revoked that no result computed (or pulled) here has replaced, by key."""
        return self._c.execute(
            "SELECT o.key, t.name, o.output_hash FROM origins o JOIN trust t ON "
            "t.public_key = o.signer LEFT JOIN memo m ON m.key = o.key WHERE t.revoked=1 AND "
            "m.key IS NULL ORDER BY o.key, t.name").fetchall()
