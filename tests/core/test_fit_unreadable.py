"""One bad model is one unreadable entry of the fit table, never the whole table (issue 17).

A local file whose numbers no real model has, a catalog entry that cannot be planned, or a model that
breaks the vectorised batch: each is listed in ``FitTable.unreadable`` with its reason, and every other
model's rows are computed as usual (the same rows as without it).
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from app.core.catalog import catalog_path
from app.core.errors import RigfitError
from app.core.fit import fit_table
from app.core.fit import groups as fit_groups
from app.core.fit import table as fit_table_module
from app.core.model_source import load_model_spec
from app.core.settings import Settings
from app.hardware.catalog import parse_rig_expression
from tests.synth_gguf import SynthShape, write_llama_gguf

RIG = parse_rig_expression("RTX 3060")
CATALOG = ["llama-3.2-1b", "qwen3-8b"]


@pytest.fixture
def good(tmp_path: Path):  # type: ignore[no-untyped-def]
    written = write_llama_gguf(
        tmp_path / "good.gguf",
        SynthShape(n_layer=4, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_vocab=512, weight_type="Q8_0"),
    )
    return load_model_spec(str(written.path))


def _without_unreadable(rows: object) -> list[tuple[str, str, str, float]]:
    return [(r.model, r.quant, r.status, round(r.total_gib, 6)) for r in rows]  # type: ignore[attr-defined]


@pytest.mark.parametrize("split_mode", ["layer", "tensor"])
def test_a_local_model_beyond_any_real_one_is_one_unreadable_entry(good, split_mode: str) -> None:  # type: ignore[no-untyped-def]
    # A spec that reads but cannot be planned: a hidden size of 2**40 (the planner would overflow).
    bad = replace(good, id="file:/models/bad.gguf", name="bad", n_embd=1 << 40, paths=("/models/bad.gguf",))
    settings = Settings(split_mode=split_mode, flash_attn=True)
    table = fit_table(RIG, 4096, settings, extra_specs=[good, bad], models=CATALOG)
    alone = fit_table(RIG, 4096, settings, extra_specs=[good], models=CATALOG)
    assert _without_unreadable(table.rows) == _without_unreadable(alone.rows)
    assert {r.model for r in table.rows} == {*CATALOG, good.id}
    (entry,) = table.unreadable
    assert entry.model == bad.id and entry.source == "gguf" and entry.path == "/models/bad.gguf"
    assert "hidden size" in entry.message and "\n" not in entry.message
    assert not alone.unreadable


def test_a_model_that_breaks_the_batch_is_one_entry_the_rest_computed(good, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    real = fit_table_module.batch_for

    def batch_for(groups):  # type: ignore[no-untyped-def]
        if any(g.model == "file:/models/odd.gguf" for g in groups):
            raise ValueError("cannot reshape array of size 0")
        return real(groups)

    monkeypatch.setattr(fit_table_module, "batch_for", batch_for)
    odd = replace(good, id="file:/models/odd.gguf", name="odd", paths=("/models/odd.gguf",))
    table = fit_table(RIG, 4096, Settings(), extra_specs=[good, odd], models=CATALOG)
    assert {r.model for r in table.rows} == {*CATALOG, good.id}
    assert all(r.status for r in table.rows)
    (entry,) = table.unreadable
    assert entry.model == odd.id and entry.path == "/models/odd.gguf"
    assert entry.message == "Rigfit could not plan this model (ValueError: cannot reshape array of size 0)"


def test_when_every_model_fails_the_table_itself_fails(good, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def batch_for(groups):  # type: ignore[no-untyped-def]
        raise RigfitError("nothing can be planned on this rig")

    monkeypatch.setattr(fit_table_module, "batch_for", batch_for)
    with pytest.raises(RigfitError, match="nothing can be planned"):
        fit_table(RIG, 4096, Settings(), extra_specs=[good], models=CATALOG)


def test_a_catalog_entry_that_cannot_be_planned_is_one_entry(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Its own copy of the catalog, so the cached groups of the real one are not touched.
    copy = tmp_path / "models.toml"
    shutil.copy(catalog_path(), copy)
    monkeypatch.setenv("RIGFIT_MODELS_TOML", str(copy))
    real = fit_groups.catalog_spec

    def catalog_spec(model_id: str, quant: str | None = None):  # type: ignore[no-untyped-def]
        if model_id == "qwen3-8b":
            raise RigfitError(
                "models.toml model 'qwen3-8b': 'num_hidden_layers' should be a whole number, not nan"
            )
        return real(model_id, quant)

    monkeypatch.setattr(fit_groups, "catalog_spec", catalog_spec)
    table = fit_table(RIG, 4096, Settings(), models=CATALOG)
    assert {r.model for r in table.rows} == {"llama-3.2-1b"}
    (entry,) = table.unreadable
    assert (entry.model, entry.source, entry.path) == ("qwen3-8b", "catalog", "")
    assert "not nan" in entry.message


def test_a_model_that_reads_nothing_per_token_has_no_speed_not_a_division_by_zero() -> None:
    """Found by the fuzz campaign: one layer of attention weights only (no FFN, no output layer),
    no layer offloaded, context 1. Nothing is read per decoded token, so the fit table's speed was
    1/0 (a RuntimeWarning, and the model became "Rigfit could not plan this model"); plan() already
    gave no speed there. Now the row is computed and its speed is None, as in plan()."""
    import warnings

    from tests.fuzz import gguf_bytes as G
    from tests.fuzz.harness import spec_from_bytes

    def u32(v: int) -> G.Value:
        return G.Value(vtype=4, value=v, item_type=4)

    doc = G.GgufDoc(
        metadata=[
            ("general.architecture", G.Value(vtype=8, value="llama", item_type=4)),
            ("llama.block_count", u32(1)),
            ("llama.embedding_length", u32(32)),
            ("llama.attention.head_count", u32(2)),
            ("llama.attention.head_count_kv", u32(1)),
            ("llama.feed_forward_length", u32(0)),
            ("llama.context_length", u32(0)),
        ],
        tensors=[
            G.Tensor(name="output_norm.weight", shape=(32,), ggml_type=0, offset=0),
            G.Tensor(name="blk.0.attn_norm.weight", shape=(32,), ggml_type=0, offset=128),
            G.Tensor(name="blk.0.attn_q.weight", shape=(32, 32), ggml_type=0, offset=256),
            G.Tensor(name="blk.0.attn_k.weight", shape=(32, 16), ggml_type=0, offset=4352),
            G.Tensor(name="blk.0.attn_v.weight", shape=(32, 16), ggml_type=0, offset=6400),
            G.Tensor(name="blk.0.attn_output.weight", shape=(32, 32), ggml_type=0, offset=8448),
        ],
        version=3,
        data_size=12544,
        alignment=32,
        big_endian=False,
    )
    spec = spec_from_bytes(G.encode(doc))
    settings = Settings(ctx=1, n_gpu_layers=0, n_batch=1, n_ubatch=1, flash_attn=False, type_k="q8_0")
    rig = parse_rig_expression("RTX 3090")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = fit_table(rig, 1, settings, extra_specs=[spec], models=["smollm2-135m"])
    assert table.unreadable == ()
    mine = [r for r in table.rows if r.model == spec.id]
    assert mine and all(r.decode_tok_s is None for r in mine), mine
