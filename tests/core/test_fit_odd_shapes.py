"""The fit table agrees with plan() on the odd shapes the fuzz campaign found (docs/robustness.md).

One or two layers, MoE with a few tensors, contexts in the millions, split ratios of 0 or 1e9,
``n_gpu_layers`` of 0: the fit table must give every cell plan()'s status, total, largest context and
speed, as it does for the catalog's real models (tests/core/test_fit.py).
"""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core import limits
from app.core.arch import build_spec
from app.core.errors import RigfitError
from app.core.fit import fit_table
from app.core.fit.evaluator import Evaluator, Placement
from app.core.fit.groups import spec_group
from app.core.layout import layer_assignment, model_gpus, raw_split
from app.core.model_spec import ModelSpec
from app.core.placement import plan
from app.core.rig import Gpu, Host, Rig
from app.core.settings import KV_TYPES, Settings
from app.hardware.catalog import parse_rig_expression
from tests.core.gguf_builders import small_params
from tests.core.test_fit import _assert_row_matches_plan


@cache
def _rig(name: str) -> Rig:
    if name == "cpu":
        return Rig(gpus=(), host=Host(cores_physical=8, ram_available_mib=48 * 1024.0))
    if name == "small ram":
        gpu = Gpu(index=0, name="RTX 4090", vram_total_mib=24564.0, bandwidth_gbps=1008.0)
        return Rig(gpus=(gpu, gpu.with_index(1)), host=Host(ram_available_mib=2 * 1024.0))
    return parse_rig_expression(name)


RIG_NAMES = (
    "RTX 3060",
    "3x RTX 3060",
    "RTX 4090 + RTX 3060@x4",
    "RTX 3060 + rpc(RTX 3090 @ 10GbE)",
    "small ram",
    "cpu",
)


@cache
def _spec(arch: str, n_layer: int, narrow: bool, quant: str | None, n_ctx_train: int) -> ModelSpec:
    extra: dict[str, object] = {"n_ctx_train": n_ctx_train}
    if narrow and arch in ("llama", "qwen3moe"):
        # The campaign's smallest models: 32 wide, two heads of 16.
        extra.update(n_embd=32, n_vocab=300, n_head=2, n_head_kv=1, head_dim_k=16, head_dim_v=16, n_ff=64)
        if arch == "qwen3moe":
            extra.update(n_expert=4, n_expert_used=2, n_ff_expert=32)
    params = small_params(arch, n_layer=n_layer, **extra)
    name = f"odd-{arch}-{n_layer}-{narrow}-{quant}-{n_ctx_train}"
    return build_spec(params, id=name, name=name, source="gguf", file_type=quant)


specs = st.builds(
    _spec,
    arch=st.sampled_from(("llama", "qwen3moe", "gemma2", "gemma3", "gpt-oss", "deepseek2")),
    n_layer=st.sampled_from((1, 1, 2, 2, 3, 7)),
    narrow=st.booleans(),
    quant=st.sampled_from((None, "Q8_0", "Q4_K_M")),
    n_ctx_train=st.sampled_from((0, 4096, 131072)),
)
ratios = st.sampled_from((0.0, limits.MIN_SPLIT_RATIO, 1.0, 3.0, 1e9))
contexts = st.one_of(
    st.sampled_from((1, 2, 31, 255, 256, 257, 8192, 2_532_780, limits.MAX_CTX)),
    st.integers(1, limits.MAX_CTX),
)


@st.composite
def rig_and_settings(draw: st.DrawFn) -> tuple[Rig, Settings]:
    rig = _rig(draw(st.sampled_from(RIG_NAMES)))
    n = rig.n_gpus
    split = None
    if n and draw(st.booleans()):
        split = tuple(draw(ratios) for _ in range(n))
        if not any(split):
            split = None
    type_k = draw(st.sampled_from(KV_TYPES))
    return rig, Settings(
        ctx=draw(contexts),
        split_mode=draw(st.sampled_from(("layer", "layer", "none"))),
        tensor_split=split,
        main_gpu=draw(st.integers(0, max(0, n - 1))),
        n_gpu_layers=draw(st.sampled_from((-1, 0, 1, 2, 3, 4, 999))),
        n_batch=draw(st.sampled_from((1, 32, 512, 4096))),
        n_ubatch=draw(st.sampled_from((1, 32, 512))),
        flash_attn=draw(st.booleans()),
        type_k=type_k,
        type_v=type_k if draw(st.booleans()) else draw(st.sampled_from(KV_TYPES)),
        offload_kqv=draw(st.booleans()),
        op_offload=draw(st.booleans()),
    )


def _assert_agrees(rig: Rig, spec: ModelSpec, s: Settings) -> bool:
    """The table's row for ``spec`` is plan()'s; False when plan() refuses the settings."""
    try:
        plan(rig, spec, s)
    except RigfitError:
        # Settings no model can use stop the table; those only this model cannot use make its row "no".
        try:
            table = fit_table(rig, s.ctx, s, extra_specs=[spec], models=[])
        except RigfitError:
            return False
        assert [r.status for r in table.rows] == ["no"]
        return False
    table = fit_table(rig, s.ctx, s, extra_specs=[spec], models=[])
    assert not table.unreadable, table.unreadable
    (row,) = table.rows
    _assert_row_matches_plan(rig, row, s, spec)
    return True


# The worst example the campaign kept, and its kin: a GPU that gets no slot (every GPU at
# n_gpu_layers 0, those after the last to get one at a split of 1e9 : 1 : 1) was charged the output
# layer: its weights and its compute buffer, which grows with the context.
@pytest.mark.parametrize(
    ("arch", "n_layer", "rig_name", "settings_"),
    [
        ("qwen3moe", 1, "3x RTX 3060", Settings(ctx=2_532_780, tensor_split=(1e9, 1.0, 1.0))),
        ("llama", 1, "3x RTX 3060", Settings(ctx=2_532_780, tensor_split=(1.0, 1e9, 0.0))),
        ("qwen3moe", 2, "3x RTX 3060", Settings(ctx=2, n_gpu_layers=0, n_batch=1)),
        ("llama", 1, "RTX 3060", Settings(ctx=7, n_gpu_layers=0, flash_attn=False)),
        ("gemma2", 1, "RTX 4090 + RTX 3060@x4", Settings(ctx=1, n_gpu_layers=0, n_ubatch=32)),
    ],
    ids=["moe-1e9-split", "zero-share-gpu", "moe-ngl0", "one-gpu-ngl0", "gemma2-ngl0"],
)
def test_gpus_without_a_slot_hold_nothing_as_in_plan(
    arch: str, n_layer: int, rig_name: str, settings_: Settings
) -> None:
    assert _assert_agrees(_rig(rig_name), _spec(arch, n_layer, True, "Q4_K_M", 0), settings_)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(specs, rig_and_settings())
def test_every_odd_shape_agrees_with_plan(spec: ModelSpec, rs: tuple[Rig, Settings]) -> None:
    _assert_agrees(rs[0], spec, rs[1])


@pytest.mark.parametrize("n_layer", [1, 2, 5])
@pytest.mark.parametrize(
    "split",
    [
        None,
        (1.0, 1.0, 1.0),
        (1e9, 1.0, 1.0),
        (1.0, 1e9, 0.0),
        (0.0, 0.0, 1.0),
        (1.0, 0.0, 1e9),
        (3.0, 1e-30, 1.0),
    ],
)
def test_the_tables_placement_of_every_n_gpu_layers_is_llama_cpps_slot_rule(
    n_layer: int, split: tuple[float, ...] | None
) -> None:
    # The placements the table reads (its requested one, the offload search's, the largest context's)
    # against layout.layer_assignment, which plan() places by: layers and the output slot per GPU.
    rig = _rig("3x RTX 3060")
    s = Settings(tensor_split=split)
    group = spec_group(_spec("llama", n_layer, True, "Q4_K_M", 0))
    ev = Evaluator(rig, s)
    every = ev.place_all(group)
    gpus = model_gpus(rig, s)
    for k in range(n_layer + 2):
        slots = layer_assignment(n_layer, raw_split(rig, s, gpus), k)
        one = ev.place_one(group, k)
        for place in (one, Placement(every.lo[k], every.hi[k], every.out[k], int(every.host_layers[k]))):
            assert place.host_layers == slots[:n_layer].count(-1), k
            for m, gi in enumerate(gpus):
                layers = [il for il in range(n_layer) if slots[il] == m]
                assert int(place.hi[gi] - place.lo[gi]) == len(layers), (k, gi)
                if layers:
                    assert int(place.lo[gi]) == layers[0], (k, gi)
                assert bool(place.out[gi]) == (slots[n_layer] == m), (k, gi)
