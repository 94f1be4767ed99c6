"""Engine-neutral form of checked rules, the value semantics both engines share, and join order.

Values are `str` and `int`. Arithmetic (`+ - * /`) is defined on two ints only; `/` truncates
toward zero; anything else (a string operand, division by zero, a result outside the signed
64-bit range) is *undefined*, and a rule instance that needs an undefined value derives
nothing. (The range keeps `sq(Y * Y) :- sq(Y).` from building integers of gigabytes in a few
steps, each one product that no limit could interrupt.) Ordering comparisons (`< <= > >=`) hold
only between two ints or two strings; `=` and `!=` compare any two values.

Lowering: a head or body expression becomes a fresh variable `#n` plus an `Eq` literal (bind the
variable to the expression's value, or check it if already bound); `_` becomes `None`; a
variable of a negation that no positive atom binds is existential within that negation (the
checks allow it in one negation only): `None` like `_`, or `("x", name)` where it occurs more
than once (`!r(X, Y, Y)`: no Y with r(X, Y, Y)); ground expressions and comparisons are folded.
"""
from __future__ import annotations

from dataclasses import dataclass

from e3logic.logic.syntax import Anon, Atom, BinOp, Comparison, Const, Negation, Rule, Var


class _Undefined:
    __slots__ = ()

    def __repr__(self):
        return "UNDEFINED"


#: the value of an undefined arithmetic result
BOT = _Undefined()


INT_MIN, INT_MAX = -(1 << 63), (1 << 63) - 1


def arith(op: str, a, b):
    if type(a) is not int or type(b) is not int:
        return BOT
    if op == "+":
        r = a + b
    elif op == "-":
        r = a - b
    elif op == "*":
        if a.bit_length() + b.bit_length() > 130:  # far out of range: skip the product
            return BOT
        r = a * b
    elif b == 0:
        return BOT
    else:
        q = abs(a) // abs(b)
        r = q if (a < 0) == (b < 0) else -q
    return r if INT_MIN <= r <= INT_MAX else BOT


def compare(op: str, a, b) -> bool:
    if a is BOT or b is BOT:
        return False
    if op == "=":
        return a == b
    if op == "!=":
        return a != b
    if type(a) is not type(b):
        return False
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


# expressions: ("v", name) | ("c", value) | ("op", op, left, right)

def expr_vars(e) -> set[str]:
    out, stack = set(), [e]
    while stack:
        e = stack.pop()
        if e[0] == "v":
            out.add(e[1])
        elif e[0] == "op":
            stack.append(e[2])
            stack.append(e[3])
    return out


def eval_expr(e, env: dict):
    """Evaluate an expression with variable values from env (iterative, post-order)."""
    out: list = []
    stack = [(e, False)]
    while stack:
        e, done = stack.pop()
        kind = e[0]
        if kind == "v":
            out.append(env[e[1]])
        elif kind == "c":
            out.append(e[1])
        elif done:
            b = out.pop()
            a = out.pop()
            out.append(arith(e[1], a, b))
        else:
            stack.append((e, True))
            stack.append((e[3], False))
            stack.append((e[2], False))
    return out[0]


@dataclass(frozen=True)
class IAtom:
    pred: str
    args: tuple  # each ("v", name) | ("c", value) | None (anonymous) | ("x", name) (existential)
    negated: bool = False

    def vars(self) -> set[str]:
        """The variables it needs bound (or binds): existential ones are its own."""
        return {a[1] for a in self.args if a is not None and a[0] == "v"}

    def repeated_existentials(self) -> list[tuple[int, ...]]:
        """Positions of each existential variable that occurs more than once."""
        where: dict[str, list[int]] = {}
        for i, a in enumerate(self.args):
            if a is not None and a[0] == "x":
                where.setdefault(a[1], []).append(i)
        return [tuple(p) for p in where.values() if len(p) > 1]


@dataclass(frozen=True)
class ICmp:
    op: str
    left: tuple
    right: tuple

    def vars(self) -> set[str]:
        return expr_vars(self.left) | expr_vars(self.right)


@dataclass(frozen=True)
class IEq:
    """Bind `var` to the value of `expr`, or check equality when `var` is already bound."""
    var: str
    expr: tuple

    def vars(self) -> set[str]:
        return expr_vars(self.expr)


@dataclass(frozen=True)
class IRule:
    head: str
    args: tuple  # each ("v", name) | ("c", value)
    body: tuple  # IAtom | ICmp | IEq
    rule: Rule   # the surface rule, for positions and messages

    def positives(self) -> list[IAtom]:
        return [lit for lit in self.body if isinstance(lit, IAtom) and not lit.negated]


def _lower(t, fresh, extra: list):
    """A surface term → (expression, is_ground)."""
    if isinstance(t, Var):
        return ("v", t.name)
    if isinstance(t, Const):
        return ("c", t.value)
    if isinstance(t, BinOp):
        e = ("op", t.op, _lower(t.left, fresh, extra), _lower(t.right, fresh, extra))
        if not expr_vars(e):
            return ("c", eval_expr(e, {}))
        return e
    raise AssertionError(f"unexpected term {t!r}")  # `_` is rejected by the checks


class _Dead(Exception):
    """A rule that can never fire (a ground comparison is false or a ground value undefined)."""


def lower_rule(rule: Rule) -> IRule | None:
    """Lower a checked surface rule; None if it can never fire."""
    counter = [0]

    def fresh() -> str:
        counter[0] += 1
        return f"#{counter[0]}"

    def arg(t, extra: list, allow_anon: bool):
        if isinstance(t, Anon):
            return None
        e = _lower(t, fresh, extra)
        if e[0] == "c" and e[1] is BOT:
            raise _Dead
        if e[0] == "op":
            v = fresh()
            extra.append(IEq(v, e))
            return ("v", v)
        return e

    positive = {a.name for lit in rule.body if isinstance(lit, Atom)
                for a in lit.args if isinstance(a, Var)}

    def neg_arg(t, extra: list, counts: dict):
        if isinstance(t, Var) and t.name not in positive:  # existential
            return ("x", t.name) if counts[t.name] > 1 else None
        return arg(t, extra, True)

    try:
        body: list = []
        extra: list = []
        for lit in rule.body:
            if isinstance(lit, Atom):
                body.append(IAtom(lit.pred, tuple(arg(a, extra, True) for a in lit.args)))
            elif isinstance(lit, Negation):
                a = lit.atom
                counts: dict = {}
                for x in a.args:
                    if isinstance(x, Var):
                        counts[x.name] = counts.get(x.name, 0) + 1
                body.append(IAtom(a.pred, tuple(neg_arg(x, extra, counts) for x in a.args),
                                  True))
            elif isinstance(lit, Comparison):
                left, right = _lower(lit.left, fresh, extra), _lower(lit.right, fresh, extra)
                if left[0] == "c" and right[0] == "c":
                    if not compare(lit.op, left[1], right[1]):
                        raise _Dead
                    continue
                body.append(ICmp(lit.op, left, right))
        head_args = tuple(arg(a, extra, False) for a in rule.head.args)
    except _Dead:
        return None
    return IRule(rule.head.pred, head_args, tuple(body + extra), rule)


# ----------------------------------------------------------------------------- join order

def schedule(body, bound=(), first: IAtom | None = None, first_bound=False) -> list:
    """Order a rule body for left-to-right evaluation.

    Returns steps `(literal, bound_before)`, where bound_before is the set of variables bound
    when the literal runs. `first` (a positive atom of the body) goes first. Other positive
    atoms are picked greedily: fully bound ones, then the one with most bound arguments; ties
    and atoms with no bound argument keep source order. Filters (negations, comparisons, Eq)
    run as soon as their variables are bound.
    """
    bound = set(bound)
    atoms = [lit for lit in body if isinstance(lit, IAtom) and not lit.negated]
    filters = [lit for lit in body if not (isinstance(lit, IAtom) and not lit.negated)]
    steps: list = []

    def ready(f) -> bool:
        return f.vars() <= bound

    def flush():
        progress = True
        while progress:
            progress = False
            for f in list(filters):
                if ready(f):
                    steps.append((f, frozenset(bound)))
                    filters.remove(f)
                    if isinstance(f, IEq):
                        bound.add(f.var)
                    progress = True

    def take(atom):
        steps.append((atom, frozenset(bound)))
        atoms.remove(atom)
        bound.update(atom.vars())

    if first is not None:  # before any filter: the engines rely on it coming first
        take(first)
    flush()
    while atoms:
        def score(item):
            i, a = item
            nb = sum(1 for x in a.args if x is not None and (x[0] == "c" or x[1] in bound))
            full = all(x is not None and (x[0] == "c" or x[1] in bound) for x in a.args)
            return (0 if full else 1, -nb, i)
        _, best = min(enumerate(atoms), key=score)
        take(best)
        flush()
    if filters:  # unreachable after the safety checks
        raise AssertionError(f"unschedulable literals {filters}")
    return steps
