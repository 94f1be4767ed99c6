"""Spare log files: a task's log without a new file for every task (see `LogSpares`)."""
from __future__ import annotations

import os

from ..repo.atomic import remove_file


def truncate(path: str) -> None:
    """Empty the file at `path`, if there is one."""
    try:
        os.truncate(path, 0)
    except FileNotFoundError:
        pass


class LogSpares:
    """Empty files in the logs directory, named after the run, that a task's log path is
    hard-linked to before it starts: output streams into the log as always, but a task that
    prints nothing hands its file back for the next one (the link is removed) instead of
    leaving an empty log — a log costs no new file, which is most of what creating one costs
    (an inode). `close()` removes the spares; a dead run's are removed with its staging.

    A spare is only ever written by the task it was linked for: an earlier log at the path (an
    earlier execution of the same key — or the same execution running in another workspace
    right now) is replaced, never written into, and a spare goes back to the pool only while
    nothing but its own name refers to it."""

    def __init__(self, logs_dir, run_id: str):
        self.dir = str(logs_dir)
        self.run_id = run_id
        self.free: list[str] = []
        self.made = 0

    def link(self, log_path: str) -> str:
        """A spare, now the file at `log_path` (whatever was there is replaced)."""
        spare = self.free.pop() if self.free else self._new()
        try:
            os.link(spare, log_path)
        except FileExistsError:
            tmp = f"{spare}.link"
            remove_file(tmp)
            os.link(spare, tmp)
            os.replace(tmp, log_path)  # atomically: a reader sees the old log or the new one
        return spare

    def _new(self) -> str:
        self.made += 1
        path = f"{self.dir}/{spare_prefix(self.run_id)}{self.made}"
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644))
        return path

    def settle(self, spare: str, log_path: str, reuse: bool) -> None:
        """After the task: an empty log is unlinked (its spare is free again, if `reuse` and
        no other name refers to it); a log with output keeps the file and the spare's own
        name goes."""
        try:
            st = os.stat(spare)
        except FileNotFoundError:
            return
        if st.st_size == 0:
            names = st.st_nlink
            try:
                if os.stat(log_path).st_ino == st.st_ino:  # not replaced by another run
                    os.unlink(log_path)
                    names -= 1
            except FileNotFoundError:
                pass
            if reuse and names == 1:
                self.free.append(spare)
                return
        remove_file(spare)

    def close(self) -> None:
        for p in self.free:
            remove_file(p)
        self.free = []


def spare_prefix(run_id: str) -> str:
    """File names of a run's log spares start with this (see `LogSpares`)."""
    return f".spare-{run_id}-"
