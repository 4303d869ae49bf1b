"""app/hub sits on app/core only, and nothing below the window imports it (the CLI commands and the
window do): the hub can change without touching the planner, and the planner runs without it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _app_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("app."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("app."))
    return found


def test_the_hub_imports_core_and_itself_only() -> None:
    offenders = [
        f"{p.relative_to(ROOT)}: {m}"
        for p in (ROOT / "app" / "hub").rglob("*.py")
        for m in _app_imports(p)
        if not m.startswith(("app.core", "app.hub")) and m != "app"
    ]
    assert not offenders


def test_core_hardware_and_runner_never_import_the_hub() -> None:
    offenders = [
        f"{p.relative_to(ROOT)}: {m}"
        for pkg in ("core", "hardware", "runner")
        for p in (ROOT / "app" / pkg).rglob("*.py")
        for m in _app_imports(p)
        if m.startswith("app.hub")
    ]
    assert not offenders
