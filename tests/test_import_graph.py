"""Issue 18: the package graph is acyclic.

Nodes are the root package (``biomedclip/__init__.py``, the lazy public facade), every top-level
module (``biomedclip.zeroshot``, ``biomedclip.tables``, ...) and every sub-package
(``biomedclip.embedding``, ``biomedclip.export``, ...). An edge ``A -> B`` is any import in a module
of ``A`` of a module of ``B``: at module level, inside a function (a lazy import is still a
dependency: it only moves the failure to run time), inside ``try`` and under ``if TYPE_CHECKING:``
(a type is a dependency too), and ``importlib.import_module("biomedclip....")`` with a literal name.
A cycle fails the test, printed with the file and line of every import on it.
"""

from __future__ import annotations

import ast
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from pathlib import Path

from tests.packaging.scan import REPO, imports_of, module_name, package_files

ROOT = "biomedclip"
# Layering rules beyond acyclicity: (importer, imported) node pairs that must not appear at all.
FORBIDDEN = {
    ("biomedclip.pmc", "biomedclip.eval"): "MedICaT is read by biomedclip.pairs",
    ("biomedclip.checkpoint", "biomedclip.model"): "checkpoint I/O sits below the model",
    ("biomedclip.embedding", "biomedclip.export"): "ONNX graphs: biomedclip.model.onnx_graphs",
    ("biomedclip.embedding", "biomedclip.zeroshot"): "labels: biomedclip.prompts",
    ("biomedclip.onnx", "biomedclip.model"): "the ONNX runner is torch-free",
}

Edges = dict[tuple[str, str], list[str]]


def node_of(module: str) -> str:
    """``biomedclip.embedding.encoder`` -> ``biomedclip.embedding``; the root stays the root."""
    return ".".join(module.split(".")[:2])


def _literal_import_modules(path: Path) -> Iterable[tuple[int, str]]:
    """``importlib.import_module("biomedclip.x")`` calls with a literal module name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def module_edges(files: list[Path], namer: Callable[[Path], str] = module_name) -> Edges:
    """``(importer module, imported module) -> ["file:line", ...]`` within the package."""
    modules = {namer(p) for p in files}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges: Edges = defaultdict(list)
    for path in files:
        me = namer(path)
        where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        targets: list[tuple[int, str]] = []
        for imp in imports_of(path):
            if imp.top != ROOT:
                continue
            subs = [f"{imp.module}.{n}" for n in imp.names if f"{imp.module}.{n}" in modules]
            # ``from pkg import submodule`` depends on the submodule; other names on ``pkg``
            if not subs or len(subs) < len(imp.names):
                targets.append((imp.line, imp.module))
            targets += [(imp.line, s) for s in subs]
        targets += [
            (line, m) for line, m in _literal_import_modules(path) if m.split(".")[0] == ROOT
        ]
        for line, target in targets:
            resolved = resolve(target)
            if resolved is not None and resolved != me:
                edges[(me, resolved)].append(f"{where}:{line}")
    return edges


def package_graph(edges: Edges) -> Edges:
    out: Edges = defaultdict(list)
    for (a, b), where in edges.items():
        na, nb = node_of(a), node_of(b)
        if na != nb:
            out[(na, nb)] += where
    return out


def strongly_connected(edges: Edges) -> list[list[str]]:
    """Tarjan's components with more than one node (iterative: no recursion limit)."""
    graph: dict[str, list[str]] = defaultdict(list)
    for a, b in edges:
        graph[a].append(b)
        graph.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
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
    return found


def shortest_cycle(edges: Edges, component: list[str], start: str) -> list[str]:
    """A shortest cycle through ``start`` inside its component (breadth-first)."""
    inside = set(component)
    prev: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for a, b in sorted(edges):
            if a != v or b not in inside:
                continue
            if b == start:
                path = [v]
                while path[-1] != start:
                    path.append(prev[path[-1]])
                return [*reversed(path), start]
            if b not in prev:
                prev[b] = v
                queue.append(b)
    raise AssertionError(f"no cycle through {start} in {component}")  # pragma: no cover


def describe(edges: Edges, cycle: list[str]) -> str:
    lines = [" -> ".join(cycle)]
    for a, b in zip(cycle, cycle[1:]):
        lines.append(f"  {a} -> {b}: {', '.join(sorted(set(edges[(a, b)]))[:4])}")
    return "\n".join(lines)


def cycles_report(edges: Edges) -> list[str]:
    """Per strongly connected component: its members, then a shortest cycle through each of
    them (each cycle once)."""
    out = []
    for component in strongly_connected(edges):
        seen: set[frozenset[tuple[str, str]]] = set()
        lines = [f"packages importing each other: {', '.join(component)}"]
        for start in component:
            cycle = shortest_cycle(edges, component, start)
            key = frozenset(zip(cycle, cycle[1:]))
            if key not in seen:
                seen.add(key)
                lines.append(describe(edges, cycle))
        out.append("\n".join(lines))
    return out


def the_package_graph() -> Edges:
    return package_graph(module_edges(package_files()))


def test_the_package_graph_has_no_cycle():
    edges = the_package_graph()
    assert len({n for e in edges for n in e}) > 20, "the scan found too few packages"
    found = cycles_report(edges)
    assert not found, "import cycles between biomedclip's packages:\n" + "\n".join(found)


def test_layering_rules():
    edges = the_package_graph()
    found = [
        f"{a} -> {b} ({why}): {', '.join(sorted(set(edges[(a, b)])))}"
        for (a, b), why in FORBIDDEN.items()
        if (a, b) in edges
    ]
    assert not found, "\n".join(found)


def test_the_check_finds_lazy_and_type_only_cycles(tmp_path):
    """The scan counts function-level and TYPE_CHECKING imports, and prints the cycle."""
    pkg = tmp_path / "biomedclip"
    (pkg / "alpha").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "alpha" / "__init__.py").write_text("")
    (pkg / "alpha" / "a.py").write_text("def f():\n    from biomedclip.beta import g\n")
    (pkg / "beta.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from biomedclip import gamma\n"
    )
    (pkg / "gamma.py").write_text(
        "import importlib\nimportlib.import_module('biomedclip.alpha.a')\n"
    )
    (pkg / "delta.py").write_text("from biomedclip.alpha import a\n")  # no cycle through delta
    files = sorted(pkg.rglob("*.py"))

    def name(p: Path) -> str:
        parts = list(p.relative_to(tmp_path).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    edges = package_graph(module_edges(files, name))
    assert ("biomedclip.delta", "biomedclip.alpha") in edges
    found = cycles_report(edges)
    assert len(found) == 1, found
    assert found[0].splitlines()[1] == (
        "biomedclip.alpha -> biomedclip.beta -> biomedclip.gamma -> biomedclip.alpha"
    ), found
    assert "a.py:2" in found[0] and "gamma.py:2" in found[0], found
