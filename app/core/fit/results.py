"""What the fit table answers: one row per model and quantization."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.errors import RigfitError
from app.core.fit.quality import DEFAULT_PREFERENCE
from app.core.settings import Settings


@dataclass(frozen=True)
class FitRow:
    """One model at one quantization on the rig.

    ``total_gib`` is everything the load takes (all GPUs plus system RAM) at the table's context;
    ``max_ctx`` the largest context (a multiple of 256, up to the trained context) with every layer on
    the GPUs (on a rig without GPUs: in system RAM), ``None`` when not even 256 tokens fit;
    ``decode_tok_s`` the predicted speed (``None`` when it does not load); ``n_gpu_layers`` the
    offload that fits when the status is ``offload``.
    """

    model: str
    name: str
    quant: str
    total_gib: float
    status: str
    max_ctx: int | None
    decode_tok_s: float | None
    weights_gib: float = 0.0
    n_gpu_layers: int | None = None
    best: bool = False
    source: str = "catalog"
    note: str = ""
    code: str = ""  # the rule (app.core.rules) behind ``note`` when the settings do not suit this model
    best_reason: str = ""  # why this quant is the model's best (set on the best row only)


@dataclass(frozen=True)
class Unreadable:
    """A model the table could not plan at all: one row marked unreadable, with the reason.

    A corrupt or hostile file (a NaN layer count, a tensor list that names no weights) is one such
    entry; the other models' rows are computed as usual.
    """

    model: str
    name: str
    source: str  # "catalog", "gguf", "config"
    message: str  # one line, in the user's words
    path: str = ""  # the file, for a local model


@dataclass(frozen=True)
class FitTable:
    """The fit table for one rig and context; ``unreadable`` lists the models left out and why."""

    rig_name: str
    ctx: int
    settings: Settings
    rows: tuple[FitRow, ...]
    prefer: str = DEFAULT_PREFERENCE  # what "best" means: app.core.fit.quality.PREFERENCES
    unreadable: tuple[Unreadable, ...] = ()

    def best(self) -> dict[str, str]:
        """Best quant per model (models where nothing loads are left out)."""
        return {r.model: r.quant for r in self.rows if r.best}

    def rows_for(self, model: str) -> tuple[FitRow, ...]:
        """The rows of one model, in quality order."""
        return tuple(r for r in self.rows if r.model == model)

    def row(self, model: str, quant: str) -> FitRow:
        """The row of ``model`` at ``quant``; RigfitError when the table has none."""
        for r in self.rows:
            if r.model == model and r.quant == quant:
                return r
        raise RigfitError(f"the fit table has no row for {model} at {quant}")
