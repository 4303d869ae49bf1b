"""The Run tab: pick a model, load it across the GPUs with llama.cpp, chat, and compare plan and reality.

The tab runs exactly what the other tabs describe: ``state.model`` with ``state.settings`` on this
computer, and it shows ``state.plan`` (made for ``state.rig``) beside what llama.cpp reports.

* Model: the bundled demo model, "Open file…" (Ctrl+O through :meth:`RunView.open_model_dialog`),
  a ``.gguf`` dropped on the tab (the main window forwards drops to :meth:`RunView.open_model_file`),
  and the GGUF files :mod:`app.runner.discovery` finds in the Hugging Face, LM Studio, Ollama and
  llama.cpp caches and in folders the user adds. Headers are read on the thread pool; a bad file
  says why in one line under the picker, never in a dialog.
* Load / Cancel / Unload through :class:`~app.ui.runner_adapter.RunnerAdapter`: the model runs in a
  child process, so a llama.cpp abort or an out-of-memory kill ends that process and this tab says
  so (with the log's last lines) and loads again on request.
* Chat: the whole conversation is sent each turn; tokens are appended to the transcript as they
  arrive (one text insertion each, the document is never re-rendered); Ctrl+Enter sends, Esc stops.
* Figures: time to first token, prompt and generation speed from llama.cpp's own counters, the
  speed model's prediction beside them, and the memory each device was predicted to hold beside what
  llama.cpp allocated (and NVML's increase, on NVIDIA GPUs).

Signals for the window: :attr:`RunView.predicted_vram_changed` (GPU index → MiB NVML should show,
``{}`` when nothing is loaded) for the Monitor tab's plot; :attr:`RunView.models_discovered` (GGUF
paths) for the Fit tab's local rows; :attr:`RunView.extra_folders_changed` for the session store.
"""

from __future__ import annotations

import html
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.errors import RigfitError
from app.core.plan import STATUS_NO, Plan
from app.core.rig import Rig
from app.core.rules import refusals
from app.core.settings import Settings
from app.runner import protocol as P
from app.runner.discovery import FoundModel, ScanResult, discover_models
from app.ui.colors import gpu_color
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
from app.ui.tasks import TaskRunner
from app.ui.widgets import is_dark, muted_text

log = logging.getLogger(__name__)

DEMO_REF = "demo"
DEMO_LABEL = "SmolLM2-135M-Instruct (demo)"
GGUF_FILTER = "GGUF models (*.gguf);;All files (*)"
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
_LOG_LINES_KEPT = 400
Discover = Callable[[Sequence[str], Callable[[], bool]], ScanResult]


# ------------------------------------------------------------------------------------------ pure helpers
def format_size(n_bytes: int | float) -> str:
    """``1.9 GiB``, ``92 MiB``: file sizes the way the rest of the app shows memory."""
    mib = float(n_bytes) / 2**20
    if mib >= 1024:
        return f"{mib / 1024:.1f} GiB"
    return f"{mib:.0f} MiB" if mib >= 10 else f"{mib:.1f} MiB"


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


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f} tok/s"


def _mib(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


@dataclass(frozen=True)
class LoadContext:
    """What a load was started with: compared against later, whatever the other tabs change since."""

    choice: ModelChoice
    settings: Settings
    plan: Plan | None
    rig: Rig | None
    load: P.LoadSettings


def _choice_for(ref: str, label: str | None = None) -> ModelChoice:
    """Read a model's header (pool thread) and make the tab's choice of it."""
    from app.core.model_source import load_model_spec

    spec = load_model_spec(ref)
    name = label or (DEMO_LABEL if ref == DEMO_REF else spec.name or Path(ref).name)
    return ModelChoice(ref=ref, spec=spec, quant=spec.file_type or "", label=name)


# ------------------------------------------------------------------------------------------ the view
class RunView(QtWidgets.QWidget):
    """The Run tab. ``state`` is the window's shared selection; the rest is for tests and embedding.

    ``adapter`` (default: a fresh :class:`RunnerAdapter`) runs the model; ``tasks`` reads headers and
    scans folders; ``discover(folders, should_stop)`` finds local models (default: every known
    cache plus ``folders``); ``n_threads`` is passed to llama.cpp (default: its choice).
    """

    # object, not dict: Qt converts a dict signal argument to a QVariantMap, which needs string keys.
    predicted_vram_changed = QtCore.Signal(
        object
    )  # dict: GPU index -> MiB NVML should show; {} when unloaded
    models_discovered = QtCore.Signal(object)  # list of the paths of the local GGUF models found
    extra_folders_changed = QtCore.Signal(object)  # list: the user's added folders, for the session store
    model_read_failed = QtCore.Signal(str)  # a chosen file could not be read (the inline message)
    scan_finished = QtCore.Signal(object)  # ScanResult

    def __init__(
        self,
        state: AppState,
        parent: QtWidgets.QWidget | None = None,
        *,
        adapter: RunnerAdapter | None = None,
        tasks: TaskRunner | None = None,
        discover: Discover | None = None,
        n_threads: int | None = None,
        extra_folders: Iterable[str] = (),
        scan_on_show: bool = True,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("runView")
        self.state = state
        self.adapter = adapter if adapter is not None else RunnerAdapter(self)
        if self.adapter.parent() is None:
            self.adapter.setParent(self)
        self.tasks = tasks if tasks is not None else TaskRunner(QtCore.QThreadPool(self), self)
        self._discover: Discover = discover or (
            lambda folders, stop: discover_models(extra_folders=folders, should_stop=stop)
        )
        self.n_threads = n_threads
        self._extra_folders: list[str] = list(dict.fromkeys(extra_folders))
        self._scan_on_show = scan_on_show
        self._scanned = False
        self._scanning = False
        self._stop_scan = threading.Event()  # read by the scan on the pool thread
        self._shut_down = False
        self._found: tuple[FoundModel, ...] = ()
        self._reading = ""  # the reference whose header is being read
        self._context: LoadContext | None = None  # the load in progress or loaded
        self._confirm_pending = False
        self.messages: list[P.ChatMessage] = []
        self.reply_text = ""
        self._pending_user_text = ""
        self._reply_cursor: QtGui.QTextCursor | None = None
        self.file_dialog: QtWidgets.QFileDialog | None = None
        self.folder_dialog: QtWidgets.QFileDialog | None = None
        self.setAcceptDrops(True)

        self._build()
        self._connect()
        self._on_model_changed(state.model)
        self._refresh_settings()
        self._update_buttons()

    # ------------------------------------------------------------------------------------------ layout
    def _build(self) -> None:
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(8, 8, 8, 8)
        # Across the top, where it cannot be missed: a failed load or a model process that stopped.
        outer.addWidget(self._build_problem())
        self.splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        self.splitter.setChildrenCollapsible(False)
        outer.addWidget(self.splitter)

        top = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        top.setChildrenCollapsible(False)
        top.addWidget(self._build_picker())
        top.addWidget(self._build_load())
        top.setStretchFactor(0, 3)
        top.setStretchFactor(1, 2)
        self.splitter.addWidget(top)

        bottom = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        bottom.setChildrenCollapsible(False)
        bottom.addWidget(self._build_chat())
        bottom.addWidget(self._build_figures())
        bottom.setStretchFactor(0, 1)
        bottom.setStretchFactor(1, 1)
        bottom.setSizes([620, 580])  # the memory table needs its five columns readable
        self.splitter.addWidget(bottom)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 3)

    def _build_picker(self) -> QtWidgets.QWidget:
        box = QtWidgets.QGroupBox("Model")
        layout = QtWidgets.QVBoxLayout(box)

        self.model_label = QtWidgets.QLabel()
        self.model_label.setObjectName("modelLabel")
        self.model_label.setWordWrap(True)
        self.model_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.model_label)
        self.model_error = QtWidgets.QLabel()
        self.model_error.setObjectName("modelError")
        self.model_error.setWordWrap(True)
        self.model_error.hide()
        self._tint(self.model_error, error=True)
        layout.addWidget(self.model_error)

        buttons = QtWidgets.QHBoxLayout()
        self.demo_button = QtWidgets.QPushButton("Use the demo model")
        self.demo_button.setToolTip(
            "SmolLM2-135M-Instruct (Q4_1, 98 MB), bundled with Rigfit: loads in a second, even on a CPU."
        )
        self.open_button = QtWidgets.QPushButton("Open file…")
        self.open_button.setToolTip(
            "Open a GGUF model file (Ctrl+O). You can also drop a .gguf file on the window."
        )
        self.add_folder_button = QtWidgets.QPushButton("Add folder…")
        self.add_folder_button.setToolTip("Search another folder for GGUF files, now and on every start.")
        self.rescan_button = QtWidgets.QPushButton("Search again")
        for b in (self.demo_button, self.open_button, self.add_folder_button, self.rescan_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout.addLayout(buttons)

        self.found_tree = QtWidgets.QTreeWidget()
        self.found_tree.setObjectName("foundModels")
        self.found_tree.setHeaderLabels(["Model", "Size", "Quant", "Found in"])
        self.found_tree.setRootIsDecorated(False)
        self.found_tree.setUniformRowHeights(True)
        self.found_tree.setAlternatingRowColors(True)
        self.found_tree.setToolTip("GGUF files already on this computer. Click one to pick it.")
        header = self.found_tree.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Interactive)
        header.resizeSection(0, 300)
        header.setSectionResizeMode(1, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.found_tree.headerItem().setToolTip(2, tip("quantization"))
        layout.addWidget(self.found_tree, 1)
        self.scan_label = QtWidgets.QLabel("Local models are searched when this tab is first shown.")
        self.scan_label.setObjectName("scanLabel")
        self.scan_label.setWordWrap(True)
        self._tint(self.scan_label, muted=True)
        layout.addWidget(self.scan_label)
        self._fill_found(())
        return box

    def _build_problem(self) -> QtWidgets.QWidget:
        # A failed load or a stopped model process: the message, and the log's last lines on request.
        self.problem = QtWidgets.QFrame()
        self.problem.setObjectName("problemPanel")
        self.problem.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        problem = QtWidgets.QVBoxLayout(self.problem)
        problem.setContentsMargins(8, 6, 8, 6)
        self.problem_label = QtWidgets.QLabel()
        self.problem_label.setObjectName("problemLabel")
        self.problem_label.setWordWrap(True)
        self.problem_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self._tint(self.problem_label, error=True)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.problem_label, 1)
        self.dismiss_button = QtWidgets.QToolButton()
        self.dismiss_button.setText("Dismiss")
        self.dismiss_button.setAutoRaise(True)
        self.dismiss_button.clicked.connect(lambda: self.problem.hide())
        row.addWidget(self.dismiss_button, 0, QtCore.Qt.AlignmentFlag.AlignTop)
        problem.addLayout(row)
        self.log_toggle = QtWidgets.QToolButton()
        self.log_toggle.setText("Show the log's last lines")
        self.log_toggle.setCheckable(True)
        self.log_toggle.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.log_toggle.setArrowType(QtCore.Qt.ArrowType.RightArrow)
        problem.addWidget(self.log_toggle)
        self.log_view = QtWidgets.QPlainTextEdit()
        self.log_view.setObjectName("logTail")
        self.log_view.setReadOnly(True)
        self.log_view.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.NoWrap)
        self.log_view.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))
        self.log_view.setMinimumHeight(self.fontMetrics().lineSpacing() * 6)
        self.log_view.setMaximumHeight(self.fontMetrics().lineSpacing() * 9)
        self.log_view.hide()
        problem.addWidget(self.log_view)
        self.problem.hide()
        return self.problem

    def _build_load(self) -> QtWidgets.QWidget:
        box = QtWidgets.QGroupBox("Load")
        layout = QtWidgets.QVBoxLayout(box)
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
        self._tint(self.hardware_label, muted=True)
        layout.addWidget(self.hardware_label)

        # Shown instead of loading when the plan says it will not fit: the user decides, no dialog.
        self.confirm_bar = QtWidgets.QFrame()
        self.confirm_bar.setObjectName("confirmBar")
        self.confirm_bar.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        confirm = QtWidgets.QVBoxLayout(self.confirm_bar)
        self.confirm_label = QtWidgets.QLabel()
        self.confirm_label.setWordWrap(True)
        self._tint(self.confirm_label, attention=True)
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
        return box

    def _build_chat(self) -> QtWidgets.QWidget:
        box = QtWidgets.QGroupBox("Chat")
        layout = QtWidgets.QVBoxLayout(box)
        self.transcript = QtWidgets.QTextBrowser()
        self.transcript.setObjectName("transcript")
        self.transcript.setOpenExternalLinks(False)
        self.transcript.setUndoRedoEnabled(False)  # a long chat must not keep an undo history
        self.transcript.setPlaceholderText("Load a model, then type a message below.")
        layout.addWidget(self.transcript, 1)
        self.input = QtWidgets.QPlainTextEdit()
        self.input.setObjectName("chatInput")
        self.input.setPlaceholderText("Your message — Ctrl+Enter sends, Esc stops the reply")
        self.input.setAcceptDrops(False)  # a dropped .gguf reaches the tab (opens it), not the text box
        self.input.setTabChangesFocus(True)
        self.input.setFixedHeight(self.input.fontMetrics().lineSpacing() * 3 + 16)
        layout.addWidget(self.input)

        row = QtWidgets.QHBoxLayout()
        self.send_button = QtWidgets.QPushButton("Send")
        self.send_button.setToolTip("Send the message (Ctrl+Enter)")
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.setToolTip("Stop the reply (Esc); it ends within one token")
        self.clear_button = QtWidgets.QPushButton("Clear")
        self.clear_button.setToolTip("Start a new conversation")
        row.addWidget(self.send_button)
        row.addWidget(self.stop_button)
        row.addWidget(self.clear_button)
        row.addStretch(1)
        self.temperature = QtWidgets.QDoubleSpinBox()
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setDecimals(2)
        self.temperature.setValue(0.8)
        self.temperature.setToolTip(
            "Temperature: 0 always takes the likeliest token; higher values vary more."
        )
        self.max_tokens = QtWidgets.QSpinBox()
        self.max_tokens.setRange(1, 1 << 20)
        self.max_tokens.setValue(512)
        self.max_tokens.setToolTip("The longest reply, in tokens.")
        self.seed = QtWidgets.QSpinBox()
        self.seed.setRange(-1, 2**31 - 1)
        self.seed.setValue(-1)
        self.seed.setSpecialValueText("random")
        self.seed.setToolTip("Seed: the same seed, prompt and temperature give the same reply.")
        for text, widget in (
            ("Temp", self.temperature),
            ("Max tokens", self.max_tokens),
            ("Seed", self.seed),
        ):
            label = QtWidgets.QLabel(text)
            label.setBuddy(widget)
            label.setToolTip(widget.toolTip())
            row.addWidget(label)
            row.addWidget(widget)
        layout.addLayout(row)

        self._role_format = QtGui.QTextCharFormat()
        self._role_format.setFontWeight(QtGui.QFont.Weight.Bold)
        self._text_format = QtGui.QTextCharFormat()
        self._note_format = QtGui.QTextCharFormat()
        self._note_format.setForeground(muted_text(self.palette()))
        self._note_format.setFontItalic(True)
        return box

    def _build_figures(self) -> QtWidgets.QWidget:
        box = QtWidgets.QGroupBox("Plan and reality")
        layout = QtWidgets.QVBoxLayout(box)
        form = QtWidgets.QFormLayout()
        form.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.figures: dict[str, QtWidgets.QLabel] = {}
        rows = (
            (
                "load",
                "Load time",
                "From the Load click to a model ready to answer (llama.cpp's own load time).",
            ),
            (
                "ttft",
                "First token",
                "Time to first token: from sending the message to the first word of the reply.",
            ),
            ("prompt", "Prompt", "Prompt processing speed, from llama.cpp's own counters."),
            ("generation", "Generation", tip("tok_s") or "Tokens generated per second."),
            (
                "predicted",
                "Predicted",
                "What Rigfit's speed model predicts for this plan at this context length.",
            ),
            (
                "tokens",
                "Tokens",
                "Prompt tokens (the whole conversation) and generated tokens of the last reply.",
            ),
        )
        for key, title, help_text in rows:
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
        self.memory_note = QtWidgets.QLabel("Load a model to compare the plan with what llama.cpp allocates.")
        self.memory_note.setObjectName("memoryNote")
        self.memory_note.setWordWrap(True)
        self._tint(self.memory_note, muted=True)
        layout.addWidget(self.memory_note)
        return box

    def _tint(
        self, label: QtWidgets.QLabel, *, error: bool = False, attention: bool = False, muted: bool = False
    ) -> None:
        pal = label.palette()
        dark = is_dark(pal)
        if error:
            color = QtGui.QColor("#ff7b72" if dark else "#b42318")
        elif attention:
            color = QtGui.QColor("#f2b84b" if dark else "#a15c00")
        elif muted:
            color = muted_text(pal)
        else:
            return
        pal.setColor(QtGui.QPalette.ColorRole.WindowText, color)
        label.setPalette(pal)

    def _connect(self) -> None:
        self.demo_button.clicked.connect(self.use_demo_model)
        self.open_button.clicked.connect(self.open_model_dialog)
        self.add_folder_button.clicked.connect(self.add_folder_dialog)
        self.rescan_button.clicked.connect(self.rescan)
        self.found_tree.itemClicked.connect(self._on_found_clicked)
        self.found_tree.itemActivated.connect(self._on_found_clicked)
        self.load_button.clicked.connect(self.load_model)
        self.load_anyway_button.clicked.connect(lambda: self.load_model(confirmed=True))
        self.dont_load_button.clicked.connect(self._hide_confirm)
        self.cancel_button.clicked.connect(self.cancel_load)
        self.unload_button.clicked.connect(self.unload)
        self.send_button.clicked.connect(self.send)
        self.stop_button.clicked.connect(self.stop)
        self.clear_button.clicked.connect(self.clear_chat)
        self.log_toggle.toggled.connect(self._on_log_toggled)

        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            shortcut = QtGui.QShortcut(QtGui.QKeySequence(keys), self.input)
            shortcut.setContext(QtCore.Qt.ShortcutContext.WidgetShortcut)
            shortcut.activated.connect(self.send)
        escape = QtGui.QShortcut(QtGui.QKeySequence(QtCore.Qt.Key.Key_Escape), self)
        escape.setContext(QtCore.Qt.ShortcutContext.WidgetWithChildrenShortcut)
        escape.activated.connect(self.stop)
        self.escape_shortcut = escape

        a = self.adapter
        a.state_changed.connect(self._on_runner_state)
        a.ready.connect(self._on_ready)
        a.progress.connect(self._on_progress)
        a.loaded.connect(self._on_loaded)
        a.token.connect(self._on_token)
        a.done.connect(self._on_done)
        a.error.connect(self._on_error)
        a.exited.connect(self._on_exited)
        a.unloaded.connect(self._on_unloaded)

        s = self.state
        s.model_changed.connect(self._on_model_changed)
        s.settings_changed.connect(self._refresh_settings)
        s.plan_changed.connect(self._refresh_settings)
        s.rig_changed.connect(self._refresh_settings)

    # ------------------------------------------------------------------------------------------ picking
    def use_demo_model(self) -> None:
        """Pick the bundled demo model (its header is read on the pool)."""
        self._read_model(DEMO_REF, DEMO_LABEL)

    def open_model_dialog(self) -> None:
        """ "Open file…" (Ctrl+O): a non-blocking file dialog; the chosen file is read like any other."""
        if self.file_dialog is None:
            dialog = QtWidgets.QFileDialog(self, "Open a GGUF model")
            dialog.setObjectName("openModelDialog")
            dialog.setFileMode(QtWidgets.QFileDialog.FileMode.ExistingFile)
            dialog.setNameFilter(GGUF_FILTER)
            dialog.fileSelected.connect(self.open_model_file)
            self.file_dialog = dialog
        current = self.state.model
        start = Path(current.path).parent if current is not None and current.path else Path.home()
        self.file_dialog.setDirectory(str(start))
        self.file_dialog.open()

    def open_model_file(self, path: str | os.PathLike[str]) -> None:
        """Pick a model file (a dropped file, the dialog's choice, a discovered file)."""
        text = os.fspath(path)
        if not text:
            return
        found = next((m for m in self._found if m.path == text), None)
        self._read_model(text, found.name if found is not None else None)

    def add_folder_dialog(self) -> None:
        """ "Add folder…": a folder to search for GGUF files, remembered by the window's session."""
        if self.folder_dialog is None:
            dialog = QtWidgets.QFileDialog(self, "Search a folder for GGUF models")
            dialog.setObjectName("addFolderDialog")
            dialog.setFileMode(QtWidgets.QFileDialog.FileMode.Directory)
            dialog.setOption(QtWidgets.QFileDialog.Option.ShowDirsOnly, True)
            dialog.fileSelected.connect(self.add_folder)
            self.folder_dialog = dialog
        self.folder_dialog.setDirectory(str(Path.home()))
        self.folder_dialog.open()

    def add_folder(self, folder: str | os.PathLike[str]) -> None:
        text = os.fspath(folder)
        if text and text not in self._extra_folders:
            self._extra_folders.append(text)
            self.extra_folders_changed.emit(list(self._extra_folders))
        self.rescan()

    def extra_folders(self) -> list[str]:
        return list(self._extra_folders)

    def set_extra_folders(self, folders: Iterable[str]) -> None:
        """The user's folders from the last session (searched at the next scan)."""
        self._extra_folders = list(dict.fromkeys(str(f) for f in folders if f))

    def _read_model(self, ref: str, label: str | None) -> None:
        if self._shut_down:
            return
        self._reading = ref
        shown = label or (DEMO_LABEL if ref == DEMO_REF else Path(ref).name)
        self.model_error.hide()
        self.model_label.setText(f"Reading <b>{html.escape(shown)}</b>…")
        self.tasks.submit(
            lambda: _choice_for(ref, label), self._on_model_read, self._on_model_failed, key="run-model"
        )

    def _on_model_read(self, choice: object) -> None:
        assert isinstance(choice, ModelChoice)
        self._reading = ""
        self.model_error.hide()
        if choice == self.state.model:
            self._on_model_changed(choice)
        self.state.set_model(choice)

    def _on_model_failed(self, message: str) -> None:
        self._reading = ""
        self._show_model_error(message)
        self._on_model_changed(self.state.model)
        self.model_read_failed.emit(message)

    def _show_model_error(self, message: str) -> None:
        self.model_error.setText(f"Could not open that model: {message}")
        self.model_error.show()

    def _on_found_clicked(self, item: QtWidgets.QTreeWidgetItem, column: int = 0) -> None:
        data = item.data(0, QtCore.Qt.ItemDataRole.UserRole)
        if data == DEMO_REF:
            self.use_demo_model()
        elif isinstance(data, FoundModel):
            if not data.complete:
                self._show_model_error(
                    f"{data.name} is split into {data.parts} files and {data.missing_parts} "
                    "of them are missing (still downloading?)"
                )
                return
            self._read_model(data.path, data.name)

    # ------------------------------------------------------------------------------------------ scanning
    def showEvent(self, event: QtGui.QShowEvent) -> None:
        super().showEvent(event)
        if self._scan_on_show and not self._scanned:
            self.rescan()

    def rescan(self) -> None:
        """Search the known caches and the user's folders for GGUF files (on the pool)."""
        if self._scanning or self._shut_down:
            return
        self._scanned = True
        self._scanning = True
        self._stop_scan.clear()
        self.rescan_button.setEnabled(False)
        self.scan_label.setText("Searching for GGUF files on this computer…")
        folders = list(self._extra_folders)
        discover = self._discover
        stop = self._stop_scan

        def scan() -> ScanResult:
            return discover(folders, stop.is_set)

        self.tasks.submit(scan, self._on_scanned, self._on_scan_failed, key="run-scan")

    def _on_scanned(self, result: object) -> None:
        assert isinstance(result, ScanResult)
        self._scanning = False
        self.rescan_button.setEnabled(True)
        self._found = result.models
        self._fill_found(result.models)
        if result.models:
            sources = sorted({m.source_label for m in result.models})
            text = f"{len(result.models)} model file{'s' if len(result.models) != 1 else ''} found ({', '.join(sources)})."
        else:
            text = "No GGUF files found in the Hugging Face, LM Studio, Ollama or llama.cpp folders. Open a file or add a folder."
        if result.unreadable:
            n = len(result.unreadable)
            text += f" {n} folder{'s' if n != 1 else ''} could not be read."
            self.scan_label.setToolTip("\n".join(result.unreadable))
        if result.truncated:
            text += " The search stopped early: there were too many files."
        self.scan_label.setText(text)
        self.models_discovered.emit([m.path for m in result.models if m.complete])
        self.scan_finished.emit(result)

    def _on_scan_failed(self, message: str) -> None:
        self._scanning = False
        self.rescan_button.setEnabled(True)
        self.scan_label.setText(f"The search for local models failed: {message}")
        self.scan_finished.emit(ScanResult(models=()))

    def _fill_found(self, models: Sequence[FoundModel]) -> None:
        tree = self.found_tree
        tree.clear()
        demo = QtWidgets.QTreeWidgetItem([DEMO_LABEL, _demo_size(), "Q4_1", "bundled with Rigfit"])
        demo.setData(0, QtCore.Qt.ItemDataRole.UserRole, DEMO_REF)
        demo.setToolTip(0, "A tiny model for trying Rigfit out; it loads in a second, even on the CPU.")
        tree.addTopLevelItem(demo)
        for m in models:
            where = f"{m.source_label} · {m.where}"
            size = format_size(m.size_bytes)
            if m.parts > 1:
                size += f" ({m.parts} files)"
            item = QtWidgets.QTreeWidgetItem([m.name, size, m.quant or "?", where])
            item.setData(0, QtCore.Qt.ItemDataRole.UserRole, m)
            item.setToolTip(0, m.path)
            item.setToolTip(3, m.path)
            if not m.complete:
                item.setText(1, f"{size}, {m.missing_parts} missing")
                item.setForeground(0, QtGui.QBrush(muted_text(self.palette())))
            tree.addTopLevelItem(item)

    # ------------------------------------------------------------------------------------------ state
    def _on_model_changed(self, choice: object) -> None:
        if self._reading:
            return  # "Reading …" stays until the read reports back
        if not isinstance(choice, ModelChoice):
            self.model_label.setText("No model chosen: pick the demo model, a file found below, or open one.")
        else:
            spec = choice.spec
            parts = [f"<b>{html.escape(choice.label or spec.name)}</b>"]
            if choice.quant:
                parts.append(html.escape(choice.quant))
            if spec.file_size_bytes:
                parts.append(format_size(spec.file_size_bytes))
            parts.append(f"{spec.n_layer} layers")
            text = " · ".join(parts)
            if choice.is_file and choice.path:
                text += f"<br><small>{html.escape(choice.path)}</small>"
            else:
                text += (
                    "<br>This model comes from the catalog: Rigfit can plan it, but there is no file to run. "
                    "Download the GGUF, then open it (Ctrl+O)."
                )
            for note in spec.notes:
                text += f"<br><small>{html.escape(note)}</small>"
            self.model_label.setText(text)
        self._refresh_settings()

    def _refresh_settings(self, *_: object) -> None:
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
                gpu_total = plan.gpu_total_mib
                where = (
                    f"{gpu_total / 1024:.1f} GiB on {len(plan.devices)} GPU{'s' if len(plan.devices) != 1 else ''}"
                    if plan.devices
                    else f"{plan.host.total_mib / 1024:.1f} GiB of system RAM"
                )
                self.plan_label.setText(f"Plan: {html.escape(plan.status)} — {where}.")
            self._tint_plan(bool(warning))
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
        ctx = self._context
        if (
            ctx is not None
            and self.adapter.state in (STATE_LOADED, STATE_GENERATING)
            and (ctx.settings != state.settings or ctx.choice != state.model)
        ):
            notes.append("The model or its settings changed since this load: Load again to use them.")
        self.hardware_label.setText(" ".join(notes))
        self.hardware_label.setVisible(bool(notes))
        self._update_buttons()

    def _tint_plan(self, warn: bool) -> None:
        pal = self.plan_label.palette()
        if warn:
            pal.setColor(
                QtGui.QPalette.ColorRole.WindowText, QtGui.QColor("#f2b84b" if is_dark(pal) else "#a15c00")
            )
        else:
            pal.setColor(
                QtGui.QPalette.ColorRole.WindowText, self.palette().color(QtGui.QPalette.ColorRole.WindowText)
            )
        self.plan_label.setPalette(pal)

    def _update_buttons(self) -> None:
        runner = self.adapter.state
        choice = self.state.model
        runnable = choice is not None and choice.is_file and bool(choice.path)
        idle_or_loaded = runner in (STATE_IDLE, STATE_LOADED)
        self.load_button.setEnabled(runnable and idle_or_loaded and not self._shut_down)
        self.cancel_button.setEnabled(runner in (STATE_STARTING, STATE_LOADING))
        self.unload_button.setEnabled(runner == STATE_LOADED)
        self.send_button.setEnabled(runner == STATE_LOADED)
        self.stop_button.setEnabled(runner == STATE_GENERATING)
        self.clear_button.setEnabled(runner != STATE_GENERATING)
        if choice is not None and not choice.is_file:
            self.load_button.setToolTip(
                "A catalog model has no file to run: download the GGUF, then open it (Ctrl+O)."
            )
        else:
            self.load_button.setToolTip("Load the model with the Split tab's settings.")

    # ------------------------------------------------------------------------------------------ loading
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
        self._hide_confirm()
        settings = self.state.settings
        try:
            load = P.LoadSettings.from_settings(choice.path, settings, n_threads=self.n_threads)
            self.adapter.load(load, plan)
        except RigfitError as exc:
            self._show_problem(str(exc), ())
            return False
        self._context = LoadContext(
            choice=choice, settings=settings, plan=plan, rig=self.state.rig, load=load
        )
        self.problem.hide()
        self.progress.setValue(0)
        self._clear_measurements()
        return True

    def _hide_confirm(self) -> None:
        self._confirm_pending = False
        self.confirm_bar.hide()

    def cancel_load(self) -> None:
        self.adapter.cancel_load()

    def unload(self) -> None:
        self.adapter.unload()

    def _on_runner_state(self, runner: str) -> None:
        name = self._context.choice.label if self._context is not None else "the model"
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
        self._refresh_settings()

    def _on_ready(self, ready: object) -> None:
        self._refresh_settings()

    def _on_progress(self, percent: int) -> None:
        self.progress.setRange(0, 100)
        self.progress.setValue(percent)

    def _on_loaded(self, event: object) -> None:
        assert isinstance(event, P.LoadedEvent)
        self.progress.setRange(0, 100)
        self.progress.setValue(100)
        ctx = self._context
        where = (
            "on the CPU"
            if event.on_cpu_only or set(event.layers) <= {"CPU"}
            else "on " + ", ".join(f"{d} ({n} layer{'s' if n != 1 else ''})" for d, n in event.layers.items())
        )
        name = ctx.choice.label if ctx is not None else Path(event.model_path).name
        self.load_status.setText(f"Loaded {name} in {event.load_s:.2f} s {where}, context {event.n_ctx:,}.")
        self.figures["load"].setText(f"{event.load_s:.2f} s")
        self._show_memory(event)
        rig = ctx.rig if ctx is not None else None
        if ctx is not None and rig is not None and rig.source == "detected":
            self.predicted_vram_changed.emit(predicted_vram(ctx.plan, event))
        else:
            self.predicted_vram_changed.emit({})

    def _on_unloaded(self) -> None:
        self.load_status.setText("Unloaded: the model's memory is free again.")
        self.progress.setValue(0)
        self.predicted_vram_changed.emit({})

    def _clear_measurements(self) -> None:
        for label in self.figures.values():
            label.setText("—")
        self.memory_table.setRowCount(0)
        self.memory_note.setText("Loading: the comparison appears when llama.cpp has allocated its buffers.")

    def _show_memory(self, event: P.LoadedEvent) -> None:
        table = self.memory_table
        table.setRowCount(0)
        rows: list[tuple[str, str, float | None, float | None, float | None]]
        if event.compare:
            rows = [(r.device, r.buffer, r.predicted_mib, r.measured_mib, r.error_pct) for r in event.compare]
        else:
            rows = [(b.device, b.buffer, None, b.mib, None) for b in event.buffers]
        pal = self.palette()
        warn = QtGui.QColor("#f2b84b" if is_dark(pal) else "#a15c00")
        for device, buffer, predicted, measured, error in rows:
            r = table.rowCount()
            table.insertRow(r)
            dev_item = QtWidgets.QTableWidgetItem(self._device_name(device))
            dev_item.setToolTip(
                f"llama.cpp's name: {device}" if device != "host" else "System RAM (host memory)"
            )
            index = _gpu_index(device)
            if index is not None:
                dev_item.setIcon(_swatch_icon(gpu_color(index)))
            cells = [
                dev_item,
                _item(BUFFER_LABELS.get(buffer, buffer), BUFFER_TIPS.get(buffer, "")),
                QtWidgets.QTableWidgetItem(_mib(predicted)),
                QtWidgets.QTableWidgetItem(_mib(measured)),
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
        notes: list[str] = []
        ctx = self._context
        if ctx is None or ctx.plan is None:
            why = self.state.plan_error_text
            notes.append("No plan to compare with" + (f": {why}" if why else "") + ". Measured buffers only.")
        for v in event.vram:
            text = f"GPU {v.gpu}: NVML saw {v.increase_mib:+,.0f} MiB"
            if v.after_load_mib is not None:
                text += f" ({v.after_load_mib - v.before_mib:+,.0f} MiB before the first decode)"
            notes.append(text + ".")
        if not event.vram and not event.on_cpu_only:
            notes.append("NVML is not available: no GPU memory measurement beyond llama.cpp's buffers.")
        self.memory_note.setText(" ".join(notes))

    @staticmethod
    def _device_name(device: str) -> str:
        index = _gpu_index(device)
        if index is not None:
            return f"GPU {index}"
        return "RAM" if device == "host" else device

    # ------------------------------------------------------------------------------------------ chat
    def send(self) -> bool:
        """Send the input box's text as the next user turn; returns whether a reply was started."""
        text = self.input.toPlainText().strip()
        if not text:
            return False
        if self.adapter.state != STATE_LOADED:
            self.load_status.setText("Load a model first, then send your message.")
            return False
        messages = (*self.messages, P.ChatMessage("user", text))
        seed = self.seed.value()
        request = P.ChatRequest(
            messages=messages,
            temperature=self.temperature.value(),
            max_tokens=self.max_tokens.value(),
            seed=None if seed < 0 else seed,
        )
        try:
            self.adapter.chat(request)
        except RigfitError as exc:
            self.load_status.setText(str(exc))
            return False
        self.messages.append(P.ChatMessage("user", text))
        self._pending_user_text = text
        self.input.clear()
        self._append_turn("You", text)
        self._append_turn("Assistant", "")
        self.reply_text = ""
        return True

    def stop(self) -> None:
        """Esc / Stop: end the reply (within one token), or cancel a load in progress."""
        state = self.adapter.state
        if state == STATE_GENERATING:
            self.adapter.stop()
        elif state in (STATE_STARTING, STATE_LOADING):
            self.adapter.cancel_load()
        elif self._confirm_pending:
            self._hide_confirm()

    def clear_chat(self) -> None:
        """Forget the conversation (the model stays loaded)."""
        if self.adapter.state == STATE_GENERATING:
            return
        self.messages.clear()
        self.reply_text = ""
        self._reply_cursor = None
        self.transcript.clear()

    def _append_turn(self, role: str, text: str) -> None:
        doc = self.transcript.document()
        cursor = QtGui.QTextCursor(doc)
        cursor.movePosition(QtGui.QTextCursor.MoveOperation.End)
        with self._keep_scrolled():
            if not doc.isEmpty():
                cursor.insertBlock()
                cursor.insertBlock()
            cursor.insertText(role, self._role_format)
            cursor.insertBlock()
            cursor.insertText(text, self._text_format)
        self._reply_cursor = cursor

    def _append_reply(self, text: str, fmt: QtGui.QTextCharFormat | None = None) -> None:
        cursor = self._reply_cursor
        if cursor is None:
            return
        with self._keep_scrolled():
            cursor.insertText(text, fmt or self._text_format)

    def _keep_scrolled(self) -> _ScrollKeeper:
        return _ScrollKeeper(self.transcript.verticalScrollBar())

    def _on_token(self, event: object) -> None:
        assert isinstance(event, P.TokenEvent)
        self.reply_text += event.text
        self._append_reply(event.text)

    def _on_done(self, event: object) -> None:
        assert isinstance(event, P.DoneEvent)
        self.messages.append(P.ChatMessage("assistant", event.text))
        self._pending_user_text = ""
        note = {
            "stopped": " [stopped]",
            "max_tokens": " [max tokens reached]",
            "context": " [the context is full]",
        }
        if event.stop_reason in note:
            self._append_reply(note[event.stop_reason], self._note_format)
        if event.template_error:
            self._append_reply(
                f"\n[the model's chat template failed ({event.template_error}); used the {event.template} layout]",
                self._note_format,
            )
        self._reply_cursor = None
        self._show_speeds(event)

    def _show_speeds(self, event: P.DoneEvent) -> None:
        f = self.figures
        f["ttft"].setText("—" if event.ttft_s is None else f"{event.ttft_s * 1000:,.0f} ms")
        f["prompt"].setText(_rate(event.prompt_tok_s))
        f["generation"].setText(_rate(event.gen_tok_s))
        f["tokens"].setText(f"{event.prompt_tokens:,} prompt, {event.completion_tokens:,} generated")
        ctx = self._context
        predicted = None
        if ctx is not None:
            depth = event.prompt_tokens + event.completion_tokens // 2
            predicted = predicted_decode_tok_s(ctx.rig, ctx.choice, ctx.plan, depth)
        if predicted is None:
            f["predicted"].setText("—")
        else:
            text = f"{predicted:,.1f} tok/s generation"
            if event.gen_tok_s:
                text += f" ({(predicted - event.gen_tok_s) / event.gen_tok_s * 100:+.0f}% vs measured)"
            if ctx is not None and ctx.rig is not None and ctx.rig.source != "detected":
                text += " — for the planned rig"
            f["predicted"].setText(text)

    def _on_error(self, event: object) -> None:
        assert isinstance(event, P.ErrorEvent)
        if self._reply_cursor is not None:
            # The turn failed: take the user's message back so it can be sent again.
            self._append_reply(f"[no reply: {event.message}]", self._note_format)
            self._reply_cursor = None
            if self.messages and self.messages[-1].role == "user":
                self.messages.pop()
            if self._pending_user_text and not self.input.toPlainText().strip():
                self.input.setPlainText(self._pending_user_text)
            self._pending_user_text = ""
        if event.kind == P.ERR_CANCELLED:
            self.load_status.setText("Loading was cancelled.")
            self.progress.setValue(0)
            self.memory_note.setText("Load a model to compare the plan with what llama.cpp allocates.")
            return
        if event.kind == P.ERR_CRASHED:
            text = f"{_first_upper(event.message)}. Rigfit is fine: load the model again to continue."
            self.load_status.setText("The model process stopped.")
            self.predicted_vram_changed.emit({})
        else:
            text = _first_upper(event.message)
            if self.adapter.state == STATE_IDLE:
                # A failed load leaves nothing loaded: the worker frees the old model before loading.
                self.load_status.setText("No model loaded.")
                self.predicted_vram_changed.emit({})
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self._show_problem(text, event.log_tail or self.adapter.log_tail())

    def _on_exited(self, event: object) -> None:
        assert isinstance(event, P.ExitedEvent)
        if self._reply_cursor is not None:
            self._append_reply("[the model process ended]", self._note_format)
            self._reply_cursor = None
        self.predicted_vram_changed.emit({})
        self._update_buttons()

    def _show_problem(self, message: str, log_tail: Sequence[str]) -> None:
        self.problem_label.setText(message)
        self.log_view.setPlainText("\n".join(log_tail[-_LOG_LINES_KEPT:]))
        self.log_toggle.setVisible(bool(log_tail))
        self.problem.show()

    def _on_log_toggled(self, shown: bool) -> None:
        self.log_view.setVisible(shown)
        self.log_toggle.setArrowType(
            QtCore.Qt.ArrowType.DownArrow if shown else QtCore.Qt.ArrowType.RightArrow
        )
        self.log_toggle.setText("Hide the log" if shown else "Show the log's last lines")
        if shown:
            bar = self.log_view.verticalScrollBar()
            bar.setValue(bar.maximum())

    # ------------------------------------------------------------------------------------------ drops
    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:
        if _dropped_model(event.mimeData()):
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dropEvent(self, event: QtGui.QDropEvent) -> None:
        path = _dropped_model(event.mimeData())
        if path:
            event.acceptProposedAction()
            self.open_model_file(path)
        else:
            super().dropEvent(event)

    # ------------------------------------------------------------------------------------------ closing
    @property
    def busy(self) -> bool:
        """True while a header read or a scan has not reported back."""
        return self.tasks.busy

    def shutdown(self) -> None:
        """Stop the model process and background work; the window calls this when it closes."""
        if self._shut_down:
            return
        self._shut_down = True
        self._stop_scan.set()
        self.tasks.cancel("run-model")
        self.tasks.cancel("run-scan")
        self.adapter.close()
        self.tasks.wait()
        self._update_buttons()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        # A Run tab shown on its own (tests, embedding) cleans up like the window does.
        if self.isWindow():
            self.shutdown()
        super().closeEvent(event)


class _ScrollKeeper:
    """Keeps the transcript scrolled to the end while text is added, unless the user scrolled up."""

    def __init__(self, bar: QtWidgets.QScrollBar) -> None:
        self.bar = bar
        self.at_end = True

    def __enter__(self) -> _ScrollKeeper:
        self.at_end = self.bar.value() >= self.bar.maximum() - 4
        return self

    def __exit__(self, *exc: object) -> None:
        if self.at_end:
            self.bar.setValue(self.bar.maximum())


def _item(text: str, tooltip: str = "") -> QtWidgets.QTableWidgetItem:
    item = QtWidgets.QTableWidgetItem(text)
    if tooltip:
        item.setToolTip(tooltip)
    return item


def _demo_size() -> str:
    from app.core.demo import demo_model_path

    path = demo_model_path()
    try:
        return format_size(path.stat().st_size) if path is not None else "not installed"
    except OSError:
        return "?"


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


def _dropped_model(mime: QtCore.QMimeData) -> str | None:
    """The one local model file in a drag: a ``.gguf``, or a file that starts with the GGUF magic."""
    if not mime.hasUrls():
        return None
    files = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
    if len(files) != 1:
        return None
    path = files[0]
    if path.lower().endswith(".gguf"):
        return path
    try:
        with open(path, "rb") as f:
            return path if f.read(4) == b"GGUF" else None
    except OSError:
        return None


__all__ = [
    "DEMO_LABEL",
    "LoadContext",
    "RunView",
    "describe_settings",
    "describe_split",
    "format_size",
    "plan_warning",
    "predicted_decode_tok_s",
    "predicted_vram",
]
