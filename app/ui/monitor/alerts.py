"""The Monitor tab's alerts and messages: what needs attention now, and what happened, in plain words.

Alerts (throttling, VRAM nearly full, a link running narrow under load...) are listed while active,
with their level's icon; the message log keeps the last :data:`MAX_MESSAGES` events with the time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from PySide6 import QtCore, QtWidgets

from app.hardware.telemetry import LEVEL_ERROR, LEVEL_INFO, TelemetryAlert

MAX_MESSAGES = 200
CLEARED_WORDS: dict[str, str] = {
    "thermal-throttle": "is no longer slowed down by heat",
    "power-cap": "is no longer held at its power limit",
    "hw-slowdown": "is no longer slowed down by the hardware",
    "vram-full": "has VRAM to spare again",
    "pcie-below-max": "PCIe link is back at full speed (or the GPU is idle)",
    "near-slowdown-temp": "has cooled down",
    "gpu-lost": "is back",
}
_GPU_ROLE = QtCore.Qt.ItemDataRole.UserRole + 1


def cleared_message(alert: TelemetryAlert) -> str:
    """``"Cleared: GPU 0 has cooled down"``."""
    return f"Cleared: GPU {alert.gpu} {CLEARED_WORDS.get(alert.code, alert.code)}"


class AlertPanel(QtWidgets.QWidget):
    """The "Alerts" and "Messages" boxes side by side."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        alerts_box = QtWidgets.QGroupBox("Alerts")
        alerts_layout = QtWidgets.QVBoxLayout(alerts_box)
        self.alert_list = QtWidgets.QListWidget()
        self.alert_list.setObjectName("monitorAlerts")
        self.alert_list.setWordWrap(True)
        alerts_layout.addWidget(self.alert_list)
        layout.addWidget(alerts_box, 3)
        messages_box = QtWidgets.QGroupBox("Messages")
        messages_layout = QtWidgets.QVBoxLayout(messages_box)
        self.message_list = QtWidgets.QListWidget()
        self.message_list.setObjectName("monitorMessages")
        self.message_list.setWordWrap(True)
        messages_layout.addWidget(self.message_list)
        layout.addWidget(messages_box, 2)
        self.show_alerts((), sampling=False)

    def show_alerts(self, alerts: Sequence[TelemetryAlert], sampling: bool) -> None:
        """List the active alerts; with none, say whether that is because nothing is sampled."""
        self.alert_list.clear()
        if not alerts:
            text = (
                "No alerts: every GPU is within its limits."
                if sampling
                else "No alerts: no GPU is being sampled."
            )
            item = QtWidgets.QListWidgetItem(text)
            item.setData(QtCore.Qt.ItemDataRole.UserRole, None)
            item.setFlags(QtCore.Qt.ItemFlag.NoItemFlags | QtCore.Qt.ItemFlag.ItemIsEnabled)
            self.alert_list.addItem(item)
            return
        style = self.style()
        for alert in alerts:
            item = QtWidgets.QListWidgetItem(alert.message)
            item.setData(QtCore.Qt.ItemDataRole.UserRole, alert.code)
            item.setData(_GPU_ROLE, alert.gpu)
            icon = {
                LEVEL_ERROR: QtWidgets.QStyle.StandardPixmap.SP_MessageBoxCritical,
                LEVEL_INFO: QtWidgets.QStyle.StandardPixmap.SP_MessageBoxInformation,
            }.get(alert.level, QtWidgets.QStyle.StandardPixmap.SP_MessageBoxWarning)
            item.setIcon(style.standardIcon(icon))
            self.alert_list.addItem(item)

    def alert_codes(self) -> list[tuple[str, int]]:
        """``(code, gpu)`` of the alerts listed, in list order (empty when none)."""
        out = []
        for i in range(self.alert_list.count()):
            item = self.alert_list.item(i)
            code = item.data(QtCore.Qt.ItemDataRole.UserRole)
            if code:
                out.append((str(code), int(item.data(_GPU_ROLE))))
        return out

    def add_message(self, text: str, unix_time: float) -> None:
        """Log ``text`` with the time it happened; the oldest go past :data:`MAX_MESSAGES`."""
        stamp = datetime.fromtimestamp(unix_time).strftime("%H:%M:%S")
        self.message_list.addItem(f"{stamp}  {text}")
        while self.message_list.count() > MAX_MESSAGES:  # a long run keeps memory flat
            self.message_list.takeItem(0)
        self.message_list.scrollToBottom()


__all__ = ["CLEARED_WORDS", "MAX_MESSAGES", "AlertPanel", "cleared_message"]
