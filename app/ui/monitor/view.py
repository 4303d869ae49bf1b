"""The Monitor tab: live plots of every GPU, a readout of the latest values, alerts in plain words.

:class:`MonitorView` owns the sampling (start, pause, rate, the history's ring buffers, exports) and
lays out its parts: :class:`~app.ui.monitor.readout.ReadoutTable`, :class:`~app.ui.monitor.charts.Charts`
and :class:`~app.ui.monitor.alerts.AlertPanel`.

Threads: :class:`~app.ui.monitor.bridge.TelemetryBridge` moves each snapshot from the sampler's threads
to the GUI thread, where :meth:`MonitorView.add_snapshot` only stores it in the ring buffers and updates
the alerts; the plots are redrawn by a timer at a fixed rate (4 Hz), only when something new arrived
and only while the tab is visible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.errors import RigfitError
from app.core.plan import Plan
from app.hardware.nvml import NvmlApi, load_backend
from app.hardware.telemetry import (
    DEFAULT_WINDOW_S,
    GpuInfo,
    TelemetryAlert,
    TelemetryHistory,
    TelemetrySnapshot,
    alert_changes,
    check_interval,
    evaluate_alerts,
)
from app.ui.monitor.alerts import AlertPanel, cleared_message
from app.ui.monitor.bridge import CsvExport, ExportSignals, TelemetryBridge
from app.ui.monitor.charts import PLOT_KEYS, PLOTS, Charts
from app.ui.monitor.readout import ReadoutTable

RATES_HZ: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0)
DEFAULT_INTERVAL_S = 0.5
SPANS_S: tuple[tuple[str, float], ...] = (("1 min", 60.0), ("5 min", 300.0), ("15 min", 900.0))
DEFAULT_SPAN_S = 300.0
REPAINT_INTERVAL_MS = 250  # plots redraw at most 4 times a second whatever the sampling rate


def _closest(values: Sequence[float], wanted: float) -> int:
    return min(range(len(values)), key=lambda i: abs(values[i] - wanted))


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
        self._exports: set[ExportSignals] = set()
        self.history: TelemetryHistory | None = None
        self.alerts: tuple[TelemetryAlert, ...] = ()
        self.error_message: str | None = None
        self.predicted_vram_mib: dict[int, float] = {}
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
        self.repaint_timer.timeout.connect(self._paint_if_dirty)

        self.readout = ReadoutTable()
        self.charts = Charts(span_s)
        self.alert_panel = AlertPanel()
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
        self.rate_combo.setCurrentIndex(_closest(RATES_HZ, 1.0 / self.interval_s))
        self.rate_combo.currentIndexChanged.connect(self._on_rate_changed)
        bar.addWidget(self.rate_combo)

        bar.addWidget(QtWidgets.QLabel("Show:"))
        self.span_combo = QtWidgets.QComboBox()
        self.span_combo.setObjectName("monitorSpan")
        for label, seconds in SPANS_S:
            self.span_combo.addItem(f"last {label}", seconds)
        self.span_combo.setCurrentIndex(_closest([s for _, s in SPANS_S], self.span_s))
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
            action.setChecked(spec.key in self.charts.visible_plots)
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
        layout.addWidget(self.readout)

        splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(self.charts)
        splitter.addWidget(self.alert_panel)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 0)
        splitter.setSizes([700, 150])
        layout.addWidget(splitter, 1)

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
        index = _closest([1.0 / hz for hz in RATES_HZ], interval_s)
        if self.rate_combo.currentIndex() != index:
            self.rate_combo.blockSignals(True)
            self.rate_combo.setCurrentIndex(index)
            self.rate_combo.blockSignals(False)

    def set_span(self, span_s: float) -> None:
        """Show the last ``span_s`` seconds."""
        self.span_s = float(span_s)
        self.charts.set_span(self.span_s)
        self._invalidate()

    @property
    def visible_plots(self) -> tuple[str, ...]:
        return self.charts.visible_plots

    def set_plot_visible(self, key: str, visible: bool) -> None:
        """Show or hide one plot (``PLOT_KEYS``). Hidden plots are not updated at all."""
        if key not in PLOT_KEYS:
            raise RigfitError(f"no plot named '{key}' (plots: {', '.join(PLOT_KEYS)})")
        self.charts.set_plot_visible(key, visible)
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
        self.charts.set_predicted_vram(self.predicted_vram_mib)

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
            self.alert_panel.add_message(event, snapshot.unix_time)
        before = self.alerts
        after = evaluate_alerts(snapshot, before)
        appeared, cleared = alert_changes(before, after)
        self.alerts = after
        for alert in appeared:
            if alert.code != "gpu-lost":  # the lost-GPU event already said it
                self.alert_panel.add_message(f"Alert: {alert.message}", snapshot.unix_time)
        for alert in cleared:
            self.alert_panel.add_message(cleared_message(alert), snapshot.unix_time)
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
        self.charts.build_curves(snapshot)
        self.readout.set_gpus(snapshot)

    def _show_alerts(self) -> None:
        self.alert_panel.show_alerts(
            self.alerts, sampling=self.history is not None and self.error_message is None
        )

    def alert_codes(self) -> list[tuple[str, int]]:
        """``(code, gpu)`` of the alerts listed, in list order (empty when none)."""
        return self.alert_panel.alert_codes()

    # ------------------------------------------------------------------------------------------ painting
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
        self.charts.show_history(history)
        latest = history.latest
        if latest is not None:
            self.readout.show_snapshot(latest)

    def _on_failed(self, message: str) -> None:
        self.error_message = message
        self.bridge.stop()
        self.repaint_timer.stop()
        self.start_button.setText("Start")
        self.status_label.setText(message)
        self._show_alerts()

    # ------------------------------------------------------------------------------------------ export
    def export_csv(self, path: str | Path) -> None:
        """Write the buffered history to ``path`` as CSV on a pool thread; :attr:`export_finished`
        reports the outcome. The copy is taken now, so sampling goes on meanwhile."""
        if self.history is None or self.history.count == 0:
            raise RigfitError("nothing to export yet: start sampling first")
        task = CsvExport(self.history.export_data(), Path(path))
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
        pixmap = self.charts.grab()
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


def predicted_from_plan(plan: Plan, baseline_used_mib: Mapping[int, float] | None = None) -> dict[int, float]:
    """Predicted NVML "used" per GPU for :meth:`MonitorView.set_predicted_vram` from a
    :class:`~app.core.plan.Plan`: each device's planned total plus what was used before the load."""
    base = baseline_used_mib or {}
    return {int(d.index): float(d.total_mib) + float(base.get(d.index, 0.0)) for d in plan.devices}


__all__ = ["REPAINT_INTERVAL_MS", "MonitorView", "predicted_from_plan"]
