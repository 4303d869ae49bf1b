"""llama.cpp's slot rule (:func:`app.core.layout.layer_assignment`) for every n_gpu_layers at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.core.layout import split_points

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class SlotRanges:
    """Per n_gpu_layers k (0..n_slots) and model GPU m: its slot range [lo, lo + count)."""

    lo: IntArray  # (K, M)
    count: IntArray  # (K, M)


_assign_cache: dict[tuple[int, tuple[float, ...]], SlotRanges] = {}
_assign_one_cache: dict[tuple[int, tuple[float, ...], int], tuple[IntArray, IntArray]] = {}


def assign_one(n_layer: int, raw: Sequence[float], k: int) -> tuple[IntArray, IntArray]:
    """llama.cpp's slot rule for one n_gpu_layers: (first slot, slot count) per model GPU.

    Offloaded slot j (of ``act``) goes to the first GPU whose split point exceeds j/act, so GPU g
    holds the slots whose j/act lies in [split[g-1], split[g]).
    """
    key = (n_layer, tuple(raw), k)
    hit = _assign_one_cache.get(key)
    if hit is not None:
        return hit
    n_slots = n_layer + 1
    act = min(max(k, 0), n_slots)
    splits = split_points(raw)
    values = np.arange(act, dtype=np.float32) / np.float32(max(act, 1))
    below = np.searchsorted(values, splits, side="left").astype(np.int64)
    count = np.diff(np.concatenate(([0], below))).astype(np.int64)
    lo = (n_slots - act) + np.concatenate(([0], below[:-1])).astype(np.int64)
    if len(_assign_one_cache) > 4096:
        _assign_one_cache.clear()
    _assign_one_cache[key] = (lo, count)
    return lo, count


def assignments(n_layer: int, raw: Sequence[float]) -> SlotRanges:
    """:func:`assign_one` for every k = 0..n_layer+1 at once.

    The number of offloaded slots j < k with float32(j) / float32(k) < split is ceil(split * k) up to
    float32 rounding; the candidate is corrected by one either way with llama.cpp's own float32
    comparison (the values j/k are 1/k apart, far more than a float32 rounding error).
    """
    key = (n_layer, tuple(raw))
    hit = _assign_cache.get(key)
    if hit is not None:
        return hit
    n_slots = n_layer + 1
    splits = split_points(raw)  # (M,) float32
    ks = np.arange(n_slots + 1, dtype=np.int64)
    k32 = np.maximum(ks, 1).astype(np.float32)[:, None]
    below = np.ceil(splits.astype(np.float64)[None, :] * ks[:, None]).astype(np.int64)
    below = np.clip(below, 0, ks[:, None])
    # j = below - 1 must be under the split point, j = below must not (when j < k).
    too_many = (below > 0) & ((below - 1).astype(np.float32) / k32 >= splits[None, :])
    below = below - too_many
    too_few = (below < ks[:, None]) & (below.astype(np.float32) / k32 < splits[None, :])
    below = below + too_few
    zeros = np.zeros((ks.size, 1), dtype=np.int64)
    count = np.diff(np.concatenate((zeros, below), axis=1), axis=1)
    lo = (n_slots - ks)[:, None] + np.concatenate((zeros, below[:, :-1]), axis=1)
    result = SlotRanges(lo=lo.astype(np.int64), count=count.astype(np.int64))
    if len(_assign_cache) > 512:
        _assign_cache.clear()
    _assign_cache[key] = result
    return result
