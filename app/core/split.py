"""The split solver: presets, two optimisers that respect whole layers, and the sliders' arithmetic.

llama.cpp's layer split gives GPU ``g`` the slots whose position ``j / n`` falls in
``[split[g-1], split[g])`` of the cumulative, normalised ``tensor_split`` (the output layer is the last
slot). Ratios are therefore only meaningful through the layer counts they produce, and the exact
``tensor_split`` that reproduces a set of per-GPU slot counts is the counts themselves: cumulative
counts divided by the total are exactly the slot boundaries (``-ts 41,40`` for 41 and 40 slots).

* Presets: ``even``, ``vram`` (by total VRAM) and ``free`` (by free VRAM, llama.cpp's default).
* :func:`split_for_max_ctx`: the partition of the slots that fits the largest context.
* :func:`split_for_even_headroom`: the partition whose tightest GPU keeps the largest share of its
  VRAM free at the settings' context.
* :func:`rebalance`: one slider moved, locked GPUs kept, the rest rescaled so the ratios sum to 1.

Both optimisers work on the layer split with every layer on the GPUs. A GPU's memory only grows
when its contiguous range of slots grows, so for a memory limit per GPU the greedy partition (each
GPU in llama.cpp's device order, remote RPC devices first, takes as many slots as fit) succeeds whenever any partition does; the optimisers
bisect on the context (or on the headroom) with that test. The answer is checked with
:func:`app.core.placement.plan` before it is returned.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from app.core.compute import BACKEND_CUDA, ComputeRole, compute_bytes_cells
from app.core.errors import RigfitError
from app.core.layout import (
    context_candidates,
    context_limit,
    gpu_overhead_mib,
    kv_rows,
    layer_assignment,
    llama_device_order,
    pipeline_parallel,
)
from app.core.memory import MIB, PIPELINE_COPIES, ModelProfile, kv_cells, profile
from app.core.model_spec import ModelSpec
from app.core.placement import plan, validate_settings
from app.core.plan import Plan
from app.core.rig import Rig
from app.core.settings import Settings

PRESETS: tuple[str, ...] = ("even", "vram", "free")
OBJECTIVES: tuple[str, ...] = ("max-ctx", "headroom")


def _normalised(weights: Sequence[float]) -> tuple[float, ...]:
    total = float(sum(weights))
    if total <= 0:
        return tuple(1.0 / len(weights) for _ in weights) if weights else ()
    return tuple(float(w) / total for w in weights)


def preset_split(rig: Rig, preset: str) -> tuple[float, ...]:
    """Ratios summing to 1, one per GPU: ``even``, ``vram`` (total VRAM) or ``free`` (free VRAM, which
    is what llama.cpp uses without a tensor_split; a planned GPU counts as entirely free)."""
    if rig.n_gpus == 0:
        raise RigfitError("the rig has no GPU to split a model over")
    key = preset.strip().lower()
    if key == "even":
        return _normalised([1.0] * rig.n_gpus)
    if key == "vram":
        return _normalised([g.vram_total_mib for g in rig.gpus])
    if key == "free":
        return _normalised([g.vram_usable_mib for g in rig.gpus])
    raise RigfitError(f"unknown split preset '{preset}' (use one of {', '.join(PRESETS)})")


def slot_counts(n_layer: int, tensor_split: Sequence[float], n_gpu_layers: int = -1) -> tuple[int, ...]:
    """Slots (repeating layers plus the output layer) each GPU gets from llama.cpp for a split
    (GPUs and ratios in llama.cpp's device order)."""
    assignment = layer_assignment(n_layer, tensor_split, n_gpu_layers)
    return tuple(sum(1 for d in assignment if d == g) for g in range(len(tensor_split)))


def rig_slot_counts(rig: Rig, n_layer: int, tensor_split: Sequence[float]) -> tuple[int, ...]:
    """:func:`slot_counts` of a layer split given in rig order, answered in rig order: llama.cpp
    fills its devices in its own order (remote RPC devices first, layout.llama_device_order)."""
    order = llama_device_order(rig, "layer")
    counts = slot_counts(n_layer, [tensor_split[g] for g in order])
    out = [0] * len(order)
    for k, g in enumerate(order):
        out[g] = counts[k]
    return tuple(out)


# ------------------------------------------------------------------------------------------------
# memory of one GPU holding a contiguous range of slots (plan()'s layer-split arithmetic)
# ------------------------------------------------------------------------------------------------


class _RangeCost:
    """MiB a GPU needs for slots [a, b) with every layer offloaded, memoised per range and context."""

    def __init__(self, rig: Rig, prof: ModelProfile, settings: Settings) -> None:
        self.prof = prof
        self.s = settings
        self.L = prof.n_layer
        self.cum_w = np.concatenate(([0], np.cumsum(prof.layer_gpu_bytes))).astype(np.float64)
        rows = kv_rows(prof, settings)
        swa = prof.is_swa
        self.cum_base = np.concatenate(([0.0], np.cumsum(np.where(swa, 0.0, rows))))
        self.cum_swa = np.concatenate(([0.0], np.cumsum(np.where(swa, rows, 0.0))))
        # The optimisers place every layer on the GPUs with the layer split.
        pipeline = pipeline_parallel(replace(settings, split_mode="layer"), rig.n_gpus, all_offloaded=True)
        self.copies = PIPELINE_COPIES if pipeline else 1
        self._memo: dict[tuple[int, int, int], float] = {}
        self._compute: dict[tuple[int, int, bool, int], float] = {}

    def bytes(self, a: int, b: int, ctx: int) -> float:
        """Weights + KV + compute bytes of slots [a, b) at ``ctx`` (overhead excluded)."""
        key = (a, b, ctx)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        L = self.L
        hi = min(b, L)
        lo = min(a, hi)
        has_layers = hi > lo
        has_out = b > L
        p = self.prof
        w = float(self.cum_w[hi] - self.cum_w[lo])
        if has_layers:
            w += p.per_device_gpu_bytes
        if has_out:
            w += p.output_gpu_bytes
        cells = kv_cells(replace(self.s, ctx=ctx), p.n_swa)
        kv = 0.0
        if self.s.offload_kqv:
            kv = (
                float(self.cum_base[hi] - self.cum_base[lo]) * cells.base_cells_total
                + float(self.cum_swa[hi] - self.cum_swa[lo]) * cells.swa_cells_total
            )
        ckey = (lo, hi, has_out, ctx)
        comp = self._compute.get(ckey)
        if comp is None:
            layers = tuple(range(lo, hi))
            role = ComputeRole(
                backend=BACKEND_CUDA,
                layers=layers,
                attention_layers=layers if self.s.offload_kqv else (),
                output=has_out,
                copies=self.copies,
            )
            comp = float(
                compute_bytes_cells(
                    p,
                    self.s,
                    cells.n_ubatch,
                    cells.n_outputs,
                    np.array([float(cells.n_ctx_seq)]),
                    np.array([float(cells.swa_cells)]),
                    role,
                )[0]
            )
            self._compute[ckey] = comp
        total = w + kv + comp
        self._memo[key] = total
        return total


def _greedy(
    n_slots: int, limits_bytes: Sequence[float], cost: Callable[[int, int], float], order: Sequence[int]
) -> tuple[int, ...] | None:
    """Slot counts per GPU (rig order): each GPU in llama.cpp's device ``order`` takes as many slots
    as stay within its limit (``limits_bytes`` in rig order).

    Returns None when the slots do not all fit. A GPU's cost only grows with its range, so this finds a
    partition whenever one exists.
    """
    counts = [0] * len(limits_bytes)
    a = 0
    g_last = len(order) - 1
    for k, g in enumerate(order):
        limit = limits_bytes[g]
        if a >= n_slots:
            continue
        if k == g_last:
            if cost(a, n_slots) > limit:
                return None
            counts[g] = n_slots - a
            a = n_slots
            continue
        # Largest c with cost(a, a + c) <= limit (c = 0 always fits: no layers, no compute).
        lo_c, hi_c = 0, n_slots - a
        while lo_c < hi_c:
            mid = (lo_c + hi_c + 1) // 2
            if cost(a, a + mid) <= limit:
                lo_c = mid
            else:
                hi_c = mid - 1
        counts[g] = lo_c
        a += lo_c
    return tuple(counts) if a >= n_slots else None


# ------------------------------------------------------------------------------------------------
# optimisers
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitSolution:
    """An optimised layer split.

    ``tensor_split`` is what to pass to llama.cpp (``-ts``) to get exactly ``slots`` (per GPU, the
    output layer counted on the GPU that holds it); ``max_ctx`` the largest context that fits with it
    (``None`` when not even 256 tokens do); ``min_free_fraction`` the smallest share of VRAM left
    free on a GPU at ``plan.settings.ctx``; ``plan`` the plan at that context.
    """

    objective: str
    tensor_split: tuple[int, ...]
    slots: tuple[int, ...]
    layers: tuple[int, ...]
    max_ctx: int | None
    min_free_fraction: float
    plan: Plan


def _check(rig: Rig, spec: ModelSpec, settings: Settings) -> None:
    if rig.n_gpus == 0:
        raise RigfitError("the rig has no GPU to split a model over")
    if settings.split_mode != "layer":
        raise RigfitError(
            f"the split optimisers work on the layer split (this plan uses '{settings.split_mode}'); "
            "tensor split follows the ratios directly"
        )
    if 0 <= settings.n_gpu_layers <= spec.n_layer:
        raise RigfitError("the split optimisers place every layer on the GPUs: set n_gpu_layers to all (-1)")
    validate_settings(rig, spec, replace(settings, tensor_split=None))


def _limits(rig: Rig, settings: Settings, free_fraction: float = 0.0) -> list[float]:
    return [
        (g.vram_usable_mib * (1.0 - free_fraction) - gpu_overhead_mib(g, settings)) * MIB for g in rig.gpus
    ]


def _solution(
    objective: str, rig: Rig, spec: ModelSpec, settings: Settings, counts: Sequence[int], limit: int | None
) -> SplitSolution:
    split = tuple(int(c) for c in counts)
    if rig_slot_counts(rig, spec.n_layer, split) != split:  # the round trip llama.cpp will do
        raise RigfitError("internal error: the split does not reproduce its layer counts")
    s = replace(settings, tensor_split=tuple(float(c) for c in split))
    p = plan(rig, spec, s)
    cost_ctx = largest_ctx_for_split(rig, spec, s, limit)
    free = [d.free_after_mib / d.capacity_mib for d in p.devices if d.capacity_mib > 0]
    layers = tuple(d.layers for d in p.devices)
    return SplitSolution(
        objective=objective,
        tensor_split=split,
        slots=split,
        layers=layers,
        max_ctx=cost_ctx,
        min_free_fraction=min(free) if free else 0.0,
        plan=p,
    )


def largest_ctx_for_split(
    rig: Rig, spec: ModelSpec, settings: Settings, limit: int | None = None
) -> int | None:
    """Largest context (multiple of 256, up to ``limit`` or the trained context) that fits with this split."""
    from app.core.placement import largest_fitting_ctx

    return largest_fitting_ctx(rig, spec, settings, limit or spec.n_ctx_train or None)


def split_for_max_ctx(
    rig: Rig, spec: ModelSpec, settings: Settings | None = None, limit: int | None = None
) -> SplitSolution:
    """The layer split that fits the largest context (up to ``limit`` or the model's trained context).

    Among the partitions that reach that context the one with the most even headroom there is
    returned; the solution's plan is at that context. Raises :class:`RigfitError` when not even 256
    tokens fit with every layer on the GPUs.
    """
    s = settings if settings is not None else Settings()
    _check(rig, spec, s)
    prof = profile(spec)
    cost = _RangeCost(rig, prof, s)
    n_slots = prof.n_layer + 1
    limits = _limits(rig, s)
    top = context_limit(spec.n_ctx_train, limit)
    cands = context_candidates(top).tolist()

    order = llama_device_order(rig, "layer")

    def feasible(ctx: int) -> bool:
        return _greedy(n_slots, limits, lambda a, b: cost.bytes(a, b, ctx), order) is not None

    if not feasible(cands[0]):
        raise RigfitError(
            f"{spec.name} does not fit on these GPUs even at {cands[0]} tokens with every layer on them: "
            "offload layers to the CPU (n_gpu_layers) or add VRAM"
        )
    lo, hi = 0, len(cands) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if feasible(cands[mid]):
            lo = mid
        else:
            hi = mid - 1
    best_ctx = cands[lo]
    counts = _most_even(rig, s, n_slots, cost, best_ctx)
    return _solution("max-ctx", rig, spec, replace(s, ctx=best_ctx), counts, top)


def _most_even(rig: Rig, settings: Settings, n_slots: int, cost: _RangeCost, ctx: int) -> tuple[int, ...]:
    """The partition that maximises the smallest free share of VRAM over the GPUs at ``ctx``."""

    order = llama_device_order(rig, "layer")

    def attempt(t: float) -> tuple[int, ...] | None:
        return _greedy(n_slots, _limits(rig, settings, t), lambda a, b: cost.bytes(a, b, ctx), order)

    # Bisect the free share t: at t the GPUs may use (1 - t) of their VRAM. Below -1 every GPU may
    # take twice its VRAM: the least overflowing partition when nothing fits.
    lo, hi = -1.0, 1.0
    best = attempt(lo)
    if best is None:
        best = attempt(-1e9)
        if best is None:  # pragma: no cover - any partition fits an unlimited GPU
            raise RigfitError("no partition of the layers exists")
        return best
    for _ in range(40):
        mid = (lo + hi) / 2
        got = attempt(mid)
        if got is not None:
            lo, best = mid, got
        else:
            hi = mid
        if hi - lo < 1e-5:
            break
    return best


def split_for_even_headroom(rig: Rig, spec: ModelSpec, settings: Settings | None = None) -> SplitSolution:
    """The layer split whose tightest GPU keeps the largest share of its VRAM free at the settings'
    context (when nothing fits: the one that overflows least)."""
    s = settings if settings is not None else Settings()
    _check(rig, spec, s)
    prof = profile(spec)
    cost = _RangeCost(rig, prof, s)
    counts = _most_even(rig, s, prof.n_layer + 1, cost, s.ctx)
    return _solution("headroom", rig, spec, s, counts, None)


def optimise_split(rig: Rig, spec: ModelSpec, settings: Settings, objective: str) -> SplitSolution:
    """``max-ctx`` or ``headroom`` (see :data:`OBJECTIVES`)."""
    key = objective.strip().lower()
    if key == "max-ctx":
        return split_for_max_ctx(rig, spec, settings)
    if key == "headroom":
        return split_for_even_headroom(rig, spec, settings)
    raise RigfitError(f"unknown split objective '{objective}' (use one of {', '.join(OBJECTIVES)})")


# ------------------------------------------------------------------------------------------------
# sliders
# ------------------------------------------------------------------------------------------------


def rebalance(
    ratios: Sequence[float], index: int, value: float, locked: Sequence[int] | frozenset[int] = ()
) -> tuple[float, ...]:
    """New ratios after GPU ``index``'s slider moved to ``value`` (a share, 0 to 1).

    Locked GPUs keep their share; the moved GPU gets ``value`` clamped to what the locked ones leave;
    the other unlocked GPUs share the rest in proportion to their current shares (evenly when they
    are all zero). The result sums to 1. With no other unlocked GPU the moved one keeps what the
    locked ones leave.
    """
    n = len(ratios)
    if n == 0:
        raise RigfitError("there are no GPUs to split between")
    if not 0 <= index < n:
        raise RigfitError(f"GPU {index} does not exist: the split has GPUs 0 to {n - 1}")
    vals = [float(r) for r in ratios]
    if any(not math.isfinite(r) or r < 0 for r in vals):
        raise RigfitError("split ratios must be non-negative numbers")
    if not math.isfinite(float(value)):
        raise RigfitError("the new share must be a number between 0 and 1")
    lock = {int(i) for i in locked}
    if any(not 0 <= i < n for i in lock):
        raise RigfitError(f"a locked GPU does not exist: the split has GPUs 0 to {n - 1}")
    if index in lock:
        raise RigfitError(f"GPU {index} is locked: unlock it to move its share")
    cur = list(_normalised(vals))
    locked_sum = sum(cur[i] for i in lock)
    avail = max(0.0, 1.0 - locked_sum)
    others = [i for i in range(n) if i != index and i not in lock]
    new = min(max(float(value), 0.0), avail)
    if not others:
        new = avail
    out = list(cur)
    out[index] = new
    rest = avail - new
    weight = sum(cur[i] for i in others)
    for i in others:
        out[i] = rest * (cur[i] / weight if weight > 0 else 1.0 / len(others))
    # Absorb rounding so the shares sum to exactly 1 (in the last GPU that is free to move).
    drift = 1.0 - sum(out)
    fix = others[-1] if others else index
    out[fix] = max(0.0, out[fix] + drift)
    return tuple(out)


__all__ = [
    "OBJECTIVES",
    "PRESETS",
    "SplitSolution",
    "largest_ctx_for_split",
    "optimise_split",
    "preset_split",
    "rebalance",
    "rig_slot_counts",
    "slot_counts",
    "split_for_even_headroom",
    "split_for_max_ctx",
]
