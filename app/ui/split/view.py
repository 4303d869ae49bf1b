"""The Split tab: move the tensor split with a slider per GPU and watch the layers and memory follow.

:class:`SplitView` lays out its panels and routes the shared state's changes to them:

* the rig and model headers (links to the Hardware and Fit tabs);
* :class:`~app.ui.split.banner.PlanBanner` — the plan's status in words, and its notes;
* :class:`~app.ui.split.gpu_rows.GpuRowsPanel` — presets, a slider and a memory bar per GPU, the host;
* :class:`~app.ui.split.settings_panel.SettingsPanel` — split mode, context, KV cache, flash attention,
  GPU layers, and the predicted speed;
* :class:`~app.ui.split.details.AdvicePanel` and :class:`~app.ui.split.details.CommandPanel` — the
  advice for the plan and the command lines that reproduce it.

Speed: the bars follow the plan at once; the speed, advice and commands (several milliseconds each)
follow on the next pass of the event loop, once per burst of slider moves (:meth:`SplitView.flush`
brings them up to date now).
"""

from __future__ import annotations

import html

from PySide6 import QtCore, QtWidgets

from app.core.plan import STATUS_NO, Plan
from app.core.rig import Rig
from app.core.settings import Settings
from app.ui.split.banner import PlanBanner, speed_summary, status_sentence
from app.ui.split.details import (
    AdvicePanel,
    CommandPanel,
    commands_for,
    plan_advice_for,
    settings_advice_for,
)
from app.ui.split.gpu_rows import GpuRowsPanel
from app.ui.split.settings_panel import SettingsPanel
from app.ui.state import AppState, ModelChoice
from app.ui.widgets import LinkHeader, rig_summary


class SplitView(QtWidgets.QWidget):
    """The Split tab (see the module docstring)."""

    rig_link_activated = QtCore.Signal()
    model_link_activated = QtCore.Signal()
    command_copied = QtCore.Signal(str)

    def __init__(self, state: AppState, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("splitView")
        self.state = state
        self.updates = 0  # plan updates applied (benchmarks and tests)
        self._rig_key: tuple[object, ...] | None = None
        self._details_timer = QtCore.QTimer(self)
        self._details_timer.setObjectName("splitDetailsTimer")
        self._details_timer.setSingleShot(True)
        self._details_timer.setInterval(0)
        self._details_timer.timeout.connect(self._update_details)

        self.rig_header = LinkHeader("Rig:", "hardware")
        self.rig_header.setObjectName("splitRigHeader")
        self.model_header = LinkHeader("Model:", "fit")
        self.model_header.setObjectName("splitModelHeader")
        self.banner = PlanBanner()
        self.gpus = GpuRowsPanel(state)
        self.load_settings = SettingsPanel(state)
        self.advice = AdvicePanel()
        self.export = CommandPanel()
        self._lay_out()

        self.rig_header.link_activated.connect(lambda _t: self.rig_link_activated.emit())
        self.model_header.link_activated.connect(lambda _t: self.model_link_activated.emit())
        self.gpus.note.connect(self.banner.set_note)
        self.load_settings.note.connect(self.banner.set_note)
        self.export.copy_requested.connect(self.copy_command)
        self.export.command_copied.connect(self.command_copied)
        state.rig_changed.connect(self._on_rig_changed)
        state.model_changed.connect(self._on_model_changed)
        state.settings_changed.connect(self._on_settings_changed)
        state.plan_changed.connect(self._on_plan_changed)
        state.plan_error.connect(self._on_plan_error)
        self._on_rig_changed(state.rig)
        self._on_model_changed(state.model)
        self._on_settings_changed(state.settings)
        self._on_plan_changed(state.plan)

    def _lay_out(self) -> None:
        # Everything sits in a scroll area: on a small screen the tab scrolls instead of forcing the
        # window wider than the screen.
        page = QtWidgets.QVBoxLayout(self)
        page.setContentsMargins(0, 0, 0, 0)
        self.scroll_area = QtWidgets.QScrollArea()
        self.scroll_area.setObjectName("splitScroll")
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        page.addWidget(self.scroll_area)
        body = QtWidgets.QWidget()
        body.setObjectName("splitBody")
        self.scroll_area.setWidget(body)
        outer = QtWidgets.QVBoxLayout(body)
        outer.setContentsMargins(8, 8, 8, 8)
        outer.setSpacing(6)
        headers = QtWidgets.QHBoxLayout()
        headers.addWidget(self.rig_header, 1)
        headers.addWidget(self.model_header, 1)
        outer.addLayout(headers)
        outer.addWidget(self.banner)
        middle = QtWidgets.QHBoxLayout()
        middle.setSpacing(8)
        middle.addWidget(self.gpus, 5)
        middle.addWidget(self.load_settings, 2)
        outer.addLayout(middle, 0)
        lower = QtWidgets.QHBoxLayout()
        lower.setSpacing(8)
        lower.addWidget(self.advice, 3)
        lower.addWidget(self.export, 2)
        outer.addLayout(lower, 1)

    # ------------------------------------------------------------------------------------------ API
    def flush(self) -> None:
        """Bring the speed, advice and commands up to date now (tests, benchmarks, before copying)."""
        if self._details_timer.isActive():
            self._update_details()

    def shutdown(self) -> None:
        """Stop the pending update (the window is closing)."""
        self._details_timer.stop()

    def copy_command(self) -> str:
        """Copy the command shown for the current plan to the clipboard; returns it."""
        self.flush()
        return self.export.copy_command()

    # ------------------------------------------------------------------------------------------ state
    def _on_rig_changed(self, rig: object) -> None:
        rig = rig if isinstance(rig, Rig) else None
        self.rig_header.set_summary(rig_summary(rig))
        key = tuple((g.index, g.name) for g in rig.gpus) if rig is not None else None
        if key != self._rig_key:
            self._rig_key = key
            self.gpus.set_rig(rig)
            self.load_settings.set_rig(rig)
        self.load_settings.update_modes()
        self.gpus.refresh_shares()

    def _on_model_changed(self, model: object) -> None:
        model = model if isinstance(model, ModelChoice) else None
        if model is None:
            self.model_header.set_summary("none yet — double-click one on the Fit tab")
        else:
            self.model_header.set_summary(f"{model.label or model.spec.name} · {model.quant or '?'}")
        self.load_settings.set_model(model)
        self.gpus.refresh_shares()

    def _on_settings_changed(self, settings: object) -> None:
        assert isinstance(settings, Settings)
        self.load_settings.show_settings(settings)

    def _on_plan_changed(self, plan: object) -> None:
        plan = plan if isinstance(plan, Plan) else None
        self.updates += 1
        self.gpus.refresh_shares()
        self.gpus.show_plan(plan)
        if plan is None:
            self.load_settings.set_speed("")
            if not self.state.plan_error_text:
                if self.state.model is None:
                    self.banner.set_status(
                        "",
                        "Pick a model: double-click a cell on the <b>Fit</b> tab, or open a GGUF file (Ctrl+O).",
                    )
                else:
                    self.banner.set_status("", "Waiting for a rig…")
                self.banner.set_note("")
            self.advice.show_advice((), have_plan=False)
            self.export.set_commands({})
            return
        # The speed estimate follows with the advice (it may re-plan an offload); until then the
        # sentence keeps the last figure rather than flicker without one.
        speed_text = self.load_settings.speed_label.text()
        self.banner.set_status(plan.status, status_sentence(plan, self.state.rig, speed_text))
        self.banner.set_note(" · ".join(plan.notes))
        self._details_timer.start()

    def _on_plan_error(self, message: str) -> None:
        if message:
            self.banner.set_status(STATUS_NO, f"<b>Cannot plan this:</b> {html.escape(message)}")
            self.banner.set_note("")
            self._details_timer.start()

    def _update_details(self) -> None:
        """Speed, advice and exported commands for the current plan (or the settings' problems without one)."""
        self._details_timer.stop()
        rig = self.state.rig
        model = self.state.model
        plan = self.state.plan
        if rig is None or model is None:
            return
        if plan is None:
            self.advice.show_advice(
                settings_advice_for(rig, model.spec, self.state.settings), have_plan=False
            )
            self.export.set_commands({})
            return
        speed_text = speed_summary(rig, model.spec, plan)
        if speed_text != self.load_settings.speed_label.text():
            self.load_settings.set_speed(speed_text)
            self.banner.set_status(plan.status, status_sentence(plan, rig, speed_text))
        self.advice.show_advice(plan_advice_for(rig, model.spec, self.state.settings, plan), have_plan=True)
        self.export.set_commands(commands_for(rig, model, plan))


__all__ = ["SplitView"]
