"""The packages' shape, read from their source with ``ast``: imports point down (no cycle,
top-level or inside a function), no private name is imported from another module, no
function is over 60 lines, and a function-level import of a project module says why."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "countnet": ROOT / "countnet",
    "countnet_gen": ROOT / "gen" / "countnet_gen",
    "countnet_classify": ROOT / "classify" / "countnet_classify",
}
MAX_LINES = 60


def modules() -> dict[str, Path]:
    """Every module of the three packages by its dotted name."""
    found = {}
    for pkg, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            found[".".join([pkg, *parts])] = path
    return found


MODULES = modules()


def imports(name: str, path: Path) -> list[tuple[str, ast.stmt, bool]]:
    """(imported project module, the import statement, inside a function?) of a module.
    ``from pkg import mod`` counts as importing ``pkg.mod``."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((a.name, child, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - child.level + 1]
                    base = ".".join([*parts, *([child.module] if child.module else [])])
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    found.append((sub if sub in MODULES else base, child, in_function))
            visit(child, inner)

    visit(tree, False)
    return [(m, node, f) for m, node, f in found if m in MODULES and m != name]


def graph() -> dict[str, set[str]]:
    return {n: {m for m, _, _ in imports(n, p)} for n, p in MODULES.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            connect(v)
    return found


def test_no_import_cycle_top_level_or_in_a_function():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_are_read_in_functions_and_relative():
    g = graph()
    # the CLI imports the classifier's verbs inside its commands (torch stays out of --help)
    assert "countnet_classify.train" in g["countnet.cli"]


def test_no_private_name_imported_across_modules():
    private = []
    for name, path in MODULES.items():
        for mod, node, _ in imports(name, path):
            if isinstance(node, ast.ImportFrom):
                private += [f"{name} <- {mod}.{a.name}" for a in node.names if a.name[0] == "_"]
    assert private == []


def test_function_level_imports_of_project_modules_say_why():
    """Allowed where it keeps a heavy import out of a light path (the CLI's start-up, the
    Snakefile's parse); the comment on the line above, or at its end, says which."""
    silent = []
    for name, path in MODULES.items():
        lines = path.read_text().split("\n")
        for mod, node, in_function in imports(name, path):
            if not in_function:
                continue
            # the comment above a group of imports covers the group
            above = node.lineno - 2
            while lines[above].strip().startswith(("from ", "import ")):
                above -= 1
            if not (lines[above].strip().startswith("#") or "#" in lines[node.lineno - 1]):
                silent.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {mod}")
    assert silent == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_function_over_60_lines(name):
    tree = ast.parse(MODULES[name].read_text())
    long = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_LINES
    ]
    assert long == []
