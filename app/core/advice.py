"""Advice: short, actionable notes about a rig (and later a plan), each with a stable code.

Codes are a contract (the window, the CLI's JSON and tests key on them); add new ones, never rename.
Rig advice today:

- ``pcie-narrow-slot`` (warning; info on a one-GPU rig): the slot gives the card fewer lanes than it
  has. Row/tensor split traffic to that GPU is throttled (35-40% slower is typical at x4); the layer
  split sends little over PCIe.
- ``pcie-slot-older-gen`` (info): full width, but the slot's PCIe generation is older than the card's.
- ``pcie-idle-downclock`` (info): links running below their maximum right now. That is PCIe power
  saving while the GPU idles, not a fault, so the lane advice above judges slots by their maximum,
  never by the current value alone.
- ``planning-only-gpu`` (info): an AMD or Intel GPU in the rig: Rigfit plans for it but runs models
  on NVIDIA GPUs only.
- ``gpu-lost`` (error): a GPU fell off the bus during detection.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.rig import PCIE_LANE_GBPS, VENDOR_NVIDIA, Gpu, Rig

LEVEL_INFO = "info"
LEVEL_WARNING = "warning"
LEVEL_ERROR = "error"

CODE_PCIE_NARROW_SLOT = "pcie-narrow-slot"
CODE_PCIE_OLDER_GEN = "pcie-slot-older-gen"
CODE_PCIE_IDLE_DOWNCLOCK = "pcie-idle-downclock"
CODE_PLANNING_ONLY_GPU = "planning-only-gpu"
CODE_GPU_LOST = "gpu-lost"


@dataclass(frozen=True)
class Advice:
    """One piece of advice. ``gpu`` is the GPU index it is about, ``None`` for the whole rig."""

    code: str
    level: str  # "info", "warning" or "error"
    message: str
    gpu: int | None = None


def _link_gbps(gen: int | None, width: int | None) -> float | None:
    if gen is None or width is None:
        return None
    return PCIE_LANE_GBPS.get(gen, PCIE_LANE_GBPS[6]) * width


def _gen_width(gen: int | None, width: int | None) -> str:
    return f"Gen{gen if gen is not None else '?'} x{width if width is not None else '?'}"


def _slot_advice(gpu: Gpu, multi_gpu: bool) -> Advice | None:
    pcie = gpu.pcie
    label = f"GPU {gpu.index} ({gpu.name})"
    narrow = (
        pcie.gpu_max_width is not None and pcie.max_width is not None and pcie.max_width < pcie.gpu_max_width
    )
    older = pcie.gpu_max_gen is not None and pcie.max_gen is not None and pcie.max_gen < pcie.gpu_max_gen
    slot = _gen_width(pcie.max_gen, pcie.max_width)
    card = _gen_width(pcie.gpu_max_gen, pcie.gpu_max_width)
    have = _link_gbps(pcie.max_gen, pcie.max_width)
    could = _link_gbps(pcie.gpu_max_gen, pcie.gpu_max_width)
    speed = f" ({have:.1f} of {could:.1f} GB/s)" if have is not None and could is not None else ""
    if narrow:
        if multi_gpu:
            return Advice(
                CODE_PCIE_NARROW_SLOT,
                LEVEL_WARNING,
                f"{label} gets {slot} from its slot; the card supports {card}{speed}. Row/tensor split "
                "traffic to it is throttled (35-40% slower is typical at x4): prefer the layer split, "
                "which sends little over PCIe.",
                gpu.index,
            )
        return Advice(
            CODE_PCIE_NARROW_SLOT,
            LEVEL_INFO,
            f"{label} gets {slot} from its slot; the card supports {card}{speed}. Loading a model "
            "takes longer; generation speed barely changes on a single GPU.",
            gpu.index,
        )
    if older:
        return Advice(
            CODE_PCIE_OLDER_GEN,
            LEVEL_INFO,
            f"{label} runs at {slot}: the slot's PCIe generation is older than the card's {card}{speed}. "
            "Model loading is slower; the layer split hardly notices.",
            gpu.index,
        )
    return None


def rig_advice(rig: Rig) -> tuple[Advice, ...]:
    """Advice about a rig's hardware: slot widths and generations, idle links, GPUs Rigfit cannot run.

    Judges a link by its maximum (what the slot allows), never by the current value alone: a link at
    Gen1 while idle is PCIe power saving and speeds up under load.
    """
    out: list[Advice] = []
    nvidia = [g for g in rig.gpus if g.vendor == VENDOR_NVIDIA]
    multi_gpu = len(rig.gpus) > 1
    if rig.status_code == "gpu-lost":
        lost = [n for n in rig.notes if "lost" in n]
        out.append(
            Advice(
                CODE_GPU_LOST,
                LEVEL_ERROR,
                lost[0] if lost else rig.status or "a GPU was lost during detection",
            )
        )
    for gpu in rig.gpus:
        advice = _slot_advice(gpu, multi_gpu)
        if advice is not None:
            out.append(advice)
    for gpu in rig.gpus:
        # A remote device runs on its server's llama.cpp, whatever its vendor: nothing to warn about.
        if gpu.vendor != VENDOR_NVIDIA and gpu.remote is None:
            out.append(
                Advice(
                    CODE_PLANNING_ONLY_GPU,
                    LEVEL_INFO,
                    f"GPU {gpu.index} ({gpu.name}) is for planning only: Rigfit runs models on NVIDIA GPUs.",
                    gpu.index,
                )
            )
    idle = [
        g
        for g in nvidia
        if (g.pcie.gen is not None and g.pcie.max_gen is not None and g.pcie.gen < g.pcie.max_gen)
        or (g.pcie.width is not None and g.pcie.max_width is not None and g.pcie.width < g.pcie.max_width)
    ]
    if idle and rig.source == "detected":
        now = ", ".join(f"GPU {g.index} at {_gen_width(g.pcie.gen, g.pcie.width)}" for g in idle)
        out.append(
            Advice(
                CODE_PCIE_IDLE_DOWNCLOCK,
                LEVEL_INFO,
                f"{now} right now, below the slot's maximum: normal PCIe power saving while idle; "
                "the link speeds up under load.",
                idle[0].index if len(idle) == 1 else None,
            )
        )
    return tuple(out)
