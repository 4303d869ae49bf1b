"""The Run tab's chat: the transcript, the message box and the sampler settings.

The whole conversation is sent each turn; tokens are appended to the transcript as they arrive (one
text insertion each, the document is never re-rendered), and the transcript stays scrolled to the end
unless the user scrolled up. Ctrl+Enter sends. A turn that fails takes the user's message back into
the box so it can be sent again.
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.errors import RigfitError
from app.runner import protocol as P
from app.ui.runner_adapter import STATE_GENERATING, STATE_LOADED, RunnerAdapter
from app.ui.theme import muted_text

_STOP_NOTES = {
    "stopped": " [stopped]",
    "max_tokens": " [max tokens reached]",
    "context": " [the context is full]",
}


class ScrollKeeper:
    """Keeps a text view scrolled to the end while text is added, unless the user scrolled up."""

    def __init__(self, bar: QtWidgets.QScrollBar) -> None:
        self.bar = bar
        self.at_end = True

    def __enter__(self) -> ScrollKeeper:
        self.at_end = self.bar.value() >= self.bar.maximum() - 4
        return self

    def __exit__(self, *exc: object) -> None:
        if self.at_end:
            self.bar.setValue(self.bar.maximum())


class ChatPanel(QtWidgets.QGroupBox):
    """Chats with the model ``adapter`` has loaded. :attr:`notice` carries a one-line message for the
    tab's status line (no model loaded, a request the runner refused)."""

    notice = QtCore.Signal(str)

    def __init__(self, adapter: RunnerAdapter, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("Chat", parent)
        self.adapter = adapter
        self.messages: list[P.ChatMessage] = []
        self.reply_text = ""
        self._pending_user_text = ""
        self._reply_cursor: QtGui.QTextCursor | None = None
        self._build()
        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            shortcut = QtGui.QShortcut(QtGui.QKeySequence(keys), self.input)
            shortcut.setContext(QtCore.Qt.ShortcutContext.WidgetShortcut)
            shortcut.activated.connect(self.send)
        self.send_button.clicked.connect(self.send)
        self.stop_button.clicked.connect(self.adapter.stop)
        self.clear_button.clicked.connect(self.clear_chat)
        adapter.state_changed.connect(self.update_buttons)
        adapter.token.connect(self._on_token)
        adapter.done.connect(self._on_done)
        adapter.error.connect(self._on_error)
        adapter.exited.connect(self._on_exited)
        self.update_buttons()

    def _build(self) -> None:
        layout = QtWidgets.QVBoxLayout(self)
        self.transcript = QtWidgets.QTextBrowser()
        self.transcript.setObjectName("transcript")
        self.transcript.setOpenExternalLinks(False)
        self.transcript.setUndoRedoEnabled(False)  # a long chat must not keep an undo history
        self.transcript.setPlaceholderText("Load a model, then type a message below.")
        layout.addWidget(self.transcript, 1)
        self.input = QtWidgets.QPlainTextEdit()
        self.input.setObjectName("chatInput")
        self.input.setPlaceholderText("Your message — Ctrl+Enter sends, Esc stops the reply")
        self.input.setAcceptDrops(False)  # a dropped .gguf reaches the tab (opens it), not the text box
        self.input.setTabChangesFocus(True)
        self.input.setFixedHeight(self.input.fontMetrics().lineSpacing() * 3 + 16)
        layout.addWidget(self.input)

        row = QtWidgets.QHBoxLayout()
        self.send_button = QtWidgets.QPushButton("Send")
        self.send_button.setToolTip("Send the message (Ctrl+Enter)")
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.setToolTip("Stop the reply (Esc); it ends within one token")
        self.clear_button = QtWidgets.QPushButton("Clear")
        self.clear_button.setToolTip("Start a new conversation")
        row.addWidget(self.send_button)
        row.addWidget(self.stop_button)
        row.addWidget(self.clear_button)
        row.addStretch(1)
        self.temperature = QtWidgets.QDoubleSpinBox()
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setDecimals(2)
        self.temperature.setValue(0.8)
        self.temperature.setToolTip(
            "Temperature: 0 always takes the likeliest token; higher values vary more."
        )
        self.max_tokens = QtWidgets.QSpinBox()
        self.max_tokens.setRange(1, 1 << 20)
        self.max_tokens.setValue(512)
        self.max_tokens.setToolTip("The longest reply, in tokens.")
        self.seed = QtWidgets.QSpinBox()
        self.seed.setRange(-1, 2**31 - 1)
        self.seed.setValue(-1)
        self.seed.setSpecialValueText("random")
        self.seed.setToolTip("Seed: the same seed, prompt and temperature give the same reply.")
        for text, widget in (
            ("Temp", self.temperature),
            ("Max tokens", self.max_tokens),
            ("Seed", self.seed),
        ):
            label = QtWidgets.QLabel(text)
            label.setBuddy(widget)
            label.setToolTip(widget.toolTip())
            row.addWidget(label)
            row.addWidget(widget)
        layout.addLayout(row)

        self._role_format = QtGui.QTextCharFormat()
        self._role_format.setFontWeight(QtGui.QFont.Weight.Bold)
        self._text_format = QtGui.QTextCharFormat()
        self._note_format = QtGui.QTextCharFormat()
        self._note_format.setForeground(muted_text(self.palette()))
        self._note_format.setFontItalic(True)

    # ------------------------------------------------------------------------------------------ actions
    def send(self) -> bool:
        """Send the input box's text as the next user turn; returns whether a reply was started."""
        text = self.input.toPlainText().strip()
        if not text:
            return False
        if self.adapter.state != STATE_LOADED:
            self.notice.emit("Load a model first, then send your message.")
            return False
        messages = (*self.messages, P.ChatMessage("user", text))
        seed = self.seed.value()
        request = P.ChatRequest(
            messages=messages,
            temperature=self.temperature.value(),
            max_tokens=self.max_tokens.value(),
            seed=None if seed < 0 else seed,
        )
        try:
            self.adapter.chat(request)
        except RigfitError as exc:
            self.notice.emit(str(exc))
            return False
        self.messages.append(P.ChatMessage("user", text))
        self._pending_user_text = text
        self.input.clear()
        self._append_turn("You", text)
        self._append_turn("Assistant", "")
        self.reply_text = ""
        return True

    def clear_chat(self) -> None:
        """Forget the conversation (the model stays loaded)."""
        if self.adapter.state == STATE_GENERATING:
            return
        self.messages.clear()
        self.reply_text = ""
        self._reply_cursor = None
        self.transcript.clear()

    def update_buttons(self, *_: object) -> None:
        runner = self.adapter.state
        self.send_button.setEnabled(runner == STATE_LOADED)
        self.stop_button.setEnabled(runner == STATE_GENERATING)
        self.clear_button.setEnabled(runner != STATE_GENERATING)

    # ------------------------------------------------------------------------------------------ transcript
    def _append_turn(self, role: str, text: str) -> None:
        doc = self.transcript.document()
        cursor = QtGui.QTextCursor(doc)
        cursor.movePosition(QtGui.QTextCursor.MoveOperation.End)
        with ScrollKeeper(self.transcript.verticalScrollBar()):
            if not doc.isEmpty():
                cursor.insertBlock()
                cursor.insertBlock()
            cursor.insertText(role, self._role_format)
            cursor.insertBlock()
            cursor.insertText(text, self._text_format)
        self._reply_cursor = cursor

    def _append_reply(self, text: str, fmt: QtGui.QTextCharFormat | None = None) -> None:
        cursor = self._reply_cursor
        if cursor is None:
            return
        with ScrollKeeper(self.transcript.verticalScrollBar()):
            cursor.insertText(text, fmt or self._text_format)

    def _on_token(self, event: object) -> None:
        assert isinstance(event, P.TokenEvent)
        self.reply_text += event.text
        self._append_reply(event.text)

    def _on_done(self, event: object) -> None:
        assert isinstance(event, P.DoneEvent)
        self.messages.append(P.ChatMessage("assistant", event.text))
        self._pending_user_text = ""
        if event.stop_reason in _STOP_NOTES:
            self._append_reply(_STOP_NOTES[event.stop_reason], self._note_format)
        if event.template_error:
            self._append_reply(
                f"\n[the model's chat template failed ({event.template_error}); used the {event.template} layout]",
                self._note_format,
            )
        self._reply_cursor = None

    def _on_error(self, event: object) -> None:
        assert isinstance(event, P.ErrorEvent)
        if self._reply_cursor is None:
            return  # not a turn of this chat (a failed load)
        # The turn failed: take the user's message back so it can be sent again.
        self._append_reply(f"[no reply: {event.message}]", self._note_format)
        self._reply_cursor = None
        if self.messages and self.messages[-1].role == "user":
            self.messages.pop()
        if self._pending_user_text and not self.input.toPlainText().strip():
            self.input.setPlainText(self._pending_user_text)
        self._pending_user_text = ""

    def _on_exited(self, event: object) -> None:
        assert isinstance(event, P.ExitedEvent)
        if self._reply_cursor is not None:
            self._append_reply("[the model process ended]", self._note_format)
            self._reply_cursor = None
        self.update_buttons()


__all__ = ["ChatPanel", "ScrollKeeper"]
