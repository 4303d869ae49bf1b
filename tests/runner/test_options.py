"""Checking the user's model, split and bench configs before the worker sees them."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.errors import BadModelFile, RigfitError
from app.runner.options import BenchConfig, parse_configs, parse_split, resolve_model, unsupported_problem


def test_split_parses_ratios() -> None:
    assert parse_split("3,1") == (3.0, 1.0)
    assert parse_split(" 0.5 , 0.5 ,0") == (0.5, 0.5, 0.0)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("1,-1", "zero or positive"),
        ("0,0", "above zero"),
        ("1,,2", "one ratio per GPU"),
        ("a,1", "not a number"),
        ("", "one ratio per GPU"),
        ("nan,1", "zero or positive"),
    ],
)
def test_bad_split_is_refused_in_words(text: str, words: str) -> None:
    with pytest.raises(RigfitError, match=words):
        parse_split(text)


def test_configs_parse_modes_and_ratios() -> None:
    assert parse_configs("layer:1,1;layer:3,1;row:1,1;none") == (
        BenchConfig("layer:1,1", "layer", (1.0, 1.0)),
        BenchConfig("layer:3,1", "layer", (3.0, 1.0)),
        BenchConfig("row:1,1", "row", (1.0, 1.0)),
        BenchConfig("none", "none", None),
    )


@pytest.mark.parametrize("text", ["", "layer;;row", "diagonal:1,1", "layer:1,x", "layer:-1,2", "layer:"])
def test_bad_configs_are_refused(text: str) -> None:
    with pytest.raises(RigfitError):
        parse_configs(text)


def _refused(split_mode: str, split: tuple[float, ...] | None, main_gpu: int, n_gpus: int) -> tuple[str, str]:
    problem = unsupported_problem(split_mode, split, main_gpu, n_gpus)
    return ("", "") if problem is None else (problem.code, problem.message)


def test_what_a_rig_cannot_run() -> None:
    assert unsupported_problem("layer", None, 0, 0) is None  # CPU only, llama.cpp's own split: runs
    code, message = _refused("layer", (1.0, 1.0), 0, 0)
    assert code == "split-length" and "no GPU" in message
    assert (
        _refused("row", None, 0, 0)[0] == "split-needs-gpu" and "needs GPUs" in _refused("row", None, 0, 0)[1]
    )
    assert "needs GPUs" in _refused("tensor", None, 0, 0)[1]
    code, message = _refused("layer", (1.0, 1.0, 1.0), 0, 2)
    assert code == "split-length" and "3 entries but the rig has 2 GPUs" in message
    assert unsupported_problem("row", (1.0, 1.0), 1, 2) is None
    code, message = _refused("none", None, 2, 2)
    assert code == "main-gpu-missing" and "main GPU 2" in message


def test_model_file_checks(tmp_path: Path) -> None:
    with pytest.raises(BadModelFile, match="not found"):
        resolve_model(str(tmp_path / "nope.gguf"))
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(BadModelFile, match="not a GGUF file"):
        resolve_model(str(text))
    with pytest.raises(BadModelFile, match="folder"):
        resolve_model(str(tmp_path))
    good = tmp_path / "ok.gguf"
    good.write_bytes(b"GGUF\x03\x00\x00\x00")
    assert resolve_model(str(good)) == good


def test_demo_resolves_to_the_bundled_model(demo_model_path: str) -> None:
    assert resolve_model("demo") == Path(demo_model_path)
