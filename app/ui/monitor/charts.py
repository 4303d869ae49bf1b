"""The Monitor tab's charts: one pyqtgraph plot per metric, one curve per GPU, a shared time axis.

Every curve is created once per GPU and updated with ``setData``, clipped to the view and
auto-downsampled (peak mode, so spikes survive); the X axis is "seconds before now" over a fixed
span, so the view never rescales. The VRAM plot draws each GPU's capacity (dashed) and, when the Run
tab has loaded a model, the planner's predicted usage (dotted), so plan and reality meet on one
chart; the temperature and power plots draw each GPU's slowdown temperature and power limit.
Colours come from :mod:`app.ui.theme`, the same per GPU as everywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app.hardware.telemetry import TelemetryHistory, TelemetrySnapshot
from app.ui.theme import fmt_gib, gpu_color


@dataclass(frozen=True)
class Line:
    """One metric drawn in a plot, one curve per GPU."""

    metric: str
    label: str
    style: QtCore.Qt.PenStyle = QtCore.Qt.PenStyle.SolidLine
    scale: float = 1.0


@dataclass(frozen=True)
class PlotSpec:
    """A plot the user can show or hide."""

    key: str
    title: str
    unit: str
    lines: tuple[Line, ...]
    visible: bool = True
    y_range: tuple[float, float] | None = None  # fixed range; None: follow the data


_DASH = QtCore.Qt.PenStyle.DashLine
PLOTS: tuple[PlotSpec, ...] = (
    PlotSpec("vram", "VRAM used", "GiB", (Line("vram_used_mib", "used", scale=1 / 1024),)),
    PlotSpec("temperature", "Temperature", "°C", (Line("temperature_c", "GPU"),)),
    PlotSpec("power", "Power draw", "W", (Line("power_w", "draw"),)),
    PlotSpec(
        "utilization",
        "Utilization",
        "%",
        (Line("gpu_util_pct", "GPU"), Line("mem_util_pct", "memory controller", _DASH)),
        y_range=(0.0, 100.0),
    ),
    PlotSpec(
        "pcie",
        "PCIe traffic",
        "MiB/s",
        (Line("pcie_tx_mib_s", "to host (TX)"), Line("pcie_rx_mib_s", "from host (RX)", _DASH)),
    ),
    PlotSpec(
        "clocks",
        "Clocks",
        "MHz",
        (Line("sm_clock_mhz", "SM"), Line("mem_clock_mhz", "memory", _DASH)),
        visible=False,
    ),
    PlotSpec("fan", "Fan", "%", (Line("fan_pct", "speed"),), visible=False, y_range=(0.0, 100.0)),
)
PLOT_KEYS: tuple[str, ...] = tuple(p.key for p in PLOTS)


class AgoAxis(pg.AxisItem):  # type: ignore[misc]
    """Time axis in "minutes:seconds before now" (x is seconds relative to the newest sample)."""

    def tickStrings(self, values: Sequence[float], scale: float, spacing: float) -> list[str]:
        out = []
        for v in values:
            seconds = round(-v)
            if seconds == 0:
                out.append("now")
            elif abs(seconds) >= 60 or spacing >= 30:
                out.append(f"-{seconds // 60}:{seconds % 60:02d}")
            else:
                out.append(f"-{seconds}s")
        return out


def plot_title(spec: PlotSpec) -> str:
    """The plot's title; with several lines it says which is solid and which dashed."""
    if len(spec.lines) == 1:
        return spec.title
    parts = [
        f"{'solid' if ln.style == QtCore.Qt.PenStyle.SolidLine else 'dashed'}: {ln.label}"
        for ln in spec.lines
    ]
    return f"{spec.title} ({', '.join(parts)})"


class Charts(QtWidgets.QWidget):
    """The stack of plots (:data:`PLOTS`). Hidden plots are not updated at all."""

    def __init__(self, span_s: float, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("monitorPlots")
        self.span_s = span_s
        self.plots: dict[str, pg.PlotWidget] = {}
        self.curves: dict[tuple[str, int], pg.PlotDataItem] = {}
        self.capacity_lines: dict[int, pg.InfiniteLine] = {}
        self.predicted_lines: dict[int, pg.InfiniteLine] = {}
        self.limit_lines: dict[tuple[str, int], pg.InfiniteLine] = {}
        self._visible: set[str] = {p.key for p in PLOTS if p.visible}
        self._predicted_mib: dict[int, float] = {}
        self._build()

    def _build(self) -> None:
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        first: pg.PlotItem | None = None
        palette = self.palette()
        background = palette.color(QtGui.QPalette.ColorRole.Base)
        foreground = palette.color(QtGui.QPalette.ColorRole.Text)
        for spec in PLOTS:
            widget = pg.PlotWidget(axisItems={"bottom": AgoAxis(orientation="bottom")}, background=background)
            widget.setObjectName(f"plot_{spec.key}")
            widget.setMinimumHeight(100)
            item = widget.getPlotItem()
            item.titleLabel.setAttr("color", foreground)
            item.setTitle(plot_title(spec), size="9pt")
            item.setLabel("left", spec.unit)
            # The unit is already in the label: no "(x0.001)" scale suffix for small values.
            item.getAxis("left").enableAutoSIPrefix(False)
            item.showGrid(x=True, y=True, alpha=0.2)
            item.setMenuEnabled(False)
            item.setMouseEnabled(x=False, y=False)
            item.hideButtons()
            item.setClipToView(True)
            item.setDownsampling(auto=True, mode="peak")
            for name in ("left", "bottom"):
                # Axis text replays slowly on every frame; as a cached pixmap it repaints only when
                # its range changes (the time axis never does: it is "seconds before now").
                axis = item.getAxis(name)
                axis.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)
                axis.setPen(pg.mkPen(foreground))
                axis.setTextPen(pg.mkPen(foreground))
            item.setXRange(-self.span_s, 0, padding=0)
            if spec.y_range is not None:
                item.setYRange(*spec.y_range, padding=0.02)
            else:
                item.enableAutoRange(axis="y")
            if first is None:
                first = item
            else:
                item.setXLink(first)
            widget.setVisible(spec.key in self._visible)
            layout.addWidget(widget)
            self.plots[spec.key] = widget
        self._label_time_axis()

    # ------------------------------------------------------------------------------------------ choices
    @property
    def visible_plots(self) -> tuple[str, ...]:
        return tuple(k for k in PLOT_KEYS if k in self._visible)

    def set_plot_visible(self, key: str, visible: bool) -> None:
        if visible:
            self._visible.add(key)
        else:
            self._visible.discard(key)
        self.plots[key].setVisible(visible)
        self._label_time_axis()

    def set_span(self, span_s: float) -> None:
        self.span_s = float(span_s)
        next(iter(self.plots.values())).getPlotItem().setXRange(-self.span_s, 0, padding=0)

    def _label_time_axis(self) -> None:
        """Time labels under the lowest visible plot only (the plots share the time axis)."""
        visible = self.visible_plots
        for key, widget in self.plots.items():
            widget.getPlotItem().getAxis("bottom").setStyle(showValues=bool(visible) and key == visible[-1])

    # ------------------------------------------------------------------------------------------ GPUs
    def build_curves(self, snapshot: TelemetrySnapshot) -> None:
        """Curves and reference lines for the GPUs of ``snapshot`` (a new set of GPUs clears the plots)."""
        for widget in self.plots.values():
            widget.getPlotItem().clear()
        self.curves.clear()
        self.capacity_lines.clear()
        self.predicted_lines.clear()
        self.limit_lines.clear()
        for spec in PLOTS:
            item = self.plots[spec.key].getPlotItem()
            for line in spec.lines:
                for sample in snapshot.gpus:
                    pen = pg.mkPen(gpu_color(sample.index), width=1, style=line.style)
                    curve = pg.PlotDataItem(
                        pen=pen, connect="finite", name=f"GPU {sample.index} {line.label}"
                    )
                    item.addItem(curve)
                    self.curves[(line.metric, sample.index)] = curve
        vram = self.plots["vram"].getPlotItem()
        top_gib = 1.0
        for sample in snapshot.gpus:
            color = gpu_color(sample.index)
            if sample.vram_total_mib:
                gib = sample.vram_total_mib / 1024
                top_gib = max(top_gib, gib)
                cap = pg.InfiniteLine(
                    pos=gib, angle=0, pen=pg.mkPen(color, width=1, style=_DASH), movable=False
                )
                cap.setToolTip(f"GPU {sample.index} capacity {fmt_gib(sample.vram_total_mib)}")
                vram.addItem(cap)
                self.capacity_lines[sample.index] = cap
            plan = pg.InfiniteLine(
                angle=0,
                pen=pg.mkPen(color, width=2, style=QtCore.Qt.PenStyle.DotLine),
                movable=False,
                label=f"GPU {sample.index} plan",
                labelOpts={
                    "position": 0.03 + 0.11 * (sample.index % 8),
                    "color": color,
                    "anchors": [(0, 1), (0, 1)],
                },
            )
            plan.setVisible(False)
            vram.addItem(plan)
            self.predicted_lines[sample.index] = plan
            for key, value in (("temperature", sample.slowdown_temp_c), ("power", sample.power_limit_w)):
                limit = pg.InfiniteLine(
                    angle=0, pen=pg.mkPen(gpu_color(sample.index, 150), width=1, style=_DASH), movable=False
                )
                limit.setVisible(value is not None)
                if value is not None:
                    limit.setPos(value)
                self.plots[key].getPlotItem().addItem(limit)
                self.limit_lines[(key, sample.index)] = limit
        vram.setYRange(0, top_gib * 1.05, padding=0)
        self._apply_predicted()

    def set_predicted_vram(self, predicted_mib: Mapping[int, float]) -> None:
        """The planner's predicted VRAM use per GPU (MiB) as dotted lines; ``{}`` removes them."""
        self._predicted_mib = dict(predicted_mib)
        self._apply_predicted()

    def _apply_predicted(self) -> None:
        for index, line in self.predicted_lines.items():
            mib = self._predicted_mib.get(index)
            line.setVisible(mib is not None)
            if mib is not None:
                line.setPos(mib / 1024)
                line.setToolTip(f"GPU {index}: the plan predicts {fmt_gib(mib)} used")

    # ------------------------------------------------------------------------------------------ data
    def show_history(self, history: TelemetryHistory) -> None:
        """Push the visible span of ``history`` into the visible plots."""
        t = history.times()
        newest = float(t[-1])
        # One sample before the span keeps the curve reaching the left edge.
        start = max(0, int(np.searchsorted(t, newest - self.span_s, side="left")) - 1)
        x = t[start:] - newest
        for spec in PLOTS:
            if spec.key not in self._visible:
                continue
            for line in spec.lines:
                for gpu in history.gpu_indexes:
                    y = history.series(line.metric, gpu, start)
                    if line.scale != 1.0:
                        y *= line.scale
                    self.curves[(line.metric, gpu)].setData(x, y)
        latest = history.latest
        if latest is None:
            return
        for sample in latest.gpus:
            for key, value in (("temperature", sample.slowdown_temp_c), ("power", sample.power_limit_w)):
                limit = self.limit_lines.get((key, sample.index))
                if limit is not None and value is not None and limit.value() != value:
                    limit.setPos(value)
                    limit.setVisible(True)


__all__ = ["PLOTS", "PLOT_KEYS", "AgoAxis", "Charts", "Line", "PlotSpec", "plot_title"]
