"""The python worker process: `python -m e3logic.exec.worker_main RFD WFD PARENT_PID`.

A persistent process, leader of its own session and process group, that runs python tasks one
at a time for the engine's pool (`workers.WorkerPool`). Requests and replies are pickled dicts,
each preceded by a 4-byte big-endian length, on two pipes (RFD: requests in, WFD: replies out).
The pipes are not inherited by anything a task spawns, so EOF on RFD means the engine is gone.

Per task: stdout/stderr (fds 1 and 2, so subprocesses and C code too) go to the task's log
file, `env` is applied to `os.environ` and the working directory is changed for the duration of
the call, CPU and memory rlimits are set relative to what the worker already used and restored
afterwards. A task that kills its worker (SIGXCPU, a segfault, `os._exit`) is reported by the
engine, which replaces the worker. A watchdog thread kills the worker's process group if the
engine dies (the worker is re-parented), so no task outlives its engine by more than ~0.5 s.
A task that leaves child processes running gets its worker replaced (its group is killed).

Standard library and `core` only: this module must start fast.
"""
from __future__ import annotations

import os
import pickle
import re
import resource
import signal
import struct
import sys
import threading
import time

from ..core.hashing import hash_bytes
from .budgets import Budget, WorkerLimits, cpu_seconds_self, exceeded, parse_budget
from .taskcode import (REASON_MAX, ModuleSpaces, TaskError, call, encode_output, exc_reason,
                       load_inputs, one_line, print_user_traceback, write_staged)

HEADER = struct.Struct(">I")
MAX_MESSAGE = 1 << 30


def pack(obj) -> bytes:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


class Reader:
    """Length-prefixed messages from a pipe; one `read()` per message when it fits in 64 KiB."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buf = bytearray()

    def message(self):
        """The next message, or None at EOF (ValueError: a corrupt length)."""
        buf = self.buf
        while True:
            if len(buf) >= HEADER.size:
                (n,) = HEADER.unpack_from(buf)
                if n > MAX_MESSAGE:
                    raise ValueError(f"message of {n} bytes")
                end = HEADER.size + n
                if len(buf) >= end:
                    body = bytes(buf[HEADER.size:end])
                    del buf[:end]
                    return pickle.loads(body)
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            if not buf and len(chunk) >= HEADER.size:  # the usual case: exactly one message
                (n,) = HEADER.unpack_from(chunk)
                if n <= MAX_MESSAGE and len(chunk) == HEADER.size + n:
                    return pickle.loads(memoryview(chunk)[HEADER.size:])
            buf += chunk


def read_message(fd: int):
    """One message read from `fd` (unbuffered: for a single message, not a stream)."""
    return Reader(fd).message()


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _watchdog(parent: int, interval: float = 0.5) -> None:
    while True:
        time.sleep(interval)
        if os.getppid() != parent:
            try:
                os.killpg(os.getpgrp(), signal.SIGKILL)
            finally:
                os._exit(1)


# -- failures named in the user's own terms ---------------------------------------------------
# A package's modules run from `.e3/cache/modules/<hash>/`; what the user reads (the failure's
# one-line reason, the traceback in the task's log) names them as authored: `steps.py:12`.

_TB = "Traceback (most recent call last):"
_ENGINE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _prefix(modules_dir) -> str | None:
    """What names a file of the package's modules: `/modules/<hash>/` (the directory's last
    two parts, wherever the cache is: a process that imported the same modules from another
    cache directory first keeps that one's file names)."""
    if not modules_dir:
        return None
    parts = os.fspath(modules_dir).rstrip(os.sep).split(os.sep)[-2:]
    return os.sep + os.sep.join(parts) + os.sep


def _users(filename: str, prefix: str | None) -> str | None:
    """`filename` as the user knows it (relative to the package's modules directory), or None
    for a file that is not the user's (the engine's, the standard library's, an import
    machinery's `<frozen ...>`). Without a modules directory (an entry imported from
    `sys.path`) any other file is the user's, named by its base name."""
    if prefix is not None:
        at = filename.find(prefix)
        return filename[at + len(prefix):] if at >= 0 else None
    if filename.startswith("<") or filename.startswith(_ENGINE_DIR + os.sep):
        return None
    if any(filename.startswith(p + os.sep) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix}):
        return None
    return os.path.basename(filename)


def user_location(exc: BaseException, modules_dir=None) -> str | None:
    """'steps.py:12': the innermost frame of the user's own code in `exc`'s traceback (a
    SyntaxError: the place it names), or None."""
    prefix = _prefix(modules_dir)
    if isinstance(exc, SyntaxError) and exc.filename:
        name = _users(exc.filename, prefix)
        if name is not None:
            return f"{name}:{exc.lineno}" if exc.lineno else name
    found = None
    tb = exc.__traceback__
    while tb is not None:
        name = _users(tb.tb_frame.f_code.co_filename, prefix)
        if name is not None:
            found = f"{name}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found


def user_reason(exc: BaseException, modules_dir=None, head: str = "") -> str:
    """The one-line reason of a task's exception, with where in the user's code it was
    raised: 'ValueError: flag says fail (steps.py:27)'. `head` comes first ('cannot import
    steps: ')."""
    where = user_location(exc, modules_dir)
    text = head + exc_reason(exc)
    if isinstance(exc, SyntaxError) and where is not None:
        text = head + one_line(f"{type(exc).__name__}: {exc.msg}")
    if where is None:
        return one_line(text)
    tail = f" ({where})"
    return one_line(text, REASON_MAX - len(tail)) + tail


def failure_reason(e: TaskError, modules_dir=None) -> str:
    """A `TaskError`'s reason; one caused by the user's code (an import that raised) says
    where: 'cannot import steps: NameError: name 'x' is not defined (steps.py:3)'."""
    cause = e.__cause__
    if cause is None or user_location(cause, modules_dir) is None or \
            not e.reason.endswith(exc_reason(cause)):
        return e.reason
    return user_reason(cause, modules_dir, e.reason[: len(e.reason) - len(exc_reason(cause))])


class Authored:
    """A stream that names the package's modules as authored in the tracebacks written
    through it (`File "steps.py"`, not `File ".../.e3/cache/modules/<hash>/steps.py"`), and
    drops the frames that come before the user's first one (the engine's and the import
    machinery's, when importing a module of the package failed)."""

    def __init__(self, stream, modules_dir):
        self.stream = stream
        prefix = _prefix(modules_dir)
        self.prefix = prefix
        # `File "<anything>/modules/<hash>/steps.py"` -> `File "steps.py"`
        self.files = re.compile(r'File "[^"\n]*?' + re.escape(prefix)) if prefix else None

    def write(self, s):
        if self.files is not None and isinstance(s, str) and self.prefix in s:
            s = _TB.join(self._block(b) for b in s.split(_TB)) if _TB in s else s
            s = self.files.sub('File "', s)
        return self.stream.write(s)

    def _block(self, text: str) -> str:
        """One traceback's text (after its header): frames before the first of the user's
        dropped."""
        m = self.files.search(text)
        if not text.startswith("\n  File ") or m is None:
            return text
        first = text.rfind("\n", 0, m.start())
        return text[:1] + text[first + 1:]

    def flush(self):
        return self.stream.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


class _Env:
    def __init__(self, env: dict[str, str]):
        self.saved = {k: os.environ.get(k) for k in env}
        os.environ.update({str(k): str(v) for k, v in env.items()})

    def restore(self) -> None:
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_request(req: dict, spaces: ModuleSpaces, devnull: int, home: str) -> dict:
    """Run one task request; never raises (a reply describes every outcome)."""
    budget: Budget = parse_budget(req.get("budget") or {})
    cpu0 = cpu_seconds_self()
    reply = {"status": "fail", "format": None, "reason": "", "budget": None, "cpu_s": 0.0,
             "io_bytes": 0, "replace": False}
    log_path = req.get("log_path") or os.devnull
    try:  # a log holds one execution: the latest
        logfd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    except OSError as e:
        reply["reason"] = f"cannot open log {log_path}: {e.strerror or e}"
        return reply
    for stream in (sys.stdout, sys.stderr):
        _flush(stream)
    os.dup2(logfd, 1)
    os.dup2(logfd, 2)
    env = _Env(req.get("env") or {})
    error: BaseException | None = None
    user_exc: BaseException | None = None
    data, fmt = b"", None
    try:
        if req.get("cwd"):
            try:
                os.chdir(req["cwd"])
            except OSError as e:
                raise TaskError(f"cannot enter working directory {req['cwd']}: "
                                f"{e.strerror or e}") from None
        limits = WorkerLimits(budget)
        moddir = req.get("modules_dir")
        try:
            stderr, sys.stderr = sys.stderr, Authored(sys.stderr, moddir)  # an import's traceback
            try:
                fn = spaces.resolve(req["entry"], req.get("modules_hash"), moddir)
            finally:
                sys.stderr = stderr
            args = load_inputs(req.get("inputs") or ())
            try:
                value = call(fn, args)
            except BaseException as e:  # the task's own failure, SystemExit included
                user_exc = e
            else:
                del args
                data, fmt = encode_output(value)
                del value
        except BaseException as e:
            error = e
        finally:
            limits.restore()
        if user_exc is not None:
            print_user_traceback(user_exc, skip=2, file=Authored(sys.stderr, moddir))
            error = user_exc
        if error is not None:
            raise error
        for stream in (sys.stdout, sys.stderr):
            _flush(stream)
        log_bytes = os.fstat(logfd).st_size
        reply["io_bytes"] = log_bytes + len(data)
        if budget.io_bytes is not None and reply["io_bytes"] > budget.io_bytes:
            raise TaskError(exceeded("io_bytes", budget), budget="io_bytes")
        write_staged(req["output"], data)
        # the engine adopts the output by this hash instead of reading the file back
        reply.update(status="ok", format=fmt, hash=hash_bytes(data), size=len(data))
    except TaskError as e:
        reply.update(reason=failure_reason(e, req.get("modules_dir")), budget=e.budget,
                     replace=e.replace_worker)
    except MemoryError as e:
        if budget.mem_mb is not None:
            reply.update(reason=exceeded("mem_mb", budget), budget="mem_mb")
        else:
            reply.update(reason=user_reason(e, req.get("modules_dir")))
        reply["replace"] = True
    except BaseException as e:
        reply["reason"] = user_reason(e, req.get("modules_dir"))
    finally:
        env.restore()
        try:
            os.chdir(home)
        except OSError:
            pass
        for stream in (sys.stdout, sys.stderr):
            _flush(stream)
        if not reply["io_bytes"]:
            try:
                reply["io_bytes"] = os.fstat(logfd).st_size
            except OSError:
                pass
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(logfd)
    total = cpu_seconds_self()
    reply["cpu_s"] = max(0.0, total - cpu0)
    reply["cpu_total"] = total  # the engine's baseline for the next task's CPU
    if leftover_children():
        reply["replace"] = True
    return reply


def leftover_children() -> bool:
    """Reap finished children of the task; True if some still run (the worker is then
    replaced, which kills its whole process group)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            break
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children") as f:
                if f.read().strip():
                    return True
    except OSError:
        pass
    return False


def _flush(stream) -> None:
    try:
        stream.flush()
    except Exception:
        pass


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    rfd, wfd, parent = int(argv[0]), int(argv[1]), int(argv[2])
    me = os.getpid()
    os.set_inheritable(rfd, False)
    os.set_inheritable(wfd, False)
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    except (ValueError, OSError):
        pass
    home = os.getcwd()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.set_inheritable(devnull, False)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    threading.Thread(target=_watchdog, args=(parent,), daemon=True, name="e3-watchdog").start()
    spaces = ModuleSpaces()
    requests = Reader(rfd)
    while True:
        try:
            req = requests.message()
        except Exception:
            os._exit(2)
        if req is None:
            os._exit(0)
        reply = run_request(req, spaces, devnull, home)
        if os.getpid() != me:  # a task forked and its child came back here
            os._exit(0)
        try:
            write_all(wfd, pack(reply))
        except OSError:
            os._exit(0)
        if reply.get("replace"):
            os._exit(0)


if __name__ == "__main__":
    main()
