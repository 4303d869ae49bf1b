"""``rigfit plan``: where every layer and buffer of a model goes on a rig, how fast it runs, and how to
run it.

    rigfit plan --model ID|FILE.gguf|config.json [--quant Q4_K_M] [--ctx 8192] [--rig EXPR]
                [--split 24,12|even|vram|free|max-ctx|headroom] [--split-mode layer|row|tensor|none]
                [--ngl N] [--kv-type f16|q8_0|q4_0] [--flash-attn on|off] [--json]

The JSON keys ``model``, ``quant``, ``ctx``, ``split_mode``, ``tensor_split``, ``devices`` (``name``,
``layers``, ``weights_mib``, ``kv_mib``, ``compute_mib``, ``overhead_mib``, ``total_mib``,
``capacity_mib``, ``fits``), ``host`` (``weights_mib``, ``kv_mib``, ``compute_mib``, ``total_mib``),
``fits``, ``status``, ``recommended_split_mode``, ``tok_s`` (``decode``, ``prompt``), ``advice``
(``code``, ``level``, ``message``), ``problems`` (``code``, ``severity``, ``message``, ``concerns``,
``gpu``: the plan's problems, codes from :mod:`app.core.rules`) and ``commands`` (``llama-server``,
``ollama``, ``vllm``, ``exllamav2``) are a contract; the rest is extra.

Without ``--rig`` (or ``--rig-file``) the detected rig is used. When it has no GPU the plan is for the
CPU alone, and the output says so first (a CPU plan is still an answer: llama.cpp runs there).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from app.commands.args import int_in
from app.core import limits
from app.core.commands import ExportedCommand, export_commands
from app.core.errors import RigfitError
from app.core.model_source import load_model_spec
from app.core.model_spec import ModelSpec
from app.core.perf import SpeedEstimate, estimate_speed
from app.core.placement import plan as make_plan
from app.core.plan import Plan
from app.core.plan_advice import plan_advice, recommended_split_mode
from app.core.rig import Rig
from app.core.rpc import llama_device_names, slot_split_llama_order
from app.core.settings import KV_TYPES, SPLIT_MODES, Settings
from app.core.split import OBJECTIVES, PRESETS, optimise_split, preset_split

EXIT_OK = 0
BAR_WIDTH = 24


def add_rig_arguments(p: argparse.ArgumentParser) -> None:
    """``--rig EXPR`` / ``--rig-file FILE``, shared with ``rigfit fit``."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--rig",
        metavar="EXPR",
        help="a planned rig, e.g. '2x RTX 3090 nvlink' (default: this computer's GPUs)",
    )
    group.add_argument("--rig-file", metavar="FILE", help="a rig saved as a rig file")
    from app.commands.rpc_args import add_rpc_argument

    add_rpc_argument(p)


def resolve_rig(args: argparse.Namespace) -> tuple[Rig, str | None]:
    """The rig to plan for (plus the ``--rpc`` servers' devices), and a note when it is a detected
    rig without a GPU."""
    from app.commands.rpc_args import with_rpc

    if getattr(args, "rig", None):
        from app.hardware.catalog import parse_rig_expression

        return with_rpc(parse_rig_expression(args.rig), args), None
    if getattr(args, "rig_file", None):
        from app.hardware.rigfile import load_rig

        return with_rpc(load_rig(args.rig_file), args), None
    from app.hardware.probe import detect_rig

    rig = with_rpc(detect_rig(), args)
    if not rig.gpus:
        why = rig.status or "no NVIDIA GPU detected"
        return rig, f"no GPU here ({why}): this is a CPU-only plan; use --rig EXPR to plan a GPU rig"
    return rig, None


def rig_label(rig: Rig) -> str:
    """A rig's name for output: a planned rig's name (its expression), or what was detected."""
    from app.hardware.catalog import describe_gpus

    gpus = describe_gpus(rig.gpus) if rig.gpus else "CPU only"
    if rig.source == "detected":
        return f"this computer: {gpus}"
    return rig.name or gpus


def add_parser(subparsers: Any) -> None:
    defaults = Settings()
    p = subparsers.add_parser(
        "plan",
        help="place a model on a rig: per-GPU memory, speed, advice and commands",
        description="Place a model on a rig exactly as llama.cpp will, per GPU; predict its speed; print "
        "advice and the command lines that reproduce the plan.",
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="ID|FILE.gguf|config.json|hf:REPO/FILE.gguf",
        help="catalog id, GGUF file, config.json, 'demo', or a GGUF on the Hugging Face hub "
        "(hf:OWNER/REPO/FILE.gguf, or hf:OWNER/REPO with --quant), planned from its header",
    )
    p.add_argument(
        "--quant",
        metavar="Q4_K_M",
        help="quantization for catalog and config models, or the file to take from hf:OWNER/REPO "
        "(a GGUF file has its own)",
    )
    p.add_argument(
        "--ctx",
        type=int_in(limits.CTX_RANGE),
        default=defaults.ctx,
        metavar="N",
        help=f"context in tokens (default {defaults.ctx})",
    )
    add_rig_arguments(p)
    p.add_argument(
        "--split",
        metavar="R1,R2|PRESET",
        help=f"tensor split: one ratio per GPU, a preset ({', '.join(PRESETS)}) or an optimiser "
        f"({', '.join(OBJECTIVES)}); default: by free VRAM, as llama.cpp",
    )
    p.add_argument("--split-mode", choices=SPLIT_MODES, default=defaults.split_mode)
    p.add_argument(
        "--ngl",
        type=int_in(limits.NGL_RANGE),
        default=defaults.n_gpu_layers,
        metavar="N",
        help="layers on the GPUs (-1: all)",
    )
    p.add_argument("--kv-type", choices=KV_TYPES, default=defaults.type_k, help="K and V cache type")
    p.add_argument("--flash-attn", choices=("on", "off"), default="on" if defaults.flash_attn else "off")
    p.add_argument("--main-gpu", type=int_in(limits.MAIN_GPU_RANGE), default=defaults.main_gpu, metavar="N")
    p.add_argument(
        "--ubatch",
        type=int_in(limits.UBATCH_RANGE),
        default=defaults.n_ubatch,
        metavar="N",
        help="micro-batch (n_ubatch)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(command="plan")


# ------------------------------------------------------------------------------------------------
# building the plan
# ------------------------------------------------------------------------------------------------


def _settings(args: argparse.Namespace, rig: Rig, spec: ModelSpec) -> tuple[Settings, str | None]:
    """Settings from the arguments; the split may need the rig (presets) or the model (optimisers)."""
    base = Settings(
        ctx=args.ctx,
        split_mode=args.split_mode,
        main_gpu=args.main_gpu,
        n_gpu_layers=args.ngl,
        n_batch=max(args.ubatch, Settings().n_batch),
        n_ubatch=args.ubatch,
        flash_attn=args.flash_attn == "on",
        type_k=args.kv_type,
        type_v=args.kv_type,
    )
    if isinstance(args.ctx, int) and args.ctx < 1:
        raise RigfitError(f"the context must be at least 1 token (got {args.ctx})")
    text = (args.split or "").strip()
    if not text:
        return base, None
    key = text.lower()
    if key in PRESETS:
        return _with_split(base, preset_split(rig, key)), f"split preset '{key}'"
    if key in OBJECTIVES:
        sol = optimise_split(rig, spec, base, key)
        what = (
            f"split optimised for the largest context: {sol.max_ctx} tokens fit"
            if key == "max-ctx"
            else f"split optimised for even headroom: the tightest GPU keeps {sol.min_free_fraction:.0%} free"
        )
        return _with_split(base, tuple(float(c) for c in sol.tensor_split)), what
    from app.runner.options import parse_split

    return _with_split(base, parse_split(text)), None


def _with_split(s: Settings, split: tuple[float, ...]) -> Settings:
    from dataclasses import replace

    return replace(s, tensor_split=split)


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def plan_json(
    rig: Rig,
    spec: ModelSpec,
    p: Plan,
    speed: SpeedEstimate,
    advice: tuple[Any, ...],
    commands: dict[str, ExportedCommand],
    recommended: tuple[str, str],
    notes: list[str],
) -> dict[str, Any]:
    """The plan as ``rigfit plan --json`` prints it."""
    from app.commands.detect import remote_json

    s = p.settings
    return {
        "model": spec.id,
        "name": spec.name,
        # hf:REPO/FILE planned from its header on the hub (a device's "remote" is an RPC server).
        "remote": spec.remote or None,
        "quant": p.quant or spec.file_type,
        "ctx": s.ctx,
        "split_mode": s.split_mode,
        "tensor_split": [round(r, 6) for r in p.tensor_split],
        # -ts as llama.cpp takes it: slots per device in llama.cpp's device order (RPC devices first).
        "llama_tensor_split": list(
            slot_split_llama_order(rig, [d.layers + int(d.has_output) for d in p.devices], s.split_mode)
        ),
        "rig": rig_label(rig),
        "devices": [
            {
                "index": d.index,
                "name": d.name,
                "layers": d.layers,
                "has_output": d.has_output,
                "first_layer": d.first_layer,
                "weights_mib": _r(d.weights_mib),
                "kv_mib": _r(d.kv_mib),
                "compute_mib": _r(d.compute_mib),
                "overhead_mib": _r(d.overhead_mib),
                "total_mib": _r(d.total_mib),
                "capacity_mib": _r(d.capacity_mib),
                "free_mib": _r(d.free_after_mib),
                "fits": d.fits,
                "llama_name": llama_name,
                "remote": remote_json(g),
            }
            for d, g, llama_name in zip(p.devices, rig.gpus, llama_device_names(rig), strict=True)
        ],
        "host": {
            "layers": p.host.layers,
            "weights_mib": _r(p.host.weights_mib),
            "kv_mib": _r(p.host.kv_mib),
            "compute_mib": _r(p.host.compute_mib),
            "output_mib": _r(p.host.output_mib),
            "total_mib": _r(p.host.total_mib),
            "available_mib": _r(p.host.available_mib),
            "fits": p.host.fits,
        },
        "fits": p.fits,
        "status": p.status,
        "n_gpu_layers": s.n_gpu_layers,
        "fit_n_gpu_layers": p.fit_n_gpu_layers,
        "recommended_split_mode": recommended[0],
        "recommended_split_reason": recommended[1],
        "tok_s": {
            "decode": _r(speed.decode_tok_s, 1),
            "prompt": _r(speed.prompt_tok_s, 1),
            "decode_empty": _r(speed.decode_empty_tok_s, 1),
            "depth_tokens": speed.depth_tokens,
            "prompt_tokens": speed.prompt_tokens,
        },
        "advice": [{"code": a.code, "level": a.level, "message": a.message, "gpu": a.gpu} for a in advice],
        "commands": {name: c.text for name, c in commands.items()},
        "command_argv": {
            name: {"argv": list(c.argv), "env": dict(c.env), "refused": c.refused}
            for name, c in commands.items()
        },
        "settings": {
            "flash_attn": s.flash_attn,
            "type_k": s.type_k,
            "type_v": s.type_v,
            "n_batch": s.n_batch,
            "n_ubatch": s.n_ubatch,
            "main_gpu": s.main_gpu,
            "swa_full": s.swa_full,
            "n_seq_max": s.n_seq_max,
        },
        "notes": notes + list(p.notes) + list(speed.notes),
        "problems": [
            {
                "code": q.code,
                "severity": q.severity,
                "message": q.message,
                "concerns": list(q.concerns),
                "gpu": q.gpu,
            }
            for q in p.problems
        ],
        "buffers": [{"name": b.name, "kind": b.kind, "mib": _r(b.mib), "gpu": b.gpu} for b in p.buffers],
    }


# ------------------------------------------------------------------------------------------------
# text output
# ------------------------------------------------------------------------------------------------


def _gib(mib: float) -> str:
    return f"{mib / 1024:.1f}"


def bar(used: float, capacity: float, width: int = BAR_WIDTH) -> str:
    """``[██████░░░░]`` filled to ``used / capacity``; an overflow ends in ``!``."""
    if capacity <= 0:
        return "[" + "?" * width + "]"
    share = used / capacity
    filled = min(width, max(0, round(share * width)))
    text = "█" * filled + "░" * (width - filled)
    return f"[{text}]" + ("!" if share > 1 else "")


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def format_plan(data: dict[str, Any]) -> str:
    """The human-readable report of ``rigfit plan``."""
    remote = f" (remote: {data['remote']})" if data.get("remote") else ""
    lines = [
        f"{data['name']} {data['quant']}{remote}, context {data['ctx']}, on {data['rig']}: {data['status'].upper()}",
        f"split mode {data['split_mode']}"
        + (
            f", tensor split {', '.join(f'{r:.3f}' for r in data['tensor_split'])} (-ts {','.join(map(str, data['llama_tensor_split']))})"
            if len(data["devices"]) > 1
            else ""
        )
        + f"; recommended: {data['recommended_split_mode']}",
        "",
    ]
    if data["devices"]:
        rows = [["", "device", "memory", "used / GiB", "layers", "weights", "KV", "compute", "overhead"]]
        for d in data["devices"]:
            layers = f"{d['layers']}" + ("+out" if d["has_output"] else "")
            rows.append(
                [
                    f"GPU {d['index']}",
                    d["name"]
                    + (f" ({d['llama_name']} over {d['remote']['link']})" if d.get("remote") else ""),
                    bar(d["total_mib"], d["capacity_mib"]),
                    f"{_gib(d['total_mib'])} / {_gib(d['capacity_mib'])}",
                    layers,
                    _gib(d["weights_mib"]),
                    _gib(d["kv_mib"]),
                    _gib(d["compute_mib"]),
                    _gib(d["overhead_mib"]),
                ]
            )
        lines += _table(rows)
    h = data["host"]
    avail = f" of {_gib(h['available_mib'])} GiB available" if h["available_mib"] is not None else ""
    lines.append(
        f"host RAM: {_gib(h['total_mib'])} GiB{avail} ({h['layers']} layers; weights {_gib(h['weights_mib'])}, "
        f"KV {_gib(h['kv_mib'])}, compute {_gib(h['compute_mib'])} GiB)"
    )
    t = data["tok_s"]
    if t["decode"] is not None:
        lines.append(
            f"speed (predicted): decode {t['decode']:.1f} tok/s averaged over the context "
            f"({t['decode_empty']:.1f} at its start), prompt {t['prompt']:.0f} tok/s"
        )
    else:
        lines.append("speed: does not load")
    if data["notes"]:
        lines += ["", "Notes:"] + [f"  - {n}" for n in data["notes"]]
    if data["advice"]:
        lines += ["", "Advice:"] + [f"  [{a['level']}] {a['message']}" for a in data["advice"]]
    lines += ["", "Commands:"]
    for name, text in data["commands"].items():
        lines.append(f"  {name}:")
        lines += [f"    {line}" for line in text.split("\n")]
    return "\n".join(lines)


def _load_spec(ref: str, quant: str | None) -> ModelSpec:
    from app.hub.refs import is_hub_ref

    if is_hub_ref(ref):  # huggingface_hub is imported only for a hub reference
        from app.hub.remote import hub_model_spec

        return hub_model_spec(ref, quant)
    return load_model_spec(ref, quant)


def run(args: argparse.Namespace) -> int:
    rig, rig_note = resolve_rig(args)
    spec = _load_spec(args.model, args.quant)
    settings, split_note = _settings(args, rig, spec)
    p = make_plan(rig, spec, settings)
    speed = estimate_speed(rig, spec, p)
    advice = plan_advice(rig, spec, settings, p)
    commands = export_commands(rig, spec, p)
    recommended = recommended_split_mode(rig, spec, settings)
    notes = [n for n in (rig_note, split_note) if n] + list(spec.notes)
    data = plan_json(rig, spec, p, speed, advice, commands, recommended, notes)
    if args.json:
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_plan(data))
    return EXIT_OK
