"""ggml's device registry and RPC backend through ctypes: what llama-cpp-python does not bind.

llama-cpp-python binds llama.h only. ggml's registry (which devices exist, of which backend) and the
RPC backend's C API (``ggml_backend_rpc_start_server``, ``ggml_backend_rpc_add_server``) live in
``libggml.so.0``, ``libggml-base.so.0`` and ``libggml-rpc.so.0`` beside libllama.

The trap (DEVICE.md): the wheel ships ``libggml.so``, ``libggml.so.0`` and ``libggml.so.0.25.3`` as
three separate files, not links. libllama links ``libggml.so.0``; loading ``libggml.so`` maps a second
copy of ggml with its own device registry, so an RPC server registered there never reaches llama.cpp
(no error: the model just loads without it). This module loads the libraries by the names libllama
links (the same files, so the dynamic loader hands back the copy already mapped).

Only the worker and the RPC server process call into these libraries; the window and the CLI use the
file-level checks (:func:`build_backends`) that never load ggml.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.errors import RigfitError
from app.core.rules import RuleError, rpc_unavailable

MIB = 1024 * 1024

# ggml_backend_dev_type (ggml-backend.h)
_DEV_KINDS = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel", 4: "meta"}

# The names libllama links, per platform; the first that exists wins.
_SONAMES: dict[str, tuple[str, ...]] = {
    "ggml-base": ("libggml-base.so.0", "libggml-base.0.dylib", "ggml-base.dll"),
    "ggml": ("libggml.so.0", "libggml.0.dylib", "ggml.dll"),
    "ggml-rpc": ("libggml-rpc.so.0", "libggml-rpc.0.dylib", "ggml-rpc.dll"),
}

# Backends a build may hold, by the library file llama-cpp-python installs for each.
_BACKEND_FILES: dict[str, tuple[str, ...]] = {
    "CUDA": ("libggml-cuda.so", "ggml-cuda.dll", "libggml-cuda.dylib"),
    "ROCm": ("libggml-hip.so", "ggml-hip.dll"),
    "Vulkan": ("libggml-vulkan.so", "ggml-vulkan.dll", "libggml-vulkan.dylib"),
    "Metal": ("libggml-metal.so", "libggml-metal.dylib"),
    "SYCL": ("libggml-sycl.so", "ggml-sycl.dll"),
    "RPC": ("libggml-rpc.so", "ggml-rpc.dll", "libggml-rpc.dylib"),
}


def lib_dir() -> Path | None:
    """Where llama-cpp-python keeps its shared libraries, as llama_cpp itself finds them (without
    importing it): ``LLAMA_CPP_LIB_PATH``, else the package's ``lib`` folder."""
    override = os.environ.get("LLAMA_CPP_LIB_PATH")
    if override:
        return Path(override)
    try:
        spec = importlib.util.find_spec("llama_cpp")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


def build_backends(directory: Path | None = None) -> frozenset[str]:
    """The optional backends this llama-cpp-python build holds (``{"CUDA", "RPC"}``), from its files.

    A file check, so the window can say what the build can do without loading ggml (which would
    start CUDA in the window's process).
    """
    where = directory if directory is not None else lib_dir()
    if where is None or not where.is_dir():
        return frozenset()
    names = {p.name for p in where.iterdir()}
    found = set()
    for backend, files in _BACKEND_FILES.items():
        if any(n == f or n.startswith(f + ".") for f in files for n in names):
            found.add(backend)
    return frozenset(found)


def rpc_available() -> bool:
    """True when this llama-cpp-python was built with ``-DGGML_RPC=on``."""
    return "RPC" in build_backends()


@dataclass(frozen=True)
class DeviceInfo:
    """One device in ggml's registry: ``CPU``, ``CUDA0``, ``RPC0``..."""

    name: str
    description: str
    kind: str  # "cpu", "gpu", "igpu", "accel", "meta"
    registry: str  # the backend that registered it: "CPU", "CUDA", "RPC[127.0.0.1:50052]"...
    free_mib: float | None = None
    total_mib: float | None = None

    @property
    def is_rpc(self) -> bool:
        return self.registry.startswith("RPC")


class Ggml:
    """The loaded ggml libraries with the functions Rigfit calls, typed for ctypes."""

    def __init__(self, directory: Path | None = None) -> None:
        where = directory if directory is not None else lib_dir()
        if where is None:
            raise RigfitError("llama-cpp-python is not installed")
        self.dir = where
        self._libs: list[ctypes.CDLL] = []
        # Order matters only for symbol lookup; each library's own dependencies come in by soname.
        for key in ("ggml-base", "ggml", "ggml-rpc"):
            lib = self._open(key)
            if lib is not None:
                self._libs.append(lib)
        if not self._libs:
            raise RigfitError(f"ggml's libraries were not found in {where}")
        self.count = self._fn("ggml_backend_dev_count", ctypes.c_size_t, [])
        self.get = self._fn("ggml_backend_dev_get", ctypes.c_void_p, [ctypes.c_size_t])
        self.dev_name = self._fn("ggml_backend_dev_name", ctypes.c_char_p, [ctypes.c_void_p])
        self.dev_desc = self._fn("ggml_backend_dev_description", ctypes.c_char_p, [ctypes.c_void_p])
        self.dev_type = self._fn("ggml_backend_dev_type", ctypes.c_int, [ctypes.c_void_p])
        self.dev_reg = self._fn("ggml_backend_dev_backend_reg", ctypes.c_void_p, [ctypes.c_void_p])
        self.reg_name = self._fn("ggml_backend_reg_name", ctypes.c_char_p, [ctypes.c_void_p])
        self.dev_by_name = self._fn("ggml_backend_dev_by_name", ctypes.c_void_p, [ctypes.c_char_p])
        self.dev_memory = self._fn(
            "ggml_backend_dev_memory",
            None,
            [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)],
        )
        self.register = self._fn("ggml_backend_register", None, [ctypes.c_void_p])
        self.rpc_add_server = self._fn("ggml_backend_rpc_add_server", ctypes.c_void_p, [ctypes.c_char_p])
        self.rpc_start_server = self._fn(
            "ggml_backend_rpc_start_server",
            None,
            [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p],
        )

    def _open(self, key: str) -> ctypes.CDLL | None:
        for soname in _SONAMES[key]:
            path = self.dir / soname
            if path.exists():
                try:
                    return ctypes.CDLL(str(path))
                except OSError:
                    return None
        return None

    def _fn(self, name: str, restype: Any, argtypes: list[Any]) -> Callable[..., Any] | None:
        for lib in self._libs:
            try:
                f = getattr(lib, name)
            except AttributeError:
                continue
            f.restype = restype
            f.argtypes = argtypes
            return f  # type: ignore[no-any-return]
        return None

    @property
    def has_rpc(self) -> bool:
        return self.rpc_add_server is not None and self.rpc_start_server is not None

    def devices(self, memory: bool = False) -> tuple[DeviceInfo, ...]:
        """Every device in the registry, in its order. ``memory`` asks each for free/total memory:
        on CUDA that creates a context per GPU, on an RPC device it is a network round trip."""
        if not (self.count and self.get and self.dev_name and self.dev_desc and self.dev_type):
            return ()
        out = []
        for i in range(int(self.count())):
            dev = self.get(i)
            registry = ""
            if self.dev_reg and self.reg_name:
                reg = self.dev_reg(dev)
                registry = (self.reg_name(reg) or b"").decode(errors="replace") if reg else ""
            free = total = None
            if memory and self.dev_memory:
                f, t = ctypes.c_size_t(0), ctypes.c_size_t(0)
                self.dev_memory(dev, ctypes.byref(f), ctypes.byref(t))
                free, total = f.value / MIB, t.value / MIB
            out.append(
                DeviceInfo(
                    name=(self.dev_name(dev) or b"").decode(errors="replace"),
                    description=(self.dev_desc(dev) or b"").decode(errors="replace"),
                    kind=_DEV_KINDS.get(int(self.dev_type(dev)), "other"),
                    registry=registry,
                    free_mib=free,
                    total_mib=total,
                )
            )
        return tuple(out)

    def has_gpu(self) -> bool:
        """A local GPU llama.cpp can offload to (RPC devices are GPUs to ggml, but not local ones).

        ``llama_supports_gpu_offload()`` is true in every RPC build, so it cannot answer this.
        """
        return any(d.kind in ("gpu", "igpu") and not d.is_rpc for d in self.devices())

    def add_rpc_server(self, endpoint: str) -> int:
        """Register an RPC server's devices with ggml; returns how many it exposes.

        llama.cpp aborts the process when the server cannot be reached, so callers check that it
        answers first (:func:`app.runner.rpc.query_server`).
        """
        if not self.has_rpc or self.register is None:
            raise RuleError(rpc_unavailable())
        before = int(self.count()) if self.count else 0
        reg = self.rpc_add_server(endpoint.encode())
        if not reg:
            raise RigfitError(f"the RPC server {endpoint} exposes no devices")
        self.register(reg)
        return (int(self.count()) if self.count else 0) - before

    def resolve_devices(self, names: Sequence[str]) -> list[int]:
        """ggml device handles (as ints) for names such as ``CUDA0``; raises for an unknown one."""
        if self.dev_by_name is None:
            raise RigfitError("this llama.cpp build cannot look devices up by name")
        handles = []
        for name in names:
            dev = self.dev_by_name(name.encode())
            if not dev:
                known = ", ".join(d.name for d in self.devices() if not d.is_rpc) or "none"
                raise RigfitError(f"no device named '{name}' here (this machine has: {known})")
            handles.append(int(dev))
        return handles


_loaded: Ggml | None = None


def load() -> Ggml:
    """The process's one :class:`Ggml` (libraries load once; loading again returns the same copy)."""
    global _loaded
    if _loaded is None:
        _loaded = Ggml()
    return _loaded


def default_server_threads() -> int:
    """rpc-server's default for a CPU device: half the logical CPUs (hardware_concurrency / 2)."""
    return max(1, (os.cpu_count() or 2) // 2)


def platform_supported() -> bool:
    """RPC serving and querying are tested on Linux; elsewhere they may work but are not promised."""
    return sys.platform.startswith("linux")
