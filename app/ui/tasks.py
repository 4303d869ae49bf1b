"""Background work for the window: run a function on a thread pool, get its result as a signal.

The GUI thread only paints and reacts; detection, GGUF reading and the fit table run here. A
:class:`TaskRunner` keeps every task it started until it reports back (so ``busy`` is honest and
the signal objects outlive the pool thread), and drops results that are stale: a task submitted
under a ``key`` makes older tasks with the same key report nothing when they finish.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6 import QtCore

from app.core.errors import RigfitError

log = logging.getLogger(__name__)


class TaskSignals(QtCore.QObject):
    finished = QtCore.Signal(object)
    failed = QtCore.Signal(str)


class Task(QtCore.QRunnable):
    """Runs ``fn()`` on a pool thread; the result (or a one-line error) comes back as a signal.

    The signals object is created on the GUI thread, so its slots run there (queued connection).
    """

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__()
        self.fn = fn
        self.signals = TaskSignals()

    def run(self) -> None:
        try:
            result = self.fn()
        except RigfitError as exc:
            self.signals.failed.emit(str(exc))
        except Exception as exc:  # a bug below the UI must not take the window down
            log.exception("background task failed")
            self.signals.failed.emit(f"{type(exc).__name__}: {exc}")
        else:
            self.signals.finished.emit(result)


class TaskRunner(QtCore.QObject):
    """Submits functions to a :class:`QThreadPool`; results come back on the GUI thread.

    ``idle`` is emitted whenever the last outstanding task has reported back (screenshots and tests
    wait for it).
    """

    idle = QtCore.Signal()

    def __init__(self, pool: QtCore.QThreadPool | None = None, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = pool if pool is not None else QtCore.QThreadPool(self)
        self._pending: set[TaskSignals] = set()
        self._generation: dict[str, int] = {}
        self._closed = False

    @property
    def busy(self) -> bool:
        """True while a task has not reported back (stale ones included: they still hold a thread)."""
        return bool(self._pending)

    def pending(self) -> int:
        return len(self._pending)

    def submit(
        self,
        fn: Callable[[], Any],
        done: Callable[[Any], None],
        failed: Callable[[str], None] | None = None,
        key: str | None = None,
    ) -> None:
        """Run ``fn`` on the pool; call ``done(result)`` or ``failed(message)`` on the GUI thread.

        With a ``key``, only the newest task of that key reports: an older one's result is dropped
        (a fit table for the rig the user just left is worth nothing).
        """
        if self._closed:
            return
        generation = 0
        if key is not None:
            generation = self._generation.get(key, 0) + 1
            self._generation[key] = generation
        task = Task(fn)
        signals = task.signals
        self._pending.add(signals)

        def current() -> bool:
            return key is None or self._generation.get(key) == generation

        def finish(result: object) -> None:
            self._pending.discard(signals)
            try:
                if current() and not self._closed:
                    done(result)
            finally:
                self._check_idle()

        def fail(message: str) -> None:
            self._pending.discard(signals)
            try:
                if current() and not self._closed:
                    if failed is not None:
                        failed(message)
                    else:
                        log.warning("background task failed: %s", message)
            finally:
                self._check_idle()

        signals.finished.connect(finish)
        signals.failed.connect(fail)
        self.pool.start(task)

    def cancel(self, key: str) -> None:
        """Drop the result of the task running under ``key`` (it still runs to its end)."""
        if key in self._generation:
            self._generation[key] += 1

    def _check_idle(self) -> None:
        if not self._pending:
            self.idle.emit()

    def wait(self, timeout_ms: int = 15000) -> bool:
        """Block until the pool's threads are done (closing the window)."""
        return bool(self.pool.waitForDone(timeout_ms))

    def shutdown(self, timeout_ms: int = 15000) -> bool:
        """Wait for the running tasks, then drop every result still on its way: the window that
        would show them is closing. Returns False when a task outlived ``timeout_ms``."""
        done = self.wait(timeout_ms)
        self._closed = True
        if done:
            self._pending.clear()
            self.idle.emit()
        return done

    @property
    def closed(self) -> bool:
        return self._closed


__all__ = ["Task", "TaskRunner", "TaskSignals"]
