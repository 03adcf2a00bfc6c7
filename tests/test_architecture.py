"""Layers point one way: engines <- viewers <- realtime, and no import cycles between modules."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("engines", "viewers", "realtime")
#: Which packages each package may import (its own and the ones below it).
ALLOWED = {"engines": {"engines"}, "viewers": {"engines", "viewers"}, "realtime": {"engines", "viewers", "realtime"}}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set:
    """Project modules imported anywhere in the file (function-level imports count too)."""
    mod = _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in PACKAGES)
    return found


def _graph() -> dict:
    files = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for imp in _imports(path):
            while imp and imp not in modules:  # "pkg.mod.Class" -> "pkg.mod"
                imp = imp.rpartition(".")[0]
            if imp and imp != name:
                deps.add(imp)
        graph[name] = deps
    return graph


def test_layers_point_down():
    bad = [f"{m} imports {d}" for m, deps in _graph().items() for d in deps
           if d.split(".")[0] not in ALLOWED[m.split(".")[0]]]
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def test_no_import_cycles():
    graph = _graph()
    # a package's __init__ importing its own submodules is not a cycle of meaning; skip those edges
    edges = {m: {d for d in deps if not (d.startswith(m + ".") and (REPO / m.replace(".", "/")).is_dir())}
             for m, deps in graph.items()}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(edges.get(m, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_real_edges():
    """Guard against a checker that passes because it finds nothing."""
    graph = _graph()
    assert "engines.smplerx" in graph["engines.checkpoints"]
    assert "engines.types" in graph["realtime.pipeline"]
    assert "realtime.cli.common" in graph["realtime.cli.image"]


def test_architecture_doc_names_every_module():
    """docs/architecture.md has a line for every module file (so that it keeps matching the tree)."""
    doc = (REPO / "docs" / "architecture.md").read_text()
    files = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py") if p.name != "__init__.py"]
    assert files
    missing = [str(p.relative_to(REPO)) for p in files if f"`{p.name}`" not in doc]
    assert missing == []
