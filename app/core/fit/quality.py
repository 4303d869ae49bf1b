"""Quantization quality order: which quant of a model is "best" when several fit."""

from __future__ import annotations

# Quality, best first. Where llama.cpp's quantize tool publishes a perplexity increase
# (tools/quantize/quantize.cpp, Llama-3-8B: Q8_0 +0.0026, Q6_K +0.0217, Q5_K_M +0.0569, Q5_K_S
# +0.1049, Q5_1 +0.1062, Q5_0 +0.1316, Q4_K_M +0.1754, Q4_K_S +0.2689, Q4_1 +0.4511, Q4_0 +0.4685,
# Q3_K_L +0.5562, Q3_K_M +0.6569, Q3_K_S +1.6321, Q2_K +3.5199) that order is used; BF16 ranks above
# F16 (it is the training precision of today's models, -0.0050 vs +0.0020 @ Mistral-7B). The
# non-linear IQ4 types (4.25-4.5 bpw, importance-weighted) sit between Q4_K_S and Q4_1, and the other
# IQ types by their bits per weight among the K-quants. MXFP4_MOE ranks right below Q4_0, except for
# gpt-oss, whose experts were trained in MXFP4: there it is the original precision (see
# quality_rank).
QUALITY_ORDER: tuple[str, ...] = (
    "F32",
    "BF16",
    "F16",
    "Q8_0",
    "Q6_K",
    "Q5_K_M",
    "Q5_K_S",
    "Q5_1",
    "Q5_0",
    "Q4_K_M",
    "Q4_K_S",
    "IQ4_NL",
    "IQ4_XS",
    "Q4_1",
    "Q4_0",
    "MXFP4_MOE",
    "Q3_K_L",
    "Q3_K_M",
    "IQ3_M",
    "IQ3_S",
    "Q3_K_S",
    "IQ3_XS",
    "IQ3_XXS",
    "Q2_K",
    "Q2_K_S",
    "IQ2_M",
    "IQ2_S",
    "IQ2_XS",
    "IQ2_XXS",
    "Q2_0",
    "TQ2_0",
    "IQ1_M",
    "TQ1_0",
    "IQ1_S",
    "Q1_0",
)
_QUALITY = {q: i for i, q in enumerate(QUALITY_ORDER)}
_NATIVE_MXFP4_ARCHS = frozenset({"gpt-oss"})


def quality_rank(quant: str, architecture: str | None = None) -> int:
    """Position of a quant in :data:`QUALITY_ORDER` (0 is best); unknown names rank last.

    For architectures published in MXFP4 (gpt-oss) MXFP4_MOE is the original precision and ranks
    first: a Q8_0 file of them is bigger, not better.
    """
    q = (quant or "").upper()
    if q == "MXFP4_MOE" and architecture in _NATIVE_MXFP4_ARCHS:
        return -1
    return _QUALITY.get(q, len(QUALITY_ORDER))
