"""Tensor layout from architecture parameters: names and shapes exactly as llama.cpp loads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.arch import ArchParams, build_spec, generate_tensors, per_layer, swa_pattern
from app.core.errors import RigfitError
from app.core.gguf_reader import read_gguf
from app.core.gguf_spec import spec_from_gguf
from app.core.model_spec import ModelSpec
from app.core.quant import F16, F32, MXFP4
from tests.core.gguf_builders import llama_loads, small_spec, write_spec_gguf

ARCHS = ("llama", "qwen2", "qwen3", "qwen3moe", "gemma2", "gemma3", "phi3", "deepseek2", "gpt-oss")


def _shapes(spec_or_params: ModelSpec | ArchParams) -> dict[str, tuple[int, ...]]:
    tensors = (
        spec_or_params.tensors if isinstance(spec_or_params, ModelSpec) else generate_tensors(spec_or_params)
    )
    return {t.name: t.shape for t in tensors}


def test_demo_model_hyperparameters_regenerate_its_exact_tensor_names_and_shapes(
    demo_model_path: str,
) -> None:
    real = spec_from_gguf(read_gguf(demo_model_path))
    params = ArchParams(
        architecture=real.architecture,
        n_layer=real.n_layer,
        n_embd=real.n_embd,
        n_vocab=real.n_vocab,
        n_head=real.n_head,
        n_head_kv=real.n_head_kv,
        n_ff=real.n_ff,
        head_dim_k=real.head_dim_k,
        head_dim_v=real.head_dim_v,
        tied_embeddings=real.tied_embeddings,
    )
    assert _shapes(params) == _shapes(real)


@pytest.mark.parametrize("arch", ARCHS)
def test_llama_cpp_loads_the_generated_tensors_of_every_architecture(arch: str, tmp_path: Path) -> None:
    _, spec = small_spec(arch, n_layer=4)
    path = write_spec_gguf(tmp_path / f"{arch}.gguf", spec)
    assert llama_loads(path), f"llama.cpp refused the generated {arch} tensors (see its log above)"


def test_llama_cpp_refuses_a_wrong_shape_so_the_load_check_means_something(tmp_path: Path) -> None:
    _, spec = small_spec("qwen3", n_layer=2)
    broken = [
        t if t.name != "blk.1.attn_k_norm.weight" else type(t)(t.name, (32,), t.ggml_type)
        for t in spec.tensors
    ]
    path = write_spec_gguf(tmp_path / "broken.gguf", ModelSpec(**{**spec.__dict__, "tensors": tuple(broken)}))
    assert not llama_loads(path)


@pytest.mark.parametrize("arch", ARCHS)
def test_a_generated_model_written_as_gguf_reads_back_as_the_same_spec(arch: str, tmp_path: Path) -> None:
    _, spec = small_spec(arch, n_layer=6)
    back = spec_from_gguf(read_gguf(write_spec_gguf(tmp_path / "m.gguf", spec)))
    assert [(t.name, t.shape, t.ggml_type) for t in back.tensors] == [
        (t.name, t.shape, t.ggml_type) for t in spec.tensors
    ]
    for field in (
        "n_layer",
        "n_embd",
        "n_vocab",
        "n_head",
        "n_head_kv",
        "n_ff",
        "head_dim_k",
        "head_dim_v",
        "tied_embeddings",
        "n_expert",
        "n_expert_used",
        "n_ff_expert",
        "n_expert_shared",
        "n_layer_dense_lead",
        "sliding_window",
        "swa_layers",
        "kv_lora_rank",
        "q_lora_rank",
        "qk_rope_head_dim",
        "head_dim_k_mla",
        "head_dim_v_mla",
    ):
        assert getattr(back, field) == getattr(spec, field), field


def test_llama3_models_carry_rope_freqs_and_tied_ones_no_output() -> None:
    _, spec = small_spec("llama", n_layer=2, rope_freqs=True, tied_embeddings=True)
    shapes = _shapes(spec)
    assert shapes["rope_freqs.weight"] == (32,)
    assert "output.weight" not in shapes
    assert spec.tied_embeddings


def test_qwen2_has_qkv_biases_and_qwen3_has_qk_norms_instead() -> None:
    q2 = _shapes(small_spec("qwen2", n_layer=1)[1])
    q3 = _shapes(small_spec("qwen3", n_layer=1)[1])
    assert q2["blk.0.attn_k.bias"] == (64,)
    assert "blk.0.attn_k_norm.weight" not in q2
    assert q3["blk.0.attn_k_norm.weight"] == (64,)
    assert "blk.0.attn_k.bias" not in q3


def test_gemma_has_post_norms_and_no_output_tensor() -> None:
    shapes = _shapes(small_spec("gemma3", n_layer=1)[1])
    assert "blk.0.post_attention_norm.weight" in shapes
    assert "blk.0.post_ffw_norm.weight" in shapes
    assert "output.weight" not in shapes


def test_phi3_fuses_qkv_and_gate_up() -> None:
    p, spec = small_spec("phi3", n_layer=1)
    shapes = _shapes(spec)
    assert shapes["blk.0.attn_qkv.weight"] == (256, 256 + 2 * 64)
    assert shapes["blk.0.ffn_up.weight"] == (256, 2 * p.n_ff[0])
    assert "blk.0.ffn_gate.weight" not in shapes


def test_moe_experts_are_three_dimensional_and_routers_stay_f32() -> None:
    _, spec = small_spec("qwen3moe", n_layer=1)
    by_name = {t.name: t for t in spec.tensors}
    assert by_name["blk.0.ffn_gate_exps.weight"].shape == (256, 256, 16)
    assert by_name["blk.0.ffn_down_exps.weight"].shape == (256, 256, 16)
    assert by_name["blk.0.ffn_gate_inp.weight"].ggml_type == F32
    assert by_name["blk.0.ffn_up_exps.weight"].ggml_type == F16


def test_deepseek2_has_mla_tensors_dense_lead_layers_and_shared_experts() -> None:
    _, spec = small_spec("deepseek2", n_layer=3)
    shapes = _shapes(spec)
    assert shapes["blk.0.attn_q_a.weight"] == (256, 128)
    assert shapes["blk.0.attn_q_b.weight"] == (128, 4 * 96)
    assert shapes["blk.0.attn_kv_a_mqa.weight"] == (256, 256 + 32)
    assert shapes["blk.0.attn_k_b.weight"] == (64, 256, 4)
    assert shapes["blk.0.attn_v_b.weight"] == (256, 64, 4)
    assert "blk.0.ffn_gate.weight" in shapes and "blk.0.ffn_gate_exps.weight" not in shapes
    assert shapes["blk.1.ffn_down_exps.weight"] == (256, 256, 8)
    assert shapes["blk.1.ffn_up_shexp.weight"] == (256, 256)
    assert shapes["blk.1.exp_probs_b.bias"] == (8,)
    assert "blk.1.attn_kv_b.weight" not in shapes


def test_gpt_oss_has_sinks_biases_and_mxfp4_experts() -> None:
    _, spec = small_spec("gpt-oss", n_layer=1)
    by_name = {t.name: t for t in spec.tensors}
    assert by_name["blk.0.attn_sinks.weight"].shape == (8,)
    assert by_name["blk.0.ffn_gate_exps.bias"].shape == (320, 4)
    assert by_name["blk.0.ffn_up_exps.weight"].ggml_type == MXFP4
    assert by_name["blk.0.attn_output.bias"].shape == (320,)
    assert "blk.0.ffn_norm.weight" not in by_name


def test_swa_patterns_follow_llama_cpps_set_swa_pattern() -> None:
    assert swa_pattern(6, 2) == (True, False, True, False, True, False)
    assert swa_pattern(12, 6) == (True,) * 5 + (False,) + (True,) * 5 + (False,)
    assert swa_pattern(4, 4, dense_first=True) == (False, True, True, True)
    assert swa_pattern(3, 0) == (True, True, True)
    assert swa_pattern(3, 1) == (False, False, False)


def test_unsupported_architecture_and_bad_parameters_are_refused() -> None:
    with pytest.raises(RigfitError, match="mamba"):
        generate_tensors(
            ArchParams("mamba", 2, 64, 300, per_layer(1, 2), per_layer(1, 2), per_layer(64, 2), 64, 64)
        )
    with pytest.raises(RigfitError, match="entries for 2 layers"):
        ArchParams("llama", 2, 64, 300, (1,), per_layer(1, 2), per_layer(64, 2), 64, 64)
    with pytest.raises(RigfitError, match="experts used"):
        ArchParams(
            "qwen3moe", 1, 64, 300, (1,), (1,), (64,), 64, 64, n_expert=4, n_expert_used=8, n_ff_expert=32
        )


def test_build_spec_applies_the_requested_file_type() -> None:
    params, f16 = small_spec("llama", n_layer=2)
    q8 = build_spec(params, id="x", name="x", source="config", file_type="Q8_0")
    assert q8.file_type == "Q8_0"
    assert {t.ggml_type for t in q8.tensors} == {F32, 8}
    assert f16.file_type == "F16"
