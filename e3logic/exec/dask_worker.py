"""The dask worker's side of the `dask` backend: imported on dask workers only (the engine
imports it solely to name its functions in what it submits; nothing here runs in the engine).

A dask worker never sees the project directory. What a task needs reaches it through the
cluster, by content hash:

- each input object is a dask key `e3-object-<hash>` (its bytes), a dependency of the tasks
  that read it: dask sends it to a worker at most once and keeps it there for the run's other
  tasks; the worker writes it once into its cache, `<cache>/objects/<hash>` (read-only),
  after checking that it hashes to its name — a task is never handed bytes that do not;
- the package's module files are a key `e3-modules-<hash>` ({relative path: bytes}),
  materialized by the runtimes once per hash per worker, `<cache>/modules/<hash>/` (python
  tasks import from there) and `<cache>/bundles/<hash>/` (a shell task's read-only `{bundle}`).

The task runs exactly as locally: `Runtimes` (`exec/runtimes.py`, `isolate=True` like the
`processes` backend) — python tasks in a pool of worker processes, shell tasks in their own
process groups, budgets (wall, CPU, memory, IO) enforced here, a breach failing the task with
its reason. It runs in a scratch directory of its own (`<cache>/tasks/<id>/work`, removed
after), with the environment variables the engine promised (`E3_DATAFLOW`, `E3_EXECUTION`,
`E3_LEASES`, `E3_PROFILE`, `E3_RUN_TOKEN`). What comes back is a dict: status, reason, the
output's bytes and hash, the log's bytes. The engine checks the hash again and commits.

`<cache>` is `$E3_WORKER_CACHE`, else `<tempdir>/e3-worker-<uid>` (shared by the workers of
one user on one machine: every write into it is atomic).

Cancelling: dask cannot stop a task's thread, so the engine also calls `cancel(episode, ...)`
(and `cancel_run(token, ...)` at the end of a run) on every worker (`Client.run`); the task's
process group is killed and it answers `cxl`.
"""
from __future__ import annotations

import atexit
import itertools
import os
import tempfile
import threading
from pathlib import Path

#: the longest log a task sends back (its end is kept)
LOG_MAX = 8 << 20

_station = None
_station_lock = threading.Lock()


def cache_dir() -> Path:
    """This worker's cache: `$E3_WORKER_CACHE`, else `<tempdir>/e3-worker-<uid>`."""
    d = os.environ.get("E3_WORKER_CACHE")
    return Path(d) if d else Path(tempfile.gettempdir()) / f"e3-worker-{os.getuid()}"


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return ""


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return os.cpu_count() or 1


class Station:
    """One per worker process: an anyio event loop in a thread of its own (a blocking portal)
    running a `Runtimes` with `slots` python workers; what runs now, by episode."""

    def __init__(self, cache: Path, slots: int):
        from .runtimes import Runtimes

        self.cache = cache
        (cache / "objects").mkdir(parents=True, exist_ok=True)
        (cache / "tasks").mkdir(parents=True, exist_ok=True)
        self.portal = _start_portal()
        self.runtimes = Runtimes(workers=slots, cache_dir=cache, isolate=True)
        self.lock = threading.Lock()
        self.running: dict[str, tuple[str, int | None]] = {}  # episode -> (run token, pgid)
        # episode or "run:<token>" -> (run token, reason): cancelled, maybe before it started
        self.cancelled: dict[str, tuple[str, str]] = {}
        self.checked: set[str] = set()  # object hashes verified by this process
        self.ids = itertools.count(1)
        atexit.register(self.runtimes.kill_all)

    # -- objects ---------------------------------------------------------------------------
    def object_file(self, h: str, data: bytes, name: str) -> str:
        """The path of object `h` in the cache, written from `data` once per hash (checked
        to hash to its name first)."""
        from ..core.hashing import hash_bytes
        from .taskcode import TaskError, write_atomic

        path = self.cache / "objects" / h
        if h not in self.checked:
            if not isinstance(data, bytes) or hash_bytes(data) != h:
                raise TaskError(f"input {name} arrived corrupt (its bytes do not hash to "
                                f"{h[:12]})")
            self.checked.add(h)
        try:
            if path.stat().st_size == len(data):
                return str(path)
        except FileNotFoundError:
            pass
        write_atomic(path, data)
        os.chmod(path, 0o444)
        return str(path)

    # -- cancelling ------------------------------------------------------------------------
    def why_cancelled(self, episode: str, token: str) -> str | None:
        c = self.cancelled.get(episode) or self.cancelled.get(f"run:{token}")
        return c[1] if c is not None else None

    def started(self, episode: str, token: str, pgid: int) -> None:
        with self.lock:
            self.running[episode] = (token, pgid)
            why = self.why_cancelled(episode, token)
        if why is not None:  # cancelled before its process existed
            self.runtimes.cancel(pgid, why)

    def cancel(self, episode: str | None, token: str, reason: str) -> int:
        """Cancel the task of `episode` (or every task of the run `token`) running here, or
        about to: its process group is killed, it answers `cxl`. How many were running."""
        with self.lock:
            self.cancelled[episode if episode is not None else f"run:{token}"] = (token, reason)
            groups = [pgid for ep, (tok, pgid) in self.running.items()
                      if pgid is not None and (ep == episode or (episode is None and tok == token))]
        for pgid in groups:
            self.portal.call(self.runtimes.cancel, pgid, reason)
        return len(groups)


def _start_portal():
    """An anyio event loop in a daemon thread (a worker's exit never waits for it) and the
    portal other threads call into it through."""
    import anyio
    import anyio.from_thread

    ready = threading.Event()
    box: dict = {}

    async def main():
        async with anyio.from_thread.BlockingPortal() as portal:
            box["portal"] = portal
            ready.set()
            await portal.sleep_until_stopped()

    def loop():
        try:
            anyio.run(main)
        finally:
            ready.set()

    threading.Thread(target=loop, name="e3-worker-loop", daemon=True).start()
    ready.wait()
    if "portal" not in box:
        raise RuntimeError("the worker's event loop did not start")
    return box["portal"]


def station() -> Station:
    """This process's `Station`, made at the first task."""
    global _station
    with _station_lock:
        if _station is None:
            _station = Station(cache_dir(), _worker_threads())
        return _station


def hold(data):
    """The task that holds an object's bytes (or a module set) under its `e3-*` key."""
    return data


def _read_log(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size <= LOG_MAX:
                f.seek(0)
                return f.read()
            f.seek(size - LOG_MAX)
            return f"[e3: the first {size - LOG_MAX} bytes of this log were left on the worker]\n".encode() + f.read()
    except OSError:
        return b""


def run_task(wire: dict, modules, *blobs) -> dict:
    """Run one task (`wire`, from `dask_backend.DaskBackend.submit`) with its input objects'
    bytes `blobs` (in order) and its package's module files `modules` (None: none); answer
    its outcome as a dict (never raises for the task's own errors)."""
    from .runtimes import InputRef, TaskSpec
    from .taskcode import TaskError, exc_reason, remove_tree

    where = _worker_address()
    st = station()
    episode, token = wire["episode"], wire["token"]
    why = st.why_cancelled(episode, token)
    if why is not None:
        return {"status": "cxl", "reason": why, "worker": where, "log": b""}
    scratch = st.cache / "tasks" / f"{os.getpid()}-{next(st.ids)}"
    try:
        try:
            inputs = tuple(InputRef(st.object_file(h, data, name), fmt, name)
                           for (name, h, fmt), data in zip(wire["inputs"], blobs))
        except TaskError as e:
            return {"status": "fail", "reason": e.reason, "worker": where, "log": b""}
        (scratch / "work").mkdir(parents=True)
        files = dict(modules) if modules else {}
        spec = TaskSpec(runtime=wire["runtime"], entry=wire["entry"],
                        argv=tuple(wire["argv"]) if wire["argv"] else None,
                        modules_hash=wire["modules_hash"], modules=lambda: files,
                        inputs=inputs, output=str(scratch / "out"),
                        log_path=str(scratch / "log"), budget=dict(wire["budget"]),
                        env=dict(wire["env"]), cwd=str(scratch / "work"))

        def on_start(pgid: int) -> None:
            st.started(episode, token, pgid)

        res = st.portal.call(lambda: st.runtimes.run(spec, on_start=on_start))
        out = {"status": res.status, "reason": res.reason, "exit_code": res.exit_code,
               "budget": res.budget, "format": res.output_format, "worker": where,
               "cpu_s": res.cpu_s, "seconds": res.duration_s,
               "log": _read_log(spec.log_path)}
        if res.ok:
            with open(spec.output, "rb") as f:
                data = f.read()
            if res.output_hash is None:
                from ..core.hashing import hash_bytes

                out["hash"] = hash_bytes(data)
            else:
                out["hash"] = res.output_hash
            out["output"] = data
        return out
    except Exception as e:  # the worker's own trouble (a full disk, say): the task fails
        return {"status": "fail", "reason": f"on dask worker {where}: {exc_reason(e)}",
                "worker": where, "log": b""}
    finally:
        with st.lock:
            st.running.pop(episode, None)
        remove_tree(scratch)


def cancel(episode: str, token: str, reason: str = "cancelled") -> int:
    """(Through `Client.run`, on every worker.) Cancel `episode` of the run `token` if it
    runs here (or when it arrives)."""
    return station().cancel(episode, token, reason)


def cancel_run(token: str, reason: str = "cancelled") -> int:
    """(Through `Client.run`.) Cancel every task of the run marked `token` running here."""
    return station().cancel(None, token, reason)

