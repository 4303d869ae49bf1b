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


def llama_cpp_info() -> dict[str, object]:
    """llama-cpp-python's version and whether it was built with GPU offload (CUDA)."""
    try:
        import llama_cpp
    except Exception as exc:
        return {"version": None, "gpu_offload": False, "error": str(exc)}
    try:
        gpu = bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:
        gpu = False
    return {"version": getattr(llama_cpp, "__version__", None), "gpu_offload": gpu}


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
    llama_text = "not installed"
    if llama.get("version"):
        llama_text = f"{llama['version']} ({'CUDA' if llama.get('gpu_offload') else 'CPU only'})"
    lines = [
        f"rigfit {info['rigfit']}",
        f"Python {info['python']}",
        f"Qt {info['qt'] or 'not available'} (PySide6 {info['pyside6'] or 'not installed'})",
        f"pyqtgraph {info['pyqtgraph'] or 'not installed'}",
        f"llama-cpp-python {llama_text}",
        f"NVML {info['nvml'] or 'not found'}" + (f", driver {info['driver']}" if info["driver"] else ""),
    ]
    return "\n".join(lines)
