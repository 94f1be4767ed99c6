"""The `pydatalog` engine: the reference, through pyDatalog.

pyDatalog resolves top-down with tabling, left to right. A recursive call whose arguments
were bound by earlier literals (the right-recursive `e(X,Z) & r(Z,Y)`) opens one table per
binding, and on any cycle of three or more nodes those tables never complete: it hangs. The
translator therefore emits every recursive rule in a left-linear form that always terminates:

- the body atom of the rule's own stratum goes first;
- its arguments are the head's variables at the same positions where the rule passes them
  through unchanged (so a bound call such as `reachable("a", Y)` stays one table), and fresh
  variables everywhere else, tied back by equalities after it (so every other call is the
  free one, a single table);
- non-linear recursion (two or more atoms of the rule's stratum in one body) is refused with
  `EngineError`: pyDatalog terminates on it only after minutes on a few dozen nodes.

State: pyDatalog keeps its clauses in a per-thread global. Each evaluation takes a lock,
starts from a fresh `Logic()`, uses predicate names with a unique prefix, and resets the
logic again when done, so one evaluation can neither see nor poison the next.
"""
from __future__ import annotations

import itertools
import threading

from e3logic.logic.errors import EngineError
from e3logic.logic.ir import BOT, IAtom, ICmp, IEq, IRule, compare, eval_expr, schedule
from e3logic.logic.limits import UNLIMITED, Guard

_LOCK = threading.Lock()
_COUNTER = itertools.count(1)
_ZERO = 0  # the dummy argument of zero-arity predicates


class _Odd:
    """A string pyDatalog would misread as a constant of its own ('True', 'False', '??')."""
    __slots__ = ("value",)

    def __init__(self, value: str):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, _Odd) and other.value == self.value

    def __hash__(self):
        return hash(("odd", self.value))

    def __repr__(self):
        return f"_Odd({self.value!r})"


_ODD = {"True", "False", "??"}


def _enc(v):
    return _Odd(v) if type(v) is str and v in _ODD else v


def _dec(v):
    return v.value if type(v) is _Odd else v


class _Yes:
    __slots__ = ()


YES = _Yes()


def nonlinear_rules(rules_by_head: dict[str, list[IRule]], strata: list[list[str]]) -> list:
    """Rules with two or more positive atoms of their own stratum."""
    comp = {p: i for i, s in enumerate(strata) for p in s}
    out = []
    for head, rules in rules_by_head.items():
        for r in rules:
            n = sum(1 for a in r.positives() if comp.get(a.pred) == comp[head])
            if n > 1:
                out.append(r)
    return out


def check_supported(rules_by_head: dict, strata: list) -> None:
    bad = nonlinear_rules(rules_by_head, strata)
    if bad:
        r = min(bad, key=lambda r: (r.rule.source, r.rule.line, r.rule.column)).rule
        raise EngineError(
            f"{r.source}:{r.line}:{r.column}: the pydatalog engine cannot evaluate non-linear "
            f"recursion ('{r.head.pred}' uses its own recursion twice in one rule; pyDatalog "
            f"would not finish); use engine 'fast'")


class _Translator:
    def __init__(self, rules_by_head: dict, strata: list, prefix: str, guard: Guard):
        self.guard = guard
        from pyDatalog.pyParser import Term  # pyDatalog is imported only when this engine runs
        self.Term = Term
        self.prefix = prefix
        self.comp = {p: i for i, s in enumerate(strata) for p in s}
        self.rules_by_head = rules_by_head
        self.fresh = itertools.count()

    def name(self, pred: str) -> str:
        if pred.isidentifier():
            return f"{self.prefix}p_{pred}"
        return f"{self.prefix}q_" + "".join(c if c.isalnum() else "_" for c in pred)

    def const(self, v):
        return self.Term(_enc(v), forced_type="constant")

    def new_var(self):
        return self.Term(f"F{next(self.fresh)}")

    def args(self, args, vars_: dict) -> list:
        out, existential = [], {}
        for a in args:
            if a is None:
                out.append(self.new_var())
            elif a[0] == "c":
                out.append(self.const(a[1]))
            elif a[0] == "x":  # a variable of this negation alone
                if a[1] not in existential:
                    existential[a[1]] = self.new_var()
                out.append(existential[a[1]])
            else:
                out.append(vars_.setdefault(a[1], self.Term(f"V{len(vars_)}")))
        return out or [self.const(_ZERO)]

    def literal(self, pred: str, terms):
        return self.Term(self.name(pred))(*terms)

    def rule(self, r: IRule, defined: set):
        """Add one clause; False if it can never fire (it needs an empty relation)."""
        from pyDatalog.pyParser import Operation
        for lit in r.body:
            if isinstance(lit, IAtom) and not lit.negated and lit.pred not in defined:
                return False
        same = [a for a in r.positives() if self.comp.get(a.pred) == self.comp.get(r.head)]
        first = same[0] if same else None
        vars_: dict = {}
        parts = []
        for lit, _ in schedule(r.body, first=first):
            if isinstance(lit, IAtom) and lit is first:
                terms, ties = [], []
                for i, a in enumerate(lit.args):
                    keep = (a is not None and a[0] == "v" and lit.pred == r.head
                            and i < len(r.args) and r.args[i] == a)
                    if keep:
                        terms.append(vars_.setdefault(a[1], self.Term(f"V{len(vars_)}")))
                    else:
                        f = self.new_var()
                        terms.append(f)
                        if a is not None:
                            ties.append((f, a))
                parts.append(self.literal(lit.pred, terms or [self.const(_ZERO)]))
                for f, a in ties:
                    other = self.const(a[1]) if a[0] == "c" else \
                        vars_.setdefault(a[1], self.Term(f"V{len(vars_)}"))
                    parts.append(f == other)
            elif isinstance(lit, IAtom) and lit.negated:
                if lit.pred in defined:
                    parts.append(~self.literal(lit.pred, self.args(lit.args, vars_)))
            elif isinstance(lit, IAtom):
                parts.append(self.literal(lit.pred, self.args(lit.args, vars_)))
            elif isinstance(lit, ICmp):
                simple = lit.op in ("=", "!=") and lit.left[0] != "op" and lit.right[0] != "op"
                if simple:
                    a, b = self.args([lit.left, lit.right], vars_)
                    parts.append(a == b if lit.op == "=" else a != b)
                else:
                    names = sorted(lit.vars())
                    fn = _cmp_fn(lit, names)
                    t = self.new_var()
                    parts.append(t == Operation(None, fn, [vars_.setdefault(
                        n, self.Term(f"V{len(vars_)}")) for n in names]))
                    parts.append(t == self.const(YES))
            else:  # IEq
                names = sorted(lit.vars())
                fn = _eq_fn(lit, names, self.guard,
                            (r.rule.head.pred, len(r.rule.head.args), r.rule.source, r.rule.line))
                v = vars_.setdefault(lit.var, self.Term(f"V{len(vars_)}"))
                parts.append(v == Operation(None, fn, [vars_.setdefault(
                    n, self.Term(f"V{len(vars_)}")) for n in names]))
                parts.append(v != self.const(BOT))
        head = self.literal(r.head, self.args(r.args, vars_))
        if not parts:  # a ground rule: a fact
            + head
            return True
        body = parts[0]
        for p in parts[1:]:
            body = body & p
        head <= body
        return True


def _cmp_fn(c: ICmp, names: list[str]):
    def fn(*vals):
        env = {n: _dec(v) for n, v in zip(names, vals)}
        return YES if compare(c.op, eval_expr(c.left, env), eval_expr(c.right, env)) else None
    return fn


def _eq_fn(e: IEq, names: list[str], guard: Guard, origin: tuple):
    count = guard.count_value

    def fn(*vals):
        count(origin)
        return _enc(eval_expr(e.expr, {n: _dec(v) for n, v in zip(names, vals)}))
    return fn


def evaluate(rules_by_head: dict[str, list[IRule]], strata: list[list[str]],
             given: dict[str, set], want: list[str], guard: Guard | None = None
             ) -> dict[str, set]:
    """Evaluate with pyDatalog; returns the relations named in `want` (derived or given).
    `guard` (none if None) counts values computed by arithmetic; its watchdog can stop the
    evaluation in the middle (see limits.py)."""
    check_supported(rules_by_head, strata)
    if guard is None:
        guard = Guard(UNLIMITED, "pydatalog")
    from pyDatalog import pyDatalog
    with _LOCK:
        pyDatalog.Logic()  # a fresh, empty logic for this thread
        try:
            return _evaluate(pyDatalog, rules_by_head, strata, given, want, guard)
        except RecursionError:
            raise EngineError("the pydatalog engine ran out of stack on this input "
                              "(a derivation chain too deep for top-down resolution); "
                              "use engine 'fast'") from None
        except EngineError:
            raise
        except Exception as e:  # a pyDatalog internal error: never a traceback for users
            raise EngineError(f"the pydatalog engine failed: {type(e).__name__}: {e}; "
                              f"use engine 'fast'") from e
        finally:
            pyDatalog.Logic()


def _evaluate(pyDatalog, rules_by_head, strata, given, want, guard):
    tr = _Translator(rules_by_head, strata, f"e3_{next(_COUNTER)}_", guard)
    for pred, rows in given.items():
        n = tr.name(pred)
        for row in rows:
            pyDatalog.assert_fact(n, *([_enc(v) for v in row] or [_ZERO]))
    # pyDatalog refuses to call a predicate with no clause: leave out rules that need an
    # empty relation, and negations of one (always true)
    defined = _live(rules_by_head, strata, given)
    for stratum in strata:
        for pred in stratum:
            for r in rules_by_head[pred]:
                tr.rule(r, defined)
    out = {}
    arity = _arities(rules_by_head, given)
    for pred in want:
        if pred not in defined:
            out[pred] = set()
            continue
        n = arity[pred]
        vars_ = ", ".join(f"V{i}" for i in range(max(n, 1)))
        ans = pyDatalog.ask(f"{tr.name(pred)}({vars_})")
        rows = ans.answers if ans is not None and ans.answers is not True else []
        if n == 0:
            out[pred] = {()} if ans is not None else set()
        else:
            out[pred] = {tuple(_dec(v) for v in row) for row in rows}
    return out


def _live(rules_by_head, strata, given) -> set[str]:
    """Predicates that may hold a tuple: given ones, and heads of rules whose positive
    atoms may all hold."""
    live = {p for p, rows in given.items() if rows}
    for stratum in strata:
        changed = True
        while changed:
            changed = False
            for p in stratum:
                if p not in live and any(all(a.pred in live for a in r.positives())
                                         for r in rules_by_head[p]):
                    live.add(p)
                    changed = True
    return live


def _arities(rules_by_head, given) -> dict[str, int]:
    out = {}
    for pred, rows in given.items():
        for row in rows:
            out[pred] = len(row)
            break
    for pred, rules in rules_by_head.items():
        if rules:
            out[pred] = len(rules[0].args)
    return out
