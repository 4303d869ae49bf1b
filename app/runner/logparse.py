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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Kinds as llama.cpp names them in the line; RS is a recurrent model's state, LoRA an adapter.
BUFFER_KINDS: tuple[str, ...] = ("model", "KV", "compute", "output", "RS", "LoRA")

_BUFFER_RE = re.compile(
    r"^(?P<func>[\w:]+):\s+(?P<device>\S+)\s+(?:DSV4 \S+ )?(?P<kind>model|KV|compute|output|RS|LoRA|state)\s+"
    r"buffer size\s*=\s*(?P<mib>[0-9]+(?:\.[0-9]+)?)\s*MiB"
)
_OFFLOADED_RE = re.compile(r"offloaded (?P<n>\d+)/(?P<m>\d+) layers to GPU")
_LAYER_RE = re.compile(r"layer\s+(?P<layer>\d+) assigned to device (?P<device>[^,\s]+)")
_HOST_SUFFIXES = ("_Host",)
# The CPU backend's extra buffer types (weights laid out for AMX or repacked): host memory too.
_HOST_NAMES = frozenset({"AMX", "KLEIDIAI"})
_USING_RE = re.compile(r"using device (?P<name>\S+) \((?P<desc>[^)]*)\)")
_META_MEMBER_RE = re.compile(r"- device \d+: (?P<name>\S+)")
_RPC_BUFFER_RE = re.compile(r"^RPC(?P<index>\d+)\[(?P<endpoint>[^\]]+)\]$")
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


@dataclass(frozen=True)
class UsedDevice:
    """A device a loaded model uses, with the buffers llama.cpp logged for it (MiB by kind).

    ``name`` is llama.cpp's device name (``RPC0``, ``CUDA0``, ``CPU`` for the host's buffers,
    ``Meta`` for a tensor-parallel group); ``endpoint`` is an RPC device's server.
    """

    name: str
    kind: str  # "rpc", "gpu", "cpu", "meta"
    buffers: Mapping[str, float] = field(default_factory=dict)  # "model", "KV", "compute", "output", ...
    layers: int = 0
    endpoint: str | None = None
    members: tuple[str, ...] = ()  # a Meta device's devices, in llama.cpp's order

    @property
    def total_mib(self) -> float:
        return round(sum(self.buffers.values()), 2)


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
    """True for buffers in system RAM: ``CPU``, ``CPU_Mapped``, ``CPU_REPACK``, ``AMX``, ``CUDA_Host`` (pinned)."""
    return device.startswith("CPU") or device.endswith(_HOST_SUFFIXES) or device in _HOST_NAMES


def rpc_buffer(device: str) -> tuple[str, int] | None:
    """``RPC1[10.0.0.2:50052]`` → ``("10.0.0.2:50052", 1)``: the server and its device number.

    An RPC buffer type is named by the device's number *on its server*, not by llama.cpp's device
    name (``RPC0`` of a second server is llama.cpp's ``RPC1``), so the endpoint tells them apart.
    """
    m = _RPC_BUFFER_RE.match(device)
    return (m.group("endpoint"), int(m.group("index"))) if m else None


def used_devices(
    lines: Iterable[str], report: LoadReport, rpc_names: Mapping[tuple[str, int], str] | None = None
) -> tuple[UsedDevice, ...]:
    """Every device a load used, in llama.cpp's order, with its buffers by kind; the host last.

    ``rpc_names`` maps ``(endpoint, device number on that server)`` to llama.cpp's device name
    (``RPC0``...), as the worker registered them; without it the n-th RPC device in the log's
    "using device" lines of an endpoint is that server's device n.
    """
    order: list[str] = []
    descriptions: dict[str, str] = {}
    members: list[str] = []
    for raw in lines:
        m = _USING_RE.search(raw)
        if m and "Meta" not in m.group("name"):
            order.append(m.group("name"))
            descriptions[m.group("name")] = m.group("desc")
            continue
        m = _META_MEMBER_RE.search(raw)
        if m and "llama_prepare_model_devices" in raw:
            members.append(m.group("name"))
    names = dict(rpc_names or {})
    if not names:
        seen: dict[str, int] = {}
        for name in order:
            if name.startswith("RPC"):
                endpoint = descriptions.get(name, "")
                names[(endpoint, seen.get(endpoint, 0))] = name
                seen[endpoint] = seen.get(endpoint, 0) + 1
    endpoints = {v: k[0] for k, v in names.items()}
    buffers: dict[str, dict[str, float]] = {}
    for b in report.buffers:
        if is_host_device(b.device):
            owner = "CPU"
        elif b.device.startswith("Meta"):
            owner = "Meta"
        else:
            rpc = rpc_buffer(b.device)
            owner = names.get(rpc, f"RPC?[{rpc[0]}]") if rpc else b.device
        kinds = buffers.setdefault(owner, {})
        kinds[b.buffer] = round(kinds.get(b.buffer, 0.0) + b.mib, 2)
    layers: dict[str, int] = {}
    for device, count in report.layers_per_device().items():
        key = "Meta" if device.startswith("Meta") else device
        layers[key] = layers.get(key, 0) + count
    listed = [n for n in order if n in buffers or n in layers]
    listed += [n for n in buffers if n not in listed and n != "CPU"]
    if "CPU" in buffers or "CPU" in layers:
        listed.append("CPU")
    out = []
    for name in listed:
        if name == "CPU":
            kind = "cpu"
        elif name == "Meta":
            kind = "meta"
        elif name.startswith("RPC"):
            kind = "rpc"
        else:
            kind = "gpu"
        out.append(
            UsedDevice(
                name=name,
                kind=kind,
                buffers=buffers.get(name, {}),
                layers=layers.get(name, 0),
                endpoint=endpoints.get(name),
                members=tuple(members) if name == "Meta" else (),
            )
        )
    return tuple(out)


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
