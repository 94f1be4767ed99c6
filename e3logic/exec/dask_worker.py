"""The dask worker's side of the `dask` backend: imported on dask workers only (the engine
imports it solely to name its functions in what it submits; nothing here runs in the engine).

A dask worker never sees the project directory. What a task needs reaches it by content hash
and is kept in the worker's cache, `<cache>`:

- an input object is `<cache>/objects/<hash>` (read-only), written once from the bytes the
  engine sent (the dask key `e3-object-<hash>`, a dependency of the task) after checking that
  they hash to their name; a task's output is kept there too. When the engine expects the cache
  to hold an object already (it asked, `have`, or a task here produced or read it), the task
  carries no bytes for it, and the cached file is checked to hash to its name once per process
  (again when the file changes): a task is never handed bytes that do not;
- the package's module files (`e3-modules-<hash>`, {relative path: bytes}) are materialized
  by the runtimes once per hash: `<cache>/modules/<hash>/` (python tasks import from there) and
  `<cache>/bundles/<hash>/` (a shell task's read-only `{bundle}`); a later task with no module
  files sent reads them back from there.

What the cache turns out not to hold is answered `{"status": "need", ...}` before anything
runs; the engine then sends it and submits the task again.

The task runs exactly as locally: `Runtimes` (`exec/runtimes.py`, `isolate=True` like the
`processes` backend) — python tasks in a pool of worker processes, shell tasks in their own
process groups, budgets (wall, CPU, memory, IO) enforced here, a breach failing the task with
its reason. Its working directory is `<cache>/work` (the worker process's own, shared by its
tasks as locally the project root is), its output and log go to a scratch directory
(`<cache>/tasks/<id>/`, removed after), and it gets the environment variables the engine
promised (`E3_DATAFLOW`, `E3_EXECUTION`, `E3_LEASES`, `E3_PROFILE`, `E3_RUN_TOKEN`). What
comes back is a dict: status, reason, the output's bytes and hash, the log's bytes, this
worker's address. The engine checks the hash again and commits.

`<cache>` is `$E3_WORKER_CACHE`, else `<tempdir>/e3-worker-<uid>` (shared by the workers of
one user on one machine: every write into it is atomic).

Cancelling: dask cannot stop a task's thread, so the engine also calls `cancel(episode, ...)`
(and `cancel_run(token, ...)` when a run ends with tasks in flight) on every worker
(`Client.run`); the task's process group is killed and it answers `cxl`.
"""
from __future__ import annotations

import atexit
import itertools
import os
import re
import tempfile
import threading
from pathlib import Path

#: the shape of what the engine sends (`run_task`'s `wire`) and gets back; a worker answers a
#: task of another shape with a failure naming both versions
WIRE = 1
#: the longest log a task sends back (its end is kept)
LOG_MAX = 8 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")

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
        (cache / "work").mkdir(parents=True, exist_ok=True)
        # the tasks' working directory (locally: the project root, shared by every task): the
        # process's own, so that a shell task starts with posix_spawn, not fork + exec
        os.chdir(cache / "work")
        self.workdir = os.getcwd()
        self.portal = _start_portal()
        self.runtimes = Runtimes(workers=slots, cache_dir=cache, isolate=True)
        self.lock = threading.Lock()
        self.running: dict[str, tuple[str, int | None]] = {}  # episode -> (run token, pgid)
        # episode or "run:<token>" -> (run token, reason): cancelled, maybe before it started
        self.cancelled: dict[str, tuple[str, str]] = {}
        # object hash -> (inode, size, mtime, ctime) of its cache file when this process found
        # it hashing to its name: hashed again when the file is not as it was
        self.checked: dict[str, tuple] = {}
        self.ids = itertools.count(1)
        atexit.register(self.runtimes.kill_all)

    # -- objects ---------------------------------------------------------------------------
    def object_path(self, h: str) -> Path:
        return self.cache / "objects" / h

    def object_file(self, h: str, data: bytes, name: str) -> str:
        """The path of object `h` in the cache, written from `data` (checked to hash to its
        name first) unless the cache holds it intact already."""
        from ..core.hashing import hash_bytes
        from .taskcode import TaskError

        if not isinstance(data, bytes) or hash_bytes(data) != h:
            raise TaskError(f"input {name} arrived corrupt (its bytes do not hash to {h[:12]})")
        path = self.object_path(h)
        if self._intact(path, h):
            return str(path)
        self.store(h, data)
        return str(path)

    def store(self, h: str, data: bytes) -> None:
        """Keep `data` (which hashes to `h`) in the cache: written to a temp file, read-only,
        renamed into place."""
        from .taskcode import write_atomic

        path = self.object_path(h)
        write_atomic(path, data)
        os.chmod(path, 0o444)
        self._note(path, h)

    def cached(self, h: str) -> str | None:
        """The path of object `h` when the cache holds it intact, else None (a file that does
        not hash to its name is removed)."""
        path = self.object_path(h)
        if self._intact(path, h):
            return str(path)
        from ..core.hashing import hash_file

        try:
            ok = hash_file(path, mmap=False) == h
        except OSError:
            return None
        if not ok:
            try:
                path.unlink()
            except OSError:
                pass
            return None
        self._note(path, h)
        return str(path)

    def _intact(self, path: Path, h: str) -> bool:
        """Whether `path` is as it was when this process last found it hashing to `h`."""
        try:
            st = path.stat()
        except OSError:
            return False
        return self.checked.get(h) == (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _note(self, path: Path, h: str) -> None:
        try:
            st = path.stat()
        except OSError:
            return
        self.checked[h] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def modules_kept(self, modules_hash: str) -> bool:
        """Whether the runtimes materialized module set `modules_hash` here."""
        from .taskcode import bundle_dir, modules_dir

        return (modules_dir(self.cache, modules_hash).is_dir()
                or bundle_dir(self.cache, modules_hash).is_dir())

    def modules_on_disk(self, modules_hash: str) -> dict[str, bytes] | None:
        """The module set `modules_hash` read back from where the runtimes materialized it
        (`<cache>/modules/<hash>/`, or the read-only `bundles/<hash>/`), or None."""
        from .taskcode import bundle_dir, modules_dir

        for top in (modules_dir(self.cache, modules_hash), bundle_dir(self.cache, modules_hash)):
            if not top.is_dir():
                continue
            files: dict[str, bytes] = {}
            try:
                for root, dirs, names in os.walk(top):
                    dirs[:] = [d for d in dirs if d != "__pycache__"]
                    for n in names:
                        full = Path(root) / n
                        files[full.relative_to(top).as_posix()] = full.read_bytes()
            except OSError:
                continue
            return files
        return None

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


def have(names: list[str]) -> list[str]:
    """(Through `Client.run`.) Which of `names` this worker's cache holds: object hashes, and
    `modules:<hash>` for module sets."""
    from .taskcode import TaskError, bundle_dir, modules_dir

    top = cache_dir()
    out = []
    for n in names:
        kind, _, h = n.rpartition(":")
        try:
            if kind == "modules":
                held = modules_dir(top, h).is_dir() or bundle_dir(top, h).is_dir()
            else:
                held = _HEX64.fullmatch(h) is not None and (top / "objects" / h).is_file()
        except TaskError:  # not a hash
            held = False
        if held:
            out.append(n)
    return out


def run_task(wire: dict, modules, *blobs) -> dict:
    """Run one task (`wire`, from `dask_backend.DaskBackend.submit`) and answer its outcome as
    a dict (never raises for the task's own errors).

    `wire["inputs"]`: (dataset path, hash, format, i) per input, in order: its bytes are
    `blobs[i]`, or, with i = -1, the engine expects this worker's cache to hold them.
    `modules`: the package's module files, or None (none, or expected in the cache). What
    the cache turns out not to hold is answered `{"status": "need", "missing": [...]}` at
    once, without running anything: the engine sends it and submits the task again."""
    from .runtimes import InputRef, TaskSpec
    from .taskcode import TaskError, exc_reason, remove_tree

    from .. import __version__

    where = _worker_address()
    if wire.get("e3") != [__version__, WIRE]:
        theirs = wire.get("e3") or ["?", "?"]
        return {"status": "fail", "worker": where, "log": b"",
                "reason": f"dask worker {where} runs e3logic {__version__} (wire {WIRE}), the "
                          f"engine e3logic {theirs[0]} (wire {theirs[1]}): install the "
                          f"engine's e3logic on the worker"}
    st = station()
    episode, token = wire["episode"], wire["token"]
    why = st.why_cancelled(episode, token)
    if why is not None:
        return {"status": "cxl", "reason": why, "worker": where, "log": b""}
    scratch = st.cache / "tasks" / f"{os.getpid()}-{next(st.ids)}"
    try:
        refs, missing = [], []
        try:
            for name, h, fmt, i in wire["inputs"]:
                path = st.object_file(h, blobs[i], name) if i >= 0 else st.cached(h)
                if path is None:
                    missing.append(h)
                refs.append(InputRef(path or "", fmt, name))
        except TaskError as e:
            return {"status": "fail", "reason": e.reason, "worker": where, "log": b""}
        mh = wire["modules_hash"]
        if mh and modules is None:
            modules = st.modules_on_disk(mh)
            if modules is None:
                missing.append(f"modules:{mh}")
        if missing:
            return {"status": "need", "missing": missing, "worker": where, "log": b""}
        scratch.mkdir(parents=True)
        files = dict(modules) if modules else {}
        spec = TaskSpec(runtime=wire["runtime"], entry=wire["entry"],
                        argv=tuple(wire["argv"]) if wire["argv"] else None,
                        modules_hash=mh, modules=lambda: files, inputs=tuple(refs),
                        output=str(scratch / "out"), log_path=str(scratch / "log"),
                        budget=dict(wire["budget"]), env=dict(wire["env"]),
                        cwd=st.workdir)

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
            try:  # kept: a task here that reads it next finds it
                st.store(out["hash"], data)
            except OSError:
                pass
        if mh:
            out["modules"] = st.modules_kept(mh)
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

