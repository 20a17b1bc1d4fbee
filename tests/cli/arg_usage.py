"""Which attributes of the parsed-arguments namespace a command's code reads.

A static scan of ``src/biomedclip``: starting at a command's ``run`` function, follow every call
that passes the namespace on (positionally or by keyword, whatever the callee names its
parameter) and collect ``args.x``, ``getattr(args, "x")`` and ``hasattr(args, "x")``. An option
whose destination is never read along that path is accepted and ignored: the parser test fails
on it. Calls are resolved through the module's imports (module level and inside functions); a
name that cannot be resolved that way falls back to every function of that name in the package.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import biomedclip

ROOT = Path(biomedclip.__file__).parent
ALL = "*"  # the namespace escapes whole (``vars(args)``): every option counts as read


@dataclass
class Function:
    module: str
    node: ast.FunctionDef | ast.AsyncFunctionDef
    imports: dict[str, str]  # local name -> "module" or "module:attr"

    @property
    def params(self) -> list[str]:
        a = self.node.args
        return [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]


@dataclass
class Package:
    functions: dict[tuple[str, str], Function] = field(default_factory=dict)
    by_name: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def scan(cls, root: Path = ROOT) -> Package:
        pkg = cls()
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root.parent).with_suffix("")
            module = ".".join(rel.parts).removesuffix(".__init__")
            tree = ast.parse(path.read_text(encoding="utf-8"))
            module_imports = _imports(tree.body, module)
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    imports = {**module_imports, **_imports(ast.walk(node), module)}
                    key = (module, node.name)
                    pkg.functions.setdefault(key, Function(module, node, imports))
                    pkg.by_name[node.name].append(key)
        return pkg

    def reads(self, module: str, name: str, param: str = "args") -> set[str]:
        """Attributes of parameter ``param`` of ``module.name`` read there or further down."""
        seen: set[tuple[str, str, str]] = set()
        out: set[str] = set()
        stack = [(module, name, param)]
        while stack:
            key = stack.pop()
            if key in seen or key[:2] not in self.functions:
                continue
            seen.add(key)
            fn = self.functions[key[:2]]
            found, calls = _uses(fn.node, key[2])
            out |= found
            for call, index, keyword in calls:
                for callee in self._resolve(fn, call.func):
                    target = self.functions[callee]
                    params = target.params
                    if keyword is not None:
                        p = keyword if keyword in params else None
                    else:
                        offset = 1 if params[:1] in (["self"], ["cls"]) else 0
                        p = params[index + offset] if index + offset < len(params) else None
                    if p is not None:
                        stack.append((*callee, p))
        return out

    def _resolve(self, fn: Function, func: ast.expr) -> list[tuple[str, str]]:
        if isinstance(func, ast.Name):
            target = fn.imports.get(func.id)
            if target and ":" in target:
                mod, attr = target.split(":")
                if (mod, attr) in self.functions:
                    return [(mod, attr)]
            if (fn.module, func.id) in self.functions:
                return [(fn.module, func.id)]
            return list(self.by_name.get(func.id, []))
        if isinstance(func, ast.Attribute):
            if isinstance(func.value, ast.Name):
                target = fn.imports.get(func.value.id, "")
                if ":" not in target and (target, func.attr) in self.functions:
                    return [(target, func.attr)]
                if ":" in target:  # from package import module
                    mod = target.replace(":", ".")
                    if (mod, func.attr) in self.functions:
                        return [(mod, func.attr)]
            return list(self.by_name.get(func.attr, []))
        return []


def _imports(nodes, module: str) -> dict[str, str]:
    out: dict[str, str] = {}
    package = module.rsplit(".", 1)[0]
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                out[alias.asname or alias.name] = f"{base}:{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                out[alias.asname or alias.name.split(".")[0]] = alias.name
    return out


def _uses(node: ast.AST, param: str):
    """(attributes read, calls that pass the namespace on as (call, position, keyword))."""
    reads: set[str] = set()
    calls = []

    def is_ns(e: ast.expr) -> bool:
        return isinstance(e, ast.Name) and e.id == param

    loops: dict[str, set[str]] = defaultdict(set)  # for name in ("a", "b"): getattr(args, name)
    for n in ast.walk(node):
        if (
            isinstance(n, ast.For | ast.comprehension)
            and isinstance(n.target, ast.Name)
            and isinstance(n.iter, ast.Tuple | ast.List)
        ):
            for e in n.iter.elts:
                if isinstance(e, ast.Constant) and isinstance(e.value, str):
                    loops[n.target.id].add(e.value)

    for n in ast.walk(node):
        if isinstance(n, ast.Attribute) and is_ns(n.value) and isinstance(n.ctx, ast.Load):
            reads.add(n.attr)
        elif isinstance(n, ast.Call):
            name = n.func.id if isinstance(n.func, ast.Name) else None
            if name in ("getattr", "hasattr") and len(n.args) >= 2 and is_ns(n.args[0]):
                if isinstance(n.args[1], ast.Constant):
                    reads.add(n.args[1].value)
                elif isinstance(n.args[1], ast.Name):
                    reads |= loops.get(n.args[1].id, set())
                continue
            if name == "vars" and n.args and is_ns(n.args[0]):
                reads.add(ALL)
                continue
            for i, a in enumerate(n.args):
                if is_ns(a):
                    calls.append((n, i, None))
            for k in n.keywords:
                if is_ns(k.value) and k.arg is not None:
                    calls.append((n, 0, k.arg))
    return reads, calls
