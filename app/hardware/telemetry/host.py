"""Host telemetry: what runs the model when the GPUs do not — CPU load, system RAM, the worker.

On a computer without an NVIDIA GPU (or with layers left in system RAM) the model runs on the CPU,
so the Monitor tab plots this computer instead: the load of all cores, the RAM in use, and for the
llama.cpp worker process(es) their CPU share, their resident memory and how much of the model file
they map is resident in RAM (the weights; llama.cpp memory-maps the GGUF, so the file's pages count
towards the worker's resident set only once read).

:class:`HostSampler` reads these with psutil on one daemon thread (named ``rigfit-telemetry-host``,
like the GPU sampler's threads) and hands out immutable :class:`HostSample` values;
:class:`HostHistory` keeps a window of them in fixed-size ring buffers (NaN where a value is missing)
and writes them as CSV. Which processes are "the worker" is the caller's answer (``processes``): the
window passes the children of its own process that run Rigfit's worker.
"""

from __future__ import annotations

import csv
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.core.errors import RigfitError
from app.hardware.telemetry.history import capacity_for
from app.hardware.telemetry.values import DEFAULT_INTERVAL_S, DEFAULT_WINDOW_S, check_interval

log = logging.getLogger(__name__)

_MIB = 2**20
MODEL_SUFFIXES = (".gguf",)  # a mapped file with this suffix holds model weights

# The float metrics a HostSample carries, in ring-buffer (and CSV) order.
HOST_METRICS: tuple[str, ...] = (
    "cpu_pct",
    "ram_used_mib",
    "ram_total_mib",
    "worker_cpu_pct",
    "worker_rss_mib",
    "model_ram_mib",
)
HOST_CSV_COLUMNS: tuple[str, ...] = ("time", "unix_time", *HOST_METRICS, "workers")


@dataclass(frozen=True)
class HostSample:
    """This computer at one moment. ``None`` where a value cannot be read; the worker fields are
    ``None`` while no worker runs.

    ``cpu_pct`` is the load of all cores together (0-100); ``worker_cpu_pct`` the workers' share of
    the same whole (one busy core of eight is 12.5); ``worker_rss_mib`` their resident memory;
    ``model_ram_mib`` the part of it that is the model file's pages (resident weights).
    """

    t_s: float
    unix_time: float
    cpu_pct: float | None = None
    ram_used_mib: float | None = None
    ram_total_mib: float | None = None
    worker_cpu_pct: float | None = None
    worker_rss_mib: float | None = None
    model_ram_mib: float | None = None
    workers: tuple[int, ...] = ()


class HostSampler:
    """Samples the host on a background thread (see the module docstring).

    ``processes`` returns the pids of the worker process(es) each time it is called (on the sampler
    thread). :meth:`sample` reads once, synchronously (tests; the thread calls it too).
    """

    def __init__(
        self,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        processes: Callable[[], Iterable[int]] = tuple,
        on_sample: Callable[[HostSample], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        import psutil

        self._psutil = psutil
        self.interval_s = check_interval(interval_s)
        self.processes = processes
        self.on_sample = on_sample
        self._clock = clock
        self._wall = wall_clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._procs: dict[int, Any] = {}  # pid -> psutil.Process, kept for cpu_percent's deltas
        self._ncpu = max(1, psutil.cpu_count(logical=True) or 1)
        psutil.cpu_percent(None)  # the first call only starts psutil's interval

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rigfit-telemetry-host", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and wait for it (psutil calls return in milliseconds)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def set_interval(self, interval_s: float) -> None:
        self.interval_s = check_interval(interval_s)

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            try:
                sample = self.sample()
            except Exception:  # psutil's platform errors must not end sampling silently
                log.exception("host sampling failed")
            else:
                if self.on_sample is not None:
                    try:
                        self.on_sample(sample)
                    except Exception:
                        log.exception("host telemetry consumer failed")
            next_t += self.interval_s
            now = time.monotonic()
            if next_t < now:
                next_t = now + self.interval_s
            if self._stop.wait(max(0.0, next_t - now)):
                break

    def sample(self) -> HostSample:
        """Read the host and the worker processes now."""
        ps = self._psutil
        t_s, unix = self._clock(), self._wall()
        cpu: float | None
        try:
            cpu = float(ps.cpu_percent(None))
        except Exception:
            cpu = None
        used = total = None
        try:
            memory = ps.virtual_memory()
            total = memory.total / _MIB
            used = (memory.total - memory.available) / _MIB
        except Exception:
            pass
        pids = tuple(sorted(set(self.processes())))
        worker_cpu = worker_rss = model_ram = None
        alive: list[int] = []
        for pid in pids:
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = self._procs[pid] = ps.Process(pid)
                    proc.cpu_percent(None)  # starts its interval: 0 now, a real share next time
                share = proc.cpu_percent(None) / self._ncpu
                rss = proc.memory_info().rss / _MIB
                mapped = _model_pages_mib(proc)
            except (ps.NoSuchProcess, ps.AccessDenied, ps.ZombieProcess):
                self._procs.pop(pid, None)
                continue
            alive.append(pid)
            worker_cpu = (worker_cpu or 0.0) + share
            worker_rss = (worker_rss or 0.0) + rss
            if mapped is not None:
                model_ram = (model_ram or 0.0) + mapped
        for gone in set(self._procs) - set(alive):
            self._procs.pop(gone, None)
        return HostSample(
            t_s=t_s,
            unix_time=unix,
            cpu_pct=cpu,
            ram_used_mib=used,
            ram_total_mib=total,
            worker_cpu_pct=worker_cpu,
            worker_rss_mib=worker_rss,
            model_ram_mib=model_ram if alive else None,
            workers=tuple(alive),
        )


def _model_pages_mib(proc: Any) -> float | None:
    """Resident MiB of the model files a process maps (None where the maps cannot be read)."""
    try:
        maps = proc.memory_maps(grouped=True)
    except Exception:  # AccessDenied, or a platform without per-mapping figures
        return None
    total = 0
    for m in maps:
        if str(getattr(m, "path", "")).lower().endswith(MODEL_SUFFIXES):
            total += int(getattr(m, "rss", 0))
    return total / _MIB


def child_pids_running(argv_tail: Sequence[str], parent: int | None = None) -> tuple[int, ...]:
    """Pids of the children of ``parent`` (default: this process) whose command line ends with
    ``argv_tail`` (``["-m", "app.runner.worker"]``): how the window finds its llama.cpp worker."""
    import psutil

    tail = list(argv_tail)
    try:
        children = psutil.Process(parent).children(recursive=False)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ()
    found = []
    for child in children:
        try:
            cmdline = child.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if tail and cmdline[-len(tail) :] == tail:
            found.append(child.pid)
    return tuple(found)


FloatArray = npt.NDArray[np.float64]


class HostHistory:
    """The last ``window_s`` seconds of :class:`HostSample` values in fixed-size ring buffers."""

    def __init__(self, window_s: float = DEFAULT_WINDOW_S, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.window_s = float(window_s)
        self.interval_s = check_interval(interval_s)
        self.capacity = capacity_for(self.window_s, self.interval_s)
        self._data: FloatArray = np.full((len(HOST_METRICS), self.capacity), np.nan)
        self._t: FloatArray = np.full(self.capacity, np.nan)
        self._unix: FloatArray = np.full(self.capacity, np.nan)
        self._workers: list[str] = [""] * self.capacity
        self._pos = 0
        self.count = 0
        self.appended = 0
        self.latest: HostSample | None = None

    def append(self, sample: HostSample) -> None:
        pos = self._pos
        for m, name in enumerate(HOST_METRICS):
            value = getattr(sample, name)
            self._data[m, pos] = np.nan if value is None else float(value)
        self._t[pos] = sample.t_s
        self._unix[pos] = sample.unix_time
        self._workers[pos] = " ".join(str(p) for p in sample.workers)
        self._advance()
        self.latest = sample

    def mark_gap(self) -> None:
        """A break in sampling: the curves do not join across it."""
        if self.count == 0:
            return
        last = (self._pos - 1) % self.capacity
        pos = self._pos
        self._data[:, pos] = np.nan
        self._t[pos] = self._t[last] + self.interval_s / 2
        self._unix[pos] = self._unix[last] + self.interval_s / 2
        self._workers[pos] = ""
        self._advance()

    def _advance(self) -> None:
        self._pos = (self._pos + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)
        self.appended += 1

    def _order(self) -> list[int]:
        first = (self._pos - self.count) % self.capacity
        return [(first + i) % self.capacity for i in range(self.count)]

    def times(self) -> FloatArray:
        """Monotonic times of the stored samples, oldest first."""
        return np.asarray(self._t[self._order()], dtype=np.float64)

    def series(self, metric: str, start: int = 0) -> FloatArray:
        """One metric, oldest first, from ordered index ``start``."""
        if metric not in HOST_METRICS:
            raise RigfitError(f"no host metric named '{metric}'")
        return np.asarray(self._data[HOST_METRICS.index(metric), self._order()[start:]], dtype=np.float64)

    def resized(self, window_s: float | None = None, interval_s: float | None = None) -> HostHistory:
        """A new history with another window or rate, holding as many of the newest samples as fit."""
        new = HostHistory(
            self.window_s if window_s is None else window_s,
            self.interval_s if interval_s is None else interval_s,
        )
        order = self._order()[-new.capacity :]
        for slot in order:
            new._data[:, new._pos] = self._data[:, slot]
            new._t[new._pos] = self._t[slot]
            new._unix[new._pos] = self._unix[slot]
            new._workers[new._pos] = self._workers[slot]
            new._advance()
        new.latest = self.latest
        return new

    def to_csv(self, path: Path) -> int:
        """Write every stored sample as CSV (:data:`HOST_CSV_COLUMNS`); returns the rows written."""
        order = self._order()
        try:
            with Path(path).open("w", newline="", encoding="utf-8") as handle:
                out = csv.writer(handle)
                out.writerow(HOST_CSV_COLUMNS)
                for slot in order:
                    unix = float(self._unix[slot])
                    stamp = (
                        datetime.fromtimestamp(unix).isoformat(timespec="milliseconds")
                        if math.isfinite(unix)
                        else ""
                    )
                    values = ["" if math.isnan(v) else f"{v:.3f}" for v in self._data[:, slot]]
                    out.writerow([stamp, f"{unix:.3f}", *values, self._workers[slot]])
        except OSError as exc:
            raise RigfitError(f"cannot write the host history to {path}: {exc.strerror or exc}") from None
        return len(order)

    def copy(self) -> HostHistory:
        """An independent copy (a CSV export writes it on a pool thread while sampling goes on)."""
        return self.resized()


__all__ = [
    "HOST_CSV_COLUMNS",
    "HOST_METRICS",
    "HostHistory",
    "HostSample",
    "HostSampler",
    "child_pids_running",
]
