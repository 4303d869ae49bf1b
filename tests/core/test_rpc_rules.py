"""llama.cpp's rules for RPC devices (order, names, split translation) and the network cost model."""

from __future__ import annotations

import pytest

from app.core.errors import RigfitError
from app.core.rig import Gpu, NetworkLink, Remote, Rig
from app.core.rpc import (
    NETWORK_LINKS,
    from_llama_order,
    llama_device_names,
    llama_device_order,
    network_cost,
    parse_link,
    to_llama_main_gpu,
    to_llama_split,
)

LAN = NETWORK_LINKS["1GbE"]


def _rig(*kinds: str) -> Rig:
    """``"L"`` a local GPU, ``"R"`` a remote one, in rig order."""
    gpus = []
    local = 0
    for i, kind in enumerate(kinds):
        remote = Remote(link=LAN, endpoint=f"10.0.0.{i}:50052") if kind == "R" else None
        gpus.append(
            Gpu(index=local if remote is None else i, name=kind, vram_total_mib=24576.0, remote=remote)
        )
        local += remote is None
    return Rig(gpus=tuple(gpus))


def test_layer_split_puts_rpc_devices_first_tensor_split_last() -> None:
    rig = _rig("L", "L", "R", "R")
    assert llama_device_order(rig, "layer") == (2, 3, 0, 1)
    assert llama_device_order(rig, "none") == (2, 3, 0, 1)
    assert llama_device_order(rig, "tensor") == (0, 1, 2, 3)
    assert llama_device_names(rig) == ("CUDA0", "CUDA1", "RPC0", "RPC1")


def test_splits_translate_both_ways() -> None:
    rig = _rig("L", "R")
    assert to_llama_split(rig, "layer", (3.0, 1.0)) == (1.0, 3.0)
    assert to_llama_split(rig, "tensor", (3.0, 1.0)) == (3.0, 1.0)
    assert from_llama_order(rig, "layer", (1.0, 3.0)) == (3.0, 1.0)
    assert to_llama_split(rig, "layer", None) is None
    assert to_llama_main_gpu(rig, "none", 0) == 1  # the local GPU is llama.cpp's device 1
    with pytest.raises(RigfitError, match="3 ratios for 2 devices"):
        to_llama_split(rig, "layer", (1.0, 1.0, 1.0))


def test_links_parse_by_name_alias_and_speed() -> None:
    assert parse_link("1gbe") is NETWORK_LINKS["1GbE"]
    assert parse_link("wifi") is NETWORK_LINKS["Wi-Fi"]
    assert parse_link("2.5 GbE") is NETWORK_LINKS["2.5GbE"]
    twenty = parse_link("20GbE")
    assert twenty.bandwidth_gbps == pytest.approx(20 / 8 * 0.94)
    with pytest.raises(RigfitError, match="unknown network link"):
        parse_link("fast")


def test_a_local_only_layout_costs_no_network() -> None:
    rig = _rig("L", "L")
    cost = network_cost(rig, [0, 0, 1, 1, 1], [1e9, 1e9], n_embd=4096, n_vocab=128256)
    assert cost.token_s == 0 and cost.load_s == 0 and cost.round_trips_per_token == 0


def test_remote_stretch_costs_activations_and_one_round_trip() -> None:
    rig = _rig("R", "L")
    # layers 0-1 on the remote device (llama.cpp's device 0), layer 2 and the output local
    cost = network_cost(rig, [0, 0, 1, 1], [2e9, 1e9], n_embd=4096, n_vocab=128256)
    row = 4 * 4096
    # in from the host (embeddings), out to the local GPU: two rows, one round trip
    assert cost.bytes_per_token == 2 * row
    assert cost.round_trips_per_token == 1
    assert cost.token_s == pytest.approx(2 * row / (LAN.bandwidth_gbps * 1e9) + LAN.rtt_ms / 1000)
    assert cost.load_bytes == 2e9 and cost.load_s == pytest.approx(2e9 / (LAN.bandwidth_gbps * 1e9))
    assert cost.slowest_link == LAN


def test_output_on_a_remote_device_ships_the_logits_back() -> None:
    rig = _rig("R", "R")
    cost = network_cost(rig, [0, 1, 1], [1e9, 1e9], n_embd=4096, n_vocab=128256)
    row = 4 * 4096
    # embeddings in, RPC0 -> host -> RPC1 (two rows, one round trip), logits back (one round trip)
    assert cost.bytes_per_token == 3 * row + 4 * 128256
    assert cost.round_trips_per_token == 2
    assert cost.batch_s_per_token < cost.token_s


def test_cached_weights_are_not_sent_again() -> None:
    rig = _rig("R", "L")
    cost = network_cost(rig, [0, 1], [5e9, 1e9], n_embd=4096, n_vocab=32000, cached=True)
    assert cost.load_s == 0 and cost.load_bytes == 0


def test_slower_link_costs_more() -> None:
    fast = Rig(gpus=(Gpu(0, "R", 24576.0, remote=Remote(link=NETWORK_LINKS["10GbE"], endpoint="a:1")),))
    slow = Rig(gpus=(Gpu(0, "R", 24576.0, remote=Remote(link=NetworkLink("x", 0.01, 5.0), endpoint="a:1")),))
    args = ([0, 0], [1e9], 4096, 32000)
    assert network_cost(slow, *args).token_s > network_cost(fast, *args).token_s
