"""The code stays lint-clean and typed: ruff on everything, mypy strict on app/core and app/hardware."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = BIN / name
    if found.exists():
        return str(found)
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (make setup installs the dev extra)")
    return path


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def test_ruff_finds_nothing() -> None:
    out = _run(_tool("ruff"), "check", "app", "tests", "packaging")
    assert out.returncode == 0, out.stdout + out.stderr


def test_code_is_ruff_formatted() -> None:
    out = _run(_tool("ruff"), "format", "--check", "app", "tests", "packaging")
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
def test_core_and_hardware_pass_mypy_strict() -> None:
    out = _run(_tool("mypy"), "app/core", "app/hardware")
    assert out.returncode == 0, out.stdout + out.stderr
