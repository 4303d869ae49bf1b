"""The Run tab's problem bar: a failed load or a model process that stopped, across the top of the tab.

One line in the user's words, and the log's last lines on request; never a dialog. Dismiss hides it.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6 import QtCore, QtGui, QtWidgets

from app.ui.theme import TEXT_ERROR, tint

LOG_LINES_KEPT = 400


class ProblemBar(QtWidgets.QFrame):
    """Hidden until :meth:`show_problem`."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("problemPanel")
        self.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        self.label = QtWidgets.QLabel()
        self.label.setObjectName("problemLabel")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        tint(self.label, TEXT_ERROR)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.label, 1)
        self.dismiss_button = QtWidgets.QToolButton()
        self.dismiss_button.setText("Dismiss")
        self.dismiss_button.setAutoRaise(True)
        self.dismiss_button.clicked.connect(self.hide)
        row.addWidget(self.dismiss_button, 0, QtCore.Qt.AlignmentFlag.AlignTop)
        layout.addLayout(row)
        self.log_toggle = QtWidgets.QToolButton()
        self.log_toggle.setText("Show the log's last lines")
        self.log_toggle.setCheckable(True)
        self.log_toggle.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.log_toggle.setArrowType(QtCore.Qt.ArrowType.RightArrow)
        self.log_toggle.toggled.connect(self._on_log_toggled)
        layout.addWidget(self.log_toggle)
        self.log_view = QtWidgets.QPlainTextEdit()
        self.log_view.setObjectName("logTail")
        self.log_view.setReadOnly(True)
        self.log_view.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.NoWrap)
        self.log_view.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))
        self.log_view.setMinimumHeight(self.fontMetrics().lineSpacing() * 6)
        self.log_view.setMaximumHeight(self.fontMetrics().lineSpacing() * 9)
        self.log_view.hide()
        layout.addWidget(self.log_view)
        self.hide()

    def show_problem(self, message: str, log_tail: Sequence[str] = ()) -> None:
        """Show ``message``; the log's last lines sit behind the toggle (no toggle without a log)."""
        self.label.setText(message)
        self.log_view.setPlainText("\n".join(log_tail[-LOG_LINES_KEPT:]))
        self.log_toggle.setVisible(bool(log_tail))
        self.show()

    def _on_log_toggled(self, shown: bool) -> None:
        self.log_view.setVisible(shown)
        self.log_toggle.setArrowType(
            QtCore.Qt.ArrowType.DownArrow if shown else QtCore.Qt.ArrowType.RightArrow
        )
        self.log_toggle.setText("Hide the log" if shown else "Show the log's last lines")
        if shown:
            bar = self.log_view.verticalScrollBar()
            bar.setValue(bar.maximum())


__all__ = ["ProblemBar"]
