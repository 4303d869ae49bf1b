"""Keeps a test process alive on PySide6 6.12.0 with Python 3.11 (test-only; the app needs a pin).

PySide6 6.12.0 returns ``None`` from every void method (``QPainter.setPen``, ``QObject.setObjectName``,
...) and ``True`` from ``Signal.emit()`` without taking a reference, so each such call takes one
reference away from ``None`` or ``True``. Python 3.12 made both immortal, so nothing happens there;
on 3.11 the process aborts (``none_dealloc`` / ``bool_dealloc``) after a few thousand calls: a
pyqtgraph plot makes hundreds per paint, so a Monitor test run dies within seconds, and so would
the app. 6.11.3 is fine. Tests that paint plots call :func:`keep_singletons_alive`, which gives the
singletons the huge reference count 3.12 gives them;
``test_pyside_calls_keep_python_objects_alive`` (tests/ui/test_monitor_view.py) still measures the
bug, so it cannot go unnoticed.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6 import QtCore

BROKEN_REFCOUNTS = QtCore.__version__ == "6.12.0" and sys.version_info < (3, 12)
_done = False


def keep_singletons_alive() -> None:
    global _done
    if not BROKEN_REFCOUNTS or _done:
        return
    _done = True
    for value in (None, True, False):
        # ob_refcnt is a PyObject's first field in CPython 3.11.
        ctypes.c_ssize_t.from_address(id(value)).value += 1 << 40
