"""Error hierarchy. Each class maps to an exit code; messages are one line naming the fix."""
from __future__ import annotations

from typing import Iterable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130


class E3Error(Exception):
    """Base: a user-facing error with a one-line message."""

    exit_code = EXIT_FAILED


class UsageError(E3Error):
    """Bad arguments or bad input."""

    exit_code = EXIT_USAGE


class NotFound(UsageError):
    """An unknown name; carries 'did you mean' suggestions."""

    def __init__(self, kind: str, name: str, candidates: Iterable[str] = (), hint: str = ""):
        self.kind, self.name = kind, name
        self.suggestions = did_you_mean(name, candidates)
        msg = f"unknown {kind} '{name}'"
        if self.suggestions:
            msg += f"; did you mean {' or '.join(repr(s) for s in self.suggestions)}?"
        elif hint:
            msg += f"; {hint}"
        super().__init__(msg)


class NoRepository(UsageError):
    pass


class BuildError(UsageError):
    """A package definition that cannot be built (cycle, duplicate producer, ...)."""


class IntegrityError(E3Error):
    """Bytes whose hash does not match their name, or a malformed object."""


class BadBundle(UsageError, IntegrityError):
    """A bundle zip refused at `e3 add`: malformed, corrupt or hostile. Bad input, so exit 2
    (UsageError comes first); still an IntegrityError for callers that catch those."""


class DamagedMetadata(IntegrityError):
    """A ref or index.db that cannot be read or names nonsense; `e3 fsck --repair` fixes it."""

    exit_code = EXIT_USAGE


class ReadOnlyRepository(UsageError):
    """A command that writes, on a repository this user cannot write."""


class ResourceExhausted(E3Error):
    """A system limit was hit (open files, disk space, memory, quota): not the user's input,
    not a bug; the message names the limit and how to raise it."""


class ConflictError(E3Error):
    """A compare-and-swap lost, or a lock is held by someone else."""


class LockBusy(ConflictError):
    pass


class CheckFailed(E3Error):
    pass


class TaskFailed(E3Error):
    pass


class Cancelled(E3Error):
    exit_code = EXIT_CANCELLED


def did_you_mean(name: str, candidates: Iterable[str], n: int = 2) -> list[str]:
    import difflib

    return difflib.get_close_matches(name, sorted(set(candidates)), n=n, cutoff=0.6)
