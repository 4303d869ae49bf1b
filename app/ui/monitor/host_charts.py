"""The Monitor tab's host charts: CPU load and memory of this computer and of the llama.cpp worker.

What runs the model when no GPU does (and the part of it a GPU rig leaves in system RAM): two plots
on the same "seconds before now" axis as the GPU charts. CPU: all cores (solid) and the worker's share
of them (dashed). Memory: the RAM in use on the whole computer (solid), the worker's resident memory
(dashed) and the model's weights resident in RAM (dotted), under a thin dash-dot line at the
installed RAM in the palette's muted colour (its own legend entry: drawn dashed like the worker's line,
it read as the worker holding all the RAM). The computer and the worker are drawn in the palette's
text colour (solid and dashed: the legend names them), the weights in the colour the Split tab's
memory bars give weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app.hardware.telemetry.host import HostHistory, HostSample
from app.ui.monitor.charts import AgoAxis
from app.ui.theme import fmt_gib, segment_color

_DASH = QtCore.Qt.PenStyle.DashLine
_DOT = QtCore.Qt.PenStyle.DotLine
_SOLID = QtCore.Qt.PenStyle.SolidLine
_DASH_DOT = QtCore.Qt.PenStyle.DashDotLine
RAM_TOTAL_LABEL = "installed RAM"


@dataclass(frozen=True)
class HostLine:
    metric: str
    label: str
    style: QtCore.Qt.PenStyle
    colour: str  # "text": the palette's text colour; else a memory-bar segment (app.ui.theme.segment_color)
    scale: float = 1.0


HOST_PLOTS: tuple[tuple[str, str, str, tuple[HostLine, ...]], ...] = (
    (
        "host_cpu",
        "CPU load",
        "%",
        (
            HostLine("cpu_pct", "all cores", _SOLID, "text"),
            HostLine("worker_cpu_pct", "llama.cpp worker", _DASH, "text"),
        ),
    ),
    (
        "host_memory",
        "System memory",
        "GiB",
        (
            HostLine("ram_used_mib", "in use (whole computer)", _SOLID, "text", 1 / 1024),
            HostLine("worker_rss_mib", "llama.cpp worker, resident", _DASH, "text", 1 / 1024),
            HostLine("model_ram_mib", "model weights in RAM", _DOT, "weights", 1 / 1024),
        ),
    ),
)
HOST_PLOT_KEYS: tuple[str, ...] = tuple(key for key, *_ in HOST_PLOTS)


class HostCharts(QtWidgets.QWidget):
    """The two host plots (:data:`HOST_PLOTS`) and a one-line readout of the latest values."""

    def __init__(self, span_s: float, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("hostPlots")
        self.span_s = span_s
        self.plots: dict[str, pg.PlotWidget] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.ram_line: pg.InfiniteLine | None = None
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.readout = QtWidgets.QLabel("")
        self.readout.setObjectName("hostReadout")
        self.readout.setWordWrap(True)
        layout.addWidget(self.readout)
        palette = self.palette()
        background = palette.color(QtGui.QPalette.ColorRole.Base)
        foreground = palette.color(QtGui.QPalette.ColorRole.Text)
        first: pg.PlotItem | None = None
        for key, title, unit, lines in HOST_PLOTS:
            widget = pg.PlotWidget(axisItems={"bottom": AgoAxis(orientation="bottom")}, background=background)
            widget.setObjectName(f"plot_{key}")
            widget.setMinimumHeight(100)
            item = widget.getPlotItem()
            item.titleLabel.setAttr("color", foreground)
            item.setTitle(title, size="9pt")
            item.setLabel("left", unit)
            item.getAxis("left").enableAutoSIPrefix(False)
            item.showGrid(x=True, y=True, alpha=0.2)
            item.setMenuEnabled(False)
            item.setMouseEnabled(x=False, y=False)
            item.hideButtons()
            item.setClipToView(True)
            for name in ("left", "bottom"):
                axis = item.getAxis(name)
                axis.setPen(pg.mkPen(foreground))
                axis.setTextPen(pg.mkPen(foreground))
            legend = item.addLegend(offset=(8, 4), labelTextColor=foreground, brush=pg.mkBrush(background))
            item.setXRange(-span_s, 0, padding=0)
            if key == "host_cpu":
                item.setYRange(0, 100, padding=0.02)
            else:
                item.enableAutoRange(axis="y")
            for line in lines:
                colour = foreground if line.colour == "text" else segment_color(line.colour, palette)
                curve = pg.PlotDataItem(pen=pg.mkPen(colour, width=1.5, style=line.style), connect="finite")
                item.addItem(curve)
                legend.addItem(curve, line.label)
                self.curves[line.metric] = curve
            if key == "host_memory":
                pen = pg.mkPen(
                    palette.color(QtGui.QPalette.ColorRole.PlaceholderText), width=1, style=_DASH_DOT
                )
                self.ram_line = pg.InfiniteLine(angle=0, pen=pen, movable=False)
                self.ram_line.hide()  # until a sample says how much RAM there is
                item.addItem(self.ram_line)
                legend.addItem(pg.PlotDataItem(pen=pen), RAM_TOTAL_LABEL)
            if first is None:
                first = item
            else:
                item.setXLink(first)
            layout.addWidget(widget, 1)
            self.plots[key] = widget
        self.plots["host_cpu"].getPlotItem().getAxis("bottom").setStyle(showValues=False)

    def set_span(self, span_s: float) -> None:
        self.span_s = float(span_s)
        self.plots["host_cpu"].getPlotItem().setXRange(-self.span_s, 0, padding=0)

    def set_plot_visible(self, key: str, visible: bool) -> None:
        self.plots[key].setVisible(visible)
        cpu_axis = self.plots["host_cpu"].getPlotItem().getAxis("bottom")
        cpu_axis.setStyle(showValues=not self.plots["host_memory"].isVisibleTo(self))

    def show_history(self, history: HostHistory) -> None:
        """Push the visible span of ``history`` into the plots and the readout."""
        t = history.times()
        if t.size == 0:
            return
        newest = float(t[-1])
        start = max(0, int(np.searchsorted(t, newest - self.span_s, side="left")) - 1)
        x = t[start:] - newest
        for _key, _title, _unit, lines in HOST_PLOTS:
            for line in lines:
                y = history.series(line.metric, start)
                if line.scale != 1.0:
                    y = y * line.scale
                self.curves[line.metric].setData(x, y)
        latest = history.latest
        if latest is not None:
            self._show_ram_total(latest)
            self.readout.setText(host_readout_text(latest))

    def _show_ram_total(self, sample: HostSample) -> None:
        if not sample.ram_total_mib:
            return
        gib = sample.ram_total_mib / 1024
        item = self.plots["host_memory"].getPlotItem()
        assert self.ram_line is not None
        if not self.ram_line.isVisible() or self.ram_line.value() != gib:
            self.ram_line.show()
            self.ram_line.setPos(gib)
            self.ram_line.setToolTip(f"Installed RAM: {fmt_gib(sample.ram_total_mib)}")
            item.setYRange(0, gib * 1.05, padding=0)


def host_readout_text(sample: HostSample) -> str:
    """The latest host values in one line: CPU, RAM, and the worker's share when one runs."""
    parts = []
    if sample.cpu_pct is not None:
        parts.append(f"CPU {sample.cpu_pct:.0f}%")
    if sample.ram_used_mib is not None and sample.ram_total_mib:
        parts.append(f"RAM {sample.ram_used_mib / 1024:.1f} / {fmt_gib(sample.ram_total_mib)} in use")
    if sample.workers:
        worker = f"llama.cpp worker: CPU {sample.worker_cpu_pct or 0.0:.0f}%"
        if sample.worker_rss_mib is not None:
            worker += f", {fmt_gib(sample.worker_rss_mib)} resident"
        if sample.model_ram_mib is not None:
            worker += f" ({fmt_gib(sample.model_ram_mib)} of it model weights)"
        parts.append(worker)
    else:
        parts.append("no model loaded (the worker starts with the first load on the Run tab)")
    return " · ".join(parts)


__all__ = ["HOST_PLOTS", "HOST_PLOT_KEYS", "HostCharts", "host_readout_text"]
