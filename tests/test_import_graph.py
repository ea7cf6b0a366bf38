"""The package's own import graph: no module or package imports one that imports it back, and the
model layer stays free of Ray."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "hamur_dist"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every hamur_dist module a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {name for name in found if name.startswith("hamur_dist")}


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        edges[name] = {i for i in imports_of(path) if i in modules and i != name}
    return edges


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else module


def cycles(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Pairs (a, b) with a path a -> b and b -> a."""
    def reachable(start):
        seen, stack = set(), [start]
        while stack:
            for nxt in edges.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    reach = {node: reachable(node) for node in edges}
    return sorted((a, b) for a in edges for b in reach[a] if a < b and a in reach[b])


def test_no_module_imports_one_that_imports_it_back():
    assert cycles(graph()) == []


def test_no_package_imports_one_that_imports_it_back():
    edges: dict[str, set[str]] = {}
    for module, targets in graph().items():
        edges.setdefault(package_of(module), set()).update(
            package_of(t) for t in targets if package_of(t) != package_of(module))
    assert cycles(edges) == []


def test_the_checker_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [("a", "b"), ("a", "c"), ("b", "c")]


def test_the_model_layer_imports_no_ray_code():
    for path in (PACKAGE / "model").rglob("*.py"):
        source = path.read_text()
        assert "import ray" not in source and "from ray" not in source, path
        assert not any(i.startswith(("hamur_dist.train", "hamur_dist.tune", "hamur_dist.ray_", "hamur_dist.infer"))
                       for i in imports_of(path)), path
