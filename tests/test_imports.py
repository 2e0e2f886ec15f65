"""Imports among runtime/ modules flow one way: no module imports, directly or through others,
a module that imports it back (HELPERS quality bar: "no module pair importing each other").

The graph is built from the source with ast, counting every `import`/`from ... import` anywhere
in a module, also inside functions: a function-level import only postpones a cycle to the first
call, it does not remove it. `from PKG import NAME` is an edge to the submodule PKG.NAME when
that is a module, else to PKG itself. No import of a module adds an edge to its parent packages
(Python runs them first, but they are not the module's dependency).
"""
from __future__ import annotations

import ast
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
PKG = "runtime"


def modules(top: Path = TOP, pkg: str = PKG) -> dict[str, Path]:
    """Dotted name -> file, for every module of the package."""
    out = {}
    for f in sorted((top / pkg).rglob("*.py")):
        parts = list(f.relative_to(top).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in its source)."""
    graph: dict[str, set[str]] = {}
    for name, f in mods.items():
        is_pkg = f.name == "__init__.py"
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[:len(here) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    deps.add(sub if sub in mods else target)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search, white/grey/black)."""
    colour: dict[str, int] = dict.fromkeys(graph, 0)
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        colour[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if colour[m] == 1:
                return stack[stack.index(m):] + [m]
            if colour[m] == 0 and (c := visit(m)):
                return c
        stack.pop()
        colour[n] = 2
        return None

    for n in sorted(graph):
        if colour[n] == 0 and (c := visit(n)):
            return c
    return None


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    """The checker itself: a cycle through a function-level relative import is found."""
    pkg = tmp_path / "p"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import a\n")
    (pkg / "sub" / "a.py").write_text("from ..b import x\n")
    (pkg / "b.py").write_text("def x():\n    from .sub import a\n    return a\n")
    g = import_graph(modules(tmp_path, "p"))
    assert g["p.sub.a"] == {"p.b"} and g["p.b"] == {"p.sub.a"} and g["p.sub"] == {"p.sub.a"}
    assert find_cycle(g) == ["p.b", "p.sub.a", "p.b"]
    (pkg / "b.py").write_text("def x():\n    return 1\n")
    assert find_cycle(import_graph(modules(tmp_path, "p"))) is None


def test_no_import_cycle_in_runtime():
    cycle = find_cycle(import_graph(modules()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
