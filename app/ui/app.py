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


def set_app_identity(app: object) -> None:
    """Names (QSettings use them) and the window icon, the same in the window and in ``--self-test``."""
    from PySide6 import QtGui, QtWidgets

    from app.hardware.nvml import resources_dir

    assert isinstance(app, QtWidgets.QApplication)
    # QSettings use these: one "Rigfit" organisation and application everywhere.
    app.setApplicationName("Rigfit")
    app.setOrganizationName("Rigfit")
    app.setApplicationDisplayName("Rigfit")
    # Wayland compositors find the icon through the desktop entry's name (resources/rigfit.desktop).
    app.setDesktopFileName("rigfit")
    app.setWindowIcon(QtGui.QIcon(str(resources_dir() / "icons" / "rigfit.svg")))


SCREENSHOT_TABS: tuple[str, ...] = ("hardware", "fit", "split", "run", "monitor")
SCREENSHOT_TIMEOUT_S = 60.0  # detection plus the first fit table (the catalog warm-up takes ~2 s)


def _application() -> object:
    from PySide6 import QtCore, QtGui, QtWidgets

    existing = QtWidgets.QApplication.instance()
    if isinstance(existing, QtWidgets.QApplication):
        app = existing
    else:
        QtGui.QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
            QtCore.Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
        )
        app = QtWidgets.QApplication([sys.argv[0] if sys.argv else "rigfit"])
    set_app_identity(app)
    return app


def build_window(args: argparse.Namespace) -> tuple[object, object]:
    """The application and the main window for ``args`` (not shown yet).

    Raises :class:`~app.core.errors.RigfitError` for a bad ``--rig``. A screenshot starts from a
    clean slate: it neither reads nor writes the user's remembered settings.
    """
    planned = None
    expr = getattr(args, "gui_rig", None)
    if expr:
        from app.hardware.catalog import parse_rig_expression

        planned = parse_rig_expression(expr)
    app = _application()
    from app.ui.main_window import PREFERRED_SIZE, MainWindow
    from app.ui.settings_store import SettingsStore

    screenshot = bool(getattr(args, "screenshot", None))
    store = SettingsStore.memory() if screenshot else None
    window = MainWindow(planned_rig=planned, store=store, restore=not screenshot)
    if screenshot:
        # Rendered offscreen, whose "screen" is small: the picture has the window's preferred size.
        window.resize(*PREFERRED_SIZE)
    return app, window


def run_gui(args: argparse.Namespace) -> int:
    """Create the application, show the main window (detection runs off the GUI thread), run."""
    screenshot = getattr(args, "screenshot", None)
    if screenshot and not has_display():
        # A screenshot needs no screen: render offscreen.
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    if not has_display():
        print(NO_DISPLAY_MESSAGE, file=sys.stderr)
        return EXIT_USAGE
    from app.ui.xcb_libs import missing_message, missing_xcb_libraries, uses_xcb

    missing = missing_xcb_libraries() if uses_xcb() else []
    if missing:
        # Qt would abort with a message that blames libxcb-cursor0 whatever is missing.
        print(missing_message(missing), file=sys.stderr)
        return EXIT_FAILED
    tab = getattr(args, "tab", None)
    if tab is not None and tab not in SCREENSHOT_TABS:
        print(f"rigfit: unknown tab '{tab}' (use one of {', '.join(SCREENSHOT_TABS)})", file=sys.stderr)
        return EXIT_USAGE

    from app.core.errors import RigfitError

    try:
        app, window = build_window(args)
    except RigfitError as exc:
        print(f"rigfit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from PySide6 import QtCore, QtWidgets

    from app.ui.main_window import MainWindow

    assert isinstance(app, QtWidgets.QApplication) and isinstance(window, MainWindow)
    model = getattr(args, "gui_model", None)
    if screenshot and not model:
        model = "demo"  # something to show on the Split and Run tabs
    if model:
        window.load_model(model, getattr(args, "gui_quant", None))
    if tab:
        window.show_tab(tab)
    if not screenshot:
        _fit_to_screen(window)
    window.show()
    # Detection starts once the window is on screen: its import and NVML work must not delay the first paint.
    QtCore.QTimer.singleShot(0, window, window.start_detection)
    if screenshot:
        return _screenshot(app, window, Path(screenshot), tab)
    return int(app.exec())


def _fit_to_screen(window: object) -> None:
    """Shrink the window to the screen's free area: its default size (1280x860) ran off the bottom of a
    1280x720 screen, hiding the status bar (where Downloads opens) and the Fit tab's legend."""
    from PySide6 import QtWidgets

    assert isinstance(window, QtWidgets.QWidget)
    screen = window.screen() or QtWidgets.QApplication.primaryScreen()
    if screen is None:
        return
    free = screen.availableGeometry()
    # The window manager's frame (title bar, borders) is not known before the first show: keep room.
    width, height = min(window.width(), free.width() - 8), min(window.height(), free.height() - 40)
    if (width, height) != (window.width(), window.height()):
        window.resize(max(width, 640), max(height, 480))


def wait_until_settled(window: object, timeout_s: float = SCREENSHOT_TIMEOUT_S) -> bool:
    """Run the event loop until detection has finished and no background work is left (the fit
    table, a model being read), or ``timeout_s`` passed; True when everything settled."""
    import time

    from PySide6 import QtCore, QtWidgets

    from app.ui.main_window import MainWindow

    assert isinstance(window, MainWindow)
    deadline = time.monotonic() + timeout_s
    loop = QtCore.QEventLoop()

    def settled() -> bool:
        return window.detection_done and not window.busy

    while not settled() and time.monotonic() < deadline:
        # Wake up on every finished task, and at least every 50 ms (the detection starts on a timer).
        loop.processEvents(QtCore.QEventLoop.ProcessEventsFlag.WaitForMoreEvents, 50)
    for _ in range(5):
        QtWidgets.QApplication.processEvents()
    return settled()


def _screenshot(app: object, window: object, path: Path, tab: str | None = None) -> int:
    from PySide6 import QtWidgets

    from app.ui.main_window import MainWindow

    assert isinstance(window, MainWindow)
    if not wait_until_settled(window):
        print(
            "rigfit: background work did not finish in time; the screenshot may be incomplete",
            file=sys.stderr,
        )
    if tab:
        window.show_tab(tab)
        wait_until_settled(window, 10.0)
    for _ in range(3):
        QtWidgets.QApplication.processEvents()
    pixmap = window.grab()
    window.close()
    from app.core.files import os_problem, show_path

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"rigfit: cannot write the screenshot to {show_path(path)}: {os_problem(exc)}", file=sys.stderr)
        return EXIT_USAGE
    if not pixmap.save(str(path)):
        print(f"rigfit: could not write the screenshot to {show_path(path)}", file=sys.stderr)
        return EXIT_FAILED
    print(f"screenshot saved to {path}")
    return EXIT_OK
