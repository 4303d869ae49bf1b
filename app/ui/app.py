"""Starting the window: ``rigfit`` with no command, ``--rig EXPR``, ``--screenshot FILE.png``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

NO_DISPLAY_MESSAGE = (
    "rigfit: no display to open the window on (DISPLAY and WAYLAND_DISPLAY are not set). "
    "Use the command line instead, e.g. 'rigfit detect' (see 'rigfit --help'), "
    "or render the window with 'rigfit --screenshot out.png'."
)


def has_display(environ: dict[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether Qt can open a window here. Only Linux (and other X11/Wayland systems) can lack one."""
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    if plat.startswith(("win", "darwin")):
        return True
    return any(env.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))


def run_gui(args: argparse.Namespace) -> int:
    """Create the application, show the main window (detection runs off the GUI thread), run."""
    screenshot = getattr(args, "screenshot", None)
    if screenshot and not has_display():
        # A screenshot needs no screen: render offscreen.
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    if not has_display():
        print(NO_DISPLAY_MESSAGE, file=sys.stderr)
        return EXIT_USAGE

    from app.core.errors import RigfitError

    planned = None
    expr = getattr(args, "gui_rig", None)
    if expr:
        from app.hardware.catalog import parse_rig_expression

        try:
            planned = parse_rig_expression(expr)
        except RigfitError as exc:
            print(f"rigfit: {exc}", file=sys.stderr)
            return EXIT_USAGE

    from PySide6 import QtCore, QtGui, QtWidgets

    from app.ui.main_window import MainWindow

    existing = QtWidgets.QApplication.instance()
    if isinstance(existing, QtWidgets.QApplication):
        app = existing
    else:
        QtGui.QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
            QtCore.Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
        )
        app = QtWidgets.QApplication([sys.argv[0] if sys.argv else "rigfit"])
    # QSettings use these: one "Rigfit" organisation and application everywhere.
    app.setApplicationName("Rigfit")
    app.setOrganizationName("Rigfit")
    app.setApplicationDisplayName("Rigfit")
    window = MainWindow(planned_rig=planned)
    window.show()
    window.start_detection()
    if screenshot:
        return _screenshot(app, window, Path(screenshot))
    return int(app.exec())


def _screenshot(app: object, window: object, path: Path) -> int:
    from PySide6 import QtCore, QtWidgets

    from app.ui.main_window import MainWindow

    assert isinstance(window, MainWindow)
    loop = QtCore.QEventLoop()
    window.detection_finished.connect(loop.quit)
    if window.busy:
        # A hung driver must not hang the screenshot; the timer is stopped so none outlives this call.
        timer = QtCore.QTimer()
        timer.setSingleShot(True)
        timer.timeout.connect(loop.quit)
        timer.start(30000)
        loop.exec()
        timer.stop()
    for _ in range(3):
        QtWidgets.QApplication.processEvents()
    pixmap = window.grab()
    window.close()
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    if not pixmap.save(str(path)):
        print(f"rigfit: could not write the screenshot to {path}", file=sys.stderr)
        return EXIT_FAILED
    print(f"screenshot saved to {path}")
    return EXIT_OK
