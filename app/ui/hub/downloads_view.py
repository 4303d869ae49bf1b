"""The downloads list: each download's model, size, state, progress, speed and time left.

A table fed by :class:`~app.ui.hub.downloads.DownloadManager` entries, with Stop, Resume and
"Use in Run tab" for the selected one, in a window of its own that the status bar opens.
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from app.ui.hub.downloads import DONE, STATE_LABELS, DownloadEntry, DownloadManager
from app.ui.theme import fmt_size

COLUMNS = ("Model", "Quant", "Size", "State", "Progress", "Speed", "Time left")


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _describe(entry: DownloadEntry) -> str:
    return f"{entry.title}: {STATE_LABELS[entry.state]}" + (f" — {entry.message}" if entry.message else "")


class DownloadsPanel(QtWidgets.QWidget):
    """The table of downloads and the actions on the selected one."""

    use_requested = QtCore.Signal(str)  # the path of a finished download

    def __init__(self, manager: DownloadManager, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.manager = manager
        self._rows: dict[int, int] = {}
        layout = QtWidgets.QVBoxLayout(self)
        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("downloadsTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(4, QtWidgets.QHeaderView.ResizeMode.Fixed)
        header.resizeSection(4, 120)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.doubleClicked.connect(lambda _i: self.use_selected())
        layout.addWidget(self.table, 1)
        self.message = QtWidgets.QLabel(
            "No downloads yet: use “Get this model” on a Fit cell or in the Run tab."
        )
        self.message.setObjectName("downloadsMessage")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        row = QtWidgets.QHBoxLayout()
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop_selected)
        self.resume_button = QtWidgets.QPushButton("Resume")
        self.resume_button.clicked.connect(self.resume_selected)
        self.use_button = QtWidgets.QPushButton("Use in Run tab")
        self.use_button.clicked.connect(self.use_selected)
        for b in (self.stop_button, self.resume_button, self.use_button):
            row.addWidget(b)
        row.addStretch(1)
        layout.addLayout(row)
        manager.changed.connect(self._on_changed)
        for entry in manager.entries():
            self._on_changed(entry)
        self._update_buttons()

    def selected(self) -> DownloadEntry | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        entry_id = self.table.item(rows[0].row(), 0).data(QtCore.Qt.ItemDataRole.UserRole)
        return self.manager.entry(int(entry_id))

    def stop_selected(self) -> None:
        entry = self.selected()
        if entry is not None and entry.active:
            self.manager.cancel(entry.id)

    def resume_selected(self) -> None:
        entry = self.selected()
        if entry is not None and not entry.active and entry.state != DONE:
            self.manager.retry(entry.id)

    def use_selected(self) -> None:
        entry = self.selected()
        if entry is not None and entry.state == DONE and entry.path:
            self.use_requested.emit(entry.path)

    def _update_buttons(self) -> None:
        entry = self.selected()
        self.stop_button.setEnabled(entry is not None and entry.active)
        self.resume_button.setEnabled(entry is not None and not entry.active and entry.state != DONE)
        self.use_button.setEnabled(entry is not None and entry.state == DONE)
        if entry is not None:
            self.message.setText(_describe(entry))

    def _on_changed(self, entry: object) -> None:
        assert isinstance(entry, DownloadEntry)
        row = self._rows.get(entry.id)
        if row is None:
            row = self.table.rowCount()
            self.table.insertRow(row)
            self._rows[entry.id] = row
            bar = QtWidgets.QProgressBar()
            bar.setRange(0, 1000)
            self.table.setCellWidget(row, 4, bar)
            new_row = True
        else:
            new_row = False
        fraction = entry.done_bytes / entry.size_bytes if entry.size_bytes else 0.0
        cells = (
            entry.title,
            entry.quant or "",
            fmt_size(entry.size_bytes) + (f" ({entry.parts} parts)" if entry.parts > 1 else ""),
            STATE_LABELS[entry.state],
            "",
            f"{fmt_size(entry.speed_bps)}/s" if entry.state == "downloading" and entry.speed_bps else "",
            _eta(entry.eta_s) if entry.state == "downloading" else "",
        )
        for column, text in enumerate(cells):
            item = self.table.item(row, column)
            if item is None:
                item = QtWidgets.QTableWidgetItem()
                self.table.setItem(row, column, item)
            item.setText(text)
            item.setData(QtCore.Qt.ItemDataRole.UserRole, entry.id)
            item.setToolTip(entry.message or entry.path or text)
        bar = self.table.cellWidget(row, 4)
        if isinstance(bar, QtWidgets.QProgressBar):
            bar.setValue(round(1000 * fraction))
            bar.setFormat(f"{fraction:.0%}")
        if new_row:
            # The download just asked for is the one the buttons and the line below act on; without
            # this the first row looked current while Stop and "Use in Run tab" stayed disabled.
            self.table.selectRow(row)
        shown = self.selected()
        if shown is None or shown.id == entry.id:
            self.message.setText(_describe(entry))
        self._update_buttons()


class DownloadsWindow(QtWidgets.QDialog):
    """The downloads list in a window of its own (not modal: the app stays usable)."""

    def __init__(self, manager: DownloadManager, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("downloadsWindow")
        self.setWindowTitle("Downloads")
        self.setModal(False)
        layout = QtWidgets.QVBoxLayout(self)
        self.panel = DownloadsPanel(manager, self)
        layout.addWidget(self.panel)
        self.resize(760, 260)
