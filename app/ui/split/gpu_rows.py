"""The Split tab's GPU rows: a slider per GPU, and a memory bar per GPU and for system RAM.

One row per GPU: a slider and a number box (%), a lock, a stacked bar — weights, KV cache, compute,
overhead — against the GPU's memory, and the layers it holds; a last row for the host (system RAM).
Presets above set the whole split (even, by VRAM, by free VRAM, largest context, most even headroom).

Speed: a slider move goes to ``state.settings.tensor_split``; the state re-plans and
:meth:`GpuRowsPanel.show_plan` only updates values — no widget is created or destroyed unless the
number of GPUs changes — so a drag repaints within a frame (``tests/bench/test_slider_bench.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.errors import RigfitError
from app.core.plan import STATUS_NO, Plan
from app.core.rig import Rig
from app.core.settings import Settings
from app.ui.glossary import tip
from app.ui.state import AppState
from app.ui.theme import fmt_gib, fmt_gib_of, gpu_color, muted_text, status_foreground
from app.ui.widgets import BarValues, MemoryBar, Swatch, describe_bar, segment_legend, short_gpu_name

SLIDER_STEPS = 1000  # a slider step is 0.1%
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
_NEEDS_MODEL = (PRESET_CONTEXT, PRESET_HEADROOM)


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


class GpuRowsPanel(QtWidgets.QGroupBox):
    """The "Tensor split" box: presets, one :class:`GpuRow` per GPU of ``state.rig``, the host row.

    :attr:`note` carries a sentence for the tab's banner (what a preset found, or why it failed).
    """

    note = QtCore.Signal(str)

    def __init__(self, state: AppState, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("Tensor split", parent)
        self.setToolTip(tip("tensor_split"))
        self.state = state
        self.rows: list[GpuRow] = []
        self._locks: list[bool] = []
        self._build()

    def _build(self) -> None:
        layout = QtWidgets.QVBoxLayout(self)
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
        layout.addLayout(presets)
        self.grid_host = QtWidgets.QWidget()
        self.grid = QtWidgets.QGridLayout(self.grid_host)
        self.grid.setContentsMargins(0, 4, 0, 0)
        self.grid.setHorizontalSpacing(8)
        self.grid.setVerticalSpacing(6)
        headings = (("GPU", "", 1), ("Share", "tensor_split", 2), ("Memory", "", 5), ("Layers", "", 7))
        for heading, key, col in headings:
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
        layout.addWidget(self.grid_host)
        layout.addWidget(segment_legend(self.palette()))
        layout.addStretch(1)

    @property
    def last_preset_button(self) -> QtWidgets.QWidget:
        """Where the keyboard goes into the rows (the settings panel's tab order starts after them)."""
        return self.preset_buttons[PRESETS[-1][0]]

    # ------------------------------------------------------------------------------------------ rows
    def set_rig(self, rig: Rig | None) -> None:
        """One row per GPU of ``rig`` (built again only when called: the coordinator calls it when the
        GPUs themselves changed)."""
        for row in self.rows:
            for w in row.widgets():
                self.grid.removeWidget(w)
            row.delete()
        self.rows = []
        for w in (self.host_swatch, self.host_name, self.host_bar, self.host_used, self.host_layers):
            self.grid.removeWidget(w)
        gpus = rig.gpus if rig is not None else ()
        self._locks = [False] * len(gpus)
        previous = self.last_preset_button
        for i, gpu in enumerate(gpus):
            row = GpuRow(i, gpu.name, self.grid_host)
            for col, widget in enumerate(row.widgets()):
                self.grid.addWidget(widget, i + 1, col)
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

    # ------------------------------------------------------------------------------------------ the split
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
        """Lock GPU ``index``'s share: other sliders move around it."""
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
        """Apply a split preset; False (with the reason in :attr:`note`) when it cannot be made."""
        rig = self.state.rig
        if rig is None or rig.n_gpus == 0:
            return False
        model = self.state.model
        settings = self.state.settings
        try:
            ratios, note = preset_split(key, rig, model.spec if model is not None else None, settings)
        except RigfitError as exc:
            self.note.emit(f"Preset not applied: {exc}")
            return False
        # The optimisers place whole layers; "none" has nothing to split.
        if settings.split_mode == "none" or (key in _NEEDS_MODEL and settings.split_mode != "layer"):
            self.state.update_settings(split_mode="layer")
        # Kept as given: the optimisers return layer counts, the exact split llama.cpp reproduces.
        self.state.update_settings(tensor_split=tuple(ratios))
        if note:
            self.note.emit(note)
        return True

    # ------------------------------------------------------------------------------------------ showing
    def refresh_shares(self) -> None:
        """The sliders, number boxes, locks and presets for the state's split and split mode."""
        ratios = self.ratios()
        if len(ratios) == len(self.rows):
            self._show_shares(ratios)
        enabled = self.state.settings.split_mode != "none" and len(self.rows) > 1
        for row in self.rows:
            row.set_enabled(enabled)
        for key, button in self.preset_buttons.items():
            needs_model = key in _NEEDS_MODEL
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

    def show_plan(self, plan: Plan | None) -> None:
        """The bars, figures and layers of every row for ``plan`` (the capacities alone without one)."""
        rig = self.state.rig
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

    def _set_used(self, label: QtWidgets.QLabel, values: BarValues, empty: bool = False) -> None:
        cap = values.capacity_mib
        if empty:
            text = f"{fmt_gib(cap)}" if cap is not None else ""
        elif cap is None:
            text = fmt_gib(values.total_mib)
        else:
            text = fmt_gib_of(values.total_mib, cap)
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

    def changeEvent(self, event: QtCore.QEvent) -> None:
        if event.type() == QtCore.QEvent.Type.PaletteChange:
            self.host_swatch.set_color(muted_text(self.palette()))
        super().changeEvent(event)


__all__ = [
    "PRESETS",
    "GpuRow",
    "GpuRowsPanel",
    "layers_text",
    "percent_display",
    "preset_split",
    "rebalance",
]
