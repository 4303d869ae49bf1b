"""The import contract: which part of Rigfit may import which, and where Qt may appear.

Layers, left to right: core → hardware → runner → ui/commands. A package imports only packages to
its left (and itself), never one to its right or beside it. ``app/cli.py`` and ``app/__main__.py``
start everything, so they may import anything, Qt only lazily (inside a function). Every import
counts, also one inside a function: a lazy import that points the wrong way is still a dependency.

To add a package, give it a row in :data:`LAYERS` (what it may import) and say whether it may use Qt
(:data:`QT_ALLOWED`); the test fails for a package under ``app/`` without a row.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app"
QT_MODULES = ("PySide6", "shiboken6", "pyqtgraph", "PyQt5", "PyQt6")

# package (or top-level module) -> the parts of app it may import besides itself. "app" alone is the
# root package (app/__init__.py: the version), which everyone may import.
LAYERS: dict[str, frozenset[str]] = {
    "app.core": frozenset(),
    "app.hardware": frozenset({"app.core"}),
    "app.hub": frozenset({"app.core"}),  # Hugging Face hub client
    "app.runner": frozenset({"app.core", "app.hardware"}),
    "app.serve": frozenset({"app.core", "app.hardware", "app.runner"}),  # OpenAI-compatible server
    # llama.cpp's build (its backends, RPC) is read from the files app.runner.ggml knows.
    "app.versions": frozenset({"app.core", "app.hardware", "app.runner"}),
    "app.commands": frozenset(
        {"app.core", "app.hardware", "app.runner", "app.hub", "app.serve", "app.versions"}
    ),
    "app.ui": frozenset({"app.core", "app.hardware", "app.runner", "app.hub", "app.serve", "app.versions"}),
}
# Entry points: may import anything, Qt only inside functions.
ENTRY_POINTS: frozenset[str] = frozenset({"app.cli", "app.__main__"})
QT_ALLOWED: frozenset[str] = frozenset({"app.ui"})


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _owner(module: str) -> str | None:
    """The LAYERS or ENTRY_POINTS key a module belongs to (the longest matching prefix)."""
    keys = sorted(set(LAYERS) | ENTRY_POINTS, key=len, reverse=True)
    return next((k for k in keys if module == k or module.startswith(k + ".")), None)


def _imports(path: Path, name: str | None = None) -> list[tuple[str, list[str], int, bool]]:
    """(module imported, names taken from it, line, at module level) for every import in a file;
    ``name`` is the file's module name (default: from its place under the project)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    me = name if name is not None else _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    found: list[tuple[str, list[str], int, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((alias.name, [], node.lineno, id(node) in top_level))
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, module] if module else base)
            found.append((module, [a.name for a in node.names], node.lineno, id(node) in top_level))
    return found


def _app_files() -> list[Path]:
    return sorted(p for p in APP.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_part_of_app_has_a_row_in_the_contract() -> None:
    missing = sorted(
        _module_name(p) for p in _app_files() if _module_name(p) != "app" and _owner(_module_name(p)) is None
    )
    assert not missing, f"add these to LAYERS or ENTRY_POINTS in tests/test_layers.py: {missing}"


def _wrong_way(path: Path, name: str) -> list[str]:
    """The imports of a file (module ``name``) that point right of its layer, or beside it."""
    me = _owner(name)
    if me is None or me in ENTRY_POINTS:
        return []
    allowed = LAYERS[me] | {me, "app"}
    out = []
    for module, _names, line, _top in _imports(path, name):
        if module != "app" and not module.startswith("app."):
            continue
        if (_owner(module) or module) not in allowed:
            out.append(f"{path.name}:{line} ({me}) imports {module}")
    return out


def test_imports_only_point_to_the_left() -> None:
    offenders = [o for path in _app_files() for o in _wrong_way(path, _module_name(path))]
    assert not offenders, "\n".join(offenders)


def test_qt_only_in_ui_and_lazily_in_the_entry_points() -> None:
    offenders = []
    for path in _app_files():
        me = _owner(_module_name(path))
        if me in QT_ALLOWED:
            continue
        for module, _names, line, top in _imports(path):
            if module.split(".")[0] not in QT_MODULES:
                continue
            if me in ENTRY_POINTS and not top:
                continue  # lazily, inside a function: fine for the entry points
            offenders.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not offenders, "\n".join(offenders)


def test_no_module_takes_another_modules_private_names() -> None:
    # A name with a leading underscore is its module's own business: share it under a public name.
    # (app/ui is being reorganised in parallel and joins this rule once that lands.)
    offenders = []
    for path in _app_files():
        me = _module_name(path)
        if _owner(me) in QT_ALLOWED:
            continue
        for module, names, line, _top in _imports(path):
            if module == me or not (module == "app" or module.startswith("app.")):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                offenders.append(f"{path.relative_to(ROOT)}:{line} takes {', '.join(private)} from {module}")
    assert not offenders, "\n".join(offenders)


def test_the_checker_finds_a_lazy_wrong_way_import_and_resolves_relative_ones(tmp_path: Path) -> None:
    source = tmp_path / "bad.py"
    source.write_text(
        "from . import layout\n\n\ndef f():\n    from app.ui.widgets import x\n    from ..runner import client\n"
    )
    assert [(m, top) for m, _n, _l, top in _imports(source, "app.core.bad")] == [
        ("app.core", True),
        ("app.ui.widgets", False),
        ("app.runner", False),
    ]
    assert _wrong_way(source, "app.core.bad") == [
        "bad.py:5 (app.core) imports app.ui.widgets",
        "bad.py:6 (app.core) imports app.runner",
    ]
    assert _wrong_way(source, "app.ui.bad") == []  # ui may import core and runner
    assert _owner("app.core.fit.table") == "app.core" and _owner("app.cli") == "app.cli"


@pytest.mark.parametrize("layer", sorted(k for k in LAYERS if k not in QT_ALLOWED))
def test_qt_free_layers_import_with_qt_blocked(layer: str) -> None:
    if (
        not (ROOT / Path(*layer.split("."))).is_dir()
        and not (ROOT / (layer.replace(".", "/") + ".py")).is_file()
    ):
        pytest.skip(f"{layer} does not exist yet")
    script = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {QT_MODULES!r}:
                    raise ImportError(f"Qt import blocked: {{name}}")
                return None

        sys.meta_path.insert(0, Block())
        mod = importlib.import_module({layer!r})
        count = 1
        for info in pkgutil.walk_packages(getattr(mod, "__path__", []), {layer!r} + "."):
            importlib.import_module(info.name)
            count += 1
        leaked = [m for m in sys.modules if m.split(".")[0] in {QT_MODULES!r}]
        assert not leaked, leaked
        print(count)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 1
