"""``rigfit detect [--json]``: the GPUs, PCIe links, NVLink and topology of this computer.

With ``--rig EXPR`` or ``--rig-file FILE`` it shows a planned rig in the same form instead (handy to
see the lane advice for ``RTX 4090 + RTX 4090@x4``). ``RIGFIT_FAKE_NVML`` replays a scenario instead
of the real NVML (``--list-scenarios`` names the built-in ones).

The JSON keys ``status``, ``driver``, ``gpus`` (``index``, ``name``, ``vram_total_mib``,
``vram_free_mib``, ``bandwidth_gbps``, ``pcie`` {``gen``, ``width``, ``max_gen``, ``max_width``},
``nvlink`` {``links``, ``peers``}), ``topology`` and ``other_gpus`` are a contract; the rest is extra.

Exit codes: 0 when detection ran (no GPU is a valid answer), 1 with ``--require-gpu`` when no NVIDIA
GPU is usable, 2 for bad input (a broken rig file or fake scenario).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from app.commands.rpc_args import add_rpc_argument, with_rpc
from app.core.advice import Advice, rig_advice
from app.core.rig import Gpu, Rig
from app.hardware.pci import normalize_bus_id
from app.hardware.sysfs import note_for

EXIT_OK = 0
EXIT_NO_GPU = 1


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="show this computer's GPUs, PCIe links, NVLink and topology",
        description="Detect NVIDIA GPUs (NVML), other GPUs (sysfs) and the host; print a table or JSON.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--rig", metavar="EXPR", help="show a planned rig instead, e.g. '2x RTX 3090 nvlink'")
    source.add_argument("--rig-file", metavar="FILE", help="show a planned rig from a rig file instead")
    add_rpc_argument(parser)
    parser.add_argument(
        "--require-gpu", action="store_true", help="exit with code 1 when no NVIDIA GPU is usable"
    )
    parser.add_argument(
        "--list-scenarios",
        action="store_true",
        help="list the built-in fake NVML scenarios (RIGFIT_FAKE_NVML)",
    )
    parser.set_defaults(command="detect")


# ------------------------------------------------------------------------------------------ JSON
def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def _peer_gpus(rig: Rig, gpu: Gpu, position: int) -> list[int]:
    return [rig.gpus[j].index for j in range(rig.n_gpus) if j != position and rig.nvlinked(position, j)]


def gpu_json(gpu: Gpu, rig: Rig | None = None, position: int | None = None) -> dict[str, Any]:
    """One GPU as JSON (the ``gpus`` items of ``rigfit detect --json``)."""
    pcie = gpu.pcie
    nvlink = gpu.nvlink
    remote_gpu: dict[str, int] = {}
    if rig is not None:
        remote_gpu = {normalize_bus_id(o.bus_id): o.index for o in rig.gpus if o.bus_id}
    peers = [
        {
            "link": p.link,
            "remote_bus_id": p.remote_bus_id,
            "remote_kind": p.remote_kind,
            "remote_gpu": remote_gpu.get(normalize_bus_id(p.remote_bus_id)) if p.remote_bus_id else None,
        }
        for p in nvlink.peers
    ]
    cc = gpu.compute_capability
    return {
        "index": gpu.index,
        "name": gpu.name,
        "vendor": gpu.vendor,
        "uuid": gpu.uuid,
        "bus_id": gpu.bus_id,
        "vram_total_mib": _round(gpu.vram_total_mib),
        "vram_free_mib": _round(gpu.vram_free_mib),
        "vram_used_mib": _round(gpu.vram_used_mib),
        "bandwidth_gbps": _round(gpu.bandwidth_gbps, 1),
        "compute_capability": f"{cc[0]}.{cc[1]}" if cc else None,
        "architecture": gpu.architecture,
        "power_limit_w": _round(gpu.power_limit_w, 1),
        "tdp_w": _round(gpu.tdp_w, 1),
        "temperature_c": _round(gpu.temperature_c, 1),
        "fp16_tflops": _round(gpu.fp16_tflops, 1),
        "power_connectors": list(gpu.power_connectors),
        "catalog_id": gpu.catalog_id,
        "planned": gpu.planned,
        "remote": remote_json(gpu),
        "pcie": {
            "gen": pcie.gen,
            "width": pcie.width,
            "max_gen": pcie.max_gen,
            "max_width": pcie.max_width,
            "gpu_max_gen": pcie.gpu_max_gen,
            "gpu_max_width": pcie.gpu_max_width,
            "slot_limited": pcie.slot_limited,
            "bandwidth_gbps": _round(pcie.bandwidth_gbps, 2),
            "text": pcie.describe(),
        },
        "nvlink": {
            "links": nvlink.links,
            "version": nvlink.version,
            "supported": nvlink.supported,
            "bandwidth_gbps": _round(nvlink.bandwidth_gbps, 2),
            "peers": peers,
            "peer_gpus": _peer_gpus(rig, gpu, position) if rig is not None and position is not None else [],
        },
    }


def remote_json(gpu: Gpu) -> dict[str, Any] | None:
    """Where a remote (llama.cpp RPC) device lives; ``None`` for a GPU in this computer."""
    remote = gpu.remote
    if remote is None:
        return None
    return {
        "endpoint": remote.endpoint,
        "device": remote.device,
        "backend": remote.backend,
        "link": remote.link.name,
        "link_gbps": remote.link.bandwidth_gbps,
        "link_rtt_ms": remote.link.rtt_ms,
    }


def advice_json(advice: Advice) -> dict[str, Any]:
    return {"code": advice.code, "level": advice.level, "message": advice.message, "gpu": advice.gpu}


def rig_json(rig: Rig, advice: tuple[Advice, ...] | None = None) -> dict[str, Any]:
    """A rig as the JSON ``rigfit detect --json`` prints."""
    host = rig.host
    return {
        "status": rig.status,
        "status_code": rig.status_code,
        "source": rig.source,
        "name": rig.name,
        "driver": rig.driver,
        "cuda": rig.cuda,
        "nvml": rig.nvml,
        "gpus": [gpu_json(g, rig, i) for i, g in enumerate(rig.gpus)],
        "topology": [list(row) for row in rig.topology],
        "p2p": [list(row) for row in rig.p2p],
        "other_gpus": [gpu_json(g) | {"note": note_for(g)} for g in rig.other_gpus],
        "host": {
            "cpu_name": host.cpu_name,
            "cores_physical": host.cores_physical,
            "cores_logical": host.cores_logical,
            "ram_total_mib": _round(host.ram_total_mib, 1),
            "ram_available_mib": _round(host.ram_available_mib, 1),
        },
        "advice": [advice_json(a) for a in (advice if advice is not None else rig_advice(rig))],
        "notes": list(rig.notes),
    }


# ------------------------------------------------------------------------------------------ table
def _mib(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value / 1024:.1f} GiB" if value >= 1024 else f"{value:.0f} MiB"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _nvlink_text(rig: Rig, gpu: Gpu, position: int) -> str:
    nv = gpu.nvlink
    if nv.links <= 0:
        if nv.supported:
            return "no active links"
        return "none" if nv.supported is False else "?"
    peers = _peer_gpus(rig, gpu, position)
    to = f" to GPU {', '.join(map(str, peers))}" if peers else ""
    if not peers and any(p.remote_kind == "switch" for p in nv.peers):
        to = " to NVSwitch"
    version = f" v{nv.version}" if nv.version else ""
    return f"{nv.links} links{version}{to} ({nv.bandwidth_gbps:.0f} GB/s)"


def format_rig(rig: Rig, advice: tuple[Advice, ...]) -> str:
    """The human-readable report ``rigfit detect`` prints."""
    lines = [rig.status]
    if rig.gpus:
        rows = [["#", "GPU", "VRAM total", "free", "bandwidth", "PCIe", "NVLink", "power", "temp"]]
        for i, g in enumerate(rig.gpus):
            rows.append(
                [
                    str(g.index),
                    g.name,
                    _mib(g.vram_total_mib),
                    _mib(g.vram_free_mib) if g.vram_free_mib is not None else "-",
                    f"{g.bandwidth_gbps:.0f} GB/s" if g.bandwidth_gbps else "?",
                    f"RPC over {g.remote.link.describe()}" if g.remote else g.pcie.describe(),
                    "-" if g.remote else _nvlink_text(rig, g, i),
                    f"{g.power_limit_w:.0f} W" if g.power_limit_w else "?",
                    f"{g.temperature_c:.0f} °C" if g.temperature_c is not None else "-",
                ]
            )
        lines += ["", *_table(rows)]
    if rig.n_gpus > 1 and rig.topology:
        lines += ["", "Topology (as nvidia-smi topo -m; NV# = NVLink links, PHB = through the CPU):"]
        header = ["", *[f"GPU{g.index}" for g in rig.gpus]]
        rows = [header] + [[f"GPU{g.index}", *rig.topology[i]] for i, g in enumerate(rig.gpus)]
        lines += ["  " + r for r in _table(rows)]
        if rig.p2p:
            lines += [
                "",
                "P2P read (OK, CNS chipset / GNS GPU / TNS topology not supported, NS not supported, U unknown):",
            ]
            rows = [header] + [[f"GPU{g.index}", *rig.p2p[i]] for i, g in enumerate(rig.gpus)]
            lines += ["  " + r for r in _table(rows)]
    if rig.other_gpus:
        lines += ["", "Other GPUs:"]
        for g in rig.other_gpus:
            vram = _mib(g.vram_total_mib) if g.vram_total_mib else "VRAM unknown"
            lines.append(f"  {g.name}  {g.bus_id or ''}  {vram}  PCIe {g.pcie.describe()}  ({note_for(g)})")
    h = rig.host
    cores = f"{h.cores_physical} cores / {h.cores_logical} threads" if h.cores_physical else ""
    ram = f"RAM {_mib(h.ram_total_mib)} ({_mib(h.ram_available_mib)} available)" if h.ram_total_mib else ""
    host_text = ", ".join(x for x in (h.cpu_name or "CPU unknown", cores, ram) if x)
    lines += ["", f"Host: {host_text}"]
    if rig.driver or rig.cuda:
        lines.append(f"Driver {rig.driver or '?'}, CUDA {rig.cuda or '?'}, NVML {rig.nvml or '?'}")
    for note in rig.notes:
        lines.append(f"Note: {note}")
    if advice:
        lines += ["", "Advice:"]
        lines += [f"  [{a.level}] {a.message}" for a in advice]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ command
def _usable(rig: Rig) -> bool:
    return any(g.vendor == "nvidia" and g.vram_total_mib > 0 for g in rig.gpus)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "list_scenarios", False):
        from app.hardware.nvml import ENV_FAKE, builtin_scenarios, scenarios_dir

        print(f"Built-in fake NVML scenarios ({scenarios_dir()}); use {ENV_FAKE}=<name or file.json>:")
        for name in builtin_scenarios():
            print(f"  {name}")
        return EXIT_OK
    if args.rig:
        from app.hardware.catalog import parse_rig_expression

        rig = parse_rig_expression(args.rig)
    elif args.rig_file:
        from app.hardware.rigfile import load_rig

        rig = load_rig(args.rig_file)
    else:
        from app.hardware.probe import detect_rig

        rig = detect_rig()
    rig = with_rpc(rig, args)
    advice = rig_advice(rig)
    if args.json:
        json.dump(rig_json(rig, advice), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_rig(rig, advice))
    if args.require_gpu and not _usable(rig):
        return EXIT_NO_GPU
    return EXIT_OK
