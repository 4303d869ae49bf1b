"""One (rig, settings) evaluation of the fit table: placements, KV cache and compute buffers.

Evaluated for many placements at once (every n_gpu_layers of a model, every candidate context), with
the arithmetic of :mod:`app.core.placement`: the shared rules come from :mod:`app.core.layout`, the
buffer sizes from :mod:`app.core.memory`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import numpy.typing as npt

from app.core import perf
from app.core.compute import BACKEND_CPU, BACKEND_CUDA, ComputeRole, compute_bytes_cells
from app.core.fit.assign import assign_one, assignments
from app.core.fit.groups import ModelGroup, prefix_max, settings_id
from app.core.layout import (
    context_candidates,
    context_limit,
    gpu_overhead_mib,
    kv_rows,
    model_gpus,
    offload_gpu,
    op_offload_active,
    pipeline_parallel,
    raw_split,
)
from app.core.memory import KV_CTX_PAD, PIPELINE_COPIES, ModelProfile, kv_cells, kv_cells_for_contexts
from app.core.rig import Rig
from app.core.settings import Settings

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Cells:
    """KV cells and graph sizes for many contexts (as placement.context_sweep computes them)."""

    ctx: IntArray
    base: FloatArray  # cells per stream, full cache
    swa: FloatArray  # cells per stream, sliding-window cache
    n_stream: int
    tokens: IntArray
    outputs: IntArray


@dataclass(frozen=True, eq=False)
class CellsAt:
    """Where one context's cells are: a set of contexts, its memo key and the context's column."""

    cells: Cells
    key: object
    col: int


@dataclass(frozen=True, eq=False)
class KvCum:
    """K+V bytes per cell summed over layers ``[0, h)`` (full cache, sliding-window cache), and the
    largest per-layer row among them (what op_offload copies for a host layer's attention)."""

    base: FloatArray  # (L+1,)
    swa: FloatArray  # (L+1,)
    row_max: FloatArray  # (L+1,)


@dataclass(frozen=True, eq=False)
class Placement:
    """Where the slots of one ``n_gpu_layers`` go: per rig GPU the first and the end of its
    repeating layers and whether it holds the output layer; the repeating layers left on the host."""

    lo: IntArray  # (G,)
    hi: IntArray  # (G,)
    out: BoolArray  # (G,)
    host_layers: int


@dataclass(frozen=True, eq=False)
class Placements:
    """:class:`Placement` for several ``n_gpu_layers`` at once: (K, G) arrays, (K,) host layers."""

    lo: IntArray
    hi: IntArray
    out: BoolArray
    host_layers: IntArray

    def head(self, k: int) -> Placements:
        """The placements of the first ``k`` entries."""
        return Placements(self.lo[:k], self.hi[:k], self.out[:k], self.host_layers[:k])

    @staticmethod
    def of(one: Placement) -> Placements:
        """One placement as a batch of one."""
        return Placements(one.lo[None], one.hi[None], one.out[None], np.array([one.host_layers]))


@dataclass(frozen=True, eq=False)
class GpuCompute:
    """GPU compute bytes of placements (K', G): a GPU's buffer is ``max(rest, off_w + p_const where
    offw, out_mm + x_const where offout)``, ``off_w`` / ``out_mm`` being the weights op_offload
    copies for the quant at hand (see _BIG). The byte arrays are (K', G, C)."""

    rest: FloatArray
    p_const: FloatArray
    x_const: FloatArray
    offw: BoolArray  # (K', G)
    offout: BoolArray  # (K', G)


@dataclass(frozen=True, eq=False)
class Extras:
    """Everything about placements (K', G) at one context except the weights."""

    kv: FloatArray  # (K', G) GPU KV bytes
    rest: FloatArray  # (K', G) compute bytes, as GpuCompute at that context
    p_const: FloatArray
    x_const: FloatArray
    offw: BoolArray
    offout: BoolArray
    host_kv: FloatArray  # (K',)
    host_compute: FloatArray  # (K',)

    @staticmethod
    def concat(parts: list[Extras]) -> Extras:
        """Several models' extras stacked along K'."""
        return Extras(*(np.concatenate([getattr(e, f.name) for e in parts]) for f in fields(Extras)))

    def take(self, i: IntArray) -> Extras:
        """The rows ``i`` (one per table row being searched)."""
        return Extras(*(getattr(self, f.name)[i] for f in fields(Extras)))


def cells_for(settings: Settings, n_swa: int, ctxs: IntArray) -> Cells:
    """:class:`Cells` for many contexts."""
    c = kv_cells_for_contexts(settings, n_swa, ctxs)
    return Cells(
        ctx=ctxs,
        base=c.n_ctx_seq.astype(np.float64),
        swa=c.swa_cells.astype(np.float64),
        n_stream=int(c.n_stream),
        tokens=c.n_ubatch,
        outputs=c.n_outputs,
    )


def one_cell(settings: Settings, n_swa: int, ctx: int) -> Cells:
    """:class:`Cells` for one context."""
    c = kv_cells(replace(settings, ctx=ctx), n_swa)
    return Cells(
        ctx=np.array([ctx], dtype=np.int64),
        base=np.array([float(c.n_ctx_seq)]),
        swa=np.array([float(c.swa_cells)]),
        n_stream=c.n_stream,
        tokens=np.array([c.n_ubatch], dtype=np.int64),
        outputs=np.array([c.n_outputs], dtype=np.int64),
    )


# op_offload's copied host weight enters compute_bytes_cells as one additive phase (weight + 3f + 2e
# + masks). Evaluating a role once without it and once with a huge weight gives that phase's constant
# part, so each quant's weight is one max() away instead of one compute_bytes_cells call each. The
# same goes for the output weight GPU 0 gets when the output layer stays on the host. Bytes are
# integers far below 2**53, so the subtraction is exact.
_BIG = float(1 << 45)
_MEMO_SIZE = 512  # compute-buffer entries kept per model (each up to 3 x 640 floats)


def _compute(
    g: ModelGroup, settings: Settings, cells: Cells, role: ComputeRole, prof: ModelProfile | None = None
) -> FloatArray:
    """compute_bytes_cells over the contexts of ``cells`` (grouped by the graph's token count)."""
    p = prof if prof is not None else g.prof
    if cells.ctx.size == 1:
        return compute_bytes_cells(
            p, settings, int(cells.tokens[0]), int(cells.outputs[0]), cells.base, cells.swa, role
        )
    out = np.zeros(cells.ctx.size, dtype=np.float64)
    for t, n_out in set(zip(cells.tokens.tolist(), cells.outputs.tolist(), strict=True)):
        sel = (cells.tokens == t) & (cells.outputs == n_out)
        out[sel] = compute_bytes_cells(p, settings, int(t), int(n_out), cells.base[sel], cells.swa[sel], role)
    return out


def _modified_profiles(g: ModelGroup) -> tuple[ModelProfile, ModelProfile]:
    if g.prof_out0 is None or g.prof_out_big is None:
        g.prof_out0 = replace(g.prof, output_matmul_gpu_bytes=0)
        g.prof_out_big = replace(g.prof, output_matmul_gpu_bytes=int(_BIG))
    return g.prof_out0, g.prof_out_big


class Evaluator:
    """One (rig, settings): the layer rule, the per-GPU constants and the per-model memo keys."""

    def __init__(self, rig: Rig, settings: Settings) -> None:
        self.rig = rig
        self.s = settings
        n = rig.n_gpus
        self.n = n
        self.model_gpus = model_gpus(rig, settings)
        self.raw = tuple(raw_split(rig, settings, self.model_gpus)) if self.model_gpus else ()
        self.capacity = np.array([gpu.vram_usable_mib for gpu in rig.gpus], dtype=np.float64)
        self.overhead = np.zeros(n, dtype=np.float64)
        for gi in self.model_gpus:
            self.overhead[gi] = gpu_overhead_mib(rig.gpus[gi], settings)
        self.is_model = np.zeros(n, dtype=bool)
        self.is_model[self.model_gpus] = True
        self.avail = rig.host.ram_available_mib
        self.sid = settings_id(
            replace(
                settings,
                ctx=0,
                tensor_split=None,
                main_gpu=0,
                split_mode="layer",
                n_gpu_layers=-1,
                overhead_mib=None,
            )
        )
        # op_offload goes to the first local GPU of llama.cpp's device order (layout.offload_gpu).
        self.offload_to = offload_gpu(rig, self.model_gpus)
        self.offload = op_offload_active(settings, self.offload_to is not None)
        # Pipeline copies when every slot is offloaded (a property of k, applied per placement).
        self.multi = pipeline_parallel(settings, len(self.model_gpus), all_offloaded=True)
        self.bandwidth = np.array([perf.gpu_bandwidth_gbps(gpu) for gpu in rig.gpus], dtype=np.float64)
        self._links: dict[tuple[int, bool, bool, int, int], float] = {}

    # --- layouts ---------------------------------------------------------------------------------------
    def place_one(self, g: ModelGroup, k: int) -> Placement:
        """Where the slots go with ``k`` of them offloaded."""
        n = self.n
        L = g.n_layer
        lo = np.zeros(n, dtype=np.int64)
        hi = np.zeros(n, dtype=np.int64)
        if self.model_gpus:
            a_lo, a_count = assign_one(L, self.raw, k)
            lo[self.model_gpus] = a_lo
            hi[self.model_gpus] = a_lo + a_count
        # A GPU holds the output layer (slot L) when its slots reach it. A GPU with no slot holds
        # nothing, though its empty range starts past slot L when no slot is left for it: every GPU
        # at k = 0, and those after the last to get a slot (a split of 1e9 : 1 : 1, in float32).
        out = (hi > L) & (hi > lo)
        hi = np.minimum(hi, L)
        lo = np.minimum(lo, hi)
        h = min(max(g.n_slots - k, 0), L) if self.model_gpus else L
        return Placement(lo, hi, out, h)

    def place_all(self, g: ModelGroup) -> Placements:
        """:meth:`place_one` for every k = 0..n_slots."""
        n = self.n
        L = g.n_layer
        ks = np.arange(g.n_slots + 1)
        lo = np.zeros((ks.size, n), dtype=np.int64)
        hi = np.zeros((ks.size, n), dtype=np.int64)
        if self.model_gpus:
            a = assignments(L, self.raw)
            lo[:, self.model_gpus] = a.lo
            hi[:, self.model_gpus] = a.lo + a.count
        out = (hi > L) & (hi > lo)  # as in place_one: an empty slot range holds no output layer
        hi = np.minimum(hi, L)
        lo = np.minimum(lo, hi)
        h = np.minimum(np.maximum(g.n_slots - ks, 0), L).astype(np.int64)
        return Placements(lo, hi, out, h)

    # --- KV rows -------------------------------------------------------------------------------------------
    def kv(self, g: ModelGroup) -> KvCum:
        """The model's K+V bytes per cell, cumulative over its layers (memoised per KV settings)."""
        key = (self.s.type_k, self.s.type_v, self.s.flash_attn)
        hit = g.kv_memo.get(key)
        if hit is None:
            rows = kv_rows(g.prof, self.s)
            swa = g.prof.is_swa
            base = np.concatenate(([0.0], np.cumsum(np.where(swa, 0.0, rows))))
            swa_c = np.concatenate(([0.0], np.cumsum(np.where(swa, rows, 0.0))))
            hit = KvCum(base, swa_c, prefix_max(rows))
            g.kv_memo[key] = hit
        return hit

    # --- compute buffers ----------------------------------------------------------------------------------
    def gpu_compute(
        self,
        g: ModelGroup,
        cells: Cells,
        ctx_key: object,
        place: Placements,
        ks: IntArray,
        col: int | None = None,
    ) -> GpuCompute:
        """GPU compute bytes for placements ``place`` with ``ks`` slots offloaded, at every context of
        ``cells`` or (C = 1) at column ``col`` only."""
        lo, hi, out, h = place.lo, place.hi, place.out, place.host_layers
        s = self.s
        n = self.n
        nk = ks.size
        n_c = cells.ctx.size if col is None else 1
        pick = slice(None) if col is None else slice(col, col + 1)
        rest = np.zeros((nk, n, n_c))
        p_const = np.zeros((nk, n, n_c))
        x_const = np.zeros((nk, n, n_c))
        offw = np.zeros((nk, n), dtype=bool)
        offout = np.zeros((nk, n), dtype=bool)
        if not self.model_gpus:
            return GpuCompute(rest, p_const, x_const, offw, offout)
        if len(g.memo) > _MEMO_SIZE:
            g.memo.clear()
        has_layers = hi > lo
        copies = np.zeros((nk, n), dtype=np.int64)
        if self.multi:
            copies[:, :] = (ks == g.n_slots)[:, None]
        first = self.offload_to
        if self.offload and first is not None:
            offw[:, first] = h > 0
            offout[:, first] = ks == 0
        offkv = np.zeros((nk, n), dtype=np.int64)
        if s.flash_attn and self.offload and first is not None:
            offkv[:, first] = np.where(h > 0, self.kv(g).row_max[h], 0.0).astype(np.int64)
        if nk == 1:
            # One placement: a few GPUs, cheaper in plain Python than in numpy.
            for gi in self.model_gpus:
                args = (
                    int(lo[0, gi]),
                    int(hi[0, gi]),
                    bool(out[0, gi]),
                    int(copies[0, gi]),
                    bool(offw[0, gi]),
                    bool(offout[0, gi]),
                    int(offkv[0, gi]),
                )
                c = self.role_code(g, *args)
                key = (self.sid, ctx_key, c)
                got = g.memo.get(key)
                if got is None:
                    got = g.memo[key] = self.role_bytes(g, cells, *args)
                rest[0, gi] = got[0, pick]
                p_const[0, gi] = got[1, pick]
                x_const[0, gi] = got[2, pick]
            return GpuCompute(rest, p_const, x_const, offw, offout)
        # One integer per (k, GPU); equal codes have equal compute bytes (compute_bytes_cells reads a
        # role's layers only through their widest FFN and attention dimensions). _code is the same
        # formula for one placement.
        code = has_layers.astype(np.int64)
        attn_on = has_layers & s.offload_kqv
        for i, (table, size) in enumerate(zip(g.stat_tables, g.stat_sizes, strict=True)):
            if size > 1:
                code = code * size + np.where(has_layers if i == 0 else attn_on, table[lo, hi], 0)
        code = (((code * 2 + out) * 2 + copies) * 2 + offw) * 2 + offout
        code = code * (1 << 26) + offkv  # the copied K/V row, bytes per cell (< 2**26)
        code = np.where(self.is_model[None, :], code, -1)
        flat = code.ravel()
        uniq, inverse = np.unique(flat, return_inverse=True)
        values = np.zeros((uniq.size, 3, n_c))
        for u, c in enumerate(uniq.tolist()):
            if c < 0:
                continue
            key = (self.sid, ctx_key, c)
            got = g.memo.get(key)
            if got is None:
                ki, gi = divmod(int(np.argmax(flat == c)), n)
                got = g.memo[key] = self.role_bytes(
                    g,
                    cells,
                    int(lo[ki, gi]),
                    int(hi[ki, gi]),
                    bool(out[ki, gi]),
                    int(copies[ki, gi]),
                    bool(offw[ki, gi]),
                    bool(offout[ki, gi]),
                    int(offkv[ki, gi]),
                )
            values[u] = got[:, pick]
        picked = values[inverse.reshape(-1)].reshape(nk, n, 3, n_c)
        return GpuCompute(picked[:, :, 0], picked[:, :, 1], picked[:, :, 2], offw, offout)

    def role_code(
        self, g: ModelGroup, lo: int, hi: int, out: bool, copies: int, offw: bool, offout: bool, offkv: int
    ) -> int:
        has_layers = hi > lo
        code = int(has_layers)
        for i, (table, size) in enumerate(zip(g.stat_tables, g.stat_sizes, strict=True)):
            if size > 1:
                on = has_layers if i == 0 else has_layers and self.s.offload_kqv
                code = code * size + (int(table[lo, hi]) if on else 0)
        code = (((code * 2 + out) * 2 + copies) * 2 + offw) * 2 + offout
        return code * (1 << 26) + offkv

    def role_bytes(
        self,
        g: ModelGroup,
        cells: Cells,
        lo: int,
        hi: int,
        out: bool,
        copies: int,
        offw: bool,
        offout: bool,
        offkv: int,
    ) -> FloatArray:
        """Compute bytes of a GPU role built exactly as placement._compute_roles builds it: (rest, P, X) over
        the contexts of ``cells`` (see :class:`GpuCompute`)."""
        s = self.s
        layers = tuple(range(int(lo), int(hi)))
        role = ComputeRole(
            backend=BACKEND_CUDA,
            layers=layers,
            attention_layers=layers if s.offload_kqv else (),
            output=bool(out),
            copies=PIPELINE_COPIES if copies else 1,
            offload_kv_row_bytes=int(offkv),
        )
        n_c = cells.ctx.size
        pc = np.zeros(n_c)
        xc = np.zeros(n_c)
        if offout:
            p0, pbig = _modified_profiles(g)
            out_role = replace(role, offload_output=True)
            rest = _compute(g, s, cells, out_role, p0)
            xc = _compute(g, s, cells, out_role, pbig) - _BIG
        else:
            rest = _compute(g, s, cells, role)
        if offw:
            pc = _compute(g, s, cells, replace(role, offload_weight_bytes=int(_BIG))) - _BIG
        return np.stack([rest, pc, xc])

    def host_compute(
        self, g: ModelGroup, cells: Cells, ctx_key: object, h: IntArray, ks: IntArray, col: int | None = None
    ) -> FloatArray:
        """Host compute bytes per placement: (K', C), or (K', 1) for context ``col`` only."""
        s = self.s
        L = g.n_layer
        pick = slice(None) if col is None else slice(col, col + 1)
        if not self.model_gpus:
            key: tuple[object, ...] = (self.sid, ctx_key, "cpu-only")
            got = g.memo.get(key)
            if got is None:
                all_layers = tuple(range(L))
                role = ComputeRole(
                    backend=BACKEND_CPU, layers=all_layers, attention_layers=all_layers, output=True
                )
                got = g.memo[key] = _compute(g, s, cells, role)
            return np.repeat(got[None, pick], ks.size, axis=0)
        by_copies = {}
        for copies in (1, PIPELINE_COPIES) if self.multi else (1,):
            key = (self.sid, ctx_key, "inputs", copies)
            got = g.memo.get(key)
            if got is None:
                role = ComputeRole(
                    backend=BACKEND_CPU, attention_layers=tuple(range(L)), copies=copies, host_inputs=True
                )
                got = g.memo[key] = _compute(g, s, cells, role)
            by_copies[copies] = got
        result = np.repeat(by_copies[1][None, pick], ks.size, axis=0)
        if self.multi:
            result[ks == g.n_slots] = by_copies[PIPELINE_COPIES][pick]
        if not self.offload:
            # Without op_offload the CPU runs its own layers' graph too.
            for i, (k, hk) in enumerate(zip(ks.tolist(), h.tolist(), strict=True)):
                if hk <= 0:
                    continue
                key = (self.sid, ctx_key, "host-layers", hk, k == 0)
                got = g.memo.get(key)
                if got is None:
                    hl = tuple(range(hk))
                    role = ComputeRole(
                        backend=BACKEND_CPU,
                        layers=hl,
                        attention_layers=hl if s.offload_kqv else tuple(range(L)),
                        output=k == 0,
                    )
                    got = g.memo[key] = _compute(g, s, cells, role)
                result[i] = np.maximum(result[i], got[pick])
        return result

    # --- the non-weight part of a placement at one context ----------------------------------------------
    def extras(self, g: ModelGroup, ctx: int, place: Placements, ks: IntArray) -> Extras:
        """Everything but the weights of placements ``place`` (``ks`` slots offloaded) at ``ctx``."""
        s = self.s
        at = self.cells_at(g, ctx)
        cells, col = at.cells, at.col
        lo, hi, h = place.lo, place.hi, place.host_layers
        kvc = self.kv(g)
        base_cum, swa_cum = kvc.base, kvc.swa
        base_total = float(cells.base[col]) * cells.n_stream
        swa_total = float(cells.swa[col]) * cells.n_stream
        if s.offload_kqv and self.model_gpus:
            kvb = (base_cum[hi] - base_cum[lo]) * base_total + (swa_cum[hi] - swa_cum[lo]) * swa_total
            host_kv = base_cum[h] * base_total + swa_cum[h] * swa_total
        else:
            kvb = np.zeros(hi.shape)
            host_kv = np.full(h.shape, base_cum[-1] * base_total + swa_cum[-1] * swa_total)
        gc = self.gpu_compute(g, cells, at.key, place, ks, col)
        host_c = self.host_compute(g, cells, at.key, h, ks, col)[:, 0]
        return Extras(
            kvb, gc.rest[..., 0], gc.p_const[..., 0], gc.x_const[..., 0], gc.offw, gc.offout, host_kv, host_c
        )

    def candidate_cells(self, g: ModelGroup) -> tuple[Cells, tuple[str, int]]:
        """The cells of every candidate context of a model (multiples of 256 up to its trained context)."""
        cands = candidates(g)
        cells = g.cells_memo.get(self.sid)
        if cells is None:
            cells = g.cells_memo[self.sid] = cells_for(self.s, g.prof.n_swa, cands)
        return cells, ("cand", int(cands[-1]))

    def cells_at(self, g: ModelGroup, ctx: int) -> CellsAt:
        """Cells for ``ctx``: the candidate column when ``ctx`` sizes every buffer like its padded
        candidate does (so compute buffers are shared with the max-context search), else a
        one-context set of its own."""
        s = self.s
        padded = (ctx + KV_CTX_PAD - 1) // KV_CTX_PAD * KV_CTX_PAD
        top = context_limit(g.n_ctx_train)
        # n_batch is capped by the unpadded context: equal only from n_batch up (or when no padding).
        if top >= KV_CTX_PAD and padded <= top and (ctx >= s.n_batch or ctx == padded):
            cells, key = self.candidate_cells(g)
            return CellsAt(cells, key, padded // KV_CTX_PAD - 1)
        one = g.one_cells.get((self.sid, ctx))
        if one is None:
            if len(g.one_cells) > 256:
                g.one_cells.clear()
            one = g.one_cells[(self.sid, ctx)] = one_cell(s, g.prof.n_swa, ctx)
        return CellsAt(one, ("ctx", ctx), 0)

    def link_seconds(
        self, mask: int, host_hop: bool, output_on_gpu: bool, n_embd: int, n_vocab: int
    ) -> float:
        """Link seconds per decoded token of a placement whose slot-holding GPUs are ``mask`` (a bit
        per rig GPU), ``host_hop`` when layers stay on the host: perf.layer_link_seconds over those
        GPUs in llama.cpp's device order (the layer order: remote devices first)."""
        key = (mask, host_hop, output_on_gpu, n_embd, n_vocab)
        hit = self._links.get(key)
        if hit is None:
            order = [gi for gi in self.model_gpus if mask >> gi & 1]
            hit = perf.layer_link_seconds(self.rig, order, host_hop, output_on_gpu, n_embd, n_vocab)
            self._links[key] = hit
        return hit


def candidates(g: ModelGroup) -> IntArray:
    """The contexts the largest-context search tries for a model (as placement.largest_fitting_ctx)."""
    return context_candidates(context_limit(g.n_ctx_train))
