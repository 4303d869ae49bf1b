"""How row split and tensor split divide one tensor between GPUs (llama.cpp's split buffers and
its "meta" device).

* Row split: a split buffer spreads the rows of a 2-D matmul weight over the GPUs by the split,
  each GPU's first row rounded down to ``ROW_SPLIT_ROUNDING`` (``get_row_split``).
* Tensor split: attention and FFN weights, the output weight and the KV cache are split by whole
  heads / aligned row blocks, and the split rotates from layer to layer so the remainders do not all
  land on one GPU (``llama_meta_device_get_split_state``); everything else is mirrored.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from app.core.memory import ROW_SPLIT_ROUNDING, ModelProfile, block_size, cuda_tensor_bytes
from app.core.model_spec import TensorInfo


def row_split_rows(nrows: int, ratios: Sequence[float], rounding: int = ROW_SPLIT_ROUNDING) -> list[int]:
    """Rows of a split-buffer tensor per GPU (get_row_split: starts rounded down to ``rounding``)."""
    n = len(ratios)
    starts = np.zeros(n, dtype=np.float32)
    running = np.float32(0.0)
    total = np.float32(sum(ratios))
    for i, r in enumerate(ratios):
        starts[i] = running / total
        running = np.float32(running + np.float32(r))
    rows: list[int] = []
    for i in range(n):
        low = 0 if i == 0 else int(np.float32(nrows) * starts[i])
        low -= low % rounding
        if i == n - 1:
            high = nrows
        else:
            high = int(np.float32(nrows) * starts[i + 1])
            high -= high % rounding
        rows.append(max(0, high - low))
    return rows


@functools.lru_cache(maxsize=4096)
def tp_shares(
    ne: int, granularity: int, split: tuple[float, ...] | None, rotation: int, n: int
) -> tuple[int, ...]:
    """Elements of one split axis per device (llama_meta_device_get_split_state), granularity-aligned."""
    out = [0] * n
    scan: list[np.float32] = []
    running = np.float32(0.0)
    for j in range(n):
        running = np.float32(running + np.float32(0.0 if split is None else split[(j + rotation) % n]))
        scan.append(running)
    low = 0
    for j in range(n - 1):
        high = ne * (j + 1) // n if scan[-1] == 0.0 else int(np.float32(ne) * scan[j] / scan[-1])
        high -= high % granularity
        out[(j + rotation) % n] = high - low
        low = high
    out[(n - 1 + rotation) % n] = ne - low
    return tuple(out)


@dataclass
class TensorParallel:
    """One model's tensor-parallel layout over ``n`` GPUs with ratios ``split`` (``None``: even)."""

    prof: ModelProfile
    n: int
    split: tuple[float, ...] | None
    by_name: dict[str, TensorInfo] = field(default_factory=dict)  # filled by __post_init__
    memo: dict[tuple[int, int], tuple[int, int, int, int]] = field(default_factory=dict)
    rot_memo: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.by_name:
            self.by_name = {t.name: t for t in self.prof.spec.tensors}

    def blck_of(self, name: str, fallback: TensorInfo) -> int:
        t = self.by_name.get(name, fallback)
        return block_size(t.ggml_type)

    def rotation(self, il: int) -> int:
        # Rotation counts only earlier layers of the same kind (sliding-window or not).
        hit = self.rot_memo.get(il)
        if hit is None:
            swa = self.prof.is_swa
            same = int(np.count_nonzero(swa[:il] == swa[il])) if il < swa.size else il
            hit = self.rot_memo[il] = same % self.n
        return hit

    def granularities(self, il: int, blck: int) -> tuple[int, int, int, int]:
        """(granularity_q, granularity_head, granularity_kv, granularity_v) for layer ``il``."""
        key = (il, blck)
        hit = self.memo.get(key)
        if hit is None:
            hit = self.memo[key] = self._granularities(il, blck)
        return hit

    def _granularities(self, il: int, blck: int) -> tuple[int, int, int, int]:
        p = self.prof
        n_head = int(p.n_head[il])
        n_head_kv = max(1, int(p.n_head_kv[il]))
        n_gqa = max(1, n_head // n_head_kv)
        hk, hv = p.head_dim_k, p.head_dim_v
        n_embd_q = n_gqa * hk
        perf = blck
        while perf < 128 and perf * self.n < n_embd_q:
            perf *= 2
        g_q = math.lcm(n_embd_q, perf)
        g_head = g_q // hk
        g_kv = g_q // n_gqa
        g_v = (g_kv // hk) * hv
        return g_q, g_head, g_kv, g_v


def tp_tensor_bytes(ctx: TensorParallel, t: TensorInfo) -> list[int]:
    """CUDA bytes of one weight on each GPU under tensor parallelism."""
    n = ctx.n
    name = t.name
    il = t.layer
    ne0 = t.shape[0] if t.shape else 1
    rows = 1
    for d in t.shape[1:]:
        rows *= d
    mirrored = [cuda_tensor_bytes(t)] * n
    if il is None:
        if name == "output.weight":
            rot = (ctx.prof.n_layer - int(getattr(ctx.prof.spec, "n_layer_nextn", 0) or 0)) % n
            shares = tp_shares(t.shape[1], 1, ctx.split, rot, n)
            inner = rows // t.shape[1]
            return [cuda_tensor_bytes(t, ne0, s * inner) for s in shares]
        return mirrored
    suffix = name.split(".", 2)[2] if name.count(".") >= 2 else name
    rot = ctx.rotation(il)
    prefix = f"blk.{il}."

    def axis1(granularity: int) -> list[int]:
        ne1 = t.shape[1]
        inner = rows // ne1
        return [cuda_tensor_bytes(t, ne0, s * inner) for s in tp_shares(ne1, granularity, ctx.split, rot, n)]

    def axis0(granularity: int) -> list[int]:
        return [cuda_tensor_bytes(t, s, rows) for s in tp_shares(ne0, granularity, ctx.split, rot, n)]

    if suffix in (
        "attn_q.weight",
        "attn_k.weight",
        "attn_v.weight",
        "attn_q.bias",
        "attn_k.bias",
        "attn_v.bias",
    ):
        blck = ctx.blck_of(prefix + "attn_output.weight", t)
        g_q, _, g_kv, g_v = ctx.granularities(il, blck)
        g = g_q if suffix.startswith("attn_q") else (g_v if suffix.startswith("attn_v") else g_kv)
        return axis1(g) if suffix.endswith("weight") else axis0(g)
    if suffix == "attn_output.weight":
        g_q, g_head, _, _ = ctx.granularities(il, block_size(t.ggml_type))
        return axis0(g_head * ctx.prof.head_dim_v)
    if suffix in ("attn_q_norm.weight", "attn_k_norm.weight"):
        return mirrored if len(t.shape) < 2 or t.shape[1] == 1 else axis1(1)
    ffn_axis1: tuple[str, ...] = (
        "ffn_up.weight",
        "ffn_up_exps.weight",
        "ffn_gate.weight",
        "ffn_gate_exps.weight",
        "ffn_gate_up.weight",
        "ffn_gate_up_exps.weight",
    )
    if suffix in ffn_axis1 or suffix in ("ffn_down.weight", "ffn_down_exps.weight"):
        ref = (
            ctx.by_name.get(prefix + "ffn_down.weight")
            or ctx.by_name.get(prefix + "ffn_down_exps.weight")
            or t
        )
        g = math.lcm(block_size(ref.ggml_type), 128)
        if suffix in ffn_axis1 and suffix.startswith("ffn_gate_up"):
            return axis1(g)
        return axis1(g) if suffix in ffn_axis1 else axis0(g)
    return mirrored


def tp_kv_widths(ctx: TensorParallel, il: int, k_width: int, v_width: int) -> list[tuple[int, int]]:
    """Per GPU (K values, V values) per cell of layer ``il`` under tensor parallelism."""
    n = ctx.n
    blck = ctx.blck_of(f"blk.{il}.attn_output.weight", ctx.prof.spec.tensors[0])
    _, _, g_kv, g_v = ctx.granularities(il, blck)
    rot = ctx.rotation(il)
    ks = tp_shares(k_width, g_kv, ctx.split, rot, n) if k_width else [0] * n
    vs = tp_shares(v_width, g_v, ctx.split, rot, n) if v_width else [0] * n
    return list(zip(ks, vs, strict=True))


__all__ = ["TensorParallel", "row_split_rows", "tp_kv_widths", "tp_shares", "tp_tensor_bytes"]
