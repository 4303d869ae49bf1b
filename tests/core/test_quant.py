"""Quantization: tensor type tables and llama.cpp's per-tensor file-type rules.

The strongest checks run llama.cpp's own quantizer (``llama_model_quantize`` in llama-cpp-python,
CPU) on small F16 models written with ``gguf`` and compare every tensor's type with
:func:`app.core.quantizer.tensor_types`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from gguf.constants import GGML_QUANT_SIZES, LlamaFileType

from app.core import quant, quantizer
from app.core.errors import RigfitError, UnknownName
from app.core.gguf_reader import read_gguf
from app.core.gguf_spec import spec_from_gguf
from app.core.model_spec import ModelSpec
from tests.core.gguf_builders import llama_quantize, small_spec, write_spec_gguf

ISSUE_FILE_TYPES = [
    "Q2_K",
    "Q3_K_S",
    "Q3_K_M",
    "Q3_K_L",
    "Q4_0",
    "Q4_1",
    "Q4_K_S",
    "Q4_K_M",
    "Q5_0",
    "Q5_1",
    "Q5_K_S",
    "Q5_K_M",
    "Q6_K",
    "Q8_0",
    "F16",
    "BF16",
    "IQ1_S",
    "IQ1_M",
    "IQ2_XXS",
    "IQ2_XS",
    "IQ2_S",
    "IQ2_M",
    "IQ3_XXS",
    "IQ3_XS",
    "IQ3_S",
    "IQ3_M",
    "IQ4_XS",
    "IQ4_NL",
]


def _types(spec: ModelSpec, ftype: str, **kw: bool | None) -> dict[str, str]:
    return {
        t.name: quant.type_name(ty)
        for t, ty in zip(spec.tensors, quantizer.tensor_types(spec, ftype, **kw), strict=True)
    }


# --- type tables --------------------------------------------------------------------------------


def test_block_table_agrees_with_the_gguf_package_for_every_type_it_knows() -> None:
    for t, (bs, ts) in GGML_QUANT_SIZES.items():
        assert quant.block_size(int(t)) == bs
        assert quant.bytes_per_block(int(t)) == ts
        assert quant.type_name(int(t)) == t.name


def test_q2_0_newer_than_the_gguf_package_has_its_ggml_block_size() -> None:
    assert quant.type_id("q2_0") == 42
    assert (quant.block_size(42), quant.bytes_per_block(42)) == (64, 18)


def test_tensor_bytes_sum_rows_of_whole_blocks() -> None:
    assert quant.tensor_nbytes(quant.Q4_K, (4096, 14336)) == 4096 // 256 * 144 * 14336
    assert quant.tensor_nbytes(quant.F32, (576,)) == 576 * 4
    with pytest.raises(ValueError, match="block size"):
        quant.row_nbytes(quant.Q4_K, 320)


def test_unknown_tensor_type_name_is_a_rigfit_error_with_suggestion() -> None:
    with pytest.raises(UnknownName, match="Q4_K"):
        quant.type_id("Q4K")


# --- file types ---------------------------------------------------------------------------------


def test_every_file_type_of_the_issue_is_known() -> None:
    names = quant.file_type_names()
    for name in [*ISSUE_FILE_TYPES, "MXFP4_MOE"]:
        assert name in names


@pytest.mark.parametrize("ft", list(LlamaFileType))
def test_file_type_from_gguf_names_every_llama_ftype_value(ft: LlamaFileType) -> None:
    if ft == LlamaFileType.GUESSED:
        return
    name = quant.file_type_from_gguf(int(ft))
    assert name == ft.name.removeprefix("MOSTLY_").removeprefix("ALL_")


def test_file_type_from_gguf_strips_the_guessed_flag_and_names_retired_values() -> None:
    assert quant.file_type_from_gguf(1024 | 15) == "Q4_K_M"
    assert quant.file_type_from_gguf(4) == "Q4_1_SOME_F16"
    with pytest.raises(UnknownName):
        quant.file_type_from_gguf(999)


def test_file_type_names_are_case_insensitive_with_aliases() -> None:
    assert quant.normalize_file_type("q4_k_m") == "Q4_K_M"
    assert quant.normalize_file_type("mxfp4") == "MXFP4_MOE"
    assert quant.normalize_file_type("LLAMA_FTYPE_MOSTLY_IQ3_XS") == "IQ3_XS"


def test_unknown_file_type_raises_with_the_closest_names() -> None:
    with pytest.raises(UnknownName, match=r"did you mean .*Q4_K_M"):
        quantizer.apply_file_type(small_spec("llama")[1], "Q4_KM")


# --- the rules, on known shapes ------------------------------------------------------------------


def test_applying_q4_1_to_the_demo_models_shapes_reproduces_its_tensor_types(demo_model_path: str) -> None:
    spec = spec_from_gguf(read_gguf(demo_model_path))
    redone = quantizer.apply_file_type(spec, "Q4_1")
    assert [t.ggml_type for t in redone.tensors] == [t.ggml_type for t in spec.tensors]
    # token_embd is tied (no output.weight): it gets the output's Q6_K, which falls back to Q8_0
    # because 576 is not a multiple of 256.
    assert _types(spec, "Q4_1")["token_embd.weight"] == "Q8_0"


def test_norms_biases_and_routers_keep_their_type_in_every_mix() -> None:
    _, spec = small_spec("gpt-oss", n_layer=2)
    for ftype in ("Q4_K_M", "Q8_0", "IQ2_XXS", "MXFP4_MOE", "F16"):
        got = _types(spec, ftype)
        for t in spec.tensors:
            if t.name.endswith(("_norm.weight", ".bias", "ffn_gate_inp.weight", "attn_sinks.weight")):
                assert got[t.name] == "F32", (ftype, t.name)


def test_q4_k_m_gives_six_bits_to_attn_v_and_ffn_down_on_use_more_bits_layers() -> None:
    _, spec = small_spec("llama", n_layer=8)
    got = _types(spec, "Q4_K_M")
    # use_more_bits(i, 8): i < 1, i >= 7, or (i - 1) % 3 == 2
    more = {0, 3, 6, 7}
    for i in range(8):
        expected = "Q6_K" if i in more else "Q4_K"
        assert got[f"blk.{i}.attn_v.weight"] == expected
        assert got[f"blk.{i}.ffn_down.weight"] == expected
        assert got[f"blk.{i}.attn_q.weight"] == "Q4_K"
    assert got["output.weight"] == "Q6_K"
    assert got["token_embd.weight"] == "Q4_K"


def test_tied_embeddings_quantize_token_embd_like_the_output() -> None:
    _, tied = small_spec("gemma3", n_layer=6)
    assert _types(tied, "Q4_K_M")["token_embd.weight"] == "Q6_K"
    assert _types(tied, "IQ2_XXS")["token_embd.weight"] == "Q5_K"


def test_rows_not_a_multiple_of_the_block_fall_back_along_llama_cpps_chain() -> None:
    _, spec = small_spec("llama", n_layer=4, n_embd=320, n_ff=200)
    q4km = _types(spec, "Q4_K_M")
    assert q4km["blk.1.attn_q.weight"] == "Q5_0"  # Q4_K -> Q5_0 (320 % 256 != 0)
    assert q4km["blk.3.attn_v.weight"] == "Q8_0"  # Q6_K (last layer) -> Q8_0
    assert q4km["blk.0.ffn_down.weight"] == "F16"  # 200 % 32 != 0: no block type fits
    assert _types(spec, "IQ3_S")["blk.1.attn_q.weight"] == "IQ4_NL"
    assert _types(spec, "Q5_K_S")["blk.1.attn_q.weight"] == "Q5_1"


def test_a_70b_llama_gets_q5_k_attn_v_where_others_get_q3_k_or_q4_k() -> None:
    _, big = small_spec("llama", n_layer=80)
    _, small = small_spec("llama", n_layer=40)
    assert _types(big, "Q3_K_S")["blk.10.attn_v.weight"] == "Q5_K"
    assert _types(small, "Q3_K_S")["blk.10.attn_v.weight"] == "Q3_K"
    assert _types(big, "Q4_K_S")["blk.10.attn_v.weight"] == "Q5_K"


def test_an_80_layer_qwen2_counts_as_70b_but_an_80_layer_phi3_does_not() -> None:
    _, qwen = small_spec("qwen2", n_layer=80)
    _, phi = small_spec("phi3", n_layer=80)
    assert _types(qwen, "Q3_K_S")["blk.10.attn_v.weight"] == "Q5_K"
    assert _types(phi, "Q3_K_S")["blk.10.attn_qkv.weight"] == "Q3_K"


def test_eight_expert_models_keep_attn_k_and_attn_v_at_q8_0() -> None:
    _, spec = small_spec("llama", n_layer=4, n_expert=8, n_expert_used=2, n_ff=256)
    got = _types(spec, "Q4_K_M")
    assert got["blk.2.attn_v.weight"] == "Q8_0"
    assert got["blk.2.attn_k.weight"] == "Q8_0"
    assert _types(spec, "Q3_K_M")["blk.2.attn_output.weight"] == "Q5_K"


def test_mxfp4_moe_puts_experts_in_mxfp4_and_the_rest_in_q8_0() -> None:
    _, spec = small_spec("qwen3moe", n_layer=2)
    got = _types(spec, "MXFP4_MOE")
    assert got["blk.0.ffn_up_exps.weight"] == "MXFP4"
    assert got["blk.0.attn_q.weight"] == "Q8_0"
    assert got["output.weight"] == "Q8_0"
    assert got["blk.0.ffn_gate_inp.weight"] == "F32"


def test_an_importance_matrix_changes_iq4_xs_ffn_down_on_the_first_layers() -> None:
    _, spec = small_spec("llama", n_layer=16, n_head_kv=4)
    assert _types(spec, "IQ4_XS", imatrix=False)["blk.1.ffn_down.weight"] == "Q5_K"
    assert _types(spec, "IQ4_XS", imatrix=True)["blk.1.ffn_down.weight"] == "IQ4_XS"
    assert _types(spec, "Q4_0", imatrix=True)["blk.0.ffn_down.weight"] == "Q4_1"
    assert _types(spec, "Q4_0", imatrix=False)["blk.0.ffn_down.weight"] == "Q4_0"


def test_iq2_and_iq1_mixes_need_an_importance_matrix_but_k_quants_do_not() -> None:
    _, spec = small_spec("llama")
    for ftype in ("IQ1_S", "IQ2_XXS", "IQ2_M", "IQ3_XXS", "IQ3_XS", "Q2_K_S"):
        assert quantizer.file_type_requires_imatrix(spec, ftype), ftype
    for ftype in ("Q2_K", "Q4_K_M", "IQ4_XS", "IQ3_S", "IQ3_M"):
        assert not quantizer.file_type_requires_imatrix(spec, ftype), ftype


def test_a_block_type_without_fallback_is_refused_like_llama_cpp_does() -> None:
    _, spec = small_spec("llama", n_layer=2, n_embd=320, n_ff=320)
    with pytest.raises(RigfitError, match="no fallback"):
        quantizer.apply_file_type(spec, "Q1_0")


def test_sizes_follow_the_mix_order_for_a_dense_model() -> None:
    _, spec = small_spec("llama", n_layer=8)
    sizes = {
        ft: quant.spec_nbytes(quantizer.apply_file_type(spec, ft))
        for ft in ("Q8_0", "Q6_K", "Q4_K_M", "Q2_K")
    }
    assert sizes["Q8_0"] > sizes["Q6_K"] > sizes["Q4_K_M"] > sizes["Q2_K"]


# --- caching ------------------------------------------------------------------------------------


def test_apply_file_type_returns_the_cached_spec_for_the_same_spec_and_mix() -> None:
    _, spec = small_spec("llama")
    first = quantizer.apply_file_type(spec, "Q4_K_M")
    assert quantizer.apply_file_type(spec, "q4_k_m") is first
    assert first.file_type == "Q4_K_M"
    assert first.id == spec.id


def test_cached_types_never_leak_between_specs_with_the_same_id() -> None:
    _, a = small_spec("llama", n_layer=8)
    _, b = small_spec("llama", n_layer=8, n_embd=320)
    assert a.id == b.id
    ta = Counter(t.ggml_type for t in quantizer.apply_file_type(a, "Q4_K_M").tensors)
    tb = Counter(t.ggml_type for t in quantizer.apply_file_type(b, "Q4_K_M").tensors)
    assert ta != tb


def test_reapplying_a_mix_to_a_quantized_spec_gives_the_same_types_as_from_f16() -> None:
    _, spec = small_spec("qwen3moe", n_layer=4)
    via_q8 = quantizer.apply_file_type(quantizer.apply_file_type(spec, "Q8_0"), "Q3_K_M")
    direct = quantizer.apply_file_type(spec, "Q3_K_M")
    assert [t.ggml_type for t in via_q8.tensors] == [t.ggml_type for t in direct.tensors]


# --- against llama.cpp's quantizer ----------------------------------------------------------------

# Shapes chosen to reach every rule: GQA 4 and no GQA, 70B, 8 experts, MoE, MLA, fused qkv, tied
# embeddings, rows that are not multiples of 256 or of 32.
SHAPES: dict[str, tuple[str, dict[str, object]]] = {
    "llama-gqa4": ("llama", {}),
    "llama-lean": ("llama", {"n_ff": 256, "n_vocab": 259}),
    "llama-nogqa": ("llama", {"n_head_kv": 4}),
    "llama-odd-rows": ("llama", {"n_embd": 320, "n_ff": 200, "n_layer": 4}),
    "llama-70b": ("llama", {"n_layer": 80, "n_vocab": 259}),
    "mixtral-8x": ("llama", {"n_layer": 4, "n_expert": 8, "n_expert_used": 2, "n_ff": 256, "n_vocab": 259}),
    "qwen2": ("qwen2", {}),
    "qwen3moe": ("qwen3moe", {"n_layer": 4}),
    "gemma3-tied": ("gemma3", {"n_layer": 6}),
    "phi3-qkv": ("phi3", {}),
    "deepseek2-mla": ("deepseek2", {"n_layer": 4}),
    "gpt-oss": ("gpt-oss", {"n_layer": 2}),
}
QUICK_TYPES = (
    "F16",
    "Q8_0",
    "Q6_K",
    "Q5_K_M",
    "Q5_K_S",
    "Q4_K_M",
    "Q4_K_S",
    "Q4_0",
    "Q3_K_L",
    "Q3_K_M",
    "Q3_K_S",
    "Q2_K",
)
SLOW_TYPES = ("BF16", "Q5_1", "Q5_0", "Q4_1", "IQ4_NL", "IQ4_XS", "IQ3_M", "IQ3_S", "MXFP4_MOE")
IMATRIX_TYPES = ("IQ3_XS", "IQ3_XXS", "Q2_K_S", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S")


@pytest.fixture(scope="module")
def f16_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, ModelSpec]]:
    folder = tmp_path_factory.mktemp("f16")
    out: dict[str, tuple[Path, ModelSpec]] = {}
    for key, (arch, kw) in SHAPES.items():
        _, spec = small_spec(arch, **kw)
        out[key] = (write_spec_gguf(folder / f"{key}.gguf", spec), spec)
    return out


def _compare_with_llama_cpp(
    models: dict[str, tuple[Path, ModelSpec]], key: str, ftype: str, tmp: Path
) -> None:
    src, spec = models[key]
    needs = quantizer.file_type_requires_imatrix(spec, ftype)
    out = llama_quantize(src, tmp / f"{key}-{ftype}.gguf", ftype, imatrix=needs, tensors=spec)
    written = {t.name: quant.type_name(t.ggml_type) for t in read_gguf(out).tensors}
    predicted = _types(spec, ftype)
    wrong = {n: (written[n], predicted[n]) for n in written if written[n] != predicted[n]}
    assert not wrong, f"{key} {ftype}: (llama.cpp, Rigfit) differ: {wrong}"
    assert set(written) == set(predicted)


@pytest.mark.slow
@pytest.mark.parametrize("ftype", QUICK_TYPES)
@pytest.mark.parametrize("key", list(SHAPES))
def test_predicted_types_match_llama_cpps_quantizer(
    f16_models: dict[str, tuple[Path, ModelSpec]], key: str, ftype: str, tmp_path: Path
) -> None:
    _compare_with_llama_cpp(f16_models, key, ftype, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("ftype", SLOW_TYPES)
@pytest.mark.parametrize("key", ["llama-gqa4", "llama-odd-rows", "mixtral-8x", "deepseek2-mla", "gpt-oss"])
def test_predicted_iq4_iq3_and_legacy_types_match_llama_cpps_quantizer(
    f16_models: dict[str, tuple[Path, ModelSpec]], key: str, ftype: str, tmp_path: Path
) -> None:
    _compare_with_llama_cpp(f16_models, key, ftype, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("ftype", IMATRIX_TYPES)
@pytest.mark.parametrize("key", ["llama-lean", "mixtral-8x"])
def test_predicted_low_bit_types_match_llama_cpp_with_an_importance_matrix(
    f16_models: dict[str, tuple[Path, ModelSpec]], key: str, ftype: str, tmp_path: Path
) -> None:
    _compare_with_llama_cpp(f16_models, key, ftype, tmp_path)
