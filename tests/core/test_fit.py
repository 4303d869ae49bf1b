"""The fit table: every cell agrees with plan(), the best quant, local GGUF rows, bad settings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from app.core.catalog import catalog_spec, load_model_catalog
from app.core.errors import RigfitError
from app.core.fit import QUALITY_ORDER, FitRow, FitTable, fit_table, quality_rank
from app.core.model_source import load_model_spec
from app.core.model_spec import ModelSpec
from app.core.perf import estimate_speed
from app.core.placement import largest_fitting_ctx, plan
from app.core.rig import Gpu, Host, Rig
from app.core.settings import Settings
from app.hardware.catalog import parse_rig_expression
from tests.synth_gguf import SynthShape, write_llama_gguf


def _assert_row_matches_plan(
    rig: Rig, row: FitRow, settings: Settings, spec: ModelSpec | None = None
) -> None:
    spec = spec if spec is not None else catalog_spec(row.model, row.quant)
    p = plan(rig, spec, settings)
    where = f"{row.model} {row.quant}"
    assert row.status == p.status, where
    assert row.total_gib == pytest.approx((p.gpu_total_mib + p.host.total_mib) / 1024, rel=1e-9), where
    full = replace(settings, n_gpu_layers=-1)
    assert row.max_ctx == largest_fitting_ctx(rig, spec, full, spec.n_ctx_train or None), where
    est = estimate_speed(rig, spec, p)
    if est.decode_tok_s is None:
        assert row.decode_tok_s is None, where
    else:
        assert row.decode_tok_s == pytest.approx(est.decode_tok_s, rel=1e-9), where
    if p.status == "offload" and p.fit_n_gpu_layers is not None:
        assert row.n_gpu_layers == p.fit_n_gpu_layers, where


RIGS = {
    "2x3090": parse_rig_expression("2x RTX 3090"),
    "3090+3060": parse_rig_expression("RTX 3090 + RTX 3060"),
    "3060": parse_rig_expression("RTX 3060"),
    "3x mixed": parse_rig_expression("RTX 4090 + RTX 3090 + RTX 3060@x4"),
    "cpu": Rig(gpus=(), host=Host(cores_physical=8, ram_available_mib=48 * 1024.0)),
    "small ram": Rig(
        gpus=(Gpu(index=0, name="RTX 4090", vram_total_mib=24564.0, bandwidth_gbps=1008.0),),
        host=Host(ram_available_mib=16 * 1024.0),
    ),
}


@pytest.mark.parametrize("name", list(RIGS))
@pytest.mark.parametrize("ctx", [8192, 32768])
def test_every_sampled_cell_agrees_with_plan(name: str, ctx: int) -> None:
    rig = RIGS[name]
    table = fit_table(rig, ctx)
    assert len(table.rows) == sum(len(e.quants) for e in load_model_catalog())
    # Every 9th cell, offset by the context so both runs cover different cells.
    for row in table.rows[ctx % 9 :: 9]:
        _assert_row_matches_plan(rig, row, Settings(ctx=ctx))


def test_every_cell_of_a_two_gpu_rig_agrees_with_plan() -> None:
    # The vectorised table is a second planner: every one of its cells, not a sample, must be plan()'s.
    rig = RIGS["3090+3060"]
    table = fit_table(rig, 8192)
    for row in table.rows:
        _assert_row_matches_plan(rig, row, Settings(ctx=8192))


@pytest.mark.parametrize(
    "settings",
    [
        Settings(ctx=12000, type_k="q8_0", type_v="q8_0"),
        Settings(ctx=4096, flash_attn=False),
        Settings(ctx=8192, n_gpu_layers=20),
        Settings(ctx=8192, split_mode="none", main_gpu=1),
        Settings(ctx=8192, tensor_split=(3.0, 1.0)),
        Settings(ctx=300, op_offload=False),
        # Below 32 tokens the micro-batch is too small for op_offload (layout.op_offload_active).
        Settings(ctx=16, n_gpu_layers=10),
    ],
    ids=[
        "q8-kv-unpadded-ctx",
        "no-flash-attn",
        "partial-offload",
        "split-none",
        "tensor-split-3-1",
        "tiny-ctx",
        "ctx-below-op-offload-batch",
    ],
)
def test_settings_are_honoured_cell_for_cell(settings: Settings) -> None:
    rig = RIGS["3090+3060"]
    table = fit_table(rig, settings.ctx, settings)
    for row in table.rows[::11]:
        _assert_row_matches_plan(rig, row, settings)


# Rigs with llama.cpp RPC devices: llama.cpp fills its device list remote devices first (a layer
# split gives them the first layers), op_offload goes to the first local GPU, and the network joins
# the speed model. The table must place them as plan() does (app.core.layout.llama_device_order).
RPC_RIGS = {
    "4090 + rpc 3090": parse_rig_expression("RTX 4090 + rpc(RTX 3090 @ 1GbE)"),
    "3060 + 2 rpc": parse_rig_expression("RTX 3060 + rpc(RTX 3090 @ 10GbE) + rpc(RTX 3060 @ 2.5GbE)"),
}


@pytest.mark.parametrize("name", list(RPC_RIGS))
def test_every_cell_of_an_rpc_rig_agrees_with_plan(name: str) -> None:
    rig = RPC_RIGS[name]
    table = fit_table(rig, 8192)
    for row in table.rows:
        _assert_row_matches_plan(rig, row, Settings(ctx=8192))


@pytest.mark.parametrize(
    "settings",
    [
        Settings(ctx=8192, n_gpu_layers=20),  # op_offload on the local GPU, not llama.cpp's first device
        Settings(ctx=8192, tensor_split=(1.0, 3.0, 2.0)),
        Settings(ctx=4096, split_mode="none", main_gpu=1),  # a remote main GPU: no op_offload at all
        Settings(ctx=8192, split_mode="none", main_gpu=0),
    ],
    ids=["partial-offload", "split-1-3-2", "none-on-remote", "none-on-local"],
)
def test_rpc_settings_are_honoured_cell_for_cell(settings: Settings) -> None:
    rig = RPC_RIGS["3060 + 2 rpc"]
    table = fit_table(rig, settings.ctx, settings)
    for row in table.rows[::5]:
        _assert_row_matches_plan(rig, row, settings)


def test_tensor_split_is_planned_cell_by_cell_and_agrees_too() -> None:
    rig = parse_rig_expression("2x RTX 3090 nvlink")
    settings = Settings(ctx=8192, split_mode="tensor")
    table = fit_table(rig, 8192, settings, models=["llama-3.2-1b", "qwen3-8b"])
    assert {r.model for r in table.rows} == {"llama-3.2-1b", "qwen3-8b"}
    for row in table.rows[::3]:
        _assert_row_matches_plan(rig, row, settings)


def test_quality_order_follows_llama_cpps_perplexity_figures() -> None:
    ranks = [quality_rank(q) for q in ("BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K")]
    assert ranks == sorted(ranks)
    assert quality_rank("Q4_K_S") < quality_rank("IQ4_XS") < quality_rank("Q4_0")
    assert quality_rank("NOT_A_QUANT") == len(QUALITY_ORDER)
    # gpt-oss was trained with MXFP4 experts: its MXFP4 file is the original, not a 4-bit loss.
    assert quality_rank("MXFP4_MOE", "gpt-oss") < quality_rank("Q8_0", "gpt-oss")
    assert quality_rank("MXFP4_MOE", "llama") > quality_rank("Q4_0", "llama")


def test_best_quant_is_the_highest_quality_that_fits_the_gpus() -> None:
    table = fit_table(RIGS["2x3090"], 8192)
    best = table.best()
    for model, quant in best.items():
        rows = table.rows_for(model)
        chosen = table.row(model, quant)
        fitting = [r for r in rows if r.status in ("fits", "tight")]
        if fitting:
            assert chosen.status in ("fits", "tight")
            assert quality_rank(quant) == min(quality_rank(r.quant) for r in fitting) or model.startswith(
                "gpt-oss"
            )
        else:
            assert chosen.status == "offload"
    assert best["llama-3.1-8b"] == "F16"
    assert table.row("llama-3.3-70b", best["llama-3.3-70b"]).status in ("fits", "tight")
    assert best["gpt-oss-120b"] == "MXFP4_MOE"
    # A model where nothing loads has no best quant.
    tiny = fit_table(RIGS["small ram"], 8192, models=["deepseek-v3"])
    assert tiny.best() == {}


def test_largest_context_is_capped_by_the_trained_context() -> None:
    table = fit_table(RIGS["2x3090"], 8192, models=["llama-3.2-1b", "gemma-2-9b"])
    assert table.row("llama-3.2-1b", "Q4_K_M").max_ctx == 131072
    assert table.row("gemma-2-9b", "Q4_K_M").max_ctx == 8192


def test_local_gguf_files_become_rows(tmp_path: Path) -> None:
    written = write_llama_gguf(
        tmp_path / "tiny.gguf",
        SynthShape(n_layer=4, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_vocab=512, weight_type="Q8_0"),
    )
    spec = load_model_spec(str(written.path))
    table = fit_table(RIGS["3060"], 2048, extra_specs=[spec], models=["llama-3.2-1b"])
    rows = [r for r in table.rows if r.source == "gguf"]
    assert len(rows) == 1
    row = rows[0]
    assert row.model == spec.id and row.quant == "Q8_0" and row.status == "fits" and row.best
    _assert_row_matches_plan(RIGS["3060"], row, Settings(ctx=2048), spec)


def test_a_setting_one_model_cannot_use_marks_only_its_rows(tmp_path: Path) -> None:
    # Head size 72 is not a multiple of q8_0's 32-value blocks: llama.cpp refuses a q8_0 K cache.
    written = write_llama_gguf(
        tmp_path / "odd-head.gguf",
        SynthShape(
            n_layer=2,
            n_embd=288,
            n_ff=512,
            n_head=4,
            n_head_kv=4,
            head_dim=72,
            n_vocab=512,
            weight_type="F16",
        ),
    )
    spec = load_model_spec(str(written.path))
    settings = Settings(type_k="q8_0", type_v="q8_0")
    table = fit_table(RIGS["3060"], 4096, settings, extra_specs=[spec], models=["llama-3.2-1b"])
    odd = next(r for r in table.rows if r.source == "gguf")
    assert odd.status == "no" and "head size" in odd.note and odd.decode_tok_s is None
    assert odd.code == "kv-type-head-size"
    with pytest.raises(RigfitError):
        plan(RIGS["3060"], spec, replace(settings, ctx=4096))
    assert all(r.status != "no" for r in table.rows if r.model == "llama-3.2-1b")


def test_settings_no_model_can_use_raise_one_error() -> None:
    with pytest.raises(RigfitError, match="tensor split has 2 entries but the rig has 1 GPU"):
        fit_table(RIGS["3060"], 8192, Settings(tensor_split=(1.0, 1.0)))
    with pytest.raises(RigfitError, match="context"):
        fit_table(RIGS["3060"], 0)
    with pytest.raises(RigfitError, match="unknown model"):
        fit_table(RIGS["3060"], 8192, models=["llama-9-9000b"])


def test_a_cpu_only_rig_plans_every_row_in_system_ram() -> None:
    table = fit_table(RIGS["cpu"], 4096, models=["llama-3.2-1b", "llama-3.3-70b"])
    assert isinstance(table, FitTable)
    small = table.row("llama-3.2-1b", "Q4_K_M")
    assert small.status == "fits" and small.decode_tok_s and small.max_ctx == 131072
    assert table.row("llama-3.3-70b", "Q8_0").status == "no"
    assert table.rig_name == "CPU only"


def test_recomputing_for_another_rig_does_not_reuse_the_previous_answer() -> None:
    a = fit_table(RIGS["3060"], 8192, models=["qwen2.5-32b"])
    b = fit_table(RIGS["2x3090"], 8192, models=["qwen2.5-32b"])
    c = fit_table(RIGS["3060"], 8192, models=["qwen2.5-32b"])
    assert a.row("qwen2.5-32b", "Q4_K_M").status == "offload"
    assert b.row("qwen2.5-32b", "Q4_K_M").status == "fits"
    assert a == c
