"""How ``dermfuse_data`` hangs together: readers never import writers, no import cycles, no other dermfuse package.

Read from the source text (every ``import`` statement, at module level or inside a function), so a
cycle that only a late import would hide is still found.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dermfuse_data

PACKAGE = Path(dermfuse_data.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> every module name it imports (``from a.b import c`` counts as ``a.b`` and ``a.b.c``)."""
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[_module_name(path)] = names
    return graph


def _cycle_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A shortest import chain from ``start`` back to itself inside the package, or None."""
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for target in sorted(graph[path[-1]] & graph.keys()):
            if target == start:
                return path + [start]
            if target not in seen:
                seen.add(target)
                paths.append(path + [target])
    return None


def test_no_import_cycles():
    graph = _imports()
    cycles = [cycle for module in graph if (cycle := _cycle_through(graph, module))]
    assert cycles == [], [" -> ".join(c) for c in cycles]


def test_readers_never_import_writers():
    graph = _imports()
    readers = [m for m in graph if m.startswith("dermfuse_data.sources")]
    assert len(readers) >= 9
    for reader in readers:
        assert not any(name.startswith("dermfuse_data.synthetic") for name in graph[reader]), reader


def test_imports_no_other_dermfuse_package():
    for module, names in _imports().items():
        assert not [n for n in names if n.startswith("dermfuse_") and not n.startswith("dermfuse_data")], module
