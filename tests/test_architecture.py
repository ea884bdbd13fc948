"""The package's shape (issue 8): no import cycle between nirbridge's modules, counting
imports done inside functions, and no module over 700 lines.

The import graph is read from the source with :mod:`ast`, nothing is imported. An edge
``a -> b`` means module ``a`` imports module ``b`` somewhere in its file; the parent
packages Python imports implicitly (``nirbridge`` for ``import nirbridge.io``) add no edge.
"""

from __future__ import annotations

import ast
import textwrap
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "nirbridge"
MAX_LINES = 700


# --------------------------------------------------------------------------- the graph
def package_modules(root: Path) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` file of the package at ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(target: str, known: Mapping[str, Path]) -> str | None:
    """The module ``target`` names, or its closest ancestor that is a known module."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def module_imports(name: str, path: Path, known: Mapping[str, Path]) -> set[str]:
    """The package's modules that module ``name`` (file ``path``) imports, at module
    level or inside functions (and ``if TYPE_CHECKING`` blocks)."""
    top = name.partition(".")[0]
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == top or alias.name.startswith(top + "."):
                    found.add(_resolve(alias.name, known) or top)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: level 1 is this module's package
                base_parts = here.split(".")
                base_parts = base_parts[:len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if not (base == top or base.startswith(top + ".")):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                # `from pkg.x import y` imports the module pkg.x.y when there is one,
                # else the name y of pkg.x
                found.add(sub if sub in known else (_resolve(base, known) or top))
    found.discard(name)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module → the package's modules it imports."""
    known = package_modules(root)
    return {name: module_imports(name, path, known) for name, path in known.items()}


# -------------------------------------------------------------------------- the cycles
def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph``, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def _cycle_through(graph: Mapping[str, Iterable[str]], comp: list[str]) -> list[str]:
    """A shortest cycle from ``comp[0]`` back to itself inside the component ``comp``."""
    start, members = comp[0], set(comp)
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph.get(v, ())):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            if w in members and w not in parent:
                parent[w] = v
                queue.append(w)
    raise AssertionError(f"{comp} is not a cycle")  # pragma: no cover


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One cycle ``[a, b, ..., a]`` per strongly connected component with a cycle (a
    component of several modules, or a module importing itself)."""
    cycles = []
    for comp in strongly_connected(graph):
        if len(comp) > 1 or comp[0] in graph.get(comp[0], ()):
            cycles.append(_cycle_through(graph, comp))
    return cycles


def _describe(graph: Mapping[str, Iterable[str]], cycles: list[list[str]]) -> str:
    lines = []
    for cyc in cycles:
        members = next(c for c in strongly_connected(graph) if cyc[0] in c)
        lines.append(" -> ".join(cyc) + (f"   (component: {', '.join(members)})"
                                          if len(members) > len(cyc) - 1 else ""))
    return "\n".join(lines)


# ------------------------------------------------------------------------------ tests
def test_cycle_finder_on_a_synthetic_graph():
    acyclic = {"a": {"b", "c"}, "b": {"c"}, "c": set(), "d": {"a"}}
    assert find_cycles(acyclic) == []
    cyclic = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"},
              "f": {"g"}, "g": {"f", "a"}}
    cycles = find_cycles(cyclic)
    assert sorted(map(tuple, cycles)) == [("a", "b", "c", "a"), ("e", "e"), ("f", "g", "f")]
    assert "a -> b -> c -> a" in _describe(cyclic, cycles)
    # a component larger than its shortest cycle names all its members
    big = {"a": {"b", "c"}, "b": {"a"}, "c": {"b"}}
    (cyc,) = find_cycles(big)
    assert cyc == ["a", "b", "a"] and "component: a, b, c" in _describe(big, [cyc])


def test_import_graph_of_a_synthetic_package(tmp_path):
    files = {
        "pkg/__init__.py": "from pkg.api import run\n",
        "pkg/api.py": "import os\nfrom pkg import util\n\ndef run():\n"
                      "    from pkg.sub.deep import thing  # inside a function\n",
        "pkg/util.py": "from pkg.errors import Error\n",
        "pkg/errors.py": "class Error(Exception):\n    pass\n",
        "pkg/sub/__init__.py": "from . import deep\nfrom .deep import thing\n",
        "pkg/sub/deep.py": "import pkg.util\nfrom ..errors import Error\nthing = 1\n",
        "pkg/late.py": "def f():\n    from pkg import api\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(textwrap.dedent(text))
    graph = import_graph(tmp_path / "pkg")
    assert graph == {
        "pkg": {"pkg.api"},
        "pkg.api": {"pkg.util", "pkg.sub.deep"},  # no edge to pkg.sub, pkg: implicit
        "pkg.util": {"pkg.errors"},
        "pkg.errors": set(),
        "pkg.sub": {"pkg.sub.deep"},
        "pkg.sub.deep": {"pkg.util", "pkg.errors"},
        "pkg.late": {"pkg.api"},
    }
    assert find_cycles(graph) == []
    (tmp_path / "pkg/errors.py").write_text("def f():\n    from pkg.api import run\n")
    cycles = find_cycles(import_graph(tmp_path / "pkg"))
    # errors -> api -> sub.deep -> errors, and util -> errors -> api -> util
    assert cycles == [["pkg.api", "pkg.sub.deep", "pkg.errors", "pkg.api"]]


def test_no_import_cycle_in_the_package():
    graph = import_graph(PACKAGE)
    assert "nirbridge.cli" in graph and "nirbridge.recipes.load" in graph
    cycles = find_cycles(graph)
    assert not cycles, "import cycles in nirbridge:\n" + _describe(graph, cycles)


def test_cli_is_imported_by_no_library_module():
    graph = import_graph(PACKAGE)
    def in_cli(name: str) -> bool:
        return name == "nirbridge.cli" or name.startswith("nirbridge.cli.")

    users = sorted(m for m, deps in graph.items() if any(in_cli(d) for d in deps)
                   and m != "nirbridge.__main__" and not in_cli(m))
    assert users == [], f"modules importing nirbridge.cli: {users}"


def test_no_module_is_over_700_lines():
    long = {name: len(path.read_text(encoding="utf-8").splitlines())
            for name, path in package_modules(PACKAGE).items()}
    over = sorted((n, k) for n, k in long.items() if k > MAX_LINES)
    assert not over, f"modules over {MAX_LINES} lines: " + ", ".join(
        f"{n} ({k})" for n, k in over)
