"""`Program`: a checked rule program, evaluated by either engine; `Prepared`: an indexed fact
base for repeated evaluations and queries with a small extra input."""
from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from e3logic.core.errors import NotFound, UsageError
from e3logic.logic import checks, fast, pydl
from e3logic.logic.limits import Guard, Limits, guarded
from e3logic.logic.errors import EngineError, FactError
from e3logic.logic.ir import IAtom, ICmp, IEq, IRule, lower_rule
from e3logic.logic.syntax import Atom, Query, Rule, Var, comments, parse_query, parse_statements

ENGINES = ("auto", "pydatalog", "fast")

#: `auto` uses pydatalog while the given facts number at most this many, fast above
#: (measured by bench/bench_logic.py; see bench/RESULTS.md, section Logic)
AUTO_THRESHOLD = 500

QUERY_PRED = "?query"


def row_key(row: tuple):
    """Sort key for rows mixing ints and strings: ints first, then strings."""
    return tuple((1, v) if type(v) is str else (0, v) for v in row)


def sorted_rows(rows: Iterable[tuple]) -> list[tuple]:
    """Rows in row_key order. A plain sort gives the same order whenever it succeeds: it
    compares every pair that ends up adjacent, and it only fails on an int against a str."""
    try:
        return sorted(rows)
    except TypeError:
        return sorted(rows, key=row_key)


def sorted_values(values: Iterable) -> list:
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=lambda v: (1, v) if type(v) is str else (0, v))


@dataclass(frozen=True)
class QueryResult:
    """Answer of a `?-` query: sorted rows, one column per variable of the query."""
    columns: list
    rows: list
    engine: str

    def to_json(self) -> dict:
        return {"columns": list(self.columns), "rows": [list(r) for r in self.rows],
                "engine": self.engine}


@dataclass(frozen=True)
class Relation:
    name: str
    arity: int
    doc: str
    derived: bool


class Program:
    """A checked Datalog program: rules, facts and queries from one or more texts.

    Immutable: `extend` returns a new program. Construction raises the typed static errors
    of `e3logic.logic.errors` (each with `.line` and `.column`).
    """

    def __init__(self, statements: list, docs: dict[str, str] | None = None,
                 comment_lines: dict | None = None):
        self.statements = list(statements)
        self.rules = [s for s in self.statements if isinstance(s, Rule)]
        self.queries = [s for s in self.statements if isinstance(s, Query)]
        self._comment_lines = dict(comment_lines or {})
        self.arities = checks.check_arities(self.statements)
        for st in self.statements:
            checks.check_safety(st)
        checks.check_stratified(self.rules)
        known = {a.pred for r in self.rules for a in checks.atoms(r)}
        for q in self.queries:
            checks.check_query_known(q, known)
        self.facts: dict[str, set] = {}
        self.ir: dict[str, list[IRule]] = {}
        for r in self.rules:
            low = lower_rule(r)
            if not r.body:
                self.facts.setdefault(r.head.pred, set())
                if low is not None:
                    self.facts[r.head.pred].add(tuple(a[1] for a in low.args))
            else:
                self.ir.setdefault(r.head.pred, [])
                if low is not None:
                    self.ir[r.head.pred].append(low)
        self.strata = checks.strata(self.ir)
        self.docs = dict(docs) if docs is not None else self._docs()
        self._fast_cache: dict = {}
        self._pydl_error: EngineError | None = None
        try:
            pydl.check_supported(self.ir, self.strata)
        except EngineError as e:
            self._pydl_error = e

    def __getstate__(self):
        # a checked program pickles with the fast engine's plans, without their compiled
        # strata (compiled again on first use)
        state = dict(self.__dict__)
        state["_fast_cache"] = {k: p.without_compiled() for k, p in self._fast_cache.items()}
        return state

    # ------------------------------------------------------------------ construction

    @classmethod
    def parse(cls, text: str, source: str = "<text>") -> "Program":
        return cls(parse_statements(text, source), comment_lines={source: comments(text)})

    @classmethod
    def load(cls, *paths) -> "Program":
        statements, lines = [], {}
        for p in paths:
            p = Path(p)
            try:
                text = p.read_text(encoding="utf-8")
            except OSError as e:
                raise UsageError(f"cannot read rules file {p}: {e.strerror}") from None
            statements += parse_statements(text, str(p))
            lines[str(p)] = comments(text)
        return cls(statements, comment_lines=lines)

    def extend(self, other: "Program") -> "Program":
        """A new program with the statements of both (checked together)."""
        return Program(self.statements + other.statements, docs={**other.docs, **self.docs},
                       comment_lines={**self._comment_lines, **other._comment_lines})

    def _docs(self) -> dict[str, str]:
        """The `//` lines right above the first clause of each relation."""
        docs: dict[str, str] = {}
        for r in self.rules:
            pred = r.head.pred
            if pred in docs:
                continue
            lines = dict(self._comment_lines.get(r.source, ()))
            block, n = [], r.line - 1
            while n in lines:
                block.append(lines[n])
                n -= 1
            docs[pred] = " ".join(reversed(block)).strip()
        return docs

    # ------------------------------------------------------------------ introspection

    @property
    def derived(self) -> list[str]:
        """Relations with rules."""
        return sorted(self.ir)

    @property
    def predicates(self) -> list[str]:
        return sorted(self.arities)

    def relations(self) -> list[Relation]:
        """Every relation of the program with its arity and doc comment, sorted by name."""
        return [Relation(p, self.arities[p].arity, self.docs.get(p, ""), p in self.ir)
                for p in self.predicates]

    def __repr__(self):
        return f"<Program {len(self.rules)} clauses, {len(self.ir)} derived relations>"

    # ------------------------------------------------------------------ facts

    def _given(self, facts: Mapping | None, text_facts: bool = True,
               trusted: bool = False) -> dict[str, set]:
        """Validate and normalise given facts: relation → set of tuples of str/int.
        `trusted` skips the per-row arity and value-type checks."""
        out: dict[str, set] = {}
        for name, rows in (facts or {}).items():
            if not isinstance(name, str):
                raise FactError(f"a relation name must be a string, not {name!r}")
            if trusted:
                out[name] = rel = rows if isinstance(rows, (set, frozenset)) \
                    else set(map(tuple, rows))
                use = self.arities.get(name)
                for t in rel:  # one row: the repository's relations have one arity each
                    if use is not None and len(t) != use.arity:
                        raise FactError(_fact_arity(name, use, [len(t)]))
                    break
                continue
            if isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
                raise FactError(f"facts for '{name}' must be an iterable of tuples")
            if isinstance(rows, (set, frozenset)):
                if rows and {type(t) for t in rows} != {tuple}:
                    raise FactError(f"facts for '{name}' must be tuples "
                                    f"(e.g. {{('a',)}} rather than {{'a'}})")
                rel = rows
            else:
                rows = list(rows)
                if any(isinstance(t, (str, bytes)) or not isinstance(t, Iterable)
                       for t in rows):
                    raise FactError(f"facts for '{name}' must be tuples "
                                    f"(e.g. [('a',)] rather than ['a'])")
                rel = set(map(tuple, rows))
            if rel:
                lengths = set(map(len, rel))
                use = self.arities.get(name)
                if len(lengths) > 1 or (use is not None and lengths != {use.arity}):
                    raise FactError(_fact_arity(name, use, sorted(lengths)))
                types = set(map(type, itertools.chain.from_iterable(rel)))
                if not types <= {str, int}:
                    bad = sorted(t.__name__ for t in types - {str, int})
                    raise FactError(f"facts for '{name}' hold {', '.join(bad)} values; "
                                    f"only str and int are allowed")
            out[name] = rel
        if text_facts:
            for name, rel in self.facts.items():
                out[name] = out[name] | rel if name in out else rel
        return out

    # ------------------------------------------------------------------ engines

    def supports(self, engine: str) -> bool:
        """Whether `engine` accepts this program (pydatalog refuses non-linear recursion)."""
        return engine != "pydatalog" or self._pydl_error is None

    def choose_engine(self, engine: str, n_facts: int) -> str:
        if engine not in ENGINES:
            raise NotFound("engine", engine, ENGINES)
        if engine != "auto":
            return engine
        if self._pydl_error is None and n_facts <= AUTO_THRESHOLD:
            return "pydatalog"
        return "fast"

    def evaluate(self, facts: Mapping | None = None, engine: str = "auto",
                 only: Iterable[str] | None = None, trusted: bool = False,
                 limits: Limits | None = None) -> dict[str, set]:
        """Evaluate over `facts` ({relation: iterable of tuples}); returns {relation: set of
        tuples} for every derived and given relation (or only those named in `only`)."""
        return self.prepare(facts, engine, trusted, limits).evaluate(only=only)

    def prepare(self, facts: Mapping | None = None, engine: str = "auto",
                trusted: bool = False, limits: Limits | None = None) -> "Prepared":
        """Index `facts` once for repeated `evaluate(extra=…)` and `query` calls.
        `trusted=True` skips per-value checks (for facts projected by the repository).
        Each evaluation stops with `LimitError` past `limits` (default `Limits()`)."""
        given = self._given(facts, trusted=trusted)
        chosen = self.choose_engine(engine, sum(map(len, given.values())))
        if chosen == "pydatalog":
            return PreparedPyDatalog(self, given, limits)
        return PreparedFast(self, given, limits)

    def query(self, q, facts: Mapping | None = None, engine: str = "auto",
              trusted: bool = False, limits: Limits | None = None) -> QueryResult:
        """Answer a query (`'?- p(X, "a").'`, `'p(X, "a")'`, a syntax.Query or Atom):
        columns are its named variables, rows sorted."""
        return self.prepare(facts, engine, trusted, limits).query(q)

    # ------------------------------------------------------------------ helpers for engines

    def check_query(self, q, given_arities: dict[str, int]) -> Query:
        if isinstance(q, str):
            q = parse_query(q)
        elif isinstance(q, Atom):
            q = Query((q,), "<query>", q.line, q.column)
        elif not isinstance(q, Query):
            raise UsageError(f"a query must be text or a Query, not {type(q).__name__}")
        known = dict(self.arities)
        for name, n in given_arities.items():
            if name not in known:
                known[name] = checks.Use(n, "<facts>", 0, 0)
        checks.check_arities([q], known)
        checks.check_safety(q)
        checks.check_query_known(q, known)
        return q

    def relation_names(self, given: Mapping) -> list[str]:
        return sorted(set(self.arities) | set(given))

    def needed(self, targets: Iterable[str], rules_by_head: Mapping) -> set[str]:
        """Predicates the targets depend on (themselves included)."""
        seen, todo = set(), deque(targets)
        while todo:
            p = todo.popleft()
            if p in seen:
                continue
            seen.add(p)
            for r in rules_by_head.get(p, ()):
                for lit in r.body:
                    if isinstance(lit, IAtom):
                        todo.append(lit.pred)
        return seen

    def fast_plan(self, keep: frozenset) -> "FastPlan":
        """The fast engine's plan; relations in `keep` (given facts for a derived relation)
        are never inlined away."""
        keep = keep & frozenset(self.ir)
        plan = self._fast_cache.get(keep)
        if plan is None:
            plan = self._fast_cache[keep] = FastPlan(self, keep)
        return plan


def _fact_arity(name: str, use, lengths: list[int]) -> str:
    got = " and ".join(f"{name}/{n}" for n in lengths)
    if use is None:
        return (f"arity mismatch: the facts for '{name}' mix rows of {got}; give every row "
                f"the same number of values")
    return (f"arity mismatch: the rules use {name}/{use.arity} ({use.source}:{use.line}) but "
            f"the facts for '{name}' are {got}; use one arity per relation")


def _given_arities(given: Mapping) -> dict[str, int]:
    out = {}
    for name, rel in given.items():
        for t in rel:
            out[name] = len(t)
            break
    return out


def _check_only(only, names: list[str]) -> list[str]:
    if only is None:
        return names
    if isinstance(only, str):
        only = [only]
    only = list(only)
    for name in only:
        if name not in names:
            raise NotFound("relation", name, names)
    return only


# ---------------------------------------------------------------------------- fast plans

def _renames(program: Program, keep: frozenset) -> dict[str, tuple[str, tuple]]:
    """Relations defined by one rule that only permutes another relation's columns:
    p(X, Y) :- q(Y, X). Maps p → (q, positions of q's arguments in p's head)."""
    out = {}
    for p, rules in program.ir.items():
        if p in keep or p in program.facts or len(rules) != 1:
            continue
        r = rules[0]
        if len(r.body) != 1 or not isinstance(r.body[0], IAtom) or r.body[0].negated:
            continue
        b = r.body[0]
        hv = [a[1] if a[0] == "v" else None for a in r.args]
        bv = [a[1] if a is not None and a[0] == "v" else None for a in b.args]
        if None in hv or None in bv or len(set(hv)) != len(hv) or sorted(hv) != sorted(bv) \
                or b.pred == p:
            continue
        out[p] = (b.pred, tuple(hv.index(v) for v in bv))
    # resolve chains p → q → r; drop cycles
    resolved = {}
    for p in out:
        q, perm, seen = out[p][0], out[p][1], {p}
        while q in out and q not in seen:
            seen.add(q)
            q2, perm2 = out[q]
            perm = tuple(perm[i] for i in perm2)
            q = q2
        if q not in seen:
            resolved[p] = (q, perm)
    return resolved


def _inline_atom(a: IAtom, renames: dict) -> IAtom:
    if a.pred not in renames:
        return a
    q, perm = renames[a.pred]
    return IAtom(q, tuple(a.args[i] for i in perm), a.negated)


def _inline_rule(r: IRule, renames: dict) -> IRule:
    if not any(isinstance(lit, IAtom) and lit.pred in renames for lit in r.body):
        return r
    body = tuple(_inline_atom(lit, renames) if isinstance(lit, IAtom) else lit for lit in r.body)
    return IRule(r.head, r.args, body, r.rule)


class FastPlan:
    """Program rules prepared for the fast engine: column renames inlined, strata compiled
    on first use."""

    def __init__(self, program: Program, keep: frozenset):
        self.program = program
        self.renames = _renames(program, keep)
        self.rules = {p: [_inline_rule(r, self.renames) for r in rules]
                      for p, rules in program.ir.items()}
        self.strata = checks.strata(self.rules)
        self.stratum_of = {p: i for i, s in enumerate(self.strata) for p in s}
        self._compiled: dict[int, tuple] = {}
        users: dict[str, set] = {}
        for head, rules in self.rules.items():
            for r in rules:
                for lit in r.body:
                    if isinstance(lit, IAtom):
                        users.setdefault(lit.pred, set()).add(head)
        self.users = users
        # self-recursive relations without facts of their own: candidates for specialisation
        self.recursive = {p for p, rules in self.rules.items()
                          if len(self.strata[self.stratum_of[p]]) == 1
                          and p not in keep and p not in program.facts
                          and any(a.pred == p for r in rules for a in r.positives())}

    def without_compiled(self) -> "FastPlan":
        plan = object.__new__(FastPlan)
        plan.__dict__.update(self.__dict__)
        plan._compiled = {}
        return plan

    def compiled(self, i: int):
        c = self._compiled.get(i)
        if c is None:
            preds = self.strata[i]
            rules = [r for p in preds for r in self.rules[p]]
            arities = {p: self.program.arities[p].arity for p in preds}
            c = self._compiled[i] = (preds, fast.compile_stratum(preds, rules, arities))
        return c

    def affected(self, changed: Iterable[str]) -> set[str]:
        seen, todo = set(), deque(changed)
        while todo:
            p = todo.popleft()
            if p not in seen:
                seen.add(p)
                todo.extend(self.users.get(p, ()))
        return seen

    def strata_for(self, targets: Iterable[str]) -> list[int]:
        need = self.program.needed(targets, self.rules)
        return sorted({self.stratum_of[p] for p in need if p in self.stratum_of})

    # -------------------------------------------------------------- query specialisation

    def specialise(self, rules: list[IRule]) -> list[IRule]:
        """Push constants of query atoms into self-recursive relations whose argument at
        that position passes through every recursive rule unchanged (e.g. X in
        `reachable(X, Y) :- reachable(X, Z), dependents(Z, Y)`): `reachable("a", Y)` then
        derives only what is reachable from "a" instead of the whole closure."""
        out, extra, n = [], [], itertools.count(1)
        for r in rules:
            body = []
            for lit in r.body:
                if isinstance(lit, IAtom) and not lit.negated and lit.pred in self.recursive:
                    lit, new_rules = self._specialise_atom(lit, next(n))
                    extra += new_rules
                body.append(lit)
            out.append(IRule(r.head, r.args, tuple(body), r.rule))
        return out + extra

    def _specialise_atom(self, atom: IAtom, n: int):
        p = atom.pred
        consts = {i: a[1] for i, a in enumerate(atom.args) if a is not None and a[0] == "c"}
        inv = set(consts)
        for r in self.rules[p]:
            rec = [a for a in r.positives() if a.pred == p]
            for i in list(inv):
                h = r.args[i]
                if h[0] == "c":
                    continue
                if rec and any(a.args[i] != h for a in rec):
                    inv.discard(i)
        if not inv:
            return atom, []
        name = f"{p}?{n}"
        keep_pos = [i for i in range(len(atom.args)) if i not in inv]
        new_rules = []
        for r in self.rules[p]:
            sub: dict[str, object] = {}
            dead = False
            for i in inv:
                h = r.args[i]
                if h[0] == "c":
                    dead |= h[1] != consts[i]
                elif h[1] in sub and sub[h[1]] != consts[i]:
                    dead = True
                else:
                    sub[h[1]] = consts[i]
            if dead:
                continue
            body = []
            for lit in r.body:
                if isinstance(lit, IAtom) and lit.pred == p and not lit.negated:
                    body.append(IAtom(name, tuple(_subst_arg(lit.args[i], sub)
                                                  for i in keep_pos)))
                elif isinstance(lit, IAtom):
                    body.append(IAtom(lit.pred, tuple(_subst_arg(a, sub) for a in lit.args),
                                      lit.negated))
                elif isinstance(lit, ICmp):
                    body.append(ICmp(lit.op, _subst_expr(lit.left, sub),
                                     _subst_expr(lit.right, sub)))
                elif lit.var in sub:
                    body.append(ICmp("=", ("c", sub[lit.var]), _subst_expr(lit.expr, sub)))
                else:
                    body.append(IEq(lit.var, _subst_expr(lit.expr, sub)))
            args = tuple(_subst_arg(r.args[i], sub) for i in keep_pos)
            new_rules.append(IRule(name, args, tuple(body), r.rule))
        return IAtom(name, tuple(atom.args[i] for i in keep_pos)), new_rules


def _subst_arg(a, sub: dict):
    if a is not None and a[0] == "v" and a[1] in sub:
        return ("c", sub[a[1]])
    return a


def _subst_expr(e, sub: dict):
    if e[0] == "v":
        return ("c", sub[e[1]]) if e[1] in sub else e
    if e[0] == "c":
        return e
    return ("op", e[1], _subst_expr(e[2], sub), _subst_expr(e[3], sub))


def _query_rule(q: Query) -> IRule | None:
    head = Atom(QUERY_PRED, tuple(Var(v) for v in q.variables), q.line, q.column)
    return lower_rule(Rule(head, q.body, q.source))


# ---------------------------------------------------------------------------- prepared

class Prepared:
    """Facts indexed once; `evaluate(extra=…, only=…)` and `query(q, extra=…)` reuse them."""

    engine = "?"

    def __init__(self, program: Program, given: dict[str, set], limits: Limits | None = None):
        self.program = program
        self.given = given
        self.limits = limits if limits is not None else Limits()

    def names(self, extra: Mapping | None = None) -> list[str]:
        return self.program.relation_names({**self.given, **(extra or {})})

    def evaluate(self, extra: Mapping | None = None, only: Iterable[str] | None = None
                 ) -> dict[str, set]:
        raise NotImplementedError

    def rows(self, q, extra: Mapping | None = None) -> tuple[list[str], Iterable[tuple]]:
        """The query's columns and its rows, unsorted."""
        raise NotImplementedError

    def query(self, q, extra: Mapping | None = None) -> QueryResult:
        columns, rows = self.rows(q, extra)
        return QueryResult(columns, sorted_rows(rows), self.engine)

    def column(self, q, extra: Mapping | None = None) -> list:
        """The sorted values of a one-variable query."""
        _, rows = self.rows(q, extra)
        return sorted_values([r[0] for r in rows])


class PreparedFast(Prepared):
    """The fast engine's fact base: strata that do not depend on the extra facts of a call
    are computed once and cached with their indexes; the rest is recomputed per call in an
    overlay."""

    engine = "fast"

    def __init__(self, program: Program, given: dict[str, set], limits: Limits | None = None):
        super().__init__(program, given, limits)
        self.base = fast.Layer(dict(given))
        self._lock = threading.RLock()  # the cached base is shared by callers

    def _run(self, extra: dict[str, set], targets: Iterable[str], plan: FastPlan,
             guard: Guard) -> fast.View:
        overlay = fast.Layer({k: (self.base.given[k] | v if k in self.base.given else v)
                              for k, v in extra.items()})
        view = fast.View(overlay, self.base)
        base_view = fast.View(self.base)
        affected = plan.affected(extra) if extra else set()
        for i in plan.strata_for(targets):
            preds, compiled = plan.compiled(i)
            if affected.intersection(preds):
                fast.run_stratum(view, overlay, (preds, compiled), guard)
            elif not self.base.has(preds[0]):
                fast.run_stratum(base_view, self.base, (preds, compiled), guard)
        return view

    def _plan(self, extra: Mapping) -> FastPlan:
        return self.program.fast_plan(frozenset(self.given) | frozenset(extra))

    def evaluate(self, extra=None, only=None):
        with self._lock:
            return guarded(self.limits, self.engine, lambda g: self._evaluate(extra, only, g))

    def _evaluate(self, extra, only, guard):
        extra = self.program._given(extra, text_facts=False)
        want = _check_only(only, self.names(extra))
        plan = self._plan(extra)
        view = self._run(extra, want, plan, guard)
        overlay = view.layers[0]
        out = {}
        for name in want:
            rel = view.rel(name)
            out[name] = rel if overlay.has(name) else set(rel)
        return out

    def rows(self, q, extra=None):
        with self._lock:
            columns, view, pred = guarded(self.limits, self.engine,
                                          lambda g: self._answer(q, extra, g))
            return columns, (view.rel(pred) if view is not None else [])

    def column(self, q, extra=None) -> list:
        with self._lock:
            columns, view, pred = guarded(self.limits, self.engine,
                                          lambda g: self._answer(q, extra, g))
            if view is None:
                return []
            if len(columns) == 1:
                return sorted_values(view.values(pred))
            return sorted_values([r[0] for r in view.rel(pred)])

    def _answer(self, q, extra, guard):
        """(columns, view, relation holding the answer); view None for no answer."""
        extra = self.program._given(extra, text_facts=False)
        q = self.program.check_query(q, _given_arities({**self.given, **extra}))
        plan = self._plan(extra)
        qr = _query_rule(q)
        if qr is None:
            return q.variables, None, None
        rules = plan.specialise([_inline_rule(qr, plan.renames)])
        by_head: dict[str, list] = {}
        for r in rules:
            by_head.setdefault(r.head, []).append(r)
        used = {lit.pred for r in rules for lit in r.body if isinstance(lit, IAtom)} - set(by_head)
        view = self._run(extra, used, plan, guard)
        layer = fast.Layer()
        qview = fast.View(layer, *view.layers)
        # specialised relations depend only on themselves and the program; the query last
        order = [[p] for p in sorted(by_head) if p != QUERY_PRED] + [[QUERY_PRED]]
        for preds in order:
            if preds == [QUERY_PRED] and _is_projection(by_head[QUERY_PRED]):
                return q.variables, qview, by_head[QUERY_PRED][0].body[0].pred
            rs = [r for p in preds for r in by_head[p]]
            arities = {p: len(by_head[p][0].args) for p in preds}
            fast.run_stratum(qview, layer, (preds, fast.compile_stratum(preds, rs, arities)),
                             guard)
        return q.variables, qview, QUERY_PRED


def _is_projection(rules: list[IRule]) -> bool:
    """`?query(X, Y) :- p(X, Y).`: the answer is p itself."""
    if len(rules) != 1 or len(rules[0].body) != 1:
        return False
    r, b = rules[0], rules[0].body[0]
    return isinstance(b, IAtom) and not b.negated and b.args == r.args and \
        len(set(b.args)) == len(b.args) and all(a is not None and a[0] == "v" for a in b.args)


class PreparedPyDatalog(Prepared):
    """pyDatalog keeps no state between calls (each evaluation starts fresh), so this only
    holds the validated facts."""

    engine = "pydatalog"

    def evaluate(self, extra=None, only=None):
        extra = self.program._given(extra, text_facts=False)
        given = dict(self.given)
        for k, v in extra.items():
            given[k] = given[k] | v if k in given else v
        want = _check_only(only, self.names(extra))
        need = self.program.needed(want, self.program.ir)
        rules = {p: rs for p, rs in self.program.ir.items() if p in need}
        strata = [s for s in self.program.strata if s[0] in need]
        derived = guarded(self.limits, self.engine, lambda g: pydl.evaluate(
            rules, strata, {k: v for k, v in given.items() if k in need},
            [w for w in want if w in rules], g))
        return {w: derived[w] if w in derived else set(given.get(w, ())) for w in want}

    def rows(self, q, extra=None):
        extra = self.program._given(extra, text_facts=False)
        given = dict(self.given)
        for k, v in extra.items():
            given[k] = given[k] | v if k in given else v
        q = self.program.check_query(q, _given_arities(given))
        qr = _query_rule(q)
        if qr is None:
            return q.variables, []
        rules = {p: rs for p, rs in self.program.ir.items()}
        rules[QUERY_PRED] = [qr]
        need = self.program.needed([QUERY_PRED], rules)
        rules = {p: rs for p, rs in rules.items() if p in need}
        strata = [s for s in self.program.strata if s[0] in need] + [[QUERY_PRED]]
        out = guarded(self.limits, self.engine, lambda g: pydl.evaluate(
            rules, strata, {k: v for k, v in given.items() if k in need}, [QUERY_PRED], g))
        return q.variables, out[QUERY_PRED]
