"""Each layer imports only the layers below it (DESIGN.md §3)."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "e3logic"
ORDER = ["core", "repo", "sdk", "logic", "plan", "exec", "dataflow", "api", "cli"]


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "e3logic" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in ORDER else None


def imports(path: Path, package: str):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                yield ".".join(base + ([node.module] if node.module else []))
            else:
                yield node.module or ""


def test_no_module_imports_a_layer_above_its_own():
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        mod = ".".join(rel.parts)
        own = layer_of(mod) if layer_of(mod) else ("api" if mod == "e3logic.api" else None)
        if own is None:
            continue
        pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for imp in imports(path, pkg):
            other = layer_of(imp)
            if other and ORDER.index(other) > ORDER.index(own):
                bad.append(f"{mod} imports {imp}")
    assert bad == []


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text())


SQL = re.compile(r"""["'](?:[^"'\n]*|\s*)\b(SELECT\s+\S|INSERT\s+(OR\s+\w+\s+)?INTO|"""
                 r"""UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX))""")


def test_sql_is_written_only_in_the_journal_and_the_schema():
    found = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*.py")
                   if SQL.search(p.read_text()))
    assert "repo/journal.py" in found
    assert [f for f in found if f not in ("repo/journal.py", "repo/index.py")] == []


def test_runtime_names_are_compared_nowhere_but_in_their_table():
    from e3logic.core.runtimes import RUNTIMES

    names = set(RUNTIMES)

    def named(node) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in names
        if isinstance(node, (ast.Set, ast.Tuple, ast.List)):
            return any(isinstance(e, ast.Constant) and e.value in names for e in node.elts)
        return False

    bad = []
    for rel, tree in _modules():
        if rel == "core/runtimes.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(
                    named(x) for x in [node.left, *node.comparators]):
                bad.append(f"{rel}:{node.lineno}")
    assert bad == []


def _scope_nodes(scope):
    """The nodes of a module or function body, not descending into nested functions or
    classes (their own scopes)."""
    todo = list(ast.iter_child_nodes(scope))
    while todo:
        n = todo.pop()
        yield n
        if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(n))


def test_no_attribute_is_set_on_a_function_object():
    bad = []
    for rel, tree in _modules():
        scopes = [tree] + [n for n in ast.walk(tree)
                           if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for scope in scopes:
            nodes = list(_scope_nodes(scope))
            functions = {n.name for n in nodes
                         if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
            for node in nodes:
                targets = node.targets if isinstance(node, ast.Assign) else (
                    [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
                for t in targets:
                    if (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                            and t.value.id in functions):
                        bad.append(f"{rel}:{node.lineno} {t.value.id}.{t.attr}")
    assert bad == []
