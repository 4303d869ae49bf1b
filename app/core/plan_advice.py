"""Advice about a plan: which split mode, what the topology costs, power, and what other tools do.

Each :class:`~app.core.advice.Advice` has a stable ``code`` (the window, the CLI's JSON and tests key
on them; add codes, never rename), a level and a plain message. Codes added here:

==============================  =======  ==============================================================
code                            level    when
==============================  =======  ==============================================================
split-mode                      info     always with a GPU: the recommended split mode and why
fits-one-gpu                    warning  several GPUs hold layers but one GPU alone holds the model
slow-card-bottleneck            warning  layer split over cards whose memory bandwidth differs a lot
mixed-vendors                   error    NVIDIA and AMD GPUs both hold layers of the model
row-split-unavailable           error    row split on NVIDIA/AMD with this llama.cpp
tensor-needs-flash-attn         error    tensor split without flash attention (settings_advice)
tensor-unsupported-arch         error    tensor split for an architecture llama.cpp lacks it for
quantized-v-needs-flash-attn    error    a q8_0/q4_0 V cache without flash attention
kv-type-head-size               error    a quantized K cache for a head size that is not a multiple of 32
mla-kv-types                    error    different K and V cache types for an MLA model
tensor-single-gpu               info     tensor split on one GPU
rpc-tensor-split                warning  tensor or row split over remote (RPC) devices (the rule's code)
rpc-slow-link                   warning  a remote device holding layers over a slow network link
rpc-load-transfer               info     more than 1 GiB of weights sent to a remote device at load
rpc-planned                     info     a planned remote device: how to make it real
vram-tight                      warning  a GPU keeps less than 10% of its VRAM free
offload-slow                    warning  layers run on the CPU
host-ram-short                  error    the layers left on the CPU do not fit the host's RAM
does-not-fit                    error    nothing fits
vllm-unequal-vram               info     several GPUs of different VRAM (vLLM tensor parallelism)
ollama-multi-gpu                info     several GPUs (how Ollama places a model)
vulkan-multi-gpu                info     several GPUs (Vulkan builds)
psu-size                        info     desktop GPUs: peak draw and the PSU it needs
pcie-cables                     info     a card with two or more 8-pin or a 16-pin connector
==============================  =======  ==============================================================

plus the rig advice of :func:`app.core.advice.rig_advice` (narrow PCIe slots and the like).
"""

from __future__ import annotations

import math
from dataclasses import replace

from app.core import rules
from app.core.advice import LEVEL_ERROR, LEVEL_INFO, LEVEL_WARNING, Advice, rig_advice
from app.core.errors import RigfitError
from app.core.layout import TIGHT_FREE_FRACTION, is_tight
from app.core.memory import profile
from app.core.model_spec import ModelSpec
from app.core.perf import estimate_speed, gpu_bandwidth_gbps
from app.core.placement import plan, plan_profile
from app.core.plan import STATUS_FITS, STATUS_NO, STATUS_OFFLOAD, STATUS_TIGHT, Plan
from app.core.rig import VENDOR_AMD, VENDOR_INTEL, VENDOR_NVIDIA, Gpu, Rig
from app.core.rules import TENSOR_SPLIT_UNSUPPORTED_ARCHS
from app.core.settings import Settings

CODE_SPLIT_MODE = "split-mode"
CODE_FITS_ONE_GPU = "fits-one-gpu"
CODE_SLOW_CARD = "slow-card-bottleneck"
CODE_MIXED_VENDORS = "mixed-vendors"
# The load rules' advice carries the rule's own code (app.core.rules).
CODE_ROW_UNAVAILABLE = rules.CODE_ROW_UNAVAILABLE
CODE_TENSOR_NEEDS_FA = rules.CODE_TENSOR_NEEDS_FA
CODE_TENSOR_ARCH = rules.CODE_TENSOR_ARCH
CODE_QUANT_V_NEEDS_FA = rules.CODE_QUANT_V_NEEDS_FA
CODE_KV_HEAD_SIZE = rules.CODE_KV_HEAD_SIZE
CODE_MLA_KV_TYPES = rules.CODE_MLA_KV_TYPES
CODE_TENSOR_SINGLE_GPU = rules.CODE_TENSOR_SINGLE_GPU
CODE_RPC_TENSOR_SPLIT = rules.CODE_RPC_TENSOR_SPLIT
CODE_VRAM_TIGHT = rules.CODE_VRAM_TIGHT
CODE_OFFLOAD_SLOW = "offload-slow"
CODE_HOST_RAM_SHORT = rules.CODE_HOST_RAM_SHORT
CODE_DOES_NOT_FIT = rules.CODE_DOES_NOT_FIT
# The rules that settings_advice reports before a plan exists (the split mode's and the KV cache's).
SETTINGS_ADVICE_CODES: frozenset[str] = frozenset(
    {
        CODE_TENSOR_NEEDS_FA,
        CODE_TENSOR_ARCH,
        CODE_TENSOR_SINGLE_GPU,
        CODE_ROW_UNAVAILABLE,
        CODE_KV_HEAD_SIZE,
        CODE_MLA_KV_TYPES,
        CODE_QUANT_V_NEEDS_FA,
        CODE_RPC_TENSOR_SPLIT,
    }
)
CODE_VLLM_UNEQUAL = "vllm-unequal-vram"
CODE_OLLAMA_MULTI_GPU = "ollama-multi-gpu"
CODE_VULKAN_MULTI_GPU = "vulkan-multi-gpu"
CODE_PSU_SIZE = "psu-size"
CODE_PCIE_CABLES = "pcie-cables"

# The rest of a desktop besides the GPUs at full load: CPU (a 105-170 W desktop part under load),
# board, memory, drives and fans.
SYSTEM_POWER_W = 250.0
PSU_HEADROOM = 1.3  # GPUs spike above their power limit for milliseconds; PSUs last longer below 80%
PSU_STEP_W = 50.0
EIGHT_PIN_W = 150.0  # what the PCIe CEM spec rates one 8-pin connector (and its cable) for
SLOW_CARD_RATIO = 0.75  # bandwidth ratio below which a mixed pair's slower card is worth a warning
EQUAL_VRAM_TOLERANCE = 0.02
_SIXTEEN_PIN = ("12VHPWR", "12V-2x6", "12V-2X6")


def _label(gpu: Gpu) -> str:
    return f"GPU {gpu.index} ({gpu.name})"


def _all_nvlinked(rig: Rig) -> bool:
    n = rig.n_gpus
    return n > 1 and all(rig.nvlinked(i, j) for i in range(n) for j in range(n) if i != j)


def _equal_gpus(gpus: tuple[Gpu, ...]) -> bool:
    if len(gpus) < 2:
        return True
    names = {g.name for g in gpus}
    vram = [g.vram_total_mib for g in gpus]
    return len(names) == 1 and (max(vram) - min(vram)) <= EQUAL_VRAM_TOLERANCE * max(vram)


def _vendors(gpus: tuple[Gpu, ...]) -> set[str]:
    return {g.vendor for g in gpus}


def _biggest(gpus: tuple[Gpu, ...], vendor: str | None = None) -> Gpu | None:
    pool = [g for g in gpus if vendor is None or g.vendor == vendor]
    return max(pool, key=lambda g: (g.vram_usable_mib, -g.index)) if pool else None


def _single_gpu_plan(rig: Rig, spec: ModelSpec, settings: Settings) -> tuple[Gpu, Plan] | None:
    """The plan with the whole model on the GPU with the most usable VRAM (split mode none)."""
    best = _biggest(rig.gpus, VENDOR_NVIDIA) or _biggest(rig.gpus)
    if best is None:
        return None
    pos = rig.gpus.index(best)
    s = replace(settings, split_mode="none", main_gpu=pos, tensor_split=None, n_gpu_layers=-1)
    try:
        return best, plan(rig, spec, s)
    except RigfitError:
        return None


def recommended_split_mode(rig: Rig, spec: ModelSpec, settings: Settings | None = None) -> tuple[str, str]:
    """The split mode this rig should use for this model, and why, in one sentence.

    Topology decides (NVLink between equal GPUs: ``tensor``; PCIe or unequal GPUs: ``layer``; several
    machines: ``layer`` between them; NVIDIA mixed with AMD: ``none`` on one vendor's card). With
    ``settings`` the model is also tried on the largest GPU alone: when it fits there and that is not
    slower, ``none`` wins. ``row`` is never recommended: it does not load with this llama.cpp.
    """
    gpus = rig.gpus
    if not gpus:
        return "none", "no GPU: the model runs on the CPU, the split mode does not apply"
    if rig.machines > 1 or rig.remote_gpus:
        return (
            "layer",
            "several machines: only the layer split sends little enough between them (one activation "
            "per machine boundary per token over the network)",
        )
    if len(gpus) == 1:
        return "layer", "one GPU: nothing to split (layer is llama.cpp's default)"
    vendors = _vendors(gpus)
    if VENDOR_NVIDIA in vendors and (VENDOR_AMD in vendors or VENDOR_INTEL in vendors):
        best = _biggest(gpus, VENDOR_NVIDIA)
        assert best is not None
        return (
            "none",
            f"NVIDIA and {'AMD' if VENDOR_AMD in vendors else 'Intel'} GPUs cannot share one model in a CUDA "
            f"or ROCm build of llama.cpp: run it on {_label(best)}",
        )
    tensor_ok = spec.architecture not in TENSOR_SPLIT_UNSUPPORTED_ARCHS
    if _all_nvlinked(rig) and _equal_gpus(gpus):
        if tensor_ok:
            mode, reason = (
                "tensor",
                "NVLink between equal GPUs: tensor parallelism splits every layer so all GPUs read their share "
                "of each token at once (needs flash attention; row split does not load with this llama.cpp)",
            )
        else:
            mode, reason = (
                "layer",
                f"NVLink between equal GPUs, but llama.cpp has no tensor split for '{spec.architecture}': "
                "layer split",
            )
    elif not _equal_gpus(gpus):
        mode, reason = (
            "layer",
            "unequal GPUs: layer split, with the layers shared in proportion to each card's VRAM",
        )
    else:
        mode, reason = (
            "layer",
            "GPUs joined by PCIe: the layer split passes one small activation per GPU boundary per token, "
            "tensor split would need two all-reduces per layer over PCIe",
        )
    if settings is not None:
        single = _single_gpu_plan(rig, spec, settings)
        if single is not None and single[1].status == STATUS_FITS:
            gpu, one = single
            faster = True
            if mode == "tensor":
                try:
                    multi = plan(rig, spec, replace(settings, split_mode="tensor", tensor_split=None))
                    a = estimate_speed(rig, spec, one).decode_tok_s or 0.0
                    b = estimate_speed(rig, spec, multi).decode_tok_s or 0.0
                    faster = a >= b
                except RigfitError:
                    faster = True
            if faster:
                return "none", f"the model fits on {_label(gpu)} alone: one GPU avoids the hops between cards"
    return mode, reason


def settings_advice(rig: Rig, spec: ModelSpec, settings: Settings) -> tuple[Advice, ...]:
    """Requirements of the split mode and the KV cache that the settings break (no plan needed: the
    window shows these before planning, where plan() would refuse). Read from
    :func:`app.core.rules.load_problems`; each advice carries its rule's code."""
    return tuple(
        Advice(p.code, p.severity, rules.sentence(p.message), p.gpu)
        for p in rules.load_problems(rig, spec, settings)
        if p.code in SETTINGS_ADVICE_CODES
    )


def _fits_one_gpu(rig: Rig, spec: ModelSpec, p: Plan) -> Advice | None:
    holders = [d for d in p.devices if d.layers > 0 or d.has_output]
    if len(holders) < 2 or p.status not in (STATUS_FITS, STATUS_TIGHT):
        return None
    single = _single_gpu_plan(rig, spec, p.settings)
    if single is None or single[1].status != STATUS_FITS:
        return None
    gpu, one = single
    spread = estimate_speed(rig, spec, p).decode_tok_s
    alone = estimate_speed(rig, spec, one).decode_tok_s
    if spread is None or alone is None or alone < spread:
        return None  # e.g. tensor parallelism over NVLink really is faster
    return Advice(
        CODE_FITS_ONE_GPU,
        LEVEL_WARNING,
        f"This model fits on {_label(gpu)} alone: spreading it over {len(holders)} GPUs makes it slower "
        f"(about {alone:.0f} tok/s on one GPU vs {spread:.0f} tok/s spread). Use split mode none with "
        f"main GPU {gpu.index}, or keep the other GPUs for another model.",
        gpu.index,
    )


def _slow_card(rig: Rig, spec: ModelSpec, p: Plan) -> Advice | None:
    if p.settings.split_mode != "layer" or p.status == STATUS_NO:
        return None
    holders = [(i, d) for i, d in enumerate(p.devices) if d.layers > 0]
    if len(holders) < 2:
        return None
    bw = {i: gpu_bandwidth_gbps(rig.gpus[i]) for i, _ in holders}
    slow = min(bw, key=lambda i: bw[i])
    fast = max(bw, key=lambda i: bw[i])
    if bw[slow] >= SLOW_CARD_RATIO * bw[fast]:
        return None
    est = estimate_speed(rig, spec, p)
    share = ""
    if est.gpu_decode_s and est.decode_tok_s:
        total = 1.0 / est.decode_tok_s
        t_slow = est.gpu_decode_s[slow] if slow < len(est.gpu_decode_s) else 0.0
        share = (
            f" It holds {p.devices[slow].layers} of {p.n_layer} layers but takes about "
            f"{100 * t_slow / total:.0f}% of each token's time."
        )
    return Advice(
        CODE_SLOW_CARD,
        LEVEL_WARNING,
        f"{_label(rig.gpus[slow])} reads memory at {bw[slow]:.0f} GB/s, {_label(rig.gpus[fast])} at "
        f"{bw[fast]:.0f} GB/s: with the layer split each token waits for the slower card's layers.{share} "
        "Give it fewer layers (a smaller share of the split) if the faster card has room.",
        rig.gpus[slow].index,
    )


def _mixed_vendors(rig: Rig, p: Plan) -> Advice | None:
    used = [rig.gpus[i] for i, d in enumerate(p.devices) if d.layers > 0 or d.has_output]
    vendors = _vendors(tuple(used))
    if VENDOR_NVIDIA in vendors and (VENDOR_AMD in vendors or VENDOR_INTEL in vendors):
        other = "AMD" if VENDOR_AMD in vendors else "Intel"
        return Advice(
            CODE_MIXED_VENDORS,
            LEVEL_ERROR,
            f"NVIDIA and {other} GPUs cannot split one model: a CUDA build of llama.cpp sees only the NVIDIA "
            f"cards and a ROCm build only the AMD ones (a Vulkan build sees both, but slowly and not "
            "reliably). Plan the model on one vendor's GPUs.",
        )
    return None


def _host_short(rig: Rig, spec: ModelSpec, p: Plan) -> Advice | None:
    """A ``no`` plan whose reason is the host's RAM: at the requested offload, or at the largest
    n_gpu_layers whose GPUs fit (what plan() falls back to)."""
    avail = p.host.available_mib
    if p.status != STATUS_NO or avail is None:
        return None
    need = p.host.total_mib
    if need <= avail:
        if all(d.fits for d in p.devices):
            return None
        # Largest n_gpu_layers whose GPUs fit, as plan() searches it; its layers left on the CPU
        # are what the RAM would have to hold.
        prof = profile(spec)
        n_slots = p.n_layer + 1
        top = n_slots - 1 if p.settings.n_gpu_layers < 0 else min(p.settings.n_gpu_layers, n_slots) - 1

        def gpus_fit(k: int) -> Plan | None:
            q = plan_profile(rig, prof, replace(p.settings, n_gpu_layers=k))
            return q if all(d.fits for d in q.devices) else None

        if top < 0 or gpus_fit(0) is None:
            return None
        lo, hi = 0, top
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if gpus_fit(mid) is not None:
                lo = mid
            else:
                hi = mid - 1
        fitted = gpus_fit(lo)
        assert fitted is not None
        need = fitted.host.total_mib
        if need <= avail:
            return None
    return Advice(
        CODE_HOST_RAM_SHORT,
        LEVEL_ERROR,
        f"The layers left on the CPU do not fit the host's RAM ({need / 1024:.1f} GiB needed, "
        f"{avail / 1024:.1f} GiB available): this plan cannot load. Use a smaller quant or context, more "
        "VRAM, or more RAM.",
    )


def _offload(rig: Rig, spec: ModelSpec, p: Plan) -> Advice | None:
    if p.status != STATUS_OFFLOAD:
        return None
    ngl = p.fit_n_gpu_layers if p.fit_n_gpu_layers is not None else p.settings.n_gpu_layers
    n_slots = p.n_layer + 1
    on_cpu = min(p.n_layer, n_slots - ngl) if ngl >= 0 else p.layers_on_cpu
    est = estimate_speed(rig, spec, p)
    speed = ""
    if est.decode_tok_s and est.host_decode_s:
        share = est.host_decode_s * est.decode_tok_s
        speed = (
            f" Predicted {est.decode_tok_s:.1f} tok/s; the CPU's layers take {100 * share:.0f}% of each token's "
            "time."
        )
    return Advice(
        CODE_OFFLOAD_SLOW,
        LEVEL_WARNING,
        f"{on_cpu} of {p.n_layer} layers run on the CPU (n_gpu_layers={ngl}) at system-RAM speed.{speed}",
    )


def _power(rig: Rig) -> list[Advice]:
    if any("module" in c.lower() for g in rig.gpus for c in g.power_connectors):
        return []  # SXM/OAM boards: the server's power shelf is not the user's to size
    desktop = [g for g in rig.gpus if g.power_connectors]
    if not desktop:
        return []  # detected cards without connector data: nothing to say about cables or a desktop PSU
    known = [g.power_limit_w or g.tdp_w for g in rig.gpus]
    if any(w is None for w in known):
        return []
    gpu_w = float(sum(w for w in known if w is not None))
    peak = gpu_w + SYSTEM_POWER_W
    psu = math.ceil(peak * PSU_HEADROOM / PSU_STEP_W) * PSU_STEP_W
    out = [
        Advice(
            CODE_PSU_SIZE,
            LEVEL_INFO,
            f"Peak draw: {gpu_w:.0f} W for the GPUs plus about {SYSTEM_POWER_W:.0f} W for the rest of the system "
            f"= {peak:.0f} W. Use a power supply of at least {psu:.0f} W ({PSU_HEADROOM - 1:.0%} headroom: GPUs "
            "spike above their limit for milliseconds, and multi-GPU inference runs them all at once).",
        )
    ]
    for g in desktop:
        eight = sum(1 for c in g.power_connectors if c.lower().startswith("8-pin"))
        sixteen = [c for c in g.power_connectors if c.upper() in {x.upper() for x in _SIXTEEN_PIN}]
        if eight >= 2:
            out.append(
                Advice(
                    CODE_PCIE_CABLES,
                    LEVEL_INFO,
                    f"{_label(g)} has {eight} 8-pin power connectors: run a separate PCIe cable from the power supply "
                    f"to each one, not one cable with a daisy-chained second plug (each cable is rated for "
                    f"{EIGHT_PIN_W:.0f} W; the card draws up to {(g.power_limit_w or g.tdp_w or 0):.0f} W).",
                    g.index,
                )
            )
        elif sixteen:
            out.append(
                Advice(
                    CODE_PCIE_CABLES,
                    LEVEL_INFO,
                    f"{_label(g)} takes a 16-pin {sixteen[0]} connector: push it fully home and use the power "
                    "supply's native cable, or an adapter fed by a separate 8-pin cable per input.",
                    g.index,
                )
            )
    return out


def _tools(rig: Rig) -> list[Advice]:
    if rig.n_gpus < 2:
        return []
    out: list[Advice] = []
    vram = [g.vram_total_mib for g in rig.gpus]
    if max(vram) - min(vram) > EQUAL_VRAM_TOLERANCE * max(vram):
        out.append(
            Advice(
                CODE_VLLM_UNEQUAL,
                LEVEL_INFO,
                "vLLM's tensor parallelism gives every GPU the same share, so the smallest card limits the others: "
                "with unequal VRAM use pipeline parallelism (--pipeline-parallel-size, with "
                "VLLM_PP_LAYER_PARTITION for uneven layer counts).",
            )
        )
    out.append(
        Advice(
            CODE_OLLAMA_MULTI_GPU,
            LEVEL_INFO,
            "Ollama loads a model on one GPU when it fits there and otherwise spreads it over every GPU it can see; "
            "it takes no tensor split. Restrict it with CUDA_VISIBLE_DEVICES (e.g. =0,1), or force spreading with "
            "OLLAMA_SCHED_SPREAD=1.",
        )
    )
    out.append(
        Advice(
            CODE_VULKAN_MULTI_GPU,
            LEVEL_INFO,
            "Vulkan builds of llama.cpp cannot row-split and are fragile across several GPUs: prefer the CUDA build "
            "(ROCm for AMD cards).",
        )
    )
    return out


def plan_advice(rig: Rig, spec: ModelSpec, settings: Settings, plan: Plan) -> tuple[Advice, ...]:
    """Everything worth telling about ``plan`` (of ``spec`` with ``settings`` on ``rig``), most severe
    first within each topic: split mode, fit, speed, topology, power, other tools."""
    out: list[Advice] = []
    if rig.gpus:
        mode, reason = recommended_split_mode(rig, spec, settings)
        current = settings.split_mode
        suffix = "" if mode == current else f" (this plan uses '{current}')"
        out.append(Advice(CODE_SPLIT_MODE, LEVEL_INFO, f"Recommended split mode: {mode}: {reason}{suffix}."))
    out.extend(settings_advice(rig, spec, settings))
    mixed = _mixed_vendors(rig, plan)
    if mixed is not None:
        out.append(mixed)
    if plan.status == STATUS_NO:
        host = _host_short(rig, spec, plan)
        if host is not None:
            out.append(host)
        elif CODE_ROW_UNAVAILABLE not in rules.codes(plan.problems):  # its advice already says why
            worst = [
                p.message
                for p in plan.problems
                if p.code
                in (rules.CODE_GPU_OVER_CAPACITY, rules.CODE_HOST_RAM_SHORT, rules.CODE_DOES_NOT_FIT)
            ]
            out.append(
                Advice(
                    CODE_DOES_NOT_FIT,
                    LEVEL_ERROR,
                    "This model does not fit this rig at these settings"
                    + (f": {worst[0]}" if worst else "")
                    + ". Try a smaller quant or context, or a q8_0 KV cache.",
                )
            )
    if plan.status == STATUS_TIGHT:
        low = [d for d in plan.devices if is_tight(d.free_after_mib, d.capacity_mib)]
        names = ", ".join(f"GPU {d.index} ({d.free_after_mib:.0f} MiB free)" for d in low)
        out.append(
            Advice(
                CODE_VRAM_TIGHT,
                LEVEL_WARNING,
                f"Tight: {names} keep less than {TIGHT_FREE_FRACTION:.0%} of VRAM free. Other programs (the desktop, a browser) "
                "also use VRAM; a longer prompt batch or a driver update can tip it over.",
            )
        )
    for item in (_offload(rig, spec, plan), _fits_one_gpu(rig, spec, plan), _slow_card(rig, spec, plan)):
        if item is not None:
            out.append(item)
    out.extend(rig_advice(rig))
    out.extend(_remote_advice(rig, spec, plan))
    out.extend(_power(rig))
    out.extend(_tools(rig))
    return tuple(out)


def _remote_advice(rig: Rig, spec: ModelSpec, plan: Plan) -> tuple[Advice, ...]:
    """Remote (RPC) devices: slow links, weights sent at load, planned machines (tensor split over a
    network is a rule: settings_advice reports it)."""
    from app.core.rpc import rpc_advice

    return rpc_advice(
        rig,
        [(d.layers + int(d.has_output), d.has_output) for d in plan.devices],
        [d.weights_mib for d in plan.devices],
        spec.n_embd,
        spec.n_vocab,
    )


__all__ = [
    "CODE_DOES_NOT_FIT",
    "CODE_FITS_ONE_GPU",
    "CODE_HOST_RAM_SHORT",
    "CODE_KV_HEAD_SIZE",
    "CODE_MIXED_VENDORS",
    "CODE_MLA_KV_TYPES",
    "CODE_OFFLOAD_SLOW",
    "CODE_OLLAMA_MULTI_GPU",
    "CODE_PCIE_CABLES",
    "CODE_PSU_SIZE",
    "CODE_QUANT_V_NEEDS_FA",
    "CODE_ROW_UNAVAILABLE",
    "CODE_RPC_TENSOR_SPLIT",
    "CODE_SLOW_CARD",
    "CODE_SPLIT_MODE",
    "CODE_TENSOR_ARCH",
    "CODE_TENSOR_NEEDS_FA",
    "CODE_TENSOR_SINGLE_GPU",
    "CODE_VLLM_UNEQUAL",
    "CODE_VRAM_TIGHT",
    "CODE_VULKAN_MULTI_GPU",
    "plan_advice",
    "recommended_split_mode",
    "settings_advice",
]
