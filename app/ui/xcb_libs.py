"""The system libraries Qt's X11 ("xcb") platform plugin loads, and a check that names the missing ones.

Without them Qt aborts the process with "Could not load the Qt platform plugin xcb", and since Qt
6.5 it blames libxcb-cursor0 whatever is missing (checked on a clean Debian 12: with only
libxcb-icccm4 absent it still says "xcb-cursor0 or libxcb-cursor0 is needed"). Rigfit checks first
and says which libraries, and which Debian packages hold them.

:data:`XCB_LIBRARIES` is the closure found with ``ldd`` on a minimal Debian 12 (debootstrap
``--variant=minbase bookworm``) for PySide6's QtCore, QtGui, QtWidgets, ``platforms/libqxcb.so``,
``libQt6XcbQpa`` and the xcb GL integrations: every library they link to that a bare system lacks.
With exactly these packages installed the window opened there (docs/packaging.md). The .deb lists
them in its Depends (packaging/linux_deps.py, which a test keeps in agreement with this table).

No Qt here: this runs before Qt is imported.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Mapping

# soname -> Debian 12 package (Ubuntu 24.04 renamed libglib2.0-0 to libglib2.0-0t64).
XCB_LIBRARIES: dict[str, str] = {
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
}


def uses_xcb(environ: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether Qt will open the window through its X11 plugin here (Linux and other X11 systems,
    unless a Wayland session or another platform plugin was chosen)."""
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    if plat.startswith(("win", "darwin")):
        return False
    chosen = env.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if chosen:
        return chosen == "xcb"
    # Qt 6 prefers Wayland in a Wayland session and X11 otherwise.
    wayland = env.get("XDG_SESSION_TYPE") == "wayland" and bool(env.get("WAYLAND_DISPLAY"))
    return bool(env.get("DISPLAY")) and not wayland


def _loads(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_xcb_libraries(loads: Callable[[str], bool] | None = None) -> list[str]:
    """The sonames of :data:`XCB_LIBRARIES` that cannot be loaded here, in table order."""
    check = loads if loads is not None else _loads
    return [soname for soname in XCB_LIBRARIES if not check(soname)]


def missing_message(missing: list[str]) -> str:
    """One line for the terminal: what is missing and the apt command that installs it."""
    packages = list(dict.fromkeys(XCB_LIBRARIES[s] for s in missing))
    return (
        f"rigfit: the window cannot open: Qt's X11 plugin needs {', '.join(missing)}, not installed here. "
        f"On Debian or Ubuntu: sudo apt install {' '.join(packages)} "
        "(or use the command line: rigfit --help)"
    )


__all__ = ["XCB_LIBRARIES", "missing_message", "missing_xcb_libraries", "uses_xcb"]
