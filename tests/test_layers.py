"""core, hardware and runner must import without Qt: they run headless, in the CLI and on GPU servers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QT_FREE = ("core", "hardware", "runner", "hub")


def test_qt_free_layers_import_with_qt_blocked() -> None:
    script = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("PySide6", "shiboken6", "pyqtgraph", "PyQt5", "PyQt6"):
                    raise ImportError(f"Qt import blocked: {{name}}")
                return None

        sys.meta_path.insert(0, Block())
        import app
        count = 0
        for pkg in {QT_FREE!r}:
            mod = importlib.import_module("app." + pkg)
            for info in pkgutil.walk_packages(mod.__path__, "app." + pkg + "."):
                importlib.import_module(info.name)
                count += 1
        leaked = [m for m in sys.modules if m.split(".")[0] in ("PySide6", "shiboken6", "pyqtgraph")]
        assert not leaked, leaked
        print(count)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 1


def test_no_qt_import_statements_outside_ui() -> None:
    offenders = []
    for pkg in QT_FREE:
        for path in (ROOT / "app" / pkg).rglob("*.py"):
            for line in path.read_text(encoding="utf-8").splitlines():
                stripped = line.strip()
                if stripped.startswith(("import ", "from ")) and any(
                    q in stripped.split()[1] for q in ("PySide6", "pyqtgraph", "shiboken6")
                ):
                    offenders.append(f"{path.relative_to(ROOT)}: {stripped}")
    assert not offenders
