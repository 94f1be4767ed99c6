"""The logic layer: Datalog rules (e3logic/rules/*.dl and users' .dl files), two engines that agree
(`fast`, `pydatalog`), and named queries over facts projected from the repository.

    from e3logic.logic import Program
    p = Program.parse('path(X, Y) :- edge(X, Y). path(X, Y) :- path(X, Z), edge(Z, Y).')
    p.evaluate({"edge": {("a", "b"), ("b", "c")}})["path"]
"""
from e3logic.logic.errors import (ArityError, DatalogSyntaxError, EngineError, FactError,
                                  LimitError, LogicError, StratificationError,
                                  UnknownPredicateError, UnsafeVariableError)
from e3logic.logic.limits import Limits
from e3logic.logic.program import (AUTO_THRESHOLD, ENGINES, Prepared, Program, QueryResult,
                                   Relation)
from e3logic.logic.queries import (FACT_RELATIONS, Logic, ancestors, await_cycles, dependents,
                                   deps, dirty_closure, lease_conflicts, lineage, load_program,
                                   package_deps, reachable, shipped_program, why)

__all__ = [
    "Program", "Prepared", "QueryResult", "Relation", "ENGINES", "AUTO_THRESHOLD",
    "LogicError", "DatalogSyntaxError", "ArityError", "UnsafeVariableError",
    "StratificationError", "UnknownPredicateError", "FactError", "EngineError", "LimitError",
    "Limits",
    "FACT_RELATIONS", "Logic", "shipped_program", "load_program", "deps", "dependents",
    "reachable", "ancestors", "dirty_closure", "lineage", "why", "lease_conflicts",
    "await_cycles", "package_deps",
]
