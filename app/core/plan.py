"""The planner's answer: where every layer and buffer goes, per device and on the host."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.rules import Problem
from app.core.settings import Settings

STATUS_FITS = "fits"
STATUS_TIGHT = "tight"  # fits, but some GPU keeps little VRAM free (layout.TIGHT_FREE_FRACTION)
STATUS_OFFLOAD = "offload"  # fits only with layers left on the CPU
STATUS_NO = "no"
STATUSES: tuple[str, ...] = (STATUS_FITS, STATUS_TIGHT, STATUS_OFFLOAD, STATUS_NO)


@dataclass(frozen=True)
class BufferPlan:
    """One buffer as llama.cpp logs it: ``<name> <kind> buffer size = <mib> MiB``.

    ``name`` is llama.cpp's buffer name (``CUDA0``, ``CPU_Mapped``, ``CPU_REPACK``, ``CUDA_Host``,
    ``CPU``), ``kind`` one of ``model``, ``KV``, ``compute``, ``output``; ``gpu`` the rig GPU it
    sits on (``None`` for host memory).
    """

    name: str
    kind: str
    mib: float
    gpu: int | None = None


@dataclass(frozen=True)
class DevicePlan:
    """One GPU's share of the model, in MiB."""

    index: int
    name: str
    layers: int  # repeating layers (blk.N) held here
    has_output: bool  # holds the output layer (the last tensor_split slot)
    weights_mib: float
    kv_mib: float
    compute_mib: float
    overhead_mib: float
    capacity_mib: float
    first_layer: int = -1  # first blk index held here (-1 when none)

    @property
    def total_mib(self) -> float:
        return self.weights_mib + self.kv_mib + self.compute_mib + self.overhead_mib

    @property
    def free_after_mib(self) -> float:
        return self.capacity_mib - self.total_mib

    @property
    def fits(self) -> bool:
        return self.total_mib <= self.capacity_mib


@dataclass(frozen=True)
class HostPlan:
    """What stays in system RAM, in MiB: token embeddings, CPU layers, host buffers."""

    layers: int
    weights_mib: float
    kv_mib: float
    compute_mib: float
    output_mib: float
    available_mib: float | None

    @property
    def total_mib(self) -> float:
        return self.weights_mib + self.kv_mib + self.compute_mib + self.output_mib

    @property
    def fits(self) -> bool:
        return self.available_mib is None or self.total_mib <= self.available_mib


@dataclass(frozen=True)
class Plan:
    """Placement of one model with one set of settings on one rig."""

    model: str
    quant: str
    settings: Settings
    devices: tuple[DevicePlan, ...]
    host: HostPlan
    status: str
    tensor_split: tuple[float, ...]  # the effective split, one ratio per GPU, summing to 1
    n_layer: int
    layers_on_cpu: int
    notes: tuple[str, ...] = ()  # for display: the model's notes, then each problem's message
    # Every buffer llama.cpp would log for this load, for comparison with a real run.
    buffers: tuple[BufferPlan, ...] = ()
    # When the requested settings do not fit: the largest n_gpu_layers that does (None: it fits as
    # asked, or nothing fits).
    fit_n_gpu_layers: int | None = None
    # What the planner found, with stable codes (app.core.rules): read these, not the notes' text.
    problems: tuple[Problem, ...] = ()

    @property
    def fits(self) -> bool:
        return self.status in (STATUS_FITS, STATUS_TIGHT)

    @property
    def gpu_total_mib(self) -> float:
        return sum(d.total_mib for d in self.devices)
