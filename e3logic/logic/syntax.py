"""The rule language: the syntax tree and the parser's entry points (the lark grammar and
the tree builder are in `grammar.py`, imported only to parse).

Soufflé-style: a term that is an identifier is a variable, `_` is anonymous, constants are
double-quoted strings and integers. An identifier in predicate position (before `(`, or alone
as a literal) names a predicate. Statements: facts `p("a").`, rules `h(X) :- b(X), !c(X).`,
queries `?- h(X).`; `//` and `/* */` comments; `//` lines right above the first clause of a
relation are its doc comment.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Union

# ----------------------------------------------------------------------------- syntax tree

@dataclass(frozen=True)
class Var:
    name: str
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)

    def __str__(self):
        return self.name


@dataclass(frozen=True)
class Anon:
    """`_`: a fresh variable at each occurrence."""
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)

    def __str__(self):
        return "_"


@dataclass(frozen=True)
class Const:
    value: Union[str, int]
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)

    def __str__(self):
        return json.dumps(self.value, ensure_ascii=False) if isinstance(self.value, str) \
            else str(self.value)


@dataclass(frozen=True)
class BinOp:
    op: str  # + - * /
    left: "Term"
    right: "Term"
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)
    depth: int = field(default=1, compare=False)

    def __str__(self):
        return f"({self.left} {self.op} {self.right})"


Term = Union[Var, Anon, Const, BinOp]


@dataclass(frozen=True)
class Atom:
    pred: str
    args: tuple
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)

    @property
    def arity(self) -> int:
        return len(self.args)

    def __str__(self):
        return self.pred + (f"({', '.join(map(str, self.args))})" if self.args else "")


@dataclass(frozen=True)
class Negation:
    atom: Atom
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)

    def __str__(self):
        return f"!{self.atom}"


@dataclass(frozen=True)
class Comparison:
    op: str  # = != < <= > >=
    left: Term
    right: Term
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)

    def __str__(self):
        return f"{self.left} {self.op} {self.right}"


Literal = Union[Atom, Negation, Comparison]


@dataclass(frozen=True)
class Rule:
    head: Atom
    body: tuple  # of Literal; empty for a fact
    source: str = field(default="<text>", compare=False)

    @property
    def line(self):
        return self.head.line

    @property
    def column(self):
        return self.head.column

    def __str__(self):
        return f"{self.head}." if not self.body else \
            f"{self.head} :- {', '.join(map(str, self.body))}."


@dataclass(frozen=True)
class Query:
    body: tuple  # of Literal
    source: str = field(default="<query>", compare=False)
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)

    @property
    def variables(self) -> list[str]:
        """Named variables in order of first appearance: the result columns. A variable only
        in a negation is existential (no value), not a column."""
        positive = {v.name for lit in self.body if not isinstance(lit, Negation)
                    for v in literal_vars(lit)}
        seen: list[str] = []
        for lit in self.body:
            for v in literal_vars(lit):
                if v.name not in seen and v.name in positive:
                    seen.append(v.name)
        return seen

    def __str__(self):
        return f"?- {', '.join(map(str, self.body))}."


def term_vars(t) -> list[Var]:
    """Named variables of a term, left to right (iterative: expressions may nest deeply)."""
    out, stack = [], [t]
    while stack:
        t = stack.pop()
        if isinstance(t, Var):
            out.append(t)
        elif isinstance(t, BinOp):
            stack.append(t.right)
            stack.append(t.left)
    return out


def term_anons(t) -> list[Anon]:
    out, stack = [], [t]
    while stack:
        t = stack.pop()
        if isinstance(t, Anon):
            out.append(t)
        elif isinstance(t, BinOp):
            stack.append(t.right)
            stack.append(t.left)
    return out


def literal_vars(lit) -> list[Var]:
    if isinstance(lit, Atom):
        return [v for a in lit.args for v in term_vars(a)]
    if isinstance(lit, Negation):
        return literal_vars(lit.atom)
    return term_vars(lit.left) + term_vars(lit.right)


# ----------------------------------------------------------------------------- parser

#: deepest expression nesting accepted (keeps every later pass far from the recursion limit)
MAX_EXPR_DEPTH = 100


def _depth(t) -> int:
    return t.depth if isinstance(t, BinOp) else 0


def comments(text: str) -> list[tuple[int, str]]:
    """`//` comment lines as (line, text without the slashes), for doc comments."""
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s.startswith("//"):
            out.append((i, s[2:].strip()))
    return out


def parse_statements(text: str, source: str = "<text>") -> list:
    """Parse a program text into Rule and Query objects (facts are rules with empty bodies)."""
    from e3logic.logic.grammar import parse  # lark is imported only to parse

    return parse("program", text, source)


def parse_query(text: str, source: str = "<query>") -> Query:
    """Parse `?- body.` (the `?-` and the final `.` are optional)."""
    from e3logic.logic.grammar import parse

    return parse("query_only", text, source)
