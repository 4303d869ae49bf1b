"""The Monitor tab: live plots of every GPU, a readout of the latest values, alerts in plain words.

Threads: :class:`TelemetryBridge` owns the :class:`~app.hardware.telemetry.TelemetrySampler` (its
threads never touch a widget) and re-emits each snapshot as a Qt signal; the bridge lives on the GUI
thread, so the connection is queued and :meth:`MonitorView.add_snapshot` runs on the GUI thread. It
only stores the snapshot in the ring buffers and updates the alerts; the plots are redrawn by a timer
at a fixed rate (4 Hz), only when something new arrived and only while the tab is visible.

Plots (pyqtgraph): every curve is created once per GPU and updated with ``setData``, clipped to the
view, auto-downsampled (peak mode, so spikes survive); the X axis is "seconds before now" over a
fixed span, so the view never rescales. The VRAM plot draws each GPU's capacity (dashed) and, when the
Run tab has loaded a model, the planner's predicted usage (dotted, :meth:`MonitorView.set_predicted_vram`),
so plan and reality meet on one chart. Colours come from :mod:`app.ui.colors`, the same as elsewhere.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app.core.errors import RigfitError
from app.core.plan import Plan
from app.hardware.nvml import NvmlApi, load_backend
from app.hardware.telemetry import (
    DEFAULT_WINDOW_S,
    LEVEL_ERROR,
    LEVEL_INFO,
    GpuInfo,
    GpuSample,
    HistoryExport,
    TelemetryAlert,
    TelemetryHistory,
    TelemetrySampler,
    TelemetrySnapshot,
    alert_changes,
    check_interval,
    describe_clock_events,
    evaluate_alerts,
)
from app.ui.theme import gpu_color, gpu_swatch_html

log = logging.getLogger(__name__)

RATES_HZ: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0)
DEFAULT_INTERVAL_S = 0.5
SPANS_S: tuple[tuple[str, float], ...] = (("1 min", 60.0), ("5 min", 300.0), ("15 min", 900.0))
DEFAULT_SPAN_S = 300.0
REPAINT_INTERVAL_MS = 250  # plots redraw at most 4 times a second whatever the sampling rate
MAX_MESSAGES = 200


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


# ------------------------------------------------------------------------------------------ adapter
class TelemetryBridge(QtCore.QObject):
    """Moves snapshots from the sampler thread to the GUI thread.

    The sampler calls :meth:`_deliver` on its own thread; emitting a signal of this GUI-thread object
    from there queues the call of every connected slot on the GUI thread. Nothing here touches a
    widget.
    """

    snapshot = QtCore.Signal(object)  # TelemetrySnapshot
    failed = QtCore.Signal(str)

    def __init__(
        self,
        backend_factory: Callable[[], NvmlApi] = load_backend,
        parent: QtCore.QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._backend_factory = backend_factory
        self._sampler: TelemetrySampler | None = None

    @property
    def running(self) -> bool:
        return self._sampler is not None and self._sampler.running

    def start(self, interval_s: float) -> None:
        """Start sampling (NVML starts on the sampler thread; a failure arrives as :attr:`failed`)."""
        if self.running:
            return
        self._sampler = TelemetrySampler(
            interval_s=interval_s,
            on_snapshot=self._deliver,
            on_error=self._fail,
            backend_factory=self._backend_factory,
        )
        self._sampler.start()

    def set_interval(self, interval_s: float) -> None:
        if self._sampler is not None:
            self._sampler.set_interval(interval_s)

    def stop(self) -> None:
        """Stop and join the sampler threads (returns once no NVML call is in flight)."""
        sampler, self._sampler = self._sampler, None
        if sampler is not None:
            sampler.stop()

    def _deliver(self, snapshot: TelemetrySnapshot) -> None:  # sampler thread
        self.snapshot.emit(snapshot)

    def _fail(self, message: str) -> None:  # sampler thread
        self.failed.emit(message)


class _ExportSignals(QtCore.QObject):
    done = QtCore.Signal(str, int)  # path, rows
    failed = QtCore.Signal(str)


class _CsvExport(QtCore.QRunnable):
    """Writes a history copy to CSV on a pool thread (a full 8-GPU window takes about a second)."""

    def __init__(self, data: HistoryExport, path: Path) -> None:
        super().__init__()
        self.data = data
        self.path = path
        self.signals = _ExportSignals()

    def run(self) -> None:
        try:
            rows = self.data.to_csv(self.path)
        except RigfitError as exc:
            self.signals.failed.emit(str(exc))
        except Exception as exc:  # a bug must reach the user, not kill the pool thread silently
            log.exception("CSV export failed")
            self.signals.failed.emit(f"{type(exc).__name__}: {exc}")
        else:
            self.signals.done.emit(str(self.path), rows)


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


def _fmt(value: float | None, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}{unit}"


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
        vram = f"{sample.vram_used_mib / 1024:.1f} / {sample.vram_total_mib / 1024:.1f} GiB"
    temp = _fmt(sample.temperature_c, " °C")
    if sample.slowdown_temp_c is not None and sample.temperature_c is not None:
        temp += f" (slows at {sample.slowdown_temp_c:.0f})"
    power = _fmt(sample.power_w, " W")
    if sample.power_limit_w is not None and sample.power_w is not None:
        power = f"{sample.power_w:.0f} / {sample.power_limit_w:.0f} W"
    util = f"{_fmt(sample.gpu_util_pct, '%')} / {_fmt(sample.mem_util_pct, '%')}"
    clocks = f"{_fmt(sample.sm_clock_mhz)} / {_fmt(sample.mem_clock_mhz)} MHz"
    link = "n/a"
    if sample.pcie_gen is not None or sample.pcie_width is not None:
        link = f"Gen{sample.pcie_gen or '?'} x{sample.pcie_width or '?'}"
        if sample.pcie_max_gen is not None and sample.pcie_max_width is not None:
            link += f" of Gen{sample.pcie_max_gen} x{sample.pcie_max_width}"
    traffic = f"{_fmt(sample.pcie_tx_mib_s, '', 1)} / {_fmt(sample.pcie_rx_mib_s, '', 1)} MiB/s"
    fan = _fmt(sample.fan_pct, "%")
    reasons = describe_clock_events(sample.clock_events)
    return (vram, temp, power, util, clocks, link, traffic, fan, reasons)


class MonitorView(QtWidgets.QWidget):
    """The Monitor tab (see the module docstring).

    ``backend_factory`` gives the NVML backend (default: :func:`app.hardware.nvml.load_backend`,
    the fake when ``RIGFIT_FAKE_NVML`` is set). With ``auto_start`` the sampler starts the first time
    the tab is shown; the Run tab may call :meth:`start` itself. Call :meth:`shutdown` before the
    window goes away (the main window does, in its close event).
    """

    alerts_changed = QtCore.Signal(tuple)  # the active TelemetryAlerts
    export_finished = QtCore.Signal(str)  # a one-line message: written, or why not

    def __init__(
        self,
        backend_factory: Callable[[], NvmlApi] = load_backend,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        window_s: float = DEFAULT_WINDOW_S,
        span_s: float = DEFAULT_SPAN_S,
        auto_start: bool = True,
        pool: QtCore.QThreadPool | None = None,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("monitorView")
        self.interval_s = interval_s
        self.window_s = window_s
        self.span_s = span_s
        self.auto_start = auto_start
        self._started_once = False
        self._pool = pool or QtCore.QThreadPool.globalInstance()
        self._exports: set[_ExportSignals] = set()
        self.history: TelemetryHistory | None = None
        self.alerts: tuple[TelemetryAlert, ...] = ()
        self.error_message: str | None = None
        self.predicted_vram_mib: dict[int, float] = {}
        self.curves: dict[tuple[str, int], pg.PlotDataItem] = {}
        self.capacity_lines: dict[int, pg.InfiniteLine] = {}
        self.predicted_lines: dict[int, pg.InfiniteLine] = {}
        self.limit_lines: dict[tuple[str, int], pg.InfiniteLine] = {}
        self.plots: dict[str, pg.PlotWidget] = {}
        self._visible_plots: set[str] = {p.key for p in PLOTS if p.visible}
        self._dirty = False
        self._gap_pending = False
        self._status_pending = False
        self._painted_appended = -1
        self.repaints = 0  # plot refreshes done (tests and benchmarks check that idle means none)

        self.bridge = TelemetryBridge(backend_factory, self)
        self.bridge.snapshot.connect(self.add_snapshot)
        self.bridge.failed.connect(self._on_failed)
        self.repaint_timer = QtCore.QTimer(self)
        self.repaint_timer.setObjectName("monitorRepaintTimer")
        self.repaint_timer.setInterval(REPAINT_INTERVAL_MS)
        self.repaint_timer.timeout.connect(self._on_repaint_timer)

        self._build()

    # ------------------------------------------------------------------------------------------ layout
    def _build(self) -> None:
        layout = QtWidgets.QVBoxLayout(self)
        bar = QtWidgets.QHBoxLayout()
        self.start_button = QtWidgets.QPushButton("Start")
        self.start_button.setObjectName("monitorStart")
        self.start_button.clicked.connect(self._on_start_clicked)
        bar.addWidget(self.start_button)

        bar.addWidget(QtWidgets.QLabel("Samples per second:"))
        self.rate_combo = QtWidgets.QComboBox()
        self.rate_combo.setObjectName("monitorRate")
        for hz in RATES_HZ:
            self.rate_combo.addItem(f"{hz:g}", 1.0 / hz)
        self.rate_combo.setCurrentIndex(self._closest(RATES_HZ, 1.0 / self.interval_s))
        self.rate_combo.currentIndexChanged.connect(self._on_rate_changed)
        bar.addWidget(self.rate_combo)

        bar.addWidget(QtWidgets.QLabel("Show:"))
        self.span_combo = QtWidgets.QComboBox()
        self.span_combo.setObjectName("monitorSpan")
        for label, seconds in SPANS_S:
            self.span_combo.addItem(f"last {label}", seconds)
        self.span_combo.setCurrentIndex(self._closest([s for _, s in SPANS_S], self.span_s))
        self.span_combo.currentIndexChanged.connect(self._on_span_changed)
        bar.addWidget(self.span_combo)

        self.metrics_button = QtWidgets.QToolButton()
        self.metrics_button.setText("Metrics")
        self.metrics_button.setPopupMode(QtWidgets.QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QtWidgets.QMenu(self.metrics_button)
        self.metric_actions: dict[str, QtGui.QAction] = {}
        for spec in PLOTS:
            action = menu.addAction(spec.title)
            action.setCheckable(True)
            action.setChecked(spec.key in self._visible_plots)
            action.toggled.connect(lambda on, key=spec.key: self.set_plot_visible(key, on))
            self.metric_actions[spec.key] = action
        self.metrics_button.setMenu(menu)
        bar.addWidget(self.metrics_button)

        self.csv_button = QtWidgets.QPushButton("Export CSV…")
        self.csv_button.clicked.connect(self._on_export_csv_clicked)
        bar.addWidget(self.csv_button)
        self.png_button = QtWidgets.QPushButton("Export PNG…")
        self.png_button.clicked.connect(self._on_export_png_clicked)
        bar.addWidget(self.png_button)
        bar.addStretch(1)
        layout.addLayout(bar)

        self.status_label = QtWidgets.QLabel("Not sampling yet.")
        self.status_label.setObjectName("monitorStatus")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)

        self.readout = QtWidgets.QTableWidget(0, len(READOUT_COLUMNS))
        self.readout.setObjectName("monitorReadout")
        self.readout.setHorizontalHeaderLabels(list(READOUT_COLUMNS))
        self.readout.verticalHeader().setVisible(False)
        self.readout.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.readout.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.NoSelection)
        self.readout.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.readout.horizontalHeader().setSectionResizeMode(
            QtWidgets.QHeaderView.ResizeMode.ResizeToContents
        )
        self.readout.horizontalHeader().setStretchLastSection(True)
        self.readout.setSizePolicy(
            QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Maximum
        )

        self.readout.setVerticalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        layout.addWidget(self.readout)
        self._fit_readout()

        splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        splitter.setChildrenCollapsible(False)

        self.plot_area = QtWidgets.QWidget()
        self.plot_area.setObjectName("monitorPlots")
        plot_layout = QtWidgets.QVBoxLayout(self.plot_area)
        plot_layout.setContentsMargins(0, 0, 0, 0)
        plot_layout.setSpacing(2)
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
            item.setTitle(self._plot_title(spec), size="9pt")
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
            widget.setVisible(spec.key in self._visible_plots)
            plot_layout.addWidget(widget)
            self.plots[spec.key] = widget
        splitter.addWidget(self.plot_area)

        lower = QtWidgets.QWidget()
        lower_layout = QtWidgets.QHBoxLayout(lower)
        lower_layout.setContentsMargins(0, 0, 0, 0)
        alerts_box = QtWidgets.QGroupBox("Alerts")
        alerts_layout = QtWidgets.QVBoxLayout(alerts_box)
        self.alert_list = QtWidgets.QListWidget()
        self.alert_list.setObjectName("monitorAlerts")
        self.alert_list.setWordWrap(True)
        alerts_layout.addWidget(self.alert_list)
        lower_layout.addWidget(alerts_box, 3)
        messages_box = QtWidgets.QGroupBox("Messages")
        messages_layout = QtWidgets.QVBoxLayout(messages_box)
        self.message_list = QtWidgets.QListWidget()
        self.message_list.setObjectName("monitorMessages")
        self.message_list.setWordWrap(True)
        messages_layout.addWidget(self.message_list)
        lower_layout.addWidget(messages_box, 2)
        splitter.addWidget(lower)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 0)
        splitter.setSizes([700, 150])
        layout.addWidget(splitter, 1)
        self._show_no_alerts()
        self._label_time_axis()

    def _fit_readout(self) -> None:
        """As tall as its rows: the plots get the rest."""
        table = self.readout
        rows = max(1, table.rowCount())
        height = table.horizontalHeader().sizeHint().height() + 2 * table.frameWidth()
        height += (
            sum(table.rowHeight(r) for r in range(table.rowCount()))
            or table.verticalHeader().defaultSectionSize() * rows
        )
        table.setFixedHeight(height)

    def _label_time_axis(self) -> None:
        """Time labels under the lowest visible plot only (the plots share the time axis)."""
        visible = [k for k in PLOT_KEYS if k in self._visible_plots]
        for key, widget in self.plots.items():
            widget.getPlotItem().getAxis("bottom").setStyle(showValues=bool(visible) and key == visible[-1])

    @staticmethod
    def _closest(values: Sequence[float], wanted: float) -> int:
        return min(range(len(values)), key=lambda i: abs(values[i] - wanted))

    @staticmethod
    def _plot_title(spec: PlotSpec) -> str:
        if len(spec.lines) == 1:
            return spec.title
        parts = [
            f"{'solid' if ln.style == QtCore.Qt.PenStyle.SolidLine else 'dashed'}: {ln.label}"
            for ln in spec.lines
        ]
        return f"{spec.title} ({', '.join(parts)})"

    # ------------------------------------------------------------------------------------------ control
    @property
    def sampling(self) -> bool:
        """True while the sampler threads run."""
        return self.bridge.running

    def start(self) -> None:
        """Start sampling at the chosen rate (NVML starts off the GUI thread)."""
        self._started_once = True
        if self.bridge.running:
            return
        self.error_message = None
        self._gap_pending = self.history is not None and self.history.count > 0
        self.status_label.setText("Starting NVML…")
        self._status_pending = True
        self.bridge.start(self.interval_s)
        self.start_button.setText("Pause")
        if self.isVisible():
            self.repaint_timer.start()

    def stop(self) -> None:
        """Pause sampling; the history stays (the next start leaves a gap in the curves)."""
        self.bridge.stop()
        self.repaint_timer.stop()
        self.start_button.setText("Start")
        if self.history is not None and self.error_message is None:
            self.status_label.setText(self._status_text(paused=True))
        self._paint_if_dirty()

    def shutdown(self) -> None:
        """Stop the threads and timers and wait for a CSV export in flight (window closing)."""
        self.bridge.stop()
        self.repaint_timer.stop()
        if self._exports:
            self._pool.waitForDone(10000)

    def timers_active(self) -> bool:
        return self.repaint_timer.isActive()

    def set_interval(self, interval_s: float) -> None:
        """Change the sampling interval (0.1–2 s); the history keeps its window at the new rate."""
        interval_s = check_interval(interval_s)  # RigfitError outside 0.1–2 s, before any change
        if math.isclose(interval_s, self.interval_s):
            return
        self.bridge.set_interval(interval_s)
        self.interval_s = interval_s
        if self.history is not None:
            self.history = self.history.resized(interval_s=interval_s)
        index = self._closest([1.0 / hz for hz in RATES_HZ], interval_s)
        if self.rate_combo.currentIndex() != index:
            self.rate_combo.blockSignals(True)
            self.rate_combo.setCurrentIndex(index)
            self.rate_combo.blockSignals(False)

    def set_span(self, span_s: float) -> None:
        """Show the last ``span_s`` seconds."""
        self.span_s = float(span_s)
        next(iter(self.plots.values())).getPlotItem().setXRange(-self.span_s, 0, padding=0)
        self._invalidate()

    @property
    def visible_plots(self) -> tuple[str, ...]:
        return tuple(k for k in PLOT_KEYS if k in self._visible_plots)

    def set_plot_visible(self, key: str, visible: bool) -> None:
        """Show or hide one plot (``PLOT_KEYS``). Hidden plots are not updated at all."""
        if key not in self.plots:
            raise RigfitError(f"no plot named '{key}' (plots: {', '.join(PLOT_KEYS)})")
        if visible:
            self._visible_plots.add(key)
        else:
            self._visible_plots.discard(key)
        self.plots[key].setVisible(visible)
        self._label_time_axis()
        action = self.metric_actions[key]
        if action.isChecked() != visible:
            action.blockSignals(True)
            action.setChecked(visible)
            action.blockSignals(False)
        if visible:
            self._invalidate()

    def set_predicted_vram(self, predicted_mib: Mapping[int, float] | None) -> None:
        """Draw the planner's predicted VRAM use per GPU (NVML index -> MiB) on the VRAM plot.

        Pass what NVML should report once the model is loaded: the used VRAM before the load plus the
        plan's per-device total. ``None`` or ``{}`` removes the lines (model unloaded).
        """
        self.predicted_vram_mib = {int(k): float(v) for k, v in (predicted_mib or {}).items()}
        self._apply_predicted()

    def clear_predicted_vram(self) -> None:
        self.set_predicted_vram(None)

    # ------------------------------------------------------------------------------------------ data
    @QtCore.Slot(object)
    def add_snapshot(self, snapshot: object) -> None:
        """Take one snapshot (GUI thread): ring buffers, alerts, messages. Plots follow on the timer."""
        assert isinstance(snapshot, TelemetrySnapshot)
        indexes = tuple(s.index for s in snapshot.gpus)
        if self.history is None or self.history.gpu_indexes != indexes:
            self._new_history(snapshot)
        elif self._gap_pending:
            self.history.mark_gap()
        self._gap_pending = False
        history = self.history
        assert history is not None
        history.append(snapshot)
        for event in snapshot.events:
            self._add_message(event, snapshot.unix_time)
        before = self.alerts
        after = evaluate_alerts(snapshot, before)
        appeared, cleared = alert_changes(before, after)
        self.alerts = after
        for alert in appeared:
            if alert.code != "gpu-lost":  # the lost-GPU event already said it
                self._add_message(f"Alert: {alert.message}", snapshot.unix_time)
        for alert in cleared:
            self._add_message(
                f"Cleared: GPU {alert.gpu} {_CLEARED_WORDS.get(alert.code, alert.code)}", snapshot.unix_time
            )
        if appeared or cleared or [a.message for a in before] != [a.message for a in after]:
            self._show_alerts()
        if appeared or cleared:
            self.alerts_changed.emit(after)
        if self._status_pending:
            self._status_pending = False
            self.status_label.setText(self._status_text())
        self._dirty = True

    def _status_text(self, paused: bool = False) -> str:
        history = self.history
        if history is None:
            return "Not sampling yet."
        n = len(history.gpus)
        what = f"{n} GPU{'s' if n != 1 else ''}"
        if paused:
            return f"Paused: {what}, {history.count} samples kept (up to {history.window_s / 60:g} min)."
        return f"Sampling {what} {1 / self.interval_s:g} times a second; keeping the last {history.window_s / 60:g} min."

    def _new_history(self, snapshot: TelemetrySnapshot) -> None:
        gpus = [GpuInfo(index=s.index, name=s.name, vram_total_mib=s.vram_total_mib) for s in snapshot.gpus]
        self.history = TelemetryHistory(gpus, window_s=self.window_s, interval_s=self.interval_s)
        if self.alerts:  # alerts of GPUs that are no longer sampled would never clear
            self.alerts = ()
            self._show_alerts()
            self.alerts_changed.emit(())
        self._painted_appended = -1
        self._build_curves(snapshot)

    def _build_curves(self, snapshot: TelemetrySnapshot) -> None:
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
                cap.setToolTip(f"GPU {sample.index} capacity {gib:.1f} GiB")
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
        self.readout.setRowCount(len(snapshot.gpus))
        for row, sample in enumerate(snapshot.gpus):
            label = QtWidgets.QLabel(f"{gpu_swatch_html(sample.index)} GPU {sample.index} {sample.name}")
            label.setTextFormat(QtCore.Qt.TextFormat.RichText)
            label.setContentsMargins(4, 0, 4, 0)
            self.readout.setCellWidget(row, 0, label)
            for col in range(1, len(READOUT_COLUMNS)):
                self.readout.setItem(row, col, QtWidgets.QTableWidgetItem(""))
        self.readout.resizeRowsToContents()
        self._fit_readout()
        self._apply_predicted()

    def _apply_predicted(self) -> None:
        for index, line in self.predicted_lines.items():
            mib = self.predicted_vram_mib.get(index)
            line.setVisible(mib is not None)
            if mib is not None:
                line.setPos(mib / 1024)
                line.setToolTip(f"GPU {index}: the plan predicts {mib / 1024:.1f} GiB used")

    # ------------------------------------------------------------------------------------------ painting
    def _on_repaint_timer(self) -> None:
        self._paint_if_dirty()

    def _paint_if_dirty(self) -> None:
        if self._dirty and self.isVisible():
            self.refresh()

    def _invalidate(self) -> None:
        """The plots must be redrawn even without new samples (span or plot choice changed)."""
        self._painted_appended = -1
        self._dirty = True
        self._paint_if_dirty()

    def refresh(self) -> None:
        """Push the visible span of the history into the visible plots and the readout, unless
        nothing changed since the last time."""
        self._dirty = False
        history = self.history
        if history is None or history.count == 0 or history.appended == self._painted_appended:
            return
        self._painted_appended = history.appended
        self.repaints += 1
        t = history.times()
        newest = float(t[-1])
        # One sample before the span keeps the curve reaching the left edge.
        start = max(0, int(np.searchsorted(t, newest - self.span_s, side="left")) - 1)
        x = t[start:] - newest
        for spec in PLOTS:
            if spec.key not in self._visible_plots:
                continue
            for line in spec.lines:
                for gpu in history.gpu_indexes:
                    y = history.series(line.metric, gpu, start)
                    if line.scale != 1.0:
                        y *= line.scale
                    self.curves[(line.metric, gpu)].setData(x, y)
        latest = history.latest
        if latest is not None:
            self._update_readout(latest)

    def _update_readout(self, snapshot: TelemetrySnapshot) -> None:
        for row, sample in enumerate(snapshot.gpus):
            for col, text in enumerate(readout_cells(sample), start=1):
                item = self.readout.item(row, col)
                if item is not None and item.text() != text:
                    item.setText(text)
            for key, value in (("temperature", sample.slowdown_temp_c), ("power", sample.power_limit_w)):
                limit = self.limit_lines.get((key, sample.index))
                if limit is not None and value is not None and limit.value() != value:
                    limit.setPos(value)
                    limit.setVisible(True)

    # ------------------------------------------------------------------------------------------ alerts
    def _show_no_alerts(self) -> None:
        self.alert_list.clear()
        text = (
            "No alerts: every GPU is within its limits."
            if self.history is not None and self.error_message is None
            else "No alerts: no GPU is being sampled."
        )
        item = QtWidgets.QListWidgetItem(text)
        item.setData(QtCore.Qt.ItemDataRole.UserRole, None)
        item.setFlags(QtCore.Qt.ItemFlag.NoItemFlags | QtCore.Qt.ItemFlag.ItemIsEnabled)
        self.alert_list.addItem(item)

    def _show_alerts(self) -> None:
        if not self.alerts:
            self._show_no_alerts()
            return
        self.alert_list.clear()
        style = self.style()
        for alert in self.alerts:
            item = QtWidgets.QListWidgetItem(alert.message)
            item.setData(QtCore.Qt.ItemDataRole.UserRole, alert.code)
            item.setData(QtCore.Qt.ItemDataRole.UserRole + 1, alert.gpu)
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
                out.append((str(code), int(item.data(QtCore.Qt.ItemDataRole.UserRole + 1))))
        return out

    def _add_message(self, text: str, unix_time: float) -> None:
        stamp = datetime.fromtimestamp(unix_time).strftime("%H:%M:%S")
        self.message_list.addItem(f"{stamp}  {text}")
        while self.message_list.count() > MAX_MESSAGES:  # a long run keeps memory flat
            self.message_list.takeItem(0)
        self.message_list.scrollToBottom()

    def _on_failed(self, message: str) -> None:
        self.error_message = message
        self.bridge.stop()
        self.repaint_timer.stop()
        self.start_button.setText("Start")
        self.status_label.setText(message)
        self._show_no_alerts()

    # ------------------------------------------------------------------------------------------ export
    def export_csv(self, path: str | Path) -> None:
        """Write the buffered history to ``path`` as CSV on a pool thread; :attr:`export_finished`
        reports the outcome. The copy is taken now, so sampling goes on meanwhile."""
        if self.history is None or self.history.count == 0:
            raise RigfitError("nothing to export yet: start sampling first")
        task = _CsvExport(self.history.export_data(), Path(path))
        signals = task.signals
        self._exports.add(signals)

        def done(where: str, rows: int) -> None:
            self._exports.discard(signals)
            self.export_finished.emit(f"Wrote {rows} rows to {where}")

        def failed(message: str) -> None:
            self._exports.discard(signals)
            self.export_finished.emit(message)

        signals.done.connect(done)
        signals.failed.connect(failed)
        self._pool.start(task)

    def export_png(self, path: str | Path) -> None:
        """Save the visible plots as a PNG image."""
        self._painted_appended = -1
        self.refresh()
        pixmap = self.plot_area.grab()
        if not pixmap.save(str(path), "PNG"):
            raise RigfitError(f"cannot write the plot image to {path}")

    def _on_export_csv_clicked(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Export telemetry history", "rigfit-telemetry.csv", "CSV files (*.csv)"
        )
        if path:
            try:
                self.export_csv(path)
            except RigfitError as exc:
                self.export_finished.emit(str(exc))

    def _on_export_png_clicked(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Export plots", "rigfit-telemetry.png", "PNG images (*.png)"
        )
        if path:
            try:
                self.export_png(path)
            except RigfitError as exc:
                self.export_finished.emit(str(exc))
            else:
                self.export_finished.emit(f"Saved the plots to {path}")

    # ------------------------------------------------------------------------------------------ events
    def _on_start_clicked(self) -> None:
        if self.bridge.running:
            self.stop()
        else:
            self.start()

    def _on_rate_changed(self, index: int) -> None:
        interval = self.rate_combo.itemData(index)
        if isinstance(interval, float):
            self.set_interval(interval)
            if self.bridge.running:
                self.status_label.setText(self._status_text())

    def _on_span_changed(self, index: int) -> None:
        seconds = self.span_combo.itemData(index)
        if isinstance(seconds, float):
            self.set_span(seconds)

    def showEvent(self, event: QtGui.QShowEvent) -> None:
        super().showEvent(event)
        if self.auto_start and not self._started_once:
            self.start()
        elif self.bridge.running:
            self.repaint_timer.start()
            self._paint_if_dirty()

    def hideEvent(self, event: QtGui.QHideEvent) -> None:
        # Sampling goes on (the history is what the user comes back to); painting stops.
        self.repaint_timer.stop()
        super().hideEvent(event)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)


_CLEARED_WORDS: dict[str, str] = {
    "thermal-throttle": "is no longer slowed down by heat",
    "power-cap": "is no longer held at its power limit",
    "hw-slowdown": "is no longer slowed down by the hardware",
    "vram-full": "has VRAM to spare again",
    "pcie-below-max": "PCIe link is back at full speed (or the GPU is idle)",
    "near-slowdown-temp": "has cooled down",
    "gpu-lost": "is back",
}


def predicted_from_plan(plan: Plan, baseline_used_mib: Mapping[int, float] | None = None) -> dict[int, float]:
    """Predicted NVML "used" per GPU for :meth:`MonitorView.set_predicted_vram` from a
    :class:`~app.core.plan.Plan`: each device's planned total plus what was used before the load."""
    base = baseline_used_mib or {}
    return {int(d.index): float(d.total_mib) + float(base.get(d.index, 0.0)) for d in plan.devices}
