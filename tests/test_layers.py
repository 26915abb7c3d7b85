"""The package's layers (README, "Which folder may import which"), checked from the sources: every import, at
module level or inside a function, goes to the importer's layer or one below it, and no modules import in a circle."""
from __future__ import annotations

import ast
from pathlib import Path

import genlab

ROOT = Path(genlab.__file__).parent
LAYERS = [  # bottom first; a module's layer is that of its first dotted name under genlab
    {"", "errors", "config", "files", "progress"},
    {"optim", "losses", "nn", "data", "viz"},
    {"models"},
    {"train"},
    {"run"},
    {"metrics"},
    {"api"},
    {"apps", "report", "web"},
    {"cli"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The genlab modules `path` imports, anywhere in it."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules and m != name}


def layer(module: str) -> int:
    first = module.split(".")[1] if "." in module else ""
    return next(i for i, names in enumerate(LAYERS) if first in names)


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    return {m: imports(p, set(paths)) for m, p in paths.items()}


def test_every_module_has_a_layer():
    for m in graph():
        layer(m)  # StopIteration names a module the table leaves out


def test_imports_go_down_the_layers():
    wrong = [f"{a} -> {b}" for a, deps in graph().items() for b in deps if layer(b) > layer(a)]
    assert not wrong, wrong


def test_no_import_circles():
    edges, state, circles = graph(), {}, []

    def visit(m, path):
        state[m] = "open"
        for d in sorted(edges[m]):
            if state.get(d) == "open":
                circles.append(path[path.index(d):] + [d])
            elif d not in state:
                visit(d, path + [d])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not circles, circles
