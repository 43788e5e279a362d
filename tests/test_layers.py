"""The layer rule of docs/architecture.md: every module imports only its own layer or the layers below.

Imports are read from the source with :mod:`ast` (every ``import`` statement, including those
inside functions and under ``TYPE_CHECKING``), so the test needs nothing to be importable.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sbbench"

LAYERS: list[tuple[str, ...]] = [
    ("sbbench", "sbbench.seeding", "sbbench.results", "sbbench.tuning"),
    ("sbbench.data", "sbbench.models"),
    ("sbbench.training", "sbbench.metrics", "sbbench.plots"),
    ("sbbench.methods",),
    ("sbbench.tasks", "sbbench.suite", "sbbench.headline", "sbbench.runner", "sbbench.isolation", "sbbench.selection"),
    ("sbbench.cache", "sbbench.executors", "sbbench.scoring", "sbbench.sweep", "sbbench.api"),
    ("sbbench.leaderboard",),
    ("sbbench.verify",),
    ("sbbench.cli", "sbbench.__main__"),
]
"""Bottom to top; a name stands for the module or the package and everything in it (``sbbench``: the
package's own ``__init__`` only)."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of the longest prefix naming ``module``'s place."""
    best, depth = None, -1
    for index, names in enumerate(LAYERS):
        for name in names:
            inside = module == name or (name != "sbbench" and module.startswith(name + "."))
            if inside and name.count(".") > depth:
                best, depth = index, name.count(".")
    if best is None:
        raise AssertionError(f"{module} is in no layer of tests/test_layers.py: add it there and to "
                             "docs/architecture.md")
    return best


def imported_modules(path: Path) -> set[str]:
    """The sbbench modules (or packages) that the file at ``path`` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "sbbench"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "sbbench":
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
    return found


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_no_layer_above_its_own(module: str) -> None:
    own = layer_of(module)
    upward = sorted(target for target in imported_modules(MODULES[module]) if layer_of(target) > own)
    assert not upward, f"{module} (layer {own}) imports {upward} from a layer above"


def test_the_module_import_graph_has_no_cycle() -> None:
    graph = {module: {t for t in imported_modules(path) if t in MODULES and t != module}
             for module, path in MODULES.items()}
    # A package's __init__ re-exporting its own modules is not a cycle of concerns: leave those edges out.
    graph = {m: {t for t in targets if not (t.startswith(m + ".") and MODULES[m].name == "__init__.py")
                 and not (m.startswith(t + ".") and MODULES[t].name == "__init__.py")}
             for m, targets in graph.items()}
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = [*trail[trail.index(target):], target] if target in trail else [module, target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*trail, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_every_layer_name_exists() -> None:
    missing = [name for names in LAYERS for name in names
               if not any(m == name or m.startswith(name + ".") for m in MODULES)]
    assert not missing, f"tests/test_layers.py names modules that do not exist: {missing}"
