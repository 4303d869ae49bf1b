"""Telemetry to the GUI thread, and the CSV export off it: the Monitor tab's two background paths.

:class:`TelemetryBridge` owns the :class:`~app.hardware.telemetry.TelemetrySampler` (its threads never
touch a widget) and re-emits each snapshot as a Qt signal; the bridge lives on the GUI thread, so the
connection is queued and the slots run there. :class:`CsvExport` writes a copy of the history on a
pool thread (a full 8-GPU window takes about a second).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6 import QtCore

from app.core.errors import RigfitError
from app.hardware.nvml import NvmlApi, load_backend
from app.hardware.telemetry import HistoryExport, TelemetrySampler, TelemetrySnapshot

log = logging.getLogger(__name__)


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


class ExportSignals(QtCore.QObject):
    done = QtCore.Signal(str, int)  # path, rows
    failed = QtCore.Signal(str)


class CsvExport(QtCore.QRunnable):
    """Writes a history copy to CSV on a pool thread; the outcome comes back through :attr:`signals`."""

    def __init__(self, data: HistoryExport, path: Path) -> None:
        super().__init__()
        self.data = data
        self.path = path
        self.signals = ExportSignals()

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


__all__ = ["CsvExport", "ExportSignals", "TelemetryBridge"]
