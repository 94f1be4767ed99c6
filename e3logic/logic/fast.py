"""The `fast` engine: bottom-up semi-naive evaluation over indexed Python sets.

Each stratum (a strongly connected set of predicates) is compiled to one Python function:
rule bodies become nested loops in a join order chosen per rule (`ir.schedule`), bound
argument positions are looked up in hash indexes (`dict` key → list of the other columns),
and the fixpoint loop is a plain `while`:

- linear strata (every rule has at most one atom of the stratum in its body) use a worklist:
  each new tuple is popped once and joined against the fixed lower strata — the same work as
  a hand-written breadth-first search;
- other strata use level-synchronous semi-naive evaluation (delta × full), keeping the
  indexes on the stratum's own relations up to date after each round.

No recursion anywhere: depth of data never meets Python's stack. Constants and predicate
names are passed to the generated code in a table, so same-shaped queries share compiled code.
"""
from __future__ import annotations

from collections import defaultdict
from functools import lru_cache
from operator import itemgetter

from e3logic.logic.ir import BOT, IAtom, ICmp, IEq, IRule, arith, schedule
from e3logic.logic.limits import UNLIMITED, Guard

ONE = (0,)
#: a worklist compares its size with the fact limit after this many tuples
CHECK_EVERY = 1024
EMPTY: frozenset = frozenset()


# ----------------------------------------------------------------------------- fact layers

def build_index(rel, key_pos: tuple, out_pos: tuple):
    """Hash index: key (a value, or a tuple of values) → list of out columns (likewise);
    with no out columns, the set of keys."""
    if not out_pos:
        if len(key_pos) == 1:
            k = key_pos[0]
            return {t[k] for t in rel}
        return set(map(itemgetter(*key_pos), rel))
    d: defaultdict = defaultdict(list)
    if key_pos == (0,) and out_pos == (1,) and _arity(rel) == 2:
        for a, b in rel:
            d[a].append(b)
    elif key_pos == (1,) and out_pos == (0,) and _arity(rel) == 2:
        for a, b in rel:
            d[b].append(a)
    else:
        kg, og = itemgetter(*key_pos), itemgetter(*out_pos)
        for t in rel:
            d[kg(t)].append(og(t))
    return d


def index_add(index, tuples, key_pos: tuple, out_pos: tuple) -> None:
    if not out_pos:
        index.update(map(itemgetter(*key_pos), tuples))
        return
    kg, og = itemgetter(*key_pos), itemgetter(*out_pos)
    for t in tuples:
        index[kg(t)].append(og(t))


def _arity(rel) -> int:
    for t in rel:
        return len(t)
    return -1


class Layer:
    """One layer of relations: `given` facts and `computed` strata, with caches.

    Relations are sets of tuples; a unary relation computed by a stratum is kept as a set of
    plain values (`unary`) and turned into 1-tuples only if someone asks for tuples."""

    def __init__(self, given: dict | None = None):
        self.given: dict = given if given is not None else {}
        self.computed: dict = {}
        self.unary: dict = {}
        self.given_unary: dict = {}
        self.indexes: dict = {}

    def has(self, pred: str) -> bool:
        """Whether a stratum computed `pred` in this layer."""
        return pred in self.computed or pred in self.unary


class View:
    """Relations as seen through layers (first wins): a per-call overlay over a cached base."""

    def __init__(self, *layers: Layer):
        self.layers = layers

    def _find(self, pred: str):
        for layer in self.layers:
            r = layer.computed.get(pred)
            if r is not None:
                return r, layer
            u = layer.unary.get(pred)
            if u is not None:
                r = layer.computed[pred] = {(v,) for v in u}
                return r, layer
        for layer in self.layers:
            r = layer.given.get(pred)
            if r is not None:
                return r, layer
        return EMPTY, self.layers[-1]

    def rel(self, pred: str):
        """The relation as a set of tuples."""
        return self._find(pred)[0]

    def values(self, pred: str):
        """A unary relation as a set of plain values."""
        for layer in self.layers:
            u = layer.unary.get(pred)
            if u is not None:
                return u
            r = layer.computed.get(pred)
            if r is not None:
                u = layer.unary[pred] = {v for (v,) in r}
                return u
        return self.given_values(pred)

    def given(self, pred: str):
        for layer in self.layers:
            r = layer.given.get(pred)
            if r is not None:
                return r
        return EMPTY

    def given_values(self, pred: str):
        for layer in self.layers:
            r = layer.given.get(pred)
            if r is not None:
                u = layer.given_unary.get(pred)
                if u is None or u[0] is not r:
                    u = layer.given_unary[pred] = (r, {v for (v,) in r})
                return u[1]
        return EMPTY

    def index(self, pred: str, key_pos: tuple, out_pos: tuple):
        rel, layer = self._find(pred)
        k = (pred, key_pos, out_pos)
        idx = layer.indexes.get(k)
        if idx is None or idx[0] is not rel:
            idx = (rel, build_index(rel, key_pos, out_pos))
            layer.indexes[k] = idx
        return idx[1]


# ----------------------------------------------------------------------------- code generation

_FN_CACHE: dict[str, object] = {}


class _Gen:
    """Builds the source of one stratum function; constants go to the table K."""

    def __init__(self, scc_preds: list[str], level: bool, arities: dict[str, int]):
        self.scc = {p: i for i, p in enumerate(scc_preds)}
        self.arities = arities
        self.level = level
        self.prologue: list[str] = []
        self.consts: list = []
        self._const_names: dict = {}
        self._names: dict = {}
        self.live: list[tuple[str, int, tuple, tuple]] = []  # (name, scc index, key, out)
        self.tmp_n = 0

    def const(self, v) -> str:
        key = (type(v), v) if v is not BOT else ("BOT",)
        name = self._const_names.get(key)
        if name is None:
            name = f"k{len(self.consts)}"
            self._const_names[key] = name
            self.prologue.append(f"{name} = K[{len(self.consts)}]")
            self.consts.append(v)
        return name

    def tmp(self) -> str:
        self.tmp_n += 1
        return f"t{self.tmp_n}"

    def rel(self, pred: str, arity: int) -> str:
        """The local holding a relation: tuples, or plain values when unary."""
        if pred in self.scc:
            return f"F{self.scc[pred]}"
        key = ("rel", pred)
        if key not in self._names:
            name = f"R{len(self._names)}"
            self._names[key] = name
            how = "values" if arity == 1 else "rel"
            self.prologue.append(f"{name} = view.{how}({self.const(pred)})")
        return self._names[key]

    def index(self, pred: str, key_pos: tuple, out_pos: tuple) -> str:
        key = ("idx", pred, key_pos, out_pos)
        if key not in self._names:
            name = f"I{len(self._names)}"
            self._names[key] = name
            if pred in self.scc:  # a live index over the stratum's own growing relation
                i = self.scc[pred]
                self.live.append((name, i, key_pos, out_pos))
            else:
                self.prologue.append(
                    f"{name} = view.index({self.const(pred)}, {key_pos!r}, {out_pos!r})")
        return self._names[key]


def _tup(items: list[str]) -> str:
    if len(items) == 1:
        return f"({items[0]},)"
    return f"({', '.join(items)})"


def _key(items: list[str]) -> str:
    return items[0] if len(items) == 1 else _tup(items)


class _RuleEmitter:
    """Emits one rule (or one semi-naive variant of it) as nested loops."""

    def __init__(self, g: _Gen, out: list[str], indent: int):
        self.g, self.out, self.ind = g, out, indent
        self.vn: dict[str, str] = {}
        self.bound: set[str] = set()

    def emit(self, s: str):
        self.out.append("    " * self.ind + s)

    def var(self, name: str) -> str:
        if name not in self.vn:
            self.vn[name] = f"v{len(self.vn)}"
        return self.vn[name]

    def value(self, a) -> str:
        return self.g.const(a[1]) if a[0] == "c" else self.var(a[1])

    def is_bound(self, a) -> bool:
        return a is not None and (a[0] == "c" or a[1] in self.bound)

    def expr(self, e) -> tuple[str, bool]:
        """Python expression for e (temps for arithmetic) and whether it may be undefined."""
        if e[0] == "v":
            return self.var(e[1]), False
        if e[0] == "c":
            return self.g.const(e[1]), e[1] is BOT
        results: list = []
        stack = [(e, False)]
        while stack:
            e, done = stack.pop()
            if e[0] == "v":
                results.append(self.var(e[1]))
            elif e[0] == "c":
                results.append(self.g.const(e[1]))
            elif done:
                b, a = results.pop(), results.pop()
                t = self.g.tmp()
                self.emit(f"{t} = _ar({self.g.const(e[1])}, {a}, {b})")
                results.append(t)
            else:
                stack.append((e, True))
                stack.append((e[3], False))
                stack.append((e[2], False))
        return results[0], True

    def loop(self, targets: list[str], checks: list[str], src: str, unary: bool = False):
        target = targets[0] if unary else _tup(targets)
        if src.startswith("=") and not (unary and target == "_"):
            # the one tuple popped from a worklist with a single rule variant: unpack it;
            # a `continue` then moves on to the next tuple
            self.emit(f"{target} {src}")
        else:
            self.emit(f"for {target} in {src.lstrip('= ')}:")
            self.ind += 1
        if checks:
            self.emit(f"if {' or '.join(checks)}: continue")

    def scan(self, atom: IAtom, src: str):
        """Iterate whole tuples of src, binding new variables, checking the rest."""
        targets, checks, new = [], [], set()
        for a in atom.args:
            if a is None:
                targets.append("_")
            elif a[0] == "c" or a[1] in self.bound or a[1] in new:
                t = self.g.tmp()
                targets.append(t)
                checks.append(f"{t} != {self.value(a)}")
            else:
                targets.append(self.var(a[1]))
                new.add(a[1])
        self.loop(targets, checks, src, unary=len(atom.args) == 1)
        self.bound |= new

    def positive(self, atom: IAtom):
        args = atom.args
        key_pos = tuple(i for i, a in enumerate(args) if self.is_bound(a))
        if len(key_pos) == len(args):
            vals = [self.value(a) for a in args]
            rel = self.g.rel(atom.pred, len(args))
            self.emit(f"if {vals[0] if len(args) == 1 else _tup(vals)} not in {rel}: continue")
            return
        if not key_pos:
            self.scan(atom, self.g.rel(atom.pred, len(args)))
            return
        keyexpr = _key([self.value(args[i]) for i in key_pos])
        out_pos = tuple(i for i, a in enumerate(args) if a is not None and i not in key_pos)
        if not out_pos:
            ks = self.g.index(atom.pred, key_pos, ())
            self.emit(f"if {keyexpr} not in {ks}: continue")
            return
        idx = self.g.index(atom.pred, key_pos, out_pos)
        targets, checks, new = [], [], set()
        for i in out_pos:
            name = args[i][1]
            if name in new:
                t = self.g.tmp()
                targets.append(t)
                checks.append(f"{t} != {self.var(name)}")
            else:
                targets.append(self.var(name))
                new.add(name)
        if len(targets) == 1:
            self.emit(f"for {targets[0]} in {idx}.get({keyexpr}, ()):")
            self.ind += 1
        else:
            self.loop(targets, checks, f"{idx}.get({keyexpr}, ())")
        self.bound |= new

    def negative(self, atom: IAtom):
        args = atom.args
        pos = tuple(i for i, a in enumerate(args) if a is not None and a[0] != "x")
        groups = atom.repeated_existentials()
        if groups:  # no tuple that matches the bound positions and repeats these values
            self.negative_repeated(atom, pos, groups)
            return
        if len(pos) == len(args):
            vals = [self.value(a) for a in args]
            rel = self.g.rel(atom.pred, len(args))
            self.emit(f"if {vals[0] if len(args) == 1 else _tup(vals)} in {rel}: continue")
        elif not pos:
            self.emit(f"if {self.g.rel(atom.pred, len(args))}: continue")
        else:
            ks = self.g.index(atom.pred, pos, ())
            self.emit(f"if {_key([self.value(args[i]) for i in pos])} in {ks}: continue")

    def negative_repeated(self, atom: IAtom, pos: tuple, groups: list):
        out_pos = tuple(sorted(i for grp in groups for i in grp))
        if pos:
            at = {p: j for j, p in enumerate(out_pos)}  # index rows hold the out columns
            src = (f"{self.g.index(atom.pred, pos, out_pos)}"
                   f".get({_key([self.value(atom.args[i]) for i in pos])}, ())")
        else:
            at = {p: p for p in out_pos}
            src = self.g.rel(atom.pred, len(atom.args))
        same = " and ".join(f"o[{at[grp[0]]}] == o[{at[i]}]" for grp in groups for i in grp[1:])
        self.emit(f"if any({same} for o in {src}): continue")

    def comparison(self, c: ICmp):
        a, ua = self.expr(c.left)
        b, ub = self.expr(c.right)
        undef = [f"{x} is BOT" for x, u in ((a, ua), (b, ub)) if u]
        if c.op in ("=", "!="):
            test = f"{a} {'!=' if c.op == '=' else '=='} {b}"
        else:
            test = f"type({a}) is not type({b}) or not ({a} {c.op} {b})"
        self.emit(f"if {' or '.join(undef + [test])}: continue")

    def eq(self, e: IEq):
        val, undef = self.expr(e.expr)
        if e.var in self.bound:
            self.emit(f"if {val} != {self.var(e.var)}: continue")
        else:
            v = self.var(e.var)
            self.emit(f"{v} = {val}")
            if undef:
                self.emit(f"if {v} is BOT: continue")
            self.bound.add(e.var)

    def rule(self, rule: IRule, delta: IAtom | None, src: str | None, sink: str,
             head: str, stack: str | None, new: str | None):
        if delta is not None:
            steps = schedule(rule.body, first=delta)
        else:
            steps = schedule(rule.body)
            self.emit("for _ in ONE:")
            self.ind += 1
        for lit, _ in steps:
            if isinstance(lit, IAtom):
                if lit is delta and src is not None:
                    self.scan(lit, src)
                    src = None
                elif lit.negated:
                    self.negative(lit)
                else:
                    self.positive(lit)
            elif isinstance(lit, ICmp):
                self.comparison(lit)
            else:
                self.eq(lit)
        vals = [self.value(a) for a in rule.args]
        h = vals[0] if len(vals) == 1 else _tup(vals)
        if sink == "add":
            self.emit(f"{head}.add({h})")
        elif sink == "work":
            self.emit(f"h = {h}")
            self.emit(f"if h not in {head}:")
            self.emit(f"    {head}.add(h)")
            self.emit(f"    {stack}.append(h)")
        else:  # level
            self.emit(f"h = {h}")
            self.emit(f"if h not in {head}: {new}.add(h)")


def compile_stratum(preds: list[str], rules: list[IRule], arities: dict[str, int]):
    """Compile one stratum; returns (function, constants, unary flags, source, origins). The
    function takes (view, K, BOT, _ar, ONE, _bi, _ia, _g) and returns the relations of `preds`
    in order (unary ones as sets of values); `_g` is the evaluation's `limits.Guard`, checked
    after each batch or round. `origins` name each relation's (first recursive) rule for the
    guard's message."""
    fn, consts, unary, src = _compile_cached(tuple(preds), tuple(rules),
                                             tuple(arities[p] for p in preds))
    return fn, consts, unary, src, tuple(_origin(p, preds, rules) for p in preds)


def _origin(pred: str, preds: list[str], rules: list[IRule]) -> tuple:
    """(relation, arity, source, line) of the rule to blame when `pred` grows too much."""
    own = [r for r in rules if r.head == pred]
    rec = [r for r in own if any(a.pred in preds for a in r.positives())]
    r = (rec or own)[0].rule if own else None
    if r is None:
        return (pred, 0, "<text>", 0)
    return (r.head.pred, len(r.head.args), r.source, r.line)


@lru_cache(maxsize=512)
def _compile_cached(preds: tuple, rules: tuple, pred_arities: tuple):
    preds, rules = list(preds), list(rules)
    arities = dict(zip(preds, pred_arities))
    scc = set(preds)
    recursive = [r for r in rules if any(a.pred in scc for a in r.positives())]
    base = [r for r in rules if r not in recursive]
    linear = all(sum(1 for a in r.positives() if a.pred in scc) <= 1 for r in recursive)
    level = bool(recursive) and not linear
    g = _Gen(preds, level, arities)
    body: list[str] = []
    n = len(preds)
    for i, p in enumerate(preds):
        how = "given_values" if arities[p] == 1 else "given"
        body.append(f"F{i} = set(view.{how}({g.const(p)}))")
    body.append(f"_g.live = {_tup([f'F{i}' for i in range(n)])}")  # for the watchdog
    idx_of = {p: i for i, p in enumerate(preds)}
    sink0 = "work" if recursive and not level else "add"
    if sink0 == "work":
        for i in range(n):
            body.append(f"S{i} = list(F{i})")
    for r in base:
        i = idx_of[r.head]
        _RuleEmitter(g, body, 0).rule(r, None, None, sink0, f"F{i}", f"S{i}", None)
    over = f"if {' + '.join(f'len(F{i})' for i in range(n))} > M: _g.over()"
    if recursive:
        body.append("M = _g.room()")
        body.append(f"R = range({CHECK_EVERY})")
    if recursive and not level:
        outer = n > 1
        if outer:
            body.append(f"while {' or '.join(f'S{i}' for i in range(n))}:")
        for j, p in enumerate(preds):
            variants = [(r, a) for r in recursive for a in r.positives() if a.pred == p]
            if not variants:
                continue
            # CHECK_EVERY tuples at a time, then the size check: the range's C-level counter
            # costs about what `while S` did per tuple; the IndexError of an empty stack
            # ends a round early (nothing else in a rule body indexes)
            pad = "    " * outer
            body.append(pad + f"while S{j}:")
            body.append(pad + "    try:")
            body.append(pad + "        for _ in R:")
            body.append(pad + f"            d = S{j}.pop()")
            # one variant: unpack d (a `continue` moves on to the next tuple); several: each
            # in its own one-pass loop so a `continue` skips only that variant
            src = "= d" if len(variants) == 1 else "(d,)"
            for r, a in variants:
                i = idx_of[r.head]
                _RuleEmitter(g, body, 3 + outer).rule(r, a, src, "work", f"F{i}", f"S{i}",
                                                       None)
            body.append(pad + "    except IndexError:")
            body.append(pad + "        pass")
            body.append(pad + "    " + over)
    elif level:
        for i in range(n):
            body.append(f"D{i} = set(F{i})")
        loop: list[str] = []
        for i in range(n):
            loop.append(f"    N{i} = set()")
        loop.append(f"    _g.live = {_tup([f'F{i}' for i in range(n)] + [f'N{i}' for i in range(n)])}")
        for r in recursive:
            i = idx_of[r.head]
            for a in r.positives():
                if a.pred in scc:
                    _RuleEmitter(g, loop, 1).rule(r, a, f"D{idx_of[a.pred]}", "level", f"F{i}",
                                                   None, f"N{i}")
        for i in range(n):
            loop.append(f"    F{i} |= N{i}")
            for name, li, kp, op in g.live:
                if li == i:
                    loop.append(f"    _ia({name}, N{i}, {kp!r}, {op!r})")
            loop.append(f"    D{i} = N{i}")
        loop.append("    " + over)
        for name, li, kp, op in g.live:
            body.append(f"{name} = _bi(F{li}, {kp!r}, {op!r})")
        body.append(f"while {' or '.join(f'D{i}' for i in range(n))}:")
        body.extend(loop)
    body.append(f"return {_tup([f'F{i}' for i in range(n)])}")
    src = "def _stratum(view, K, BOT, _ar, ONE, _bi, _ia, _g):\n" + "\n".join(
        "    " + line for line in g.prologue + body) + "\n"
    fn = _FN_CACHE.get(src)
    if fn is None:
        ns: dict = {}
        exec(compile(src, "<e3logic.fast>", "exec"), ns)
        fn = _FN_CACHE[src] = ns["_stratum"]
    unary = tuple(arities[p] == 1 for p in preds)
    return fn, tuple(g.consts), unary, src


def run_stratum(view: View, layer: Layer, compiled, guard: Guard | None = None) -> None:
    """Evaluate a compiled stratum under `guard` (no limits if None) and store its relations
    in `layer`."""
    preds, (fn, consts, unary, _src, origins) = compiled
    g = guard if guard is not None else Guard(UNLIMITED, "fast")
    g.origins = origins
    results = fn(view, consts, BOT, arith, ONE, build_index, index_add, g)
    g.finished(results)
    for p, r, u in zip(preds, results, unary):
        if u:
            layer.unary[p] = r
            layer.computed.pop(p, None)
        else:
            layer.computed[p] = r
