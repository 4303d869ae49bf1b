"""The Run tab's "Plan and reality": what the plan predicted beside what llama.cpp did.

Figures: load time, time to first token, prompt and generation speed from llama.cpp's own counters,
and the speed model's prediction beside them. The memory table: per device and buffer, the plan's
MiB beside llama.cpp's logged buffers (and NVML's increase on NVIDIA GPUs), with the error; an error
over 10% is marked.
"""

from __future__ import annotations

import logging

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.plan import Plan
from app.core.rig import Rig
from app.runner import protocol as P
from app.ui.glossary import tip
from app.ui.run.load_panel import LoadContext
from app.ui.state import ModelChoice
from app.ui.theme import TEXT_MUTED, TEXT_WARNING, fmt_mib, fmt_tok_s, gpu_color, text_color, tint

log = logging.getLogger(__name__)

BUFFER_LABELS: dict[str, str] = {
    "weights": "Weights",
    "kv": "KV cache",
    "compute": "Compute",
    "output": "Output",
    "total": "Total",
    "nvml_total": "NVML total",
    # llama.cpp's own names, for a load without a plan
    "model": "Weights",
    "KV": "KV cache",
    "RS": "Recurrent state",
    "LoRA": "LoRA adapter",
}
BUFFER_TIPS: dict[str, str] = {
    "weights": "The model's weights for the layers on this device.",
    "kv": "The KV cache: the attention keys and values of every token in the context.",
    "compute": "llama.cpp's scratch memory for one batch of computation.",
    "output": "The buffer that holds the logits of the last token.",
    "total": "Every buffer llama.cpp logged on this device.",
    "nvml_total": (
        "How much the GPU's used memory grew, as NVML reports it: llama.cpp's buffers plus what the "
        "allocator does not log (CUDA context, cuBLAS workspace). The plan adds its overhead estimate."
    ),
}
LARGE_ERROR_PCT = 10.0
IDLE_NOTE = "Load a model to compare the plan with what llama.cpp allocates."
FIGURES: tuple[tuple[str, str, str], ...] = (
    ("load", "Load time", "From the Load click to a model ready to answer (llama.cpp's own load time)."),
    ("ttft", "First token", "Time to first token: from sending the message to the first word of the reply."),
    ("prompt", "Prompt", "Prompt processing speed, from llama.cpp's own counters."),
    ("generation", "Generation", tip("tok_s") or "Tokens generated per second."),
    ("predicted", "Predicted", "What Rigfit's speed model predicts for this plan at this context length."),
    ("tokens", "Tokens", "Prompt tokens (the whole conversation) and generated tokens of the last reply."),
)


def predicted_vram(plan: Plan | None, loaded: P.LoadedEvent | None) -> dict[int, float]:
    """What NVML should report per GPU with the model loaded: the use before the load plus the plan."""
    if plan is None or not plan.devices:
        return {}
    before = {v.gpu: v.before_mib for v in loaded.vram} if loaded is not None else {}
    return {d.index: round(before.get(d.index, 0.0) + d.total_mib, 1) for d in plan.devices}


def predicted_decode_tok_s(
    rig: Rig | None, choice: ModelChoice | None, plan: Plan | None, depth: int
) -> float | None:
    """The speed model's decode tok/s for this plan at ``depth`` tokens of context, when it can say."""
    if rig is None or choice is None or plan is None:
        return None
    try:
        from app.core.perf import estimate_speed
    except ImportError:  # the speed model is optional for this tab
        return None
    try:
        estimate = estimate_speed(rig, choice.spec, plan, depth_tokens=max(0, depth))
    except Exception:  # a prediction problem must not spoil the measurement
        log.exception("speed estimate failed")
        return None
    return estimate.decode_tok_s


def device_name(device: str) -> str:
    """``GPU 0`` for llama.cpp's ``CUDA0``, ``RAM`` for the host, anything else as llama.cpp names it."""
    index = _gpu_index(device)
    if index is not None:
        return f"GPU {index}"
    return "RAM" if device == "host" else device


class MemoryComparison(QtWidgets.QGroupBox):
    """The figures and the memory table of the load in :attr:`context` (set by :meth:`start_load`)."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("Plan and reality", parent)
        self.context: LoadContext | None = None
        self._build()

    def _build(self) -> None:
        layout = QtWidgets.QVBoxLayout(self)
        form = QtWidgets.QFormLayout()
        form.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.figures: dict[str, QtWidgets.QLabel] = {}
        for key, title, help_text in FIGURES:
            value = QtWidgets.QLabel("—")
            value.setObjectName(f"figure_{key}")
            value.setToolTip(help_text)
            value.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
            label = QtWidgets.QLabel(title)
            label.setToolTip(help_text)
            form.addRow(label, value)
            self.figures[key] = value
        layout.addLayout(form)

        self.memory_table = QtWidgets.QTableWidget(0, 5)
        self.memory_table.setObjectName("memoryTable")
        self.memory_table.setHorizontalHeaderLabels(["Device", "Buffer", "Plan MiB", "Real MiB", "Error"])
        for column, help_text in (
            (2, "What Rigfit's plan predicted, in MiB."),
            (3, "What llama.cpp allocated (its log), or for NVML rows what the GPU's used memory grew by."),
            (4, "(plan − real) / real: positive when the plan expected more."),
        ):
            header_item = self.memory_table.horizontalHeaderItem(column)
            if header_item is not None:
                header_item.setToolTip(help_text)
        self.memory_table.verticalHeader().hide()
        self.memory_table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.memory_table.setWordWrap(False)
        self.memory_table.setShowGrid(False)
        self.memory_table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.memory_table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.memory_table.setAlternatingRowColors(True)
        header = self.memory_table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.memory_table.setToolTip(
            "Memory per device after the load: what the plan predicted beside what llama.cpp allocated "
            "(its log), and on NVIDIA GPUs what NVML saw the GPU's used memory grow by."
        )
        layout.addWidget(self.memory_table, 1)
        self.memory_note = QtWidgets.QLabel(IDLE_NOTE)
        self.memory_note.setObjectName("memoryNote")
        self.memory_note.setWordWrap(True)
        tint(self.memory_note, TEXT_MUTED)
        layout.addWidget(self.memory_note)

    # ------------------------------------------------------------------------------------------ loading
    def start_load(self, context: LoadContext) -> None:
        """A load began: forget the last one's figures until this one reports."""
        self.context = context
        for label in self.figures.values():
            label.setText("—")
        self.memory_table.setRowCount(0)
        self.memory_note.setText("Loading: the comparison appears when llama.cpp has allocated its buffers.")

    def load_cancelled(self) -> None:
        self.memory_note.setText(IDLE_NOTE)

    def show_loaded(self, event: P.LoadedEvent) -> None:
        """The load time and, per device and buffer, the plan beside what llama.cpp allocated."""
        self.figures["load"].setText(f"{event.load_s:.2f} s")
        table = self.memory_table
        table.setRowCount(0)
        rows: list[tuple[str, str, float | None, float | None, float | None]]
        if event.compare:
            rows = [(r.device, r.buffer, r.predicted_mib, r.measured_mib, r.error_pct) for r in event.compare]
        else:
            rows = [(b.device, b.buffer, None, b.mib, None) for b in event.buffers]
        warn = text_color(TEXT_WARNING, self.palette())
        for device, buffer, predicted, measured, error in rows:
            r = table.rowCount()
            table.insertRow(r)
            dev_item = QtWidgets.QTableWidgetItem(device_name(device))
            dev_item.setToolTip(
                f"llama.cpp's name: {device}" if device != "host" else "System RAM (host memory)"
            )
            index = _gpu_index(device)
            if index is not None:
                dev_item.setIcon(_swatch_icon(gpu_color(index)))
            cells = [
                dev_item,
                _item(BUFFER_LABELS.get(buffer, buffer), BUFFER_TIPS.get(buffer, "")),
                QtWidgets.QTableWidgetItem(fmt_mib(predicted, unit=False)),
                QtWidgets.QTableWidgetItem(fmt_mib(measured, unit=False)),
                QtWidgets.QTableWidgetItem("—" if error is None else f"{error:+.1f}%"),
            ]
            for c in (2, 3, 4):
                cells[c].setTextAlignment(
                    QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter
                )
            if buffer in ("total", "nvml_total"):
                font = cells[1].font()
                font.setBold(True)
                for cell in cells:
                    cell.setFont(font)
            if error is not None and abs(error) > LARGE_ERROR_PCT:
                cells[4].setForeground(QtGui.QBrush(warn))
                cells[4].setToolTip("The plan is more than 10% off here.")
            for c, cell in enumerate(cells):
                table.setItem(r, c, cell)
        self.memory_note.setText(" ".join(self._notes(event)))

    def _notes(self, event: P.LoadedEvent) -> list[str]:
        notes: list[str] = []
        ctx = self.context
        if ctx is None or ctx.plan is None:
            why = ctx.plan_error if ctx is not None else ""
            notes.append("No plan to compare with" + (f": {why}" if why else "") + ". Measured buffers only.")
        for v in event.vram:
            text = f"GPU {v.gpu}: NVML saw {v.increase_mib:+,.0f} MiB"
            if v.after_load_mib is not None:
                text += f" ({v.after_load_mib - v.before_mib:+,.0f} MiB before the first decode)"
            notes.append(text + ".")
        if not event.vram and not event.on_cpu_only:
            notes.append("NVML is not available: no GPU memory measurement beyond llama.cpp's buffers.")
        return notes

    # ------------------------------------------------------------------------------------------ chatting
    def show_speeds(self, event: P.DoneEvent) -> None:
        """A reply finished: its speeds, and the speed model's prediction at this context depth."""
        f = self.figures
        f["ttft"].setText("—" if event.ttft_s is None else f"{event.ttft_s * 1000:,.0f} ms")
        f["prompt"].setText(fmt_tok_s(event.prompt_tok_s, exact=True))
        f["generation"].setText(fmt_tok_s(event.gen_tok_s, exact=True))
        f["tokens"].setText(f"{event.prompt_tokens:,} prompt, {event.completion_tokens:,} generated")
        ctx = self.context
        predicted = None
        if ctx is not None:
            depth = event.prompt_tokens + event.completion_tokens // 2
            predicted = predicted_decode_tok_s(ctx.rig, ctx.choice, ctx.plan, depth)
        if predicted is None:
            f["predicted"].setText("—")
            return
        text = f"{fmt_tok_s(predicted, exact=True)} generation"
        if event.gen_tok_s:
            text += f" ({(predicted - event.gen_tok_s) / event.gen_tok_s * 100:+.0f}% vs measured)"
        if ctx is not None and ctx.rig is not None and ctx.rig.source != "detected":
            text += " — for the planned rig"
        f["predicted"].setText(text)


def _item(text: str, tooltip: str = "") -> QtWidgets.QTableWidgetItem:
    item = QtWidgets.QTableWidgetItem(text)
    if tooltip:
        item.setToolTip(tooltip)
    return item


def _gpu_index(device: str) -> int | None:
    from app.runner.logparse import gpu_index

    return gpu_index(device)


_swatches: dict[str, QtGui.QIcon] = {}


def _swatch_icon(color: QtGui.QColor) -> QtGui.QIcon:
    key = color.name()
    icon = _swatches.get(key)
    if icon is None:
        pixmap = QtGui.QPixmap(12, 12)
        pixmap.fill(color)
        icon = QtGui.QIcon(pixmap)
        _swatches[key] = icon
    return icon


__all__ = [
    "BUFFER_LABELS",
    "MemoryComparison",
    "device_name",
    "predicted_decode_tok_s",
    "predicted_vram",
]
