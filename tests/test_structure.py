"""The package's shape: imports flow one way (no cycle among pipeline modules, imports inside functions
counted), and each floor imports only floors below it (DESIGN.md "Floors")."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SRC = Path(__file__).resolve().parents[1] / "src"

# DESIGN.md's floors, lowest first; a module may import its own floor and the floors below
FLOORS = [
    ("pipeline", "pipeline.errors", "pipeline.ranks", "pipeline.plots", "pipeline.hub"),
    ("pipeline.config",),
    ("pipeline.data", "pipeline.models", "pipeline.tasks", "pipeline.schedulers"),
    ("pipeline.tracking",),
    ("pipeline.callbacks", "pipeline.distributed"),
    ("pipeline.train",),
    ("pipeline.cli", "pipeline.sweep", "hydra_plugins"),
]


def modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imported(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every module of ours that ``module`` imports, anywhere in the file (inside functions too), plus the
    packages Python imports on the way (importing a.b.c runs a/__init__ and a/b/__init__)."""
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            while name:
                if name != module and not module.startswith(name + "."):
                    targets.add(name)
                name = name.rpartition(".")[0]
    return targets


def graph() -> dict[str, set[str]]:
    known = modules()
    return {module: imported(module, path, known) for module, path in known.items()}


def test_no_import_cycle_among_pipeline_modules():
    edges = graph()
    visiting, done, cycles = [], set(), []

    def visit(module: str) -> None:
        visiting.append(module)
        for target in sorted(edges.get(module, ())):
            if target in visiting:
                cycles.append(visiting[visiting.index(target):] + [target])
            elif target not in done:
                visit(target)
        visiting.pop()
        done.add(module)

    for module in sorted(edges):
        if module not in done:
            visit(module)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles[:5])


def floor(module: str) -> int:
    best, level = -1, None
    for index, names in enumerate(FLOORS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, level = len(name), index
    assert level is not None, f"{module} is on no floor; add it to FLOORS"
    return level


def test_every_module_imports_only_its_floor_and_below():
    upward = [f"{module} -> {target}" for module, targets in graph().items() for target in targets
              if floor(target) > floor(module)]
    assert not upward, "imports up a floor: " + "; ".join(sorted(upward))


@pytest.mark.parametrize("module", ["pipeline.errors", "pipeline.ranks"])
def test_the_ground_floor_imports_nothing_of_ours(module):
    assert graph()[module] <= {"pipeline"}
