"""Qt's version for the version report (kept in app/ui: only this layer imports Qt)."""

from __future__ import annotations


def qt_version() -> str | None:
    """The Qt runtime's version, or ``None`` when Qt cannot be imported (missing, broken libraries)."""
    try:
        from PySide6 import QtCore
    except Exception:  # a missing or broken Qt is reported, never fatal
        return None
    return str(QtCore.qVersion())
