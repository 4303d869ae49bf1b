"""The Monitor tab's readout: the latest value of every metric, one row per GPU, as tall as its rows."""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from app.hardware.telemetry import GpuSample, TelemetrySnapshot, describe_clock_events
from app.ui.theme import fmt_celsius, fmt_gib_of, fmt_value, fmt_watts, gpu_swatch_html

READOUT_COLUMNS: tuple[str, ...] = (
    "GPU",
    "VRAM",
    "Temp",
    "Power",
    "Util GPU / mem",
    "Clocks SM / mem",
    "PCIe link",
    "PCIe TX / RX",
    "Fan",
    "Clock limited by",
)


def readout_cells(sample: GpuSample) -> tuple[str, ...]:
    """The readout row of one GPU, in the order of ``READOUT_COLUMNS`` (after the name column)."""
    if sample.lost:
        return ("lost", "", "", "", "", "", "", "", "")
    vram = "n/a"
    if sample.vram_used_mib is not None and sample.vram_total_mib:
        vram = fmt_gib_of(sample.vram_used_mib, sample.vram_total_mib)
    temp = fmt_celsius(sample.temperature_c)
    if sample.slowdown_temp_c is not None and sample.temperature_c is not None:
        temp += f" (slows at {sample.slowdown_temp_c:.0f})"
    power = fmt_watts(sample.power_w)
    if sample.power_limit_w is not None and sample.power_w is not None:
        power = f"{sample.power_w:.0f} / {sample.power_limit_w:.0f} W"
    util = f"{fmt_value(sample.gpu_util_pct, '%')} / {fmt_value(sample.mem_util_pct, '%')}"
    clocks = f"{fmt_value(sample.sm_clock_mhz)} / {fmt_value(sample.mem_clock_mhz)} MHz"
    link = "n/a"
    if sample.pcie_gen is not None or sample.pcie_width is not None:
        link = f"Gen{sample.pcie_gen or '?'} x{sample.pcie_width or '?'}"
        if sample.pcie_max_gen is not None and sample.pcie_max_width is not None:
            link += f" of Gen{sample.pcie_max_gen} x{sample.pcie_max_width}"
    traffic = f"{fmt_value(sample.pcie_tx_mib_s, '', 1)} / {fmt_value(sample.pcie_rx_mib_s, '', 1)} MiB/s"
    fan = fmt_value(sample.fan_pct, "%")
    reasons = describe_clock_events(sample.clock_events)
    return (vram, temp, power, util, clocks, link, traffic, fan, reasons)


class ReadoutTable(QtWidgets.QTableWidget):
    """One row per GPU (name with its colour, then :func:`readout_cells`)."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(0, len(READOUT_COLUMNS), parent)
        self.setObjectName("monitorReadout")
        self.setHorizontalHeaderLabels(list(READOUT_COLUMNS))
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.NoSelection)
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Maximum)
        self.setVerticalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._fit_height()

    def set_gpus(self, snapshot: TelemetrySnapshot) -> None:
        """A row per GPU of ``snapshot``, values empty until :meth:`show_snapshot`."""
        self.setRowCount(len(snapshot.gpus))
        for row, sample in enumerate(snapshot.gpus):
            label = QtWidgets.QLabel(f"{gpu_swatch_html(sample.index)} GPU {sample.index} {sample.name}")
            label.setTextFormat(QtCore.Qt.TextFormat.RichText)
            label.setContentsMargins(4, 0, 4, 0)
            self.setCellWidget(row, 0, label)
            for col in range(1, len(READOUT_COLUMNS)):
                self.setItem(row, col, QtWidgets.QTableWidgetItem(""))
        self.resizeRowsToContents()
        self._fit_height()

    def show_snapshot(self, snapshot: TelemetrySnapshot) -> None:
        for row, sample in enumerate(snapshot.gpus):
            for col, text in enumerate(readout_cells(sample), start=1):
                item = self.item(row, col)
                if item is not None and item.text() != text:
                    item.setText(text)

    def _fit_height(self) -> None:
        """As tall as its rows: the plots get the rest."""
        rows = max(1, self.rowCount())
        height = self.horizontalHeader().sizeHint().height() + 2 * self.frameWidth()
        height += (
            sum(self.rowHeight(r) for r in range(self.rowCount()))
            or self.verticalHeader().defaultSectionSize() * rows
        )
        self.setFixedHeight(height)


__all__ = ["READOUT_COLUMNS", "ReadoutTable", "readout_cells"]
