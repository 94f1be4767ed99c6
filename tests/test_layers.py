"""Each layer imports only the layers below it (DESIGN.md §3)."""
import ast
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
