"""Reading llama.cpp's log: the per-device buffer sizes and the layer placement it reports.

llama.cpp logs every buffer it allocates, one line each, for example::

    load_tensors:   CPU_Mapped model buffer size =    92.10 MiB
    llama_context:        CPU  output buffer size =     0.19 MiB
    llama_kv_cache:      CUDA0 KV buffer size =   128.00 MiB
    sched_reserve:       CUDA0 compute buffer size =   100.00 MiB

These lines are the ground truth the planner is checked against. The device is the ggml buffer type
name (``CPU``, ``CPU_Mapped``, ``CPU_REPACK``, ``CUDA0``, ``CUDA_Host``, ``Meta(CUDA0,CUDA1)``...).
Pure functions of text: no llama_cpp import, so the parent and the tests use them too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Kinds as llama.cpp names them in the line; RS is a recurrent model's state, LoRA an adapter.
BUFFER_KINDS: tuple[str, ...] = ("model", "KV", "compute", "output", "RS", "LoRA")

_BUFFER_RE = re.compile(
    r"^(?P<func>[\w:]+):\s+(?P<device>\S+)\s+(?:DSV4 \S+ )?(?P<kind>model|KV|compute|output|RS|LoRA|state)\s+"
    r"buffer size\s*=\s*(?P<mib>[0-9]+(?:\.[0-9]+)?)\s*MiB"
)
_OFFLOADED_RE = re.compile(r"offloaded (?P<n>\d+)/(?P<m>\d+) layers to GPU")
_LAYER_RE = re.compile(r"layer\s+(?P<layer>\d+) assigned to device (?P<device>[^,\s]+)")
_HOST_SUFFIXES = ("_Host",)
_GPU_RE = re.compile(r"^(?P<backend>[A-Za-z]+)(?P<index>\d+)$")

# Kinds whose lines add up (split GGUF files map one buffer per file; SWA models have two KV caches);
# the others are reported once per reservation and the last report is the one that holds.
_SUMMED = frozenset({"model", "KV", "RS", "LoRA", "state"})


@dataclass(frozen=True)
class BufferSize:
    """One buffer llama.cpp allocated: device (buffer type name), kind and size in MiB."""

    device: str
    buffer: str  # "model", "KV", "compute", "output", "RS", "LoRA"
    mib: float


@dataclass(frozen=True)
class LoadReport:
    """What llama.cpp logged while loading a model and creating its context."""

    buffers: tuple[BufferSize, ...]
    offloaded_layers: int | None  # from "offloaded N/M layers to GPU" (GPU builds only)
    offloadable_layers: int | None  # the M of that line: repeating layers + the output layer
    layer_devices: tuple[str, ...]  # device of layer 0..n_layer (the last one is the output layer)

    def layers_per_device(self) -> dict[str, int]:
        """How many layers (repeating and output) llama.cpp put on each device."""
        counts: dict[str, int] = {}
        for device in self.layer_devices:
            counts[device] = counts.get(device, 0) + 1
        return counts

    def total_mib(self, device: str) -> float:
        """All buffers on one device, in MiB."""
        return sum(b.mib for b in self.buffers if b.device == device)


def parse_buffer_line(line: str) -> BufferSize | None:
    """The buffer a single log line reports, or ``None`` when the line is about something else."""
    m = _BUFFER_RE.match(line.strip())
    if not m:
        return None
    kind = m.group("kind")
    if kind == "state":
        kind = "KV"  # DeepSeek V4's compressed cache state lives where a KV cache would
    return BufferSize(device=m.group("device"), buffer=kind, mib=float(m.group("mib")))


def parse_load_log(lines: Iterable[str]) -> LoadReport:
    """Buffers and layer placement from the log lines of one load (model + context).

    Model, KV and state buffers of the same device add up; compute and output buffers are
    re-reserved, so the last size logged for a device wins.
    """
    sizes: dict[tuple[str, str], float] = {}
    order: list[tuple[str, str]] = []
    offloaded: int | None = None
    offloadable: int | None = None
    layers: dict[int, str] = {}
    for raw in lines:
        line = raw.strip()
        buf = parse_buffer_line(line)
        if buf is not None:
            key = (buf.device, buf.buffer)
            if key not in sizes:
                order.append(key)
                sizes[key] = 0.0
            sizes[key] = sizes[key] + buf.mib if buf.buffer in _SUMMED else buf.mib
            continue
        m = _OFFLOADED_RE.search(line)
        if m:
            offloaded, offloadable = int(m.group("n")), int(m.group("m"))
            continue
        m = _LAYER_RE.search(line)
        if m:
            layers[int(m.group("layer"))] = m.group("device")
    buffers = tuple(BufferSize(device=d, buffer=k, mib=round(sizes[(d, k)], 2)) for d, k in order)
    layer_devices = tuple(layers[i] for i in sorted(layers)) if layers else ()
    return LoadReport(
        buffers=buffers,
        offloaded_layers=offloaded,
        offloadable_layers=offloadable,
        layer_devices=layer_devices,
    )


def is_host_device(device: str) -> bool:
    """True for buffers in system RAM: ``CPU``, ``CPU_Mapped``, ``CPU_REPACK``, ``CUDA_Host`` (pinned)."""
    return device.startswith("CPU") or device.endswith(_HOST_SUFFIXES)


def gpu_index(device: str) -> int | None:
    """The GPU number of a single-GPU buffer type (``CUDA1`` → 1); ``None`` for host or multi-GPU buffers."""
    if is_host_device(device):
        return None
    m = _GPU_RE.match(device)
    return int(m.group("index")) if m else None


def error_reason(lines: Iterable[str]) -> str | None:
    """The most telling reason in llama.cpp's error lines, without the function-name prefix.

    llama.cpp reports a failed load as a chain ("error loading model: ...", then "failed to load
    model"); the first line naming a cause is the one a user can act on.
    """
    errors = [ln.strip() for ln in lines if ln.strip()]
    if not errors:
        return None
    for line in errors:
        if "error loading model:" in line:
            reason = line.rsplit("error loading model:", 1)[1].strip().replace("llama_model_loader: ", "")
            # "failed to load model from FILE" only says that it failed; an earlier line says why.
            if not reason.startswith("failed to load model from"):
                return reason
    for line in errors:
        if "failed to initialize the context:" in line:
            reason = line.split("failed to initialize the context:", 1)[1].strip()
            detail = next(
                (ln for ln in errors if "attempted to allocate" in ln or "out of memory" in ln), None
            )
            if detail:
                reason += f" ({_strip_func(detail)})"
            return reason
    return _strip_func(errors[0])


def _strip_func(line: str) -> str:
    head, sep, tail = line.partition(": ")
    if sep and re.fullmatch(r"[\w:]+", head):
        return tail.strip()
    return line.strip()
