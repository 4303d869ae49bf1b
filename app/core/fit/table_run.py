"""One recompute of the fit table for a batch of models: status, largest context and speed per row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.core import perf
from app.core.compute import output_buffer_bytes
from app.core.errors import RigfitError
from app.core.fit.evaluator import Cells, Evaluator, Extras, Placement, Placements
from app.core.fit.groups import ModelGroup, RowBatch
from app.core.fit.results import FitRow
from app.core.layout import gpu_slots, is_tight
from app.core.memory import MIB
from app.core.placement import validate_settings
from app.core.plan import STATUS_FITS, STATUS_NO, STATUS_OFFLOAD, STATUS_TIGHT
from app.core.rules import RuleError

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class FullOffload:
    """A model with every layer on the GPUs: placement and non-weight bytes over all candidate contexts."""

    k: int
    place: Placement
    cells: Cells
    rest: FloatArray  # (G, C) GPU compute bytes
    host_c: FloatArray  # (C,) host compute bytes
    out_buf: float
    v_gpu: FloatArray  # (G, C) KV + compute bytes per GPU
    v_host: FloatArray  # (C,) host KV + compute + output buffer bytes


@dataclass(frozen=True, eq=False)
class Stacked:
    """The placements of every n_gpu_layers of the models the offload search looked at, stacked:
    model ``m``'s placement for ``k`` is entry ``offset[m] + k``."""

    offset: IntArray  # (models,)
    place: Placements


class TableRun:
    """One recompute of the table for a batch of groups."""

    def __init__(self, ev: Evaluator, batch: RowBatch, ctx: int) -> None:
        self.ev = ev
        self.b = batch
        self.ctx = ctx
        self.stacked: Stacked | None = None

    def weights(self, rows: IntArray, lo: IntArray, hi: IntArray, out: BoolArray) -> FloatArray:
        """GPU weight bytes for rows with per-row placements (shapes (R', ..., G))."""
        b = self.b
        r = rows.reshape(rows.shape + (1,) * (lo.ndim - 1))
        w = b.cum_gpu[r, hi] - b.cum_gpu[r, lo]
        return w + b.per_dev_gpu[r] * (hi > lo) + b.output_gpu[r] * out

    def run(self) -> list[FitRow]:
        ev, b, ctx = self.ev, self.b, self.ctx
        s = ev.s
        n = ev.n
        R = b.n_rows
        G = n
        NG = len(b.groups)
        # Per model (NG rows), then spread to the table's rows with one gather each.
        g_lo = np.zeros((NG, G), dtype=np.int64)
        g_hi = np.zeros((NG, G), dtype=np.int64)
        g_out = np.zeros((NG, G), dtype=bool)
        g_h = np.zeros(NG, dtype=np.int64)
        g_k = np.zeros(NG, dtype=np.int64)
        g_kvb = np.zeros((NG, G))
        g_rest = np.zeros((NG, G))
        g_pc = np.zeros((NG, G))
        g_xc = np.zeros((NG, G))
        g_offw = np.zeros((NG, G), dtype=bool)
        g_offout = np.zeros((NG, G), dtype=bool)
        g_host_kv = np.zeros(NG)
        g_host_c = np.zeros(NG)
        g_out_buf = np.zeros(NG)
        g_valid = np.ones(NG, dtype=bool)
        notes: dict[int, str] = {}
        codes: dict[int, str] = {}
        full: list[FullOffload | None] = []
        same_full = True
        # --- per model: the requested placement and everything but the weights ---------------------
        for gi_, g in enumerate(b.groups):
            try:
                validate_settings(ev.rig, g.specs[0], s)
                kvc = ev.kv(g)  # a KV type the model's rows cannot hold raises here
            except RigfitError as exc:
                g_valid[gi_] = False
                notes[gi_] = str(exc)
                codes[gi_] = exc.problem.code if isinstance(exc, RuleError) else ""
                full.append(None)
                continue
            base_cum, swa_cum = kvc.base, kvc.swa
            k = gpu_slots(g.n_layer, s, n)
            f = self._full(g)
            full.append(f)
            g_k[gi_] = k
            g_out_buf[gi_] = f.out_buf
            at = ev.cells_at(g, ctx)
            cells, col = at.cells, at.col
            if k == f.k and cells is f.cells:
                # All layers on the GPUs at a candidate context: read the column.
                fp = f.place
                g_lo[gi_], g_hi[gi_], g_out[gi_], g_h[gi_] = fp.lo, fp.hi, fp.out, fp.host_layers
                bt = float(cells.base[col]) * cells.n_stream
                st = float(cells.swa[col]) * cells.n_stream
                if s.offload_kqv and ev.model_gpus:
                    g_kvb[gi_] = (base_cum[fp.hi] - base_cum[fp.lo]) * bt + (
                        swa_cum[fp.hi] - swa_cum[fp.lo]
                    ) * st
                    g_host_kv[gi_] = base_cum[fp.host_layers] * bt + swa_cum[fp.host_layers] * st
                else:
                    g_host_kv[gi_] = base_cum[-1] * bt + swa_cum[-1] * st
                g_rest[gi_] = f.rest[:, col]
                g_host_c[gi_] = f.host_c[col]
                continue
            same_full = same_full and k == f.k
            pl = ev.place_one(g, k) if k != f.k else f.place
            ex = ev.extras(g, ctx, Placements.of(pl), np.array([k]))
            g_lo[gi_], g_hi[gi_], g_out[gi_], g_h[gi_] = pl.lo, pl.hi, pl.out, pl.host_layers
            g_kvb[gi_], g_rest[gi_], g_pc[gi_], g_xc[gi_] = ex.kv[0], ex.rest[0], ex.p_const[0], ex.x_const[0]
            g_offw[gi_], g_offout[gi_] = ex.offw[0], ex.offout[0]
            g_host_kv[gi_], g_host_c[gi_] = ex.host_kv[0], ex.host_compute[0]
        rg = b.row_group
        lo, hi, out, h, k_req = g_lo[rg], g_hi[rg], g_out[rg], g_h[rg], g_k[rg]
        kvb, rest, pc, xc = g_kvb[rg], g_rest[rg], g_pc[rg], g_xc[rg]
        offw, offout = g_offw[rg], g_offout[rg]
        host_kv, host_c, out_buf, valid = g_host_kv[rg], g_host_c[rg], g_out_buf[rg], g_valid[rg]
        rows = b.rows
        # --- totals at the requested placement (plan()'s terms, in its order) --------------------------
        w = self.weights(rows, lo, hi, out)
        comp = self._comp(rows, rest, pc, xc, offw, offout, h)
        gpu_total = (w + kvb + comp) / MIB + ev.overhead[None, :]
        host_total = (self._host_w(rows, h, k_req) + host_kv + host_c + out_buf) / MIB
        gpu_ok = np.all(gpu_total <= ev.capacity[None, :], axis=1)
        host_ok = np.ones(R, dtype=bool) if ev.avail is None else host_total <= ev.avail
        status = np.full(R, STATUS_NO, dtype=object)
        fit_k = np.full(R, -1, dtype=np.int64)
        both = gpu_ok & host_ok & valid
        if n == 0:
            status[both] = STATUS_FITS
        else:
            partial = (h > 0) | ~out.any(axis=1)
            free = ev.capacity[None, :] - gpu_total
            low = np.any(is_tight(free, ev.capacity[None, :]), axis=1)
            status[both & partial] = STATUS_OFFLOAD
            status[both & ~partial & low] = STATUS_TIGHT
            status[both & ~partial & ~low] = STATUS_FITS
            over = ~gpu_ok & valid & (k_req > 0)
            if ev.avail is not None:
                # Whatever the offload, the weights the GPUs cannot hold stay in RAM (a GPU holds at
                # most its capacity, and its copy of a tensor is never smaller than the file's):
                # rows whose remainder exceeds the RAM cannot offload, no search needed.
                # (64 MiB of slack covers file alignment above the CUDA buffer's 128 bytes.)
                spill_mib = (b.weights_total - float(ev.capacity.sum()) * MIB) / MIB
                over &= spill_mib <= ev.avail + 64.0
            if over.any():
                fit_k = self._offload_search(np.flatnonzero(over), k_req, fit_k)
                status[fit_k >= 0] = STATUS_OFFLOAD
        total_gib = (gpu_total.sum(axis=1) + host_total) / 1024.0
        if same_full:
            w_full = w
        else:
            f_lo, f_hi, f_out = np.zeros_like(lo), np.zeros_like(hi), np.zeros_like(out)
            for gi_, g in enumerate(b.groups):
                fg = full[gi_]
                if fg is not None:
                    a, e = b.start[gi_], b.start[gi_] + len(g.quants)
                    f_lo[a:e], f_hi[a:e], f_out[a:e] = fg.place.lo, fg.place.hi, fg.place.out
            w_full = self.weights(rows, f_lo, f_hi, f_out)
        max_ctx = self._max_ctx(full, w_full)
        # --- decode speed at the placement that runs ------------------------------------------------
        runs = np.isin(status, (STATUS_FITS, STATUS_TIGHT, STATUS_OFFLOAD))
        use_lo, use_hi, use_out, use_h = lo, hi, out, h
        moved = np.flatnonzero(fit_k >= 0)
        if moved.size and self.stacked is not None:
            use_lo, use_hi, use_out, use_h = lo.copy(), hi.copy(), out.copy(), h.copy()
            sp = self.stacked.place
            i = self.stacked.offset[b.row_group[moved]] + fit_k[moved]
            use_lo[moved], use_hi[moved], use_out[moved], use_h[moved] = (
                sp.lo[i],
                sp.hi[i],
                sp.out[i],
                sp.host_layers[i],
            )
        speed = self._decode(runs, use_lo, use_hi, use_out, use_h)
        totals_l = np.where(valid, total_gib, 0.0).tolist()
        speed_l = speed.tolist()
        runs_l = runs.tolist()
        ngl = np.where(fit_k >= 0, fit_k, np.where(status == STATUS_OFFLOAD, k_req, -1)).tolist()
        status_l = status.tolist()
        note_l = [notes.get(gi_, "") for gi_ in b.row_group.tolist()] if notes else [""] * R
        return [
            FitRow(
                model=b.models[r],
                name=b.names[r],
                quant=b.quants[r],
                total_gib=totals_l[r],
                status=status_l[r],
                max_ctx=max_ctx[r],
                decode_tok_s=speed_l[r] if runs_l[r] else None,
                weights_gib=b.weights_gib[r],
                n_gpu_layers=ngl[r] if ngl[r] >= 0 else None,
                source=b.sources[r],
                note=note_l[r],
                code=codes.get(int(b.row_group[r]), ""),
            )
            for r in range(R)
        ]

    def _comp(
        self,
        rows: IntArray,
        rest: FloatArray,
        pc: FloatArray,
        xc: FloatArray,
        offw: BoolArray,
        offout: BoolArray,
        h: IntArray,
    ) -> FloatArray:
        b = self.b
        comp = rest
        if offw.any():
            w_off = b.prefix_max_mm[rows, h]  # largest host matmul weight, per row
            w_off = w_off.reshape((*w_off.shape, 1))
            applies = offw & (w_off > 0)
            comp = np.maximum(comp, np.where(applies, w_off + pc, 0.0))
        if offout.any():
            mm = b.output_mm_gpu[rows].reshape((*rows.shape, 1))
            comp = np.maximum(comp, np.where(offout, mm + xc, 0.0))
        return comp

    def _host_w(self, rows: IntArray, h: IntArray, k: IntArray) -> FloatArray:
        b = self.b
        on_host_out = (k == 0) | (not self.ev.model_gpus)
        host_w = (
            b.input_host[rows]
            + b.cum_host[rows, h]
            + b.per_dev_host[rows] * (h > 0)
            + b.output_host[rows] * on_host_out
        )
        return np.asarray(host_w, dtype=np.float64)

    def _offload_search(self, over: IntArray, k_req: IntArray, fit_k: IntArray) -> IntArray:
        """plan()'s fallback for rows whose requested placement overflows a GPU: the largest
        n_gpu_layers whose GPUs fit (its binary search), kept when the host fits there too.

        The placements of every k of the models concerned are stacked (sum of K rows); each
        bisection step gathers one k per table row from them.
        """
        ev, b, ctx = self.ev, self.b, self.ctx
        groups_of = b.row_group[over]
        places: list[Placements] = []
        extras: list[Extras] = []
        offset = np.zeros(len(b.groups), dtype=np.int64)
        total = 0
        for gi_ in np.unique(groups_of).tolist():
            g = b.groups[gi_]
            kq = int(k_req[b.start[gi_]])
            every = ev.place_all(g)
            ks = np.arange(kq)
            # Everything but the weights for every k, kept per model for this placement of all k.
            ekey = (
                ev.sid,
                tuple(ev.model_gpus),
                ctx,
                kq,
                ev.multi,
                ev.offload,
                every.lo.tobytes(),
                every.hi.tobytes(),
                every.out.tobytes(),
            )
            ex = g.extras_memo.get(ekey)
            if ex is None:
                ex = ev.extras(g, ctx, every.head(kq), ks)
                if len(g.extras_memo) > 32:
                    g.extras_memo.clear()
                g.extras_memo[ekey] = ex
            places.append(every.head(kq))
            extras.append(ex)
            offset[gi_] = total
            total += kq
        lo = np.concatenate([p_.lo for p_ in places])
        hi = np.concatenate([p_.hi for p_ in places])
        out = np.concatenate([p_.out for p_ in places])
        hh = np.concatenate([p_.host_layers for p_ in places])
        # Entry j of a model's run is its placement for k = j.
        kk = np.concatenate([np.arange(p_.host_layers.size) for p_ in places])
        ex_all = Extras.concat(extras)
        obuf = np.array([float(output_buffer_bytes(g.prof, ev.s)) for g in b.groups])[groups_of]
        base = offset[groups_of]

        kr = k_req[over]

        def gpu_ok(k: IntArray) -> BoolArray:
            """Whether every GPU fits with k slots offloaded, one k per overflowing row."""
            i = base + k
            e = ex_all.take(i)
            w = self.weights(over, lo[i], hi[i], out[i])
            comp = self._comp(over, e.rest, e.p_const, e.x_const, e.offw, e.offout, hh[i])
            total_mib = (w + e.kv + comp) / MIB + ev.overhead[None, :]
            return np.asarray(np.all(total_mib <= ev.capacity[None, :], axis=1), dtype=bool)

        # placement._largest_fitting_ngl, one row per lane: give up when k = 0 does not fit, else
        # bisect on the GPUs fitting.
        start_ok = gpu_ok(np.zeros(over.size, dtype=np.int64))
        lo_k = np.zeros(over.size, dtype=np.int64)
        hi_k = np.maximum(kr - 1, 0)
        while True:
            active = lo_k < hi_k
            if not active.any():
                break
            mid = np.where(active, (lo_k + hi_k + 1) // 2, lo_k)
            ok = gpu_ok(mid)
            lo_k = np.where(active & ok, mid, lo_k)
            hi_k = np.where(active & ~ok, mid - 1, hi_k)
        found = np.where(start_ok & (kr > 0), lo_k, -1)
        has = found >= 0
        i = base + np.maximum(found, 0)
        host_total = (
            self._host_w(over, hh[i], kk[i]) + ex_all.host_kv[i] + ex_all.host_compute[i] + obuf
        ) / MIB
        host_ok = np.ones(over.size, dtype=bool) if ev.avail is None else host_total <= ev.avail
        fit_k = fit_k.copy()
        fit_k[over[has & host_ok]] = found[has & host_ok]
        self.stacked = Stacked(offset, Placements(lo, hi, out, hh))
        return fit_k

    def _full(self, g: ModelGroup) -> FullOffload:
        """Every layer on the GPUs (or, without GPUs, on the CPU) over all candidate contexts: the
        placement and the bytes besides the weights. Kept per model, settings and split, so moving
        the context (or the VRAM of a card) reuses it."""
        ev = self.ev
        k_full = g.n_slots if ev.model_gpus else 0
        place = ev.place_one(g, k_full)
        glo, ghi, gout, gh = place.lo, place.hi, place.out, place.host_layers
        # Keyed by the placement, not the split: a slider moving within a layer's worth of share
        # changes the ratios but not where the layers go.
        full_key = (
            ev.sid,
            tuple(ev.model_gpus),
            tuple(glo.tolist()),
            tuple(ghi.tolist()),
            tuple(gout.tolist()),
            ev.multi,
        )
        hit = g.full_memo.get(full_key)
        if hit is not None:
            return hit
        s = ev.s
        cells, ckey = ev.candidate_cells(g)
        n_c = cells.ctx.size
        rest = np.zeros((ev.n, n_c))
        kvc = ev.kv(g)
        base_cum, swa_cum = kvc.base, kvc.swa
        base_total = cells.base * cells.n_stream
        swa_total = cells.swa * cells.n_stream
        v_gpu = np.zeros((ev.n, n_c))
        # Every layer on the GPUs: no op_offload phases; pipeline copies when several GPUs share it.
        copies = int(ev.multi)
        for gi in ev.model_gpus:
            lo_i, hi_i, out_i = int(glo[gi]), int(ghi[gi]), bool(gout[gi])
            code = ev.role_code(g, lo_i, hi_i, out_i, copies, False, False, 0)
            key = (ev.sid, ckey, code)
            got = g.memo.get(key)
            if got is None:
                got = g.memo[key] = ev.role_bytes(g, cells, lo_i, hi_i, out_i, copies, False, False, 0)
            rest[gi] = got[0]
            if s.offload_kqv:
                kv = (base_cum[hi_i] - base_cum[lo_i]) * base_total + (
                    swa_cum[hi_i] - swa_cum[lo_i]
                ) * swa_total
                v_gpu[gi] = kv + got[0]
            else:
                v_gpu[gi] = got[0]
        host_c = ev.host_compute(g, cells, ckey, np.array([gh]), np.array([k_full]))[0]
        if s.offload_kqv and ev.model_gpus:
            host_kv = base_cum[gh] * base_total + swa_cum[gh] * swa_total
        else:
            host_kv = base_cum[-1] * base_total + swa_cum[-1] * swa_total
        out_buf = float(output_buffer_bytes(g.prof, s))
        full = FullOffload(k_full, place, cells, rest, host_c, out_buf, v_gpu, host_kv + host_c + out_buf)
        if len(g.full_memo) > 64:
            g.full_memo.clear()
        g.full_memo[full_key] = full
        return full

    def _max_ctx(self, full: Sequence[FullOffload | None], w_full: FloatArray) -> list[int | None]:
        """Per row, largest_fitting_ctx with every layer on the GPUs, limited to the trained context.

        Memory only grows with the context, so the fitting candidates are a prefix. Every model's
        per-GPU bytes over its candidates are laid end to end, each model's run shifted far above the
        previous one, so one searchsorted per GPU finds every row's prefix end at once.
        """
        ev, b = self.ev, self.b
        R = b.n_rows
        ok_groups = [i for i, f in enumerate(full) if f is not None]
        ok_full = [f for f in full if f is not None]
        result: list[int | None] = [None] * R
        if not ok_groups:
            return result
        sizes = np.array([f.cells.ctx.size for f in ok_full], dtype=np.int64)
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        # Shift each model's run of values by a multiple of a gap larger than any value.
        gap = 2.0**50
        shift = np.arange(len(ok_groups), dtype=np.float64) * gap
        row_sel = np.concatenate(
            [np.arange(b.start[i], b.start[i] + len(b.groups[i].quants)) for i in ok_groups]
        )
        row_pos = np.repeat(np.arange(len(ok_groups)), [len(b.groups[i].quants) for i in ok_groups])
        end = np.repeat(sizes, [len(b.groups[i].quants) for i in ok_groups])
        for gi in ev.model_gpus:
            flat = np.concatenate([f.v_gpu[gi] for f in ok_full]) + np.repeat(shift, sizes)
            budget = (ev.capacity[gi] - ev.overhead[gi]) * MIB - w_full[row_sel, gi]
            budget = np.minimum(np.maximum(budget, -1.0), gap / 2) + shift[row_pos]
            end = np.minimum(end, np.searchsorted(flat, budget, side="right") - starts[row_pos])
        if ev.avail is not None:
            flat = np.concatenate([f.v_host for f in ok_full]) + np.repeat(shift, sizes)
            h = np.array([f.place.host_layers for f in ok_full])[row_pos]
            k = np.array([f.k for f in ok_full])[row_pos]
            budget = ev.avail * MIB - self._host_w(row_sel, h, k)
            budget = np.minimum(np.maximum(budget, -1.0), gap / 2) + shift[row_pos]
            end = np.minimum(end, np.searchsorted(flat, budget, side="right") - starts[row_pos])
        ctx_all = np.concatenate([f.cells.ctx for f in ok_full])
        picked = np.where(end > 0, ctx_all[starts[row_pos] + np.maximum(end, 1) - 1], -1).tolist()
        for r, c in zip(row_sel.tolist(), picked, strict=True):
            result[r] = c if c > 0 else None
        return result

    def _decode(self, runs: BoolArray, lo: IntArray, hi: IntArray, out: BoolArray, h: IntArray) -> FloatArray:
        """perf's decode model (layer split) for every row at its placement, with the arithmetic of
        perf.estimate_speed on the corresponding plan."""
        ev, b, ctx = self.ev, self.b, self.ctx
        s = ev.s
        n = ev.n
        R = b.n_rows
        depth = ctx // 2
        width = b.l_max + 1
        kv_read = np.zeros((len(b.groups), width))
        attn = np.zeros((len(b.groups), width))
        n_embd = np.zeros(len(b.groups), dtype=np.int64)
        n_vocab = np.zeros(len(b.groups), dtype=np.int64)
        for gi_, g in enumerate(b.groups):
            sp = perf.speed_profile(g.specs[0])
            key = (ev.sid, depth)
            hit = g.read_memo.get(key)
            if hit is None:
                try:
                    kc = np.concatenate(([0.0], np.cumsum(sp.kv_read_bytes(s, depth))))
                except RigfitError:
                    kc = np.zeros(g.n_layer + 1)
                ac = np.concatenate(([0.0], np.cumsum(sp.kv_attn_flops * sp.cells(depth))))
                if len(g.read_memo) > 256:
                    g.read_memo.clear()
                hit = g.read_memo[key] = (kc, ac)
            kv_read[gi_, : g.n_layer + 1] = hit[0]
            kv_read[gi_, g.n_layer + 1 :] = hit[0][-1]
            attn[gi_, : g.n_layer + 1] = hit[1]
            attn[gi_, g.n_layer + 1 :] = hit[1][-1]
            n_embd[gi_] = sp.n_embd
            n_vocab[gi_] = sp.spec.n_vocab
        rows = b.rows
        rg = b.row_group
        last = np.array([g.n_layer for g in b.groups], dtype=np.int64)[rg]
        out_on_host = ~out.any(axis=1) if n else np.ones(R, dtype=bool)
        host_bytes = b.cum_read[rows, h] - b.cum_read[rows, 0]
        host_flops = (b.cum_flops[rows, h] - b.cum_flops[rows, 0]) + (attn[rg, h] - attn[rg, 0])
        if s.offload_kqv or n == 0:
            host_bytes = host_bytes + (kv_read[rg, h] - kv_read[rg, 0])
        host_bytes = host_bytes + np.where(out_on_host, b.out_read, 0.0)
        host_flops = host_flops + np.where(out_on_host, b.out_flops, 0.0)
        if not s.offload_kqv and n > 0:
            host_bytes = host_bytes + (kv_read[rg, last] - kv_read[rg, h])
        seconds = perf.host_decode_seconds(host_bytes, host_flops, h + out_on_host, ev.rig.host)
        if n:
            r2 = rows[:, None]
            g2 = rg[:, None]
            read = b.cum_read[r2, hi] - b.cum_read[r2, lo]
            if s.offload_kqv:
                read = read + (kv_read[g2, hi] - kv_read[g2, lo])
            read = read + np.where(out, b.out_read[:, None], 0.0)
            layers = (hi - lo) + out
            per_gpu = perf.gpu_decode_seconds(read, layers, ev.bandwidth[None, :])
            seconds = seconds + per_gpu.sum(axis=1)
            # hops: which GPUs hold layers (a bit each), whether the host holds some and whether a
            # GPU holds the output layer (remote devices send the logits back)
            weights_bits = (1 << np.arange(n, dtype=np.int64))[None, :]
            masks = ((layers > 0) * weights_bits).sum(axis=1)
            link = np.zeros(R)
            keys = (masks * 2 + (h > 0)) * 2 + ~out_on_host
            for key in np.unique(keys[runs]).tolist() if runs.any() else []:
                sel = runs & (keys == key)
                shapes = np.stack([n_embd[rg[sel]], n_vocab[rg[sel]]], axis=1)
                for e, v in np.unique(shapes, axis=0).tolist():
                    sel2 = sel & (n_embd[rg] == e) & (n_vocab[rg] == v)
                    link[sel2] = ev.link_seconds(key >> 2, bool(key >> 1 & 1), bool(key & 1), int(e), int(v))
            seconds = seconds + link + perf.GPU_DECODE_TOKEN_S
        # A row that reads nothing per token (a model with no weights left where it runs) has no
        # speed, as in plan() (perf._per_second): never 1/0.
        timed = runs & (seconds > 0) & np.isfinite(seconds)
        return np.asarray(np.where(timed, 1.0 / np.where(timed, seconds, 1.0), np.nan), dtype=np.float64)
