"""The rule language: a lark grammar, the syntax tree it builds, and the parser.

Soufflé-style: a term that is an identifier is a variable, `_` is anonymous, constants are
double-quoted strings and integers. An identifier in predicate position (before `(`, or alone
as a literal) names a predicate. Statements: facts `p("a").`, rules `h(X) :- b(X), !c(X).`,
queries `?- h(X).`; `//` and `/* */` comments; `//` lines right above the first clause of a
relation are its doc comment.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Union

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (UnexpectedCharacters, UnexpectedEOF, UnexpectedInput,
                             UnexpectedToken, VisitError)

from e3logic.logic.errors import DatalogSyntaxError

GRAMMAR = r"""
program: statement*
?statement: clause | query
clause: atom "." -> fact
      | atom ":-" body "." -> rule
query: "?-" body "."
query_only: "?-"? body "."?
body: literal ("," literal)*
?literal: atom
        | NEG atom -> negation
        | NOT atom -> negation
        | expr CMP expr -> comparison
        | "(" expr CMP expr ")" -> comparison
atom: NAME "(" [expr ("," expr)*] ")"
    | NAME
?expr: sum
?sum: product
    | sum ADDOP product -> binop
?product: unary
    | product MULOP unary -> binop
?unary: primary
      | MINUS unary -> minus
?primary: NAME -> var
        | STRING -> string
        | INT -> int
        | "(" sum ")"
NEG: "!"
NOT: "not"
CMP: "!=" | "<=" | ">=" | "=" | "<" | ">"
ADDOP: "+" | "-"
MINUS: "-"
MULOP: "*" | "/"
NAME: /[A-Za-z_][A-Za-z0-9_]*/
STRING: /"(\\.|[^"\\\n])*"/
INT: /[0-9]+/
COMMENT: /\/\/[^\n]*/
BLOCK_COMMENT: /\/\*(.|\n)*?\*\//
%import common.WS
%ignore WS
%ignore COMMENT
%ignore BLOCK_COMMENT
"""


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


@v_args(inline=True)
class _Build(Transformer):
    """Builds the syntax tree while the LALR parser reduces (no recursive tree walk)."""

    source = "<text>"

    def var(self, tok: Token):
        if tok.value == "_":
            return Anon(tok.line, tok.column)
        return Var(tok.value, tok.line, tok.column)

    def string(self, tok: Token):
        try:
            value = json.loads(tok.value)
        except ValueError:
            raise DatalogSyntaxError(f"bad string escape in {tok.value}", self.source,
                                     tok.line, tok.column) from None
        return Const(value, tok.line, tok.column)

    def int(self, tok: Token):
        return Const(int(tok.value), tok.line, tok.column)

    def minus(self, tok: Token, t):
        if isinstance(t, Const) and isinstance(t.value, int):
            return Const(-t.value, tok.line, tok.column)
        return self.binop(Const(0, tok.line, tok.column), tok, t, "-")

    def binop(self, left, tok: Token, right, op=None):
        depth = 1 + max(_depth(left), _depth(right))
        if depth > MAX_EXPR_DEPTH:
            raise DatalogSyntaxError(f"expression nested deeper than {MAX_EXPR_DEPTH}; "
                                     f"split it with intermediate relations",
                                     self.source, tok.line, tok.column)
        return BinOp(op or tok.value, left, right, tok.line, tok.column, depth)

    def atom(self, name: Token, *args):
        return Atom(name.value, tuple(a for a in args if a is not None), name.line, name.column)

    def negation(self, tok: Token, atom: Atom):
        return Negation(atom, tok.line, tok.column)

    def comparison(self, left, tok: Token, right):
        return Comparison(tok.value, left, right, tok.line, tok.column)

    def body(self, *lits):
        return tuple(lits)

    def fact(self, head: Atom):
        return Rule(head, (), self.source)

    def rule(self, head: Atom, body):
        return Rule(head, body, self.source)

    def query(self, body):
        first = body[0]
        return Query(body, self.source, first.line, first.column)

    def query_only(self, body):
        return self.query(body)

    def program(self, *statements):
        return list(statements)


_STARTS = ["program", "query_only"]


@lru_cache(maxsize=None)
def _parser() -> Lark:
    """A plain parser, used to name terminals in error messages."""
    return Lark(GRAMMAR, start=_STARTS, parser="lalr", maybe_placeholders=True,
                lexer="contextual", cache=True)


_PARSE_LOCK = threading.Lock()


@lru_cache(maxsize=None)
def _building_parser() -> tuple[Lark, _Build]:
    """A parser that calls the builder at each reduction (LALR only): no tree to walk."""
    builder = _Build()
    return Lark(GRAMMAR, start=_STARTS, parser="lalr", maybe_placeholders=True,
                lexer="contextual", transformer=builder, cache=True), builder


def _parse(start: str, text: str, source: str):
    parser, builder = _building_parser()
    with _PARSE_LOCK:
        builder.source = source
        try:
            return parser.parse(text, start=start)
        except UnexpectedInput as e:
            raise _syntax_error(e, source) from None
        except VisitError as e:  # an error raised by the builder
            if isinstance(e.orig_exc, DatalogSyntaxError):
                raise e.orig_exc from None
            raise


def _syntax_error(e: UnexpectedInput, source: str) -> DatalogSyntaxError:
    if isinstance(e, UnexpectedEOF):
        return DatalogSyntaxError("unexpected end of text; a statement ends with '.'", source,
                                  e.line if e.line > 0 else 0, max(e.column, 0))
    if isinstance(e, UnexpectedToken):
        tok = e.token
        line = tok.line if tok.line is not None and tok.line > 0 else e.line
        col = tok.column if tok.column is not None and tok.column > 0 else e.column
        if tok.type == "$END":
            return DatalogSyntaxError("unexpected end of text; a statement ends with '.'",
                                      source, line, col)
        expected = _names(e.expected)
        hint = f"; expected {expected}" if expected else ""
        return DatalogSyntaxError(f"unexpected {tok.value!r}{hint}", source, line, col)
    if isinstance(e, UnexpectedCharacters):
        what = "unterminated string" if e.char == '"' else f"unexpected character {e.char!r}"
        return DatalogSyntaxError(what, source, e.line, e.column)
    return DatalogSyntaxError(str(e).splitlines()[0], source, e.line, e.column)


_TOKEN_NAMES = {"NAME": "a name", "STRING": "a string", "INT": "an integer",
                "CMP": "a comparison", "ADDOP": "'+' or '-'", "MULOP": "'*' or '/'"}


def _names(expected) -> str:
    """Human names of the expected terminals."""
    names = set()
    for t in expected:
        if t in _TOKEN_NAMES:
            names.add(_TOKEN_NAMES[t])
            continue
        try:
            names.add(repr(_parser().get_terminal(t).pattern.value))
        except KeyError:
            names.add(t.lower())
    names = sorted(names)
    return ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")


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
    return _parse("program", text, source)


def parse_query(text: str, source: str = "<query>") -> Query:
    """Parse `?- body.` (the `?-` and the final `.` are optional)."""
    return _parse("query_only", text, source)
