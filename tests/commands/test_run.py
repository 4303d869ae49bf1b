"""``rigfit run``: the reply streams, --json events, and bad input as one line with exit code 2."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from app.commands.run import CPU_NOTE
from tests.commands.cli import rigfit


def test_run_streams_the_reply_and_says_it_runs_on_the_cpu() -> None:
    out = rigfit(
        "run",
        "--model",
        "demo",
        "--prompt",
        "Say hello.",
        "--max-tokens",
        "12",
        "--temperature",
        "0",
        "--ctx",
        "512",
        "--threads",
        "1",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
    assert out.stderr.count("running on the CPU") == 1
    assert "CPU_Mapped model 92.10 MiB" in out.stderr
    assert "tok/s" in out.stderr


def test_run_json_prints_one_object_per_event() -> None:
    out = rigfit(
        "run",
        "--model",
        "demo",
        "--prompt",
        "Hi",
        "--max-tokens",
        "6",
        "--temperature",
        "0",
        "--ctx",
        "512",
        "--threads",
        "1",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    types = [e["type"] for e in events]
    assert set(types) <= {"progress", "loaded", "token", "done", "error"}
    assert types[0] == "progress" and "loaded" in types and types[-1] == "done"
    loaded = events[types.index("loaded")]
    assert {"buffers", "layers", "vram", "compare", "n_ctx"} <= set(loaded)
    tokens = [e for e in events if e["type"] == "token"]
    assert [t["index"] for t in tokens] == list(range(len(tokens)))
    done = events[-1]
    assert done["completion_tokens"] == len(tokens) and done["text"] == "".join(t["text"] for t in tokens)
    for key in ("ttft_s", "prompt_tok_s", "gen_tok_s", "prompt_tokens", "stop_reason"):
        assert key in done


def _one_line_usage_error(out: subprocess.CompletedProcess[str], words: str) -> None:
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line != CPU_NOTE]
    assert len(lines) == 1 and words in lines[0], out.stderr


def test_missing_model_file_is_one_line(tmp_path: Path) -> None:
    _one_line_usage_error(rigfit("run", "--model", str(tmp_path / "nope.gguf"), "--prompt", "x"), "not found")


def test_a_file_that_is_not_gguf_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_text("not a model")
    _one_line_usage_error(rigfit("run", "--model", str(bad), "--prompt", "x"), "is not a GGUF file")


def test_a_truncated_gguf_is_one_line(tmp_path: Path, demo_model_path: str) -> None:
    half = tmp_path / "half.gguf"
    half.write_bytes(Path(demo_model_path).read_bytes()[:40_000_000])
    out = rigfit("run", "--model", str(half), "--prompt", "x", "--ctx", "256")
    _one_line_usage_error(out, "corrupted or incomplete")


def test_an_unsupported_architecture_is_one_line(tmp_path: Path, demo_model_path: str) -> None:
    from tests.runner.gguf_edit import edit_gguf

    path = edit_gguf(demo_model_path, tmp_path / "arch.gguf", strings={"general.architecture": "llamx"})
    _one_line_usage_error(
        rigfit("run", "--model", str(path), "--prompt", "x", "--ctx", "256"), "unknown model architecture"
    )


def test_a_context_that_cannot_be_made_is_one_line() -> None:
    out = rigfit(
        "run", "--model", "demo", "--prompt", "x", "--ctx", "256", "--kv-type", "q4_0", "--flash-attn", "off"
    )
    _one_line_usage_error(out, "could not create a context of 256 tokens")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--split", "1,1"], "llama.cpp sees no GPU"),  # more split entries than GPUs (this machine has none)
        (["--split", "1,-1"], "zero or positive"),
        (["--split", "abc"], "not a number"),
        (["--split-mode", "row"], "needs GPUs"),
        (["--ctx", "0"], "the context must be from 1"),
        (["--max-tokens", "0"], "--max-tokens"),
    ],
    ids=[
        "too-many-entries",
        "negative-ratio",
        "not-a-number",
        "row-without-gpus",
        "zero-context",
        "zero-tokens",
    ],
)
def test_impossible_settings_are_one_line(args: list[str], words: str) -> None:
    _one_line_usage_error(rigfit("run", "--model", "demo", "--prompt", "x", *args), words)


def test_json_mode_reports_bad_input_as_an_error_event_too(tmp_path: Path) -> None:
    out = rigfit("run", "--model", str(tmp_path / "nope.gguf"), "--prompt", "x", "--json")
    assert out.returncode == 2
    event = json.loads(out.stdout.strip())
    assert event["type"] == "error" and "not found" in event["message"]
