"""Quantization quality order: which quant of a model is "best" when several fit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.core.errors import RigfitError
from app.core.plan import STATUS_FITS, STATUS_OFFLOAD, STATUS_TIGHT

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


# --------------------------------------------------------------------------------------------------
# Which quant is "best": the user's preference
# --------------------------------------------------------------------------------------------------
PREFER_BALANCED = "balanced"
PREFER_QUALITY = "quality"
PREFER_SPEED = "speed"
PREFERENCES: tuple[str, ...] = (PREFER_BALANCED, PREFER_QUALITY, PREFER_SPEED)
DEFAULT_PREFERENCE = PREFER_BALANCED

# Perplexity increase over F16 on Llama-3-8B, as llama.cpp's quantize tool publishes it
# (tools/quantize/quantize.cpp); F32, BF16 and F16 are the reference. Types without a published
# figure (the IQ types, MXFP4) are left out: no claim of "same quality" is made for them.
PPL_INCREASE: dict[str, float] = {
    "F32": 0.0,
    "BF16": 0.0,
    "F16": 0.0,
    "Q8_0": 0.0026,
    "Q6_K": 0.0217,
    "Q5_K_M": 0.0569,
    "Q5_K_S": 0.1049,
    "Q5_1": 0.1062,
    "Q5_0": 0.1316,
    "Q4_K_M": 0.1754,
    "Q4_K_S": 0.2689,
    "Q4_1": 0.4511,
    "Q4_0": 0.4685,
    "Q3_K_L": 0.5562,
    "Q3_K_M": 0.6569,
    "Q3_K_S": 1.6321,
    "Q2_K": 3.5199,
}
# "Balanced" treats quants within this perplexity of the best one that fits as the same quality and
# takes the fastest of them: Q8_0 (+0.0026) over F16 or BF16, never Q6_K (+0.0217) over Q8_0. A
# hundredth of a point of perplexity is below what a chat shows; the next step, Q6_K, is eight times
# that.
SAME_QUALITY_PPL = 0.01
# "Speed" takes the fastest quant that keeps 4-bit quality: below Q4_0 (+0.47) perplexity climbs
# steeply (Q3_K_M +0.66, Q3_K_S +1.63, Q2_K +3.52), so the 3- and 2-bit types are not "faster", they
# are a different model.
SPEED_FLOOR = "Q4_0"

_ON_GPUS = (STATUS_FITS, STATUS_TIGHT)


def check_preference(prefer: str) -> str:
    """``prefer`` when it is one of :data:`PREFERENCES`; RigfitError in the user's words otherwise."""
    if prefer not in PREFERENCES:
        raise RigfitError(f"the best-fit preference must be one of {', '.join(PREFERENCES)} (got '{prefer}')")
    return prefer


@dataclass(frozen=True)
class QuantOption:
    """One quant of a model as the best-fit rule sees it: its status on the rig and predicted speed."""

    quant: str
    status: str  # fits, tight, offload or no
    tok_s: float | None
    architecture: str | None = None

    @property
    def rank(self) -> int:
        return quality_rank(self.quant, self.architecture)


@dataclass(frozen=True)
class BestPick:
    """The chosen option (its index in the list given) and why, in one sentence for a tooltip."""

    index: int
    reason: str


def _speed(o: QuantOption) -> float:
    return float(o.tok_s) if o.tok_s is not None else 0.0


def _same_quality(a: QuantOption, top: QuantOption) -> bool:
    pa, pt = PPL_INCREASE.get(a.quant.upper()), PPL_INCREASE.get(top.quant.upper())
    if a is top:
        return True
    if pa is None or pt is None or a.rank < 0 or top.rank < 0:
        return False
    return pa - pt <= SAME_QUALITY_PPL


def _fmt(tok_s: float | None) -> str:
    if tok_s is None:
        return "?"
    return f"{tok_s:.0f}" if tok_s >= 10 else f"{tok_s:.1f}"


def pick_best(
    options: Sequence[QuantOption], prefer: str = DEFAULT_PREFERENCE, *, on_gpus: bool = True
) -> BestPick | None:
    """The best quant of one model under ``prefer``, or None when no option loads.

    Quants that fit with every layer on the GPUs (``fits``/``tight``) always come before those that
    need CPU offload; within that tier:

    * ``quality``: the highest quality (:data:`QUALITY_ORDER`);
    * ``balanced`` (default): the fastest of those as good as the highest-quality one, i.e. within
      :data:`SAME_QUALITY_PPL` of its published perplexity (Q8_0 rather than F16 or BF16);
    * ``speed``: the fastest at or above :data:`SPEED_FLOOR` (4-bit) quality; the highest quality
      when none is.

    Ties in speed go to the higher quality. ``on_gpus`` False (a rig without GPUs) words the reason
    for system RAM.
    """
    check_preference(prefer)
    fitting = [i for i, o in enumerate(options) if o.status in _ON_GPUS]
    pool = fitting or [i for i, o in enumerate(options) if o.status == STATUS_OFFLOAD]
    if not pool:
        return None
    where = ("fits the GPUs" if on_gpus else "fits in system RAM") if fitting else "loads (with CPU offload)"
    top_i = min(pool, key=lambda i: (options[i].rank, i))
    top = options[top_i]
    # A better quant that does not make this tier says why the pick is not it.
    better = [o for o in options if o.rank < top.rank]
    missing = ""
    if better:
        nearest = max(better, key=lambda o: o.rank).quant
        missing = f" ({nearest} does not)" if fitting else f" ({nearest} does not load)"
    quality_reason = f"{top.quant}: the highest-quality quantization that {where}{missing}"

    def fastest(indexes: list[int]) -> int:
        return min(indexes, key=lambda i: (-_speed(options[i]), options[i].rank, i))

    if prefer == PREFER_QUALITY:
        return BestPick(top_i, quality_reason)
    if prefer == PREFER_BALANCED:
        same = [i for i in pool if _same_quality(options[i], top)]
        chosen = fastest(same)
        if chosen == top_i or _speed(options[chosen]) <= _speed(top):
            return BestPick(top_i, quality_reason + "; every faster one loses quality")
        o = options[chosen]
        gain = _speed(o) / _speed(top) if _speed(top) > 0 else float("inf")
        delta = PPL_INCREASE[o.quant.upper()] - PPL_INCREASE[top.quant.upper()]
        return BestPick(
            chosen,
            f"{o.quant}: {gain:.1f}× the speed of {top.quant} ({_fmt(o.tok_s)} vs {_fmt(top.tok_s)} tok/s) "
            f"at the same quality (perplexity {delta:+.4f} in llama.cpp's Llama-3-8B table); "
            f"it {where}",
        )
    floor = quality_rank(SPEED_FLOOR)
    keep = [i for i in pool if options[i].rank <= floor]
    if not keep:
        return BestPick(top_i, quality_reason + f"; nothing at {SPEED_FLOOR} quality or better does")
    chosen = fastest(keep)
    o = options[chosen]
    if chosen == top_i:
        return BestPick(top_i, f"{o.quant}: the fastest quantization that {where} ({_fmt(o.tok_s)} tok/s)")
    gain = _speed(o) / _speed(top) if _speed(top) > 0 else float("inf")
    return BestPick(
        chosen,
        f"{o.quant}: the fastest quantization that {where} and keeps 4-bit quality "
        f"({_fmt(o.tok_s)} tok/s, {gain:.1f}× {top.quant}); below {SPEED_FLOOR} perplexity climbs steeply",
    )
