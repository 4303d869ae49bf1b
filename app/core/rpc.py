"""llama.cpp's rules for RPC devices, and what the network between the machines costs.

Sources (llama-cpp-python 0.3.36's vendored llama.cpp):

* Device order, ``llama_prepare_model_devices`` (src/llama.cpp): without an explicit device list,
  ``layer``, ``row`` and ``none`` put every device of the RPC registry first ("to minimize network
  transfers"), then the local GPUs; ``tensor_split`` and ``main_gpu`` count in that order. ``tensor``
  builds one Meta device from the registry's devices in registry order: local backends register at
  start-up, RPC servers when they are added, so there the local GPUs come first.
* Names: the n-th RPC device registered in a process is ``RPC<n>`` (``ggml_backend_rpc_add_server``
  numbers them across servers, in the order the servers are added); each server's devices in its
  own order. An RPC device is a GPU to llama.cpp even when the server runs it on a CPU.
* The link: a layer split sends one row of activations (``n_embd`` F32 values) across each device
  boundary per token, and the device that holds the output layer hands back ``n_vocab`` F32 logits.
  Each boundary into or out of a remote device is a request over TCP; reading a result back is a
  round trip. Weights travel once, at load, unless the server's cache (``rpc-server -c``) already
  holds them (tensors over 10 MiB are sent by hash first).

Rigfit keeps a rig's local GPUs first (so adding a remote machine never renumbers your cards) and
translates to llama.cpp's order (:func:`app.core.layout.llama_device_order`, which the planner, the fit
table and the split solver share) here, for the worker and the exported commands.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.core.errors import RigfitError
from app.core.layout import llama_device_order as llama_device_order  # re-exported
from app.core.rig import VENDOR_AMD, VENDOR_INTEL, Gpu, NetworkLink, Rig

if TYPE_CHECKING:
    from app.core.advice import Advice

# Usable TCP payload rates (GB/s per direction) and a typical round trip for the links hobbyists use.
# Ethernet payload after framing and TCP/IP headers is about 94% of the line rate.
NETWORK_LINKS: dict[str, NetworkLink] = {
    "loopback": NetworkLink("loopback", 5.0, 0.05),
    "1GbE": NetworkLink("1GbE", 0.117, 0.30),
    "2.5GbE": NetworkLink("2.5GbE", 0.294, 0.30),
    "5GbE": NetworkLink("5GbE", 0.588, 0.25),
    "10GbE": NetworkLink("10GbE", 1.17, 0.15),
    "25GbE": NetworkLink("25GbE", 2.94, 0.10),
    "40GbE": NetworkLink("40GbE", 4.7, 0.08),
    "100GbE": NetworkLink("100GbE", 11.7, 0.05),
    "Wi-Fi": NetworkLink("Wi-Fi", 0.05, 3.0),
    "Thunderbolt": NetworkLink("Thunderbolt", 2.2, 0.10),
}
DEFAULT_LINK = "1GbE"
HASH_THRESHOLD_BYTES = 10 * 1024 * 1024  # ggml-rpc.cpp: larger tensors are offered to the cache by hash
_ALIASES = {"wifi": "Wi-Fi", "wlan": "Wi-Fi", "lo": "loopback", "local": "loopback", "tb": "Thunderbolt"}
_GBPS_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(gbe|gbit|gbps|gb/s)$")


def parse_link(text: str) -> NetworkLink:
    """``1GbE``, ``10gbe``, ``2.5 GbE``, ``Wi-Fi``, ``loopback``, ``Thunderbolt`` → a :class:`NetworkLink`.

    ``N GbE``/``N Gbit`` for other Ethernet speeds uses 94% of the line rate.
    """
    key = " ".join(text.split())
    if not key:
        raise RigfitError("empty network link (use e.g. 1GbE, 10GbE, Wi-Fi or loopback)")
    folded = key.lower().replace(" ", "").replace("-", "")
    for name, link in NETWORK_LINKS.items():
        if folded == name.lower().replace("-", ""):
            return link
    if folded in _ALIASES:
        return NETWORK_LINKS[_ALIASES[folded]]
    m = _GBPS_RE.match(folded)
    if m:
        gbit = float(m.group(1))
        if not 0.01 <= gbit <= 1000:
            raise RigfitError(f"'{text}': a network link runs between 0.01 and 1000 Gbit/s")
        return NetworkLink(f"{gbit:g}GbE", round(gbit / 8 * 0.94, 4), 0.30 if gbit < 10 else 0.15)
    raise RigfitError(
        f"unknown network link '{text}' (use one of {', '.join(NETWORK_LINKS)}, or a speed such as 20GbE)"
    )


# ---------------------------------------------------------------------------------------------------
# Device order and names


def rig_in_llama_order(rig: Rig, split_mode: str) -> bool:
    """True when the rig's order already is llama.cpp's (no remote device, or only remote ones...)."""
    order = llama_device_order(rig, split_mode)
    return order == tuple(range(len(order)))


def _local_prefix(gpu: Gpu) -> str:
    return {VENDOR_AMD: "ROCm", VENDOR_INTEL: "SYCL"}.get(gpu.vendor, "CUDA")


def llama_device_names(rig: Rig) -> tuple[str, ...]:
    """llama.cpp's name for each rig device, in rig order: ``RPC<n>`` for remote ones (numbered in
    registration order), ``CUDA<index>`` (``ROCm``/``SYCL``) for local ones."""
    names: list[str] = []
    n_rpc = 0
    for gpu in rig.gpus:
        if gpu.remote is not None:
            names.append(f"RPC{n_rpc}")
            n_rpc += 1
        else:
            names.append(f"{_local_prefix(gpu)}{gpu.index}")
    return tuple(names)


def to_llama_split(
    rig: Rig, split_mode: str, tensor_split: Sequence[float] | None
) -> tuple[float, ...] | None:
    """A rig-order ``tensor_split`` in llama.cpp's order (what ``-ts`` and the worker take)."""
    if tensor_split is None:
        return None
    if len(tensor_split) != rig.n_gpus:
        raise RigfitError(f"the split has {len(tensor_split)} ratios for {rig.n_gpus} devices")
    return tuple(float(tensor_split[i]) for i in llama_device_order(rig, split_mode))


def to_llama_main_gpu(rig: Rig, split_mode: str, main_gpu: int) -> int:
    """The rig's ``main_gpu`` (a rig position) as llama.cpp's index for ``split_mode``."""
    order = llama_device_order(rig, split_mode)
    if not 0 <= main_gpu < len(order):
        return main_gpu
    return order.index(main_gpu)


def from_llama_order(rig: Rig, split_mode: str, values: Sequence[float]) -> tuple[float, ...]:
    """Values given in llama.cpp's order (``--split`` as llama.cpp users write it) back in rig order."""
    order = llama_device_order(rig, split_mode)
    if len(values) != len(order):
        raise RigfitError(f"the split has {len(values)} ratios for {len(order)} devices")
    out = [0.0] * len(order)
    for llama_pos, rig_pos in enumerate(order):
        out[rig_pos] = float(values[llama_pos])
    return tuple(out)


# ---------------------------------------------------------------------------------------------------
# What the network costs


@dataclass(frozen=True)
class NetworkCost:
    """Time the network adds, per generated token and per prompt batch, and once at load."""

    token_s: float  # per generated token: activations and logits over the links, round trips
    batch_s_per_token: float  # per prompt token (activations of a whole micro-batch at once)
    round_trips_per_token: int
    bytes_per_token: float
    load_s: float  # weights sent to the servers at load
    load_bytes: float
    slowest_link: NetworkLink | None


def network_cost(
    rig: Rig,
    device_of_slot: Sequence[int],
    weights_bytes_by_device: Sequence[float],
    n_embd: int,
    n_vocab: int,
    n_ubatch: int = 512,
    cached: bool = False,
) -> NetworkCost:
    """The network's share of a run on ``rig`` with layer slots placed by ``device_of_slot``.

    ``device_of_slot`` gives each of the ``n_layer + 1`` slots (the last is the output layer) a
    rig position, or -1 for the CPU; ``weights_bytes_by_device`` the weights on each rig device.
    A token's activations (``n_embd`` F32 values) cross every boundary between consecutive slots
    on different devices; crossing into or out of a remote device goes over that device's link,
    and each remote stretch is one round trip (the result is read back). When the output layer
    sits on a remote device, the logits (``n_vocab`` F32 values) come back over its link too.
    ``cached`` skips the weights of tensors the server's cache already holds (all of them, after a
    first load with ``rpc-server -c``).
    """
    row_bytes = 4.0 * n_embd
    token_s = 0.0
    batch_s = 0.0
    trips = 0
    moved = 0.0
    slowest: NetworkLink | None = None

    def link_of(pos: int) -> NetworkLink | None:
        if pos < 0:
            return None
        remote = rig.gpus[pos].remote
        return remote.link if remote is not None else None

    previous: int | None = None
    for pos in device_of_slot:
        if previous is not None and pos != previous:
            for side in (previous, pos):
                link = link_of(side)
                if link is None:
                    continue
                token_s += row_bytes / (link.bandwidth_gbps * 1e9)
                batch_s += row_bytes / (link.bandwidth_gbps * 1e9)
                moved += row_bytes
                if side == previous:  # reading the remote stretch's result back waits a round trip
                    token_s += link.rtt_ms / 1000.0
                    batch_s += link.rtt_ms / 1000.0 / max(n_ubatch, 1)
                    trips += 1
                if slowest is None or link.bandwidth_gbps < slowest.bandwidth_gbps:
                    slowest = link
        previous = pos
    if device_of_slot:
        first, last = device_of_slot[0], device_of_slot[-1]
        # The token embeddings stay on the host: the first slot's input comes from there.
        link = link_of(first)
        if link is not None:
            token_s += row_bytes / (link.bandwidth_gbps * 1e9)
            batch_s += row_bytes / (link.bandwidth_gbps * 1e9)
            moved += row_bytes
        link = link_of(last)
        if link is not None:
            logits = 4.0 * n_vocab
            token_s += logits / (link.bandwidth_gbps * 1e9) + link.rtt_ms / 1000.0
            # A prompt needs the logits of its last token only.
            batch_s += (logits / (link.bandwidth_gbps * 1e9) + link.rtt_ms / 1000.0) / max(n_ubatch, 1)
            moved += logits
            trips += 1
            if slowest is None or link.bandwidth_gbps < slowest.bandwidth_gbps:
                slowest = link
    load_bytes = 0.0
    load_s = 0.0
    if not cached:
        for pos, nbytes in enumerate(weights_bytes_by_device):
            link = link_of(pos) if pos < rig.n_gpus else None
            if link is not None and nbytes > 0:
                load_bytes += nbytes
                load_s += nbytes / (link.bandwidth_gbps * 1e9)
    return NetworkCost(
        token_s=token_s,
        batch_s_per_token=batch_s,
        round_trips_per_token=trips,
        bytes_per_token=moved,
        load_s=load_s,
        load_bytes=load_bytes,
        slowest_link=slowest,
    )


# ---------------------------------------------------------------------------------------------------
# Commands and advice for a plan with remote devices


PLACEHOLDER_HOST = "OTHER-PC"  # stands for a planned machine's address in exported commands


def rpc_endpoints_for_commands(rig: Rig) -> tuple[str, ...]:
    """``--rpc`` entries: the rig's servers, and a placeholder per planned machine (one per device
    number 0 run: a planned machine with two GPUs is one server)."""
    out: list[str] = []
    planned = 0
    for gpu in rig.gpus:
        remote = gpu.remote
        if remote is None:
            continue
        if remote.endpoint is not None:
            if remote.endpoint not in out:
                out.append(remote.endpoint)
        elif remote.device == 0:
            planned += 1
            out.append(f"{PLACEHOLDER_HOST}{planned if planned > 1 else ''}:50052")
    return tuple(out)


def server_steps(rig: Rig) -> tuple[tuple[str, ...], ...]:
    """What to run on each remote machine first: llama.cpp's own ``rpc-server`` (``rigfit
    rpc-server`` is the same server): listening on the address this computer uses to reach it."""
    steps: list[tuple[str, ...]] = []
    for endpoint in rpc_endpoints_for_commands(rig):
        host, _, port = endpoint.rpartition(":")
        steps.append(("rpc-server", "--host", host, "--port", port, "-c"))
    return tuple(steps)


def rpc_notes(rig: Rig) -> tuple[str, ...]:
    """Notes for an exported command that uses RPC devices."""
    if not rig.remote_gpus:
        return ()
    notes = [
        "first, on each remote machine: "
        + "; ".join(" ".join(step) for step in server_steps(rig))
        + " (or rigfit rpc-server --host ADDRESS --allow-network); both sides need the same llama.cpp "
        "version, built with -DGGML_RPC=on",
        "the RPC protocol has no password and no encryption: only on a network you trust",
    ]
    if any(g.remote is not None and g.remote.endpoint is None for g in rig.gpus):
        notes.append(f"{PLACEHOLDER_HOST} stands for the address of the machine you plan to add")
    return tuple(notes)


def slot_split_llama_order(rig: Rig, slots: Sequence[int], split_mode: str) -> tuple[int, ...]:
    """Per-device slot counts (rig order) in llama.cpp's device order, as ``-ts`` takes them."""
    return tuple(int(slots[i]) for i in llama_device_order(rig, split_mode))


def rpc_advice(
    rig: Rig,
    plan_devices: Sequence[tuple[int, bool]],
    weights_mib: Sequence[float],
    n_embd: int,
    n_vocab: int,
) -> tuple[Advice, ...]:
    """Advice about remote devices for a plan: slow links, the weights sent at load, planned
    machines. ``plan_devices`` is each rig device's (slots, has_output)."""
    from app.core.advice import LEVEL_INFO, LEVEL_WARNING, Advice

    out: list[Advice] = []
    remote = [(i, g) for i, g in enumerate(rig.gpus) if g.remote is not None]
    if not remote:
        return ()
    # Tensor split over a network is a load rule (app.core.rules, rpc-tensor-split): the plan
    # reports it and settings_advice turns it into advice.
    for i, gpu in remote:
        assert gpu.remote is not None
        link = gpu.remote.link
        slots, has_output = plan_devices[i] if i < len(plan_devices) else (0, False)
        if gpu.remote.endpoint is None:
            out.append(
                Advice(
                    "rpc-planned",
                    LEVEL_INFO,
                    f"GPU {gpu.index} ({gpu.name.split(' @ ')[0]}) is planned on another machine over {link.name}: "
                    f"to use it, run rigfit rpc-server (or llama.cpp's rpc-server) there and add it as rpc://HOST:PORT.",
                    gpu.index,
                )
            )
        if slots <= 0:
            continue
        if link.bandwidth_gbps < 0.5:
            row_kib = 4 * n_embd / 1024
            extra = f", and the logits ({4 * n_vocab / 1024:.0f} KiB)" if has_output else ""
            out.append(
                Advice(
                    "rpc-slow-link",
                    LEVEL_WARNING if link.bandwidth_gbps < 0.1 or link.rtt_ms >= 1.0 else LEVEL_INFO,
                    f"GPU {gpu.index} is reached over {link.describe()}: every token sends it "
                    f"{row_kib:.0f} KiB of activations and waits a round trip{extra}; a prompt sends "
                    f"{row_kib * 512 / 1024:.0f} MiB per 512 tokens. Put as many layers as fit on local GPUs first "
                    f"(llama.cpp gives remote devices the first layers); 10GbE or faster keeps most of the speed.",
                    gpu.index,
                )
            )
        weights = weights_mib[i] if i < len(weights_mib) else 0.0
        if weights > 1024:
            secs = weights * 1024 * 1024 / (link.bandwidth_gbps * 1e9)
            out.append(
                Advice(
                    "rpc-load-transfer",
                    LEVEL_INFO,
                    f"Loading sends {weights / 1024:.1f} GiB of weights to GPU {gpu.index} over {link.name} "
                    f"(about {secs:.0f} s at best); rpc-server -c keeps them on that machine's disk, so the next "
                    f"load of the same model sends far less.",
                    gpu.index,
                )
            )
    return tuple(out)
