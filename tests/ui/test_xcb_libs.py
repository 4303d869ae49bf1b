"""The check before the window opens: which of the libraries Qt's X11 plugin needs are missing here."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from pathlib import Path

import pytest

from app.ui import app as ui_app
from app.ui import xcb_libs
from app.ui.xcb_libs import XCB_LIBRARIES, missing_message, missing_xcb_libraries, uses_xcb


@pytest.mark.parametrize(
    ("env", "platform", "expected"),
    [
        ({"DISPLAY": ":0"}, "linux", True),
        ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb"}, "linux", True),
        ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, "linux", False),
        ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "wayland;xcb"}, "linux", False),
        ({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}, "linux", False),
        ({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "x11"}, "linux", True),
        ({}, "linux", False),
        ({"DISPLAY": ":0"}, "win32", False),
        ({"DISPLAY": ":0"}, "darwin", False),
    ],
)
def test_uses_xcb(env: dict[str, str], platform: str, expected: bool) -> None:
    assert uses_xcb(env, platform) is expected


def test_missing_libraries_are_named_with_the_packages_that_hold_them() -> None:
    absent = {"libxcb-icccm.so.4", "libxcb-keysyms.so.1"}
    missing = missing_xcb_libraries(lambda soname: soname not in absent)
    assert missing == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    message = missing_message(missing)
    assert "\n" not in message
    assert "sudo apt install libxcb-icccm4 libxcb-keysyms1 " in message
    # Two sonames of one package name it once.
    glib = missing_message(["libglib-2.0.so.0", "libgthread-2.0.so.0"])
    assert glib.count("libglib2.0-0") == 1


def test_the_table_names_every_library_qts_x11_plugin_links_to() -> None:
    # Read from the plugin itself (its ELF needed entries), so a typo in a soname or a library a new
    # Qt adds fails here, whether or not this machine has the libraries (tests run offscreen).
    spec = importlib.util.spec_from_file_location(
        "rigfit_packaging_build_linux_xcb", Path(__file__).parents[2] / "packaging" / "build_linux.py"
    )
    assert spec is not None and spec.loader is not None
    build_linux = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_linux)
    qt = Path(importlib.import_module("PySide6").__file__).parent / "Qt"
    needed: set[str] = set()
    for lib in (qt / "plugins" / "platforms" / "libqxcb.so", *(qt / "lib").glob("libQt6XcbQpa.so*")):
        needed |= set(build_linux.elf_needed(lib) or ())
    x11 = {n for n in needed if n.startswith(("libxcb", "libX11", "libxkbcommon"))}
    assert "libxcb-icccm.so.4" in x11 and "libxcb-keysyms.so.1" in x11  # the two
    assert x11 <= set(XCB_LIBRARIES), sorted(x11 - set(XCB_LIBRARIES))
    assert len(set(XCB_LIBRARIES.values())) >= 20


def test_the_window_says_what_to_install_instead_of_qts_abort(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(xcb_libs, "_loads", lambda soname: soname != "libxcb-icccm.so.4")
    monkeypatch.setattr(xcb_libs.sys, "platform", "linux")

    def no_window(_args: argparse.Namespace) -> None:
        raise AssertionError("the window must not be built when its libraries are missing")

    monkeypatch.setattr(ui_app, "build_window", no_window)
    code = ui_app.run_gui(argparse.Namespace(screenshot=None, tab=None, gui_rig=None, gui_model=None))
    assert code == ui_app.EXIT_FAILED
    err = capsys.readouterr().err.strip()
    assert err.startswith("rigfit: the window cannot open") and "libxcb-icccm4" in err
    assert len(err.splitlines()) == 1
