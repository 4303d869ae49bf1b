"""The fit table: every model at every quantization on one rig (the public entry points)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from app.core import perf
from app.core.catalog import catalog_spec
from app.core.errors import RigfitError, one_line
from app.core.fit.evaluator import Evaluator
from app.core.fit.groups import ModelGroup, batch_for, catalog_groups, catalog_groups_read, spec_group
from app.core.fit.quality import DEFAULT_PREFERENCE, QuantOption, check_preference, pick_best
from app.core.fit.results import FitRow, FitTable, Unreadable
from app.core.fit.table_run import TableRun
from app.core.memory import MIB
from app.core.model_spec import ModelSpec
from app.core.placement import largest_fitting_ctx, plan, validate_settings
from app.core.plan import STATUS_NO, Plan
from app.core.rig import Gpu, Host, Rig
from app.core.rules import RuleError
from app.core.settings import DEFAULT_CTX, Settings

DEFAULT_FIT_CTX = DEFAULT_CTX


def warm_up(extra_specs: Sequence[ModelSpec] = (), settings: Settings | None = None) -> None:
    """Build everything the table needs once (the GUI calls it in a worker at start-up).

    Besides the specs, profiles and per-model matrices, this runs the table once on a one-GPU and a
    two-GPU rig (nominal 24 GiB cards) so the rig-independent compute-buffer curves of the common
    cases (one GPU, pipeline copies with several) are computed before the first real table.
    """
    catalog_groups()
    s = settings if settings is not None else Settings()
    card = Gpu(index=0, name="warm-up", vram_total_mib=24576.0, bandwidth_gbps=1000.0, fp16_tflops=100.0)
    host = Host(ram_available_mib=65536.0)
    for gpus in ((card,), (card, card.with_index(1))):
        fit_table(Rig(gpus=gpus, host=host), s.ctx, s, extra_specs=extra_specs)


def _slow_rows(rig: Rig, g: ModelGroup, settings: Settings, ctx: int) -> list[FitRow]:
    """Row and tensor split: plan() per cell (correct, about a hundred times slower)."""
    out = []
    for i, (quant, spec) in enumerate(zip(g.quants, g.specs, strict=True)):
        weights_gib = float(g.weights_total[i] / MIB / 1024)
        try:
            p = plan(rig, spec, settings)
        except RigfitError as exc:
            out.append(
                FitRow(
                    model=g.model,
                    name=g.name,
                    quant=quant,
                    total_gib=0.0,
                    status=STATUS_NO,
                    max_ctx=None,
                    decode_tok_s=None,
                    weights_gib=weights_gib,
                    source=g.source,
                    note=str(exc),
                    code=exc.problem.code if isinstance(exc, RuleError) else "",
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


def _mark_best(
    rows: Sequence[FitRow], groups: Sequence[ModelGroup], prefer: str, on_gpus: bool
) -> list[FitRow]:
    """Flag each model's best quant under ``prefer`` (:func:`~app.core.fit.quality.pick_best`)."""
    arch = {g.model: g.architecture for g in groups}
    by_model: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_model.setdefault(r.model, []).append(i)
    out = list(rows)
    for model, indexes in by_model.items():
        options = [
            QuantOption(rows[i].quant, rows[i].status, rows[i].decode_tok_s, arch.get(model)) for i in indexes
        ]
        pick = pick_best(options, prefer, on_gpus=on_gpus)
        if pick is not None:
            i = indexes[pick.index]
            out[i] = replace(rows[i], best=True, best_reason=pick.reason)
    return out


def fit_table(
    rig: Rig,
    ctx: int = DEFAULT_FIT_CTX,
    settings: Settings | None = None,
    extra_specs: Sequence[ModelSpec] = (),
    models: Iterable[str] | None = None,
    prefer: str = DEFAULT_PREFERENCE,
) -> FitTable:
    """Every catalog model (or only ``models``) at every quant, plus ``extra_specs`` (local GGUFs...).

    A model that cannot be planned (a corrupt local file, a broken catalog entry) is left out of the
    rows and listed in :attr:`FitTable.unreadable` with its reason; it never stops the table.

    ``settings`` (default :class:`Settings`) gives the split, KV types, flash attention and
    ``n_gpu_layers``; its ``ctx`` is replaced by ``ctx``. Each row agrees with ``plan()`` for that
    model, quant and context. Raises :class:`RigfitError` for settings no model could use (a bad split
    mode, a tensor split of the wrong length...); settings one model cannot use (a K cache type its
    head size does not allow) make that model's rows ``no`` with a note. ``prefer`` (``balanced``,
    ``quality`` or ``speed``) says which quant of each model is marked best, and why
    (:func:`~app.core.fit.quality.pick_best`).
    """
    check_preference(prefer)
    if not isinstance(ctx, int) or isinstance(ctx, bool) or ctx < 1:
        raise RigfitError(f"the context must be a whole number of tokens, at least 1 (got {ctx})")
    s = replace(settings if settings is not None else Settings(), ctx=ctx)
    catalog, failed = catalog_groups_read(models)
    groups = list(catalog)
    unreadable = list(failed)
    for spec in extra_specs:
        try:
            groups.append(spec_group(spec))
        except Exception as exc:  # whatever one file does, it is one row (see _unreadable)
            unreadable.append(_unreadable(spec.id, spec.name, spec.source, _spec_path(spec), exc))
    if groups:
        # Errors about the rig and the settings, not one model, stop the whole table.
        validate_settings(rig, _neutral_spec(groups[0].specs[0]), s)
    try:
        rows = _rows(rig, s, ctx, groups)
    except Exception:
        if len(groups) < 2:
            raise
        # Something about one model stopped the batch: each model alone, so that one is one row
        # marked unreadable and the others are computed as usual. A failure of every model is the
        # table's own (the rig, the settings) and is raised as it was.
        rows = []
        first: Exception | None = None
        for g in groups:
            try:
                rows.extend(_rows(rig, s, ctx, [g]))
            except Exception as exc:
                first = first or exc
                path = _spec_path(g.specs[0]) if g.source != "catalog" else ""
                unreadable.append(_unreadable(g.model, g.name, g.source, path, exc))
        if not rows and first is not None:
            raise first from None
    rows = _mark_best(rows, groups, prefer, on_gpus=rig.n_gpus > 0)
    return FitTable(
        rig_name=rig.name or _describe(rig),
        ctx=ctx,
        settings=s,
        rows=tuple(rows),
        prefer=prefer,
        unreadable=tuple(unreadable),
    )


def _rows(rig: Rig, s: Settings, ctx: int, groups: Sequence[ModelGroup]) -> list[FitRow]:
    if s.split_mode in ("layer", "none") or rig.n_gpus == 0:
        return list(TableRun(Evaluator(rig, s), batch_for(groups), ctx).run())
    return [row for g in groups for row in _slow_rows(rig, g, s, ctx)]


def _spec_path(spec: ModelSpec) -> str:
    return str(spec.paths[0]) if spec.paths else ""


def _unreadable(model: str, name: str, source: str, path: str, exc: BaseException) -> Unreadable:
    # A RigfitError is already in the user's words (a corrupt file, a count beyond any real model).
    # Anything else is a fault of Rigfit's with this model; it is still one row, never the whole table,
    # and says what broke so it can be reported.
    if isinstance(exc, RigfitError):
        message = one_line(exc)
    else:
        message = one_line(f"Rigfit could not plan this model ({type(exc).__name__}: {exc})")
    return Unreadable(model=model, name=name, source=source, message=message, path=path)


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
