"""The `dask` backend: the executor's tasks on a dask.distributed cluster (`e3 go --executor
dask[:ADDRESS]`). Imported only when that executor is used (the engine's other paths never
import dask).

- `--executor dask`: a `LocalCluster` for the run — `-j` worker processes of one thread each —
  closed after it.
- `--executor dask:tcp://HOST:PORT`: a running scheduler (`dask scheduler`, `dask worker`);
  unreachable within the connect timeout, it is a `UsageError` naming the address (exit 2).

The executor is the same as for the local backends: it captures, plans the leases and
capacities, submits, and commits at beat ends. This backend only moves a task to the cluster
and its outcome back. What travels (see `dask_worker` for the worker's side):

- to the cluster: per task a small dict (`wire`): runtime, entry or argv, modules hash,
  (dataset path, hash, format) of each input, budget and the environment the task is
  promised. Input objects and the package's module files travel by content hash, only to
  workers whose cache does not keep them: the backend asks the workers once per run per hash
  (`dask_worker.have`) and learns from every finished task what its worker keeps. What no
  worker keeps is sent once per run as a key `e3-object-<hash>` / `e3-modules-<hash>` held
  by a tiny task (`dask_worker.hold`, so that dask can re-create it on another worker when the
  one holding it dies), a dependency of the tasks that read it: dask moves it to a worker at
  most once, and the worker keeps it in its cache. What some worker keeps is not sent: the task
  goes without it, preferring (not requiring) the workers that keep all of it; a worker that
  turns out not to keep it answers "need" before running anything, and the task is submitted
  again with the bytes (`_wait`).
- back: status, reason, the output's bytes and hash, the log's bytes. The engine hashes the
  bytes itself (a mismatch fails the task), writes them to the task's staged file and the log
  to `.e3/logs/<key>.log`, and hands the executor a `Finished` like any backend's: the engine
  stays the only writer of the repository.

A dataflow's `resources={"gpu": 1}` becomes a dask resource restriction on a running
scheduler (a worker started with `--resources "gpu=1"` runs it; when no worker of the cluster
offers it the task fails saying so rather than waiting forever). On a LocalCluster, which is
this machine, capacities are left to the executor, as for `processes`.

Faults: a worker that dies mid-task makes dask run the task again elsewhere (at most
`distributed.scheduler.allowed-failures` times, then the task fails, `KilledWorker`); the
engine sees one outcome, committed once. `cancel` cancels the task's future and kills its
process group on whichever worker runs it (`Client.run`).
"""
from __future__ import annotations

import secrets
import threading
import time
import warnings
from typing import Awaitable

from ..core.errors import E3Error, UsageError
from . import dask_worker
from .backends import Done
from .jobs import Finished, Task

#: seconds to wait for a scheduler before giving up (`[executor] connect_timeout`)
CONNECT_TIMEOUT = 10.0
INSTALL_HINT = "pip install 'e3logic[dask]'"


def _import_distributed():
    try:
        import distributed
    except ImportError as e:
        raise UsageError(f"--executor dask needs dask.distributed, which is not installed "
                         f"({e}): {INSTALL_HINT}") from None
    return distributed


class _Handle:
    """A task on the cluster: its future; awaiting it waits (in a thread) for the outcome."""

    __slots__ = ("backend", "task", "fut", "log_path", "started", "reason", "scope", "wire",
                 "demands")

    def __init__(self, backend: "DaskBackend", task: Task, fut, log_path: str, started: float):
        self.backend, self.task, self.fut = backend, task, fut
        self.log_path, self.started = log_path, started
        self.reason: str | None = None
        self.scope = None
        self.wire: dict = {}
        self.demands: dict | None = None

    def cancel(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self.backend._stop(self)
        if self.scope is not None:
            self.scope.cancel()

    def __await__(self):
        return self._run().__await__()

    async def _run(self) -> Finished:
        import anyio

        b = self.backend
        try:
            with anyio.CancelScope() as scope:
                self.scope = scope
                if self.reason is None:
                    res, where = await anyio.to_thread.run_sync(
                        b._wait, self, abandon_on_cancel=True, limiter=b._limiter())
                    if where and self.task.host is not None and self.reason is None:
                        self.task.host.note(f"on dask worker {where}")
                    return res
            return self.task.finished("cxl", self.reason or "cancelled", started=self.started,
                                      ended=b.clock())
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                if self.reason is None:
                    self.reason = "cancelled"
                    b._stop(self)
            raise
        finally:
            b._inflight.pop(self.task.episode.episode, None)


class DaskBackend:
    """Runs the executor's tasks on a dask.distributed cluster (see the module docstring).

    `runner`: a `dispatch.TaskRunner` (the object store, the package's module files, the log
    paths and the environment a task is promised — the same as the local backends').
    `address`: a running scheduler, or None for a LocalCluster of `workers` processes.
    `connect_timeout`: seconds."""

    def __init__(self, runner, *, address: str | None = None, workers: int = 1,
                 connect_timeout: float = CONNECT_TIMEOUT, clock=time.time):
        distributed = _import_distributed()
        self.runner = runner
        self.repo = runner.repo
        self.address = address
        self.clock = clock
        self.token = runner.token or secrets.token_hex(16)  # names this run's task keys
        self.cluster = None
        self.client = None
        self._objects: dict[str, object] = {}   # hash -> future of `e3-object-<hash>`
        self._modules: dict[str, object] = {}   # modules hash -> future of `e3-modules-<hash>`
        self._sent: set[str] = set()             # hashes and `modules:<hash>` sent this run
        self._held: dict[str, set[str]] = {}     # ... -> workers whose cache keeps it
        self._probed: set[str] = set()           # ... the workers were asked about
        self._lock = threading.Lock()            # (the five above: waiting threads resubmit)
        self._offered: set[tuple] = set()        # resource demands some worker was seen to offer
        self._inflight: dict[str, _Handle] = {}
        self._threads = None
        self._stopped = False  # some task was cancelled
        self._closed = False
        self._close_lock = threading.Lock()
        self.workers = max(1, int(workers))
        from .. import __version__

        self._version = [__version__, dask_worker.WIRE]
        import logging

        # what goes wrong reaches the user as a task's reason or one error line, not as dask's
        # log records (a lost scheduler logs a traceback per reconnection attempt)
        for name in ["distributed", *logging.root.manager.loggerDict]:
            if name.startswith("distributed"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
        if address is None:
            try:
                self.cluster = distributed.LocalCluster(
                    n_workers=self.workers, threads_per_worker=1, processes=True,
                    dashboard_address=":0", silence_logs=logging.CRITICAL)
                self.client = distributed.Client(self.cluster, set_as_default=False)
            except Exception as e:
                self._shutdown()
                why = " ".join(str(e).split()) or type(e).__name__
                raise E3Error(f"cannot start a local dask cluster of {self.workers} workers "
                              f"({why}); try --executor processes") from None
        else:
            try:
                self.client = distributed.Client(address, timeout=connect_timeout,
                                                 set_as_default=False)
            except Exception as e:  # OSError (refused, timed out), ValueError (a bad address)
                why = " ".join(str(e).split()) or type(e).__name__
                raise UsageError(f"cannot reach the dask scheduler at {address} ({why}); "
                                 f"start one ('dask scheduler') or fix the address "
                                 f"(--executor dask:tcp://HOST:PORT, [executor] address in "
                                 f"e3.toml)") from None

    # -- the Backend protocol ------------------------------------------------------------------
    async def submit(self, task: Task) -> Awaitable[Finished]:
        job = task.job
        started = self.clock()
        if self._closed:
            return Done(task.finished("cxl", "the dask backend is closed", started=started,
                                      ended=started))
        demands = dict(job.resources) if self.address is not None and job.resources else None
        if demands and not self._someone_offers(demands):
            need = ",".join(f"{r}={a:g}" for r, a in sorted(demands.items()))
            return Done(task.finished(
                "fail", f"no worker of the dask cluster at {self.address} offers {need}; "
                        f"start one with: dask worker {self.address} --resources \"{need}\"",
                started=started, ended=self.clock()))
        spec = self.runner.spec(task)  # the log path and the promised environment, as locally
        wire = {"e3": self._version, "episode": task.episode.episode, "token": self.token,
                "runtime": job.runtime,
                "entry": job.entry, "argv": list(job.argv) if job.argv else None,
                "modules_hash": job.modules_hash or "", "budget": dict(job.budget),
                "env": dict(spec.env)}
        fut = self._submit(task, wire, demands, send=False)
        h = _Handle(self, task, fut, spec.log_path, started)
        h.wire, h.demands = wire, demands
        self._inflight[task.episode.episode] = h
        return h

    def cancel(self, episode: str, reason: str = "cancelled") -> bool:
        h = self._inflight.get(episode)
        if h is None:
            return False
        h.cancel(reason)
        return True

    async def close(self) -> None:
        import anyio

        await anyio.to_thread.run_sync(self._shutdown)

    def warm(self, runtimes) -> None:
        """Nothing to start ahead: the cluster is up once the backend is made."""

    def kill(self) -> None:
        self._shutdown()

    # -- inside ------------------------------------------------------------------------------
    def _limiter(self):
        """Threads waiting for outcomes: one per task on the cluster."""
        if self._threads is None:
            import anyio

            self._threads = anyio.CapacityLimiter(self.workers + 4)
        self._threads.total_tokens = max(self._threads.total_tokens, len(self._inflight) + 1)
        return self._threads

    def _submit(self, task: Task, wire: dict, demands: dict | None, *, send: bool):
        """Submit `task`: each input (and the module set) as a dependency on its
        `e3-object-`/`e3-modules-` key when this run sent it already, when no worker is known
        to keep it, or when `send`; else expected in the cache of the worker that runs it,
        preferring (not requiring) the workers known to keep it all."""
        job = task.job
        names = [hh for _, hh, _ in task.inputs]
        mkey = f"modules:{job.modules_hash}" if job.modules_hash else None
        if not send:
            self._probe([n for n in (*names, mkey) if n is not None])
        deps, inputs, holders = [], [], None
        with self._lock:
            def kept(n: str) -> bool:
                nonlocal holders
                if send or n in self._sent or not self._held.get(n):
                    return False
                holders = set(self._held[n]) if holders is None else holders & self._held[n]
                return True

            for p, hh, fmt in task.inputs:
                if kept(hh):
                    inputs.append((p, hh, fmt, -1))
                else:
                    inputs.append((p, hh, fmt, len(deps)))
                    deps.append(hh)
            mods_kept = mkey is not None and kept(mkey)
        futs = [self._object(hh) for hh in deps]
        mods = self._module_set(job.modules_hash) if mkey and not mods_kept else None
        key = f"e3-task-{self.token[:16]}-{task.episode.episode}" + ("-sent" if send else "")
        where = sorted(holders) if holders else None
        return self.client.submit(dask_worker.run_task, {**wire, "inputs": inputs}, mods, *futs,
                                  pure=False, key=key, resources=demands, workers=where,
                                  allow_other_workers=where is not None)

    def _probe(self, names: list[str]) -> None:
        """Ask every worker, once per run per name, whether its cache keeps these objects
        (hashes) and module sets (`modules:<hash>`); what the run produced or sent is known
        already."""
        with self._lock:
            todo = [n for n in names if n not in self._probed and n not in self._sent
                    and not self._held.get(n)]
            self._probed.update(todo)
        if not todo:
            return
        try:
            answers = self.client.run(dask_worker.have, todo, on_error="ignore")
        except Exception:  # no answer: send what is needed
            return
        with self._lock:
            for worker, held in (answers or {}).items():
                if isinstance(held, list):
                    for n in held:
                        self._held.setdefault(n, set()).add(worker)

    def _learn(self, h: _Handle, out: dict) -> None:
        """What the worker that ran `h` keeps now: its inputs, its output, its module set."""
        where = out.get("worker")
        if not where:
            return
        job = h.task.job
        names = [hh for _, hh, _ in h.task.inputs]
        if out.get("status") == "ok" and out.get("hash"):
            names.append(out["hash"])
        if out.get("modules"):
            names.append(f"modules:{job.modules_hash}")
        with self._lock:
            for n in names:
                self._held.setdefault(n, set()).add(where)

    def _object(self, h: str):
        """The future of `e3-object-<h>` (submitted once per run)."""
        with self._lock:
            fut = self._objects.get(h)
        if fut is None:
            data = self.repo.objects.read(h)
            with warnings.catch_warnings():  # dask warns about large arguments; that is the point
                warnings.simplefilter("ignore")
                fut = self.client.submit(dask_worker.hold, data, key=f"e3-object-{h}",
                                         pure=False)
            with self._lock:
                fut = self._objects.setdefault(h, fut)
                self._sent.add(h)
        return fut

    def _module_set(self, modules_hash: str):
        with self._lock:
            fut = self._modules.get(modules_hash)
        if fut is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fut = self.client.submit(dask_worker.hold, self.runner.modules(),
                                         key=f"e3-modules-{modules_hash}", pure=False)
            with self._lock:
                fut = self._modules.setdefault(modules_hash, fut)
                self._sent.add(f"modules:{modules_hash}")
        return fut

    def _someone_offers(self, demands: dict) -> bool:
        key = tuple(sorted(demands.items()))
        if key in self._offered:
            return True
        workers = (self.client.scheduler_info().get("workers") or {}).values()
        if any(all((w.get("resources") or {}).get(r, 0) >= a for r, a in demands.items())
               for w in workers):
            self._offered.add(key)
            return True
        return False

    def _stop(self, h: _Handle) -> None:
        """Cancel `h`'s future, and its process on whichever worker runs it."""
        self._stopped = True
        try:
            h.fut.cancel()
            self.client.run(dask_worker.cancel, h.task.episode.episode, self.token,
                            h.reason or "cancelled", wait=False)
        except Exception:  # the cluster is gone already: nothing runs there any more
            pass

    def _wait(self, h: _Handle) -> tuple[Finished, str]:
        """(In a thread.) Wait for `h`'s outcome; write its log and its output's bytes."""
        task = h.task
        try:
            out = h.fut.result()
            if out.get("status") == "need":  # the worker's cache lacked something: send it
                with self._lock:
                    for n in out.get("missing") or ():
                        self._held.get(n, set()).discard(out.get("worker"))
                h.fut = self._submit(task, h.wire, h.demands, send=True)
                if h.reason is not None:
                    self._stop(h)
                out = h.fut.result()
        except BaseException as e:  # noqa: BLE001 (asyncio's CancelledError is one)
            return self._failed(h, e), ""
        finally:
            h.fut = _Released(h.fut.key)  # the cluster may drop the result now
        self._learn(h, out)
        ended = self.clock()
        where = out.get("worker") or ""
        log = out.get("log") or b""
        try:
            with open(h.log_path, "wb") as f:  # a log holds one execution: the latest
                f.write(log)
        except OSError:
            pass
        status = out.get("status")
        kw = dict(exit_code=out.get("exit_code"), started=h.started, ended=ended)
        if status != "ok":
            if status == "cxl":
                return task.finished("cxl", h.reason or out.get("reason") or "cancelled",
                                     **kw), where
            return task.finished("fail", out.get("reason") or "task failed", **kw), where
        from ..core.hashing import hash_bytes

        data = out.get("output")
        if not isinstance(data, bytes):
            return task.finished("fail", f"dask worker {where} sent no output", **kw), where
        got = hash_bytes(data)
        if got != out.get("hash"):
            return task.finished("fail", f"the output changed on its way from dask worker "
                                         f"{where} (it hashed {str(out.get('hash'))[:12]} "
                                         f"there, {got[:12]} here)", **kw), where
        with open(task.out_file, "wb") as f:
            f.write(data)
        return task.finished("ok", output_file=task.out_file, output_hash=got,
                             output_size=len(data), output_format=out.get("format") or "raw",
                             **kw), where

    def _failed(self, h: _Handle, e: BaseException) -> Finished:
        """The `Finished` of a task whose future did not answer (cancelled, failed, lost)."""
        from .taskcode import exc_reason

        end = dict(started=h.started, ended=self.clock())
        name = type(e).__name__
        if h.reason is not None:
            return h.task.finished("cxl", h.reason, **end)
        if "Cancelled" in name:  # not by us: the scheduler went away (or restarted)
            return h.task.finished("fail", f"the dask cluster at {self._where()} dropped the "
                                           f"task (its scheduler went away or restarted)", **end)
        if name == "KilledWorker":
            return h.task.finished("fail", "dask workers died running it, again and again "
                                           "(KilledWorker)", **end)
        return h.task.finished("fail", f"on the dask cluster: {exc_reason(e)}", **end)

    def _where(self) -> str:
        return self.address or "(a LocalCluster)"

    def _shutdown(self) -> None:
        """Cancel what is still on the cluster, release everything, close the client (and the
        LocalCluster this backend started). Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        client = self.client
        if client is not None and (self._inflight or self._stopped):
            for h in list(self._inflight.values()):
                if h.reason is None:
                    h.reason = "cancelled"
                try:
                    h.fut.cancel()
                except Exception:
                    pass
            # every task of the run still running anywhere is killed before the client goes
            # (a cancel sent on its own may not have arrived yet); bounded: a worker that does
            # not answer is left to dask
            t = threading.Thread(target=_quietly, args=(client.run, dask_worker.cancel_run,
                                                        self.token, "cancelled"), daemon=True)
            t.start()
            t.join(5.0)
        self._objects.clear()
        self._modules.clear()
        try:
            if client is not None:
                client.close(timeout=5)
        except Exception:
            pass
        try:
            if self.cluster is not None:
                self.cluster.close(timeout=10)
        except Exception:
            pass


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:
        pass


class _Released:
    """Stands in for a future whose outcome was taken (cancelling it is a no-op)."""

    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key

    def cancel(self) -> None:
        pass

