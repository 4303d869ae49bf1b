"""The Run tab's load panel: Load, Cancel and Unload ``state.model`` with ``state.settings``.

It says what Load will use (the Split tab's settings, in one line), what the plan expects, and where
the model runs (this computer, whatever rig the plan is for). When the plan says the settings will
not load, a bar asks before loading (no dialog). Progress and the outcome of the load show below the
buttons; a load that fails or a model process that stops is reported by the tab's problem bar.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from app.core.errors import RigfitError
from app.core.plan import STATUS_NO, Plan
from app.core.rig import Rig
from app.core.rules import refusals
from app.core.settings import Settings
from app.runner import protocol as P
from app.ui.glossary import tip
from app.ui.runner_adapter import (
    STATE_CANCELLING,
    STATE_CLOSED,
    STATE_GENERATING,
    STATE_IDLE,
    STATE_LOADED,
    STATE_LOADING,
    STATE_STARTING,
    STATE_UNLOADING,
    RunnerAdapter,
)
from app.ui.state import AppState, ModelChoice
from app.ui.theme import TEXT_MUTED, TEXT_NORMAL, TEXT_WARNING, fmt_gib, tint


@dataclass(frozen=True)
class LoadContext:
    """What a load was started with: compared against later, whatever the other tabs change since."""

    choice: ModelChoice
    settings: Settings
    plan: Plan | None
    rig: Rig | None
    load: P.LoadSettings
    plan_error: str = ""  # why there is no plan, when there is none


def describe_split(settings: Settings, rig: Rig | None) -> str:
    """How the layers are spread: ``layer split: GPU 0 60% / GPU 1 40%``, or where they go without GPUs."""
    if rig is None or rig.n_gpus == 0:
        return "no GPU: every layer on the CPU"
    if settings.split_mode == "none" or rig.n_gpus == 1:
        where = f"all on GPU {settings.main_gpu}" if rig.n_gpus > 1 else "one GPU"
        return f"{settings.split_mode} split, {where}" if settings.split_mode != "none" else where
    split = settings.tensor_split
    if split is None:
        shares = "by free VRAM (llama.cpp's default)"
    else:
        total = sum(split) or 1.0
        shares = " / ".join(f"GPU {i} {100 * r / total:.0f}%" for i, r in enumerate(split))
    return f"{settings.split_mode} split: {shares}"


def describe_settings(settings: Settings, rig: Rig | None) -> str:
    """One line: split, GPU layers, context, KV cache type, flash attention (what Load will use)."""
    parts = [describe_split(settings, rig)]
    if rig is not None and rig.n_gpus > 0:
        ngl = settings.n_gpu_layers
        parts.append(
            "all layers on the GPUs" if ngl < 0 else f"{ngl} layer{'s' if ngl != 1 else ''} on the GPUs"
        )
    parts.append(f"context {settings.ctx:,}")
    kv = (
        settings.type_k
        if settings.type_k == settings.type_v
        else f"K {settings.type_k} / V {settings.type_v}"
    )
    parts.append(f"KV cache {kv}")
    parts.append(f"flash attention {'on' if settings.flash_attn else 'off'}")
    return " · ".join(parts)


def plan_warning(plan: Plan | None) -> str:
    """Why the plan says these settings will not load as set ("" when it says they will)."""
    if plan is None or not (plan.status == STATUS_NO or plan.fit_n_gpu_layers is not None):
        return ""
    reasons = [
        f"GPU {d.index} needs {d.total_mib:,.0f} MiB and has {d.capacity_mib:,.0f} MiB"
        for d in plan.devices
        if not d.fits
    ]
    host = plan.host
    if not host.fits and host.available_mib is not None:
        reasons.append(
            f"what stays on the CPU needs {host.total_mib:,.0f} MiB of system RAM and "
            f"{host.available_mib:,.0f} MiB are free"
        )
    # Reasons the figures cannot show (a split mode this llama.cpp cannot load, say).
    reasons += [p.message for p in refusals(plan.problems)]
    if plan.fit_n_gpu_layers is not None:
        reasons.append(f"it fits with {plan.fit_n_gpu_layers} GPU layers (set on the Split tab)")
    return "The plan says this does not fit as set" + (": " + "; ".join(reasons) if reasons else "")


class LoadPanel(QtWidgets.QGroupBox):
    """Loads the state's model through ``adapter``; ``n_threads`` goes to llama.cpp (None: its choice).

    :attr:`load_started` carries the :class:`LoadContext` of a load that was sent; :attr:`load_refused`
    the reason a load could not even be sent (a bad setting the worker protocol refuses).
    """

    load_started = QtCore.Signal(object)  # LoadContext
    load_refused = QtCore.Signal(str)

    def __init__(
        self,
        state: AppState,
        adapter: RunnerAdapter,
        *,
        n_threads: int | None = None,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__("Load", parent)
        self.state = state
        self.adapter = adapter
        self.n_threads = n_threads
        self.context: LoadContext | None = None  # the load in progress or loaded
        self._confirm_pending = False
        self._shut_down = False
        self._build()
        self._connect()
        self.refresh()

    def _build(self) -> None:
        layout = QtWidgets.QVBoxLayout(self)
        self.settings_label = QtWidgets.QLabel()
        self.settings_label.setObjectName("settingsSummary")
        self.settings_label.setWordWrap(True)
        self.settings_label.setToolTip(
            "These settings come from the Split tab: change the split, context, KV cache type, flash "
            "attention and GPU layers there.\n\n" + tip("tensor_split")
        )
        layout.addWidget(self.settings_label)
        self.plan_label = QtWidgets.QLabel()
        self.plan_label.setObjectName("planLabel")
        self.plan_label.setWordWrap(True)
        layout.addWidget(self.plan_label)
        self.hardware_label = QtWidgets.QLabel()
        self.hardware_label.setObjectName("hardwareNote")
        self.hardware_label.setWordWrap(True)
        tint(self.hardware_label, TEXT_MUTED)
        layout.addWidget(self.hardware_label)

        # Shown instead of loading when the plan says it will not fit: the user decides, no dialog.
        self.confirm_bar = QtWidgets.QFrame()
        self.confirm_bar.setObjectName("confirmBar")
        self.confirm_bar.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        confirm = QtWidgets.QVBoxLayout(self.confirm_bar)
        self.confirm_label = QtWidgets.QLabel()
        self.confirm_label.setWordWrap(True)
        tint(self.confirm_label, TEXT_WARNING)
        confirm.addWidget(self.confirm_label)
        row = QtWidgets.QHBoxLayout()
        self.load_anyway_button = QtWidgets.QPushButton("Load anyway")
        self.dont_load_button = QtWidgets.QPushButton("Don't load")
        row.addWidget(self.load_anyway_button)
        row.addWidget(self.dont_load_button)
        row.addStretch(1)
        confirm.addLayout(row)
        self.confirm_bar.hide()
        layout.addWidget(self.confirm_bar)

        row = QtWidgets.QHBoxLayout()
        self.load_button = QtWidgets.QPushButton("Load")
        self.load_button.setObjectName("loadButton")
        self.load_button.setDefault(False)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop loading (Esc)")
        self.unload_button = QtWidgets.QPushButton("Unload")
        self.unload_button.setToolTip(
            "Free the model's memory; the model process stays ready for the next load."
        )
        row.addWidget(self.load_button)
        row.addWidget(self.cancel_button)
        row.addWidget(self.unload_button)
        layout.addLayout(row)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setObjectName("loadProgress")
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        layout.addWidget(self.progress)
        self.load_status = QtWidgets.QLabel("No model loaded.")
        self.load_status.setObjectName("loadStatus")
        self.load_status.setWordWrap(True)
        layout.addWidget(self.load_status)
        layout.addStretch(1)

    def _connect(self) -> None:
        self.load_button.clicked.connect(self.load_model)
        self.load_anyway_button.clicked.connect(lambda: self.load_model(confirmed=True))
        self.dont_load_button.clicked.connect(self.hide_confirm)
        self.cancel_button.clicked.connect(self.cancel_load)
        self.unload_button.clicked.connect(self.unload)
        a = self.adapter
        a.state_changed.connect(self._on_runner_state)
        a.ready.connect(self.refresh)
        a.progress.connect(self._on_progress)
        a.loaded.connect(self._on_loaded)
        a.unloaded.connect(self._on_unloaded)
        a.error.connect(self._on_error)
        a.exited.connect(self.refresh)
        s = self.state
        s.model_changed.connect(self.refresh)
        s.settings_changed.connect(self.refresh)
        s.plan_changed.connect(self.refresh)
        s.rig_changed.connect(self.refresh)

    # ------------------------------------------------------------------------------------------ actions
    @property
    def confirm_pending(self) -> bool:
        """True while the "does not fit: load anyway?" bar waits for an answer."""
        return self._confirm_pending

    def load_model(self, confirmed: bool = False) -> bool:
        """Load ``state.model`` with ``state.settings``; returns whether a load was started.

        When the plan says it will not fit, a bar asks first (``confirmed`` answers it).
        """
        choice = self.state.model
        if choice is None:
            self.load_status.setText("Choose a model first.")
            return False
        if not choice.is_file or not choice.path:
            self.load_status.setText(
                f"{choice.label or choice.spec.name} is a catalog model with no file: download the GGUF, then open it."
            )
            return False
        plan = self.state.plan
        warning = plan_warning(plan)
        if plan is None and self.state.plan_error_text:
            warning = f"Rigfit could not plan this: {self.state.plan_error_text}"
        if warning and not confirmed:
            self.confirm_label.setText(f"{warning}. Loading may fail or stop the model process. Load anyway?")
            self.confirm_bar.show()
            self._confirm_pending = True
            return False
        self.hide_confirm()
        settings = self.state.settings
        try:
            rig = self.state.rig
            load = P.LoadSettings.for_rig(rig, choice.path, settings, n_threads=self.n_threads)
            self.adapter.load(load, plan, remote_devices=len(rig.remote_gpus) if rig is not None else 0)
        except RigfitError as exc:
            self.load_refused.emit(str(exc))
            return False
        self.context = LoadContext(
            choice=choice,
            settings=settings,
            plan=plan,
            rig=self.state.rig,
            load=load,
            plan_error=self.state.plan_error_text,
        )
        self.progress.setValue(0)
        self.load_started.emit(self.context)
        return True

    def hide_confirm(self) -> None:
        self._confirm_pending = False
        self.confirm_bar.hide()

    def cancel_load(self) -> None:
        self.adapter.cancel_load()

    def unload(self) -> None:
        self.adapter.unload()

    def set_status(self, text: str) -> None:
        """A one-line message under the buttons (what the tab says about the model process)."""
        self.load_status.setText(text)

    def shutdown(self) -> None:
        """No more loads (the tab is closing)."""
        self._shut_down = True
        self.update_buttons()

    # ------------------------------------------------------------------------------------------ showing
    def refresh(self, *_: object) -> None:
        """The settings line, the plan's verdict and where the model runs, for the state now."""
        state = self.state
        rig = state.rig
        self.settings_label.setText(
            f"<b>From the Split tab:</b> {html.escape(describe_settings(state.settings, rig))}"
        )
        plan = state.plan
        if state.model is None:
            self.plan_label.setText("")
        elif plan is None:
            why = state.plan_error_text
            self.plan_label.setText(f"No plan for this model: {html.escape(why)}" if why else "")
        else:
            warning = plan_warning(plan)
            if warning:
                self.plan_label.setText(html.escape(warning))
            else:
                gpus = len(plan.devices)
                where = (
                    f"{fmt_gib(plan.gpu_total_mib)} on {gpus} GPU{'s' if gpus != 1 else ''}"
                    if plan.devices
                    else f"{fmt_gib(plan.host.total_mib)} of system RAM"
                )
                self.plan_label.setText(f"Plan: {html.escape(plan.status)} — {where}.")
            tint(self.plan_label, TEXT_WARNING if warning else TEXT_NORMAL)
        self.hardware_label.setText(" ".join(self._notes()))
        self.hardware_label.setVisible(bool(self.hardware_label.text()))
        self.update_buttons()

    def _notes(self) -> list[str]:
        state = self.state
        rig = state.rig
        notes: list[str] = []
        ready = self.adapter.ready_info
        no_gpu_here = (rig is not None and rig.source == "detected" and rig.n_gpus == 0) or (
            ready is not None and not ready.gpus
        )
        if no_gpu_here:
            notes.append("No NVIDIA GPU here: llama.cpp runs the model on the CPU.")
        if rig is not None and rig.source != "detected":
            name = rig.name or "a planned rig"
            notes.append(
                f"The plan is for {name}; the model runs on this computer's hardware, so the comparison "
                "below is only meaningful when the two match."
            )
        ctx = self.context
        if (
            ctx is not None
            and self.adapter.state in (STATE_LOADED, STATE_GENERATING)
            and (ctx.settings != state.settings or ctx.choice != state.model)
        ):
            notes.append("The model or its settings changed since this load: Load again to use them.")
        return notes

    def update_buttons(self) -> None:
        runner = self.adapter.state
        choice = self.state.model
        runnable = choice is not None and choice.is_file and bool(choice.path)
        idle_or_loaded = runner in (STATE_IDLE, STATE_LOADED)
        self.load_button.setEnabled(runnable and idle_or_loaded and not self._shut_down)
        self.cancel_button.setEnabled(runner in (STATE_STARTING, STATE_LOADING))
        self.unload_button.setEnabled(runner == STATE_LOADED)
        if choice is not None and not choice.is_file:
            self.load_button.setToolTip(
                "A catalog model has no file to run: download the GGUF, then open it (Ctrl+O)."
            )
        else:
            self.load_button.setToolTip("Load the model with the Split tab's settings.")

    # ------------------------------------------------------------------------------------------ the runner
    def _on_runner_state(self, runner: str) -> None:
        name = self.context.choice.label if self.context is not None else "the model"
        if runner == STATE_STARTING:
            self.load_status.setText("Starting the model process…")
            self.progress.setRange(0, 0)  # busy: no percentage until llama.cpp reports one
        elif runner == STATE_LOADING:
            self.progress.setRange(0, 100)
            self.load_status.setText(f"Loading {name}…")
        elif runner == STATE_CANCELLING:
            self.load_status.setText("Cancelling the load…")
        elif runner == STATE_UNLOADING:
            self.load_status.setText("Unloading…")
        elif runner in (STATE_IDLE, STATE_CLOSED):
            self.progress.setRange(0, 100)
        self.refresh()

    def _on_progress(self, percent: int) -> None:
        self.progress.setRange(0, 100)
        self.progress.setValue(percent)

    def _on_loaded(self, event: object) -> None:
        assert isinstance(event, P.LoadedEvent)
        self.progress.setRange(0, 100)
        self.progress.setValue(100)
        where = (
            "on the CPU"
            if event.on_cpu_only or set(event.layers) <= {"CPU"}
            else "on " + ", ".join(f"{d} ({n} layer{'s' if n != 1 else ''})" for d, n in event.layers.items())
        )
        name = self.context.choice.label if self.context is not None else Path(event.model_path).name
        self.load_status.setText(f"Loaded {name} in {event.load_s:.2f} s {where}, context {event.n_ctx:,}.")

    def _on_unloaded(self) -> None:
        self.load_status.setText("Unloaded: the model's memory is free again.")
        self.progress.setValue(0)

    def _on_error(self, event: object) -> None:
        assert isinstance(event, P.ErrorEvent)
        if event.kind == P.ERR_CANCELLED:
            self.load_status.setText("Loading was cancelled.")
            self.progress.setValue(0)
            return
        if event.kind == P.ERR_CRASHED:
            self.load_status.setText("The model process stopped.")
        elif self.adapter.state == STATE_IDLE:
            # A failed load leaves nothing loaded: the worker frees the old model before loading.
            self.load_status.setText("No model loaded.")
        self.progress.setRange(0, 100)
        self.progress.setValue(0)


__all__ = ["LoadContext", "LoadPanel", "describe_settings", "describe_split", "plan_warning"]
