"""Static checks of a rule program, each error with source, line and column:
arity, safety (variables bound by positive atoms), `_` in heads, stratification, and
unknown predicates in queries. Also the predicate dependency graph and its strata."""
from __future__ import annotations

from dataclasses import dataclass

from e3logic.logic.errors import (ArityError, StratificationError, UnknownPredicateError,
                                  UnsafeVariableError)
from e3logic.logic.syntax import (Anon, Atom, BinOp, Comparison, Negation, Query, Rule, Var,
                                  term_anons, term_vars)


@dataclass(frozen=True)
class Use:
    arity: int
    source: str
    line: int
    column: int


def atoms(statement):
    """Atoms of a rule or query in source order: head first, then body (negations included)."""
    if isinstance(statement, Rule):
        yield statement.head
    for lit in statement.body:
        if isinstance(lit, Atom):
            yield lit
        elif isinstance(lit, Negation):
            yield lit.atom


def check_arities(statements, arities: dict[str, Use] | None = None) -> dict[str, Use]:
    """First use of each predicate fixes its arity; a later different use is an error."""
    arities = dict(arities or {})
    for st in statements:
        for atom in atoms(st):
            use = arities.get(atom.pred)
            if use is None:
                arities[atom.pred] = Use(atom.arity, st.source, atom.line, atom.column)
            elif use.arity != atom.arity:
                there = "in the given facts" if use.source == "<facts>" else \
                    f"at {use.source}:{use.line}:{use.column}"
                raise ArityError(
                    f"arity mismatch: '{atom.pred}' has {atom.arity} "
                    f"argument{'s' * (atom.arity != 1)} here but {use.arity} {there} "
                    f"({atom.pred}/{atom.arity} vs {atom.pred}/{use.arity}); use one arity "
                    f"per relation", st.source, atom.line, atom.column)
    return arities


def check_safety(st) -> None:
    """Every variable of a head, comparison or expression must be bound by a positive atom of
    the body (appear there as a plain argument); `_` only in body atoms. A plain argument of
    a negation that no positive atom binds is existential, like `_` ("no Y with r(X, Y)"), and
    may occur in that one negation only."""
    src = st.source
    bound = {a.name for lit in st.body if isinstance(lit, Atom)
             for a in lit.args if isinstance(a, Var)}

    def need(var: Var, where: str):
        if var.name not in bound:
            raise UnsafeVariableError(
                f"variable {var.name} in {where} is not bound by a positive atom",
                src, var.line, var.column)

    def no_anon(term, where: str):
        for a in term_anons(term):
            raise UnsafeVariableError(f"'_' cannot be used in {where}; name the variable",
                                      src, a.line, a.column)

    if isinstance(st, Rule) and not st.body:
        for arg in st.head.args:
            for v in term_vars(arg) + term_anons(arg):
                name = v.name if isinstance(v, Var) else "_"
                raise UnsafeVariableError(
                    f"variable {name} in a fact of '{st.head.pred}'; a fact needs constants "
                    f"(an identifier is a variable: quote strings, e.g. \"{name}\")",
                    src, v.line, v.column)
    if isinstance(st, Rule):
        for arg in st.head.args:
            if isinstance(arg, Anon):
                raise UnsafeVariableError(
                    f"'_' in the head of '{st.head.pred}'; a head needs variables or constants",
                    src, arg.line, arg.column)
            no_anon(arg, f"the head of '{st.head.pred}'")
            for v in term_vars(arg):
                need(v, f"the head of '{st.head.pred}'")
    existential: dict[str, tuple] = {}  # variable → (literal index, predicate) of its negation
    for i, lit in enumerate(st.body):
        if isinstance(lit, Atom):
            for arg in lit.args:
                if isinstance(arg, BinOp):
                    no_anon(arg, "an expression")
                    for v in term_vars(arg):
                        need(v, "an expression")
        elif isinstance(lit, Negation):
            for arg in lit.atom.args:
                if isinstance(arg, BinOp):
                    no_anon(arg, "an expression")
                    for v in term_vars(arg):
                        need(v, f"an expression in a negation of '{lit.atom.pred}'")
                elif isinstance(arg, Var) and arg.name not in bound:
                    first = existential.setdefault(arg.name, (i, lit.atom.pred))
                    if first[0] != i:
                        raise UnsafeVariableError(
                            f"variable {arg.name} occurs only in negations (of '{first[1]}' "
                            f"and '{lit.atom.pred}'); it is free in one negation only: bind "
                            f"it with a positive atom or give each negation its own name",
                            src, arg.line, arg.column)
        elif isinstance(lit, Comparison):
            for side in (lit.left, lit.right):
                no_anon(side, "a comparison")
                for v in term_vars(side):
                    need(v, "a comparison")


def dependency_graph(rules):
    """Edges body predicate → head predicate, attribute `negative` if any use is negated."""
    import networkx as nx  # imported on first use: it is slow to import

    g = nx.DiGraph()
    for r in rules:
        g.add_node(r.head.pred)
        for lit in r.body:
            if isinstance(lit, Atom):
                pred, neg = lit.pred, False
            elif isinstance(lit, Negation):
                pred, neg = lit.atom.pred, True
            else:
                continue
            if g.has_edge(pred, r.head.pred):
                g.edges[pred, r.head.pred]["negative"] |= neg
            else:
                g.add_edge(pred, r.head.pred, negative=neg)
    return g


def check_stratified(rules) -> None:
    """No predicate may depend negatively on itself through recursion."""
    import networkx as nx

    rules = [r for r in rules if r.body]
    g = dependency_graph(rules)
    comp = {}
    for i, scc in enumerate(nx.strongly_connected_components(g)):
        for p in scc:
            comp[p] = i
    for r in rules:
        for lit in r.body:
            if isinstance(lit, Negation) and comp.get(lit.atom.pred) == comp[r.head.pred]:
                head, neg = r.head.pred, lit.atom.pred
                back = nx.shortest_path(g, head, neg)  # head feeds … feeds neg
                preds = [head] if head == neg else [head, neg] + list(reversed(back[1:-1]))
                shown = [head, "!" + neg] + preds[2:] + [head] if head != neg \
                    else [head, "!" + head]
                raise StratificationError(
                    f"negation of '{neg}' in a rule for '{head}' is not stratifiable: "
                    f"{' -> '.join(shown)} (negation through recursion)",
                    r.source, lit.line, lit.column, preds)


def check_query_known(q: Query, known) -> None:
    known = set(known)
    for atom in atoms(q):
        if atom.pred not in known:
            raise UnknownPredicateError(atom.pred, known, q.source, atom.line, atom.column)


def strata(rules_by_head: dict[str, list]) -> list[list[str]]:
    """Predicates with rules, grouped in strongly connected sets, in evaluation order
    (dependencies first; ties broken by name). `rules_by_head`: pred → IR rules."""
    import networkx as nx

    g = nx.DiGraph()
    for head, rules in rules_by_head.items():
        g.add_node(head)
        for r in rules:
            for lit in r.body:
                p = getattr(lit, "pred", None)
                if p is not None and p in rules_by_head:
                    g.add_edge(p, head)
    c = nx.condensation(g)
    order = nx.lexicographical_topological_sort(c, key=lambda n: min(c.nodes[n]["members"]))
    return [sorted(c.nodes[n]["members"]) for n in order]
