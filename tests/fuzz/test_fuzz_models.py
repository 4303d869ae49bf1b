"""Fuzzing the whole path from a model file to the plan and the fit table (in-process).

GGUF headers as raw bytes (tests/fuzz/gguf_bytes.py) and written with the ``gguf`` package, byte
mutations of a valid header, config.json dicts and catalog entries: each goes to a spec, a plan on a
few rigs, the speed, advice and command export, and the fit table. See tests/fuzz/harness.py for what
is checked and docs/robustness.md for the campaign.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from app.core.errors import RigfitError
from app.core.hf_config import spec_from_config
from app.core.model_source import clear_cache, load_model_spec
from tests.fuzz import gguf_bytes as G
from tests.fuzz.conftest import scaled
from tests.fuzz.harness import CASES, exercise_bytes, exercise_spec, measured, rig
from tests.fuzz.strategies import (
    RIG_EXPRESSIONS,
    configs,
    gguf_docs,
    hostile_value,
    mutated_bytes,
    settings_for,
)

# A numpy warning (a division by zero, an overflow in a cast) is a wrong result on its way: fail on it.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


@st.composite
def rig_and_settings(draw: st.DrawFn, in_range: bool = True):  # type: ignore[no-untyped-def]
    r = rig(draw(st.sampled_from(RIG_EXPRESSIONS)))
    return r, draw(settings_for(r.n_gpus, in_range))


@scaled(30)
@given(gguf_docs(), rig_and_settings())
@measured
def test_fuzzed_gguf_headers_plan_or_are_refused_in_words(doc: G.GgufDoc, rs) -> None:  # type: ignore[no-untyped-def]
    outcome = exercise_bytes(G.encode(doc), *rs)
    CASES[f"gguf-raw:{outcome}"] += 1


SEED_DOC = G.GgufDoc(
    metadata=[
        ("general.architecture", G.Value(G.STR, "llama")),
        ("llama.block_count", G.Value(G.U32, 2)),
        ("llama.embedding_length", G.Value(G.U32, 64)),
        ("llama.attention.head_count", G.Value(G.U32, 4)),
        ("llama.feed_forward_length", G.Value(G.U32, 128)),
        ("tokenizer.ggml.tokens", G.Value(G.ARR, ["a", "b", "c"], G.STR)),
    ],
    tensors=[
        G.Tensor("token_embd.weight", (64, 32), 1, 0),
        G.Tensor("blk.0.attn_q.weight", (64, 64), 1, 4096),
        G.Tensor("blk.1.ffn_up.weight", (64, 128), 2, 12288),
    ],
    data_size=12288 + 4608,
)
SEED = G.encode(SEED_DOC)


def test_the_seed_header_itself_plans() -> None:
    assert exercise_bytes(SEED, rig("RTX 3090"), rig_settings()) == "planned and tabled"


def rig_settings():  # type: ignore[no-untyped-def]
    from app.core.settings import Settings

    return Settings(ctx=4096)


@scaled(30)
@given(mutated_bytes(SEED), rig_and_settings())
@measured
def test_byte_mutations_of_a_header_are_refused_or_planned(data: bytes, rs) -> None:  # type: ignore[no-untyped-def]
    outcome = exercise_bytes(data, *rs, with_table=False)
    CASES[f"gguf-bytes:{outcome}"] += 1


@scaled(10)
@given(
    st.dictionaries(
        st.sampled_from(["llama.block_count", "llama.attention.head_count_kv", "llama.attention.value_length",
                         "llama.embedding_length", "llama.context_length", "llama.feed_forward_length"]),
        hostile_value(2),
        max_size=3,
    ),
    rig_and_settings(),
)  # fmt: skip
@measured
def test_gguf_files_written_by_the_gguf_package(tmp_path_factory, values: dict[str, G.Value], rs) -> None:  # type: ignore[no-untyped-def]
    from gguf import GGUFValueType, GGUFWriter

    path = tmp_path_factory.mktemp("g") / "model.gguf"
    w = GGUFWriter(str(path), "llama")
    base = {"llama.block_count": 2, "llama.embedding_length": 64, "llama.attention.head_count": 4}
    for key, value in base.items():
        if key not in values:
            w.add_uint32(key, value)
    types = {G.U8: GGUFValueType.UINT8, G.I8: GGUFValueType.INT8, G.U16: GGUFValueType.UINT16,
             G.I16: GGUFValueType.INT16, G.U32: GGUFValueType.UINT32, G.I32: GGUFValueType.INT32,
             G.F32: GGUFValueType.FLOAT32, G.BOOL: GGUFValueType.BOOL, G.STR: GGUFValueType.STRING,
             G.U64: GGUFValueType.UINT64, G.I64: GGUFValueType.INT64, G.F64: GGUFValueType.FLOAT64}  # fmt: skip
    for key, v in values.items():
        if v.vtype == G.ARR:
            items = list(v.value)  # type: ignore[call-overload]
            # gguf's writer picks the array's element type itself (int32 for ints): only those fit.
            assume(all(not isinstance(x, int) or -(2**31) <= x < 2**31 for x in items))
            w.add_array(key, items)
        else:
            w.add_key_value(key, v.value, types[v.vtype])
    w.add_tensor("token_embd.weight", np.zeros((16, 64), dtype=np.float16))
    w.add_tensor("blk.0.attn_q.weight", np.zeros((64, 64), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    clear_cache()
    try:
        spec = load_model_spec(str(path))
    except RigfitError:
        CASES["gguf-writer:refused by the reader"] += 1
        return
    CASES[f"gguf-writer:{exercise_spec(spec, *rs)}"] += 1


@scaled(30)
@given(configs(), rig_and_settings())
@measured
def test_fuzzed_config_json_plans_or_is_refused_in_words(config: dict, rs) -> None:  # type: ignore[no-untyped-def]
    try:
        spec = spec_from_config(config, id="fuzz", name="fuzz", quant="Q4_K_M", origin="config.json")
    except RigfitError:
        CASES["config:refused by the reader"] += 1
        return
    CASES[f"config:{exercise_spec(spec, *rs)}"] += 1


@scaled(20)
@given(gguf_docs(), rig_and_settings(in_range=False))
@measured
def test_settings_out_of_range_never_reach_the_arithmetic(doc: G.GgufDoc, rs) -> None:  # type: ignore[no-untyped-def]
    outcome = exercise_bytes(G.encode(doc), *rs)
    assert outcome in ("refused by the reader", "refused by the planner"), outcome
    CASES[f"settings-out-of-range:{outcome}"] += 1


def test_max_bound_model_plans_within_bounds(tmp_path: Path) -> None:
    """The largest model the limits accept (1024 layers, widest everything) plans and tables."""
    from app.core import limits

    doc = G.GgufDoc(
        metadata=[
            ("general.architecture", G.Value(G.STR, "llama")),
            ("llama.block_count", G.Value(G.U32, limits.MAX_LAYERS)),
            ("llama.embedding_length", G.Value(G.U32, limits.MAX_EMBD)),
            ("llama.attention.head_count", G.Value(G.U32, 256)),
            ("llama.attention.head_count_kv", G.Value(G.U32, 256)),
            ("llama.attention.key_length", G.Value(G.U32, 1024)),
            ("llama.attention.value_length", G.Value(G.U32, 1024)),
            ("llama.feed_forward_length", G.Value(G.U32, limits.MAX_FF)),
            ("llama.context_length", G.Value(G.U32, limits.MAX_CTX)),
            ("llama.vocab_size", G.Value(G.U32, limits.MAX_VOCAB)),
        ],
        tensors=[G.Tensor(f"blk.{i}.attn_q.weight", (64, 64), 1, 0) for i in range(limits.MAX_LAYERS)],
        data_size=8192,
    )
    from app.core.settings import Settings

    for expression in RIG_EXPRESSIONS:
        outcome = exercise_bytes(G.encode(doc), rig(expression), Settings(ctx=limits.MAX_CTX))
        assert outcome.startswith("planned"), outcome


def rarely(strategy: st.SearchStrategy, usual: object) -> st.SearchStrategy:  # type: ignore[type-arg]
    """``usual`` nine times in ten, else a draw from ``strategy`` (hypothesis favours index 0)."""
    return st.sampled_from([False] * 9 + [True]).flatmap(lambda hit: strategy if hit else st.just(usual))


@st.composite
def catalog_entries(draw: st.DrawFn) -> dict:  # type: ignore[type-arg]
    from tests.fuzz.strategies import json_values

    entry = {
        "id": draw(st.sampled_from(["odd"] * 8 + ["", "x" * 300, " "])),
        "name": "Odd", "hf_repo": "x/y", "config_url": "https://e.org/c.json", "params_url": "https://e.org",
        "license": "mit", "quants": ["Q4_K_M", "Q8_0"], "default_quant": "Q4_K_M",
        "params_b": draw(rarely(st.one_of(st.floats(allow_nan=True), st.integers()), 8.0)),
        "config": draw(configs()),
    }  # fmt: skip
    if draw(rarely(st.just(True), False)):
        entry["gguf_n_vocab"] = draw(st.one_of(st.integers(-5, 2**40), st.floats(allow_nan=True)))
    if draw(rarely(st.just(True), False)):
        entry[draw(st.sampled_from(sorted(entry)))] = draw(json_values)
    return entry


@scaled(30)
@given(catalog_entries(), rig_and_settings())
@measured
def test_fuzzed_catalog_entries_plan_or_are_refused_in_words(raw: dict, rs) -> None:  # type: ignore[no-untyped-def,type-arg]
    from app.core.catalog import _parse_entry

    try:
        entry = _parse_entry(raw, 0, "models.toml")
        spec = spec_from_config(
            entry.config, id=entry.id, name=entry.name, quant=entry.default_quant, source="catalog",
            origin=f"catalog entry '{entry.id}'", n_vocab=entry.gguf_n_vocab,
        )  # fmt: skip
    except RigfitError:
        CASES["catalog:refused by the reader"] += 1
        return
    CASES[f"catalog:{exercise_spec(spec, *rs)}"] += 1
