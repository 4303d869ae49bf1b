"""`rigfit fit`: the JSON contract, best quants, local GGUF rows, filters, the detected rig, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.cli import main
from app.core.catalog import load_model_catalog
from tests.synth_gguf import SynthShape, write_llama_gguf

ROW_KEYS = {"model", "quant", "total_gib", "status", "max_ctx", "tok_s"}


def _fit_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["fit", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_has_the_contract_keys_for_every_catalog_cell(capsys: pytest.CaptureFixture[str]) -> None:
    data = _fit_json(capsys, "--rig", "2x RTX 3090")
    assert {"rig", "ctx", "rows"} <= set(data)
    assert data["rig"] == "2x RTX 3090" and data["ctx"] == 8192
    assert len(data["rows"]) == sum(len(e.quants) for e in load_model_catalog())
    for row in data["rows"]:
        assert set(row) >= ROW_KEYS
        assert row["status"] in ("fits", "tight", "offload", "no")
        assert (row["tok_s"] is None) == (row["status"] == "no")
    # Balanced by default: Q8_0 rather than F16, at the same quality and about twice the speed.
    assert data["prefer"] == "balanced" and data["best"]["llama-3.1-8b"] == "Q8_0"
    reasons = [r["best_reason"] for r in data["rows"] if r["best"]]
    assert reasons and all(reasons)
    assert all(r["best_reason"] is None for r in data["rows"] if not r["best"])
    json.dumps(data)


def test_prefer_chooses_what_best_means(capsys: pytest.CaptureFixture[str]) -> None:
    picks = {
        prefer: _fit_json(capsys, "--rig", "2x RTX 3090", "--models", "llama-3.1-8b", "--prefer", prefer)
        for prefer in ("quality", "balanced", "speed")
    }
    assert picks["quality"]["best"]["llama-3.1-8b"] == "F16"
    assert picks["balanced"]["best"]["llama-3.1-8b"] == "Q8_0"
    speed = picks["speed"]
    fast = {r["quant"]: r["tok_s"] for r in speed["rows"]}
    assert fast[speed["best"]["llama-3.1-8b"]] > fast["Q8_0"]
    assert main(["fit", "--rig", "2x RTX 3090", "--models", "llama-3.1-8b", "--prefer", "speed"]) == 0
    assert "fastest that fits at 4-bit quality" in capsys.readouterr().out
    assert main(["fit", "--prefer", "fast"]) == 2
    err = capsys.readouterr().err
    assert "--prefer" in err and "balanced" in err and len(err.strip().splitlines()) == 1


def test_context_kv_type_and_model_filter(capsys: pytest.CaptureFixture[str]) -> None:
    small = _fit_json(capsys, "--rig", "RTX 3060", "--ctx", "32768", "--models", "llama-3.1-8b,qwen3-8b")
    assert {r["model"] for r in small["rows"]} == {"llama-3.1-8b", "qwen3-8b"}
    assert small["ctx"] == 32768
    q8 = _fit_json(
        capsys, "--rig", "RTX 3060", "--ctx", "32768", "--models", "llama-3.1-8b", "--kv-type", "q8_0"
    )
    f16_rows = {r["quant"]: r for r in small["rows"] if r["model"] == "llama-3.1-8b"}
    for r in q8["rows"]:
        assert r["total_gib"] < f16_rows[r["quant"]]["total_gib"]


def test_a_local_gguf_is_an_extra_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    written = write_llama_gguf(
        tmp_path / "mine.gguf",
        SynthShape(n_layer=4, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_vocab=512, weight_type="Q8_0"),
    )
    data = _fit_json(capsys, "--rig", "RTX 3060", "--models", "smollm2-135m", "--model", str(written.path))
    local = [r for r in data["rows"] if r["source"] == "gguf"]
    assert (
        len(local) == 1 and local[0]["quant"] == "Q8_0" and local[0]["status"] == "fits" and local[0]["best"]
    )


def test_text_table_shows_one_line_per_model_or_every_quant(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "--rig", "RTX 4090", "--models", "llama-3.1-8b,llama-3.3-70b"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith(("llama-3.1-8b", "llama-3.3-70b"))]
    assert len(lines) == 2 and "Q8_0" in lines[0]  # balanced: F16 fits the 4090 too, at half the speed
    assert main(["fit", "--rig", "RTX 4090", "--models", "llama-3.1-8b", "--all"]) == 0
    out = capsys.readouterr().out
    assert "Q4_K_M" in out and "Q2_K" in out and " *" in out


def test_without_rig_or_gpu_the_table_is_for_the_cpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sys" / "bus" / "pci" / "devices").mkdir(parents=True)
    monkeypatch.setenv("RIGFIT_SYSFS_ROOT", str(tmp_path / "sys"))
    monkeypatch.setenv("RIGFIT_FAKE_NVML", "zero-gpus")
    data = _fit_json(capsys, "--models", "llama-3.2-1b")
    assert data["rig"] == "this computer: CPU only" and data["notes"] and "CPU-only" in data["notes"][0]
    monkeypatch.setenv("RIGFIT_FAKE_NVML", "rtx4090")
    data = _fit_json(capsys, "--models", "llama-3.2-1b")
    assert "4090" in data["rig"] and data["notes"] == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--rig", "RTX 9999"), "RTX 9999"),
        (("--rig", "RTX 3090", "--ctx", "0"), "context"),
        (("--rig", "RTX 3090", "--models", "llama-9-9000b"), "unknown model"),
        (("--rig", "RTX 3090", "--models", ","), "--models"),
        (("--rig", "RTX 3090", "--model", "missing.gguf"), "not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], needle: str
) -> None:
    assert main(["fit", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and err.count("\n") == 0


def test_a_named_file_that_cannot_be_planned_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The table leaves a model it cannot plan out as unreadable (the window shows it as such a row);
    # a file the user named on the command line is theirs to fix: one line, exit 2.
    from app.core.errors import RigfitError
    from app.core.fit import table as fit_table_module

    real = fit_table_module.spec_group

    def spec_group(spec):  # type: ignore[no-untyped-def]
        if spec.source == "gguf":
            raise RigfitError(f"{spec.paths[0]}: the tensors hold more than 1.76e+13 parameters")
        return real(spec)

    monkeypatch.setattr(fit_table_module, "spec_group", spec_group)
    written = write_llama_gguf(
        tmp_path / "mine.gguf",
        SynthShape(n_layer=4, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_vocab=512, weight_type="Q8_0"),
    )
    assert main(["fit", "--rig", "RTX 3060", "--models", "smollm2-135m", "--model", str(written.path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "mine.gguf: the tensors hold more than" in err and err.count("\n") == 0


def test_json_lists_unreadable_models(capsys: pytest.CaptureFixture[str]) -> None:
    data = _fit_json(capsys, "--rig", "RTX 3060", "--models", "smollm2-135m")
    assert data["unreadable"] == []
