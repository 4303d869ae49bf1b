"""``rigfit fit``: every catalog model at every quantization on a rig, with the best quant per model.

    rigfit fit [--rig EXPR | --rig-file FILE] [--ctx 8192] [--model FILE.gguf ...] [--models ID,ID]
               [--kv-type f16|q8_0|q4_0] [--flash-attn on|off] [--prefer balanced|quality|speed]
               [--all] [--json]

The JSON keys ``rig``, ``ctx`` and ``rows`` (``model``, ``quant``, ``total_gib``, ``status``,
``max_ctx``, ``tok_s``) are a contract; the rest (``best``, ``best_reason``, ``name``, ``n_gpu_layers``,
``prefer``...) is extra. The text table shows one line per model (its best quant) unless ``--all``.
``--prefer`` says what "best" means (:func:`app.core.fit.pick_best`; default ``balanced``).

Without ``--rig`` the detected rig is used; with no GPU the table is for the CPU alone, said first.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from app.commands.args import int_in
from app.commands.plan import add_rig_arguments, resolve_rig, rig_label
from app.core import limits
from app.core.errors import RigfitError
from app.core.fit import DEFAULT_FIT_CTX, DEFAULT_PREFERENCE, PREFERENCES, FitRow, FitTable, fit_table
from app.core.model_source import load_model_spec
from app.core.settings import KV_TYPES, Settings

EXIT_OK = 0
_STATUS_MARK = {"fits": "fits", "tight": "tight", "offload": "offload", "no": "no"}


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "fit",
        help="which models fit a rig at each quantization",
        description="Every catalog model at every quantization on a rig: memory, status, largest context "
        "and predicted speed; the best quantization per model.",
    )
    add_rig_arguments(p)
    p.add_argument(
        "--ctx",
        type=int_in(limits.CTX_RANGE),
        default=DEFAULT_FIT_CTX,
        metavar="N",
        help=f"context in tokens (default {DEFAULT_FIT_CTX})",
    )
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="FILE.gguf",
        help="add a local GGUF (or config.json) as rows; repeat for more",
    )
    p.add_argument("--models", metavar="ID,ID", help="only these catalog models")
    p.add_argument("--kv-type", choices=KV_TYPES, default=Settings().type_k, help="K and V cache type")
    p.add_argument("--flash-attn", choices=("on", "off"), default="on")
    p.add_argument(
        "--prefer",
        choices=PREFERENCES,
        default=DEFAULT_PREFERENCE,
        help="which quant is each model's best: balanced (default: the fastest of those as good as the "
        "best that fits, Q8_0 rather than F16), quality (the highest that fits) or speed (the fastest "
        "at 4-bit quality or better)",
    )
    p.add_argument("--all", action="store_true", help="show every quantization, not only each model's best")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(command="fit")


def row_json(r: FitRow) -> dict[str, Any]:
    """One row as ``rigfit fit --json`` prints it."""
    return {
        "model": r.model,
        "quant": r.quant,
        "total_gib": round(r.total_gib, 2),
        "status": r.status,
        "max_ctx": r.max_ctx,
        "tok_s": None if r.decode_tok_s is None else round(r.decode_tok_s, 1),
        "name": r.name,
        "best": r.best,
        "best_reason": r.best_reason or None,
        "weights_gib": round(r.weights_gib, 2),
        "n_gpu_layers": r.n_gpu_layers,
        "source": r.source,
        "note": r.note or None,
        "code": r.code or None,
    }


def table_json(table: FitTable, rig_name: str, note: str | None) -> dict[str, Any]:
    """The whole table as ``rigfit fit --json`` prints it."""
    return {
        "rig": rig_name,
        "ctx": table.ctx,
        "rows": [row_json(r) for r in table.rows],
        "best": table.best(),
        "prefer": table.prefer,
        "settings": {
            "split_mode": table.settings.split_mode,
            "flash_attn": table.settings.flash_attn,
            "type_k": table.settings.type_k,
            "type_v": table.settings.type_v,
            "n_gpu_layers": table.settings.n_gpu_layers,
        },
        "notes": [note] if note else [],
        # Models that could not be planned at all (a broken catalog entry): one entry each.
        "unreadable": [
            {
                "model": u.model,
                "name": u.name,
                "source": u.source,
                "path": u.path or None,
                "message": u.message,
            }
            for u in table.unreadable
        ],
    }


_PREFER_TEXT = {
    "balanced": "the fastest quant as good as the best that fits; --prefer quality or speed",
    "quality": "the highest quality that fits",
    "speed": "the fastest that fits at 4-bit quality or better",
}


def _ctx_text(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def format_table(table: FitTable, rig_name: str, note: str | None, show_all: bool) -> str:
    """The text report: one line per model (its best quant), or every quant with ``show_all``."""
    lines = []
    if note:
        lines.append(f"Note: {note}")
    lines.append(f"Fit on {rig_name} at context {table.ctx} (best = {_PREFER_TEXT[table.prefer]}):")
    lines.append("")
    rows = [["model", "quant", "GiB", "status", "max ctx", "tok/s", "quants that fit"]]
    models: dict[str, list[FitRow]] = {}
    for r in table.rows:
        models.setdefault(r.model, []).append(r)
    for model, group in models.items():
        fitting = sum(1 for r in group if r.status in ("fits", "tight"))
        picks = group if show_all else [next((r for r in group if r.best), group[-1])]
        for r in picks:
            label = r.quant + (" *" if r.best and show_all else "")
            rows.append(
                [
                    model if (not show_all or r is group[0]) else "",
                    label,
                    f"{r.total_gib:.1f}",
                    _STATUS_MARK.get(r.status, r.status),
                    _ctx_text(r.max_ctx),
                    "-" if r.decode_tok_s is None else f"{r.decode_tok_s:.0f}",
                    f"{fitting}/{len(group)}" if (not show_all or r is group[0]) else "",
                ]
            )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines += [f"{u.model}  unreadable: {u.message}" for u in table.unreadable]
    if not show_all:
        lines += ["", "(--all lists every quantization; tok/s: predicted decode averaged over the context)"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if not isinstance(args.ctx, int) or args.ctx < 1:
        raise RigfitError(f"the context must be at least 1 token (got {args.ctx})")
    rig, note = resolve_rig(args)
    extra = [load_model_spec(ref) for ref in args.model]
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    if args.models is not None and not models:
        raise RigfitError("--models needs at least one catalog id, e.g. --models llama-3.1-8b,qwen3-8b")
    settings = Settings(flash_attn=args.flash_attn == "on", type_k=args.kv_type, type_v=args.kv_type)
    table = fit_table(rig, args.ctx, settings, extra_specs=extra, models=models, prefer=args.prefer)
    named = {spec.id for spec in extra}
    for u in table.unreadable:
        if u.model in named:
            # A file the user named on the command line is theirs to fix: one line, exit 2.
            raise RigfitError(u.message)
    name = rig_label(rig)
    if args.json:
        json.dump(table_json(table, name, note), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_table(table, name, note, args.all))
    return EXIT_OK
