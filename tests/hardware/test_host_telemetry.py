"""Host telemetry: CPU load, RAM, and the worker process's CPU, resident memory and mapped weights."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.core.errors import RigfitError
from app.hardware.telemetry.host import (
    HOST_CSV_COLUMNS,
    HostHistory,
    HostSample,
    HostSampler,
    child_pids_running,
)
from app.runner.client import worker_command

# A stand-in for the llama.cpp worker: maps a .gguf file as llama.cpp does, reads it all (its pages
# become resident), says so, and waits. Extra arguments after -c are only its argv: they make its
# command line end like the real worker's.
_FAKE_WORKER = r"""
import mmap, sys, time
with open(sys.argv[1], "rb") as f:
    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    total = sum(m[i] for i in range(0, len(m), 4096))
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture
def fake_worker(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    model = tmp_path / "model.gguf"
    size = 24 << 20
    model.write_bytes(b"\1" * size)
    proc = subprocess.Popen(
        [sys.executable, "-c", _FAKE_WORKER, str(model), *worker_command()[1:]],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc, size
    finally:
        proc.kill()
        proc.wait(10)


def test_a_sample_reads_cpu_and_ram_and_nothing_of_a_worker_when_none_runs() -> None:
    sampler = HostSampler()
    sample = sampler.sample()
    assert sample.ram_total_mib is not None and 0 < sample.ram_used_mib <= sample.ram_total_mib  # type: ignore[operator]
    assert sample.cpu_pct is not None and 0.0 <= sample.cpu_pct <= 100.0
    assert sample.workers == () and sample.worker_rss_mib is None and sample.model_ram_mib is None


def test_the_worker_is_found_by_its_command_and_its_memory_and_weights_read(
    fake_worker: tuple[subprocess.Popen[str], int],
) -> None:
    proc, size = fake_worker
    assert proc.pid in child_pids_running(worker_command()[1:])
    assert child_pids_running(["--not-a-worker"]) == ()
    sampler = HostSampler(processes=lambda: [proc.pid])
    sampler.sample()  # starts the worker's CPU interval
    sample = sampler.sample()
    assert sample.workers == (proc.pid,)
    assert sample.worker_rss_mib is not None and sample.worker_rss_mib > size / 2**20
    assert sample.model_ram_mib == pytest.approx(size / 2**20, rel=0.05)
    assert sample.worker_cpu_pct is not None and sample.worker_cpu_pct >= 0.0
    proc.kill()
    proc.wait(10)
    gone = sampler.sample()
    assert gone.workers == () and gone.worker_rss_mib is None


def test_the_thread_delivers_samples_and_stops() -> None:
    got: list[HostSample] = []
    done = threading.Event()

    def take(sample: HostSample) -> None:
        got.append(sample)
        if len(got) >= 2:
            done.set()

    sampler = HostSampler(interval_s=0.1, on_sample=take)
    sampler.start()
    assert done.wait(10)
    sampler.stop()
    assert not sampler.running
    assert not [t for t in threading.enumerate() if t.name == "rigfit-telemetry-host"]


def test_the_history_is_a_ring_with_gaps_and_writes_csv(tmp_path: Path) -> None:
    history = HostHistory(window_s=1.0, interval_s=0.5)  # three slots
    assert history.capacity == 3
    for k in range(4):
        history.append(HostSample(t_s=float(k), unix_time=1.7e9 + k, cpu_pct=10.0 * k, ram_total_mib=1024.0))
    assert history.count == 3 and list(history.series("cpu_pct")) == [10.0, 20.0, 30.0]
    history.mark_gap()
    assert np.isnan(history.series("cpu_pct")[-1]) and history.times()[-1] == pytest.approx(3.25)
    rows = history.to_csv(tmp_path / "host.csv")
    lines = (tmp_path / "host.csv").read_text().splitlines()
    assert rows == 3 and lines[0] == ",".join(HOST_CSV_COLUMNS)
    with pytest.raises(RigfitError, match="cannot write the host history"):
        history.to_csv(tmp_path / "missing" / "host.csv")
    with pytest.raises(RigfitError, match="no host metric"):
        history.series("vram_used_mib")
    bigger = history.resized(interval_s=0.1)
    assert bigger.count == 3 and bigger.capacity == 11
