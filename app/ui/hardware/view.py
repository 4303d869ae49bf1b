"""The Hardware tab: a card per GPU, the topology matrix, warnings, and the planned-rig editor.

The view shows either the detected rig ("This computer") or a planned one. When no NVIDIA GPU is
detected it says why (the rig's status) and shows the planned demo rig ``2x RTX 3090``, which the
user edits: add a catalog GPU (searchable), remove one, set a slot width, join cards with NVLink,
save and load rig files. The edits go to a :class:`~app.ui.hardware.planned_rig.PlannedRigEditor`
(no widgets), which builds a new frozen :class:`~app.core.rig.Rig`; each card is a
:class:`~app.ui.hardware.gpu_card.GpuCard`. Every change emits :attr:`HardwareView.rig_changed`, so
later tabs (Fit, Split, Run) follow the rig shown here.

This class still lays out and fills the topology matrix, the warnings and the host line itself: each
is a few lines of filling a stock Qt widget from the rig, and they change together with the rig.
The view never detects anything itself: the main window runs detection off the GUI thread and hands
the result to :meth:`HardwareView.set_detected`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6 import QtCore, QtWidgets

from app.core.errors import RigfitError
from app.core.rig import Rig
from app.ui.hardware.gpu_card import GpuCard
from app.ui.hardware.planned_rig import PlannedRigEditor
from app.ui.theme import TEXT_ERROR, TEXT_MUTED, TEXT_NORMAL, fmt_gib, tint

if TYPE_CHECKING:
    from app.hardware.catalog import CatalogEntry

# The GPU catalog, the advice and the sysfs notes are imported where they are used: the window builds
# this tab before its first paint and fills it right after (populate()).

DEMO_RIG_EXPRESSION = "2x RTX 3090"
MODE_DETECTED = "detected"
MODE_PLANNED = "planned"
CPU_ONLY_PLAN_TEXT = "Plan a rig with GPUs below to see what they would change."
CPU_ONLY_TEXT = (
    f"Without an NVIDIA GPU Rigfit still runs models here, on the CPU — slowly. {CPU_ONLY_PLAN_TEXT}"
)


class HardwareView(QtWidgets.QWidget):
    """The Hardware tab (see the module docstring)."""

    rig_changed = QtCore.Signal(object)  # the Rig shown now
    detect_requested = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None, populate: bool = True) -> None:
        """``populate=False`` builds the empty tab only; :meth:`populate` (or any change) fills it
        later: the main window does that once it is on screen, so reading the GPU catalog and
        building the cards does not delay the first paint."""
        super().__init__(parent)
        self._catalog: tuple[CatalogEntry, ...] = ()
        self._populated = False
        self._planned_set = False
        self._detected: Rig | None = None
        self._detection_message = "Detecting GPUs…"
        self.editor_model = PlannedRigEditor()
        self._mode = MODE_PLANNED
        self._mode_pinned = False  # the user (or --rig) chose the mode: detection must not switch it
        self._cards: list[GpuCard] = []
        self._build()
        if populate:
            self.populate()

    def populate(self) -> None:
        """Read the GPU catalog and show the rig (the demo planned rig until something else is set)."""
        if self._populated:
            return
        self._ensure_ready()
        self._refresh()

    @property
    def populated(self) -> bool:
        return self._populated

    def _ensure_ready(self) -> None:
        if self._populated:
            return
        self._populated = True
        from app.hardware.catalog import load_gpu_catalog, parse_rig_expression

        self._catalog = load_gpu_catalog()
        self._fill_add_combo()
        self.rpc_panel.set_catalog(self._catalog)
        if not self._planned_set:
            self._adopt_planned(parse_rig_expression(DEMO_RIG_EXPRESSION))

    # ------------------------------------------------------------------------------------------ build
    def _build(self) -> None:
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(8, 8, 8, 8)

        banner = QtWidgets.QHBoxLayout()
        self.status_label = QtWidgets.QLabel(self._detection_message)
        self.status_label.setObjectName("statusLabel")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        banner.addWidget(self.status_label, 1)
        self.detected_button = QtWidgets.QRadioButton("This computer")
        self.detected_button.setObjectName("showDetected")
        self.planned_button = QtWidgets.QRadioButton("Planned rig")
        self.planned_button.setObjectName("showPlanned")
        self.mode_group = QtWidgets.QButtonGroup(self)
        self.mode_group.addButton(self.detected_button)
        self.mode_group.addButton(self.planned_button)
        self.detected_button.clicked.connect(lambda: self.show_mode(MODE_DETECTED, pin=True))
        self.planned_button.clicked.connect(lambda: self.show_mode(MODE_PLANNED, pin=True))
        banner.addWidget(self.detected_button)
        banner.addWidget(self.planned_button)
        self.detect_button = QtWidgets.QPushButton("Detect again")
        self.detect_button.setObjectName("detectAgain")
        self.detect_button.clicked.connect(self.detect_requested.emit)
        banner.addWidget(self.detect_button)
        outer.addLayout(banner)

        self.editor = QtWidgets.QWidget()
        self.editor.setObjectName("plannedEditor")
        ed = QtWidgets.QHBoxLayout(self.editor)
        ed.setContentsMargins(0, 0, 0, 0)
        ed.addWidget(QtWidgets.QLabel("Add GPU"))
        self.add_combo = QtWidgets.QComboBox()
        self.add_combo.setObjectName("addGpuCombo")
        self.add_combo.setEditable(True)
        self.add_combo.setInsertPolicy(QtWidgets.QComboBox.InsertPolicy.NoInsert)
        self.add_combo.setMinimumContentsLength(24)
        ed.addWidget(self.add_combo)
        self.add_button = QtWidgets.QPushButton("Add")
        self.add_button.setObjectName("addGpu")
        self.add_button.clicked.connect(self._on_add_clicked)
        ed.addWidget(self.add_button)
        ed.addSpacing(16)
        self.load_button = QtWidgets.QPushButton("Load rig…")
        self.load_button.clicked.connect(self._on_load_clicked)
        self.save_button = QtWidgets.QPushButton("Save rig…")
        self.save_button.clicked.connect(self._on_save_clicked)
        ed.addWidget(self.load_button)
        ed.addWidget(self.save_button)
        ed.addStretch(1)
        outer.addWidget(self.editor)
        self.editor_message = QtWidgets.QLabel("")
        self.editor_message.setObjectName("editorMessage")
        self.editor_message.setWordWrap(True)
        self.editor_message.hide()
        outer.addWidget(self.editor_message)

        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        body = QtWidgets.QWidget()
        self.body_layout = QtWidgets.QVBoxLayout(body)
        self.body_layout.setContentsMargins(0, 0, 0, 0)
        self.cards_host = QtWidgets.QWidget()
        self.cards_layout = QtWidgets.QGridLayout(self.cards_host)
        self.cards_layout.setContentsMargins(0, 0, 0, 0)
        self.body_layout.addWidget(self.cards_host)
        self.empty_label = QtWidgets.QLabel("")
        self.empty_label.setWordWrap(True)
        self.empty_label.hide()
        self.body_layout.addWidget(self.empty_label)

        lower = QtWidgets.QHBoxLayout()
        topo_box = QtWidgets.QGroupBox("Topology (as nvidia-smi topo -m) and P2P")
        topo_layout = QtWidgets.QVBoxLayout(topo_box)
        self.topology_table = QtWidgets.QTableWidget()
        self.topology_table.setObjectName("topologyTable")
        self.topology_table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.topology_table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.NoSelection)
        self.topology_table.setSizeAdjustPolicy(
            QtWidgets.QAbstractScrollArea.SizeAdjustPolicy.AdjustToContents
        )
        topo_layout.addWidget(self.topology_table)
        legend = QtWidgets.QLabel(
            "NV# NVLink links · PIX/PXB PCIe bridges · PHB through the CPU · NODE/SYS across host bridges / CPUs"
            " · NET over the network (llama.cpp RPC)"
        )
        legend.setWordWrap(True)
        tint(legend, TEXT_MUTED)
        topo_layout.addWidget(legend)
        topo_layout.addStretch(1)
        lower.addWidget(topo_box, 1)
        advice_box = QtWidgets.QGroupBox("Warnings and notes")
        advice_layout = QtWidgets.QVBoxLayout(advice_box)
        self.advice_list = QtWidgets.QListWidget()
        self.advice_list.setObjectName("adviceList")
        self.advice_list.setWordWrap(True)
        self.advice_list.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.NoSelection)
        advice_layout.addWidget(self.advice_list)
        lower.addWidget(advice_box, 2)
        self.body_layout.addLayout(lower)

        from app.ui.hardware.rpc_panel import RpcPanel

        self.rpc_panel = RpcPanel()
        self.rpc_panel.devices_changed.connect(self._refresh)
        self.rpc_panel.planned_remote_requested.connect(self.add_planned_remote)
        self.body_layout.addWidget(self.rpc_panel)
        self.host_label = QtWidgets.QLabel("")
        self.host_label.setObjectName("hostLabel")
        self.host_label.setWordWrap(True)
        self.body_layout.addWidget(self.host_label)
        self.other_label = QtWidgets.QLabel("")
        self.other_label.setObjectName("otherGpus")
        self.other_label.setWordWrap(True)
        self.body_layout.addWidget(self.other_label)
        self.body_layout.addStretch(1)
        scroll.setWidget(body)
        outer.addWidget(scroll, 1)

    def _fill_add_combo(self) -> None:
        for entry in self._catalog:
            vram = f"{entry.vram_gib:g} GB"
            label = (
                entry.name
                if vram.replace(" ", "") in entry.name.replace(" ", "")
                else f"{entry.name} ({vram})"
            )
            self.add_combo.addItem(label, entry.id)
        completer = self.add_combo.completer()
        if completer is not None:
            completer.setFilterMode(QtCore.Qt.MatchFlag.MatchContains)
            completer.setCompletionMode(QtWidgets.QCompleter.CompletionMode.PopupCompletion)
            completer.setCaseSensitivity(QtCore.Qt.CaseSensitivity.CaseInsensitive)
        self.add_combo.setCurrentIndex(max(0, self.add_combo.findData("rtx-3090")))

    # ------------------------------------------------------------------------------------------ API
    @property
    def mode(self) -> str:
        return self._mode

    @property
    def cards(self) -> tuple[GpuCard, ...]:
        return tuple(self._cards)

    @property
    def detected_rig(self) -> Rig | None:
        return self._detected

    @property
    def planned_rig(self) -> Rig:
        return self.editor_model.rig

    def current_rig(self) -> Rig:
        """The rig the tab shows now (what the other tabs should plan for), with the remote
        machines' devices of the RPC panel after its own."""
        base = (
            self._detected
            if self._mode == MODE_DETECTED and self._detected is not None
            else self.editor_model.rig
        )
        extra = self.rpc_panel.remote_devices()
        if not extra:
            return base
        from app.hardware.rpc import with_remote_devices

        return with_remote_devices(base, extra)

    def set_detecting(self) -> None:
        self._ensure_ready()
        self._detection_message = "Detecting GPUs…"
        self.detect_button.setEnabled(False)
        self._refresh()

    def set_detected(self, rig: Rig) -> None:
        """Show a detection result. Switches to it when it has NVIDIA GPUs, unless the user chose."""
        self._ensure_ready()
        self._detected = rig
        self._detection_message = rig.status
        self.detect_button.setEnabled(True)
        if not self._mode_pinned:
            self._mode = MODE_DETECTED if rig.gpus else MODE_PLANNED
        self._refresh()

    def set_detection_failed(self, message: str) -> None:
        self._ensure_ready()
        self._detected = None
        self._detection_message = f"Detection failed: {message}"
        self.detect_button.setEnabled(True)
        if not self._mode_pinned:
            self._mode = MODE_PLANNED
        self._refresh()

    def show_mode(self, mode: str, pin: bool = True) -> None:
        self._ensure_ready()
        if mode == MODE_DETECTED and self._detected is None:
            mode = MODE_PLANNED
        self._mode = mode
        self._mode_pinned = self._mode_pinned or pin
        self._refresh()

    def set_planned_rig(self, rig: Rig, pin: bool = True) -> None:
        """Edit this planned rig (from an expression, a file or the demo) and show it."""
        self._planned_set = True
        self._ensure_ready()
        self._adopt_planned(rig)
        if pin:
            self._mode = MODE_PLANNED
            self._mode_pinned = True
        self._refresh()

    def _adopt_planned(self, rig: Rig) -> None:
        self._planned_set = True
        self.editor_model.adopt(rig)

    def add_planned_gpu(self, catalog_id: str) -> None:
        self._ensure_ready()
        entry = next((e for e in self._catalog if e.id == catalog_id), None)
        if entry is None:
            self._show_editor_message(f"unknown catalog GPU '{catalog_id}'", error=True)
            return
        self._edit(lambda: self.editor_model.add(entry))

    def add_planned_remote(self, catalog_id: str, link_name: str) -> None:
        """A planned GPU on another machine, reached over ``link_name`` (``rpc(RTX 4090 @ 1GbE)``)."""
        self._ensure_ready()
        entry = next((e for e in self._catalog if e.id == catalog_id), None)
        if entry is None:
            self._show_editor_message(f"unknown catalog GPU '{catalog_id}'", error=True)
            return
        self._edit(lambda: self.editor_model.add_remote(entry, link_name))

    def remove_planned_gpu(self, position: int) -> None:
        self._ensure_ready()
        if 0 <= position < self.editor_model.rig.n_gpus:
            self._edit(lambda: self.editor_model.remove(position))

    def set_slot_width(self, position: int, width: int | None) -> None:
        if 0 <= position < self.editor_model.rig.n_gpus:
            self._edit(lambda: self.editor_model.set_slot_width(position, width))

    def set_nvlink(self, position: int, on: bool) -> None:
        self._edit(lambda: self.editor_model.set_nvlink(position, on))

    def load_rig_file(self, path: str | Path) -> bool:
        from app.hardware.rigfile import load_rig

        try:
            rig = load_rig(path)
        except RigfitError as exc:
            self._show_editor_message(str(exc), error=True)
            return False
        self.set_planned_rig(rig)
        self._show_editor_message(f"Loaded {path}")
        return True

    def save_rig_file(self, path: str | Path) -> bool:
        from app.hardware.rigfile import save_rig

        try:
            save_rig(self.current_rig(), path)
        except RigfitError as exc:
            self._show_editor_message(str(exc), error=True)
            return False
        self._show_editor_message(f"Saved {path}")
        return True

    # ------------------------------------------------------------------------------------------ internals
    def _edit(self, change: Callable[[], Rig]) -> None:
        """Apply an edit of the planned rig and show it (or why the rig cannot be built)."""
        try:
            change()
        except RigfitError as exc:
            self._show_editor_message(str(exc), error=True)
            return
        self._mode = MODE_PLANNED
        self._show_editor_message("")
        self._refresh()

    def _show_editor_message(self, text: str, error: bool = False) -> None:
        self.editor_message.setText(text)
        self.editor_message.setVisible(bool(text))
        tint(self.editor_message, TEXT_ERROR if error else TEXT_NORMAL)

    def _on_add_clicked(self) -> None:
        index = self.add_combo.currentIndex()
        text = self.add_combo.currentText().strip()
        catalog_id = self.add_combo.itemData(index) if index >= 0 else None
        if catalog_id is None or self.add_combo.itemText(index) != text:
            from app.hardware.catalog import find_gpu

            try:
                catalog_id = find_gpu(text, self._catalog).id
            except RigfitError as exc:
                self._show_editor_message(str(exc), error=True)
                return
        self.add_planned_gpu(str(catalog_id))

    def _on_load_clicked(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Load rig", "", "Rig files (*.toml);;All files (*)"
        )
        if path:
            self.load_rig_file(path)

    def _on_save_clicked(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save rig", "rig.toml", "Rig files (*.toml)")
        if path:
            self.save_rig_file(path)

    def _status_text(self) -> str:
        detected = self._detection_message
        if self._mode == MODE_DETECTED or self._detected is None:
            if self._mode == MODE_PLANNED:
                return f"{detected}\nShowing a planned rig: {self.editor_model.rig.name}"
            return detected
        if not self._detected.gpus:
            # The probe's message may already say that models run on the CPU; say it once.
            cpu = CPU_ONLY_PLAN_TEXT if "CPU" in detected else CPU_ONLY_TEXT
            return f"{detected}\n{cpu}\nShowing a planned rig you can edit: {self.editor_model.rig.name}"
        return f"Planned rig: {self.editor_model.rig.name} (this computer: {detected})"

    def _refresh(self) -> None:
        rig = self.current_rig()
        planned = self._mode == MODE_PLANNED
        self.status_label.setText(self._status_text())
        self.detected_button.setEnabled(self._detected is not None)
        # setChecked does not emit clicked, so this does not count as the user choosing a mode.
        (self.planned_button if planned else self.detected_button).setChecked(True)
        self.editor.setVisible(planned)
        if not planned:
            self.editor_message.hide()
        self._fill_cards(rig, editable=planned)
        self._fill_topology(rig)
        self._fill_advice(rig)
        self._fill_host(rig)
        self.rig_changed.emit(rig)

    def _fill_cards(self, rig: Rig, editable: bool) -> None:
        for card in self._cards:
            self.cards_layout.removeWidget(card)
            card.setParent(None)
            card.deleteLater()
        self._cards = []
        catalog = {e.id: e for e in self._catalog}
        linked = {i for i, flag in enumerate(self.editor_model.nvlink_flags) if flag} if editable else set()
        n_planned = self.editor_model.rig.n_gpus
        columns = 3 if rig.n_gpus >= 5 else 2
        for i, gpu in enumerate(rig.gpus):
            entry = catalog.get(gpu.catalog_id or "")
            card = GpuCard(
                gpu,
                i,
                rig,
                # the RPC panel's devices are edited there, not here
                editable=editable and i < n_planned,
                nvlink_capable=bool(entry and entry.nvlink),
                nvlink_checked=i in linked,
            )
            if editable:
                card.remove_requested.connect(
                    self.remove_planned_gpu, QtCore.Qt.ConnectionType.QueuedConnection
                )
                card.slot_width_changed.connect(
                    self.set_slot_width, QtCore.Qt.ConnectionType.QueuedConnection
                )
                card.nvlink_toggled.connect(self.set_nvlink, QtCore.Qt.ConnectionType.QueuedConnection)
            self.cards_layout.addWidget(card, i // columns, i % columns)
            self._cards.append(card)
        if not rig.gpus:
            self.empty_label.setText(
                "No GPUs in this rig. Add one above."
                if editable
                else "No NVIDIA GPU detected on this computer."
            )
            self.empty_label.show()
        else:
            self.empty_label.hide()

    def _fill_topology(self, rig: Rig) -> None:
        table = self.topology_table
        n = rig.n_gpus
        table.clear()
        table.setRowCount(n)
        table.setColumnCount(n)
        headers = [f"GPU{g.index}" for g in rig.gpus]
        table.setHorizontalHeaderLabels(headers)
        table.setVerticalHeaderLabels(headers)
        for i in range(n):
            for j in range(n):
                label = rig.link_label(i, j)
                p2p = rig.p2p[i][j] if rig.p2p and i != j else ""
                text = label if not p2p else f"{label}\nP2P {p2p}"
                item = QtWidgets.QTableWidgetItem(text)
                item.setTextAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
                if label.startswith("NV"):
                    item.setToolTip(
                        f"{label[2:]} NVLink links between GPU{rig.gpus[i].index} and GPU{rig.gpus[j].index}"
                    )
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                table.setItem(i, j, item)
        table.resizeColumnsToContents()
        table.resizeRowsToContents()
        # Exactly as big as its cells: no empty grid below a 2x2 matrix.
        frame = 2 * table.frameWidth()
        width = table.verticalHeader().width() + sum(table.columnWidth(c) for c in range(n)) + frame
        height = table.horizontalHeader().height() + sum(table.rowHeight(r) for r in range(n)) + frame
        table.setFixedSize(max(width, 60), max(height, 30))
        table.setVisible(n > 0)

    def _fill_advice(self, rig: Rig) -> None:
        self.advice_list.clear()
        from app.core.advice import LEVEL_ERROR, LEVEL_WARNING, Advice, rig_advice

        advice: list[Advice] = list(rig_advice(rig))
        style = self.style()
        icons = {
            LEVEL_ERROR: QtWidgets.QStyle.StandardPixmap.SP_MessageBoxCritical,
            LEVEL_WARNING: QtWidgets.QStyle.StandardPixmap.SP_MessageBoxWarning,
        }
        for a in advice:
            icon = style.standardIcon(
                icons.get(a.level, QtWidgets.QStyle.StandardPixmap.SP_MessageBoxInformation)
            )
            item = QtWidgets.QListWidgetItem(icon, a.message)
            item.setData(QtCore.Qt.ItemDataRole.UserRole, a.code)
            item.setToolTip(a.code)
            self.advice_list.addItem(item)
        for note in rig.notes:
            if not any(note in a.message for a in advice):
                icon = style.standardIcon(QtWidgets.QStyle.StandardPixmap.SP_MessageBoxInformation)
                self.advice_list.addItem(QtWidgets.QListWidgetItem(icon, note))
        if self.advice_list.count() == 0:
            self.advice_list.addItem("Nothing to warn about.")

    def _fill_host(self, rig: Rig) -> None:
        from app.hardware.sysfs import note_for

        h = rig.host
        cores = f", {h.cores_physical} cores / {h.cores_logical} threads" if h.cores_physical else ""
        ram = (
            f", RAM {fmt_gib(h.ram_total_mib)} ({fmt_gib(h.ram_available_mib)} available)"
            if h.ram_total_mib
            else ""
        )
        versions = ""
        if rig.source == "detected" and (rig.driver or rig.cuda):
            versions = f" · NVIDIA driver {rig.driver or '?'}, CUDA {rig.cuda or '?'}"
        self.host_label.setText(f"Host: {h.cpu_name or 'CPU unknown'}{cores}{ram}{versions}")
        others = self._detected.other_gpus if self._detected is not None else ()
        if others:
            lines = [
                f"{g.name} ({fmt_gib(g.vram_total_mib) if g.vram_total_mib else 'VRAM unknown'}, PCIe {g.pcie.describe()}): {note_for(g)}"
                for g in others
            ]
            self.other_label.setText("Other GPUs: " + "; ".join(lines))
            self.other_label.show()
        else:
            self.other_label.hide()


__all__ = ["CPU_ONLY_TEXT", "DEMO_RIG_EXPRESSION", "MODE_DETECTED", "MODE_PLANNED", "HardwareView"]
