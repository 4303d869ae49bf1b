"""Test helpers: a Qt test must leave no timer running, no pool or Qt thread working, no thread behind.

Two ways in:

* :class:`LeakGuard` runs around every test that uses Qt (``tests/conftest.py`` starts it for each
  test that asks for ``qtbot`` or ``qapp``), as napari's fixtures do: while the test runs it notes
  every ``QTimer.start``, ``QTimer.singleShot``, ``QThread.start``, ``QThreadPool.start`` and Python
  thread; afterwards it fails the test on a timer still active, a single shot still pending, a thread
  still running, naming where each was started. What it finds is stopped, so the next test starts
  clean.
* :func:`assert_quiet` checks, at a point a test chooses, every QThreadPool and QTimer reachable from
  the given objects and from the application's top-level widgets.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import shiboken6
from PySide6 import QtCore, QtWidgets

_ROOT = str(Path(__file__).resolve().parents[2])
_HERE = str(Path(__file__).resolve())
POOL_GRACE_MS = 10000  # a pool task or thread that ends within 10 s is slow, not left behind


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
        pool.waitForDone(POOL_GRACE_MS)
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


def _caller() -> str:
    """Where the project's code started something: the innermost frame under the repository."""
    frame = sys._getframe(2)
    outer = f"{frame.f_code.co_filename}:{frame.f_lineno}"
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(_ROOT) and name != _HERE and "/.venv/" not in name:
            return f"{Path(name).relative_to(_ROOT)}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return outer


def _alive(obj: QtCore.QObject | None) -> bool:
    return obj is not None and shiboken6.isValid(obj)


class LeakGuard:
    """Notes what a test starts (:meth:`start`), then reports what is still running (:meth:`finish`)."""

    def __init__(self, grace_ms: int = POOL_GRACE_MS) -> None:
        self.grace_ms = grace_ms
        self._timers: weakref.WeakKeyDictionary[QtCore.QTimer, str] = weakref.WeakKeyDictionary()
        self._shots: list[tuple[list[bool], weakref.ReferenceType[QtCore.QObject] | None, str]] = []
        self._threads: weakref.WeakKeyDictionary[QtCore.QThread, str] = weakref.WeakKeyDictionary()
        self._pools: weakref.WeakKeyDictionary[QtCore.QThreadPool, str] = weakref.WeakKeyDictionary()
        self._py_threads_before: set[threading.Thread] = set()
        self._undo: list[Callable[[], None]] = []

    def _patch(self, owner: type, name: str, replacement: Any) -> None:
        original = owner.__dict__[name] if name in owner.__dict__ else getattr(owner, name)
        setattr(owner, name, replacement)
        self._undo.append(lambda: setattr(owner, name, original))

    def start(self) -> None:
        timer_start = QtCore.QTimer.start
        single_shot = QtCore.QTimer.singleShot
        thread_start = QtCore.QThread.start
        pool_start = QtCore.QThreadPool.start
        timers, shots, threads, pools = self._timers, self._shots, self._threads, self._pools

        def start_timer(timer: QtCore.QTimer, *args: Any) -> None:
            timers[timer] = _caller()
            timer_start(timer, *args)

        def shot(*args: Any) -> None:
            # The callable is the last argument; a receiver (context object) cancels the shot when it
            # is deleted, so a pending shot of a deleted receiver is not left behind.
            target = args[-1]
            if not callable(target):
                single_shot(*args)
                return
            fired = [False]

            def run(*a: Any) -> Any:
                fired[0] = True
                return target(*a)

            receiver = next((a for a in args[1:-1] if isinstance(a, QtCore.QObject)), None)
            shots.append((fired, weakref.ref(receiver) if receiver is not None else None, _caller()))
            single_shot(*args[:-1], run)

        def start_thread(thread: QtCore.QThread, *args: Any) -> None:
            threads[thread] = _caller()
            thread_start(thread, *args)

        def start_in_pool(pool: QtCore.QThreadPool, *args: Any) -> None:
            pools.setdefault(pool, _caller())
            pool_start(pool, *args)

        self._patch(QtCore.QTimer, "start", start_timer)
        self._patch(QtCore.QTimer, "singleShot", staticmethod(shot))
        self._patch(QtCore.QThread, "start", start_thread)
        self._patch(QtCore.QThreadPool, "start", start_in_pool)
        self._py_threads_before = set(threading.enumerate())

    def finish(self) -> list[str]:
        """Undo the patches and return what was left running (each one is stopped)."""
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        # Widgets pytest-qt closed are deleted now: their timers and single shots go with them.
        QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete.value)
        problems: list[str] = []
        for timer, where in list(self._timers.items()):
            if _alive(timer) and timer.isActive():
                problems.append(
                    f"QTimer {timer.objectName() or ''} started at {where} is still active".replace("  ", " ")
                )
                timer.stop()
        for fired, receiver, where in self._shots:
            target = receiver() if receiver is not None else None
            if not fired[0] and (receiver is None or _alive(target)):
                problems.append(f"QTimer.singleShot at {where} has not fired")
        for thread, where in list(self._threads.items()):
            if _alive(thread) and thread.isRunning():
                problems.append(f"QThread started at {where} is still running")
                thread.quit()
                thread.wait(2000)
        for pool, where in list(self._pools.items()):
            if _alive(pool) and not pool.waitForDone(self.grace_ms):
                problems.append(f"QThreadPool used at {where} has {pool.activeThreadCount()} busy thread(s)")
        for thread in set(threading.enumerate()) - self._py_threads_before:
            if isinstance(thread, threading._DummyThread):
                # A pool thread that ran Python code which asked for the current thread (starting or
                # joining a thread does): Python's stand-in cannot be joined; the pool check covers it.
                continue
            thread.join(self.grace_ms / 1000)
            if thread.is_alive():
                problems.append(f"thread {thread.name!r} is still running")
        return problems


__all__ = ["LeakGuard", "active_timers", "assert_quiet", "busy_pools"]
