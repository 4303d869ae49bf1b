"""Rig files: a planned (or detected) rig saved as TOML, and loaded back as a planned :class:`Rig`.

Format 1::

    format = 1
    name = "2x RTX 3090 nvlink + RTX 3060@x4"
    nvlink = [[0, 1]]            # NVLink groups by GPU position: a bridged pair, or an NVSwitch group

    [host]                       # optional; the documented planned default when absent
    cpu_name = "Ryzen 9 7950X"
    cores_physical = 16
    cores_logical = 32
    ram_total_mib = 131072.0
    ram_available_mib = 120000.0
    cpu_flags = ["avx2"]         # SIMD features that decide how llama.cpp lays out CPU weights

    [[gpu]]
    catalog = "rtx-3090"         # a catalog id (resources/gpus.toml), plus optional overrides:
    slot_width = 16              #   the slot's electrical width (x1..x16)
    slot_gen = 4                 #   the slot's PCIe generation
    vram_free_mib = 23800.0      #   memory free for models (another program holds the rest)
    name = "3090 (display)"      #   a display name

    [[gpu]]                      # a card that is not in the catalog
    name = "My custom card"
    vram_total_mib = 16384.0
    bandwidth_gbps = 500.0
    pcie_gen = 4
    pcie_width = 16

    [[gpu]]                      # a device on another machine, behind a llama.cpp RPC server
    catalog = "rtx-4090"
    rpc = "192.168.1.20:50052"   #   its server, or "planned" for a machine you don't have yet
    rpc_device = 0               #   its number on that server
    link = "1GbE"                #   the network: 1GbE, 2.5GbE, 10GbE, Wi-Fi, loopback... (or link_gbps,
                                 #   link_rtt_ms for your own figures)
    backend = "cpu"              #   only for a server that serves a CPU (then name + vram_total_mib)

Remote devices always follow the local GPUs, in the file's order.

tomllib reads it; Python has no TOML writer and Rigfit's dependencies have none, and this format is
small and flat, so :func:`save_rig` writes it by hand (strings escaped as TOML basic strings).
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from app.core import files
from app.core.errors import RigfitError
from app.core.files import show_path
from app.core.rig import VENDOR_NVIDIA, Gpu, Host, PcieLink, Rig
from app.hardware.catalog import (
    DEFAULT_PLANNED_HOST,
    SLOT_WIDTHS,
    VENDORS,
    build_planned_rig,
    load_gpu_catalog,
    nvlink_groups,
)

FORMAT_VERSION = 1
_HOST_FIELDS: dict[str, type] = {
    "cpu_name": str,
    "cores_physical": int,
    "cores_logical": int,
    "ram_total_mib": float,
    "ram_available_mib": float,
    "ram_bandwidth_gbps": float,
    "cpu_flags": tuple,
}
_GPU_KEYS = {
    "catalog",
    "name",
    "slot_width",
    "slot_gen",
    "vram_free_mib",
    "vram_total_mib",
    "overhead_mib",
    "power_limit_w",
    "vendor",
    "bandwidth_gbps",
    "pcie_gen",
    "pcie_width",
    "tdp_w",
    "fp16_tflops",
    "architecture",
    "rpc",
    "rpc_device",
    "link",
    "link_gbps",
    "link_rtt_ms",
    "backend",
}
_PLANNED_RPC = "planned"


# ------------------------------------------------------------------------------------------ writing
def _toml_str(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _gpu_table(gpu: Gpu, catalog_by_id: Mapping[str, object]) -> dict[str, object]:
    from app.hardware.catalog import CatalogEntry

    entry = catalog_by_id.get(gpu.catalog_id or "")
    table: dict[str, object] = {}
    if isinstance(entry, CatalogEntry):
        table["catalog"] = entry.id
        if gpu.name != entry.name:
            table["name"] = gpu.name
        if gpu.pcie.max_width is not None and gpu.pcie.max_width != entry.pcie_width:
            table["slot_width"] = gpu.pcie.max_width
        if gpu.pcie.max_gen is not None and gpu.pcie.max_gen != entry.pcie_gen:
            table["slot_gen"] = gpu.pcie.max_gen
        if gpu.vram_total_mib != entry.vram_total_mib:
            table["vram_total_mib"] = float(gpu.vram_total_mib)
        if gpu.power_limit_w is not None and gpu.power_limit_w != entry.tdp_w:
            table["power_limit_w"] = float(gpu.power_limit_w)
    else:
        table["name"] = gpu.name
        if not gpu.on_cpu:
            table["vendor"] = gpu.vendor
        table["vram_total_mib"] = float(gpu.vram_total_mib)
        for key, value in (
            ("bandwidth_gbps", gpu.bandwidth_gbps),
            ("tdp_w", gpu.tdp_w),
            ("power_limit_w", gpu.power_limit_w),
            ("fp16_tflops", gpu.fp16_tflops),
        ):
            if value is not None:
                table[key] = float(value)
        if gpu.architecture:
            table["architecture"] = gpu.architecture
        card_gen = gpu.pcie.gpu_max_gen or gpu.pcie.max_gen
        card_width = gpu.pcie.gpu_max_width or gpu.pcie.max_width
        if card_gen is not None:
            table["pcie_gen"] = card_gen
        if card_width is not None:
            table["pcie_width"] = card_width
        if gpu.pcie.max_width is not None and gpu.pcie.max_width != card_width:
            table["slot_width"] = gpu.pcie.max_width
        if gpu.pcie.max_gen is not None and gpu.pcie.max_gen != card_gen:
            table["slot_gen"] = gpu.pcie.max_gen
    if gpu.vram_free_mib is not None:
        table["vram_free_mib"] = float(gpu.vram_free_mib)
    if gpu.overhead_mib is not None and not gpu.on_cpu:
        table["overhead_mib"] = float(gpu.overhead_mib)
    if gpu.remote is not None:
        from app.core.rpc import NETWORK_LINKS

        remote = gpu.remote
        table["rpc"] = remote.endpoint or _PLANNED_RPC
        if remote.device:
            table["rpc_device"] = remote.device
        table["link"] = remote.link.name
        if NETWORK_LINKS.get(remote.link.name) != remote.link:
            table["link_gbps"] = float(remote.link.bandwidth_gbps)
            table["link_rtt_ms"] = float(remote.link.rtt_ms)
        if remote.backend != "gpu":
            table["backend"] = remote.backend
    return table


def rig_to_toml(rig: Rig) -> str:
    """The rig file text for a rig (see the module docstring for the format)."""
    catalog_by_id = {e.id: e for e in load_gpu_catalog()}
    groups = [
        list(g)
        for g in nvlink_groups(rig)
        if all(getattr(catalog_by_id.get(rig.gpus[i].catalog_id or ""), "nvlink", False) for i in g)
    ]
    lines = [
        "# Rigfit rig file. Open it in Rigfit (Hardware view > Load rig) or edit it by hand.",
        "# GPUs come from resources/gpus.toml by id; see app/hardware/rigfile.py for every key.",
        f"format = {FORMAT_VERSION}",
        f"name = {_toml_str(rig.name)}",
    ]
    if groups:
        lines.append(f"nvlink = {_toml_value(groups)}")
    host = rig.host
    lines += ["", "[host]"]
    for key in _HOST_FIELDS:
        value = getattr(host, key)
        if value is not None and value != ():
            lines.append(f"{key} = {_toml_value(float(value) if _HOST_FIELDS[key] is float else value)}")
    for gpu in rig.gpus:
        lines += ["", "[[gpu]]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in _gpu_table(gpu, catalog_by_id).items()]
    return "\n".join(lines) + "\n"


def save_rig(rig: Rig, path: str | Path) -> None:
    """Write a rig file atomically. Raises :class:`RigfitError` when the file cannot be written.

    The text goes to a temporary file in the same folder, is flushed to disk, then renamed over the
    target (``os.replace``): a failed save (disk full, no permission) leaves the old file as it was.
    """
    target = Path(path)
    text = rig_to_toml(rig).encode("utf-8")
    shown = show_path(target)
    if files.is_dir(target):
        raise RigfitError(f"cannot save the rig file {shown}: it is a folder")
    folder = target.parent
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:64]}.", suffix=".tmp", dir=folder)
        try:
            view = memoryview(text)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            # Keep the permissions of the file being replaced (mkstemp makes it owner-only).
            os.chmod(tmp, os.stat(target).st_mode & 0o7777)
        except OSError:
            os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise RigfitError(f"cannot save the rig file {shown}: {files.os_problem(exc)}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


# ------------------------------------------------------------------------------------------ reading
def _number(value: object, key: str, where: str, kind: type = float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RigfitError(f"{where}: '{key}' must be a number, not {value!r}")
    if kind is int and not isinstance(value, int):
        raise RigfitError(f"{where}: '{key}' must be a whole number, not {value!r}")
    if value < 0 or (isinstance(value, float) and not math.isfinite(value)):
        raise RigfitError(f"{where}: '{key}' must be a positive number, not {value!r}")
    return float(value)


def _host(table: object, where: str) -> Host:
    if not isinstance(table, dict):
        raise RigfitError(f"{where}: [host] must be a table")
    unknown = set(table) - set(_HOST_FIELDS)
    if unknown:
        raise RigfitError(f"{where}: unknown key(s) in [host]: {', '.join(sorted(unknown))}")
    values: dict[str, object] = {}
    for key, kind in _HOST_FIELDS.items():
        if key not in table:
            continue
        value = table[key]
        if kind is str:
            if not isinstance(value, str):
                raise RigfitError(f"{where}: [host] {key} must be text")
            values[key] = value
        elif kind is tuple:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise RigfitError(f'{where}: [host] {key} must be a list of words, like ["avx2"]')
            values[key] = tuple(value)
        elif kind is int:
            values[key] = int(_number(value, key, f"{where}: [host]", int))
        else:
            values[key] = _number(value, key, f"{where}: [host]")
    return Host(**values)  # type: ignore[arg-type]


def _slot(table: Mapping[str, object], where: str) -> tuple[int | None, int | None]:
    width = table.get("slot_width")
    gen = table.get("slot_gen")
    if width is not None and (isinstance(width, bool) or width not in SLOT_WIDTHS):
        raise RigfitError(f"{where}: slot_width must be 1, 2, 4, 8 or 16, not {width!r}")
    if gen is not None and (isinstance(gen, bool) or not isinstance(gen, int) or not 1 <= gen <= 6):
        raise RigfitError(f"{where}: slot_gen must be a PCIe generation from 1 to 6, not {gen!r}")
    return (int(gen) if gen is not None else None), (int(width) if width is not None else None)


def _gpu(table: object, position: int, where: str) -> Gpu:
    from app.hardware.catalog import catalog_entry

    here = f"{where}: GPU {position}"
    if not isinstance(table, dict):
        raise RigfitError(f"{here}: each [[gpu]] must be a table")
    unknown = set(table) - _GPU_KEYS
    if unknown:
        raise RigfitError(f"{here}: unknown key(s): {', '.join(sorted(unknown))}")
    slot_gen, slot_width = _slot(table, here)
    if "catalog" in table:
        if not isinstance(table["catalog"], str):
            raise RigfitError(f'{here}: catalog must be a catalog id such as "rtx-3090"')
        try:
            entry = catalog_entry(table["catalog"])
        except RigfitError as exc:
            raise RigfitError(f"{here}: {exc}") from None
        gpu = entry.to_gpu(position, slot_width, slot_gen)
        if "name" in table:
            if not isinstance(table["name"], str) or not table["name"].strip():
                raise RigfitError(f"{here}: name must be text")
            gpu = replace(gpu, name=table["name"])
        if "vram_total_mib" in table:
            gpu = replace(gpu, vram_total_mib=_number(table["vram_total_mib"], "vram_total_mib", here))
        if "power_limit_w" in table:
            gpu = replace(gpu, power_limit_w=_number(table["power_limit_w"], "power_limit_w", here))
    else:
        name = table.get("name")
        if not isinstance(name, str) or not name.strip():
            raise RigfitError(
                f'{here}: give either a catalog id (catalog = "rtx-3090") or a name and vram_total_mib'
            )
        if "vram_total_mib" not in table:
            raise RigfitError(f"{here}: '{name}' is not from the catalog, so it needs vram_total_mib")
        vendor = table.get("vendor", VENDOR_NVIDIA)
        if vendor not in VENDORS and not (vendor == "cpu" and table.get("backend") == "cpu"):
            raise RigfitError(f"{here}: vendor must be one of {', '.join(VENDORS)}")
        card_gen = table.get("pcie_gen")
        card_width = table.get("pcie_width")
        if card_gen is not None:
            card_gen = int(_number(card_gen, "pcie_gen", here, int))
        if card_width is not None:
            card_width = int(_number(card_width, "pcie_width", here, int))
        max_gen = min(x for x in (card_gen, slot_gen) if x is not None) if card_gen or slot_gen else None
        max_width = (
            min(x for x in (card_width, slot_width) if x is not None) if card_width or slot_width else None
        )
        opt: dict[str, float | None] = {}
        for key in ("bandwidth_gbps", "tdp_w", "power_limit_w", "fp16_tflops"):
            opt[key] = _number(table[key], key, here) if key in table else None
        architecture = table.get("architecture")
        if architecture is not None and not isinstance(architecture, str):
            raise RigfitError(f"{here}: architecture must be text")
        gpu = Gpu(
            index=position,
            name=name,
            vram_total_mib=_number(table["vram_total_mib"], "vram_total_mib", here),
            vendor=str(vendor),
            bandwidth_gbps=opt["bandwidth_gbps"],
            architecture=architecture,
            power_limit_w=opt["power_limit_w"],
            tdp_w=opt["tdp_w"],
            fp16_tflops=opt["fp16_tflops"],
            pcie=PcieLink(
                gen=max_gen,
                width=max_width,
                max_gen=max_gen,
                max_width=max_width,
                gpu_max_gen=card_gen,
                gpu_max_width=card_width,
            ),
            planned=True,
        )
    if "vram_free_mib" in table:
        free = _number(table["vram_free_mib"], "vram_free_mib", here)
        if free > gpu.vram_total_mib:
            raise RigfitError(
                f"{here}: vram_free_mib ({free:g}) is more than the card's {gpu.vram_total_mib:g} MiB"
            )
        gpu = replace(gpu, vram_free_mib=free)
    if "overhead_mib" in table:
        gpu = replace(gpu, overhead_mib=_number(table["overhead_mib"], "overhead_mib", here))
    return _remote(gpu, table, here)


def _remote(gpu: Gpu, table: Mapping[str, object], here: str) -> Gpu:
    """The ``rpc``/``link``/``backend`` keys: a device behind a llama.cpp RPC server."""
    from app.core.rig import NetworkLink, Remote
    from app.core.rpc import DEFAULT_LINK, NETWORK_LINKS, parse_link
    from app.hardware.rpc import parse_endpoint

    keys = ("rpc_device", "link", "link_gbps", "link_rtt_ms", "backend")
    if "rpc" not in table:
        stray = [k for k in keys if k in table]
        if stray:
            raise RigfitError(
                f'{here}: {", ".join(stray)} only apply to a remote device (add rpc = "HOST:PORT")'
            )
        return gpu
    where = table["rpc"]
    if not isinstance(where, str):
        raise RigfitError(f'{here}: rpc must be "HOST:PORT" or "{_PLANNED_RPC}"')
    endpoint = None if where == _PLANNED_RPC else str(parse_endpoint(where))
    device = table.get("rpc_device", 0)
    if isinstance(device, bool) or not isinstance(device, int) or not 0 <= device < 64:
        raise RigfitError(f"{here}: rpc_device must be a device number from 0, not {device!r}")
    link_name = table.get("link", DEFAULT_LINK)
    if not isinstance(link_name, str):
        raise RigfitError(f'{here}: link must be text such as "1GbE"')
    link = NETWORK_LINKS.get(link_name)
    if link is None and "link_gbps" not in table:
        link = parse_link(link_name)
    if "link_gbps" in table or "link_rtt_ms" in table:
        base = link or NETWORK_LINKS[DEFAULT_LINK]
        gbps = _number(table.get("link_gbps", base.bandwidth_gbps), "link_gbps", here)
        rtt = _number(table.get("link_rtt_ms", base.rtt_ms), "link_rtt_ms", here)
        if gbps <= 0:
            raise RigfitError(f"{here}: link_gbps must be above 0")
        link = NetworkLink(link_name, gbps, rtt)
    assert link is not None
    backend = table.get("backend", "gpu")
    if backend not in ("gpu", "cpu"):
        raise RigfitError(f'{here}: backend must be "gpu" or "cpu", not {backend!r}')
    gpu = replace(
        gpu,
        remote=Remote(link=link, endpoint=endpoint, device=int(device), backend=str(backend)),
        planned=endpoint is None,  # a saved server is real hardware, asked for again when it runs
    )
    if backend == "cpu":
        gpu = replace(gpu, vendor="cpu", overhead_mib=0.0)
    return gpu


def rig_from_toml(text: str, origin: str = "rig file") -> Rig:
    """Parse rig file text; errors name ``origin`` and the problem."""
    data = files.parse_toml(text, origin)
    fmt = data.get("format", FORMAT_VERSION)
    if fmt != FORMAT_VERSION:
        raise RigfitError(f"{origin}: rig file format {fmt!r} is not supported (this Rigfit reads format 1)")
    unknown = set(data) - {"format", "name", "nvlink", "host", "gpu"}
    if unknown:
        raise RigfitError(f"{origin}: unknown key(s): {', '.join(sorted(unknown))}")
    name = data.get("name", "")
    if not isinstance(name, str):
        raise RigfitError(f"{origin}: name must be text")
    tables = data.get("gpu", [])
    if not isinstance(tables, list) or not tables:
        raise RigfitError(f'{origin}: no GPUs (add [[gpu]] tables, e.g. catalog = "rtx-3090")')
    if len(tables) > 64:
        raise RigfitError(f"{origin}: {len(tables)} GPUs; a rig holds at most 64")
    gpus = [_gpu(t, i, origin) for i, t in enumerate(tables)]
    groups = data.get("nvlink", [])
    if not isinstance(groups, list) or not all(
        isinstance(g, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in g) for g in groups
    ):
        raise RigfitError(f"{origin}: nvlink must be a list of GPU position lists, e.g. nvlink = [[0, 1]]")
    host = _host(data["host"], origin) if "host" in data else DEFAULT_PLANNED_HOST
    try:
        return build_planned_rig(gpus, [tuple(g) for g in groups], host=host, name=name)
    except RigfitError as exc:
        raise RigfitError(f"{origin}: {exc}") from None


def load_rig(path: str | Path) -> Rig:
    """Read a rig file into a planned :class:`Rig`. A broken file raises :class:`RigfitError`
    naming the file and the problem."""
    source = Path(path)
    # A regular file of at most 1 MiB: a FIFO, /dev/zero or a huge file is refused, not read forever.
    text = files.read_text(source, "rig file", files.MAX_RIG_FILE_BYTES)
    return rig_from_toml(text, show_path(source))
