"""The fit table: every catalog model at every quantization on one rig, fast enough to redo on every change.

For a rig and a context (default 8192) each row gives the total memory, the status (``fits``,
``tight``, ``offload``, ``no`` — the same answer :func:`app.core.placement.plan` gives for that cell),
the largest context that fits with every layer on the GPUs (up to the model's trained context) and
the predicted decode speed (:mod:`app.core.perf`). The best quantization of a model is the one of
highest quality (:data:`QUALITY_ORDER`) whose status is ``fits`` or ``tight``; when none is, the
highest-quality ``offload`` one.

How it stays under 10 ms for ~400 cells: a one-time warm-up builds, per model, the per-quant layer
arrays (weights per layer on a GPU and on the host, bytes and FLOPs one token reads) as cumulative
sums, from the cached :func:`~app.core.memory.profile` of each spec, and stacks all models' rows into
one batch. A recompute then

* evaluates llama.cpp's layer rule for every possible ``n_gpu_layers`` of a layer count at once,
* gets every row's GPU weights from the cumulative sums (one gather for the whole table), the KV
  cache from per-layer row sums, and the compute buffers from
  :func:`~app.core.memory.compute_bytes_cells` memoised by what they depend on (the layers' widest
  dimensions, output, pipeline copies, op_offload) and computed over all candidate contexts at once,
* decides the status exactly as ``plan()`` does, including its binary search for the largest
  ``n_gpu_layers`` that fits, for all overflowing rows at once,
* finds the largest context per row with one ``searchsorted`` per GPU (memory grows with the
  context, so the fitting contexts are a prefix),
* predicts decode speed with :mod:`app.core.perf`'s functions on the same arrays.

Split modes ``layer`` and ``none`` take that path; ``row`` and ``tensor`` are planned cell by cell
with ``plan()`` (correct, but slow: 5.7 s for the whole catalog measured on the development machine).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from app.core import perf
from app.core.catalog import catalog_spec, load_model_catalog
from app.core.errors import RigfitError
from app.core.memory import (
    BACKEND_CPU,
    BACKEND_CUDA,
    KV_CTX_PAD,
    MIB,
    OP_OFFLOAD_MIN_BATCH,
    PIPELINE_COPIES,
    ComputeRole,
    ModelProfile,
    compute_bytes_cells,
    kv_cells,
    kv_cells_for_contexts,
    output_buffer_bytes,
    profile,
)
from app.core.model_spec import ModelSpec
from app.core.placement import (
    _gpu_overhead_mib,  # the same per-GPU overhead rule as plan(), on purpose
    _kv_rows,  # K+V bytes per cell per layer, exactly as plan() sizes them
    _raw_split,  # the split llama.cpp sees, exactly as plan() builds it
    largest_fitting_ctx,
    plan,
    validate_settings,
)
from app.core.plan import STATUS_FITS, STATUS_NO, STATUS_OFFLOAD, STATUS_TIGHT, Plan
from app.core.rig import Gpu, Host, Rig
from app.core.settings import Settings

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

DEFAULT_FIT_CTX = 8192
TIGHT_FREE_FRACTION = 0.10  # as placement: a GPU left with less than 10% free makes a plan tight

# Quality, best first. Where llama.cpp's quantize tool publishes a perplexity increase
# (tools/quantize/quantize.cpp, Llama-3-8B: Q8_0 +0.0026, Q6_K +0.0217, Q5_K_M +0.0569, Q5_K_S
# +0.1049, Q5_1 +0.1062, Q5_0 +0.1316, Q4_K_M +0.1754, Q4_K_S +0.2689, Q4_1 +0.4511, Q4_0 +0.4685,
# Q3_K_L +0.5562, Q3_K_M +0.6569, Q3_K_S +1.6321, Q2_K +3.5199) that order is used; BF16 ranks above
# F16 (it is the training precision of today's models, -0.0050 vs +0.0020 @ Mistral-7B). The
# non-linear IQ4 types (4.25-4.5 bpw, importance-weighted) sit between Q4_K_S and Q4_1, and the other
# IQ types by their bits per weight among the K-quants. MXFP4_MOE ranks right below Q4_0, except for
# gpt-oss, whose experts were trained in MXFP4: there it is the original precision (see
# quality_rank).
QUALITY_ORDER: tuple[str, ...] = (
    "F32",
    "BF16",
    "F16",
    "Q8_0",
    "Q6_K",
    "Q5_K_M",
    "Q5_K_S",
    "Q5_1",
    "Q5_0",
    "Q4_K_M",
    "Q4_K_S",
    "IQ4_NL",
    "IQ4_XS",
    "Q4_1",
    "Q4_0",
    "MXFP4_MOE",
    "Q3_K_L",
    "Q3_K_M",
    "IQ3_M",
    "IQ3_S",
    "Q3_K_S",
    "IQ3_XS",
    "IQ3_XXS",
    "Q2_K",
    "Q2_K_S",
    "IQ2_M",
    "IQ2_S",
    "IQ2_XS",
    "IQ2_XXS",
    "Q2_0",
    "TQ2_0",
    "IQ1_M",
    "TQ1_0",
    "IQ1_S",
    "Q1_0",
)
_QUALITY = {q: i for i, q in enumerate(QUALITY_ORDER)}
_NATIVE_MXFP4_ARCHS = frozenset({"gpt-oss"})


def quality_rank(quant: str, architecture: str | None = None) -> int:
    """Position of a quant in :data:`QUALITY_ORDER` (0 is best); unknown names rank last.

    For architectures published in MXFP4 (gpt-oss) MXFP4_MOE is the original precision and ranks
    first: a Q8_0 file of them is bigger, not better.
    """
    q = (quant or "").upper()
    if q == "MXFP4_MOE" and architecture in _NATIVE_MXFP4_ARCHS:
        return -1
    return _QUALITY.get(q, len(QUALITY_ORDER))


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitRow:
    """One model at one quantization on the rig.

    ``total_gib`` is everything the load takes (all GPUs plus system RAM) at the table's context;
    ``max_ctx`` the largest context (a multiple of 256, up to the trained context) with every layer on
    the GPUs (on a rig without GPUs: in system RAM), ``None`` when not even 256 tokens fit;
    ``decode_tok_s`` the predicted speed (``None`` when it does not load); ``n_gpu_layers`` the
    offload that fits when the status is ``offload``.
    """

    model: str
    name: str
    quant: str
    total_gib: float
    status: str
    max_ctx: int | None
    decode_tok_s: float | None
    weights_gib: float = 0.0
    n_gpu_layers: int | None = None
    best: bool = False
    source: str = "catalog"
    note: str = ""


@dataclass(frozen=True)
class FitTable:
    """The fit table for one rig and context."""

    rig_name: str
    ctx: int
    settings: Settings
    rows: tuple[FitRow, ...]

    def best(self) -> dict[str, str]:
        """Best quant per model (models where nothing loads are left out)."""
        return {r.model: r.quant for r in self.rows if r.best}

    def rows_for(self, model: str) -> tuple[FitRow, ...]:
        """The rows of one model, in quality order."""
        return tuple(r for r in self.rows if r.model == model)

    def row(self, model: str, quant: str) -> FitRow:
        """The row of ``model`` at ``quant``; RigfitError when the table has none."""
        for r in self.rows:
            if r.model == model and r.quant == quant:
                return r
        raise RigfitError(f"the fit table has no row for {model} at {quant}")


# ------------------------------------------------------------------------------------------------
# per-model groups (the warm-up)
# ------------------------------------------------------------------------------------------------


def _range_max_ids(values: IntArray) -> tuple[npt.NDArray[np.integer[Any]], int, IntArray]:
    """Ids of max(values[lo:hi]) for every 0 <= lo < hi <= n, as an (n+1, n+1) table.

    Returns (table, number of distinct ids, the distinct values); a constant array gives one id and a
    table that takes no memory (a broadcast view). The table is (n+1)**2 entries, so its ids take the
    smallest integer type that holds them: at the largest layer count a model may have
    (limits.MAX_LAYERS) that is 1 MiB per statistic instead of 4.
    """
    n = values.size
    distinct = np.unique(values)
    if distinct.size <= 1:
        return np.broadcast_to(np.zeros((1, 1), dtype=np.uint8), (n + 1, n + 1)), 1, distinct
    dtype = np.uint8 if distinct.size <= 256 else np.uint16 if distinct.size <= 65536 else np.int32
    table = np.zeros((n + 1, n + 1), dtype=dtype)
    for lo in range(n):
        run = np.maximum.accumulate(values[lo:])
        table[lo, lo + 1 :] = np.searchsorted(distinct, run)
    return table, int(distinct.size), distinct


def _prefix_max(values: FloatArray | IntArray) -> FloatArray:
    """out[h] = max(values[:h]) (0 for h = 0), n + 1 entries."""
    out = np.zeros(values.size + 1, dtype=np.float64)
    if values.size:
        out[1:] = np.maximum.accumulate(values.astype(np.float64))
    return out


@dataclass(eq=False)
class _Group:
    """One model and its quants, as matrices (quant x layer) for the vectorised table."""

    model: str
    name: str
    source: str
    architecture: str
    quants: tuple[str, ...]
    specs: tuple[ModelSpec, ...]
    profs: tuple[ModelProfile, ...]
    n_layer: int
    n_ctx_train: int
    # weights (per quant)
    cum_gpu: FloatArray  # (Q, L+1) cumulative CUDA bytes per layer
    cum_host: FloatArray  # (Q, L+1) cumulative file bytes per layer
    prefix_max_mm: FloatArray  # (Q, L+1) largest matmul weight among layers [0, h)
    input_host: FloatArray  # (Q,)
    output_gpu: FloatArray
    output_host: FloatArray
    output_mm_gpu: FloatArray
    per_dev_gpu: FloatArray
    per_dev_host: FloatArray
    weights_total: FloatArray  # (Q,) every weight once (file bytes)
    # speed (per quant)
    cum_read: FloatArray  # (Q, L+1)
    cum_flops: FloatArray
    out_read: FloatArray
    out_flops: FloatArray
    # quant-independent compute-role statistics: range-max id tables
    stat_tables: tuple[npt.NDArray[np.integer[Any]], ...] = ()
    stat_sizes: tuple[int, ...] = ()
    memo: dict[tuple[object, ...], FloatArray] = field(default_factory=dict)
    kv_memo: dict[tuple[object, ...], tuple[FloatArray, FloatArray, FloatArray]] = field(default_factory=dict)
    cells_memo: dict[int, _Cells] = field(default_factory=dict)
    one_cells: dict[tuple[int, int], _Cells] = field(default_factory=dict)
    read_memo: dict[tuple[int, int], tuple[FloatArray, FloatArray]] = field(default_factory=dict)
    full_memo: dict[tuple[object, ...], _Full] = field(default_factory=dict)
    extras_memo: dict[tuple[object, ...], tuple[Any, ...]] = field(default_factory=dict)
    prof_out0: ModelProfile | None = None
    prof_out_big: ModelProfile | None = None

    @property
    def prof(self) -> ModelProfile:
        return self.profs[0]

    @property
    def n_slots(self) -> int:
        return self.n_layer + 1


_STATS = ("n_ff_eff", "n_head", "n_head_kv", "kv_k_width", "kv_v_width")

_lock = threading.Lock()
_groups: dict[tuple[int, ...], _Group] = {}
_MAX_GROUPS = 256
# The cached groups' arrays together: a few hundred models of 1024 layers must not hold gigabytes.
_MAX_GROUP_BYTES = 256 << 20
_group_bytes: dict[tuple[int, ...], int] = {}


def _nbytes(group: _Group) -> int:
    total = 0
    for value in vars(group).values():
        if isinstance(value, np.ndarray) and value.base is None:
            total += value.nbytes
        elif isinstance(value, tuple):
            total += sum(v.nbytes for v in value if isinstance(v, np.ndarray) and v.strides != (0, 0))
    return total


def _build_group(
    model: str, name: str, source: str, quants: Sequence[str], specs: Sequence[ModelSpec]
) -> _Group:
    profs = tuple(profile(s) for s in specs)
    sps = tuple(perf.speed_profile(s) for s in specs)
    p0 = profs[0]
    for p in profs[1:]:
        if p.n_layer != p0.n_layer:
            raise RigfitError(f"model '{model}': its quants disagree on the layer count")

    def cum(rows: list[IntArray] | list[FloatArray]) -> FloatArray:
        mat = np.array(rows, dtype=np.float64)
        return np.concatenate((np.zeros((mat.shape[0], 1)), np.cumsum(mat, axis=1)), axis=1)

    tables = []
    sizes = []
    for stat in _STATS:
        t, n, _ = _range_max_ids(np.asarray(getattr(p0, stat), dtype=np.int64))
        tables.append(t)
        sizes.append(n)
    return _Group(
        model=model,
        name=name,
        source=source,
        architecture=specs[0].architecture,
        quants=tuple(quants),
        specs=tuple(specs),
        profs=profs,
        n_layer=p0.n_layer,
        n_ctx_train=int(specs[0].n_ctx_train or 0),
        cum_gpu=cum([p.layer_gpu_bytes for p in profs]),
        cum_host=cum([p.layer_host_bytes for p in profs]),
        prefix_max_mm=np.array([_prefix_max(p.layer_max_matmul_gpu_bytes) for p in profs]),
        input_host=np.array([p.input_host_bytes for p in profs], dtype=np.float64),
        output_gpu=np.array([p.output_gpu_bytes for p in profs], dtype=np.float64),
        output_host=np.array([p.output_host_bytes for p in profs], dtype=np.float64),
        output_mm_gpu=np.array([p.output_matmul_gpu_bytes for p in profs], dtype=np.float64),
        per_dev_gpu=np.array([p.per_device_gpu_bytes for p in profs], dtype=np.float64),
        per_dev_host=np.array([p.per_device_host_bytes for p in profs], dtype=np.float64),
        weights_total=np.array(
            [p.input_host_bytes + int(p.layer_host_bytes.sum()) + p.output_host_bytes for p in profs],
            dtype=np.float64,
        ),
        cum_read=np.array([s.layer_cum_bytes for s in sps], dtype=np.float64),
        cum_flops=np.array([s.layer_cum_flops for s in sps], dtype=np.float64),
        out_read=np.array([s.output_read_bytes for s in sps], dtype=np.float64),
        out_flops=np.array([s.output_flops for s in sps], dtype=np.float64),
        stat_tables=tuple(tables),
        stat_sizes=tuple(sizes),
    )


def _group_for(
    model: str, name: str, source: str, quants: Sequence[str], specs: Sequence[ModelSpec]
) -> _Group:
    key = tuple(id(s) for s in specs)
    hit = _groups.get(key)
    if hit is not None and all(a is b for a, b in zip(hit.specs, specs, strict=True)):
        return hit
    group = _build_group(model, name, source, quants, specs)
    size = _nbytes(group)
    with _lock:
        while _groups and (
            len(_groups) >= _MAX_GROUPS or sum(_group_bytes.values()) + size > _MAX_GROUP_BYTES
        ):
            oldest = next(iter(_groups))
            _groups.pop(oldest)
            _group_bytes.pop(oldest, None)
        _groups[key] = group
        _group_bytes[key] = size
    return group


_catalog_groups: dict[tuple[str, tuple[str, ...] | None], list[_Group]] = {}


def catalog_groups(models: Iterable[str] | None = None) -> list[_Group]:
    """The catalog's models with all their quants, warmed up (specs, profiles, matrices).

    The first call builds everything (about 2 s for the whole catalog); later calls are a lookup.
    """
    from app.core.catalog import catalog_path

    wanted = tuple(sorted({m.strip().lower() for m in models})) if models is not None else None
    key = (str(catalog_path()), wanted)
    hit = _catalog_groups.get(key)
    if hit is not None:
        return hit
    groups = []
    for entry in load_model_catalog():
        if wanted is not None and entry.id not in wanted:
            continue
        quants = sorted(entry.quants, key=lambda q: quality_rank(q, entry.architecture))
        specs = [catalog_spec(entry.id, q) for q in quants]
        groups.append(_group_for(entry.id, entry.name, "catalog", quants, specs))
    if wanted is not None:
        missing = sorted(set(wanted) - {g.model for g in groups})
        if missing:
            catalog_spec(missing[0])  # raises UnknownName with the closest ids
    with _lock:
        if len(_catalog_groups) > 64:
            _catalog_groups.clear()
        _catalog_groups[key] = groups
    return groups


def _spec_group(spec: ModelSpec) -> _Group:
    return _group_for(spec.id, spec.name, spec.source, (spec.file_type or "?",), (spec,))


def warm_up(extra_specs: Sequence[ModelSpec] = (), settings: Settings | None = None) -> None:
    """Build everything the table needs once (the GUI calls it in a worker at start-up).

    Besides the specs, profiles and per-model matrices, this runs the table once on a one-GPU and a
    two-GPU rig (nominal 24 GiB cards) so the rig-independent compute-buffer curves of the common
    cases (one GPU, pipeline copies with several) are computed before the first real table.
    """
    catalog_groups()
    for spec in extra_specs:
        _spec_group(spec)
    s = settings if settings is not None else Settings()
    card = Gpu(index=0, name="warm-up", vram_total_mib=24576.0, bandwidth_gbps=1000.0, fp16_tflops=100.0)
    host = Host(ram_available_mib=65536.0)
    for gpus in ((card,), (card, card.with_index(1))):
        fit_table(Rig(gpus=gpus, host=host), s.ctx, s, extra_specs=extra_specs)


# ------------------------------------------------------------------------------------------------
# llama.cpp's layer rule for every n_gpu_layers at once
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Assign:
    """Per n_gpu_layers k (0..n_slots) and model GPU m: its slot range [lo, lo + count)."""

    lo: IntArray  # (K, M)
    count: IntArray  # (K, M)


_assign_cache: dict[tuple[int, tuple[float, ...]], _Assign] = {}
_assign_one_cache: dict[tuple[int, tuple[float, ...], int], tuple[IntArray, IntArray]] = {}


def _split_points(raw: Sequence[float]) -> npt.NDArray[np.float32]:
    """Normalised cumulative split points in float32, as llama.cpp (and placement) computes them."""
    splits = np.array(raw, dtype=np.float32)
    running = np.float32(0.0)
    for i in range(splits.size):
        running = np.float32(running + splits[i])
        splits[i] = running
    return (splits / running).astype(np.float32)


def _assign_one(n_layer: int, raw: Sequence[float], k: int) -> tuple[IntArray, IntArray]:
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
    splits = _split_points(raw)
    values = np.arange(act, dtype=np.float32) / np.float32(max(act, 1))
    below = np.searchsorted(values, splits, side="left").astype(np.int64)
    count = np.diff(np.concatenate(([0], below))).astype(np.int64)
    lo = (n_slots - act) + np.concatenate(([0], below[:-1])).astype(np.int64)
    if len(_assign_one_cache) > 4096:
        _assign_one_cache.clear()
    _assign_one_cache[key] = (lo, count)
    return lo, count


def _assignments(n_layer: int, raw: Sequence[float]) -> _Assign:
    """:func:`_assign_one` for every k = 0..n_layer+1 at once.

    The number of offloaded slots j < k with float32(j) / float32(k) < split is ceil(split * k) up to
    float32 rounding; the candidate is corrected by one either way with llama.cpp's own float32
    comparison (the values j/k are 1/k apart, far more than a float32 rounding error).
    """
    key = (n_layer, tuple(raw))
    hit = _assign_cache.get(key)
    if hit is not None:
        return hit
    n_slots = n_layer + 1
    splits = _split_points(raw)  # (M,) float32
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
    result = _Assign(lo=lo.astype(np.int64), count=count.astype(np.int64))
    if len(_assign_cache) > 512:
        _assign_cache.clear()
    _assign_cache[key] = result
    return result


# ------------------------------------------------------------------------------------------------
# contexts, KV cells and compute buffers
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cells:
    """KV cells and graph sizes for many contexts (as placement.context_sweep computes them)."""

    ctx: IntArray
    base: FloatArray  # cells per stream, full cache
    swa: FloatArray  # cells per stream, sliding-window cache
    n_stream: int
    tokens: IntArray
    outputs: IntArray


def _cells(settings: Settings, n_swa: int, ctxs: IntArray) -> _Cells:
    c = kv_cells_for_contexts(settings, n_swa, ctxs)
    return _Cells(
        ctx=ctxs,
        base=c.n_ctx_seq.astype(np.float64),
        swa=c.swa_cells.astype(np.float64),
        n_stream=int(c.n_stream),
        tokens=c.n_ubatch,
        outputs=c.n_outputs,
    )


def _one_cell(settings: Settings, n_swa: int, ctx: int) -> _Cells:
    c = kv_cells(replace(settings, ctx=ctx), n_swa)
    return _Cells(
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
    g: _Group, settings: Settings, cells: _Cells, role: ComputeRole, prof: ModelProfile | None = None
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


def _modified_profiles(g: _Group) -> tuple[ModelProfile, ModelProfile]:
    if g.prof_out0 is None or g.prof_out_big is None:
        g.prof_out0 = replace(g.prof, output_matmul_gpu_bytes=0)
        g.prof_out_big = replace(g.prof, output_matmul_gpu_bytes=int(_BIG))
    return g.prof_out0, g.prof_out_big


_settings_ids: dict[Settings, int] = {}
_next_settings_id = itertools.count()


def _settings_id(s: Settings) -> int:
    # Hashing a Settings is slow; memo keys use an int per distinct value instead. Ids are never
    # reused, so forgetting old ones can never make a memo entry answer for other settings.
    sid = _settings_ids.get(s)
    if sid is None:
        with _lock:
            if len(_settings_ids) > 1024:
                _settings_ids.clear()
            sid = _settings_ids[s] = next(_next_settings_id)
    return sid


# ------------------------------------------------------------------------------------------------
# all models' rows as one batch
# ------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Batch:
    """The rows of several groups stacked (R rows, layers padded to the longest model)."""

    groups: tuple[_Group, ...]
    start: tuple[int, ...]  # first row of each group
    row_group: IntArray  # (R,)
    rows: IntArray  # arange(R)
    cum_gpu: FloatArray  # (R, Lmax+1)
    cum_host: FloatArray
    prefix_max_mm: FloatArray
    cum_read: FloatArray
    cum_flops: FloatArray
    input_host: FloatArray  # (R,)
    output_gpu: FloatArray
    output_host: FloatArray
    output_mm_gpu: FloatArray
    per_dev_gpu: FloatArray
    per_dev_host: FloatArray
    out_read: FloatArray
    out_flops: FloatArray
    weights_total: FloatArray
    n_rows: int
    l_max: int
    quality: IntArray  # (R,) quality_rank of each row's quant
    models: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    quants: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    weights_gib: list[float] = field(default_factory=list)


def _pad(mats: list[FloatArray], width: int) -> FloatArray:
    out = []
    for m in mats:
        if m.shape[1] < width:
            m = np.concatenate((m, np.repeat(m[:, -1:], width - m.shape[1], axis=1)), axis=1)
        out.append(m)
    return np.concatenate(out, axis=0)


_batches: dict[tuple[int, ...], _Batch] = {}


def _batch_for(groups: Sequence[_Group]) -> _Batch:
    key = tuple(id(g) for g in groups)
    hit = _batches.get(key)
    if hit is not None and all(a is b for a, b in zip(hit.groups, groups, strict=True)):
        return hit
    l_max = max((g.n_layer for g in groups), default=0)
    width = l_max + 1
    starts = []
    row = 0
    for g in groups:
        starts.append(row)
        row += len(g.quants)
    batch = _Batch(
        groups=tuple(groups),
        start=tuple(starts),
        row_group=np.repeat(np.arange(len(groups)), [len(g.quants) for g in groups]).astype(np.int64),
        rows=np.arange(row),
        cum_gpu=_pad([g.cum_gpu for g in groups], width),
        cum_host=_pad([g.cum_host for g in groups], width),
        prefix_max_mm=_pad([g.prefix_max_mm for g in groups], width),
        cum_read=_pad([g.cum_read for g in groups], width),
        cum_flops=_pad([g.cum_flops for g in groups], width),
        input_host=np.concatenate([g.input_host for g in groups]) if groups else np.zeros(0),
        output_gpu=np.concatenate([g.output_gpu for g in groups]) if groups else np.zeros(0),
        output_host=np.concatenate([g.output_host for g in groups]) if groups else np.zeros(0),
        output_mm_gpu=np.concatenate([g.output_mm_gpu for g in groups]) if groups else np.zeros(0),
        per_dev_gpu=np.concatenate([g.per_dev_gpu for g in groups]) if groups else np.zeros(0),
        per_dev_host=np.concatenate([g.per_dev_host for g in groups]) if groups else np.zeros(0),
        out_read=np.concatenate([g.out_read for g in groups]) if groups else np.zeros(0),
        out_flops=np.concatenate([g.out_flops for g in groups]) if groups else np.zeros(0),
        weights_total=np.concatenate([g.weights_total for g in groups]) if groups else np.zeros(0),
        n_rows=row,
        l_max=l_max,
        quality=np.array([quality_rank(q, g.architecture) for g in groups for q in g.quants], dtype=np.int64),
        models=[g.model for g in groups for _ in g.quants],
        names=[g.name for g in groups for _ in g.quants],
        quants=[q for g in groups for q in g.quants],
        sources=[g.source for g in groups for _ in g.quants],
        weights_gib=[float(v / MIB / 1024) for g in groups for v in g.weights_total],
    )
    with _lock:
        if len(_batches) > 32:
            _batches.clear()
        _batches[key] = batch
    return batch


# ------------------------------------------------------------------------------------------------
# the evaluation
# ------------------------------------------------------------------------------------------------


class _Evaluator:
    """One (rig, settings): the layer rule, the per-GPU constants and the per-model memo keys."""

    def __init__(self, rig: Rig, settings: Settings) -> None:
        self.rig = rig
        self.s = settings
        n = rig.n_gpus
        self.n = n
        if n == 0:
            self.model_gpus: list[int] = []
        elif settings.split_mode == "none":
            self.model_gpus = [settings.main_gpu]
        else:
            self.model_gpus = list(range(n))
        self.raw = tuple(_raw_split(rig, settings, self.model_gpus)) if self.model_gpus else ()
        self.capacity = np.array([gpu.vram_usable_mib for gpu in rig.gpus], dtype=np.float64)
        self.overhead = np.zeros(n, dtype=np.float64)
        for gi in self.model_gpus:
            self.overhead[gi] = _gpu_overhead_mib(rig.gpus[gi], settings)
        self.is_model = np.zeros(n, dtype=bool)
        self.is_model[self.model_gpus] = True
        self.avail = rig.host.ram_available_mib
        self.sid = _settings_id(
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
        self.offload = (
            settings.op_offload and min(settings.n_ubatch, settings.n_batch) >= OP_OFFLOAD_MIN_BATCH and n > 0
        )
        self.multi = settings.split_mode == "layer" and len(self.model_gpus) > 1 and settings.offload_kqv
        self.bandwidth = np.array([perf.gpu_bandwidth_gbps(gpu) for gpu in rig.gpus], dtype=np.float64)
        self._links: dict[tuple[int, bool, int], float] = {}

    # --- layouts ---------------------------------------------------------------------------------------
    def place_one(self, g: _Group, k: int) -> tuple[IntArray, IntArray, BoolArray, int]:
        """(first slot, end of repeating layers, holds output) per rig GPU, and host layers, for k."""
        n = self.n
        L = g.n_layer
        lo = np.zeros(n, dtype=np.int64)
        hi = np.zeros(n, dtype=np.int64)
        if self.model_gpus:
            a_lo, a_count = _assign_one(L, self.raw, k)
            lo[self.model_gpus] = a_lo
            hi[self.model_gpus] = a_lo + a_count
        out = hi > L
        hi = np.minimum(hi, L)
        lo = np.minimum(lo, hi)
        h = min(max(g.n_slots - k, 0), L) if self.model_gpus else L
        return lo, hi, out, h

    def place_all(self, g: _Group) -> tuple[IntArray, IntArray, BoolArray, IntArray]:
        """The same for every k = 0..n_slots: (K, G) arrays and host layers (K,)."""
        n = self.n
        L = g.n_layer
        ks = np.arange(g.n_slots + 1)
        lo = np.zeros((ks.size, n), dtype=np.int64)
        hi = np.zeros((ks.size, n), dtype=np.int64)
        if self.model_gpus:
            a = _assignments(L, self.raw)
            lo[:, self.model_gpus] = a.lo
            hi[:, self.model_gpus] = a.lo + a.count
        out = hi > L
        hi = np.minimum(hi, L)
        lo = np.minimum(lo, hi)
        h = np.minimum(np.maximum(g.n_slots - ks, 0), L).astype(np.int64)
        return lo, hi, out, h

    # --- KV rows -------------------------------------------------------------------------------------------
    def kv(self, g: _Group) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Cumulative K+V bytes per cell over the layers (full cache, SWA cache) and the prefix maxima
        of the per-layer rows (what op_offload copies for a host layer's attention)."""
        key = (self.s.type_k, self.s.type_v, self.s.flash_attn)
        hit = g.kv_memo.get(key)
        if hit is None:
            rows = _kv_rows(g.prof, self.s)
            swa = g.prof.is_swa
            base = np.concatenate(([0.0], np.cumsum(np.where(swa, 0.0, rows))))
            swa_c = np.concatenate(([0.0], np.cumsum(np.where(swa, rows, 0.0))))
            hit = (base, swa_c, _prefix_max(rows))
            g.kv_memo[key] = hit
        return hit

    # --- compute buffers ----------------------------------------------------------------------------------
    def gpu_compute(
        self,
        g: _Group,
        cells: _Cells,
        ctx_key: object,
        lo: IntArray,
        hi: IntArray,
        out: BoolArray,
        h: IntArray,
        ks: IntArray,
        col: int | None = None,
    ) -> tuple[FloatArray, FloatArray, FloatArray, BoolArray, BoolArray]:
        """GPU compute bytes for placements given as (K', G) arrays: ``(rest, P, X, offw, offout)``,
        the first three (K', G, C), or (K', G, 1) for context ``col`` only. A GPU's buffer is
        max(rest, off_w + P where offw, out_mm + X where offout) with off_w / out_mm the quant's copied
        weights (see _BIG)."""
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
            return rest, p_const, x_const, offw, offout
        if len(g.memo) > _MEMO_SIZE:
            g.memo.clear()
        has_layers = hi > lo
        copies = np.zeros((nk, n), dtype=np.int64)
        if self.multi:
            copies[:, :] = (ks == g.n_slots)[:, None]
        first = self.model_gpus[0]
        if self.offload:
            offw[:, first] = h > 0
            offout[:, first] = ks == 0
        offkv = np.zeros((nk, n), dtype=np.int64)
        if s.flash_attn and self.offload:
            offkv[:, first] = np.where(h > 0, self.kv(g)[2][h], 0.0).astype(np.int64)
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
                c = self._code(g, *args)
                key = (self.sid, ctx_key, c)
                got = g.memo.get(key)
                if got is None:
                    got = g.memo[key] = self._role_bytes(g, cells, *args)
                rest[0, gi] = got[0, pick]
                p_const[0, gi] = got[1, pick]
                x_const[0, gi] = got[2, pick]
            return rest, p_const, x_const, offw, offout
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
                got = g.memo[key] = self._role_bytes(
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
        return picked[:, :, 0], picked[:, :, 1], picked[:, :, 2], offw, offout

    def _code(
        self, g: _Group, lo: int, hi: int, out: bool, copies: int, offw: bool, offout: bool, offkv: int
    ) -> int:
        has_layers = hi > lo
        code = int(has_layers)
        for i, (table, size) in enumerate(zip(g.stat_tables, g.stat_sizes, strict=True)):
            if size > 1:
                on = has_layers if i == 0 else has_layers and self.s.offload_kqv
                code = code * size + (int(table[lo, hi]) if on else 0)
        code = (((code * 2 + out) * 2 + copies) * 2 + offw) * 2 + offout
        return code * (1 << 26) + offkv

    def _role_bytes(
        self,
        g: _Group,
        cells: _Cells,
        lo: int,
        hi: int,
        out: bool,
        copies: int,
        offw: bool,
        offout: bool,
        offkv: int,
    ) -> FloatArray:
        """The GPU role exactly as placement._layout builds it, through compute_bytes_cells."""
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
        self, g: _Group, cells: _Cells, ctx_key: object, h: IntArray, ks: IntArray, col: int | None = None
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
    def extras(
        self, g: _Group, ctx: int, lo: IntArray, hi: IntArray, out: BoolArray, h: IntArray, ks: IntArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, BoolArray, BoolArray, FloatArray, FloatArray]:
        """For placements (K', G): GPU KV bytes, compute rest / P / X and their flags (K', G), host KV
        and host compute bytes (K',), all at ``ctx``."""
        s = self.s
        cells, ctx_key, col = self.cells_at(g, ctx)
        base_cum, swa_cum, _ = self.kv(g)
        base_total = float(cells.base[col]) * cells.n_stream
        swa_total = float(cells.swa[col]) * cells.n_stream
        if s.offload_kqv and self.model_gpus:
            kvb = (base_cum[hi] - base_cum[lo]) * base_total + (swa_cum[hi] - swa_cum[lo]) * swa_total
            host_kv = base_cum[h] * base_total + swa_cum[h] * swa_total
        else:
            kvb = np.zeros(hi.shape)
            host_kv = np.full(h.shape, base_cum[-1] * base_total + swa_cum[-1] * swa_total)
        rest, pc, xc, offw, offout = self.gpu_compute(g, cells, ctx_key, lo, hi, out, h, ks, col)
        host_c = self.host_compute(g, cells, ctx_key, h, ks, col)[:, 0]
        return kvb, rest[..., 0], pc[..., 0], xc[..., 0], offw, offout, host_kv, host_c

    def candidate_cells(self, g: _Group) -> tuple[_Cells, tuple[str, int]]:
        """The cells of every candidate context of a model (multiples of 256 up to its trained context)."""
        cands = _candidates(g)
        cells = g.cells_memo.get(self.sid)
        if cells is None:
            cells = g.cells_memo[self.sid] = _cells(self.s, g.prof.n_swa, cands)
        return cells, ("cand", int(cands[-1]))

    def cells_at(self, g: _Group, ctx: int) -> tuple[_Cells, object, int]:
        """Cells for ``ctx``, memo key and column: the candidate column when ``ctx`` sizes every buffer
        like its padded candidate does (so compute buffers are shared with the max-context search),
        else a one-context set of its own."""
        s = self.s
        padded = (ctx + KV_CTX_PAD - 1) // KV_CTX_PAD * KV_CTX_PAD
        top = g.n_ctx_train or 131072
        # n_batch is capped by the unpadded context: equal only from n_batch up (or when no padding).
        if top >= KV_CTX_PAD and padded <= top and (ctx >= s.n_batch or ctx == padded):
            cells, key = self.candidate_cells(g)
            return cells, key, padded // KV_CTX_PAD - 1
        one = g.one_cells.get((self.sid, ctx))
        if one is None:
            if len(g.one_cells) > 256:
                g.one_cells.clear()
            one = g.one_cells[(self.sid, ctx)] = _one_cell(s, g.prof.n_swa, ctx)
        return one, ("ctx", ctx), 0

    def link_seconds(self, mask: int, host_hop: bool, n_embd: int) -> float:
        """Activation hops per decoded token between the GPUs in ``mask`` (bit per GPU, in layer
        order) and from the host when layers stay there — as perf.estimate_speed adds them."""
        key = (mask, host_hop, n_embd)
        hit = self._links.get(key)
        if hit is None:
            order = [gi for gi in range(self.n) if mask >> gi & 1]
            act = n_embd * perf.ACTIVATION_BYTES_PER_VALUE
            hit = 0.0
            for a, b in itertools.pairwise(order):
                bw, lat = perf.link(self.rig, a, b)
                hit += perf.hop_seconds(act, bw, lat)
            if host_hop and order:
                hit += perf.hop_seconds(act, perf.pcie_gbps(self.rig.gpus[order[0]]), perf.PCIE_LATENCY_S)
            self._links[key] = hit
        return hit


def _candidates(g: _Group) -> IntArray:
    top = g.n_ctx_train or 131072
    cands = np.arange(KV_CTX_PAD, top + 1, KV_CTX_PAD, dtype=np.int64)
    return cands if cands.size else np.array([top], dtype=np.int64)


@dataclass(frozen=True, eq=False)
class _Full:
    """A model with every layer on the GPUs: placement and non-weight bytes over all candidate contexts."""

    k: int
    lo: IntArray  # (G,)
    hi: IntArray
    out: BoolArray
    h: int
    cells: _Cells
    rest: FloatArray  # (G, C) GPU compute bytes
    host_c: FloatArray  # (C,) host compute bytes
    out_buf: float
    v_gpu: FloatArray  # (G, C) KV + compute bytes per GPU
    v_host: FloatArray  # (C,) host KV + compute + output buffer bytes


class _TableRun:
    """One recompute of the table for a batch of groups."""

    def __init__(self, ev: _Evaluator, batch: _Batch, ctx: int) -> None:
        self.ev = ev
        self.b = batch
        self.ctx = ctx
        self.stacked: tuple[IntArray, IntArray, IntArray, BoolArray, IntArray] = (
            np.zeros(0, dtype=np.int64),
        ) * 5  # type: ignore[assignment]

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
        full: list[_Full | None] = []
        same_full = True
        # --- per model: the requested placement and everything but the weights ---------------------
        for gi_, g in enumerate(b.groups):
            try:
                validate_settings(ev.rig, g.specs[0], s)
                base_cum, swa_cum, _ = ev.kv(g)  # a KV type the model's rows cannot hold raises here
            except RigfitError as exc:
                g_valid[gi_] = False
                notes[gi_] = str(exc)
                full.append(None)
                continue
            k = 0 if n == 0 else (g.n_slots if s.n_gpu_layers < 0 else min(s.n_gpu_layers, g.n_slots))
            f = self._full(g)
            full.append(f)
            g_k[gi_] = k
            g_out_buf[gi_] = f.out_buf
            cells, _, col = ev.cells_at(g, ctx)
            if k == f.k and cells is f.cells:
                # All layers on the GPUs at a candidate context: read the column.
                g_lo[gi_], g_hi[gi_], g_out[gi_], g_h[gi_] = f.lo, f.hi, f.out, f.h
                bt = float(cells.base[col]) * cells.n_stream
                st = float(cells.swa[col]) * cells.n_stream
                if s.offload_kqv and ev.model_gpus:
                    g_kvb[gi_] = (base_cum[f.hi] - base_cum[f.lo]) * bt + (swa_cum[f.hi] - swa_cum[f.lo]) * st
                    g_host_kv[gi_] = base_cum[f.h] * bt + swa_cum[f.h] * st
                else:
                    g_host_kv[gi_] = base_cum[-1] * bt + swa_cum[-1] * st
                g_rest[gi_] = f.rest[:, col]
                g_host_c[gi_] = f.host_c[col]
                continue
            same_full = same_full and k == f.k
            glo, ghi, gout, gh = ev.place_one(g, k) if k != f.k else (f.lo, f.hi, f.out, f.h)
            ex = ev.extras(g, ctx, glo[None], ghi[None], gout[None], np.array([gh]), np.array([k]))
            g_lo[gi_], g_hi[gi_], g_out[gi_], g_h[gi_] = glo, ghi, gout, gh
            g_kvb[gi_], g_rest[gi_], g_pc[gi_], g_xc[gi_] = ex[0][0], ex[1][0], ex[2][0], ex[3][0]
            g_offw[gi_], g_offout[gi_] = ex[4][0], ex[5][0]
            g_host_kv[gi_], g_host_c[gi_] = ex[6][0], ex[7][0]
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
            low = np.any(
                (ev.capacity[None, :] > 0) & (free < TIGHT_FREE_FRACTION * ev.capacity[None, :]), axis=1
            )
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
                    f_lo[a:e], f_hi[a:e], f_out[a:e] = fg.lo, fg.hi, fg.out
            w_full = self.weights(rows, f_lo, f_hi, f_out)
        max_ctx = self._max_ctx(full, w_full)
        # --- decode speed at the placement that runs ------------------------------------------------
        runs = np.isin(status, (STATUS_FITS, STATUS_TIGHT, STATUS_OFFLOAD))
        use_lo, use_hi, use_out, use_h = lo, hi, out, h
        moved = np.flatnonzero(fit_k >= 0)
        if moved.size:
            use_lo, use_hi, use_out, use_h = lo.copy(), hi.copy(), out.copy(), h.copy()
            offset, s_lo, s_hi, s_out, s_h = self.stacked
            i = offset[b.row_group[moved]] + fit_k[moved]
            use_lo[moved], use_hi[moved], use_out[moved], use_h[moved] = s_lo[i], s_hi[i], s_out[i], s_h[i]
        speed = self._decode(runs, use_lo, use_hi, use_out, use_h)
        best = _best_rows(b, status)
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
                best=r in best,
                source=b.sources[r],
                note=note_l[r],
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
        parts: list[tuple[Any, ...]] = []
        offset = np.zeros(len(b.groups), dtype=np.int64)
        total = 0
        for gi_ in np.unique(groups_of).tolist():
            g = b.groups[gi_]
            kq = int(k_req[b.start[gi_]])
            plo, phi, pout, ph = ev.place_all(g)
            ks = np.arange(kq)
            # Everything but the weights for every k, kept per model for this placement of all k.
            ekey = (
                ev.sid,
                tuple(ev.model_gpus),
                ctx,
                kq,
                ev.multi,
                ev.offload,
                plo.tobytes(),
                phi.tobytes(),
                pout.tobytes(),
            )
            ex = g.extras_memo.get(ekey)
            if ex is None:
                ex = ev.extras(g, ctx, plo[:kq], phi[:kq], pout[:kq], ph[:kq], ks)
                if len(g.extras_memo) > 32:
                    g.extras_memo.clear()
                g.extras_memo[ekey] = ex
            parts.append((plo[:kq], phi[:kq], pout[:kq], ph[:kq], ks, *ex))
            offset[gi_] = total
            total += kq
        lo = np.concatenate([p_[0] for p_ in parts])
        hi = np.concatenate([p_[1] for p_ in parts])
        out = np.concatenate([p_[2] for p_ in parts])
        hh = np.concatenate([p_[3] for p_ in parts])
        kk = np.concatenate([p_[4] for p_ in parts])
        kvb, rest, pc, xc = (np.concatenate([p_[i] for p_ in parts]) for i in (5, 6, 7, 8))
        offw, offout = (np.concatenate([p_[i] for p_ in parts]) for i in (9, 10))
        hkv, hc = (np.concatenate([p_[i] for p_ in parts]) for i in (11, 12))
        obuf = np.array([float(output_buffer_bytes(g.prof, ev.s)) for g in b.groups])[groups_of]
        base = offset[groups_of]

        kr = k_req[over]

        def gpu_ok(k: IntArray) -> BoolArray:
            """Whether every GPU fits with k slots offloaded, one k per overflowing row."""
            i = base + k
            w = self.weights(over, lo[i], hi[i], out[i])
            comp = self._comp(over, rest[i], pc[i], xc[i], offw[i], offout[i], hh[i])
            total_mib = (w + kvb[i] + comp) / MIB + ev.overhead[None, :]
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
        host_total = (self._host_w(over, hh[i], kk[i]) + hkv[i] + hc[i] + obuf) / MIB
        host_ok = np.ones(over.size, dtype=bool) if ev.avail is None else host_total <= ev.avail
        fit_k = fit_k.copy()
        fit_k[over[has & host_ok]] = found[has & host_ok]
        self.stacked = (offset, lo, hi, out, hh)
        return fit_k

    def _full(self, g: _Group) -> _Full:
        """Every layer on the GPUs (or, without GPUs, on the CPU) over all candidate contexts: the
        placement and the bytes besides the weights. Kept per model, settings and split, so moving
        the context (or the VRAM of a card) reuses it."""
        ev = self.ev
        k_full = g.n_slots if ev.model_gpus else 0
        glo, ghi, gout, gh = ev.place_one(g, k_full)
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
        base_cum, swa_cum, _ = ev.kv(g)
        base_total = cells.base * cells.n_stream
        swa_total = cells.swa * cells.n_stream
        v_gpu = np.zeros((ev.n, n_c))
        # Every layer on the GPUs: no op_offload phases; pipeline copies when several GPUs share it.
        copies = int(ev.multi)
        for gi in ev.model_gpus:
            lo_i, hi_i, out_i = int(glo[gi]), int(ghi[gi]), bool(gout[gi])
            code = ev._code(g, lo_i, hi_i, out_i, copies, False, False, 0)
            key = (ev.sid, ckey, code)
            got = g.memo.get(key)
            if got is None:
                got = g.memo[key] = ev._role_bytes(g, cells, lo_i, hi_i, out_i, copies, False, False, 0)
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
        full = _Full(
            k_full, glo, ghi, gout, gh, cells, rest, host_c, out_buf, v_gpu, host_kv + host_c + out_buf
        )
        if len(g.full_memo) > 64:
            g.full_memo.clear()
        g.full_memo[full_key] = full
        return full

    def _max_ctx(self, full: Sequence[_Full | None], w_full: FloatArray) -> list[int | None]:
        """Per row, largest_fitting_ctx with every layer on the GPUs, limited to the trained context.

        Memory only grows with the context, so the fitting candidates are a prefix. Every model's
        per-GPU bytes over its candidates are laid end to end, each model's run shifted far above the
        previous one, so one searchsorted per GPU finds every row's prefix end at once.
        """
        ev, b = self.ev, self.b
        R = b.n_rows
        ok_groups = [i for i, f in enumerate(full) if f is not None]
        result: list[int | None] = [None] * R
        if not ok_groups:
            return result
        sizes = np.array([full[i].cells.ctx.size for i in ok_groups], dtype=np.int64)  # type: ignore[union-attr]
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
            flat = np.concatenate([full[i].v_gpu[gi] for i in ok_groups]) + np.repeat(shift, sizes)  # type: ignore[union-attr]
            budget = (ev.capacity[gi] - ev.overhead[gi]) * MIB - w_full[row_sel, gi]
            budget = np.minimum(np.maximum(budget, -1.0), gap / 2) + shift[row_pos]
            end = np.minimum(end, np.searchsorted(flat, budget, side="right") - starts[row_pos])
        if ev.avail is not None:
            flat = np.concatenate([full[i].v_host for i in ok_groups]) + np.repeat(shift, sizes)  # type: ignore[union-attr]
            h = np.array([full[i].h for i in ok_groups])[row_pos]  # type: ignore[union-attr]
            k = np.array([full[i].k for i in ok_groups])[row_pos]  # type: ignore[union-attr]
            budget = ev.avail * MIB - self._host_w(row_sel, h, k)
            budget = np.minimum(np.maximum(budget, -1.0), gap / 2) + shift[row_pos]
            end = np.minimum(end, np.searchsorted(flat, budget, side="right") - starts[row_pos])
        ctx_all = np.concatenate([full[i].cells.ctx for i in ok_groups])  # type: ignore[union-attr]
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
            # hops: which GPUs hold layers (a bit each), and whether the host holds some
            weights_bits = (1 << np.arange(n, dtype=np.int64))[None, :]
            masks = ((layers > 0) * weights_bits).sum(axis=1)
            link = np.zeros(R)
            keys = masks * 2 + (h > 0)
            for key in np.unique(keys[runs]).tolist() if runs.any() else []:
                sel = runs & (keys == key)
                for e in np.unique(n_embd[rg[sel]]).tolist():
                    sel2 = sel & (n_embd[rg] == e)
                    link[sel2] = ev.link_seconds(key >> 1, bool(key & 1), int(e))
            seconds = seconds + link + perf.GPU_DECODE_TOKEN_S
        return np.asarray(np.where(runs, 1.0 / seconds, np.nan), dtype=np.float64)


# ------------------------------------------------------------------------------------------------
# the table
# ------------------------------------------------------------------------------------------------


def _slow_rows(rig: Rig, g: _Group, settings: Settings, ctx: int) -> list[FitRow]:
    """Row and tensor split: plan() per cell (correct, about a hundred times slower)."""
    out = []
    for i, (quant, spec) in enumerate(zip(g.quants, g.specs, strict=True)):
        weights_gib = float(g.weights_total[i] / MIB / 1024)
        try:
            p = plan(rig, spec, settings)
        except RigfitError as exc:
            out.append(
                FitRow(
                    g.model,
                    g.name,
                    quant,
                    0.0,
                    STATUS_NO,
                    None,
                    None,
                    weights_gib,
                    None,
                    False,
                    g.source,
                    str(exc),
                )
            )
            continue
        est = perf.estimate_speed(rig, spec, p)
        try:
            mc = largest_fitting_ctx(
                rig, spec, replace(settings, n_gpu_layers=-1), limit=spec.n_ctx_train or None
            )
        except RigfitError:
            mc = None
        out.append(
            FitRow(
                model=g.model,
                name=g.name,
                quant=quant,
                total_gib=(p.gpu_total_mib + p.host.total_mib) / 1024.0,
                status=p.status,
                max_ctx=mc,
                decode_tok_s=est.decode_tok_s,
                weights_gib=weights_gib,
                n_gpu_layers=p.fit_n_gpu_layers,
                source=g.source,
            )
        )
    return out


def _best_rows(b: _Batch, status: npt.NDArray[np.object_]) -> set[int]:
    """Row indices of each model's best quant: highest quality that fits the GPUs, else that offloads."""
    tier = np.where(
        (status == STATUS_FITS) | (status == STATUS_TIGHT), 0, np.where(status == STATUS_OFFLOAD, 1, 2)
    )
    # One sortable number per row: tier first, then quality, then row order.
    key = (tier * 1000 + b.quality + 1) * b.n_rows + b.rows
    chosen = set()
    for gi_ in range(len(b.groups)):
        a, e = b.start[gi_], b.start[gi_ + 1] if gi_ + 1 < len(b.groups) else b.n_rows
        i = a + int(np.argmin(key[a:e]))
        if tier[i] < 2:
            chosen.add(i)
    return chosen


def _mark_best(rows: Sequence[FitRow], groups: Sequence[_Group]) -> list[FitRow]:
    """Flag each model's best quant: highest quality that fits the GPUs, else that offloads."""
    arch = {g.model: g.architecture for g in groups}
    best: dict[str, tuple[int, int, int]] = {}
    for i, r in enumerate(rows):
        if r.status in (STATUS_FITS, STATUS_TIGHT):
            tier = 0
        elif r.status == STATUS_OFFLOAD:
            tier = 1
        else:
            continue
        key = (tier, quality_rank(r.quant, arch.get(r.model)), i)
        if r.model not in best or key < best[r.model]:
            best[r.model] = key
    chosen = {v[2] for v in best.values()}
    return [replace(r, best=True) if i in chosen else r for i, r in enumerate(rows)]


def fit_table(
    rig: Rig,
    ctx: int = DEFAULT_FIT_CTX,
    settings: Settings | None = None,
    extra_specs: Sequence[ModelSpec] = (),
    models: Iterable[str] | None = None,
) -> FitTable:
    """Every catalog model (or only ``models``) at every quant, plus ``extra_specs`` (local GGUFs...).

    ``settings`` (default :class:`Settings`) gives the split, KV types, flash attention and
    ``n_gpu_layers``; its ``ctx`` is replaced by ``ctx``. Each row agrees with ``plan()`` for that
    model, quant and context. Raises :class:`RigfitError` for settings no model could use (a bad split
    mode, a tensor split of the wrong length...); settings one model cannot use (a K cache type its
    head size does not allow) make that model's rows ``no`` with a note.
    """
    if not isinstance(ctx, int) or isinstance(ctx, bool) or ctx < 1:
        raise RigfitError(f"the context must be a whole number of tokens, at least 1 (got {ctx})")
    s = replace(settings if settings is not None else Settings(), ctx=ctx)
    groups = catalog_groups(models) + [_spec_group(spec) for spec in extra_specs]
    if groups:
        # Errors about the rig and the settings, not one model, stop the whole table.
        validate_settings(rig, _neutral_spec(groups[0].specs[0]), s)
    if s.split_mode in ("layer", "none") or rig.n_gpus == 0:
        rows = _TableRun(_Evaluator(rig, s), _batch_for(groups), ctx).run()
    else:
        rows = _mark_best([row for g in groups for row in _slow_rows(rig, g, s, ctx)], groups)
    return FitTable(rig_name=rig.name or _describe(rig), ctx=ctx, settings=s, rows=tuple(rows))


def _neutral_spec(spec: ModelSpec) -> ModelSpec:
    # For rig-level validation only: an architecture every split mode accepts, head size 128, no MLA.
    return replace(spec, architecture="llama", head_dim_k=128, head_dim_v=128, kv_lora_rank=0)


def _describe(rig: Rig) -> str:
    if not rig.gpus:
        return "CPU only"
    return " + ".join(gpu.name for gpu in rig.gpus)


def plan_for_row(rig: Rig, row: FitRow, settings: Settings, spec: ModelSpec | None = None) -> Plan:
    """The full plan behind a table row (for the GUI's details pane)."""
    sp = spec if spec is not None else catalog_spec(row.model, row.quant)
    return plan(rig, sp, settings)


__all__ = [
    "DEFAULT_FIT_CTX",
    "QUALITY_ORDER",
    "FitRow",
    "FitTable",
    "catalog_groups",
    "fit_table",
    "plan_for_row",
    "quality_rank",
    "warm_up",
]
