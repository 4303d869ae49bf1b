"""What a GGUF file's name says: its quantization, and whether it is one part of a split model.

Hugging Face repositories, LM Studio folders and the llama.cpp cache name files the same way
(``Llama-3.2-1B-Instruct-Q4_K_M.gguf``, ``Qwen2.5-72B-Instruct-Q4_K_M-00001-of-00012.gguf``), so the
disk scan (``app.runner.discovery``) and the hub listing (``app.hub``) read names with these rules. A
name is only a guess: the header, read when the user picks the file, is the truth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Longest first, so Q4_K_M wins over Q4_K and IQ4_XS over Q4.
# fmt: off
KNOWN_QUANTS: tuple[str, ...] = (
    "MXFP4_MOE", "IQ2_XXS", "IQ3_XXS", "Q4_K_XL", "Q5_K_XL", "Q6_K_XL", "Q8_K_XL", "Q3_K_XL", "Q2_K_XL",
    "Q2_K_L", "IQ1_S", "IQ1_M", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XS", "IQ3_S", "IQ3_M", "IQ4_NL", "IQ4_XS",
    "Q2_K_S", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q4_0_4_4", "Q4_0_4_8",
    "Q4_0_8_8", "TQ1_0", "TQ2_0", "MXFP4", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "Q4_0", "Q4_1",
    "Q5_0", "Q5_1", "Q8_0", "Q1_0", "Q2_0", "BF16", "F16", "F32",
)
# fmt: on
_QUANT_RE = re.compile(
    r"(?<![A-Za-z0-9])("
    + "|".join(re.escape(q).replace("_", "[_.-]") for q in sorted(KNOWN_QUANTS, key=len, reverse=True))
    + r")(?![A-Za-z0-9])",
    re.IGNORECASE,
)
SPLIT_NAME_RE = re.compile(r"^(?P<prefix>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
# Vision projectors (LLaVA-style "mmproj" files) are GGUF too, but cannot run on their own.
_PROJECTOR_RE = re.compile(r"(^|/)mmproj", re.IGNORECASE)


def guess_quant(name: str) -> str | None:
    """The quantization a file name states (``Llama-3.2-1B-Instruct-Q4_K_M.gguf`` → ``Q4_K_M``).

    The last match wins (``Q8_0-to-Q4_K_M`` names the result last); ``None`` when the name says
    nothing. Lower case and dots or dashes for underscores are accepted (``q4_k_m``, ``Q4-K-M``).
    """
    stem = re.sub(r"\.gguf$", "", name, flags=re.IGNORECASE)
    matches = _QUANT_RE.findall(stem)
    if not matches:
        return None
    return re.sub(r"[.-]", "_", matches[-1]).upper()


@dataclass(frozen=True)
class SplitName:
    """``name-00002-of-00004.gguf`` read: the shared prefix, this part's number (from 1) and the count."""

    prefix: str
    no: int
    count: int


def split_name(name: str) -> SplitName | None:
    """The split-part fields of a file name, or ``None`` for a name that is not a valid part name."""
    m = SPLIT_NAME_RE.match(name)
    if m is None:
        return None
    no, count = int(m.group("no")), int(m.group("count"))
    if count < 1 or not 1 <= no <= count:
        return None
    return SplitName(m.group("prefix"), no, count)


def is_projector(name: str) -> bool:
    """True for a multimodal projector file (``mmproj-*.gguf``): a GGUF that is not a model."""
    return _PROJECTOR_RE.search(name) is not None
