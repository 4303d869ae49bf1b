"""The split solver: presets, the exact tensor_split round trip, optimality against brute force, sliders."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.errors import RigfitError
from app.core.placement import largest_fitting_ctx, layer_assignment, plan
from app.core.rig import Gpu, Host, Remote, Rig
from app.core.rpc import NETWORK_LINKS
from app.core.settings import Settings
from app.core.split import (
    preset_split,
    rebalance,
    rig_slot_counts,
    slot_counts,
    split_for_even_headroom,
    split_for_max_ctx,
)
from tests.synth_gguf import SynthShape, shape_model_spec

SPEC = shape_model_spec(
    SynthShape(
        n_layer=8,
        n_embd=1024,
        n_ff=4096,
        n_head=16,
        n_head_kv=4,
        n_vocab=32000,
        weight_type="Q8_0",
        n_ctx_train=65536,
    ),
    model_id="small-8-layers",
)
HOST = Host(ram_available_mib=64 * 1024.0)


def _rig(*vram: float, free: tuple[float | None, ...] = ()) -> Rig:
    gpus = tuple(
        Gpu(index=i, name=f"GPU{i}", vram_total_mib=v, vram_free_mib=free[i] if i < len(free) else None)
        for i, v in enumerate(vram)
    )
    return Rig(gpus=gpus, host=HOST)


def _rpc_rig(*vram: float, remote: tuple[int, ...]) -> Rig:
    """GPUs of ``vram`` MiB; those at the positions in ``remote`` behind llama.cpp RPC servers."""
    link = NETWORK_LINKS["10GbE"]
    gpus = tuple(
        Gpu(
            index=i,
            name=f"GPU{i}",
            vram_total_mib=v,
            remote=Remote(link=link, endpoint=f"10.0.0.{i}:50052") if i in remote else None,
        )
        for i, v in enumerate(vram)
    )
    return Rig(gpus=gpus, host=HOST)


def _compositions(total: int, parts: int) -> list[tuple[int, ...]]:
    out = []
    for cuts in itertools.combinations(range(total + parts - 1), parts - 1):
        prev = -1
        counts = []
        for c in (*cuts, total + parts - 1):
            counts.append(c - prev - 1)
            prev = c
        out.append(tuple(counts))
    return out


def test_presets_are_even_total_vram_and_free_vram() -> None:
    rig = _rig(24576.0, 12288.0, free=(20480.0, 12288.0))
    assert preset_split(rig, "even") == (0.5, 0.5)
    assert preset_split(rig, "vram") == pytest.approx((2 / 3, 1 / 3))
    assert preset_split(rig, "free") == pytest.approx((20480 / 32768, 12288 / 32768))
    with pytest.raises(RigfitError, match="unknown split preset"):
        preset_split(rig, "fastest")
    with pytest.raises(RigfitError, match="no GPU"):
        preset_split(Rig(gpus=()), "even")


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=130), st.data())
def test_slot_counts_used_as_a_split_give_back_the_same_counts(n_layer: int, data: st.DataObject) -> None:
    n_gpus = data.draw(st.integers(min_value=1, max_value=6))
    cuts = sorted(data.draw(st.lists(st.integers(0, n_layer + 1), min_size=n_gpus - 1, max_size=n_gpus - 1)))
    bounds = [0, *cuts, n_layer + 1]
    counts = tuple(b - a for a, b in itertools.pairwise(bounds))
    assert sum(counts) == n_layer + 1
    if not any(counts):
        return
    assert slot_counts(n_layer, counts) == counts
    assignment = layer_assignment(n_layer, counts, -1)
    assert assignment == tuple(g for g, c in enumerate(counts) for _ in range(c))


@pytest.mark.parametrize(
    "vram", [(1300.0, 900.0), (1400.0, 800.0), (1100.0, 800.0, 800.0), (1000.0, 900.0, 700.0)]
)
def test_max_ctx_split_reaches_the_largest_context_any_whole_layer_split_reaches(
    vram: tuple[float, ...],
) -> None:
    rig = _rig(*vram)
    n_slots = SPEC.n_layer + 1
    best_brute = 0
    for counts in _compositions(n_slots, len(vram)):
        ctx = largest_fitting_ctx(rig, SPEC, Settings(tensor_split=tuple(float(c) for c in counts)), 65536)
        best_brute = max(best_brute, ctx or 0)
    sol = split_for_max_ctx(rig, SPEC)
    assert sol.max_ctx == best_brute
    assert slot_counts(SPEC.n_layer, sol.tensor_split) == sol.slots
    assert sol.plan.settings.ctx == best_brute and sol.plan.fits
    # ... and beats (or ties) every preset.
    for preset in ("even", "vram"):
        preset_ctx = largest_fitting_ctx(rig, SPEC, Settings(tensor_split=preset_split(rig, preset)), 65536)
        assert (preset_ctx or 0) <= sol.max_ctx


@pytest.mark.parametrize(
    ("vram", "remote"),
    [
        ((900.0, 1300.0), (1,)),
        ((1300.0, 900.0), (1,)),
        ((1000.0, 700.0, 900.0), (2,)),
        ((700.0, 1000.0, 900.0), (0, 2)),
    ],
)
def test_the_optimisers_fill_rpc_devices_first_as_llama_cpp_does(
    vram: tuple[float, ...], remote: tuple[int, ...]
) -> None:
    # llama.cpp gives remote devices the first layers (layout.llama_device_order): the greedy
    # partition must fill them in that order, or its costs are those of other layers.
    rig = _rpc_rig(*vram, remote=remote)
    n_slots = SPEC.n_layer + 1
    best_ctx = 0
    best_free = -10.0
    for counts in _compositions(n_slots, len(vram)):
        s = Settings(ctx=8192, tensor_split=tuple(float(c) for c in counts))
        best_ctx = max(best_ctx, largest_fitting_ctx(rig, SPEC, s, 65536) or 0)
        p = plan(rig, SPEC, s)
        best_free = max(best_free, min(d.free_after_mib / d.capacity_mib for d in p.devices))
    sol = split_for_max_ctx(rig, SPEC)
    assert sol.max_ctx == best_ctx
    assert rig_slot_counts(rig, SPEC.n_layer, sol.tensor_split) == sol.slots
    assert tuple(d.layers + d.has_output for d in sol.plan.devices) == sol.slots
    # the layers start on a remote device whenever one holds any
    first = next(i for i, d in enumerate(sol.plan.devices) if d.layers and d.first_layer == 0)
    assert (rig.gpus[first].remote is not None) == any(sol.slots[i] for i in remote)
    even = split_for_even_headroom(rig, SPEC, Settings(ctx=8192))
    assert even.min_free_fraction == pytest.approx(best_free, abs=1e-4)


@pytest.mark.parametrize("vram", [(1500.0, 1100.0), (1400.0, 900.0, 1200.0)])
def test_even_headroom_split_maximises_the_tightest_gpus_free_share(vram: tuple[float, ...]) -> None:
    rig = _rig(*vram)
    s = Settings(ctx=8192)
    best = -10.0
    for counts in _compositions(SPEC.n_layer + 1, len(vram)):
        p = plan(rig, SPEC, replace(s, tensor_split=tuple(float(c) for c in counts)))
        best = max(best, min(d.free_after_mib / d.capacity_mib for d in p.devices))
    sol = split_for_even_headroom(rig, SPEC, s)
    assert sol.min_free_fraction == pytest.approx(best, abs=1e-4)
    assert sol.plan.settings.tensor_split == tuple(float(c) for c in sol.tensor_split)


def test_even_headroom_when_nothing_fits_overflows_least() -> None:
    rig = _rig(700.0, 700.0)
    sol = split_for_even_headroom(rig, SPEC, Settings(ctx=65536))
    assert sol.plan.status != "fits" and sol.min_free_fraction < 0
    assert sum(sol.slots) == SPEC.n_layer + 1


def test_optimisers_refuse_what_they_do_not_solve() -> None:
    with pytest.raises(RigfitError, match="no GPU"):
        split_for_max_ctx(Rig(gpus=(), host=HOST), SPEC)
    with pytest.raises(RigfitError, match="layer split"):
        split_for_even_headroom(_rig(1500.0, 1100.0), SPEC, Settings(split_mode="tensor"))
    with pytest.raises(RigfitError, match="n_gpu_layers"):
        split_for_max_ctx(_rig(1500.0, 1100.0), SPEC, Settings(n_gpu_layers=4))
    with pytest.raises(RigfitError, match="does not fit"):
        split_for_max_ctx(_rig(600.0, 600.0), SPEC)


def test_moving_a_slider_keeps_locked_gpus_and_rescales_the_rest() -> None:
    out = rebalance((0.5, 0.3, 0.2), 0, 0.7, locked=[2])
    assert out == pytest.approx((0.7, 0.1, 0.2))
    assert sum(out) == pytest.approx(1.0, abs=1e-12)
    # Others share the rest in proportion to what they had.
    assert rebalance((0.4, 0.4, 0.2), 0, 0.6) == pytest.approx((0.6, 0.4 * 2 / 3, 0.4 / 3))
    # A value beyond what the locked GPUs leave is clamped.
    assert rebalance((0.2, 0.2, 0.6), 0, 0.9, locked=[2]) == pytest.approx((0.4, 0.0, 0.6))
    # With every other GPU locked the moved one cannot change.
    assert rebalance((0.25, 0.75), 0, 0.9, locked=[1]) == pytest.approx((0.25, 0.75))
    # Unnormalised and all-zero inputs.
    assert rebalance((2.0, 2.0), 1, 0.25) == pytest.approx((0.75, 0.25))
    assert rebalance((0.0, 0.0, 0.0), 0, 0.5) == pytest.approx((0.5, 0.25, 0.25))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=8),
    st.data(),
)
def test_slider_ratios_always_sum_to_one(ratios: list[float], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(ratios) - 1))
    locked = data.draw(st.sets(st.integers(0, len(ratios) - 1).filter(lambda i: i != index)))
    value = data.draw(st.floats(-1, 2, allow_nan=False))
    before = rebalance(ratios, index, ratios[index] / max(sum(ratios), 1e-9) if sum(ratios) else 0.0, locked)
    out = rebalance(ratios, index, value, locked)
    assert len(out) == len(ratios)
    assert sum(out) == pytest.approx(1.0, abs=1e-9)
    assert all(v >= 0 for v in out)
    for i in locked:
        assert out[i] == pytest.approx(before[i], abs=1e-9)


def test_slider_rejects_bad_input() -> None:
    with pytest.raises(RigfitError, match="GPU 3 does not exist"):
        rebalance((0.5, 0.5), 3, 0.5)
    with pytest.raises(RigfitError, match="locked"):
        rebalance((0.5, 0.5), 0, 0.5, locked=[0])
    with pytest.raises(RigfitError, match="non-negative"):
        rebalance((0.5, -0.5), 0, 0.5)
    with pytest.raises(RigfitError, match="number"):
        rebalance((0.5, 0.5), 0, float("nan"))
