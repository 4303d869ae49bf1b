"""The rig: GPUs, their links and the host, in one data model for detected and planned hardware.

A detected rig (``app.hardware.probe``) and a planned one (``app.hardware.catalog`` rig expressions and
rig files) are both a :class:`Rig`, so the planner, the split sliders and the advice never ask where
the hardware came from. Every field that a driver may not report is optional: ``None`` means "not
available", never zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

# Usable bandwidth per lane and direction in GB/s after line encoding, by PCIe generation.
PCIE_LANE_GBPS: dict[int, float] = {1: 0.25, 2: 0.5, 3: 0.985, 4: 1.969, 5: 3.938, 6: 7.563}

# NVLink bandwidth per link and direction in GB/s, by NVLink version.
NVLINK_LINK_GBPS: dict[int, float] = {1: 20.0, 2: 25.0, 3: 25.0, 4: 25.0, 5: 50.0}

VENDOR_NVIDIA = "nvidia"
VENDOR_AMD = "amd"
VENDOR_INTEL = "intel"


@dataclass(frozen=True)
class PcieLink:
    """A GPU's PCIe link: what runs now, what the slot allows, what the card supports."""

    gen: int | None = None
    width: int | None = None
    max_gen: int | None = None
    max_width: int | None = None
    gpu_max_gen: int | None = None
    gpu_max_width: int | None = None

    @property
    def slot_limited(self) -> bool:
        """True when the slot (or riser) gives the card fewer lanes or an older generation than it supports."""
        gen_cut = (
            self.gpu_max_gen is not None and self.max_gen is not None and self.gpu_max_gen > self.max_gen
        )
        width_cut = (
            self.gpu_max_width is not None
            and self.max_width is not None
            and self.gpu_max_width > self.max_width
        )
        return gen_cut or width_cut

    @property
    def bandwidth_gbps(self) -> float | None:
        """Per-direction bandwidth of the link at its best (slot maximum), in GB/s."""
        gen = self.max_gen or self.gen
        width = self.max_width or self.width
        if gen is None or width is None:
            return None
        return PCIE_LANE_GBPS.get(gen, PCIE_LANE_GBPS[6]) * width

    def describe(self) -> str:
        """Human text such as ``Gen4 x8 (card supports x16)``."""
        gen = self.max_gen if self.max_gen is not None else self.gen
        width = self.max_width if self.max_width is not None else self.width
        if gen is None and width is None:
            return "PCIe link not reported"
        text = f"Gen{gen if gen is not None else '?'} x{width if width is not None else '?'}"
        cut: list[str] = []
        if self.gpu_max_gen is not None and gen is not None and self.gpu_max_gen > gen:
            cut.append(f"Gen{self.gpu_max_gen}")
        if self.gpu_max_width is not None and width is not None and self.gpu_max_width > width:
            cut.append(f"x{self.gpu_max_width}")
        if cut:
            text += f" (card supports {' '.join(cut)})"
        return text


@dataclass(frozen=True)
class NvLinkPeer:
    """One active NVLink link and what sits at its far end."""

    link: int
    remote_bus_id: str | None = None
    remote_kind: str = "unknown"  # "gpu", "switch", "cpu" or "unknown"


@dataclass(frozen=True)
class NvLink:
    """A GPU's NVLink state. ``supported`` is what the card can do; ``links`` what is active now."""

    links: int = 0
    version: int | None = None
    peers: tuple[NvLinkPeer, ...] = ()
    supported: bool | None = None
    # Per-link, per-direction GB/s when known (GeForce/workstation bridges use narrower links than
    # datacenter parts of the same NVLink version: an RTX 3090 bridge is 4 x 14.0625 GB/s).
    link_gbps: float | None = None

    @property
    def bandwidth_gbps(self) -> float:
        """Per-direction NVLink bandwidth of all active links, in GB/s (0 without NVLink)."""
        if self.links <= 0:
            return 0.0
        if self.link_gbps is not None:
            return self.links * self.link_gbps
        return self.links * NVLINK_LINK_GBPS.get(self.version or 3, 25.0)


@dataclass(frozen=True)
class NetworkLink:
    """The network between the computer that runs llama.cpp and an RPC server's machine."""

    name: str  # "1GbE", "10GbE", "loopback"... as the user wrote it
    bandwidth_gbps: float  # usable GB/s per direction (TCP payload, not the line rate)
    rtt_ms: float  # one request-and-reply round trip

    def describe(self) -> str:
        """``1GbE (0.12 GB/s, 0.30 ms)``."""
        return f"{self.name} ({self.bandwidth_gbps:.3g} GB/s, {self.rtt_ms:.2f} ms)"


@dataclass(frozen=True)
class Remote:
    """Where a device lives when it is not in this computer: a llama.cpp RPC server and its link.

    ``endpoint`` is ``HOST:PORT`` for a real server, ``None`` for a planned one; ``device`` its
    number on that server; ``backend`` what the server runs it on: ``gpu`` (CUDA and the like) or
    ``cpu`` (an rpc-server on a machine without a GPU, which serves its CPU and RAM).
    """

    link: NetworkLink
    endpoint: str | None = None
    device: int = 0
    backend: str = "gpu"

    @property
    def planned(self) -> bool:
        return self.endpoint is None


@dataclass(frozen=True)
class Gpu:
    """One GPU (or a remote RPC device), detected or planned."""

    index: int
    name: str
    vram_total_mib: float
    vendor: str = VENDOR_NVIDIA
    uuid: str | None = None
    bus_id: str | None = None
    vram_free_mib: float | None = None
    vram_used_mib: float | None = None
    bandwidth_gbps: float | None = None  # memory bandwidth
    compute_capability: tuple[int, int] | None = None
    architecture: str | None = None
    power_limit_w: float | None = None
    tdp_w: float | None = None
    fp16_tflops: float | None = None  # dense FP16 tensor throughput, for prompt speed
    power_connectors: tuple[str, ...] = ()  # e.g. ("8-pin", "8-pin") or ("12V-2x6",)
    pcie: PcieLink = field(default_factory=PcieLink)
    nvlink: NvLink = field(default_factory=NvLink)
    overhead_mib: float | None = None  # memory the allocator does not see; None: planner default
    planned: bool = False
    catalog_id: str | None = None
    temperature_c: float | None = None  # at detection time
    remote: Remote | None = None  # set for a device behind a llama.cpp RPC server

    @property
    def is_remote(self) -> bool:
        return self.remote is not None

    @property
    def on_cpu(self) -> bool:
        """A remote device that is a machine's CPU and RAM (a CPU-backed RPC server)."""
        return self.remote is not None and self.remote.backend == "cpu"

    @property
    def vram_usable_mib(self) -> float:
        """What a model can use now: free VRAM when known (a detected GPU), else the total."""
        return self.vram_free_mib if self.vram_free_mib is not None else self.vram_total_mib

    def with_index(self, index: int) -> Gpu:
        return replace(self, index=index)


@dataclass(frozen=True)
class Host:
    """The computer the GPUs sit in: it holds the layers and buffers left on the CPU."""

    cpu_name: str | None = None
    cores_physical: int | None = None
    cores_logical: int | None = None
    ram_total_mib: float | None = None
    ram_available_mib: float | None = None
    ram_bandwidth_gbps: float | None = None  # None: the planner uses a desktop default
    # SIMD features the CPU backend picks its weight layouts by ("avx2", "avx512f"); () when unknown.
    cpu_flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rig:
    """GPUs plus host plus the topology between the GPUs.

    ``topology[i][j]`` holds ``nvidia-smi topo -m`` labels (``X`` on the diagonal, then ``NV#``,
    ``PIX``, ``PXB``, ``PHB``, ``NODE`` or ``SYS``); ``p2p[i][j]`` the peer-to-peer read status
    (``OK``, ``NS`` not supported, ``CNS`` chipset not supported, ``TNS`` topology not supported,
    ``U`` unknown, ``X`` self). Both are empty tuples when unknown.
    """

    gpus: tuple[Gpu, ...]
    host: Host = field(default_factory=Host)
    topology: tuple[tuple[str, ...], ...] = ()
    p2p: tuple[tuple[str, ...], ...] = ()
    source: str = "planned"  # "detected" or "planned"
    name: str = ""
    driver: str | None = None
    cuda: str | None = None
    nvml: str | None = None
    status: str = ""
    other_gpus: tuple[Gpu, ...] = ()
    machines: int = 1
    # Machine-readable twin of ``status``: "ok", "no-nvml", "no-library", "no-driver", "no-gpus",
    # "gpu-lost", "nvml-error" for detected rigs; "planned" for planned ones.
    status_code: str = ""
    notes: tuple[str, ...] = ()  # details worth showing: a lost GPU, a field the driver would not report

    @property
    def n_gpus(self) -> int:
        return len(self.gpus)

    @property
    def vram_total_mib(self) -> float:
        return sum(g.vram_total_mib for g in self.gpus)

    @property
    def local_gpus(self) -> tuple[Gpu, ...]:
        """The GPUs in this computer (not behind an RPC server)."""
        return tuple(g for g in self.gpus if g.remote is None)

    @property
    def remote_gpus(self) -> tuple[Gpu, ...]:
        return tuple(g for g in self.gpus if g.remote is not None)

    def rpc_endpoints(self) -> tuple[str, ...]:
        """The RPC servers of the rig's remote devices, each once, in the rig's order (llama.cpp's
        registration order, so its RPC device numbers follow the rig)."""
        out: list[str] = []
        for g in self.gpus:
            if g.remote is not None and g.remote.endpoint is not None and g.remote.endpoint not in out:
                out.append(g.remote.endpoint)
        return tuple(out)

    def link_label(self, i: int, j: int) -> str:
        """Topology label between GPU ``i`` and ``j``, ``"?"`` when unknown."""
        try:
            return self.topology[i][j]
        except IndexError:
            return "?"

    def nvlinked(self, i: int, j: int) -> bool:
        return self.link_label(i, j).startswith("NV")
