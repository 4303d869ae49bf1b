"""What every tab shares: the rig, the chosen model and quant, the load settings, and the plan.

One :class:`AppState` lives in the main window. Tabs read it and change it through its setters; they
learn about changes from its signals, so no tab needs to know another. Values are frozen dataclasses
from ``app.core``; the plan is recomputed synchronously on every change because
``app.core.placement.plan`` is short: about 1 ms for a 70B model with the layer split, about 12 ms with
the tensor split (measured on the 2-core development machine); the fit table and GGUF reading,
which take longer, run on the thread pool elsewhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from PySide6 import QtCore

from app.core.errors import RigfitError
from app.core.settings import Settings

if TYPE_CHECKING:  # annotations only: the window imports this before its first paint
    from app.core.model_spec import ModelSpec
    from app.core.plan import Plan
    from app.core.rig import Rig

log = logging.getLogger(__name__)

# The context lengths the Fit and Split tabs offer in their lists (any other can be typed on Split).
CONTEXT_CHOICES: tuple[int, ...] = (2048, 4096, 8192, 16384, 32768, 65536, 131072)


@dataclass(frozen=True)
class ModelChoice:
    """The model the user picked: what they typed or chose (``ref``), its spec, and the quant."""

    ref: str  # catalog id, GGUF path, config.json path or "demo"
    spec: ModelSpec  # with the quant's tensor types applied
    quant: str
    label: str = ""

    @property
    def is_file(self) -> bool:
        return self.spec.source == "gguf"

    @property
    def path(self) -> str | None:
        return self.spec.paths[0] if self.spec.paths else None


class AppState(QtCore.QObject):
    """The shared selection. Setters ignore values equal to the current one (no signal storms)."""

    rig_changed = QtCore.Signal(object)  # Rig
    model_changed = QtCore.Signal(object)  # ModelChoice | None
    settings_changed = QtCore.Signal(object)  # Settings
    plan_changed = QtCore.Signal(object)  # Plan | None
    plan_error = QtCore.Signal(str)  # why no plan could be made for the current selection ("" when fine)

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self._rig: Rig | None = None
        self._model: ModelChoice | None = None
        self._settings = Settings()
        self._plan: Plan | None = None
        self._plan_error = ""

    # -- reading ---------------------------------------------------------------------------------
    @property
    def rig(self) -> Rig | None:
        return self._rig

    @property
    def model(self) -> ModelChoice | None:
        return self._model

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def plan(self) -> Plan | None:
        return self._plan

    @property
    def plan_error_text(self) -> str:
        return self._plan_error

    # -- changing --------------------------------------------------------------------------------
    def set_rig(self, rig: Rig) -> None:
        if rig == self._rig:
            return
        old_n = self._rig.n_gpus if self._rig is not None else None
        self._rig = rig
        # A tensor split for another GPU count means nothing on this rig: fall back to llama.cpp's default.
        if self._settings.tensor_split is not None and old_n != rig.n_gpus:
            self._settings = replace(self._settings, tensor_split=None)
            self.settings_changed.emit(self._settings)
        if self._settings.main_gpu >= max(rig.n_gpus, 1):
            self._settings = replace(self._settings, main_gpu=0)
            self.settings_changed.emit(self._settings)
        self.rig_changed.emit(rig)
        self._replan()

    def set_model(self, model: ModelChoice | None) -> None:
        if model == self._model:
            return
        self._model = model
        self.model_changed.emit(model)
        self._replan()

    def set_settings(self, settings: Settings) -> None:
        if settings == self._settings:
            return
        self._settings = settings
        self.settings_changed.emit(settings)
        self._replan()

    def update_settings(self, **changes: object) -> None:
        """``set_settings(replace(settings, **changes))``."""
        self.set_settings(replace(self._settings, **changes))  # type: ignore[arg-type]

    # -- planning --------------------------------------------------------------------------------
    def _replan(self) -> None:
        plan: Plan | None = None
        error = ""
        if self._rig is not None and self._model is not None:
            from app.core.placement import plan as make_plan

            try:
                plan = make_plan(self._rig, self._model.spec, self._settings)
            except RigfitError as exc:
                error = str(exc)
            except Exception as exc:  # a planner bug must not take the window down
                log.exception("planning failed")
                error = f"Rigfit could not plan this ({type(exc).__name__}: {exc})"
        self._plan = plan
        self._plan_error = error
        self.plan_changed.emit(plan)
        self.plan_error.emit(error)
