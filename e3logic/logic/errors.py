"""Typed errors of the logic layer. Static errors carry the source, line and column."""
from __future__ import annotations

from e3logic.core.errors import E3Error, UsageError, did_you_mean


class LogicError(UsageError):
    """A rule program that cannot be accepted; the message starts with `source:line:column:`."""

    def __init__(self, message: str, source: str = "<text>", line: int = 0, column: int = 0):
        self.source, self.line, self.column, self.reason = source, line, column, message
        super().__init__(f"{source}:{line}:{column}: {message}")


class DatalogSyntaxError(LogicError):
    """Text that is not in the rule language."""


class ArityError(LogicError):
    """A predicate used with two different numbers of arguments."""


class UnsafeVariableError(LogicError):
    """A variable not bound by a positive atom (in a head, negation, comparison or expression),
    or `_` where a value is needed."""


class StratificationError(LogicError):
    """Negation through recursion; `.cycle` names the predicates on the cycle."""

    def __init__(self, message: str, source: str, line: int, column: int, cycle: list[str]):
        self.cycle = cycle
        super().__init__(message, source, line, column)


class UnknownPredicateError(LogicError):
    """A query names a predicate that no rule, fact or given relation defines."""

    def __init__(self, name: str, candidates, source: str = "<query>", line: int = 0,
                 column: int = 0):
        self.name = name
        self.suggestions = did_you_mean(name, candidates)
        msg = f"unknown predicate '{name}' in a query"
        if self.suggestions:
            msg += f"; did you mean {' or '.join(repr(s) for s in self.suggestions)}?"
        super().__init__(msg, source, line, column)


class FactError(UsageError):
    """Given facts that do not fit the program (wrong arity, a value that is not str or int)."""


class EngineError(E3Error):
    """An engine that cannot evaluate a program or an input (e.g. pyDatalog on non-linear
    recursion); the message names the fix."""

    exit_code = UsageError.exit_code


class LimitError(EngineError):
    """Evaluation stopped past a limit of `Limits` (derived facts or seconds); the message names
    the relation that kept growing and the option to raise."""
