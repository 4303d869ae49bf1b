"""What the Split tab says about the plan, below the sliders: the advice and the commands that run it.

Both cost several milliseconds per plan (the advice plans the model on one GPU and prices each
option), so the tab's coordinator feeds them on the next pass of the event loop, not on every slider
step. Each panel keeps what it shows and ignores an update that would show the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.plan import Plan
from app.core.rig import Rig
from app.core.settings import Settings
from app.ui.state import ModelChoice

TOOLS: tuple[tuple[str, str], ...] = (
    ("llama-server", "llama-server"),
    ("llama-bench", "llama-bench"),
    ("ollama", "Ollama"),
    ("vllm", "vLLM"),
    ("exllamav2", "ExLlamaV2"),
)


def plan_advice_for(rig: Rig, spec: Any, settings: Settings, plan: Plan) -> tuple[Any, ...]:
    from app.core.plan_advice import plan_advice

    return tuple(plan_advice(rig, spec, settings, plan))


def settings_advice_for(rig: Rig, spec: Any, settings: Settings) -> tuple[Any, ...]:
    from app.core.plan_advice import settings_advice

    return tuple(settings_advice(rig, spec, settings))


def commands_for(rig: Rig, model: ModelChoice, plan: Plan) -> dict[str, str]:
    """What to paste into a shell per tool (:data:`TOOLS` keys): :mod:`app.core.commands`' text, with
    the files to write first and the notes (what the tool cannot express) as comments."""
    from app.core.commands import export_commands

    return {tool: command.text for tool, command in export_commands(rig, model.spec, plan).items()}


class AdvicePanel(QtWidgets.QGroupBox):
    """ "Advice for this plan": one line per advice, with its level's icon and its code as data."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("Advice for this plan", parent)
        self._shown: tuple[tuple[str, str, str], ...] | None = None
        layout = QtWidgets.QVBoxLayout(self)
        self.advice_list = QtWidgets.QListWidget()
        self.advice_list.setObjectName("planAdvice")
        self.advice_list.setWordWrap(True)
        self.advice_list.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.NoSelection)
        self.advice_list.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        layout.addWidget(self.advice_list)

    def show_advice(self, advice: Sequence[Any], have_plan: bool) -> None:
        """List ``advice`` (core Advice values); with none, say the plan looks sound (if there is one)."""
        shown = tuple((a.code, a.level, a.message) for a in advice)
        if shown == self._shown:
            return
        self._shown = shown
        self.advice_list.clear()
        style = self.style()
        icons = {
            "error": QtWidgets.QStyle.StandardPixmap.SP_MessageBoxCritical,
            "warning": QtWidgets.QStyle.StandardPixmap.SP_MessageBoxWarning,
        }
        for code, level, message in shown:
            icon = style.standardIcon(
                icons.get(level, QtWidgets.QStyle.StandardPixmap.SP_MessageBoxInformation)
            )
            item = QtWidgets.QListWidgetItem(icon, message)
            item.setData(QtCore.Qt.ItemDataRole.UserRole, code)
            item.setToolTip(f"{level}: {code}")
            self.advice_list.addItem(item)
        if not shown:
            self.advice_list.addItem("Nothing to add: this plan looks sound." if have_plan else "")

    def advice_codes(self) -> list[str]:
        """The codes of the advice listed, in list order."""
        return [
            str(self.advice_list.item(i).data(QtCore.Qt.ItemDataRole.UserRole))
            for i in range(self.advice_list.count())
            if self.advice_list.item(i).data(QtCore.Qt.ItemDataRole.UserRole)
        ]


class CommandPanel(QtWidgets.QGroupBox):
    """ "Run it elsewhere": the command line for the chosen tool, and Copy command.

    :attr:`copy_requested` fires on the button; the coordinator brings the commands up to date, then
    calls :meth:`copy_command`.
    """

    copy_requested = QtCore.Signal()
    command_copied = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("Run it elsewhere", parent)
        self._commands: dict[str, str] = {}
        layout = QtWidgets.QVBoxLayout(self)
        tool_row = QtWidgets.QHBoxLayout()
        self.tool_combo = QtWidgets.QComboBox()
        self.tool_combo.setObjectName("commandTool")
        for key, label in TOOLS:
            self.tool_combo.addItem(label, key)
        self.tool_combo.currentIndexChanged.connect(lambda _i: self._show_command())
        tool_row.addWidget(self.tool_combo)
        tool_row.addStretch(1)
        self.copy_button = QtWidgets.QPushButton("Copy command")
        self.copy_button.setObjectName("copyCommand")
        self.copy_button.setAutoDefault(False)
        self.copy_button.clicked.connect(self.copy_requested)
        tool_row.addWidget(self.copy_button)
        layout.addLayout(tool_row)
        self.command_text = QtWidgets.QPlainTextEdit()
        self.command_text.setObjectName("commandText")
        self.command_text.setReadOnly(True)
        self.command_text.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.command_text.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))
        layout.addWidget(self.command_text, 1)

    def set_commands(self, commands: dict[str, str]) -> None:
        """The command per tool (:data:`TOOLS` keys); ``{}`` when there is nothing to run."""
        if commands == self._commands:
            return
        self._commands = dict(commands)
        self._show_command()

    def commands(self) -> dict[str, str]:
        """The exported command per tool for the current plan."""
        return dict(self._commands)

    def current_tool(self) -> str:
        return str(self.tool_combo.currentData())

    def set_tool(self, key: str) -> None:
        index = self.tool_combo.findData(key)
        if index >= 0:
            self.tool_combo.setCurrentIndex(index)

    def copy_command(self) -> str:
        """Copy the shown command to the clipboard; returns it."""
        text = self.command_text.toPlainText()
        if text:
            QtGui.QGuiApplication.clipboard().setText(text)
            self.command_copied.emit(text)
        return text

    def _show_command(self) -> None:
        text = self._commands.get(self.current_tool(), "")
        if self.command_text.toPlainText() != text:
            self.command_text.setPlainText(text)
        self.copy_button.setEnabled(bool(text))


__all__ = [
    "TOOLS",
    "AdvicePanel",
    "CommandPanel",
    "commands_for",
    "plan_advice_for",
    "settings_advice_for",
]
