"""The Split tab's load settings: split mode, main GPU, context, KV cache type, flash attention, GPU layers.

The split mode's radio buttons mark the recommended mode (bold, with the reason) and disable the modes
that cannot work here, saying why in their tooltip; the mode in use stays selectable so the user sees
why it fails. Every edit goes to ``state.settings``; the predicted speed of the plan shows last.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.errors import RigfitError
from app.core.rig import Rig
from app.core.rules import split_mode_problems
from app.core.settings import KV_TYPES, SPLIT_MODES, Settings
from app.ui.glossary import tip
from app.ui.state import CONTEXT_CHOICES, AppState, ModelChoice
from app.ui.theme import TEXT_MUTED, tint

MODE_LABELS = {"layer": "Layer", "row": "Row", "tensor": "Tensor", "none": "None (one GPU)"}
MODE_WORDS = {
    "layer": "layer split",
    "row": "row split",
    "tensor": "tensor split",
    "none": "no split (one GPU)",
}


def mode_problem(rig: Rig, spec: Any, settings: Settings, mode: str) -> str | None:
    """Why split mode ``mode`` cannot work for this rig and model with this llama.cpp (None: it can)."""
    problems = split_mode_problems(rig, spec, settings, mode)
    return problems[0].message if problems else None


def recommended_mode_for(rig: Rig, spec: Any, settings: Settings) -> tuple[str, str] | None:
    """(mode, reason) from :func:`app.core.plan_advice.recommended_split_mode`."""
    if rig.n_gpus == 0:
        return None
    from app.core.plan_advice import recommended_split_mode

    mode, reason = recommended_split_mode(rig, spec, settings)
    return str(mode), str(reason)


class SettingsPanel(QtWidgets.QGroupBox):
    """The "Load settings" box. :attr:`note` carries a sentence for the tab's banner (why the
    largest context could not be set)."""

    note = QtCore.Signal(str)

    def __init__(self, state: AppState, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("Load settings", parent)
        self.state = state
        self._recommended: tuple[str, str] | None = None
        self._recommended_for: tuple[object, ...] | None = None
        self._settings_shown: Settings | None = None
        self._build()

    def _build(self) -> None:
        form = QtWidgets.QFormLayout(self)
        form.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        modes = QtWidgets.QWidget()
        modes_layout = QtWidgets.QVBoxLayout(modes)
        modes_layout.setContentsMargins(0, 0, 0, 0)
        modes_layout.setSpacing(2)
        self.mode_group = QtWidgets.QButtonGroup(self)
        self.mode_buttons: dict[str, QtWidgets.QRadioButton] = {}
        for mode in SPLIT_MODES:
            radio = QtWidgets.QRadioButton(MODE_LABELS[mode])
            radio.setObjectName(f"mode_{mode}")
            radio.setToolTip(tip(f"mode_{mode}"))
            self.mode_group.addButton(radio)
            self.mode_buttons[mode] = radio
            modes_layout.addWidget(radio)
        self.mode_group.buttonClicked.connect(self._on_mode_clicked)
        self.mode_reason = QtWidgets.QLabel("")
        self.mode_reason.setObjectName("modeReason")
        self.mode_reason.setWordWrap(True)
        tint(self.mode_reason, TEXT_MUTED)
        modes_layout.addWidget(self.mode_reason)
        mode_label = QtWidgets.QLabel("Split mode")
        mode_label.setToolTip(tip("split_mode"))
        form.addRow(mode_label, modes)

        self.main_gpu = QtWidgets.QComboBox()
        self.main_gpu.setObjectName("mainGpu")
        self.main_gpu.setToolTip(tip("main_gpu"))
        self.main_gpu.activated.connect(self._on_main_gpu)
        self.main_gpu_label = QtWidgets.QLabel("Main GPU")
        self.main_gpu_label.setToolTip(tip("main_gpu"))
        form.addRow(self.main_gpu_label, self.main_gpu)

        ctx_row = QtWidgets.QHBoxLayout()
        self.ctx_combo = QtWidgets.QComboBox()
        self.ctx_combo.setObjectName("splitContext")
        self.ctx_combo.setEditable(True)
        self.ctx_combo.setInsertPolicy(QtWidgets.QComboBox.InsertPolicy.NoInsert)
        self.ctx_combo.setValidator(QtGui.QIntValidator(256, 1 << 24, self))
        self.ctx_combo.setToolTip(tip("context"))
        for ctx in CONTEXT_CHOICES:
            self.ctx_combo.addItem(str(ctx), ctx)
        self.ctx_combo.activated.connect(self._on_ctx_activated)
        line_edit = self.ctx_combo.lineEdit()
        if line_edit is not None:
            line_edit.editingFinished.connect(self._on_ctx_edited)
        ctx_row.addWidget(self.ctx_combo, 1)
        self.max_ctx_button = QtWidgets.QPushButton("Largest")
        self.max_ctx_button.setObjectName("maxContext")
        self.max_ctx_button.setAutoDefault(False)
        self.max_ctx_button.setToolTip(
            "Set the longest context that fits with this split (up to the model's own limit)"
        )
        self.max_ctx_button.clicked.connect(self.use_largest_context)
        ctx_row.addWidget(self.max_ctx_button)
        ctx_label = QtWidgets.QLabel("Context")
        ctx_label.setToolTip(tip("context"))
        ctx_label.setBuddy(self.ctx_combo)
        form.addRow(ctx_label, ctx_row)

        self.kv_combo = QtWidgets.QComboBox()
        self.kv_combo.setObjectName("kvType")
        for kv in KV_TYPES:
            self.kv_combo.addItem(kv, kv)
        self.kv_combo.setToolTip(tip("kv_type"))
        self.kv_combo.activated.connect(self._on_kv)
        kv_label = QtWidgets.QLabel("KV cache")
        kv_label.setToolTip(tip("kv_cache") + "\n\n" + tip("kv_type"))
        kv_label.setBuddy(self.kv_combo)
        form.addRow(kv_label, self.kv_combo)

        self.flash_attn = QtWidgets.QCheckBox("Flash attention")
        self.flash_attn.setObjectName("flashAttn")
        self.flash_attn.setToolTip(tip("flash_attention"))
        self.flash_attn.toggled.connect(self._on_flash_attn)
        form.addRow("", self.flash_attn)

        self.ngl = QtWidgets.QSpinBox()
        self.ngl.setObjectName("gpuLayers")
        self.ngl.setRange(-1, 999)
        self.ngl.setSpecialValueText("all")
        self.ngl.setKeyboardTracking(False)
        self.ngl.setToolTip(tip("gpu_layers"))
        self.ngl.valueChanged.connect(self._on_ngl)
        ngl_label = QtWidgets.QLabel("GPU layers")
        ngl_label.setToolTip(tip("gpu_layers"))
        ngl_label.setBuddy(self.ngl)
        form.addRow(ngl_label, self.ngl)
        self.speed_label = QtWidgets.QLabel("")
        self.speed_label.setObjectName("speedLabel")
        self.speed_label.setWordWrap(True)
        self.speed_label.setToolTip(tip("tok_s"))
        form.addRow("Speed", self.speed_label)

    # ------------------------------------------------------------------------------------------ state -> widgets
    def set_rig(self, rig: Rig | None) -> None:
        """The GPUs of a new rig: the main-GPU list, then the settings again."""
        self.main_gpu.clear()
        for i, gpu in enumerate(rig.gpus if rig is not None else ()):
            self.main_gpu.addItem(f"GPU {i} · {gpu.name}", i)
        self._settings_shown = None
        self.show_settings(self.state.settings)

    def set_model(self, model: ModelChoice | None) -> None:
        if model is not None:
            self.ngl.setMaximum(model.spec.n_layer + 1)
        self.max_ctx_button.setEnabled(model is not None)
        self.update_modes()

    def show_settings(self, settings: Settings) -> None:
        """The widgets for ``settings`` (a change of the split alone changes nothing here)."""
        s = settings
        key = replace(s, tensor_split=None)
        if key == self._settings_shown:
            return
        self._settings_shown = key
        button = self.mode_buttons.get(s.split_mode)
        if button is not None and not button.isChecked():
            button.setChecked(True)
        self._sync_ctx(s.ctx)
        kv_index = self.kv_combo.findData(s.type_k)
        if kv_index >= 0 and kv_index != self.kv_combo.currentIndex():
            self.kv_combo.setCurrentIndex(kv_index)
        if self.flash_attn.isChecked() != s.flash_attn:
            self.flash_attn.blockSignals(True)
            self.flash_attn.setChecked(s.flash_attn)
            self.flash_attn.blockSignals(False)
        if self.ngl.value() != s.n_gpu_layers:
            self.ngl.blockSignals(True)
            self.ngl.setValue(s.n_gpu_layers)
            self.ngl.blockSignals(False)
        if self.main_gpu.currentIndex() != s.main_gpu and s.main_gpu < self.main_gpu.count():
            self.main_gpu.setCurrentIndex(s.main_gpu)
        none_mode = s.split_mode == "none"
        self.main_gpu.setVisible(none_mode)
        self.main_gpu_label.setVisible(none_mode)
        self.update_modes()

    def set_speed(self, text: str) -> None:
        self.speed_label.setText(text)

    def update_modes(self) -> None:
        """Mark the recommended split mode and disable the ones that cannot work here, with reasons."""
        rig = self.state.rig
        model = self.state.model
        spec = model.spec if model is not None else None
        s = self.state.settings
        # The split itself does not change the recommendation: keyed without it, a slider drag never
        # recomputes it.
        rec_key = (rig, id(spec), replace(s, tensor_split=None))
        if rig is not None and rec_key != self._recommended_for:
            self._recommended_for = rec_key
            self._recommended = recommended_mode_for(rig, spec, s) if spec is not None else None
        recommended = self._recommended[0] if self._recommended else None
        for mode, button in self.mode_buttons.items():
            problem = mode_problem(rig, spec, s, mode) if rig is not None else None
            label = MODE_LABELS[mode]
            font = button.font()
            font.setBold(mode == recommended)
            button.setFont(font)
            if mode == recommended:
                label += " — recommended"
            if problem:
                label += " (not here)"
            button.setText(label)
            # The mode in use stays selectable so the user sees why it fails; others are disabled.
            button.setEnabled(problem is None or mode == s.split_mode)
            button.setToolTip(tip(f"mode_{mode}") + (f"\n\nNot available here: {problem}" if problem else ""))
        reason = ""
        if self._recommended is not None and rig is not None and rig.n_gpus > 0:
            why = self._recommended[1]
            reason = f"Recommended: {MODE_WORDS[self._recommended[0]]}. {why[:1].upper()}{why[1:]}"
        current_problem = mode_problem(rig, spec, s, s.split_mode) if rig is not None else None
        if current_problem and rig is not None and rig.n_gpus > 0:
            reason += f"\n{MODE_LABELS[s.split_mode]}: {current_problem}"
        self.mode_reason.setText(reason.strip())

    def _sync_ctx(self, ctx: int) -> None:
        index = self.ctx_combo.findData(ctx)
        self.ctx_combo.blockSignals(True)
        if index >= 0:
            self.ctx_combo.setCurrentIndex(index)
        else:
            self.ctx_combo.setEditText(str(ctx))
        self.ctx_combo.blockSignals(False)

    # ------------------------------------------------------------------------------------------ user edits
    def use_largest_context(self) -> None:
        """Set the longest context that fits with this split (up to the model's own limit)."""
        model = self.state.model
        rig = self.state.rig
        if model is None or rig is None:
            return
        from app.core.placement import largest_fitting_ctx

        try:
            ctx = largest_fitting_ctx(
                rig, model.spec, self.state.settings, limit=model.spec.n_ctx_train or None
            )
        except RigfitError as exc:
            self.note.emit(str(exc))
            return
        if ctx is None:
            self.note.emit("Not even 256 tokens of context fit with this split.")
            return
        self.state.update_settings(ctx=ctx)

    def _on_mode_clicked(self, button: QtWidgets.QAbstractButton) -> None:
        for mode, b in self.mode_buttons.items():
            if b is button and mode != self.state.settings.split_mode:
                self.state.update_settings(split_mode=mode)
                return

    def _on_main_gpu(self, index: int) -> None:
        if index >= 0 and index != self.state.settings.main_gpu:
            self.state.update_settings(main_gpu=index)

    def _on_ctx_activated(self, index: int) -> None:
        ctx = self.ctx_combo.itemData(index)
        if isinstance(ctx, int):
            self._set_ctx(ctx)
        else:
            self._on_ctx_edited()

    def _on_ctx_edited(self) -> None:
        text = self.ctx_combo.currentText().replace(",", "").strip()
        try:
            ctx = int(text)
        except ValueError:
            self._sync_ctx(self.state.settings.ctx)
            return
        self._set_ctx(ctx)

    def _set_ctx(self, ctx: int) -> None:
        if ctx >= 1 and ctx != self.state.settings.ctx:
            self.state.update_settings(ctx=ctx)

    def _on_kv(self, index: int) -> None:
        kv = self.kv_combo.itemData(index)
        if kv and (kv != self.state.settings.type_k or kv != self.state.settings.type_v):
            self.state.update_settings(type_k=kv, type_v=kv)

    def _on_flash_attn(self, on: bool) -> None:
        if on != self.state.settings.flash_attn:
            self.state.update_settings(flash_attn=on)

    def _on_ngl(self, value: int) -> None:
        if value != self.state.settings.n_gpu_layers:
            self.state.update_settings(n_gpu_layers=value)


__all__ = ["MODE_LABELS", "SettingsPanel", "mode_problem", "recommended_mode_for"]
