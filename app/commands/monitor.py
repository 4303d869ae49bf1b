"""``rigfit monitor [--interval S] [--count N] [--json-lines]``: live GPU telemetry on a headless rig.

One line per sample, every GPU on it; alerts (thermal or power-cap throttling, VRAM above 95 %, a
PCIe link below its maximum while busy, near the slowdown temperature, a lost GPU) are printed when
they appear and when they clear. ``--json-lines`` prints one JSON object per sample instead:
``time``, ``unix_time``, ``seq``, ``gpus`` (one object per GPU with the fields of
:class:`~app.hardware.telemetry.GpuSample`: ``index``, ``name``, ``lost``, ``vram_used_mib``,
``vram_total_mib``, ``vram_free_mib``, ``temperature_c``, ``power_w``, ``power_limit_w``,
``gpu_util_pct``, ``mem_util_pct``, ``sm_clock_mhz``, ``mem_clock_mhz``, ``pcie_tx_mib_s``,
``pcie_rx_mib_s``, ``pcie_gen``, ``pcie_width``, ``pcie_max_gen``, ``pcie_max_width``,
``clock_event_mask``, ``clock_events``, ``fan_pct``, ``slowdown_temp_c``; ``null`` where the GPU
does not say), ``alerts`` (active: ``code``, ``gpu``, ``level``, ``message``), ``events``.

Runs until ``--count`` samples were printed or Ctrl+C (which ends cleanly, exit code 0). No NVIDIA
GPU (or no driver, or no NVML) is a one-line message and exit code 2.
``RIGFIT_FAKE_NVML`` replays a scenario instead (``2x3090-inference`` is a looping demo).
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
from datetime import datetime
from typing import Any, TextIO

from app.core.errors import RigfitError
from app.hardware.telemetry import (
    DEFAULT_INTERVAL_S,
    GpuSample,
    TelemetryAlert,
    TelemetrySampler,
    TelemetrySnapshot,
    alert_changes,
    check_interval,
    evaluate_alerts,
)

EXIT_OK = 0


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "monitor",
        help="print live GPU telemetry (VRAM, temperature, power, clocks, PCIe), a line per sample",
        description="Sample every NVIDIA GPU and print a line per sample until Ctrl+C or --count.",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        metavar="S",
        help=f"seconds between samples, 0.1 to 2 (default {DEFAULT_INTERVAL_S:g})",
    )
    parser.add_argument("--count", type=int, metavar="N", help="stop after N samples (default: until Ctrl+C)")
    parser.add_argument("--json-lines", action="store_true", help="print one JSON object per sample")
    parser.set_defaults(command="monitor")


# ------------------------------------------------------------------------------------------ output
def snapshot_json(snapshot: TelemetrySnapshot, alerts: tuple[TelemetryAlert, ...]) -> dict[str, Any]:
    """One ``--json-lines`` object."""
    return {
        "time": datetime.fromtimestamp(snapshot.unix_time).isoformat(timespec="milliseconds"),
        "unix_time": round(snapshot.unix_time, 3),
        "seq": snapshot.seq,
        "gpus": [sample.as_dict() for sample in snapshot.gpus],
        "alerts": [alert.as_dict() for alert in alerts],
        "events": list(snapshot.events),
    }


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def gpu_text(sample: GpuSample) -> str:
    """One GPU's part of a text line: ``GPU0 63°C 281/350W 97% 19.8/24.0GiB Gen4x16 3.1/0.5MiB/s``."""
    if sample.lost:
        return f"GPU{sample.index} lost"
    parts = [f"GPU{sample.index}", f"{_num(sample.temperature_c)}°C"]
    if sample.power_limit_w is not None:
        parts.append(f"{_num(sample.power_w)}/{sample.power_limit_w:.0f}W")
    else:
        parts.append(f"{_num(sample.power_w)}W")
    parts.append(f"{_num(sample.gpu_util_pct)}%")
    if sample.vram_total_mib:
        parts.append(f"{_num(_gib(sample.vram_used_mib), 1)}/{sample.vram_total_mib / 1024:.1f}GiB")
    if sample.pcie_gen is not None or sample.pcie_width is not None:
        parts.append(f"Gen{_num(sample.pcie_gen)}x{_num(sample.pcie_width)}")
    if sample.pcie_tx_mib_s is not None or sample.pcie_rx_mib_s is not None:
        parts.append(f"tx/rx {_num(sample.pcie_tx_mib_s, 1)}/{_num(sample.pcie_rx_mib_s, 1)}MiB/s")
    reasons = [c for c in sample.clock_events or () if c != "idle"]
    if reasons:
        parts.append(f"[{','.join(reasons)}]")
    return " ".join(parts)


def _gib(mib: float | None) -> float | None:
    return None if mib is None else mib / 1024


def snapshot_text(snapshot: TelemetrySnapshot) -> str:
    """The text line of one sample: the time, then every GPU separated by ``|``."""
    stamp = datetime.fromtimestamp(snapshot.unix_time).strftime("%H:%M:%S.%f")[:-5]
    return f"{stamp}  " + "  |  ".join(gpu_text(s) for s in snapshot.gpus)


def _write(out: TextIO, line: str) -> None:
    out.write(line + "\n")
    out.flush()  # a pipe (tee, grep) sees each sample as it happens


# ------------------------------------------------------------------------------------------ command
def run(args: argparse.Namespace) -> int:
    interval = check_interval(args.interval, "--interval")
    if args.count is not None and args.count < 1:
        raise RigfitError(f"--count must be 1 or more, not {args.count}")
    snapshots: queue.Queue[TelemetrySnapshot] = queue.Queue()
    sampler = TelemetrySampler(interval_s=interval, on_snapshot=snapshots.put)
    gpus = sampler.open()  # raises TelemetryUnavailable (exit 2) with the reason
    out = sys.stdout
    try:
        if not args.json_lines:
            names = ", ".join(f"GPU {g.index} {g.name}" for g in gpus)
            _write(out, f"Monitoring {names} every {interval:g} s (Ctrl+C to stop).")
        sampler.start()
        alerts: tuple[TelemetryAlert, ...] = ()
        printed = 0
        while args.count is None or printed < args.count:
            try:
                # A timeout keeps Ctrl+C responsive on every platform.
                snapshot = snapshots.get(timeout=0.5)
            except queue.Empty:
                if not sampler.running:
                    raise RigfitError("telemetry stopped unexpectedly") from None
                continue
            before = alerts
            alerts = evaluate_alerts(snapshot, before)
            if args.json_lines:
                _write(out, json.dumps(snapshot_json(snapshot, alerts)))
            else:
                for event in snapshot.events:
                    _write(out, f"  ! {event}")
                appeared, cleared = alert_changes(before, alerts)
                _write(out, snapshot_text(snapshot))
                for alert in appeared:
                    if alert.code != "gpu-lost":
                        _write(out, f"  ! {alert.message}")
                for alert in cleared:
                    _write(out, f"  - cleared: GPU {alert.gpu} {alert.code}")
            printed += 1
    except KeyboardInterrupt:
        pass  # Ctrl+C is how an endless monitor ends: stop the threads, exit 0
    finally:
        sampler.stop()
    return EXIT_OK
