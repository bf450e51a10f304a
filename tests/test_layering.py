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
