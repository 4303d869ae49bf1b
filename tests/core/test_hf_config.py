"""ModelSpec from a Hugging Face config.json: the values llama.cpp's converter will write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.catalog import catalog_spec
from app.core.errors import BadModelFile, UnknownName
from app.core.hf_config import architecture_of, params_from_config, read_config, spec_from_config_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hf"


def _layout(spec: object) -> list[tuple[str, tuple[int, ...], int]]:
    return [(t.name, t.shape, t.ggml_type) for t in spec.tensors]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("fixture", "catalog_id"),
    [
        ("llama-3.1-8b.json", "llama-3.1-8b"),
        ("qwen3-30b-a3b.json", "qwen3-30b-a3b"),
        ("deepseek-v3.json", "deepseek-v3"),
        ("phi-4.json", "phi-4"),
        ("gpt-oss-20b", "gpt-oss-20b"),
    ],
)
def test_a_published_config_gives_the_same_tensors_as_its_catalog_entry(
    fixture: str, catalog_id: str
) -> None:
    from_file = spec_from_config_file(FIXTURES / fixture, "Q4_K_M")
    assert _layout(from_file) == _layout(catalog_spec(catalog_id, "Q4_K_M"))
    assert from_file.source == "config"


def test_llama3_config_maps_to_llama_with_gqa_rope_freqs_and_untied_output() -> None:
    p = params_from_config(read_config(FIXTURES / "llama-3.1-8b.json")[0])
    assert (p.architecture, p.n_layer, p.n_embd, p.n_vocab) == ("llama", 32, 4096, 128256)
    assert (p.n_head[0], p.n_head_kv[0], p.head_dim_k, p.n_ff[0]) == (32, 8, 128, 14336)
    assert p.rope_freqs and not p.tied_embeddings
    assert p.n_ctx_train == 131072


def test_gemma3_reads_text_config_with_transformers_defaults_and_every_sixth_layer_dense() -> None:
    spec = spec_from_config_file(FIXTURES / "gemma-3-12b-it", "Q4_K_M")
    assert spec.architecture == "gemma3"
    assert (spec.n_layer, spec.n_embd, spec.head_dim_k, spec.n_head_kv[0]) == (48, 3840, 256, 8)
    assert spec.n_vocab == 262208  # the config's; the GGUF trims to the tokenizer (catalog knows)
    assert spec.sliding_window == 1024
    assert [i for i, swa in enumerate(spec.swa_layers) if not swa] == list(range(5, 48, 6))
    assert spec.tied_embeddings


def test_gpt_oss_alternates_swa_from_the_first_layer_and_keeps_mxfp4_experts() -> None:
    spec = spec_from_config_file(FIXTURES / "gpt-oss-20b")
    assert spec.file_type == "MXFP4_MOE"  # the default mix for gpt-oss
    assert spec.swa_layers == tuple(i % 2 == 0 for i in range(24))
    assert (spec.n_expert, spec.n_expert_used, spec.n_ff_expert) == (32, 4, 2880)


def test_deepseek_v3_becomes_mla_with_one_kv_head_and_three_dense_layers() -> None:
    p = params_from_config(read_config(FIXTURES / "deepseek-v3.json")[0])
    assert p.architecture == "deepseek2"
    assert (p.n_head_kv[0], p.head_dim_k, p.head_dim_v) == (1, 576, 512)
    assert (p.head_dim_k_mla, p.head_dim_v_mla, p.kv_lora_rank, p.q_lora_rank) == (192, 128, 512, 1536)
    assert (p.n_expert, p.n_expert_used, p.n_expert_shared, p.n_layer_dense_lead) == (256, 8, 1, 3)
    assert p.expert_bias
    assert p.n_layer == 61  # the MTP layer is not converted


def test_phi4_has_no_swa_and_no_rope_factors() -> None:
    p = params_from_config(read_config(FIXTURES / "phi-4.json")[0])
    assert p.architecture == "phi3"
    assert not p.swa_layers and not p.rope_factors
    assert spec_from_config_file(FIXTURES / "phi-4.json").name == "phi-4"


def test_unsupported_model_types_are_named_with_the_supported_list() -> None:
    with pytest.raises(UnknownName, match=r"'MambaForCausalLM'.*supported model types: .*llama"):
        spec_from_config_file(FIXTURES / "mamba-130m.json")
    with pytest.raises(UnknownName, match="'bert'"):
        architecture_of({"model_type": "bert"})


def test_missing_or_broken_configs_are_bad_model_files(tmp_path: Path) -> None:
    with pytest.raises(BadModelFile, match=r"no config\.json"):
        spec_from_config_file(tmp_path)
    (tmp_path / "config.json").write_text("{ not json")
    with pytest.raises(BadModelFile, match="not valid JSON"):
        spec_from_config_file(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps([1, 2]))
    with pytest.raises(BadModelFile, match="JSON object"):
        spec_from_config_file(tmp_path)
    config = json.loads((FIXTURES / "llama-3.1-8b.json").read_text())
    del config["hidden_size"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(BadModelFile, match="hidden_size"):
        spec_from_config_file(tmp_path)
    config["hidden_size"] = "big"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(BadModelFile, match="whole number"):
        spec_from_config_file(tmp_path)


def test_qwen3_moe_with_dense_layers_in_between_is_refused() -> None:
    config = json.loads((FIXTURES / "qwen3-30b-a3b.json").read_text())
    config["mlp_only_layers"] = [0, 1]
    with pytest.raises(UnknownName, match="dense layers"):
        params_from_config(config)


def test_an_unknown_quant_for_a_config_is_refused_with_suggestions() -> None:
    with pytest.raises(UnknownName, match="Q4_K_M"):
        spec_from_config_file(FIXTURES / "llama-3.1-8b.json", "Q4_K_MM")
