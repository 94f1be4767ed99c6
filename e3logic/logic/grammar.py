"""The lark grammar of the rule language and the transformer that builds `syntax` trees
while the LALR parser reduces. Imported only when text is parsed (lark is slow to import)."""
from __future__ import annotations

import json
import threading
from functools import lru_cache

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (UnexpectedCharacters, UnexpectedEOF, UnexpectedInput,
                             UnexpectedToken, VisitError)

from e3logic.logic.errors import DatalogSyntaxError
from e3logic.logic.syntax import (MAX_EXPR_DEPTH, Anon, Atom, BinOp, Comparison, Const,
                                  Negation, Query, Rule, Var, _depth)

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


parse = _parse
