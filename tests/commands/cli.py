"""Run ``rigfit`` as a user does, in a subprocess, for the CLI tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def rigfit(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m app ARGS`` from the project root; output captured as text, exit code not checked."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
