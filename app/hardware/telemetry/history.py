"""The history: a window of samples in fixed-size float64 ring buffers (flat memory), and CSV export."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.core.errors import RigfitError
from app.hardware.telemetry.values import (
    DEFAULT_INTERVAL_S,
    DEFAULT_WINDOW_S,
    GpuInfo,
    GpuSample,
    TelemetrySnapshot,
    check_interval,
    decode_clock_events,
)

# The float metrics kept per GPU, in ring-buffer order. Integers (PCIe gen/width, the reason mask)
# are exact in float64.
METRICS: tuple[str, ...] = (
    "vram_used_mib",
    "vram_total_mib",
    "vram_free_mib",
    "temperature_c",
    "power_w",
    "power_limit_w",
    "gpu_util_pct",
    "mem_util_pct",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "pcie_tx_mib_s",
    "pcie_rx_mib_s",
    "pcie_gen",
    "pcie_width",
    "fan_pct",
    "clock_event_mask",
    "slowdown_temp_c",
)
METRIC_INDEX: dict[str, int] = {name: i for i, name in enumerate(METRICS)}
_SAMPLE_FIELDS = {f.name for f in fields(GpuSample)}
assert set(METRICS) <= _SAMPLE_FIELDS

FloatArray = npt.NDArray[np.float64]


def capacity_for(window_s: float, interval_s: float) -> int:
    """Ring slots needed to hold ``window_s`` of samples taken every ``interval_s`` (plus one)."""
    if not window_s > 0:
        raise RigfitError("the history window must be a positive number of seconds")
    # The tolerance keeps 900 s / 0.1 s at 9000 slots despite float rounding (9000.000000000002).
    return math.ceil(window_s / check_interval(interval_s) - 1e-9) + 1


class TelemetryHistory:
    """The last ``window_s`` seconds of samples in fixed-size float64 ring buffers (NaN = missing).

    All memory is allocated here, once: ``len(METRICS) x GPUs x capacity`` floats plus two time
    rows. Not thread-safe: one thread owns it.
    """

    def __init__(
        self,
        gpus: Sequence[GpuInfo],
        window_s: float = DEFAULT_WINDOW_S,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self.gpus: tuple[GpuInfo, ...] = tuple(gpus)
        self.window_s = float(window_s)
        self.interval_s = check_interval(interval_s)
        self.capacity = capacity_for(self.window_s, self.interval_s)
        self._column: dict[int, int] = {g.index: i for i, g in enumerate(self.gpus)}
        n = len(self.gpus)
        # Layout (metric, gpu, slot): one series is contiguous, which is what the plots read.
        self._data: FloatArray = np.full((len(METRICS), n, self.capacity), np.nan, dtype=np.float64)
        self._t: FloatArray = np.full(self.capacity, np.nan, dtype=np.float64)
        self._unix: FloatArray = np.full(self.capacity, np.nan, dtype=np.float64)
        self._row: FloatArray = np.empty((len(METRICS), n), dtype=np.float64)
        self._pos = 0  # next slot to write
        self.count = 0
        self.appended = 0  # samples ever appended (a counter for "has anything changed")
        self.latest: TelemetrySnapshot | None = None

    @property
    def gpu_indexes(self) -> tuple[int, ...]:
        return tuple(g.index for g in self.gpus)

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes + self._t.nbytes + self._unix.nbytes + self._row.nbytes)

    def append(self, snapshot: TelemetrySnapshot) -> None:
        """Store one snapshot; the oldest sample goes once the window is full. GPUs not in the
        history are ignored; a GPU missing from the snapshot (or lost) becomes NaN: a gap."""
        row = self._row
        row.fill(np.nan)
        column = self._column
        for sample in snapshot.gpus:
            g = column.get(sample.index)
            if g is None or sample.lost:
                continue
            for m, name in enumerate(METRICS):
                value = getattr(sample, name)
                if value is not None:
                    row[m, g] = value
        self._write(snapshot.t_s, snapshot.unix_time, row)
        self.latest = snapshot

    def mark_gap(self) -> None:
        """A break in sampling (paused, restarted): the curves do not join across it."""
        if self.count == 0:
            return
        last = int((self._pos - 1) % self.capacity)
        t = float(self._t[last]) + self.interval_s / 2
        unix = float(self._unix[last]) + self.interval_s / 2
        self._row.fill(np.nan)
        self._write(t, unix, self._row)

    def _write(self, t_s: float, unix: float, row: FloatArray) -> None:
        pos = self._pos
        self._data[:, :, pos] = row
        self._t[pos] = t_s
        self._unix[pos] = unix
        self._pos = (pos + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)
        self.appended += 1

    # -- reading ---------------------------------------------------------------------------------------
    def _ordered(self, array: FloatArray, start: int = 0) -> FloatArray:
        """A copy of the last ``count - start`` slots of ``array`` (ring on its last axis), oldest first."""
        n = self.count - start
        if n <= 0:
            return np.empty((*array.shape[:-1], 0), dtype=np.float64)
        first = (self._pos - self.count + start) % self.capacity
        end = first + n
        if end <= self.capacity:
            return array[..., first:end].copy()
        return np.concatenate((array[..., first:], array[..., : end - self.capacity]), axis=-1)

    def times(self) -> FloatArray:
        """Monotonic times of the stored samples, oldest first."""
        return self._ordered(self._t)

    def unix_times(self) -> FloatArray:
        return self._ordered(self._unix)

    def start_since(self, t_s: float) -> int:
        """Index (in oldest-first order) of the first sample at or after ``t_s``."""
        if self.count == 0:
            return 0
        return int(np.searchsorted(self.times(), t_s, side="left"))

    def series(self, metric: str, gpu: int, start: int = 0) -> FloatArray:
        """One metric of one GPU (by NVML index), oldest first, from ordered index ``start``."""
        m = METRIC_INDEX[metric]
        g = self._column[gpu]
        return self._ordered(self._data[m, g], start)

    def window(self, since_t_s: float | None = None) -> tuple[FloatArray, dict[str, FloatArray]]:
        """Times and a ``(metric, gpu)`` block per metric for samples at or after ``since_t_s``:
        ``(t, {metric: array[gpu_column, sample]})``. One ordered copy per metric for all GPUs."""
        t = self.times()
        start = int(np.searchsorted(t, since_t_s, side="left")) if since_t_s is not None else 0
        return t[start:], {name: self._ordered(self._data[i], start) for i, name in enumerate(METRICS)}

    def last_value(self, metric: str, gpu: int) -> float | None:
        if self.count == 0:
            return None
        value = float(self._data[METRIC_INDEX[metric], self._column[gpu], (self._pos - 1) % self.capacity])
        return None if math.isnan(value) else value

    def resized(self, window_s: float | None = None, interval_s: float | None = None) -> TelemetryHistory:
        """A new history with another window or rate, holding as many of the newest samples as fit."""
        new = TelemetryHistory(
            self.gpus,
            window_s=self.window_s if window_s is None else window_s,
            interval_s=self.interval_s if interval_s is None else interval_s,
        )
        keep = min(self.count, new.capacity)
        start = self.count - keep
        data = self._ordered(self._data, start)
        new._data[:, :, :keep] = data
        new._t[:keep] = self._ordered(self._t, start)
        new._unix[:keep] = self._ordered(self._unix, start)
        new._pos = keep % new.capacity
        new.count = keep
        new.appended = keep
        new.latest = self.latest
        return new

    def export_data(self) -> HistoryExport:
        """An immutable copy of everything stored, for writing a CSV file off the GUI thread."""
        return HistoryExport(
            gpus=self.gpus,
            t_s=self.times(),
            unix_time=self.unix_times(),
            data=self._ordered(self._data),
        )

    def to_csv(self, path: str | Path) -> int:
        """Write the buffered history as CSV (see :meth:`HistoryExport.to_csv`); returns the rows."""
        return self.export_data().to_csv(path)


CSV_COLUMNS: tuple[str, ...] = ("time", "unix_time", "seconds", "gpu", "name", *METRICS, "clock_events")


@dataclass(frozen=True)
class HistoryExport:
    """A copy of a history's samples: ``data[metric, gpu, sample]``, times oldest first."""

    gpus: tuple[GpuInfo, ...]
    t_s: FloatArray
    unix_time: FloatArray
    data: FloatArray

    def rows(self) -> Iterable[list[str]]:
        """CSV rows, one per sample and GPU; empty cells where the GPU reported nothing."""
        if self.t_s.size == 0:
            return
        t0 = float(self.t_s[0])
        # Cells are formatted per column with numpy: far faster than Python formatting per cell.
        text = np.char.mod("%.7g", self.data)
        text[np.isnan(self.data)] = ""
        mask_row = METRIC_INDEX["clock_event_mask"]
        for k in range(self.t_s.size):
            t = float(self.t_s[k])
            unix = float(self.unix_time[k])
            stamp = (
                datetime.fromtimestamp(unix).isoformat(timespec="milliseconds") if math.isfinite(unix) else ""
            )
            for g, info in enumerate(self.gpus):
                cells = text[:, g, k].tolist()
                mask = self.data[mask_row, g, k]
                reasons = decode_clock_events(int(mask)) if math.isfinite(mask) else None
                yield [
                    stamp,
                    f"{unix:.3f}" if math.isfinite(unix) else "",
                    f"{t - t0:.3f}",
                    str(info.index),
                    info.name,
                    *cells,
                    " ".join(reasons) if reasons else "",
                ]

    def to_csv(self, path: str | Path) -> int:
        """Write the CSV file (header ``CSV_COLUMNS``); returns the number of data rows."""
        p = Path(path)
        count = 0
        try:
            with p.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(CSV_COLUMNS)
                for row in self.rows():
                    writer.writerow(row)
                    count += 1
        except OSError as exc:
            raise RigfitError(f"cannot write the telemetry history to {p}: {exc.strerror or exc}") from None
        return count
