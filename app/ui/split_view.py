"""The Split tab: move the tensor split with a slider per GPU and watch the layers and memory follow.

One row per GPU: a slider and a number box (%), a lock, a stacked bar — weights, KV cache, compute,
overhead — against the GPU's memory, and the layers it holds; a last row for the host (system RAM).
Presets set the whole split (even, by VRAM, by free VRAM, largest context, most even headroom);
beside it the split mode (the recommended one marked, with the reason; modes that cannot work here
disabled, with the reason), the context, KV cache type, flash attention and GPU layers. Below: the
plan's status in words, the advice for this plan and the command lines that reproduce it.

Speed: every change goes through :class:`~app.ui.state.AppState`, which re-plans synchronously
(``plan()`` takes about 1 ms with the layer split, about 12 ms with the tensor split for a 70B model);
the view then only updates values — no widget is
created or destroyed unless the number of GPUs changes — so a slider drag repaints within a frame
(``tests/bench/test_slider_bench.py`` measures it).
"""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.errors import RigfitError
from app.core.plan import STATUS_NO, Plan
from app.core.rig import Rig
from app.core.rules import split_mode_problems
from app.core.settings import KV_TYPES, SPLIT_MODES, Settings
from app.ui.colors import gpu_color
from app.ui.glossary import tip
from app.ui.state import AppState, ModelChoice
from app.ui.widgets import (
    STATUS_WORDS,
    BarValues,
    LinkHeader,
    MemoryBar,
    Swatch,
    describe_bar,
    gib,
    muted_text,
    rig_summary,
    segment_legend,
    short_gpu_name,
    status_background,
    status_foreground,
)

log = logging.getLogger(__name__)

SLIDER_STEPS = 1000  # a slider step is 0.1%
CONTEXT_CHOICES: tuple[int, ...] = (2048, 4096, 8192, 16384, 32768, 65536, 131072)
MODE_LABELS = {"layer": "Layer", "row": "Row", "tensor": "Tensor", "none": "None (one GPU)"}
MODE_WORDS = {
    "layer": "layer split",
    "row": "row split",
    "tensor": "tensor split",
    "none": "no split (one GPU)",
}

PRESET_EVEN = "even"
PRESET_VRAM = "vram"
PRESET_FREE = "free"
PRESET_CONTEXT = "context"
PRESET_HEADROOM = "headroom"
PRESETS: tuple[tuple[str, str, str], ...] = (
    (PRESET_EVEN, "Even", "The same share for every GPU"),
    (PRESET_VRAM, "By VRAM", "Shares proportional to each GPU's total memory"),
    (
        PRESET_FREE,
        "By free VRAM",
        "Shares proportional to each GPU's free memory: what llama.cpp does when you give no split",
    ),
    (PRESET_CONTEXT, "Largest context", "The split that lets the longest context fit on the GPUs"),
    (
        PRESET_HEADROOM,
        "Even headroom",
        "The split that leaves every GPU the same share of its memory free (most even headroom)",
    ),
)
TOOLS: tuple[tuple[str, str], ...] = (
    ("llama-server", "llama-server"),
    ("llama-bench", "llama-bench"),
    ("ollama", "Ollama"),
    ("vllm", "vLLM"),
    ("exllamav2", "ExLlamaV2"),
)


def percent_display(ratios: Sequence[float], decimals: int = 1) -> tuple[float, ...]:
    """Ratios as percentages rounded to ``decimals`` that add up to exactly 100 (largest remainder),
    so the number boxes never show 33.3 + 33.3 + 33.3."""
    total = sum(ratios)
    if not ratios or total <= 0:
        return tuple(0.0 for _ in ratios)
    unit = 10**decimals
    exact = [r / total * 100 * unit for r in ratios]
    floors = [math.floor(x) for x in exact]
    short = 100 * unit - sum(floors)
    order = sorted(range(len(exact)), key=lambda i: exact[i] - floors[i], reverse=True)
    for i in order[: max(0, short)]:
        floors[i] += 1
    return tuple(f / unit for f in floors)


def layers_text(layers: int, first: int, has_output: bool) -> str:
    """``"20 layers (0–19) + output"``: how many layers a device holds, and which."""
    if layers <= 0 and not has_output:
        return "no layers"
    parts = []
    if layers > 0:
        span = f"{first}" if layers == 1 else f"{first}–{first + layers - 1}"
        parts.append(f"{layers} layer{'s' if layers != 1 else ''} ({span})")
    if has_output:
        parts.append("output")
    return " + ".join(parts)


def mode_problem(rig: Rig, spec: Any, settings: Settings, mode: str) -> str | None:
    """Why split mode ``mode`` cannot work for this rig and model with this llama.cpp (None: it can)."""
    problems = split_mode_problems(rig, spec, settings, mode)
    return problems[0].message if problems else None


class GpuRow:
    """The widgets of one GPU's row in the split grid (no QWidget of its own: they sit in the grid)."""

    def __init__(self, index: int, name: str, parent: QtWidgets.QWidget) -> None:
        self.index = index
        self.swatch = Swatch(gpu_color(index), parent)
        self.name = QtWidgets.QLabel(f"GPU {index} · {short_gpu_name(name)}", parent)
        self.name.setObjectName(f"gpuName{index}")
        self.name.setToolTip(name)
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal, parent)
        self.slider.setObjectName(f"splitSlider{index}")
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setPageStep(50)
        self.slider.setSingleStep(5)
        self.slider.setMinimumWidth(120)
        self.slider.setToolTip(tip("tensor_split"))
        self.slider.setAccessibleName(f"GPU {index} share")
        self.spin = QtWidgets.QDoubleSpinBox(parent)
        self.spin.setObjectName(f"splitPercent{index}")
        self.spin.setRange(0.0, 100.0)
        self.spin.setDecimals(1)
        self.spin.setSingleStep(1.0)
        self.spin.setSuffix(" %")
        self.spin.setKeyboardTracking(False)
        self.spin.setAccessibleName(f"GPU {index} share in percent")
        self.spin.setToolTip(tip("tensor_split"))
        self.lock = QtWidgets.QCheckBox("Lock", parent)
        self.lock.setObjectName(f"splitLock{index}")
        self.lock.setToolTip(tip("lock"))
        self.bar = MemoryBar(parent)
        self.bar.setObjectName(f"memoryBar{index}")
        self.bar.show_text = False
        self.used = QtWidgets.QLabel("", parent)
        self.used.setObjectName(f"used{index}")
        self.used.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
        self.layers = QtWidgets.QLabel("", parent)
        self.layers.setObjectName(f"layers{index}")
        self.layers.setMinimumWidth(parent.fontMetrics().horizontalAdvance("88 layers (88–88) + output") + 4)

    def widgets(self) -> tuple[QtWidgets.QWidget, ...]:
        return (self.swatch, self.name, self.slider, self.spin, self.lock, self.bar, self.used, self.layers)

    def set_share(self, percent: float) -> None:
        # Values set by the view must not come back as user edits.
        self.slider.blockSignals(True)
        self.spin.blockSignals(True)
        self.slider.setValue(round(percent * SLIDER_STEPS / 100))
        self.spin.setValue(percent)
        self.slider.blockSignals(False)
        self.spin.blockSignals(False)

    def set_enabled(self, enabled: bool) -> None:
        self.slider.setEnabled(enabled)
        self.spin.setEnabled(enabled)
        self.lock.setEnabled(enabled)

    def delete(self) -> None:
        for w in self.widgets():
            w.setParent(None)
            w.deleteLater()


class SplitView(QtWidgets.QWidget):
    """The Split tab (see the module docstring)."""

    rig_link_activated = QtCore.Signal()
    model_link_activated = QtCore.Signal()
    command_copied = QtCore.Signal(str)

    def __init__(self, state: AppState, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("splitView")
        self.state = state
        self.rows: list[GpuRow] = []
        self._locks: list[bool] = []
        self._rig_key: tuple[object, ...] | None = None
        self._recommended: tuple[str, str] | None = None
        self._recommended_for: tuple[object, ...] | None = None
        self._advice_shown: tuple[tuple[str, str, str], ...] | None = None
        self._commands: dict[str, str] = {}
        self.updates = 0  # plan updates applied (benchmarks and tests)
        self.preset_note = ""
        self._settings_shown: Settings | None = None
        # Advice and the exported commands take several milliseconds (the advice plans the model on
        # one GPU and prices each option): they follow the bars on the next pass of the event loop,
        # once per burst of slider moves, so a drag repaints the bars at once.
        self._details_timer = QtCore.QTimer(self)
        self._details_timer.setObjectName("splitDetailsTimer")
        self._details_timer.setSingleShot(True)
        self._details_timer.setInterval(0)
        self._details_timer.timeout.connect(self._update_details)
        self._build()
        state.rig_changed.connect(self._on_rig_changed)
        state.model_changed.connect(self._on_model_changed)
        state.settings_changed.connect(self._on_settings_changed)
        state.plan_changed.connect(self._on_plan_changed)
        state.plan_error.connect(self._on_plan_error)
        self._on_rig_changed(state.rig)
        self._on_model_changed(state.model)
        self._on_settings_changed(state.settings)
        self._on_plan_changed(state.plan)

    # ------------------------------------------------------------------------------------------ build
    def _build(self) -> None:
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
        self.rig_header = LinkHeader("Rig:", "hardware")
        self.rig_header.setObjectName("splitRigHeader")
        self.rig_header.link_activated.connect(lambda _t: self.rig_link_activated.emit())
        headers.addWidget(self.rig_header, 1)
        self.model_header = LinkHeader("Model:", "fit")
        self.model_header.setObjectName("splitModelHeader")
        self.model_header.link_activated.connect(lambda _t: self.model_link_activated.emit())
        headers.addWidget(self.model_header, 1)
        outer.addLayout(headers)

        self.status_label = QtWidgets.QLabel("")
        self.status_label.setObjectName("planStatusLabel")
        self.status_label.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.status_label.setWordWrap(True)
        self.status_label.setAutoFillBackground(True)
        self.status_label.setContentsMargins(8, 4, 8, 4)
        self.status_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(self.status_label)
        self.notes_label = QtWidgets.QLabel("")
        self.notes_label.setObjectName("planNotes")
        notes_palette = self.notes_label.palette()
        notes_palette.setColor(QtGui.QPalette.ColorRole.WindowText, muted_text(notes_palette))
        self.notes_label.setPalette(notes_palette)
        self.notes_label.setWordWrap(True)
        self.notes_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(self.notes_label)

        middle = QtWidgets.QHBoxLayout()
        middle.setSpacing(8)
        split_box = QtWidgets.QGroupBox("Tensor split")
        split_box.setToolTip(tip("tensor_split"))
        split_layout = QtWidgets.QVBoxLayout(split_box)
        presets = QtWidgets.QHBoxLayout()
        presets.addWidget(QtWidgets.QLabel("Presets:"))
        self.preset_buttons: dict[str, QtWidgets.QPushButton] = {}
        for key, label, tooltip in PRESETS:
            button = QtWidgets.QPushButton(label)
            button.setObjectName(f"preset_{key}")
            button.setToolTip(tooltip)
            button.setAutoDefault(False)
            button.clicked.connect(lambda _=False, key=key: self.apply_preset(key))
            presets.addWidget(button)
            self.preset_buttons[key] = button
        presets.addStretch(1)
        split_layout.addLayout(presets)
        self.grid_host = QtWidgets.QWidget()
        self.grid = QtWidgets.QGridLayout(self.grid_host)
        self.grid.setContentsMargins(0, 4, 0, 0)
        self.grid.setHorizontalSpacing(8)
        self.grid.setVerticalSpacing(6)
        for col, (heading, key) in enumerate(
            (
                ("", ""),
                ("GPU", ""),
                ("Share", "tensor_split"),
                ("", ""),
                ("", "lock"),
                ("Memory", ""),
                ("", ""),
                ("Layers", ""),
            )
        ):
            if heading:
                header = QtWidgets.QLabel(f"<b>{heading}</b>")
                if key:
                    header.setToolTip(tip(key))
                self.grid.addWidget(header, 0, col)
        self.grid.setColumnStretch(2, 2)
        self.grid.setColumnStretch(5, 5)
        self.host_swatch = Swatch(muted_text(self.palette()))
        self.host_name = QtWidgets.QLabel("Host (system RAM)")
        self.host_name.setToolTip(tip("host"))
        self.host_bar = MemoryBar()
        self.host_bar.setObjectName("hostBar")
        self.host_bar.show_text = False
        self.host_used = QtWidgets.QLabel("")
        self.host_used.setObjectName("hostUsed")
        self.host_used.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
        self.host_layers = QtWidgets.QLabel("")
        self.host_layers.setObjectName("hostLayers")
        split_layout.addWidget(self.grid_host)
        self.empty_label = QtWidgets.QLabel("")
        self.empty_label.setWordWrap(True)
        self.empty_label.hide()
        split_layout.addWidget(self.empty_label)
        split_layout.addWidget(segment_legend(self.palette()))
        split_layout.addStretch(1)
        middle.addWidget(split_box, 5)

        settings_box = QtWidgets.QGroupBox("Load settings")
        form = QtWidgets.QFormLayout(settings_box)
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
        pal = self.mode_reason.palette()
        pal.setColor(QtGui.QPalette.ColorRole.WindowText, muted_text(pal))
        self.mode_reason.setPalette(pal)
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
        middle.addWidget(settings_box, 2)
        outer.addLayout(middle, 0)

        lower = QtWidgets.QHBoxLayout()
        lower.setSpacing(8)
        advice_box = QtWidgets.QGroupBox("Advice for this plan")
        advice_layout = QtWidgets.QVBoxLayout(advice_box)
        self.advice_list = QtWidgets.QListWidget()
        self.advice_list.setObjectName("planAdvice")
        self.advice_list.setWordWrap(True)
        self.advice_list.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.NoSelection)
        self.advice_list.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        advice_layout.addWidget(self.advice_list)
        lower.addWidget(advice_box, 3)

        command_box = QtWidgets.QGroupBox("Run it elsewhere")
        command_layout = QtWidgets.QVBoxLayout(command_box)
        tool_row = QtWidgets.QHBoxLayout()
        self.tool_combo = QtWidgets.QComboBox()
        self.tool_combo.setObjectName("commandTool")
        for key, label in TOOLS:
            self.tool_combo.addItem(label, key)
        self.tool_combo.currentIndexChanged.connect(lambda _i: self._show_command())
        tool_row.addWidget(self.tool_combo)
        tool_row.addStretch(1)
        self.copy_button = QtWidgets.QPushButton("Copy command")
        self.copy_button.setObjectName("copyCommand")
        self.copy_button.setAutoDefault(False)
        self.copy_button.clicked.connect(self.copy_command)
        tool_row.addWidget(self.copy_button)
        command_layout.addLayout(tool_row)
        self.command_text = QtWidgets.QPlainTextEdit()
        self.command_text.setObjectName("commandText")
        self.command_text.setReadOnly(True)
        self.command_text.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.WidgetWidth)
        fixed = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont)
        self.command_text.setFont(fixed)
        command_layout.addWidget(self.command_text, 1)
        lower.addWidget(command_box, 2)
        outer.addLayout(lower, 1)

        self.setTabOrder(self.preset_buttons[PRESET_EVEN], self.preset_buttons[PRESET_VRAM])

    # ------------------------------------------------------------------------------------------ rows
    def _rebuild_rows(self, rig: Rig | None) -> None:
        for row in self.rows:
            for w in row.widgets():
                self.grid.removeWidget(w)
            row.delete()
        self.rows = []
        for w in (self.host_swatch, self.host_name, self.host_bar, self.host_used, self.host_layers):
            self.grid.removeWidget(w)
        gpus = rig.gpus if rig is not None else ()
        self._locks = [False] * len(gpus)
        previous: QtWidgets.QWidget = self.preset_buttons[PRESETS[-1][0]]
        for i, gpu in enumerate(gpus):
            row = GpuRow(i, gpu.name, self.grid_host)
            r = i + 1
            self.grid.addWidget(row.swatch, r, 0)
            self.grid.addWidget(row.name, r, 1)
            self.grid.addWidget(row.slider, r, 2)
            self.grid.addWidget(row.spin, r, 3)
            self.grid.addWidget(row.lock, r, 4)
            self.grid.addWidget(row.bar, r, 5)
            self.grid.addWidget(row.used, r, 6)
            self.grid.addWidget(row.layers, r, 7)
            row.slider.valueChanged.connect(lambda v, i=i: self.set_share(i, v / SLIDER_STEPS * 100))
            row.spin.valueChanged.connect(lambda v, i=i: self.set_share(i, v))
            row.lock.toggled.connect(lambda on, i=i: self.set_locked(i, on))
            # Keyboard order runs along each row: slider, number, lock, then the next GPU.
            for w in (row.slider, row.spin, row.lock):
                QtWidgets.QWidget.setTabOrder(previous, w)
                previous = w
            self.rows.append(row)
        r = len(gpus) + 1
        self.grid.addWidget(self.host_swatch, r, 0)
        self.grid.addWidget(self.host_name, r, 1, 1, 4)
        self.grid.addWidget(self.host_bar, r, 5)
        self.grid.addWidget(self.host_used, r, 6)
        self.grid.addWidget(self.host_layers, r, 7)
        self.main_gpu.clear()
        for i, gpu in enumerate(gpus):
            self.main_gpu.addItem(f"GPU {i} · {gpu.name}", i)

    # ------------------------------------------------------------------------------------------ API
    def ratios(self) -> tuple[float, ...]:
        """The split the sliders show, as ratios summing to 1 (the plan's, or the state's)."""
        rig = self.state.rig
        if rig is None or rig.n_gpus == 0:
            return ()
        s = self.state.settings
        if s.tensor_split is not None and len(s.tensor_split) == rig.n_gpus and sum(s.tensor_split) > 0:
            total = float(sum(s.tensor_split))
            return tuple(float(r) / total for r in s.tensor_split)
        plan = self.state.plan
        if plan is not None and len(plan.tensor_split) == rig.n_gpus:
            return tuple(plan.tensor_split)
        from app.core.placement import effective_tensor_split

        return effective_tensor_split(rig, s)

    @property
    def locks(self) -> tuple[bool, ...]:
        return tuple(self._locks)

    def set_locked(self, index: int, locked: bool) -> None:
        if 0 <= index < len(self._locks):
            self._locks[index] = locked
            row = self.rows[index]
            if row.lock.isChecked() != locked:
                row.lock.blockSignals(True)
                row.lock.setChecked(locked)
                row.lock.blockSignals(False)
            self._update_lock_limits()

    def set_share(self, index: int, percent: float) -> None:
        """Give GPU ``index`` ``percent`` of the model; unlocked GPUs share the rest in proportion."""
        current = self.ratios()
        if not 0 <= index < len(current):
            return
        new = rebalance(current, index, max(0.0, min(100.0, percent)) / 100.0, self._locks)
        if new == current and self.state.settings.tensor_split is not None:
            self._show_shares(new)  # the value was refused (locks): put the slider back
            return
        self.state.update_settings(tensor_split=tuple(new))

    def set_split(self, ratios: Sequence[float]) -> None:
        """Set the whole split (presets, tests); locks do not apply."""
        rig = self.state.rig
        if rig is None or len(ratios) != rig.n_gpus:
            return
        total = float(sum(ratios))
        if total <= 0:
            return
        self.state.update_settings(tensor_split=tuple(float(r) / total for r in ratios))

    def apply_preset(self, key: str) -> bool:
        """Apply a split preset; False (with the reason in the status line) when it cannot be made."""
        rig = self.state.rig
        if rig is None or rig.n_gpus == 0:
            return False
        model = self.state.model
        settings = self.state.settings
        try:
            ratios, note = preset_split(key, rig, model.spec if model is not None else None, settings)
        except RigfitError as exc:
            self.preset_note = f"Preset not applied: {exc}"
            self.notes_label.setText(self.preset_note)
            return False
        # The optimisers place whole layers; "none" has nothing to split.
        if settings.split_mode == "none" or (
            key in (PRESET_CONTEXT, PRESET_HEADROOM) and settings.split_mode != "layer"
        ):
            self.state.update_settings(split_mode="layer")
        # Kept as given: the optimisers return layer counts, the exact split llama.cpp reproduces.
        self.state.update_settings(tensor_split=tuple(ratios))
        self.preset_note = note
        if note:
            self.notes_label.setText(note)
        return True

    def use_largest_context(self) -> None:
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
            self.notes_label.setText(str(exc))
            return
        if ctx is None:
            self.notes_label.setText("Not even 256 tokens of context fit with this split.")
            return
        self.state.update_settings(ctx=ctx)

    def copy_command(self) -> str:
        """Copy the shown command to the clipboard; returns it."""
        self.flush()
        text = self.command_text.toPlainText()
        if text:
            clipboard = QtGui.QGuiApplication.clipboard()
            clipboard.setText(text)
            self.command_copied.emit(text)
        return text

    def current_tool(self) -> str:
        return str(self.tool_combo.currentData())

    def set_tool(self, key: str) -> None:
        index = self.tool_combo.findData(key)
        if index >= 0:
            self.tool_combo.setCurrentIndex(index)

    def commands(self) -> dict[str, str]:
        """The exported command per tool for the current plan."""
        return dict(self._commands)

    # ------------------------------------------------------------------------------------------ state
    def _on_rig_changed(self, rig: object) -> None:
        rig = rig if isinstance(rig, Rig) else None
        self.rig_header.set_summary(rig_summary(rig))
        key = tuple((g.index, g.name) for g in rig.gpus) if rig is not None else None
        if key != self._rig_key:
            self._rig_key = key
            self._rebuild_rows(rig)
            self._settings_shown = None  # the main GPU list was rebuilt: show the settings again
            self._on_settings_changed(self.state.settings)
        self._update_modes()
        self._refresh_shares()

    def _on_model_changed(self, model: object) -> None:
        model = model if isinstance(model, ModelChoice) else None
        if model is None:
            self.model_header.set_summary("none yet — double-click one on the Fit tab")
        else:
            self.model_header.set_summary(f"{model.label or model.spec.name} · {model.quant or '?'}")
            self.ngl.setMaximum(model.spec.n_layer + 1)
        self._update_modes()
        has_model = model is not None
        for key in (PRESET_CONTEXT, PRESET_HEADROOM):
            self.preset_buttons[key].setEnabled(has_model)
        self.max_ctx_button.setEnabled(has_model)

    def _on_settings_changed(self, settings: object) -> None:
        assert isinstance(settings, Settings)
        s = settings
        # A slider move changes only the split: nothing here depends on it.
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
        self._update_modes()

    def _on_plan_changed(self, plan: object) -> None:
        plan = plan if isinstance(plan, Plan) else None
        self.updates += 1
        self._refresh_shares()
        self._show_plan(plan)

    def _on_plan_error(self, message: str) -> None:
        if message:
            self._set_status_text(STATUS_NO, f"<b>Cannot plan this:</b> {html.escape(message)}")
            self.notes_label.setText("")
            self._details_timer.start()

    # ------------------------------------------------------------------------------------------ showing
    def _refresh_shares(self) -> None:
        ratios = self.ratios()
        if len(ratios) == len(self.rows):
            self._show_shares(ratios)
        enabled = self.state.settings.split_mode != "none" and len(self.rows) > 1
        for row in self.rows:
            row.set_enabled(enabled)
        for key, button in self.preset_buttons.items():
            needs_model = key in (PRESET_CONTEXT, PRESET_HEADROOM)
            button.setEnabled(len(self.rows) > 1 and (not needs_model or self.state.model is not None))
        self._update_lock_limits()

    def _show_shares(self, ratios: Sequence[float]) -> None:
        for row, percent in zip(self.rows, percent_display(ratios), strict=False):
            row.set_share(percent)

    def _update_lock_limits(self) -> None:
        # With every other GPU locked a slider cannot move: say so rather than let it spring back.
        n = len(self.rows)
        for i, row in enumerate(self.rows):
            others_free = any(not self._locks[j] for j in range(n) if j != i)
            movable = (
                others_free and not self._locks[i] and self.state.settings.split_mode != "none" and n > 1
            )
            row.slider.setEnabled(movable)
            row.spin.setEnabled(movable)

    def _show_plan(self, plan: Plan | None) -> None:
        rig = self.state.rig
        model = self.state.model
        scale = max((g.vram_usable_mib for g in rig.gpus), default=0.0) if rig is not None else 0.0
        if plan is None:
            for row in self.rows:
                gpu = rig.gpus[row.index] if rig is not None else None
                values = BarValues(capacity_mib=gpu.vram_usable_mib if gpu is not None else None)
                row.bar.set_values(values)
                row.bar.set_scale_mib(scale or None)
                self._set_used(row.used, values, empty=True)
                row.layers.setText("")
            host_values = BarValues(capacity_mib=rig.host.ram_available_mib if rig is not None else None)
            self.host_bar.set_values(host_values)
            self._set_used(self.host_used, host_values, empty=True)
            self.host_layers.setText("")
            self.speed_label.setText("")
            if not self.state.plan_error_text:
                if model is None:
                    self._set_status_text(
                        "",
                        "Pick a model: double-click a cell on the <b>Fit</b> tab, or open a GGUF file (Ctrl+O).",
                    )
                else:
                    self._set_status_text("", "Waiting for a rig…")
                self.notes_label.setText("")
            self._show_advice(())
            self._set_commands({})
            return
        for row, d in zip(self.rows, plan.devices, strict=False):
            values = BarValues(d.weights_mib, d.kv_mib, d.compute_mib, d.overhead_mib, d.capacity_mib)
            row.bar.set_values(values)
            row.bar.set_scale_mib(scale or None)
            self._set_used(row.used, values)
            row.layers.setText(layers_text(d.layers, d.first_layer, d.has_output))
        host = plan.host
        host_values = BarValues(
            host.weights_mib, host.kv_mib, host.compute_mib + host.output_mib, 0.0, host.available_mib
        )
        self.host_bar.set_values(host_values)
        self._set_used(self.host_used, host_values)
        host_parts = ["token embeddings"]
        if host.layers > 0:
            host_parts.append(layers_text(host.layers, 0, False))
        if plan.devices and not any(d.has_output for d in plan.devices):
            host_parts.append("output")
        self.host_layers.setText(" + ".join(host_parts))
        # The speed estimate follows with the advice (it may re-plan an offload); until then the
        # sentence keeps the last figure rather than flicker without one.
        self._set_status_text(plan.status, status_sentence(plan, rig, self.speed_label.text()))
        self.notes_label.setText(" · ".join(plan.notes))
        self._details_timer.start()

    def _update_details(self) -> None:
        """Advice and exported commands for the current plan (or the settings' problems without one)."""
        self._details_timer.stop()
        rig = self.state.rig
        model = self.state.model
        plan = self.state.plan
        if rig is None or model is None:
            return
        if plan is None:
            self._show_advice(settings_advice_for(rig, model.spec, self.state.settings))
            self._set_commands({})
            return
        speed_text = speed_summary(rig, model.spec, plan)
        if speed_text != self.speed_label.text():
            self.speed_label.setText(speed_text)
            self._set_status_text(plan.status, status_sentence(plan, rig, speed_text))
        self._show_advice(plan_advice_for(rig, model.spec, self.state.settings, plan))
        self._set_commands(commands_for(rig, model, plan))

    def flush(self) -> None:
        """Bring the advice and commands up to date now (tests, benchmarks, before copying)."""
        if self._details_timer.isActive():
            self._update_details()

    def shutdown(self) -> None:
        """Stop the pending update (the window is closing)."""
        self._details_timer.stop()

    def _set_used(self, label: QtWidgets.QLabel, values: BarValues, empty: bool = False) -> None:
        cap = values.capacity_mib
        if empty:
            text = f"{gib(cap)}" if cap is not None else ""
        elif cap is None:
            text = gib(values.total_mib)
        else:
            text = f"{values.total_mib / 1024:.1f} / {gib(cap)}"
        over = cap is not None and not empty and values.total_mib > cap
        if label.text() != text:
            label.setText(text)
        if label.property("over") != over:
            label.setProperty("over", over)
            pal = self.palette()
            pal.setColor(
                QtGui.QPalette.ColorRole.WindowText,
                status_foreground(STATUS_NO, pal) if over else pal.color(QtGui.QPalette.ColorRole.WindowText),
            )
            label.setPalette(pal)
        label.setToolTip("" if empty else describe_bar(values))

    def _set_status_text(self, status: str, text: str) -> None:
        pal = self.status_label.palette()
        if status:
            pal.setColor(QtGui.QPalette.ColorRole.Window, status_background(status, self.palette()))
        else:
            pal.setColor(
                QtGui.QPalette.ColorRole.Window, self.palette().color(QtGui.QPalette.ColorRole.AlternateBase)
            )
        pal.setColor(QtGui.QPalette.ColorRole.WindowText, self.palette().color(QtGui.QPalette.ColorRole.Text))
        self.status_label.setPalette(pal)
        self.status_label.setText(text)
        self._status = status

    @property
    def status(self) -> str:
        """The plan status shown ("" without a plan)."""
        return getattr(self, "_status", "")

    def _show_advice(self, advice: Sequence[Any]) -> None:
        shown = tuple((a.code, a.level, a.message) for a in advice)
        if shown == self._advice_shown:
            return
        self._advice_shown = shown
        self.advice_list.clear()
        style = self.style()
        icons = {
            "error": QtWidgets.QStyle.StandardPixmap.SP_MessageBoxCritical,
            "warning": QtWidgets.QStyle.StandardPixmap.SP_MessageBoxWarning,
        }
        for code, level, message in shown:
            icon = style.standardIcon(
                icons.get(level, QtWidgets.QStyle.StandardPixmap.SP_MessageBoxInformation)
            )
            item = QtWidgets.QListWidgetItem(icon, message)
            item.setData(QtCore.Qt.ItemDataRole.UserRole, code)
            item.setToolTip(f"{level}: {code}")
            self.advice_list.addItem(item)
        if not shown:
            self.advice_list.addItem("Nothing to add: this plan looks sound." if self.state.plan else "")

    def advice_codes(self) -> list[str]:
        return [
            str(self.advice_list.item(i).data(QtCore.Qt.ItemDataRole.UserRole))
            for i in range(self.advice_list.count())
            if self.advice_list.item(i).data(QtCore.Qt.ItemDataRole.UserRole)
        ]

    def _set_commands(self, commands: dict[str, str]) -> None:
        if commands == self._commands:
            return
        self._commands = dict(commands)
        self._show_command()

    def _show_command(self) -> None:
        tool = self.current_tool()
        text = self._commands.get(tool, "")
        if self.command_text.toPlainText() != text:
            self.command_text.setPlainText(text)
        self.copy_button.setEnabled(bool(text))

    def _update_modes(self) -> None:
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

    def changeEvent(self, event: QtCore.QEvent) -> None:
        if event.type() == QtCore.QEvent.Type.PaletteChange:
            self.host_swatch.set_color(muted_text(self.palette()))
            self._set_status_text(self.status, self.status_label.text())
        super().changeEvent(event)


# ------------------------------------------------------------------------------------------ core calls
def rebalance(ratios: Sequence[float], index: int, value: float, locks: Sequence[bool]) -> tuple[float, ...]:
    """New ratios with GPU ``index`` at ``value``: locked GPUs keep theirs, the others share the rest."""
    from app.core.split import rebalance as solve

    locked = frozenset(i for i, on in enumerate(locks) if on and i != index)
    return tuple(solve(ratios, index, value, locked))


def preset_split(key: str, rig: Rig, spec: Any, settings: Settings) -> tuple[tuple[float, ...], str]:
    """The split of a preset (:data:`PRESETS`) for this rig (and model, for the optimisers), and a note
    to show with it."""
    from app.core import split

    if key in (PRESET_EVEN, PRESET_VRAM, PRESET_FREE):
        return split.preset_split(rig, key), ""
    if spec is None:
        raise RigfitError("pick a model first: this preset optimises the split for one")
    layered = replace(settings, split_mode="layer", tensor_split=None, n_gpu_layers=-1)
    if key == PRESET_CONTEXT:
        solution = split.split_for_max_ctx(rig, spec, layered)
        ctx = solution.max_ctx
        note = (
            f"This split fits up to {ctx:,} tokens of context (press Largest to use them)."
            if ctx
            else "Not even 256 tokens of context fit with every layer on the GPUs."
        )
        return tuple(float(c) for c in solution.tensor_split), note
    if key == PRESET_HEADROOM:
        solution = split.split_for_even_headroom(rig, spec, layered)
        return (
            tuple(float(c) for c in solution.tensor_split),
            f"Every GPU keeps at least {solution.min_free_fraction:.0%} of its VRAM free with this split.",
        )
    raise RigfitError(f"unknown preset '{key}'")


def recommended_mode_for(rig: Rig, spec: Any, settings: Settings) -> tuple[str, str] | None:
    """(mode, reason) from :func:`app.core.plan_advice.recommended_split_mode`."""
    if rig.n_gpus == 0:
        return None
    from app.core.plan_advice import recommended_split_mode

    mode, reason = recommended_split_mode(rig, spec, settings)
    return str(mode), str(reason)


def plan_advice_for(rig: Rig, spec: Any, settings: Settings, plan: Plan) -> tuple[Any, ...]:
    from app.core.plan_advice import plan_advice

    return tuple(plan_advice(rig, spec, settings, plan))


def settings_advice_for(rig: Rig, spec: Any, settings: Settings) -> tuple[Any, ...]:
    from app.core.plan_advice import settings_advice

    return tuple(settings_advice(rig, spec, settings))


def commands_for(rig: Rig, model: ModelChoice, plan: Plan) -> dict[str, str]:
    """What to paste into a shell per tool (:data:`TOOLS` keys): :mod:`app.core.commands`' text, with
    the files to write first and the notes (what the tool cannot express) as comments."""
    from app.core.commands import export_commands

    return {tool: command.text for tool, command in export_commands(rig, model.spec, plan).items()}


def speed_summary(rig: Rig, spec: Any, plan: Plan) -> str:
    """``"≈ 17 tok/s generating, ≈ 700 tok/s reading the prompt"`` for a plan ("" when it does not load)."""
    from app.core.perf import estimate_speed

    try:
        est = estimate_speed(rig, spec, plan)
    except RigfitError:
        return ""
    if est.decode_tok_s is None:
        return ""
    text = (
        f"≈ {est.decode_tok_s:.1f} tok/s generating"
        if est.decode_tok_s < 10
        else f"≈ {est.decode_tok_s:.0f} tok/s generating"
    )
    if est.prompt_tok_s is not None:
        text += f", ≈ {est.prompt_tok_s:,.0f} tok/s reading the prompt"
    return text


def status_sentence(plan: Plan, rig: Rig | None, speed_text: str) -> str:
    """The plan status in words, as rich text."""
    word = STATUS_WORDS.get(plan.status, plan.status)
    gpus = len(plan.devices)
    used = plan.gpu_total_mib
    capacity = sum(d.capacity_mib for d in plan.devices)
    if gpus:
        where = f"{gib(used)} of {gib(capacity)} on {gpus} GPU{'s' if gpus != 1 else ''}"
    else:
        where = f"{gib(plan.host.total_mib)} of system RAM (no GPU)"
    host = f", {gib(plan.host.total_mib)} in system RAM" if gpus else ""
    detail = {
        "fits": "every layer on the GPUs, with room to spare",
        "tight": "every layer on the GPUs, but some GPU has less than 10% left",
        "offload": (
            f"{plan.layers_on_cpu} of {plan.n_layer} layers run on the CPU"
            if plan.fit_n_gpu_layers is None
            else f"fits with n_gpu_layers = {plan.fit_n_gpu_layers}; the other layers run on the CPU"
        ),
        "no": "not even with layers moved to the CPU" if plan.fit_n_gpu_layers is None else "",
    }.get(plan.status, "")
    text = f"<b>{html.escape(word)}</b> — {html.escape(detail)}. {html.escape(where)}{html.escape(host)}"
    if speed_text:
        text += f" · {html.escape(speed_text)}"
    return text


__all__ = [
    "CONTEXT_CHOICES",
    "PRESETS",
    "TOOLS",
    "GpuRow",
    "SplitView",
    "layers_text",
    "mode_problem",
    "percent_display",
    "status_sentence",
]
