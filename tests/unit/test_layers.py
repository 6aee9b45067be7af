"""The tree shows the architecture: imports point one way (see DESIGN.md, "Layers")."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "taskjobs"

# The pure layers: no database, no Celery, no CLI, nothing of taskjobs above them.
PURE = {
    "taskjobs.errors": set(),
    "taskjobs.model": {"taskjobs.errors"},
    "taskjobs.lifecycle": {"taskjobs.errors", "taskjobs.model"},
    "taskjobs.store.records": set(),
}
# Third-party packages each of which only one part of taskjobs imports.
OWNERS = {
    "sqlalchemy": "taskjobs.store",
    "alembic": "taskjobs.store",
    "celery": "taskjobs.celery",
    "kombu": "taskjobs.celery",
    "billiard": "taskjobs.celery",
    "starlette": "taskjobs.web",
    "jinja2": "taskjobs.web",
    "uvicorn": "taskjobs.web",
    "prometheus_client": "taskjobs.web",
    "pytest": "taskjobs.testing",
}
# What the layers below the edges must never import: the edges.
EDGES = (
    "taskjobs.celery",
    "taskjobs.cli",
    "taskjobs.cli_options",
    "taskjobs.render",
    "taskjobs.testing",
    "taskjobs.web",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    module_name(path): path
    for path in sorted(PACKAGE.rglob("*.py"))
    if "migrations" not in path.parts
}


def imports(module: str, *, top_level_only: bool = False) -> Iterator[str]:
    """The modules ``module`` imports: every import, or only those run when it is imported
    (not inside a function, nor under ``if TYPE_CHECKING``)."""
    tree = ast.parse(MODULES[module].read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{module}: taskjobs imports absolutely"
            for alias in node.names:
                # ``from taskjobs.store import reads`` imports a module, ``import Store`` a name.
                candidate = f"{node.module}.{alias.name}"
                yield candidate if candidate in MODULES else str(node.module)


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("module", sorted(PURE))
def test_the_pure_layers_import_only_what_is_below_them(module: str) -> None:
    imported = {name for name in imports(module) if within(name, "taskjobs")}
    assert imported <= PURE[module]
    third_party = {name.partition(".")[0] for name in imports(module)} - {"taskjobs"}
    assert not third_party & {*OWNERS, "click"}


@pytest.mark.parametrize(("library", "owner"), sorted(OWNERS.items()))
def test_each_library_is_imported_by_its_own_layer_only(library: str, owner: str) -> None:
    outside = [module for module in MODULES if not within(module, owner)
               and any(within(name, library) for name in imports(module))]  # fmt: skip
    assert outside == []


def test_no_layer_below_the_edges_imports_them() -> None:
    below = [module for module in MODULES if not any(within(module, edge) for edge in EDGES)
             and module != "taskjobs"]  # fmt: skip
    found = {
        module: sorted({name for name in imports(module) if any(within(name, e) for e in EDGES)})
        for module in below
    }
    assert {module: names for module, names in found.items() if names} == {}


def test_the_store_imports_only_the_layers_below_it() -> None:
    allowed = ("taskjobs.store", "taskjobs.lifecycle", "taskjobs.model", "taskjobs.errors")
    found = {
        module: sorted(name for name in imports(module)
                       if within(name, "taskjobs") and not any(within(name, a) for a in allowed))
        for module in MODULES if within(module, "taskjobs.store")
    }  # fmt: skip
    assert {module: names for module, names in found.items() if names} == {}


def test_the_read_side_is_rendered_by_the_cli_and_reads_through_the_store_protocol() -> None:
    assert "taskjobs.queries" in set(imports("taskjobs.cli"))
    assert not any(within(name, "taskjobs.store.") for name in imports("taskjobs.queries"))


def test_no_import_cycles() -> None:
    graph = {
        module: {name for name in imports(module, top_level_only=True) if name in MODULES}
        for module in MODULES
    }
    cycles = []
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for name in sorted(graph[module]):
            if state.get(name) == "open":
                cycles.append([*path[path.index(name) :], name])
            elif name not in state:
                visit(name, [*path, name])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
