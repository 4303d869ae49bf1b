"""Build Rigfit's Linux package: the PyInstaller one-folder app, then a .deb around it.

    python packaging/build_linux.py            (what `make package` runs, in the project's venv)

Output, in dist/: ``rigfit_<version>_<arch>.deb`` and ``rigfit-linux.json`` (what was built from what,
sizes, timings). The .deb installs the app to /opt/rigfit, ``rigfit`` to /usr/bin (a link), the
desktop entry and the SVG icon; its Depends list the system libraries the app links to
(packaging/linux_deps.py).

A build is reused when nothing that goes into it changed: the files of app/, resources/ and
packaging/, pyproject.toml, and every installed distribution of the build environment (name,
version and the hash of its RECORD, so a CUDA rebuild of the same llama-cpp-python version counts as
a change). ``--force`` builds anyway.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
sys.path.insert(0, str(PACKAGING))

from linux_deps import SYSTEM_LIBRARIES, depends_for  # noqa: E402

PACKAGE = "rigfit"
INSTALL_DIR = "opt/rigfit"
MAINTAINER = "Rigfit engineers <rigfit@users.noreply.github.com>"
HOMEPAGE = "https://github.com/rigfit/rigfit"
# Libraries of the NVIDIA driver: on the user's system whenever a GPU is, never a package dependency
# (users install the driver from their distribution, NVIDIA's installer or a vendor repository).
DRIVER_LIBRARIES = frozenset({"libcuda.so.1", "libnvidia-ml.so.1"})
# zstd level 9: 152 MB in 6-12 s here, against xz's 139 MB in 171 s (the GGUF and the native libraries
# barely compress). Every system the package runs on (glibc >= 2.36: Debian 12, Ubuntu 23.04 and
# newer) has a dpkg that reads zstd (>= 1.21.18). A release may still pass --compression xz.
COMPRESSIONS = {"zstd": "9", "xz": "6", "gzip": "9", "none": "0"}
FINGERPRINT_SOURCES = ("app", "resources", "packaging", "pyproject.toml")
DESCRIPTION = """\
plan, split and run local LLMs across several GPUs
 Rigfit detects your GPUs, PCIe links and NVLink, predicts per-GPU memory
 placement exactly as llama.cpp will place a model, lets you move the tensor
 split with sliders, runs the model with llama.cpp and plots live VRAM and
 temperature. It also plans rigs that do not exist yet.
 .
 The package bundles Python, Qt (PySide6-Essentials), llama.cpp (through
 llama-cpp-python) and the SmolLM2-135M-Instruct demo model."""


class BuildError(Exception):
    """A build step failed; the message says which and why."""


def say(text: str) -> None:
    print(f"build_linux: {text}", flush=True)


# -- inputs ----------------------------------------------------------------------------------------


def app_version() -> str:
    text = (ROOT / "app" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M)
    if not match:
        raise BuildError("app/__init__.py has no __version__")
    return match.group(1)


def deb_architecture() -> str:
    try:
        out = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _source_files() -> list[Path]:
    files: list[Path] = []
    for name in FINGERPRINT_SOURCES:
        path = ROOT / name
        if path.is_file():
            files.append(path)
            continue
        for f in path.rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts and f.suffix not in (".pyc", ".md"):
                files.append(f)
    return sorted(files)


def fingerprint(compression: str) -> str:
    """A hash of everything the package is built from (see the module docstring)."""
    h = hashlib.sha256()
    h.update(f"{sys.version}|{platform.platform()}|{platform.libc_ver()}|{compression}\n".encode())
    for f in _source_files():
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    dists = []
    for dist in importlib.metadata.distributions():
        record = dist.read_text("RECORD") or ""
        name = dist.metadata["Name"] or "?"
        dists.append(f"{name.lower()}=={dist.version}:{hashlib.sha256(record.encode()).hexdigest()}")
    for line in sorted(dists):
        h.update(line.encode() + b"\n")
    return h.hexdigest()


def preflight() -> None:
    if not sys.platform.startswith("linux"):
        raise BuildError("the .deb is built on Linux (see packaging/README.md for Windows and macOS)")
    if shutil.which("dpkg-deb") is None:
        raise BuildError("dpkg-deb is missing (Debian/Ubuntu: apt-get install dpkg)")
    try:
        importlib.metadata.version("pyinstaller")
    except importlib.metadata.PackageNotFoundError:
        raise BuildError(
            "PyInstaller is not installed in this environment: run 'make package', or "
            "pip install -e '.[package]' first"
        ) from None


# -- ELF ---------------------------------------------------------------------------------------------
# Why a reader of our own: readelf needs binutils, which a build machine may lack; ldd lists the
# transitive closure and runs the loader; pyelftools is not a dependency. DT_NEEDED is all we need.


def elf_needed(path: Path) -> list[str] | None:
    """The DT_NEEDED names of an ELF shared object or executable; ``None`` when it is not ELF."""
    with path.open("rb") as f:
        if f.read(4) != b"\x7fELF":
            return None
        f.seek(0)
        data = f.read()
    is64, order = data[4] == 2, "<" if data[5] == 1 else ">"
    if is64:
        (phoff,) = struct.unpack_from(order + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 0x36)
    else:
        (phoff,) = struct.unpack_from(order + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 0x2A)
    loads: list[tuple[int, int, int]] = []
    dynamic: tuple[int, int] | None = None
    for i in range(phnum):
        at = phoff + i * phentsize
        if is64:
            p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(
                order + "IIQQQQ", data, at
            )
        else:
            p_type, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(order + "IIIII", data, at)
        if p_type == 1:  # PT_LOAD
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 2:  # PT_DYNAMIC
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return []
    entry_format, entry_size = (order + "qQ", 16) if is64 else (order + "iI", 8)
    needed: list[int] = []
    strtab_vaddr: int | None = None
    for at in range(dynamic[0], dynamic[0] + dynamic[1], entry_size):
        tag, value = struct.unpack_from(entry_format, data, at)
        if tag == 0:  # DT_NULL
            break
        if tag == 1:  # DT_NEEDED
            needed.append(value)
        elif tag == 5:  # DT_STRTAB (a virtual address)
            strtab_vaddr = value
    if not needed or strtab_vaddr is None:
        return []
    strtab = next(
        (off + strtab_vaddr - va for va, off, size in loads if va <= strtab_vaddr < va + size), None
    )
    if strtab is None:
        raise BuildError(f"{path}: the dynamic string table is outside every loaded segment")
    return [data[strtab + o : data.index(b"\0", strtab + o)].decode() for o in needed]


def check_libraries(bundle: Path) -> set[str]:
    """Every library a bundled binary links to must be bundled, a listed system library, or the
    driver's. Returns the system sonames used; raises with the list of uncovered ones."""
    names = {p.name for p in bundle.rglob("*") if p.is_file() or p.is_symlink()}
    system: set[str] = set()
    uncovered: dict[str, str] = {}
    for path in bundle.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        needed = elf_needed(path)
        for soname in needed or ():
            if soname in names or soname in DRIVER_LIBRARIES:
                continue
            if soname in SYSTEM_LIBRARIES:
                system.add(soname)
            else:
                uncovered.setdefault(soname, str(path.relative_to(bundle)))
    if uncovered:
        listing = ", ".join(f"{k} (needed by {v})" for k, v in sorted(uncovered.items()))
        raise BuildError(f"libraries neither bundled nor in packaging/linux_deps.py: {listing}")
    return system


# -- steps -------------------------------------------------------------------------------------------


def run_pyinstaller(work: Path, root: Path) -> Path:
    """The one-folder app, built straight into the package tree (``<root>/opt/rigfit``)."""
    log = work / "pyinstaller.log"
    work.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "PyInstaller",
        "--noconfirm",
        "--log-level",
        "WARN",
        "--distpath",
        str(root / Path(INSTALL_DIR).parent),
        "--workpath",
        str(work / "pyinstaller"),
        str(PACKAGING / "rigfit.spec"),
    ]
    say("PyInstaller: " + " ".join(cmd[3:]))
    with log.open("w") as out:
        code = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise BuildError(f"PyInstaller failed (exit code {code}); the end of {log}:\n{tail}")
    app = root / INSTALL_DIR
    if not (app / PACKAGE).is_file():
        raise BuildError(f"PyInstaller finished but {app / PACKAGE} is missing")
    return app


def strip_debug_info(app: Path) -> None:
    """libpython from pyenv or a source build carries ~20 MB of debug info; nothing else here does."""
    strip = shutil.which("strip")
    if strip is None:
        return
    for lib in (app / "_internal").glob("libpython*.so*"):
        if not lib.is_symlink():
            subprocess.run([strip, "--strip-debug", str(lib)], check=True)


def tree_size_bytes(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        if p.is_symlink():
            continue
        if p.is_file():
            total += p.stat().st_size
    return total


def stage_files(root: Path) -> None:
    """Everything but the app itself: the command link, the desktop entry, the icon, the doc."""
    bin_dir = root / "usr" / "bin"
    bin_dir.mkdir(parents=True)
    # Relative, so the link also works in a tree unpacked with dpkg-deb -x (the packaging test runs
    # the app through it exactly as a user's shell would).
    (bin_dir / PACKAGE).symlink_to(Path("..", "..", INSTALL_DIR, PACKAGE))
    apps = root / "usr" / "share" / "applications"
    apps.mkdir(parents=True)
    shutil.copy2(ROOT / "resources" / "rigfit.desktop", apps / "rigfit.desktop")
    icons = root / "usr" / "share" / "icons" / "hicolor" / "scalable" / "apps"
    icons.mkdir(parents=True)
    shutil.copy2(ROOT / "resources" / "icons" / "rigfit.svg", icons / "rigfit.svg")
    doc = root / "usr" / "share" / "doc" / PACKAGE
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(
        "Rigfit: MIT license.\n\n"
        "Bundled in /opt/rigfit, each under its own license: CPython (PSF License), Qt 6 and PySide6\n"
        "(LGPL-3.0), llama.cpp and llama-cpp-python (MIT), numpy and OpenBLAS (BSD-3-Clause),\n"
        "pyqtgraph (MIT), nvidia-ml-py (BSD-3-Clause), psutil (BSD-3-Clause), gguf (MIT),\n"
        "platformdirs (MIT), jinja2 (BSD-3-Clause), and the SmolLM2-135M-Instruct model\n"
        "(Apache-2.0, HuggingFaceTB).\n",
        encoding="utf-8",
    )


def write_control(root: Path, version: str, arch: str, depends: list[str]) -> int:
    """DEBIAN/control; returns the Installed-Size in KiB (what dpkg and apt report)."""
    installed_kib = (tree_size_bytes(root) + 1023) // 1024
    control = root / "DEBIAN" / "control"
    control.parent.mkdir(parents=True)
    control.write_text(
        f"Package: {PACKAGE}\n"
        f"Version: {version}\n"
        f"Architecture: {arch}\n"
        f"Maintainer: {MAINTAINER}\n"
        f"Installed-Size: {installed_kib}\n"
        f"Depends: {', '.join(depends)}\n"
        "Section: utils\n"
        "Priority: optional\n"
        f"Homepage: {HOMEPAGE}\n"
        f"Description: {DESCRIPTION}\n",
        encoding="utf-8",
    )
    return installed_kib


def normalize_permissions(root: Path) -> None:
    """0755 folders and executables, 0644 other files: what dpkg expects, whatever the umask was."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        else:
            executable = path.stat().st_mode & 0o111
            path.chmod(0o755 if executable else 0o644)


def build_deb(root: Path, out: Path, compression: str) -> None:
    cmd = ["dpkg-deb", "--root-owner-group", f"-Z{compression}", f"-z{COMPRESSIONS[compression]}"]
    if compression in ("xz", "zstd"):
        # All cores: dpkg-deb compresses in threads when asked to (dpkg >= 1.21).
        cmd.append("--threads-max=0")
    cmd += ["--build", str(root), str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 and "--threads-max" in " ".join(cmd):
        cmd.remove("--threads-max=0")  # older dpkg-deb: no such option
        result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"dpkg-deb failed: {result.stderr.strip() or result.stdout.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build Rigfit's Linux package (.deb) into dist/.")
    parser.add_argument(
        "--dist", type=Path, default=ROOT / "dist", help="where the .deb goes (default dist/)"
    )
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "linux", help="build folder")
    parser.add_argument(
        "--compression", choices=tuple(COMPRESSIONS), default="zstd", help="of the .deb (default zstd)"
    )
    parser.add_argument("--force", action="store_true", help="build even when an identical build exists")
    args = parser.parse_args(argv)
    try:
        preflight()
        version, arch = app_version(), deb_architecture()
        deb = args.dist / f"{PACKAGE}_{version}_{arch}.deb"
        manifest = args.dist / "rigfit-linux.json"
        started = time.monotonic()
        key = fingerprint(args.compression)
        if not args.force and deb.is_file() and manifest.is_file():
            previous = json.loads(manifest.read_text(encoding="utf-8"))
            if previous.get("fingerprint") == key and previous.get("deb") == deb.name:
                say(f"reusing {deb} (built from the same sources and environment; --force rebuilds)")
                return 0
        root = args.work / "root"
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        t0 = time.monotonic()
        app = run_pyinstaller(args.work, root)
        pyinstaller_s = time.monotonic() - t0
        strip_debug_info(app)
        system = check_libraries(app)
        libc = platform.libc_ver()[1] or None
        depends = depends_for(system, libc_floor=libc)
        stage_files(root)
        normalize_permissions(root)
        installed_kib = write_control(root, version, arch, depends)
        args.dist.mkdir(parents=True, exist_ok=True)
        deb.unlink(missing_ok=True)
        t0 = time.monotonic()
        say(f"dpkg-deb: {deb.name} ({args.compression})")
        build_deb(root, deb, args.compression)
        deb_s = time.monotonic() - t0
        info = {
            "fingerprint": key,
            "deb": deb.name,
            "version": version,
            "architecture": arch,
            "compression": args.compression,
            "deb_bytes": deb.stat().st_size,
            "installed_kib": installed_kib,
            "app_bytes": tree_size_bytes(app),
            "depends": depends,
            "pyinstaller_s": round(pyinstaller_s, 1),
            "dpkg_deb_s": round(deb_s, 1),
            "total_s": round(time.monotonic() - started, 1),
            "llama_cpp_gpu": any((app / "_internal" / "llama_cpp" / "lib").glob("libggml-cuda*")),
        }
        manifest.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    except BuildError as exc:
        print(f"build_linux: {exc}", file=sys.stderr)
        return 1
    say(
        f"{deb}: {info['deb_bytes'] / 1e6:.1f} MB, installs {installed_kib / 1024:.0f} MiB; "
        f"PyInstaller {pyinstaller_s:.0f} s, dpkg-deb {deb_s:.0f} s, total {info['total_s']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
