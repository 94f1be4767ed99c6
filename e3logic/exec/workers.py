"""The pool of persistent python worker processes (engine side).

Workers are spawned lazily, up to `size`, each the leader of its own session and process group
(`python -P -u -m e3logic.exec.worker_main`). A worker runs one task at a time; the pool hands
out idle workers (preferring one that already imported the task's modules hash), replaces a
worker that died, exceeded a budget or was cancelled, and closes them all on `aclose()`.

Protocol: length-prefixed pickles on two pipes (see `worker_main`). The engine's reading end is
non-blocking and waited on with `anyio.wait_readable`, so a busy pool never blocks the event
loop and a dead worker shows up as EOF.
"""
from __future__ import annotations

import asyncio
import functools
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import anyio.lowlevel

from . import procs
from .worker_main import HEADER, MAX_MESSAGE, pack, write_all

def _running_asyncio_loop():
    """The running asyncio loop, or None (trio, or no loop)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


#: the directory that holds this e3logic package: a source checkout, or site-packages for an
#: installed wheel
_SOURCE_ROOT = os.path.realpath(Path(__file__).resolve().parent.parent.parent)


@functools.cache
def _site_dirs() -> frozenset[str]:
    import site

    dirs = set(getattr(site, "getsitepackages", lambda: [])())
    try:
        dirs.add(site.getusersitepackages())
    except AttributeError:
        pass
    return frozenset(os.path.realpath(d) for d in dirs)


def _worker_pythonpath(pp: str) -> str | None:
    """The PYTHONPATH a worker needs to import this very e3logic, or None if it will anyway.

    A worker is this interpreter started with -P in the cache directory: it sees the site
    directories (an installed wheel: nothing to add) and the absolute entries of PYTHONPATH,
    but not the current directory or the script's directory, which may be what found e3logic
    here (a source checkout run as `python -m e3logic`)."""
    on_path = {os.path.realpath(e) for e in pp.split(os.pathsep) if os.path.isabs(e)}
    if _SOURCE_ROOT in on_path or _SOURCE_ROOT in _site_dirs():
        return None
    return _SOURCE_ROOT + (os.pathsep + pp if pp else "")


def _ready(fut, value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


async def wait_fd(fd: int, timeout: float | None) -> bool:
    """Wait until `fd` is readable (True) or `timeout` seconds pass (False).

    On asyncio this is one reader callback and one timer on the running loop (a few µs; the
    generic anyio path — a cancel scope and `wait_readable` — costs ~40 µs per wait, paid on
    every task). Cancellation and shielding behave as for any anyio checkpoint: anyio cancels
    the waiting task, and the reader is removed on the way out."""
    loop = _running_asyncio_loop()
    if loop is not None:
        fut = loop.create_future()
        loop.add_reader(fd, _ready, fut, True)
        timer = loop.call_later(timeout, _ready, fut, False) if timeout is not None else None
        try:
            return await fut
        finally:
            loop.remove_reader(fd)
            if timer is not None:
                timer.cancel()
    if hasattr(anyio, "wait_readable"):
        if timeout is None:
            await anyio.wait_readable(fd)
            return True
        with anyio.move_on_after(timeout):
            await anyio.wait_readable(fd)
            return True
        return False
    import select  # anyio < 4.7: poll

    end = None if timeout is None else time.monotonic() + timeout
    while True:
        if select.select([fd], [], [], 0)[0]:
            return True
        if end is not None and time.monotonic() >= end:
            return False
        await anyio.sleep(0.005)


async def wait_exit(pid: int, pidfd: int | None, timeout: float | None) -> bool:
    """Wait until our child `pid` has exited (not reaped). True if it did within `timeout`."""
    if pidfd is not None:
        return await wait_fd(pidfd, timeout)
    end = None if timeout is None else time.monotonic() + timeout
    while not procs.has_exited(pid):
        if end is not None and time.monotonic() >= end:
            return False
        await anyio.sleep(0.005)
    return True


class Worker:
    """One worker process and the engine's ends of its pipes."""

    def __init__(self, cache_dir: Path, registry: procs.GroupRegistry):
        r_req, w_req = os.pipe()
        r_rep, w_rep = os.pipe()
        self._err = tempfile.TemporaryFile(prefix="e3-worker-")
        env = dict(os.environ)
        pp = _worker_pythonpath(env.get("PYTHONPATH", ""))
        if pp is not None:  # a source checkout: the worker must import this very e3logic
            env["PYTHONPATH"] = pp
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-P", "-u", "-m", "e3logic.exec.worker_main",
                 str(r_req), str(w_rep), str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._err,
                pass_fds=(r_req, w_rep), start_new_session=True, cwd=str(cache_dir), env=env)
        except BaseException:
            for fd in (r_req, w_req, r_rep, w_rep):
                os.close(fd)
            self._err.close()
            raise
        os.close(r_req)
        os.close(w_rep)
        self.pid = self.pgid = self.proc.pid
        self.wfd, self.rfd = w_req, r_rep
        os.set_blocking(self.rfd, False)
        self.pidfd = procs.open_pidfd(self.pid)
        self.start = procs.start_time(self.pid)
        self.registry = registry
        registry.add(self.pgid, self.start)
        self.hashes: set[str] = set()
        self.tasks = 0
        self.cpu_base: float | None = None  # its CPU seconds when it last replied
        self.reaped: procs.Reaped | None = None
        self._buf = bytearray()
        self.eof = False

    # -- talking -----------------------------------------------------------------------------
    def send(self, request: dict) -> None:
        """Send a request (raises OSError if the worker is gone)."""
        self._buf.clear()
        self.eof = False
        write_all(self.wfd, pack(request))

    def pump(self) -> bool:
        """Read what is available; True once a whole reply (see `reply()`) or EOF arrived."""
        while True:
            try:
                chunk = os.read(self.rfd, 1 << 16)
            except BlockingIOError:
                return self._complete()
            except OSError:
                self.eof = True
                return True
            if not chunk:
                self.eof = True
                return True
            self._buf += chunk
            if self._complete():
                return True

    def _complete(self) -> bool:
        if len(self._buf) < HEADER.size:
            return False
        (n,) = HEADER.unpack_from(self._buf)
        if n > MAX_MESSAGE:
            self.eof = True
            return True
        return len(self._buf) >= HEADER.size + n

    def reply(self) -> dict | None:
        """The complete reply, or None (the worker died before answering)."""
        if not self._complete():
            return None
        (n,) = HEADER.unpack_from(self._buf)
        try:
            return pickle.loads(bytes(self._buf[HEADER.size:HEADER.size + n]))
        except Exception:
            return None

    # -- state -------------------------------------------------------------------------------
    def exited(self) -> bool:
        return self.reaped is not None or procs.has_exited(self.pid)

    def cpu_ticks(self) -> int:
        st = procs.proc_stat(self.pid)
        return st.cpu_ticks if st else 0

    def startup_error(self) -> str:
        """The last line the worker printed to stderr before it served a task."""
        try:
            self._err.seek(0)
            lines = [ln for ln in self._err.read().decode("utf-8", "replace").splitlines()
                     if ln.strip()]
        except (OSError, ValueError):
            return ""
        return lines[-1].strip() if lines else ""

    async def kill(self, grace: float = 0.0) -> None:
        """SIGTERM (if `grace`) then SIGKILL the worker's group, and reap the worker."""
        if self.reaped is not None:
            return
        if grace > 0 and procs.signal_group(self.pgid, signal.SIGTERM):
            await wait_exit(self.pid, self.pidfd, grace)
            end = time.monotonic() + grace
            while time.monotonic() < end and procs.group_alive(self.pgid):
                await anyio.sleep(0.02)
        procs.signal_group(self.pgid, signal.SIGKILL)
        await wait_exit(self.pid, self.pidfd, 10.0)
        self.finish()

    def finish(self) -> procs.Reaped:
        """Reap the (exited) worker and release its descriptors; idempotent."""
        if self.reaped is None:
            # stragglers the task left in the group die with it (the zombie pins the pgid)
            procs.signal_group(self.pgid, signal.SIGKILL)
            self.registry.discard(self.pgid)
            self.reaped = procs.reap(self.pid)
            self.proc.returncode = self.reaped.exit_code
            for fd in (self.rfd, self.wfd, self.pidfd):
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self.rfd = self.wfd = self.pidfd = None
            self._err.close()
        return self.reaped


class WorkerPool:
    """Up to `size` workers; `acquire()` waits for a free slot."""

    def __init__(self, size: int, cache_dir: Path, registry: procs.GroupRegistry):
        self.size = max(1, int(size))
        self.cache_dir = Path(cache_dir)
        self.registry = registry
        self._idle: list[Worker] = []
        self._all: set[Worker] = set()
        self._sem: anyio.Semaphore | None = None
        self.spawned = 0
        self.closed = False

    def workers(self) -> list[Worker]:
        return sorted(self._all, key=lambda w: w.pid)

    async def acquire(self, modules_hash: str | None = None) -> Worker:
        if self.closed:
            raise RuntimeError("the worker pool is closed")
        if self._sem is None:
            self._sem = anyio.Semaphore(self.size)
        try:  # a free slot without a trip through the event loop (a yield per task)
            await anyio.lowlevel.checkpoint_if_cancelled()
            self._sem.acquire_nowait()
        except anyio.WouldBlock:
            await self._sem.acquire()
        try:
            while self._idle:
                pick = len(self._idle) - 1
                if modules_hash:
                    for i in range(len(self._idle) - 1, -1, -1):
                        if modules_hash in self._idle[i].hashes:
                            pick = i
                            break
                w = self._idle.pop(pick)
                if w.exited():  # died while idle (killed from outside, or by kill_all)
                    await self._drop(w)
                    continue
                return w
            return self.spawn()
        except BaseException:
            self._sem.release()
            raise

    def prestart(self, n: int) -> None:
        """Start up to `n` workers now, idle (their interpreter start-up overlaps whatever the
        caller does before the first task)."""
        while not self.closed and len(self._all) < min(n, self.size):
            self._idle.append(self.spawn())

    def spawn(self) -> Worker:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        w = Worker(self.cache_dir, self.registry)
        self._all.add(w)
        self.spawned += 1
        return w

    async def release(self, w: Worker, reusable: bool) -> None:
        """Give back a worker acquired with `acquire()`; a non-reusable one is killed."""
        try:
            if reusable and not self.closed and w.reaped is None:
                self._idle.append(w)
            else:
                with anyio.CancelScope(shield=True):
                    await self._drop(w)
        finally:
            if self._sem is not None:
                self._sem.release()

    async def replace(self, w: Worker) -> Worker:
        """Swap a broken worker for a fresh one without giving up the slot."""
        await self._drop(w)
        return self.spawn()

    async def _drop(self, w: Worker) -> None:
        await w.kill()
        self._all.discard(w)

    async def aclose(self, grace: float = 1.0) -> None:
        """Close idle workers (EOF, then SIGKILL after `grace`); SIGKILL busy ones (the run
        that holds a busy worker reaps it and gets it dropped on release)."""
        self.closed = True
        idle, self._idle = self._idle, []
        with anyio.CancelScope(shield=True):
            for w in self._all - set(idle):
                procs.signal_group(w.pgid, signal.SIGKILL)
            for w in idle:
                if w.wfd is not None:
                    try:
                        os.close(w.wfd)
                    except OSError:
                        pass
                    w.wfd = None
            end = time.monotonic() + grace
            for w in idle:
                if w.reaped is None:
                    await wait_exit(w.pid, w.pidfd, max(0.0, end - time.monotonic()))
                await self._drop(w)

    def kill_all(self) -> None:
        """SIGKILL every worker's group (synchronous; the workers are reaped later)."""
        for w in list(self._all):
            if w.reaped is None:
                procs.signal_group(w.pgid, signal.SIGKILL)
