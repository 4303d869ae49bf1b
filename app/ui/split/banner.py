"""The Split tab's banner: the plan's status in words on its status colour, and the plan's notes below.

"Tight — every layer on the GPUs, but some GPU has less than 10% left. 43.5 GiB of 48.0 GiB on 2
GPUs · ≈ 13 tok/s generating": the verdict, where the memory goes and the predicted speed.
"""

from __future__ import annotations

import html
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.errors import RigfitError
from app.core.plan import Plan
from app.core.rig import Rig
from app.ui.theme import STATUS_WORDS, TEXT_MUTED, fmt_gib, fmt_tok_s, status_background, tint


def speed_summary(rig: Rig, spec: Any, plan: Plan) -> str:
    """``"≈ 17 tok/s generating, ≈ 700 tok/s reading the prompt"`` for a plan ("" when it does not load)."""
    from app.core.perf import estimate_speed

    try:
        est = estimate_speed(rig, spec, plan)
    except RigfitError:
        return ""
    if est.decode_tok_s is None:
        return ""
    text = f"≈ {fmt_tok_s(est.decode_tok_s)} generating"
    if est.prompt_tok_s is not None:
        text += f", ≈ {est.prompt_tok_s:,.0f} tok/s reading the prompt"
    return text


def status_sentence(plan: Plan, rig: Rig | None, speed_text: str) -> str:
    """The plan status in words, as rich text."""
    word = STATUS_WORDS.get(plan.status, plan.status)
    gpus = len(plan.devices)
    used = plan.gpu_total_mib
    capacity = sum(d.capacity_mib for d in plan.devices)
    if gpus:
        where = f"{fmt_gib(used)} of {fmt_gib(capacity)} on {gpus} GPU{'s' if gpus != 1 else ''}"
    else:
        where = f"{fmt_gib(plan.host.total_mib)} of system RAM (no GPU)"
    host = f", {fmt_gib(plan.host.total_mib)} in system RAM" if gpus else ""
    detail = {
        "fits": "every layer on the GPUs, with room to spare",
        "tight": "every layer on the GPUs, but some GPU has less than 10% left",
        "offload": (
            f"{plan.layers_on_cpu} of {plan.n_layer} layers run on the CPU"
            if plan.fit_n_gpu_layers is None
            else f"fits with n_gpu_layers = {plan.fit_n_gpu_layers}; the other layers run on the CPU"
        ),
        "no": "not even with layers moved to the CPU" if plan.fit_n_gpu_layers is None else "",
    }.get(plan.status, "")
    text = f"<b>{html.escape(word)}</b> — {html.escape(detail)}. {html.escape(where)}{html.escape(host)}"
    if speed_text:
        text += f" · {html.escape(speed_text)}"
    return text


class PlanBanner(QtWidgets.QWidget):
    """The status line (rich text on the status colour) and the notes line (muted)."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._status = ""
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        self.status_label = QtWidgets.QLabel("")
        self.status_label.setObjectName("planStatusLabel")
        self.status_label.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.status_label.setWordWrap(True)
        self.status_label.setAutoFillBackground(True)
        self.status_label.setContentsMargins(8, 4, 8, 4)
        self.status_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status_label)
        self.notes_label = QtWidgets.QLabel("")
        self.notes_label.setObjectName("planNotes")
        tint(self.notes_label, TEXT_MUTED)
        self.notes_label.setWordWrap(True)
        self.notes_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.notes_label)

    @property
    def status(self) -> str:
        """The plan status shown ("" without a plan)."""
        return self._status

    def set_status(self, status: str, text: str) -> None:
        """Show ``text`` (rich text) on the colour of ``status`` ("" for the neutral colour)."""
        own = self.palette()
        pal = self.status_label.palette()
        if status:
            pal.setColor(QtGui.QPalette.ColorRole.Window, status_background(status, own))
        else:
            pal.setColor(QtGui.QPalette.ColorRole.Window, own.color(QtGui.QPalette.ColorRole.AlternateBase))
        pal.setColor(QtGui.QPalette.ColorRole.WindowText, own.color(QtGui.QPalette.ColorRole.Text))
        self.status_label.setPalette(pal)
        self.status_label.setText(text)
        self._status = status

    def set_note(self, text: str) -> None:
        self.notes_label.setText(text)

    def changeEvent(self, event: QtCore.QEvent) -> None:
        if event.type() == QtCore.QEvent.Type.PaletteChange:
            self.set_status(self._status, self.status_label.text())
        super().changeEvent(event)


__all__ = ["PlanBanner", "speed_summary", "status_sentence"]
