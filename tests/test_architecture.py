"""The package's shape, checked from its source: layers import only the layers below them, no module
imports another's private names, and the module-level imports form no cycle."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "robustad"  # read as text: nothing here is imported
# bottom to top; a module may import its own layer and the ones before it
LAYERS = [
    {"errors", "files", "runtime", "config", "distributed", "provenance"},
    {"data"},
    {"transforms"},
    {"models"},
    {"methods"},
    {"attacks"},
    {"evaluation"},
    {"pipeline", "benchmark", "export", "monitor", "doctor"},
    {"cli", "__main__"},
]


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path, ast.parse(path.read_text())


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package itself (its __init__ only re-exports)
    return next(i for i, names in enumerate(LAYERS) if parts[1] in names)


def _robustad_imports(tree, top_level_only=False):
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("robustad"):
            yield node
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("robustad"):
                    yield ast.ImportFrom(module=alias.name, names=[], lineno=node.lineno)


def test_every_module_has_a_layer():
    for name, _, _ in _modules():
        if name.count("."):
            assert _layer(name) is not None, name


def test_no_module_imports_a_higher_layer():
    wrong = []
    for name, _, tree in _modules():
        mine = _layer(name)
        if mine is None:
            continue
        for node in _robustad_imports(tree):
            other = _layer(node.module)
            if other is not None and other > mine:
                wrong.append(f"{name} imports {node.module} (line {node.lineno})")
    assert not wrong, wrong


def test_no_private_name_is_imported_across_modules():
    wrong = [f"{name}: from {node.module} import {alias.name}"
             for name, _, tree in _modules() for node in _robustad_imports(tree)
             for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not wrong, wrong


def test_module_level_imports_have_no_cycle():
    modules = {name for name, _, _ in _modules()}
    graph = {}
    for name, path, tree in _modules():
        targets = set()
        for node in _robustad_imports(tree, top_level_only=True):
            targets.add(node.module)
            targets.update(f"{node.module}.{a.name}" for a in node.names)  # `from pkg import module`
        graph[name] = {t for t in targets if t in modules and t != name}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node, trail):
        state[node] = 1
        for nxt in graph[node]:
            if nxt == "robustad":
                continue  # importing the package's metadata (__version__) from inside it
            if state.get(nxt) == 1:
                cycle.extend(trail[trail.index(nxt):] + [nxt])
                return True
            if nxt not in state and visit(nxt, trail + [nxt]):
                return True
        state[node] = 2
        return False

    for start in sorted(graph):
        if start not in state and visit(start, [start]):
            break
    assert not cycle, " -> ".join(cycle)
