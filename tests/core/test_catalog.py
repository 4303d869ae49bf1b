"""The model catalog: complete, consistent entries whose tensors add up to the published size."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.core.catalog import CatalogEntry, catalog_spec, find_entry, load_model_catalog
from app.core.errors import BadModelFile, UnknownName
from app.core.quant import file_type_names, spec_nbytes

ISSUE_MODELS = [
    "llama-3.2-1b",
    "llama-3.2-3b",
    "llama-3.1-8b",
    "llama-3.3-70b",
    "llama-3.1-405b",
    "qwen2.5-7b",
    "qwen2.5-14b",
    "qwen2.5-32b",
    "qwen2.5-72b",
    "qwen3-8b",
    "qwen3-14b",
    "qwen3-32b",
    "qwen3-30b-a3b",
    "qwen3-235b-a22b",
    "deepseek-r1-distill-llama-70b",
    "deepseek-r1-distill-qwen-32b",
    "deepseek-v3",
    "mistral-7b",
    "mistral-small-24b",
    "mistral-large-123b",
    "mixtral-8x7b",
    "gemma-2-9b",
    "gemma-2-27b",
    "gemma-3-12b",
    "gemma-3-27b",
    "phi-4",
    "gpt-oss-20b",
    "gpt-oss-120b",
    "smollm2-135m",
]
ENTRIES = load_model_catalog()
IDS = [e.id for e in ENTRIES]


def test_the_catalog_holds_every_model_the_issue_names() -> None:
    assert len(ISSUE_MODELS) == 29
    assert set(ISSUE_MODELS) <= set(IDS)


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_every_entry_is_complete_and_cites_its_config(entry: CatalogEntry) -> None:
    assert re.fullmatch(r"https://huggingface\.co/[\w.-]+/[\w.-]+/blob/main/config\.json", entry.config_url)
    assert entry.params_url.startswith("https://huggingface.co/")
    assert entry.hf_repo.count("/") == 1 and entry.name and entry.license
    assert entry.quants and set(entry.quants) <= set(file_type_names())
    assert entry.default_quant in entry.quants


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_parameters_counted_from_the_generated_tensors_match_the_published_count(entry: CatalogEntry) -> None:
    counted_b = catalog_spec(entry.id).n_params / 1e9
    assert counted_b == pytest.approx(entry.params_b, rel=0.02), f"{entry.id}: {counted_b:.3f}B counted"


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_every_listed_quant_gives_a_spec_smaller_than_f16(entry: CatalogEntry) -> None:
    f16_bytes = 2 * catalog_spec(entry.id).n_params
    for quant in entry.quants:
        spec = catalog_spec(entry.id, quant)
        assert spec.file_type == quant
        assert spec_nbytes(spec) <= f16_bytes * 1.001, quant


@pytest.mark.parametrize(
    ("model_id", "quant", "published_gb"),
    [
        # File sizes on the Hub (decimal GB as listed): bartowski's Llama-3.1-8B-Instruct and
        # Qwen2.5-7B-Instruct GGUFs, ggml-org's gpt-oss-20b. The header adds a few MB at most.
        ("llama-3.1-8b", "Q4_K_M", 4.92),
        ("qwen2.5-7b", "Q4_K_M", 4.68),
        ("gpt-oss-20b", "MXFP4_MOE", 12.1),
    ],
)
def test_quantized_sizes_match_files_published_on_the_hub(
    model_id: str, quant: str, published_gb: float
) -> None:
    assert spec_nbytes(catalog_spec(model_id, quant)) / 1e9 == pytest.approx(published_gb, abs=0.02)


def test_catalog_covers_gqa_tied_moe_swa_and_mla() -> None:
    specs = {i: catalog_spec(i) for i in ("llama-3.2-1b", "qwen3-235b-a22b", "gemma-3-27b", "deepseek-v3")}
    assert specs["llama-3.2-1b"].tied_embeddings
    assert specs["qwen3-235b-a22b"].n_expert == 128
    assert specs["gemma-3-27b"].sliding_window == 1024 and specs["gemma-3-27b"].n_vocab == 262144
    assert specs["deepseek-v3"].uses_mla and specs["deepseek-v3"].n_layer_dense_lead == 3


def test_lookup_is_case_insensitive_and_typos_get_suggestions() -> None:
    assert find_entry("Llama-3.1-8B").id == "llama-3.1-8b"
    with pytest.raises(UnknownName, match=r"did you mean.*llama-3\.1-8b"):
        find_entry("llama-3.1-8")
    with pytest.raises(UnknownName, match="unknown model 'nonsense-model'"):
        catalog_spec("nonsense-model")


def test_catalog_specs_are_cached_per_model_and_quant() -> None:
    assert catalog_spec("qwen3-8b", "Q5_K_M") is catalog_spec("QWEN3-8B", "q5_k_m")
    assert catalog_spec("gpt-oss-120b").file_type == "MXFP4_MOE"


def _write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "models.toml"
    path.write_text(text)
    return path


GOOD_ENTRY = """
[[model]]
id = "tiny"
name = "Tiny"
hf_repo = "a/b"
config_url = "https://huggingface.co/a/b/blob/main/config.json"
params_b = 0.1
params_url = "https://huggingface.co/a/b"
license = "mit"
quants = ["Q8_0"]
default_quant = "Q8_0"
[model.config]
architectures = ["LlamaForCausalLM"]
hidden_size = 256
intermediate_size = 512
num_hidden_layers = 2
num_attention_heads = 4
vocab_size = 300
"""


def test_a_catalog_file_can_be_given_and_broken_ones_are_bad_model_files(tmp_path: Path) -> None:
    good = _write(tmp_path / "good", GOOD_ENTRY)
    assert catalog_spec("tiny", "Q8_0", path=good).n_layer == 2
    with pytest.raises(BadModelFile, match="twice"):
        load_model_catalog(_write(tmp_path / "dup", GOOD_ENTRY * 2))
    with pytest.raises(BadModelFile, match="not valid TOML"):
        load_model_catalog(_write(tmp_path / "bad", "[[model]\nid="))
    with pytest.raises(BadModelFile, match=r"no \[model.config\]"):
        load_model_catalog(_write(tmp_path / "noconf", GOOD_ENTRY.split("[model.config]")[0]))
    with pytest.raises(UnknownName, match="Q8_0"):
        load_model_catalog(
            _write(tmp_path / "quant", GOOD_ENTRY.replace('quants = ["Q8_0"]', 'quants = ["Q8_O"]'))
        )
    with pytest.raises(BadModelFile, match="missing"):
        load_model_catalog(tmp_path / "absent.toml")
