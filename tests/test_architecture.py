"""Rules of the layout that a reviewer would otherwise have to remember."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_never_imports_web() -> None:
    offenders = [str(path.relative_to(ROOT)) for path in (ROOT / "archiver").rglob("*.py")
                 if any(name == "web" or name.startswith("web.")
                        for name in imported_modules(path))]
    assert offenders == []


def test_only_the_http_module_makes_requests() -> None:
    """Every outbound fetch goes through archiver.net (guard, caps, politeness)."""
    # cookies.py builds the urllib Request objects http.cookiejar reads; it never opens one.
    allowed = {ROOT / "archiver" / "net" / "client.py", ROOT / "archiver" / "net" / "cookies.py"}
    offenders = [str(path.relative_to(ROOT)) for path in (ROOT / "archiver").rglob("*.py")
                 if path not in allowed and imported_modules(path) & {
                     "requests", "urllib.request", "urllib3", "http.client", "httpx"}]
    assert offenders == []


Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def public_definitions(module: ast.Module) -> list[Definition]:
    """Module-level functions and classes, and the methods of public classes."""
    found: list[Definition] = []
    for node in module.body:
        if isinstance(node, Definition) and not node.name.startswith("_"):
            found.append(node)
            if isinstance(node, ast.ClassDef):
                found += [item for item in node.body if isinstance(item, Definition)
                          and not item.name.startswith("_")]
    return found


def test_public_functions_have_docstrings() -> None:
    missing = []
    for package in ("archiver", "web"):
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for node in public_definitions(ast.parse(path.read_text(encoding="utf-8"))):
                if ast.get_docstring(node) is None:
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert missing == []
