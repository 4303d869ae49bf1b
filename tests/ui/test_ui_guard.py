"""The leak guard every Qt test runs under finds what a test leaves running, and only that."""

from __future__ import annotations

import threading

from pytestqt.qtbot import QtBot

from PySide6 import QtCore, QtWidgets

from tests.ui.ui_guard import LeakGuard


class _Sleeper(QtCore.QRunnable):
    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release

    def run(self) -> None:
        self.release.wait(10)


def test_the_guard_names_each_kind_of_leftover(qtbot: QtBot) -> None:
    guard = LeakGuard(grace_ms=50)
    guard.start()
    owner = QtWidgets.QWidget()
    qtbot.addWidget(owner)
    timer = QtCore.QTimer(owner)
    timer.start(60_000)
    stopped = QtCore.QTimer(owner)
    stopped.start(60_000)
    stopped.stop()
    receiver = QtCore.QObject()
    QtCore.QTimer.singleShot(60_000, receiver, lambda: None)
    fired: list[bool] = []
    QtCore.QTimer.singleShot(0, lambda: fired.append(True))
    qtbot.waitUntil(lambda: bool(fired))
    pool = QtCore.QThreadPool()
    release = threading.Event()
    pool.start(_Sleeper(release))
    python_thread = threading.Thread(target=release.wait, args=(10,), name="left-behind")
    python_thread.start()

    problems = guard.finish()
    release.set()
    pool.waitForDone()
    python_thread.join()
    receiver.deleteLater()  # cancels the shot for the guard every test runs under

    text = "\n".join(problems)
    assert len(problems) == 4, text
    assert "QTimer started at tests/ui/test_ui_guard.py:" in text
    assert "singleShot at tests/ui/test_ui_guard.py" in text  # the one that fired is not reported
    assert "QThreadPool used at tests/ui/test_ui_guard.py" in text and "1 busy thread" in text
    assert "thread 'left-behind' is still running" in text
    assert not timer.isActive()  # stopped, so the next test starts clean


def test_a_single_shot_whose_receiver_is_gone_is_not_left_behind(qtbot: QtBot) -> None:
    before = (QtCore.QTimer.start, QtCore.QTimer.__dict__["singleShot"], QtCore.QThreadPool.start)
    guard = LeakGuard(grace_ms=50)
    guard.start()
    assert QtCore.QTimer.start is not before[0]
    receiver = QtCore.QObject()
    QtCore.QTimer.singleShot(60_000, receiver, lambda: None)
    receiver.deleteLater()
    assert guard.finish() == []
    # The patches are undone: what was there before is back.
    assert (QtCore.QTimer.start, QtCore.QTimer.__dict__["singleShot"], QtCore.QThreadPool.start) == before
