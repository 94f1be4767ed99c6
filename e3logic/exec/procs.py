"""Process-group bookkeeping: reading /proc, signalling groups, reaping, killing orphans.

Every task process (a shell command, a python worker) runs as the leader of its own session and
process group, so its pgid equals the leader's pid and one signal reaches everything it spawned.

Safety rules followed here:
- A group is signalled only while its leader is known to hold its pid: either the leader is our
  unreaped child (a zombie still pins the pid), or its start time (field 22 of
  /proc/<pid>/stat, clock ticks since boot) matches the one recorded when it was started. A
  recycled pid is never signalled.
- Zombies count as gone: a killed orphan whose new parent does not reap it stays in /proc in
  state Z but runs nothing.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Iterable, Mapping

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    state: str
    ppid: int
    pgrp: int
    session: int
    utime: int
    stime: int
    cutime: int
    cstime: int
    starttime: int

    @property
    def cpu_ticks(self) -> int:
        """CPU of the process and of its reaped children, in clock ticks."""
        return self.utime + self.stime + self.cutime + self.cstime

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X", "x")


def proc_stat(pid: int) -> ProcStat | None:
    """Parse /proc/<pid>/stat; None when the process does not exist."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096).decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)
    # comm may hold spaces and parentheses: it ends at the last ')'
    lpar, rpar = data.find("("), data.rfind(")")
    if lpar < 0 or rpar < 0:
        return None
    rest = data[rpar + 2:].split()
    # rest[0] is field 3 (state); field N is rest[N - 3]
    try:
        return ProcStat(pid=pid, comm=data[lpar + 1:rpar], state=rest[0], ppid=int(rest[1]),
                        pgrp=int(rest[2]), session=int(rest[3]), utime=int(rest[11]),
                        stime=int(rest[12]), cutime=int(rest[13]), cstime=int(rest[14]),
                        starttime=int(rest[19]))
    except (IndexError, ValueError):
        return None


def start_time(pid: int) -> int | None:
    """The process start time (field 22 of /proc/<pid>/stat), or None if it does not exist.

    For a group leader a `GroupRegistry` holds (our unreaped child, so its pid is pinned) the
    start time recorded when it was spawned is returned without reading /proc."""
    known = _known_start.get(pid)
    if known is not None:
        try:  # still our unreaped child? (then the pid cannot have been recycled)
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            return known
        except ChildProcessError:
            _known_start.pop(pid, None)
    st = proc_stat(pid)
    return st.starttime if st else None


# pid → start time of the group leaders registered in some GroupRegistry (our unreaped children)
_known_start: dict[int, int] = {}

_NS_PER_TICK = 10**9 // CLK_TCK if CLK_TCK > 0 and 10**9 % CLK_TCK == 0 else 0
_inferred_ok: bool | None = None  # None: not checked against /proc yet in this process


def boottime_ns() -> int:
    """CLOCK_BOOTTIME in nanoseconds: the clock of /proc start times (0 if unavailable)."""
    try:
        return time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):
        return 0


def child_start_time(pid: int, before_ns: int, after_ns: int) -> int | None:
    """The start time of our child `pid`, forked between two `boottime_ns()` readings.

    The kernel stamps a new process with CLOCK_BOOTTIME at fork and /proc shows it truncated to
    clock ticks; when both readings fall in the same tick, that tick *is* the start time, known
    without reading /proc/<pid>/stat — which blocks for as long as the fresh child is busy in
    exec or fork (0.2–1 ms for `sh -c`). Otherwise (about one fork in twenty) /proc is read. The
    first inference in a process is checked against /proc; a mismatch (an unusual kernel)
    turns inference off for the rest of the process."""
    global _inferred_ok
    tick = before_ns // _NS_PER_TICK if _NS_PER_TICK and before_ns else None
    if tick is not None and tick == after_ns // _NS_PER_TICK:
        if _inferred_ok:
            return tick
        if _inferred_ok is None:
            st = proc_stat(pid)
            if st is None:
                return None
            _inferred_ok = st.starttime == tick
            return st.starttime
    st = proc_stat(pid)
    return st.starttime if st else None


def group_members(pgid: int, include_zombies: bool = False) -> list[int]:
    """Pids of the processes in group `pgid` (live ones only unless `include_zombies`)."""
    out = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        st = proc_stat(int(name))
        if st is not None and st.pgrp == pgid and (include_zombies or st.alive):
            out.append(st.pid)
    return sorted(out)


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to group `pgid`; False when the group no longer exists."""
    if pgid <= 1:
        raise ValueError(f"refusing to signal process group {pgid}")
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def group_alive(pgid: int) -> bool:
    """True while a non-zombie process remains in group `pgid`."""
    return bool(group_members(pgid))


def terminate_group(pgid: int, grace: float = 0.5, poll: float = 0.02) -> None:
    """Synchronously SIGTERM group `pgid`, wait up to `grace` seconds, then SIGKILL it.

    Only for groups whose leader is pinned (our unreaped child) or verified by start time."""
    if not signal_group(pgid, signal.SIGTERM):
        return
    end = time.monotonic() + grace
    while time.monotonic() < end:
        if not group_alive(pgid):
            break
        time.sleep(poll)
    signal_group(pgid, signal.SIGKILL)


def _pairs(groups: Mapping[int, int] | Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    items = groups.items() if isinstance(groups, Mapping) else groups
    return sorted((int(p), int(t)) for p, t in items)


def kill_orphans(groups: Mapping[int, int] | Iterable[tuple[int, int]],
                 sig: int = signal.SIGKILL) -> list[int]:
    """SIGKILL the process groups a dead engine left behind.

    `groups` maps pgid → the start time its leader had when it was recorded (as from
    `Runtimes.running_groups()`). A group is killed only if its leader still runs with that
    start time: a pid recycled by an unrelated process is left alone, and so is a group whose
    leader is gone (its survivors cannot be told apart from a recycled group). Returns the pgids
    that were signalled."""
    killed = []
    for pgid, recorded in _pairs(groups):
        if pgid <= 1:
            continue
        st = proc_stat(pgid)
        if st is None or not st.alive or st.starttime != recorded or st.pgrp != pgid:
            continue
        if signal_group(pgid, sig):
            killed.append(pgid)
    return killed


# -- starting task commands ----------------------------------------------------------------------

def inheritable_fds(low: int = 3) -> list[int]:
    """This process's open file descriptors >= `low` that a child would inherit."""
    out = []
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return out
    for name in names:
        fd = int(name)
        if fd >= low:
            try:
                if os.get_inheritable(fd):
                    out.append(fd)
            except OSError:  # the directory's own descriptor, already closed
                pass
    return sorted(out)


class Spawner:
    """Starts a command as the leader of a new session with `os.posix_spawnp` — a third of the
    cost of `subprocess.Popen` (no Python-level environment and PATH processing, no error pipe;
    glibc's clone(CLONE_VFORK)) — with what Popen(start_new_session=True) would give it: stdin
    /dev/null, stdout and stderr the given descriptor, SIGPIPE and SIGXFSZ back to their default
    action, an empty signal mask (the spawning thread's own is not passed on), no inherited
    descriptors beyond 0–2 (descriptors are close-on-exec in Python; the inheritable ones this
    process started with are closed in the child).

    It cannot change the working directory or set rlimits: callers use Popen for those."""

    def __init__(self) -> None:
        self.available = (hasattr(os, "posix_spawnp") and hasattr(os, "POSIX_SPAWN_DUP2")
                          and os.uname().sysname == "Linux")
        self._devnull: int | None = None
        self._close = tuple(inheritable_fds()) if self.available else ()
        self._sigdef = tuple(getattr(signal, n) for n in ("SIGPIPE", "SIGXFSZ", "SIGXFZ")
                             if hasattr(signal, n))

    def usable_with(self, out_fd: int) -> bool:
        if not self.available:
            return False
        if self._devnull is None:
            self._devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        return self._devnull > 2 and out_fd > 2  # (dup2 onto itself would keep close-on-exec)

    def spawn(self, argv: list[str], env, out_fd: int) -> int:
        """The new leader's pid. `env`: its whole environment (None: this process's). Raises
        OSError as exec would (FileNotFoundError, …)."""
        dup2, close = os.POSIX_SPAWN_DUP2, os.POSIX_SPAWN_CLOSE
        actions = [(dup2, self._devnull, 0), (dup2, out_fd, 1), (dup2, out_fd, 2)]
        actions += [(close, fd) for fd in self._close]
        return os.posix_spawnp(argv[0], argv, os.environ if env is None else env,
                               file_actions=actions, setsid=True, setsigdef=self._sigdef,
                               setsigmask=())

    def close(self) -> None:
        if self._devnull is not None:
            try:
                os.close(self._devnull)
            except OSError:
                pass
            self._devnull = None


def environ_bytes() -> dict[bytes, bytes]:
    """The process's environment as bytes (what exec needs, nothing to re-encode). Read per
    task: os.environ may change during a run."""
    data = getattr(os.environ, "_data", None)  # CPython: the bytes mapping behind os.environ
    return dict(data) if type(data) is dict else dict(os.environb)


# -- waiting for and reaping our own children -------------------------------------------------

def open_pidfd(pid: int) -> int | None:
    """A pidfd for `pid` (readable once it exits), or None where unsupported."""
    fn = getattr(os, "pidfd_open", None)
    if fn is None:
        return None
    try:
        return fn(pid)
    except OSError:
        return None


def has_exited(pid: int) -> bool:
    """True when our child `pid` has exited (it is not reaped: its pid stays pinned)."""
    try:
        res = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return res is not None


@dataclass(frozen=True)
class Reaped:
    exit_code: int | None      # as subprocess: >= 0 an exit status, < 0 the killing signal
    cpu_s: float               # CPU of the child and its reaped descendants

    @property
    def signal(self) -> int | None:
        return -self.exit_code if self.exit_code is not None and self.exit_code < 0 else None


def reap(pid: int) -> Reaped:
    """Wait for (blocking) and reap our child `pid`, returning its status and CPU usage."""
    try:
        _, status, ru = os.wait4(pid, 0)
    except ChildProcessError:  # somebody else reaped it
        return Reaped(None, 0.0)
    return Reaped(os.waitstatus_to_exitcode(status), ru.ru_utime + ru.ru_stime)


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def describe_exit(code: int | None) -> str:
    """'exit 3', 'killed by SIGSEGV', 'unknown exit status'."""
    if code is None:
        return "unknown exit status"
    if code < 0:
        return f"killed by {signal_name(-code)}"
    return f"exit {code}"


class GroupRegistry:
    """The process groups a `Runtimes` owns, pgid → leader start time.

    A group is registered right after its leader is spawned and removed right before the leader
    is reaped, so `kill_all` never signals a pgid that could have been recycled. Plain dict
    operations only: `kill_all` may run from a signal handler."""

    def __init__(self) -> None:
        self._live: dict[int, int] = {}

    def add(self, pgid: int, start: int | None) -> None:
        self._live[pgid] = start if start is not None else -1
        if start is not None:
            _known_start[pgid] = start
        else:
            _known_start.pop(pgid, None)

    def discard(self, pgid: int) -> None:
        if self._live.pop(pgid, None) is not None:
            _known_start.pop(pgid, None)

    def snapshot(self) -> dict[int, int]:
        return dict(self._live)

    def __contains__(self, pgid: int) -> bool:
        return pgid in self._live

    def kill_all(self, sig: int = signal.SIGKILL) -> list[int]:
        done = []
        for pgid in list(self._live):
            if pgid > 1 and signal_group(pgid, sig):
                done.append(pgid)
        return done


def kill_marked(marker: str, sig: int = signal.SIGKILL) -> list[int]:
    """Signal the process group of every process whose environment holds `marker`
    (e.g. "E3_RUN_TOKEN=…"): task processes a killed engine spawned but never recorded."""
    needle = marker.encode() + b"\0"
    me = os.getpid()
    groups = set()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                env = f.read() + b"\0"
            if b"\0" + needle in b"\0" + env:
                groups.add(os.getpgid(int(d)))
        except (OSError, ProcessLookupError):
            continue
    killed = []
    for g in sorted(groups):
        if g > 1 and g != os.getpgid(0) and signal_group(g, sig):
            killed.append(g)
    return killed
