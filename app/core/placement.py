"""Placement: where llama.cpp puts every layer and buffer of a model on a rig, per device.

The rules follow llama-cpp-python 0.3.36's vendored llama.cpp; ``docs/placement.md`` names the
source lines and lists the measurements that check them.

* ``layer`` (default): the repeating layers and the output layer form ``n_layer + 1`` slots; slot
  ``i`` goes to the first GPU whose cumulative, normalised ``tensor_split`` exceeds
  ``i / n_gpu_slots`` (``llama_model_base::load_tensors``). Without a ``tensor_split`` the ratios are
  each GPU's free memory at load time. Token embeddings always stay in host memory. The KV cache of
  a layer lives with the layer.
* partial offload: ``n_gpu_layers`` counts slots from the end, so the output layer is the first to
  go to a GPU and the first repeating layers are the ones left on the CPU.
* ``none``: llama.cpp keeps only ``main_gpu`` in its device list; everything offloaded goes there.
* ``row``: the 2-D matmul weights of offloaded layers go to a split buffer that spreads their rows
  over all GPUs by ``tensor_split`` (rounded to ``ROW_SPLIT_ROUNDING`` rows); the rest and the KV
  cache follow the layer split. This llama.cpp's CUDA backend no longer provides split buffers
  (``ggml_backend_split_buffer_type`` is only exported by SYCL and Hexagon), so on NVIDIA and AMD
  GPUs a row-split load fails: such a plan has status ``no`` and says why
  (:data:`app.core.rules.CODE_ROW_UNAVAILABLE`). Split by rows in :mod:`app.core.parallel`.
* ``tensor``: all GPUs form one "meta" device. Attention and FFN weights, the output weight and the
  KV cache are split between the GPUs by whole heads / aligned row blocks (``llama_meta_device_
  get_split_state``, in :mod:`app.core.parallel`); everything else is mirrored on every GPU. Needs
  flash attention; not implemented for the architectures in
  :data:`app.core.rules.TENSOR_SPLIT_UNSUPPORTED_ARCHS`.

The slot rule, the split and the other arithmetic the fit table and the split solver share with this
module are in :mod:`app.core.layout`; the rules llama.cpp refuses settings by, with their codes, in
:mod:`app.core.rules`.

:func:`plan` returns a :class:`~app.core.plan.Plan`. How ``offload`` is decided: when the requested
settings overflow a GPU, the planner finds the largest ``n_gpu_layers`` that fits (GPUs and host
RAM); if there is one, the status is ``offload``, ``plan.fit_n_gpu_layers`` holds it and a note
says how many layers would stay on the CPU; the devices still show the requested placement (so a
split slider shows the overflow). A plan whose requested settings already keep layers on the CPU
and fit is ``offload`` too. ``no`` when nothing fits. ``plan.problems`` says why, with codes;
``plan.notes`` holds the same messages for display.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from app.core import limits, rules
from app.core.buffers import gpu_buffer_name, logged_buffers, logged_model_buffers
from app.core.compute import BACKEND_CPU, BACKEND_CUDA, ComputeRole, compute_bytes_cells, output_buffer_bytes
from app.core.errors import RigfitError
from app.core.layout import (
    TIGHT_FREE_FRACTION,
    context_candidates,
    context_limit,
    default_split_weights,
    effective_tensor_split,
    gpu_overhead_mib,
    gpu_slots,
    is_tight,
    kv_rows,
    layer_assignment,
    model_gpus,
    offload_gpu,
    op_offload_active,
    pipeline_parallel,
    raw_split,
)
from app.core.memory import (
    MATRIX_ROW_PADDING,
    MIB,
    PIPELINE_COPIES,
    ModelProfile,
    cuda_tensor_bytes,
    is_matmul_weight,
    is_quantized,
    kv_cells,
    kv_cells_for_contexts,
    kv_row_bytes,
    profile,
    row_bytes,
)
from app.core.model_spec import ModelSpec
from app.core.parallel import TensorParallel, row_split_rows, tp_kv_widths, tp_tensor_bytes
from app.core.plan import (
    STATUS_FITS,
    STATUS_NO,
    STATUS_OFFLOAD,
    STATUS_TIGHT,
    BufferPlan,
    DevicePlan,
    HostPlan,
    Plan,
)
from app.core.rig import Rig
from app.core.rules import TENSOR_SPLIT_UNSUPPORTED_ARCHS, Problem
from app.core.settings import Settings


def validate_settings(rig: Rig, spec: ModelSpec, settings: Settings) -> None:
    """Raise :class:`~app.core.rules.RuleError` (a :class:`RigfitError`) with a plain message for the
    first setting llama.cpp would refuse (:func:`app.core.rules.settings_problems`)."""
    rules.raise_first_error(rules.settings_problems(rig, spec, settings))
    # Then the upper ends: the ranges the CLI and the window check too (app/core/limits.py).
    limits.check_settings(settings)


# ------------------------------------------------------------------------------------------------
# one placement, split by split mode
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Slots:
    """Where llama.cpp's slot rule puts the layers: shared by every split mode."""

    n_gpus: int
    model_gpus: list[int]
    ratios: tuple[float, ...]  # effective_tensor_split
    ngl: int  # offloaded slots, capped
    layer_dev: np.ndarray  # rig GPU per repeating layer; -1 CPU; -2 all GPUs (tensor split)
    out_dev: int
    host_layers: list[int]


@dataclass
class _ModeLayout:
    """What a split mode decides: weight bytes, layers and KV bytes per cell, per rig GPU."""

    weights: list[float]
    layers: list[int]
    first_layer: list[int]
    has_output: list[bool]
    kv_base_row: np.ndarray  # bytes per cell of the full cache
    kv_swa_row: np.ndarray  # bytes per cell of the sliding-window cache


@dataclass
class _Layout:
    """Everything about one placement that does not depend on the context length."""

    n_gpus: int
    model_gpus: list[int]
    layer_dev: np.ndarray
    out_dev: int
    host_layers: list[int]
    weights: list[float]  # bytes per rig GPU
    host_weights: float
    overhead_mib: list[float]
    layers: list[int]
    first_layer: list[int]
    has_output: list[bool]
    kv_base_row: np.ndarray
    kv_swa_row: np.ndarray
    host_kv_base_row: float
    host_kv_swa_row: float
    gpu_roles: dict[int, ComputeRole]
    host_roles: list[ComputeRole]  # the host compute buffer is the largest of these


def _slots(rig: Rig, prof: ModelProfile, s: Settings, n_gpu_layers: int) -> _Slots:
    n = rig.n_gpus
    n_layer = prof.n_layer
    gpus = model_gpus(rig, s)
    tensor_mode = s.split_mode == "tensor" and n > 0
    if not gpus:
        slots = (-1,) * (n_layer + 1)
    elif tensor_mode:
        slots = layer_assignment(n_layer, [1.0], n_gpu_layers)
    else:
        slots = layer_assignment(n_layer, raw_split(rig, s, gpus), n_gpu_layers)
    # slot value -> rig GPU index (-1: CPU); tensor mode uses -2 for "all GPUs".
    dev_of = [(-2 if tensor_mode else gpus[d]) if d >= 0 else -1 for d in slots]
    layer_dev = np.array(dev_of[:n_layer], dtype=np.int64)
    n_slots = n_layer + 1
    return _Slots(
        n_gpus=n,
        model_gpus=gpus,
        ratios=effective_tensor_split(rig, s),
        ngl=n_slots if n_gpu_layers < 0 else min(n_gpu_layers, n_slots),
        layer_dev=layer_dev,
        out_dev=dev_of[n_layer],
        host_layers=[il for il in range(n_layer) if layer_dev[il] == -1],
    )


def _layer_counts(sl: _Slots) -> tuple[list[int], list[int], list[bool]]:
    """Layers, first layer and output per rig GPU when each layer sits on one GPU."""
    layers, first, has_out = [0] * sl.n_gpus, [-1] * sl.n_gpus, [False] * sl.n_gpus
    for gi in sl.model_gpus:
        idx = np.flatnonzero(sl.layer_dev == gi)
        layers[gi] = int(idx.size)
        first[gi] = int(idx[0]) if idx.size else -1
        has_out[gi] = sl.out_dev == gi
    return layers, first, has_out


def _kv_by_layer(
    s: Settings, sl: _Slots, prof: ModelProfile, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """KV bytes per cell per rig GPU when the KV of a layer lives with the layer."""
    base_row = np.zeros(sl.n_gpus, dtype=np.float64)
    swa_row = np.zeros(sl.n_gpus, dtype=np.float64)
    if s.offload_kqv:
        swa = prof.is_swa
        for gi in sl.model_gpus:
            mask = sl.layer_dev == gi
            base_row[gi] = float(rows[mask & ~swa].sum())
            swa_row[gi] = float(rows[mask & swa].sum())
    return base_row, swa_row


def _layer_split(rig: Rig, prof: ModelProfile, s: Settings, sl: _Slots, rows: np.ndarray) -> _ModeLayout:
    """``layer`` and ``none``: each offloaded layer's weights and KV on the GPU its slot names."""
    weights = [0.0] * sl.n_gpus
    for gi in sl.model_gpus:
        mask = sl.layer_dev == gi
        if np.any(mask):
            weights[gi] += float(prof.layer_gpu_bytes[mask].sum()) + prof.per_device_gpu_bytes
    if sl.out_dev >= 0:
        weights[sl.out_dev] += prof.output_gpu_bytes
    return _ModeLayout(weights, *_layer_counts(sl), *_kv_by_layer(s, sl, prof, rows))


def _row_split(rig: Rig, prof: ModelProfile, s: Settings, sl: _Slots, rows: np.ndarray) -> _ModeLayout:
    """``row``: 2-D matmul weights of offloaded layers spread by rows over the GPUs (a split
    buffer); everything else, and the KV cache, as the layer split places it."""
    weights = [0.0] * sl.n_gpus
    row_ratios = [sl.ratios[g] for g in sl.model_gpus]
    for t, kind, il in zip(prof.spec.tensors, prof.tensor_roles, prof.tensor_layers, strict=True):
        if kind == "layer":
            dev = int(sl.layer_dev[il])
        elif kind == "output":
            dev = sl.out_dev
        else:
            continue
        if dev < 0:
            continue
        if is_matmul_weight(t) and (len(t.shape) == 2 or all(d == 1 for d in t.shape[2:])):
            ne0 = t.shape[0]
            for k, r in enumerate(row_split_rows(t.shape[1], row_ratios)):
                if r:
                    size = row_bytes(t.ggml_type, ne0) * r
                    if is_quantized(t.ggml_type) and ne0 % MATRIX_ROW_PADDING:
                        size += row_bytes(t.ggml_type, MATRIX_ROW_PADDING - ne0 % MATRIX_ROW_PADDING)
                    weights[sl.model_gpus[k]] += size
        else:
            weights[dev] += cuda_tensor_bytes(t)
    if sl.out_dev >= 0 and prof.spec.tied_embeddings:
        emb = next((t for t in prof.spec.tensors if t.name == "token_embd.weight"), None)
        if emb is not None:
            for k, r in enumerate(row_split_rows(emb.shape[1], row_ratios)):
                if r:
                    weights[sl.model_gpus[k]] += row_bytes(emb.ggml_type, emb.shape[0]) * r
    for gi in sl.model_gpus:
        if np.any(sl.layer_dev == gi):
            weights[gi] += prof.per_device_gpu_bytes
    return _ModeLayout(weights, *_layer_counts(sl), *_kv_by_layer(s, sl, prof, rows))


def _tensor_split(rig: Rig, prof: ModelProfile, s: Settings, sl: _Slots, rows: np.ndarray) -> _ModeLayout:
    """``tensor``: every offloaded layer on every GPU (one meta device), its attention and FFN
    weights and its KV cache split between them, the rest mirrored. The meta device splits in
    llama.cpp's device order (``sl.model_gpus``), which rounds and rotates the shares."""
    n = sl.n_gpus
    order = sl.model_gpus
    tp = TensorParallel(
        prof, n, tuple(float(s.tensor_split[g]) for g in order) if s.tensor_split is not None else None
    )
    weights = [0.0] * n
    gpu_layer_set = {il for il in range(prof.n_layer) if sl.layer_dev[il] == -2}
    for t, kind, il in zip(prof.spec.tensors, prof.tensor_roles, prof.tensor_layers, strict=True):
        on_gpu = (
            (kind == "layer" and il in gpu_layer_set)
            or (kind == "output" and sl.out_dev == -2)
            or (kind == "per_device" and bool(gpu_layer_set))
        )
        if on_gpu:
            for k, b in enumerate(tp_tensor_bytes(tp, t)):
                weights[order[k]] += b
    if sl.out_dev == -2 and prof.spec.tied_embeddings:
        emb = tp.by_name.get("token_embd.weight")
        if emb is not None:
            for gi in range(n):
                weights[gi] += cuda_tensor_bytes(emb)  # the duplicated output is mirrored
    first = min(gpu_layer_set) if gpu_layer_set else -1
    base_row = np.zeros(n, dtype=np.float64)
    swa_row = np.zeros(n, dtype=np.float64)
    if s.offload_kqv:
        swa = prof.is_swa
        v_widths = prof.kv_v_width if s.flash_attn else np.where(prof.kv_v_width > 0, prof.kv_v_width_max, 0)
        for layer_idx in np.flatnonzero(sl.layer_dev == -2):
            li = int(layer_idx)
            per = tp_kv_widths(tp, li, int(prof.kv_k_width[li]), int(v_widths[li]))
            for k, (kw, vw) in enumerate(per):
                gi = order[k]
                kb = int(kv_row_bytes(s.type_k, np.array([kw]))[0]) if kw else 0
                vb = int(kv_row_bytes(s.type_v, np.array([vw]))[0]) if vw else 0
                if swa[li]:
                    swa_row[gi] += kb + vb
                else:
                    base_row[gi] += kb + vb
    return _ModeLayout(
        weights,
        [len(gpu_layer_set)] * n,
        [first] * n,
        [sl.out_dev == -2] * n,
        base_row,
        swa_row,
    )


_SPLIT_MODES = {"layer": _layer_split, "none": _layer_split, "row": _row_split, "tensor": _tensor_split}


def _compute_roles(
    rig: Rig, prof: ModelProfile, s: Settings, sl: _Slots, rows: np.ndarray
) -> tuple[dict[int, ComputeRole], list[ComputeRole]]:
    """The compute graphs each GPU and the host run (their buffers are sized from these)."""
    n_layer = prof.n_layer
    tensor_mode = s.split_mode == "tensor" and sl.n_gpus > 0
    all_offloaded = sl.ngl > n_layer
    copies = PIPELINE_COPIES if pipeline_parallel(s, len(sl.model_gpus), all_offloaded) else 1
    offload_to = offload_gpu(rig, sl.model_gpus)
    offload = op_offload_active(s, offload_to is not None)
    host_layers = sl.host_layers
    gpu_roles: dict[int, ComputeRole] = {}
    host_roles: list[ComputeRole] = []
    if not sl.model_gpus:
        all_layers = tuple(range(n_layer))
        host_roles.append(
            ComputeRole(backend=BACKEND_CPU, layers=all_layers, attention_layers=all_layers, output=True)
        )
        return gpu_roles, host_roles
    for gi in sl.model_gpus:
        if tensor_mode:
            gpu_layers = tuple(int(i) for i in np.flatnonzero(sl.layer_dev == -2))
            dev_out = sl.out_dev == -2
            # Measured (H200, CUDA0 + RPC0 at 1:1): each member of the Meta device reserves the
            # whole graph's compute buffer, not its share (docs/validation.md, multi-device).
            share = 1.0
        else:
            gpu_layers = tuple(int(i) for i in np.flatnonzero(sl.layer_dev == gi))
            dev_out = sl.out_dev == gi
            share = 1.0
        off_w = 0
        off_kv = 0
        off_out = False
        if offload and gi == offload_to:
            # op_offload: the first local GPU runs the big-batch ops of the host's weights.
            if host_layers:
                off_w = int(prof.layer_max_matmul_gpu_bytes[host_layers].max())
                if s.flash_attn:
                    off_kv = int(rows[host_layers].max())
            off_out = sl.out_dev == -1
        gpu_roles[gi] = ComputeRole(
            backend=BACKEND_CUDA,
            layers=gpu_layers,
            attention_layers=gpu_layers if s.offload_kqv else (),
            output=dev_out,
            share=share,
            copies=copies,
            offload_weight_bytes=off_w,
            offload_kv_row_bytes=off_kv,
            offload_output=off_out,
        )
    host_roles.append(
        ComputeRole(
            backend=BACKEND_CPU, attention_layers=tuple(range(n_layer)), copies=copies, host_inputs=True
        )
    )
    if host_layers and not offload:
        # Without op_offload the CPU runs its layers' matmuls itself.
        host_roles.append(
            ComputeRole(
                backend=BACKEND_CPU,
                layers=tuple(host_layers),
                attention_layers=tuple(host_layers) if s.offload_kqv else tuple(range(n_layer)),
                output=sl.out_dev == -1,
            )
        )
    return gpu_roles, host_roles


def _layout(rig: Rig, prof: ModelProfile, s: Settings, n_gpu_layers: int) -> _Layout:
    sl = _slots(rig, prof, s, n_gpu_layers)
    rows = kv_rows(prof, s)
    mode = _SPLIT_MODES[s.split_mode if sl.n_gpus else "layer"](rig, prof, s, sl, rows)
    # Host memory: token embeddings always, the CPU's layers, and the output layer when it stays.
    host_w = float(prof.input_host_bytes + int(prof.layer_host_bytes[sl.host_layers].sum()))
    if sl.host_layers:
        host_w += prof.per_device_host_bytes
    if sl.out_dev == -1:
        host_w += prof.output_host_bytes
    swa = prof.is_swa
    on_host = np.ones(prof.n_layer, dtype=np.bool_) if not s.offload_kqv else sl.layer_dev == -1
    overhead = [0.0] * sl.n_gpus
    for gi in sl.model_gpus:
        overhead[gi] = gpu_overhead_mib(rig.gpus[gi], s)
    gpu_roles, host_roles = _compute_roles(rig, prof, s, sl, rows)
    return _Layout(
        n_gpus=sl.n_gpus,
        model_gpus=sl.model_gpus,
        layer_dev=sl.layer_dev,
        out_dev=sl.out_dev,
        host_layers=sl.host_layers,
        weights=mode.weights,
        host_weights=host_w,
        overhead_mib=overhead,
        layers=mode.layers,
        first_layer=mode.first_layer,
        has_output=mode.has_output,
        kv_base_row=mode.kv_base_row,
        kv_swa_row=mode.kv_swa_row,
        host_kv_base_row=float(rows[on_host & ~swa].sum()),
        host_kv_swa_row=float(rows[on_host & swa].sum()),
        gpu_roles=gpu_roles,
        host_roles=host_roles,
    )


@dataclass
class _Eval:
    n_gpus: int
    weights: list[float]
    kv: list[float]
    compute: list[float]
    overhead_mib: list[float]
    layers: list[int]
    first_layer: list[int]
    has_output: list[bool]
    host_weights: float = 0.0
    host_kv: float = 0.0
    host_compute: float = 0.0
    host_output: float = 0.0
    host_layers: int = 0
    buffers: list[BufferPlan] = field(default_factory=list)

    def gpu_total_mib(self, i: int) -> float:
        return (self.weights[i] + self.kv[i] + self.compute[i]) / MIB + self.overhead_mib[i]

    @property
    def host_total_mib(self) -> float:
        return (self.host_weights + self.host_kv + self.host_compute + self.host_output) / MIB


@dataclass(frozen=True)
class _Costs:
    gpu_kv: np.ndarray  # (n_ctx, n_gpus) bytes
    gpu_compute: np.ndarray
    host_kv: np.ndarray  # (n_ctx,)
    host_compute: np.ndarray


def _costs(
    lay: _Layout,
    prof: ModelProfile,
    s: Settings,
    base_cells: np.ndarray,
    swa_cells: np.ndarray,
    n_stream: int,
    n_ubatch: int,
    n_outputs: int,
) -> _Costs:
    """KV and compute bytes of a layout for each context (cells per stream given as arrays)."""
    base_total = base_cells * n_stream
    swa_total = swa_cells * n_stream
    gpu_kv = base_total[:, None] * lay.kv_base_row[None, :] + swa_total[:, None] * lay.kv_swa_row[None, :]
    gpu_compute = np.zeros((base_cells.size, lay.n_gpus), dtype=np.float64)
    for gi, role in lay.gpu_roles.items():
        gpu_compute[:, gi] = compute_bytes_cells(prof, s, n_ubatch, n_outputs, base_cells, swa_cells, role)
    host_kv = base_total * lay.host_kv_base_row + swa_total * lay.host_kv_swa_row
    host_compute = np.zeros(base_cells.size, dtype=np.float64)
    for role in lay.host_roles:
        host_compute = np.maximum(
            host_compute, compute_bytes_cells(prof, s, n_ubatch, n_outputs, base_cells, swa_cells, role)
        )
    return _Costs(gpu_kv, gpu_compute, host_kv, host_compute)


def _evaluate(
    rig: Rig, prof: ModelProfile, settings: Settings, n_gpu_layers: int, with_buffers: bool = False
) -> _Eval:
    s = settings
    lay = _layout(rig, prof, s, n_gpu_layers)
    cells = kv_cells(s, prof.n_swa)
    costs = _costs(
        lay,
        prof,
        s,
        np.array([cells.n_ctx_seq], dtype=np.float64),
        np.array([cells.swa_cells], dtype=np.float64),
        cells.n_stream,
        cells.n_ubatch,
        cells.n_outputs,
    )
    ev = _Eval(
        n_gpus=lay.n_gpus,
        weights=lay.weights,
        kv=[float(v) for v in costs.gpu_kv[0]],
        compute=[float(v) for v in costs.gpu_compute[0]],
        overhead_mib=lay.overhead_mib,
        layers=lay.layers,
        first_layer=lay.first_layer,
        has_output=lay.has_output,
        host_weights=lay.host_weights,
        host_kv=float(costs.host_kv[0]),
        host_compute=float(costs.host_compute[0]),
        host_output=float(output_buffer_bytes(prof, s)),
        host_layers=len(lay.host_layers),
    )
    if with_buffers:
        ev.buffers = logged_buffers(
            rig,
            prof,
            lay.model_gpus,
            lay.host_layers,
            lay.out_dev == -1,
            weights=ev.weights,
            kv=ev.kv,
            compute=ev.compute,
            host_output=ev.host_output,
            host_kv=ev.host_kv,
            host_compute=ev.host_compute,
        )
    return ev


def _fits(rig: Rig, ev: _Eval) -> tuple[bool, bool]:
    """(all GPUs fit, host fits)."""
    gpus_ok = all(ev.gpu_total_mib(i) <= g.vram_usable_mib for i, g in enumerate(rig.gpus))
    avail = rig.host.ram_available_mib
    host_ok = avail is None or ev.host_total_mib <= avail
    return gpus_ok, host_ok


def _largest_fitting_ngl(rig: Rig, prof: ModelProfile, settings: Settings, below: int) -> int | None:
    """Largest n_gpu_layers in [0, below) with everything fitting, or None."""
    if below <= 0:
        return None

    def ok(ngl: int) -> bool:
        g, h = _fits(rig, _evaluate(rig, prof, settings, ngl))
        return g and h

    def gpu_ok(ngl: int) -> bool:
        return _fits(rig, _evaluate(rig, prof, settings, ngl))[0]

    # GPU use grows with n_gpu_layers: binary-search the largest count whose GPUs fit.
    lo, hi = 0, below - 1
    if not gpu_ok(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if gpu_ok(mid):
            lo = mid
        else:
            hi = mid - 1
    # Layer rounding can make the boundary uneven: step down to the first count that fits fully.
    for ngl in range(lo, -1, -1):
        if ok(ngl):
            return ngl
        if not _fits(rig, _evaluate(rig, prof, settings, ngl))[1]:
            return None  # fewer GPU layers only move more to the host
    return None


# ------------------------------------------------------------------------------------------------
# the public planner
# ------------------------------------------------------------------------------------------------


def plan(rig: Rig, spec: ModelSpec, settings: Settings) -> Plan:
    """Place ``spec`` on ``rig`` with ``settings`` exactly as llama.cpp would, and size every buffer.

    Raises :class:`RigfitError` for settings llama.cpp would refuse (see :func:`validate_settings`)
    and for a spec without tensors.
    """
    validate_settings(rig, spec, settings)
    return plan_profile(rig, profile(spec), settings)


def plan_profile(rig: Rig, prof: ModelProfile, settings: Settings) -> Plan:
    """:func:`plan` for an already computed :class:`~app.core.memory.ModelProfile` (no validation)."""
    s = settings
    ngl = gpu_slots(prof.n_layer, s, rig.n_gpus)
    ev = _evaluate(rig, prof, s, ngl, with_buffers=True)
    devices = tuple(
        DevicePlan(
            index=g.index,
            name=g.name,
            layers=ev.layers[i],
            has_output=ev.has_output[i],
            weights_mib=ev.weights[i] / MIB,
            kv_mib=ev.kv[i] / MIB,
            compute_mib=ev.compute[i] / MIB,
            overhead_mib=ev.overhead_mib[i],
            capacity_mib=g.vram_usable_mib,
            first_layer=ev.first_layer[i],
        )
        for i, g in enumerate(rig.gpus)
    )
    host = HostPlan(
        layers=ev.host_layers,
        weights_mib=ev.host_weights / MIB,
        kv_mib=ev.host_kv / MIB,
        compute_mib=ev.host_compute / MIB,
        output_mib=ev.host_output / MIB,
        available_mib=rig.host.ram_available_mib,
    )
    status, fit_ngl, problems = _status(rig, prof, s, ngl, ev, devices, host)
    problems += rules.plan_rule_problems(rig, prof.spec, s)
    if rules.CODE_ROW_UNAVAILABLE in rules.codes(problems):
        status = STATUS_NO
    return Plan(
        model=prof.spec.id,
        quant=prof.spec.file_type or "",
        settings=s,
        devices=devices,
        host=host,
        status=status,
        tensor_split=effective_tensor_split(rig, s),
        n_layer=prof.n_layer,
        layers_on_cpu=ev.host_layers if rig.n_gpus else prof.n_layer,
        notes=tuple(prof.notes) + tuple(p.message for p in problems),
        buffers=tuple(ev.buffers),
        fit_n_gpu_layers=fit_ngl,
        problems=problems,
    )


def _status(
    rig: Rig,
    prof: ModelProfile,
    s: Settings,
    ngl: int,
    ev: _Eval,
    devices: tuple[DevicePlan, ...],
    host: HostPlan,
) -> tuple[str, int | None, tuple[Problem, ...]]:
    """The plan's status, the n_gpu_layers that fits when the settings do not, and why."""
    gpus_ok, host_ok = _fits(rig, ev)
    avail = host.available_mib if host.available_mib is not None else 0.0
    if rig.n_gpus == 0:
        if host_ok:
            return STATUS_FITS, None, (rules.no_gpu(),)
        return STATUS_NO, None, (rules.no_gpu(), rules.host_ram_short(host.total_mib, avail, cpu_only=True))
    if gpus_ok and host_ok:
        output_on_cpu = not any(ev.has_output)
        if ev.host_layers > 0 or output_on_cpu:
            return (
                STATUS_OFFLOAD,
                None,
                (rules.layers_on_cpu(ev.host_layers, prof.n_layer, output_on_cpu, ngl),),
            )
        low = [d.index for d in devices if is_tight(d.free_after_mib, d.capacity_mib)]
        if low:
            return STATUS_TIGHT, None, (rules.vram_tight(low, TIGHT_FREE_FRACTION),)
        return STATUS_FITS, None, ()
    if not gpus_ok:
        over = tuple(
            rules.gpu_over_capacity(d.index, d.name, d.total_mib, d.capacity_mib)
            for d in devices
            if not d.fits
        )
        fit_ngl = _largest_fitting_ngl(rig, prof, s, ngl)
        if fit_ngl is None:
            return STATUS_NO, None, (*over, rules.does_not_fit())
        return (
            STATUS_OFFLOAD,
            fit_ngl,
            (*over, rules.fits_with_offload(fit_ngl, prof.n_layer + 1 - fit_ngl, prof.n_layer)),
        )
    return STATUS_NO, None, (rules.host_ram_short(host.total_mib, avail, cpu_only=False),)


@dataclass(frozen=True)
class ContextSweep:
    """Totals of one placement for many contexts (MiB), from :func:`context_sweep`.

    ``gpu_total_mib[i, g]`` is GPU ``g``'s total (weights, KV, compute, overhead) at ``ctx[i]``;
    ``fits[i]`` says whether every GPU and the host fit there.
    """

    ctx: np.ndarray
    gpu_total_mib: np.ndarray
    host_total_mib: np.ndarray
    gpu_fits: np.ndarray
    fits: np.ndarray


def context_sweep(
    rig: Rig, prof: ModelProfile, settings: Settings, ctxs: Sequence[int] | np.ndarray
) -> ContextSweep:
    """Evaluate one placement at many context lengths at once (for the fit table and sliders).

    The layer assignment and weights are computed once; KV and compute buffers are vectorised over
    ``ctxs``. Equal to :func:`plan`'s figures at every context (``settings.ctx`` is ignored).
    """
    s = settings
    ctx = np.asarray(list(ctxs), dtype=np.int64)
    if ctx.size == 0 or int(ctx.min()) < 1:
        raise RigfitError("contexts must be at least 1 token")
    lay = _layout(rig, prof, s, gpu_slots(prof.n_layer, s, rig.n_gpus))
    cells = kv_cells_for_contexts(s, prof.n_swa, ctx)
    n_ctx_seq, swa, n_stream = cells.n_ctx_seq, cells.swa_cells, cells.n_stream
    tokens, outputs = cells.n_ubatch, cells.n_outputs
    gpu_kv = np.zeros((ctx.size, rig.n_gpus))
    gpu_compute = np.zeros((ctx.size, rig.n_gpus))
    host_kv = np.zeros(ctx.size)
    host_compute = np.zeros(ctx.size)
    # The graph's token count only differs for contexts below a micro-batch: group by it.
    for t, n_out in sorted(set(zip(tokens.tolist(), outputs.tolist(), strict=True))):
        sel = (tokens == t) & (outputs == n_out)
        costs = _costs(
            lay,
            prof,
            s,
            n_ctx_seq[sel].astype(np.float64),
            swa[sel].astype(np.float64),
            n_stream,
            int(t),
            int(n_out),
        )
        gpu_kv[sel] = costs.gpu_kv
        gpu_compute[sel] = costs.gpu_compute
        host_kv[sel] = costs.host_kv
        host_compute[sel] = costs.host_compute
    weights = np.array(lay.weights, dtype=np.float64)
    overhead = np.array(lay.overhead_mib, dtype=np.float64)
    gpu_total = (weights[None, :] + gpu_kv + gpu_compute) / MIB + overhead[None, :]
    host_total = (lay.host_weights + host_kv + host_compute + output_buffer_bytes(prof, s)) / MIB
    capacity = np.array([g.vram_usable_mib for g in rig.gpus], dtype=np.float64)
    gpu_fits = (
        np.all(gpu_total <= capacity[None, :], axis=1) if rig.n_gpus else np.ones(ctx.size, dtype=np.bool_)
    )
    avail = rig.host.ram_available_mib
    host_fits = np.ones(ctx.size, dtype=np.bool_) if avail is None else host_total <= avail
    return ContextSweep(ctx, gpu_total, host_total, gpu_fits, gpu_fits & host_fits)


def largest_fitting_ctx(
    rig: Rig, spec: ModelSpec, settings: Settings, limit: int | None = None
) -> int | None:
    """The largest context (a multiple of 256, up to ``limit`` or the model's training context) at which
    this placement fits the GPUs and the host; ``None`` when not even 256 tokens fit."""
    validate_settings(rig, spec, replace(settings, ctx=max(1, settings.ctx)))
    prof = profile(spec)
    sweep = context_sweep(rig, prof, settings, context_candidates(context_limit(spec.n_ctx_train, limit)))
    ok = np.flatnonzero(sweep.fits)
    return int(sweep.ctx[ok[-1]]) if ok.size else None


__all__ = [
    "TENSOR_SPLIT_UNSUPPORTED_ARCHS",
    "ContextSweep",
    "context_sweep",
    "default_split_weights",
    "effective_tensor_split",
    "gpu_buffer_name",
    "largest_fitting_ctx",
    "layer_assignment",
    "logged_model_buffers",
    "plan",
    "plan_profile",
    "validate_settings",
]
