"""Version report for ``rigfit --version [--long]`` and the About dialog.

Qt's version is the caller's to give (the window and ``rigfit --version --long`` look it up with
:func:`app.ui.qtinfo.qt_version`): this module, like everything outside ``app/ui``, imports no Qt.
"""

from __future__ import annotations

import platform
from importlib import metadata

from app import __version__


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


_GPU_BACKENDS = ("CUDA", "ROCm", "Vulkan", "Metal", "SYCL")


def llama_cpp_info() -> dict[str, object]:
    """llama-cpp-python's version, its GPU backends and whether it has llama.cpp's RPC backend.

    Read from the build's library files: ``llama_supports_gpu_offload()`` is true in every build
    with RPC, GPU or not, and loading ggml here would start CUDA in this process.
    """
    try:
        import llama_cpp
    except Exception as exc:
        return {"version": None, "gpu_offload": False, "rpc": False, "backends": [], "error": str(exc)}
    from app.runner.ggml import build_backends

    backends = build_backends()
    gpus = [b for b in _GPU_BACKENDS if b in backends]
    return {
        "version": getattr(llama_cpp, "__version__", None),
        "gpu_offload": bool(gpus),
        "backends": gpus,
        "rpc": "RPC" in backends,
    }


def describe_llama_build(llama: dict[str, object]) -> str:
    """``0.3.36 (CUDA, RPC)``, ``0.3.36 (CPU only, no RPC)`` or ``not installed``."""
    if not llama.get("version"):
        return "not installed"
    backends = llama.get("backends")
    gpu = "/".join(str(b) for b in backends) if isinstance(backends, list) and backends else ""
    if not gpu:
        gpu = "CUDA" if llama.get("gpu_offload") else "CPU only"
    rpc = "RPC" if llama.get("rpc") else "no RPC: rigfit rpc-server and --rpc need -DGGML_RPC=on"
    return f"{llama['version']} ({gpu}, {rpc})"


def version_info(qt_version: str | None = None) -> dict[str, object]:
    """Versions of Rigfit and what it stands on; missing parts are ``None``. ``qt_version`` is the Qt
    runtime's version, when the caller has Qt."""
    info: dict[str, object] = {
        "rigfit": __version__,
        "python": platform.python_version(),
        "pyside6": _dist_version("PySide6-Essentials") or _dist_version("PySide6"),
        "qt": qt_version,
        "pyqtgraph": _dist_version("pyqtgraph"),
        "llama_cpp": llama_cpp_info(),
        "nvml": None,
        "driver": None,
    }
    try:
        from app.hardware.probe import nvml_versions

        nvml = nvml_versions()
        info["nvml"] = nvml.get("nvml")
        info["driver"] = nvml.get("driver")
    except Exception:
        pass
    return info


def describe_versions(long: bool = False, qt_version: str | None = None) -> str:
    """``rigfit X.Y.Z``; with ``long`` one line each for Python, Qt, pyqtgraph, llama.cpp and NVML."""
    if not long:
        return f"rigfit {__version__}"
    info = version_info(qt_version)
    llama = info["llama_cpp"]
    assert isinstance(llama, dict)
    llama_text = describe_llama_build(llama)
    lines = [
        f"rigfit {info['rigfit']}",
        f"Python {info['python']}",
        f"Qt {info['qt'] or 'not available'} (PySide6 {info['pyside6'] or 'not installed'})",
        f"pyqtgraph {info['pyqtgraph'] or 'not installed'}",
        f"llama-cpp-python {llama_text}",
        f"NVML {info['nvml'] or 'not found'}" + (f", driver {info['driver']}" if info["driver"] else ""),
    ]
    return "\n".join(lines)
