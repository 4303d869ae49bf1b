"""load_model_spec: one door for the demo, GGUF files (split too), config.json and catalog ids."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from app.core.demo import DEMO_MODEL_NAME
from app.core.errors import BadModelFile, UnknownName
from app.core.model_source import clear_cache, load_model_spec
from tests.core.gguf_builders import small_spec, write_spec_gguf

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hf"


def test_demo_is_the_bundled_smollm2_gguf_with_its_real_types() -> None:
    spec = load_model_spec("demo")
    assert (spec.id, spec.name, spec.source, spec.file_type) == ("demo", DEMO_MODEL_NAME, "gguf", "Q4_1")
    assert (spec.architecture, spec.n_layer, spec.n_embd, spec.n_vocab) == ("llama", 30, 576, 49152)
    assert (spec.n_head[0], spec.n_head_kv[0], spec.n_ctx_train) == (9, 3, 8192)
    assert spec.tied_embeddings and spec.chat_template
    assert spec.file_size_bytes == Path(spec.paths[0]).stat().st_size


def test_repeated_loads_of_an_unchanged_gguf_are_served_from_the_cache() -> None:
    assert load_model_spec("demo") is load_model_spec("DEMO")


def test_a_rewritten_gguf_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    write_spec_gguf(path, small_spec("llama", n_layer=2)[1])
    first = load_model_spec(str(path))
    write_spec_gguf(path, small_spec("llama", n_layer=3)[1])
    assert load_model_spec(str(path)).n_layer == 3
    assert first.n_layer == 2


def test_a_quant_naming_the_files_type_is_accepted_and_another_is_ignored_with_a_note() -> None:
    assert load_model_spec("demo", "q4_1").notes == ()
    noted = load_model_spec("demo", "Q4_K_M")
    assert noted.file_type == "Q4_1"
    assert "--quant Q4_K_M ignored" in noted.notes[0]


def test_a_split_gguf_loads_whole_from_its_first_part(tmp_path: Path) -> None:
    _, spec = small_spec("qwen3", n_layer=2)
    whole = write_spec_gguf(tmp_path / "whole.gguf", spec)
    w = GGUFWriter(str(tmp_path / "split.gguf"), "qwen3", split_max_tensors=8)
    ref = load_model_spec(str(whole))
    for key, value in ref.metadata.items():
        if key.startswith("qwen3.") and isinstance(value, int):
            w.add_uint32(key, value)
    w.add_float32("qwen3.attention.layer_norm_rms_epsilon", 1e-6)
    for t in spec.tensors:
        w.add_tensor(
            t.name, np.zeros(tuple(reversed(t.shape)), dtype=np.float16 if t.ggml_type == 1 else np.float32)
        )
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    parts = sorted(tmp_path.glob("split-*-of-*.gguf"))
    assert len(parts) > 2
    loaded = load_model_spec(str(parts[0]))
    assert loaded.id == "split"
    assert loaded.paths == tuple(str(p) for p in parts)
    assert [t.name for t in loaded.tensors] == [t.name for t in spec.tensors]
    assert max(t.file_index for t in loaded.tensors) == len(parts) - 1
    assert loaded.n_layer == 2 and loaded.n_head == ref.n_head


def test_a_config_json_file_or_its_folder_is_planned_at_the_requested_quant(tmp_path: Path) -> None:
    by_file = load_model_spec(str(FIXTURES / "phi-4.json"), "Q5_K_M")
    assert (by_file.source, by_file.file_type, by_file.architecture) == ("config", "Q5_K_M", "phi3")
    folder = tmp_path / "Phi-4"
    folder.mkdir()
    shutil.copy(FIXTURES / "phi-4.json", folder / "config.json")
    assert load_model_spec(str(folder)).file_type == "Q4_K_M"


def test_catalog_ids_are_case_insensitive_and_typos_suggest_ids() -> None:
    spec = load_model_spec("Qwen3-8B", "Q8_0")
    assert (spec.id, spec.source, spec.file_type) == ("qwen3-8b", "catalog", "Q8_0")
    with pytest.raises(UnknownName, match=r"did you mean.*qwen3-8b"):
        load_model_spec("qwen3-8")


def test_a_gguf_without_the_suffix_is_recognised_by_its_magic(tmp_path: Path) -> None:
    path = write_spec_gguf(tmp_path / "model.bin", small_spec("llama", n_layer=2)[1])
    assert load_model_spec(str(path)).source == "gguf"


def test_missing_files_text_files_and_empty_folders_are_bad_model_files(tmp_path: Path) -> None:
    with pytest.raises(BadModelFile, match="not found"):
        load_model_spec(str(tmp_path / "absent.gguf"))
    (tmp_path / "fake.gguf").write_text("not a model")
    with pytest.raises(BadModelFile, match="not a GGUF file"):
        load_model_spec(str(tmp_path / "fake.gguf"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BadModelFile, match=r"neither a GGUF model nor a config\.json"):
        load_model_spec(str(tmp_path / "notes.txt"))
    write_spec_gguf(tmp_path / "inside.gguf", small_spec("llama", n_layer=2)[1])
    with pytest.raises(BadModelFile, match="pass that file"):
        load_model_spec(str(tmp_path))


def test_a_truncated_download_is_reported_as_such(tmp_path: Path) -> None:
    path = write_spec_gguf(tmp_path / "m.gguf", small_spec("llama", n_layer=2)[1])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    clear_cache()
    with pytest.raises(BadModelFile, match="truncated"):
        load_model_spec(str(path))


def test_an_unknown_architecture_with_generic_keys_still_gives_a_spec(tmp_path: Path) -> None:
    w = GGUFWriter(str(tmp_path / "odd.gguf"), "futurenet")
    w.add_uint32("futurenet.block_count", 2)
    w.add_uint32("futurenet.embedding_length", 64)
    w.add_uint32("futurenet.attention.head_count", 4)
    w.add_array("futurenet.attention.head_count_kv", [4, 2])
    w.add_uint32("futurenet.attention.sliding_window", 16)
    w.add_key_value("futurenet.attention.sliding_window_pattern", [True, False], 9)
    w.add_tensor("blk.0.w.weight", np.zeros((64, 64), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    spec = load_model_spec(str(tmp_path / "odd.gguf"))
    assert (spec.architecture, spec.n_layer, spec.n_head_kv, spec.head_dim_k) == ("futurenet", 2, (4, 2), 16)
    assert (spec.sliding_window, spec.swa_layers) == (16, (True, False))


def test_an_unknown_architecture_without_generic_keys_is_named(tmp_path: Path) -> None:
    w = GGUFWriter(str(tmp_path / "odd.gguf"), "mystery")
    w.add_tensor("x.weight", np.zeros((8, 8), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(BadModelFile, match="'mystery' architecture"):
        load_model_spec(str(tmp_path / "odd.gguf"))


def test_a_misspelt_quant_is_refused_before_any_file_is_read() -> None:
    with pytest.raises(UnknownName, match="Q4_K_M"):
        load_model_spec("/nonexistent/x.gguf", "Q4_K_N")
