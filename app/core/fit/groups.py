"""Per-model warm-up for the fit table: each model's quants as matrices, and all models stacked.

A :class:`ModelGroup` holds one model's quants as (quant x layer) cumulative sums built once from the
cached :func:`~app.core.memory.profile` of each spec, and keeps the memos the evaluation fills; a
:class:`RowBatch` stacks every group's rows so one recompute of the table is a handful of gathers.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from app.core import perf
from app.core.catalog import catalog_path, catalog_spec, load_model_catalog
from app.core.errors import RigfitError, one_line
from app.core.fit.quality import quality_rank
from app.core.fit.results import Unreadable
from app.core.memory import MIB, ModelProfile, profile
from app.core.model_spec import ModelSpec
from app.core.settings import Settings

if TYPE_CHECKING:  # the memos hold values of the modules that import this one
    from app.core.fit.evaluator import Cells, Extras, KvCum
    from app.core.fit.table_run import FullOffload

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def _range_max_ids(values: IntArray) -> tuple[npt.NDArray[np.integer[Any]], int]:
    """Ids of max(values[lo:hi]) for every 0 <= lo < hi <= n, as an (n+1, n+1) table, and the number
    of distinct ids.

    A constant array gives one id and a table that takes no memory (a broadcast view). The table is
    (n+1)**2 entries, so its ids take the smallest integer type that holds them: at the largest layer
    count a model may have (limits.MAX_LAYERS) that is 1 MiB per statistic instead of 4.
    """
    n = values.size
    distinct = np.unique(values)
    if distinct.size <= 1:
        return np.broadcast_to(np.zeros((1, 1), dtype=np.uint8), (n + 1, n + 1)), 1
    dtype = np.uint8 if distinct.size <= 256 else np.uint16 if distinct.size <= 65536 else np.int32
    table = np.zeros((n + 1, n + 1), dtype=dtype)
    for lo in range(n):
        run = np.maximum.accumulate(values[lo:])
        table[lo, lo + 1 :] = np.searchsorted(distinct, run)
    return table, int(distinct.size)


def prefix_max(values: FloatArray | IntArray) -> FloatArray:
    """out[h] = max(values[:h]) (0 for h = 0), n + 1 entries."""
    out = np.zeros(values.size + 1, dtype=np.float64)
    if values.size:
        out[1:] = np.maximum.accumulate(values.astype(np.float64))
    return out


@dataclass(eq=False)
class ModelGroup:
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
    kv_memo: dict[tuple[object, ...], KvCum] = field(default_factory=dict)
    cells_memo: dict[int, Cells] = field(default_factory=dict)
    one_cells: dict[tuple[int, int], Cells] = field(default_factory=dict)
    read_memo: dict[tuple[int, int], tuple[FloatArray, FloatArray]] = field(default_factory=dict)
    full_memo: dict[tuple[object, ...], FullOffload] = field(default_factory=dict)
    extras_memo: dict[tuple[object, ...], Extras] = field(default_factory=dict)
    prof_out0: ModelProfile | None = None
    prof_out_big: ModelProfile | None = None

    @property
    def prof(self) -> ModelProfile:
        return self.profs[0]

    @property
    def n_slots(self) -> int:
        return self.n_layer + 1


_STATS = ("n_ff_eff", "n_head", "n_head_kv", "kv_k_width", "kv_v_width")

_LOCK = threading.Lock()
_groups: dict[tuple[int, ...], ModelGroup] = {}
_MAX_GROUPS = 256
# The cached groups' arrays together: a few hundred models of 1024 layers must not hold gigabytes.
_MAX_GROUP_BYTES = 256 << 20
_group_bytes: dict[tuple[int, ...], int] = {}


def _nbytes(group: ModelGroup) -> int:
    # Arrays the group owns; a broadcast view (a constant statistic's table) takes no memory.
    total = 0
    for value in vars(group).values():
        if isinstance(value, np.ndarray) and value.base is None:
            total += value.nbytes
        elif isinstance(value, tuple):
            total += sum(v.nbytes for v in value if isinstance(v, np.ndarray) and 0 not in v.strides)
    return total


def _build_group(
    model: str, name: str, source: str, quants: Sequence[str], specs: Sequence[ModelSpec]
) -> ModelGroup:
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
        t, n = _range_max_ids(np.asarray(getattr(p0, stat), dtype=np.int64))
        tables.append(t)
        sizes.append(n)
    return ModelGroup(
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
        prefix_max_mm=np.array([prefix_max(p.layer_max_matmul_gpu_bytes) for p in profs]),
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
) -> ModelGroup:
    key = tuple(id(s) for s in specs)
    hit = _groups.get(key)
    if hit is not None and all(a is b for a, b in zip(hit.specs, specs, strict=True)):
        return hit
    group = _build_group(model, name, source, quants, specs)
    size = _nbytes(group)
    with _LOCK:
        while _groups and (
            len(_groups) >= _MAX_GROUPS or sum(_group_bytes.values()) + size > _MAX_GROUP_BYTES
        ):
            oldest = next(iter(_groups))
            _groups.pop(oldest)
            _group_bytes.pop(oldest, None)
        _groups[key] = group
        _group_bytes[key] = size
    return group


_catalog_groups: dict[
    tuple[str, tuple[str, ...] | None], tuple[list[ModelGroup], tuple[Unreadable, ...]]
] = {}


def catalog_groups(models: Iterable[str] | None = None) -> list[ModelGroup]:
    """The catalog's models with all their quants, warmed up (specs, profiles, matrices).

    The first call builds everything (about 2 s for the whole catalog); later calls are a lookup. A
    model that cannot be planned is left out (:func:`catalog_groups_read` says which and why).
    """
    return catalog_groups_read(models)[0]


def catalog_groups_read(
    models: Iterable[str] | None = None,
) -> tuple[list[ModelGroup], tuple[Unreadable, ...]]:
    """:func:`catalog_groups` and the catalog models that could not be planned (one entry each)."""
    wanted = tuple(sorted({m.strip().lower() for m in models})) if models is not None else None
    key = (str(catalog_path()), wanted)
    hit = _catalog_groups.get(key)
    if hit is not None:
        return hit
    groups = []
    failed: list[Unreadable] = []
    for entry in load_model_catalog():
        if wanted is not None and entry.id not in wanted:
            continue
        quants = sorted(entry.quants, key=lambda q: quality_rank(q, entry.architecture))
        try:
            specs = [catalog_spec(entry.id, q) for q in quants]
            groups.append(_group_for(entry.id, entry.name, "catalog", quants, specs))
        except RigfitError as exc:
            # One entry of a catalog the user edited is one unreadable row, not the whole table.
            failed.append(Unreadable(entry.id, entry.name, "catalog", one_line(exc)))
    if wanted is not None:
        missing = sorted(set(wanted) - {g.model for g in groups} - {u.model for u in failed})
        if missing:
            catalog_spec(missing[0])  # raises UnknownName with the closest ids
    result = (groups, tuple(failed))
    with _LOCK:
        if len(_catalog_groups) > 64:
            _catalog_groups.clear()
        _catalog_groups[key] = result
    return result


def spec_group(spec: ModelSpec) -> ModelGroup:
    return _group_for(spec.id, spec.name, spec.source, (spec.file_type or "?",), (spec,))


_settings_ids: dict[Settings, int] = {}
_next_settings_id = itertools.count()


def settings_id(s: Settings) -> int:
    # Hashing a Settings is slow; memo keys use an int per distinct value instead. Ids are never
    # reused, so forgetting old ones can never make a memo entry answer for other settings.
    sid = _settings_ids.get(s)
    if sid is None:
        with _LOCK:
            if len(_settings_ids) > 1024:
                _settings_ids.clear()
            sid = _settings_ids[s] = next(_next_settings_id)
    return sid


@dataclass(eq=False)
class RowBatch:
    """The rows of several groups stacked (R rows, layers padded to the longest model)."""

    groups: tuple[ModelGroup, ...]
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


_batches: dict[tuple[int, ...], RowBatch] = {}


def batch_for(groups: Sequence[ModelGroup]) -> RowBatch:
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
    batch = RowBatch(
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
        models=[g.model for g in groups for _ in g.quants],
        names=[g.name for g in groups for _ in g.quants],
        quants=[q for g in groups for q in g.quants],
        sources=[g.source for g in groups for _ in g.quants],
        weights_gib=[float(v / MIB / 1024) for g in groups for v in g.weights_total],
    )
    with _LOCK:
        if len(_batches) > 32:
            _batches.clear()
        _batches[key] = batch
    return batch
