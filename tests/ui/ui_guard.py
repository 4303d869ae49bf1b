"""Test helper: a widget test must leave no pool thread working and no timer running behind it.

:func:`assert_quiet` checks every QThreadPool and QTimer reachable from the given objects and from the
application's top-level widgets (napari fails a test that leaves a QThread or QTimer running;
Rigfit's window tests do the same).
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6 import QtCore, QtWidgets


def _objects(roots: Iterable[QtCore.QObject]) -> list[QtCore.QObject]:
    seen: list[QtCore.QObject] = list(roots)
    app = QtWidgets.QApplication.instance()
    if isinstance(app, QtWidgets.QApplication):
        seen += list(app.topLevelWidgets())
    return seen


def busy_pools(roots: Iterable[QtCore.QObject]) -> list[str]:
    out = []
    pools = [QtCore.QThreadPool.globalInstance()]
    for obj in _objects(roots):
        pools += obj.findChildren(QtCore.QThreadPool)
        if isinstance(obj, QtCore.QThreadPool):
            pools.append(obj)
    for pool in pools:
        pool.waitForDone(10000)  # a task that finishes within 10 s is not a leak, just slow
        if pool.activeThreadCount():
            out.append(f"{pool.objectName() or pool!r}: {pool.activeThreadCount()} busy thread(s)")
    return out


def active_timers(roots: Iterable[QtCore.QObject]) -> list[str]:
    out = []
    for obj in _objects(roots):
        for timer in obj.findChildren(QtCore.QTimer):
            if timer.isActive():
                out.append(f"{timer.objectName() or 'timer'} under {type(obj).__name__}")
    return out


def assert_quiet(*roots: QtCore.QObject) -> None:
    """Fail when a pool thread is still working or a QTimer is still active."""
    problems = busy_pools(roots) + active_timers(roots)
    assert not problems, "left running: " + "; ".join(problems)
