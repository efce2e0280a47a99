"""The engine's modules depend on each other one way: ``pipeflow._core`` imports
nothing above it, and its modules' imports (those made at run time, not only
for type checkers) form no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pipeflow._core

CORE = Path(pipeflow._core.__file__).parent


def runtime_imports(path: Path) -> set[str]:
    """The modules ``path`` imports when it runs, skipping ``if TYPE_CHECKING:`` blocks,
    as absolute names (``pipeflow._core._buffer``)."""
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.ImportFrom) and node.module is not None:
                if node.level == 1:
                    found.add(f"pipeflow._core.{node.module}")
                elif node.level == 0:
                    found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            for field in ("body", "orelse", "finalbody", "handlers"):
                visit([n for n in getattr(node, field, []) if isinstance(n, ast.stmt)])

    visit(ast.parse(path.read_text()).body)
    return found


def core_graph() -> dict[str, set[str]]:
    return {
        f"pipeflow._core.{path.stem}": runtime_imports(path)
        for path in sorted(CORE.glob("*.py"))
        if path.stem != "__init__"
    }


def test_core_imports_nothing_above_it() -> None:
    """No module of ``_core`` imports another part of pipeflow."""
    above = {
        module: sorted(
            d for d in deps if d.startswith("pipeflow") and not d.startswith("pipeflow._core")
        )
        for module, deps in core_graph().items()
    }
    assert {} == {module: deps for module, deps in above.items() if deps}


def test_core_modules_import_each_other_without_cycles() -> None:
    """Following run-time imports from any ``_core`` module never leads back to it."""
    graph = core_graph()
    cycles: list[list[str]] = []

    def walk(module: str, path: list[str]) -> None:
        for dep in sorted(graph.get(module, set())):
            if dep == path[0]:
                cycles.append([*path, dep])
            elif dep in graph and dep not in path:
                walk(dep, [*path, dep])

    for module in graph:
        walk(module, [module])
    assert [] == cycles
