"""Numbers from model files are checked where a spec is made: GGUF, config.json and the catalog alike.

Each case of issue 17 ("Numbers from files are used unchecked") is one test here: a NaN or infinite
count, a huge layer count, values past 2**63, a negative head size, a KV head count that wraps. Every
one is a BadModelFile naming the key, and nothing is planned from it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from app.core import limits
from app.core.catalog import catalog_spec, load_model_catalog
from app.core.errors import BadModelFile, RigfitError
from app.core.hf_config import spec_from_config_file
from app.core.memory import profile
from app.core.model_source import clear_cache, load_model_spec
from app.core.placement import plan
from app.core.settings import Settings
from app.hardware.catalog import parse_rig_expression

BASE: dict[str, tuple[str, object]] = {
    "llama.block_count": ("uint32", 2),
    "llama.embedding_length": ("uint32", 64),
    "llama.attention.head_count": ("uint32", 4),
    "llama.feed_forward_length": ("uint32", 128),
}


def _gguf(path: Path, **overrides: tuple[str, object]) -> Path:
    """A small llama GGUF (two layers) with some metadata values replaced, written with ``gguf``."""
    w = GGUFWriter(str(path), "llama")
    for key, (kind, value) in {**BASE, **overrides}.items():
        getattr(w, f"add_{kind}")(key, value)
    w.add_tensor("token_embd.weight", np.zeros((32, 64), dtype=np.float32))
    for i in range(2):
        w.add_tensor(f"blk.{i}.attn_q.weight", np.zeros((64, 64), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    clear_cache()
    return path


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"llama.block_count": ("float32", float("nan"))}, "'llama.block_count' should be a whole number, not nan"),
        ({"llama.block_count": ("float32", float("inf"))}, "'llama.block_count' should be a whole number"),
        ({"llama.block_count": ("uint32", 1_000_000)}, "'llama.block_count' is 1000000, outside the 1 to 1024"),
        ({"llama.block_count": ("uint32", 1 << 28)}, "'llama.block_count' is 268435456"),
        ({"llama.block_count": ("uint64", 1 << 63)}, "'llama.block_count' is 9223372036854775808"),
        ({"llama.attention.head_count_kv": ("uint64", 1 << 63)}, "'llama.attention.head_count_kv' is"),
        ({"llama.attention.head_count_kv": ("uint64", 1 << 62)}, "'llama.attention.head_count_kv' is 4611686018427387904"),
        ({"llama.attention.value_length": ("int32", -(2**31))}, "'llama.attention.value_length' is -2147483648"),
        ({"llama.embedding_length": ("float64", 64.5)}, "'llama.embedding_length' should be a whole number"),
        ({"llama.feed_forward_length": ("float32", float("-inf"))}, "'llama.feed_forward_length'"),
        ({"llama.expert_count": ("uint64", (1 << 64) - 1)}, "'llama.expert_count'"),
        ({"llama.attention.head_count": ("uint32", 8)}, "KV heads"),  # fewer heads than the default KV
        # attn_q weights with no heads divided by zero in the tensor split's per-head shares
        ({"llama.attention.head_count": ("uint32", 0)}, "has attention weights ('blk.0.attn_q.weight') but 0"),
    ],
    ids=[
        "nan-layers", "inf-layers", "1e6-layers", "2^28-layers", "2^63-layers", "2^63-kv-heads",
        "2^62-kv-heads-wrap", "negative-value-length", "fractional-embd", "-inf-ffn", "2^64-1-experts",
        "kv-heads-above-heads", "attention-weights-without-heads",
    ],
)  # fmt: skip
def test_bad_numbers_in_a_gguf_are_one_clear_error(
    tmp_path: Path, overrides: dict[str, tuple[str, object]], words: str
) -> None:
    if "KV heads" in words:
        overrides = {**overrides, "llama.attention.head_count_kv": ("uint32", 16)}
    path = _gguf(tmp_path / "bad.gguf", **overrides)
    with pytest.raises(BadModelFile) as info:
        load_model_spec(str(path))
    message = str(info.value)
    assert words in message and "\n" not in message
    assert str(path) in message  # which file


def test_the_same_small_gguf_with_sane_numbers_plans(tmp_path: Path) -> None:
    spec = load_model_spec(str(_gguf(tmp_path / "good.gguf")))
    p = plan(parse_rig_expression("RTX 3090"), spec, Settings(ctx=4096))
    assert p.devices[0].kv_mib > 0 and p.fits


def test_a_huge_trained_context_or_window_is_capped_not_refused(tmp_path: Path) -> None:
    path = _gguf(
        tmp_path / "long.gguf",
        **{"llama.context_length": ("uint64", 1 << 40), "gemma2.attention.sliding_window": ("uint32", 7)},
    )
    spec = load_model_spec(str(path))
    assert spec.n_ctx_train == limits.MAX_CTX


def _config(tmp_path: Path, **changes: object) -> Path:
    data: dict[str, object] = {
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "vocab_size": 1000,
    }
    data.update(changes)
    path = tmp_path / "config.json"
    # json.dumps writes NaN and Infinity, as Python-made configs sometimes hold them.
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"num_hidden_layers": float("nan")}, "'num_hidden_layers' should be a whole number, not nan"),
        ({"num_hidden_layers": float("inf")}, "'num_hidden_layers' should be a whole number, not inf"),
        ({"num_hidden_layers": 100000}, "'num_hidden_layers' is 100000, outside the 1 to 1024"),
        ({"num_hidden_layers": 10_000_000}, "'num_hidden_layers' is 10000000"),
        ({"head_dim": float("inf")}, "'head_dim' should be a whole number, not inf"),
        ({"hidden_size": 2**70}, "'hidden_size' is 1180591620717411303424"),
        ({"vocab_size": -5}, "'vocab_size' is -5"),
        ({"num_key_value_heads": 1e300}, "'num_key_value_heads' is"),
        ({"model_type": "gemma2", "architectures": ["Gemma2ForCausalLM"], "sliding_window": float("nan")},
         "'sliding_window' should be a whole number, not nan"),
    ],
    ids=["nan-layers", "inf-layers", "1e5-layers", "1e7-layers", "inf-head-dim", "2^70-hidden",
         "negative-vocab", "1e300-kv-heads", "nan-window"],
)  # fmt: skip
def test_bad_numbers_in_a_config_json_are_one_clear_error(
    tmp_path: Path, changes: dict[str, object], words: str
) -> None:
    with pytest.raises(BadModelFile) as info:
        spec_from_config_file(_config(tmp_path, **changes))
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_config_with_a_huge_max_position_is_capped(tmp_path: Path) -> None:
    spec = spec_from_config_file(_config(tmp_path, max_position_embeddings=10**15))
    assert spec.n_ctx_train == limits.MAX_CTX


CATALOG_ENTRY = """
[[model]]
id = "odd"
name = "Odd"
hf_repo = "x/y"
config_url = "https://example.org/config.json"
params_b = {params_b}
params_url = "https://example.org"
license = "mit"
quants = ["Q4_K_M"]
default_quant = "Q4_K_M"

[model.config]
architectures = ["LlamaForCausalLM"]
hidden_size = 256
intermediate_size = 512
num_attention_heads = 4
num_hidden_layers = {layers}
vocab_size = 1000
"""


@pytest.mark.parametrize(
    ("params_b", "layers", "words"),
    [
        ("nan", "2", "'params_b' must be a positive number"),
        ("1.0", "nan", "'num_hidden_layers' should be a whole number, not nan"),
        ("1.0", "inf", "'num_hidden_layers' should be a whole number, not inf"),
        ("1.0", "100000000", "'num_hidden_layers' is 100000000"),
    ],
)
def test_the_catalog_goes_through_the_same_checks(
    tmp_path: Path, params_b: str, layers: str, words: str
) -> None:
    path = tmp_path / "models.toml"
    path.write_text(CATALOG_ENTRY.format(params_b=params_b, layers=layers))
    with pytest.raises(BadModelFile, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_model_catalog(path)
        catalog_spec("odd", path=path)


def test_a_spec_built_in_code_is_checked_before_it_is_planned(tmp_path: Path) -> None:
    spec = load_model_spec(str(_gguf(tmp_path / "ok.gguf")))
    for bad in (
        replace(spec, n_head_kv=(1 << 62, 1 << 62)),
        replace(spec, head_dim_v=-(2**31)),
        replace(spec, n_embd=1 << 40),
        replace(spec, n_ff=(1,) * 5),
    ):
        with pytest.raises(RigfitError):
            profile(bad)


def test_settings_out_of_range_are_refused_by_the_planner(tmp_path: Path) -> None:
    spec = load_model_spec(str(_gguf(tmp_path / "ok.gguf")))
    rig = parse_rig_expression("2x RTX 3090")
    for bad in (
        Settings(ctx=4294971392),
        Settings(n_batch=1 << 40),
        Settings(n_ubatch=0),
        Settings(tensor_split=(1e308, 1e308)),
        Settings(n_gpu_layers=1 << 40),
    ):
        with pytest.raises(RigfitError):
            plan(rig, spec, bad)
