"""Dependencies point one way (bot → paper, guards; paper → guards) and guards/ stays pure."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ALLOWED = {"guards": set(), "paper": {"guards"}, "bot": {"guards", "paper"}}
IMPURE = {
    "asyncio",
    "socket",
    "sqlite3",
    "logging",
    "structlog",
    "requests",
    "aiohttp",
    "ccxt",
    "subprocess",
    "threading",
    "time",
    "io",
    "os",
    "pathlib",
    "urllib",
    "http",
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_dependencies_point_one_way() -> None:
    bad = []
    for pkg, allowed in ALLOWED.items():
        for path in (REPO / pkg).rglob("*.py"):
            ours = imports(path) & set(ALLOWED)
            for dep in ours - allowed - {pkg}:
                bad.append(f"{path.relative_to(REPO)} imports {dep}")
    assert bad == []


def test_guards_do_no_io() -> None:
    bad = []
    for path in (REPO / "guards").rglob("*.py"):
        for mod in imports(path) & IMPURE:
            bad.append(f"{path.relative_to(REPO)} imports {mod}")
    assert bad == []


def test_every_module_has_a_docstring() -> None:
    missing = []
    for pkg in ALLOWED:
        for path in (REPO / pkg).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            if path.name != "__init__.py" and not ast.get_docstring(tree):
                missing.append(str(path.relative_to(REPO)))
    assert missing == []


# -- import graph -------------------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(packages: tuple[str, ...]) -> dict[str, Path]:
    return {_module_name(p): p for pkg in packages for p in (REPO / pkg).rglob("*.py")}


def guards_import_edges(packages: tuple[str, ...] = ("guards",)) -> dict[str, set[str]]:
    """Module → the modules of ``packages`` it imports, by static reading (TYPE_CHECKING blocks
    included).

    ``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else to ``a.b``;
    relative imports are resolved. A parent package that Python runs before a submodule is not
    an edge (every ``__init__`` that imports its own submodules would otherwise be a circle).
    """
    modules = _modules(packages)
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in modules else base)
        edges[name] = {m for m in found if m in modules and m != name}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str]:
    """One import circle as a path ``[a, b, ..., a]``, or [] when the graph has none."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return []


def test_find_cycle_finds_a_circle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(edges) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_import_graph_reads_the_real_modules() -> None:
    edges = guards_import_edges()
    assert set(edges) >= {"guards", "guards.rules", "guards.engine", "guards.rules.base"}
    assert "guards.liquidation" in edges["guards.rules.liquidation"]
    assert "guards.rules.base" in edges["guards.rules.stop_loss"]
    assert "guards.rules" in edges["guards.engine"]  # from guards.rules import REGISTRY


def test_no_import_circle_inside_guards() -> None:
    assert find_cycle(guards_import_edges()) == []


def test_no_import_circle_anywhere() -> None:
    """Not in the shell either: each module stands above everything it imports."""
    assert find_cycle(guards_import_edges(("bot", "paper", "guards"))) == []


# -- the package face ----------------------------------------------------------------------------

#: Names the shell imports today only to build the stop_loss rule by hand (reconcile); the
#: engine's ``missing_stops`` / ``protective_stop`` replace them, so the face leaves them out.
SUPERSEDED = {"StopLoss", "RuleEnv", "DayClock"}


def shell_guards_imports() -> list[tuple[str, str, str]]:
    """(file, module, name) for every import of a ``guards`` module in bot/ and paper/."""
    found = []
    for pkg in ("bot", "paper"):
        for path in sorted((REPO / pkg).rglob("*.py")):
            rel = str(path.relative_to(REPO))
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    if node.module.split(".")[0] == "guards":
                        found.extend((rel, node.module, a.name) for a in node.names)
                elif isinstance(node, ast.Import):
                    found.extend(
                        (rel, a.name, "") for a in node.names if a.name.split(".")[0] == "guards"
                    )
    return found


def test_the_package_exports_what_the_shell_uses() -> None:
    import guards

    exported = set(guards.__all__)
    assert all(hasattr(guards, name) for name in exported)
    wanted = {name for _, _, name in shell_guards_imports() if name} - SUPERSEDED
    assert wanted, "the shell imports nothing from guards?"
    assert sorted(wanted - exported) == []
    new_calls = ("protective_stop", "missing_stops", "liquidation_price")
    assert all(callable(getattr(guards.GuardEngine, call)) for call in new_calls)


def test_the_package_face_is_the_submodules_objects() -> None:
    import importlib

    import guards

    for _, module, name in shell_guards_imports():
        if name and name not in SUPERSEDED:
            assert getattr(guards, name) is getattr(importlib.import_module(module), name)


def test_shell_imports_only_the_package() -> None:
    deep = sorted(
        {f"{rel}: {module}" for rel, module, _ in shell_guards_imports() if module != "guards"}
    )
    assert deep == []
