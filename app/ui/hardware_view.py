"""The Hardware tab: a card per GPU, the topology matrix, warnings, and the planned-rig editor.

The view shows either the detected rig ("This computer") or a planned one. When no NVIDIA GPU is
detected it says why (the rig's status) and shows the planned demo rig ``2x RTX 3090``, which the
user edits: add a catalog GPU (searchable), remove one, set a slot width, join cards with NVLink,
save and load rig files. Every change builds a new frozen :class:`~app.core.rig.Rig` and emits
:attr:`HardwareView.rig_changed`, so later tabs (Fit, Split, Run) follow the rig shown here.

The view never detects anything itself: the main window runs detection off the GUI thread and
hands the result to :meth:`HardwareView.set_detected`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.errors import RigfitError
from app.core.rig import VENDOR_NVIDIA, Gpu, Host, Rig
from app.ui.glossary import tip

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


def _gib(mib: float | None) -> str:
    if mib is None:
        return "?"
    return f"{mib / 1024:.1f} GiB"


def is_dark(palette: QtGui.QPalette) -> bool:
    return palette.color(QtGui.QPalette.ColorRole.Window).lightness() < 128


def attention_color(palette: QtGui.QPalette) -> QtGui.QColor:
    """An amber that reads well on the palette's window colour (light or dark theme)."""
    return QtGui.QColor("#f2b84b") if is_dark(palette) else QtGui.QColor("#a15c00")


def muted_color(palette: QtGui.QPalette) -> QtGui.QColor:
    """Secondary text: the text colour pulled 40% towards the background, in any theme."""
    fg = palette.color(QtGui.QPalette.ColorRole.WindowText)
    bg = palette.color(QtGui.QPalette.ColorRole.Window)
    return QtGui.QColor(
        round(fg.red() * 0.6 + bg.red() * 0.4),
        round(fg.green() * 0.6 + bg.green() * 0.4),
        round(fg.blue() * 0.6 + bg.blue() * 0.4),
    )


def _muted(label: QtWidgets.QLabel) -> QtWidgets.QLabel:
    pal = label.palette()
    pal.setColor(QtGui.QPalette.ColorRole.WindowText, muted_color(pal))
    label.setPalette(pal)
    return label


def error_color(palette: QtGui.QPalette) -> QtGui.QColor:
    return QtGui.QColor("#ff7b72") if is_dark(palette) else QtGui.QColor("#b42318")


def with_slot_width(gpu: Gpu, width: int | None) -> Gpu:
    """A planned GPU moved to a slot of another width (``None``: a slot as wide as the card)."""
    pcie = gpu.pcie
    card = pcie.gpu_max_width or pcie.max_width
    new = card if width is None or card is None else min(card, width)
    return replace(gpu, pcie=replace(pcie, width=new, max_width=new))


def nvlink_groups_for(gpus: Sequence[Gpu], flags: Sequence[bool]) -> tuple[list[tuple[int, ...]], list[str]]:
    """NVLink groups for the GPUs whose flag is set: bridged models in consecutive pairs, SXM models
    all together; a bridged card left without a partner stays unlinked (and is named in the notes)."""
    from app.hardware.catalog import load_gpu_catalog

    catalog = {e.id: e for e in load_gpu_catalog()}
    by_model: dict[str, list[int]] = {}
    for i, (gpu, flag) in enumerate(zip(gpus, flags, strict=True)):
        entry = catalog.get(gpu.catalog_id or "")
        if flag and entry is not None and entry.nvlink:
            by_model.setdefault(entry.id, []).append(i)
    groups: list[tuple[int, ...]] = []
    notes: list[str] = []
    for model, members in by_model.items():
        entry = catalog[model]
        if entry.nvlink_topology == "switch":
            if len(members) >= 2:
                groups.append(tuple(members))
            else:
                notes.append(f"GPU {members[0]}: NVLink needs a second {entry.name}")
            continue
        for k in range(0, len(members) - 1, 2):
            groups.append((members[k], members[k + 1]))
        if len(members) % 2:
            notes.append(
                f"GPU {members[-1]}: NVLink bridges join {entry.name} cards in pairs; this one has no partner"
            )
    return groups, notes


class GpuCard(QtWidgets.QFrame):
    """One GPU: name, VRAM bar, PCIe link, NVLink badge, bandwidth, power, temperature.

    In the planned editor it also offers the slot width, an NVLink checkbox and a remove button.
    """

    remove_requested = QtCore.Signal(int)
    slot_width_changed = QtCore.Signal(int, object)  # position, width (None: full width)
    nvlink_toggled = QtCore.Signal(int, bool)

    def __init__(
        self,
        gpu: Gpu,
        position: int,
        rig: Rig,
        editable: bool = False,
        nvlink_capable: bool = False,
        nvlink_checked: bool = False,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.gpu = gpu
        self.position = position
        self.setObjectName("gpuCard")
        self.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        self.setFrameShadow(QtWidgets.QFrame.Shadow.Raised)
        self.setMinimumWidth(300)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Maximum)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setSpacing(4)

        title = QtWidgets.QLabel(f"<b>GPU {gpu.index}</b> &nbsp; {html.escape(gpu.name)}")
        title.setObjectName("gpuTitle")
        title.setTextFormat(QtCore.Qt.TextFormat.RichText)
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        title.setFont(font)
        layout.addWidget(title)

        sub = [
            x
            for x in (gpu.architecture, self._cc_text(), gpu.bus_id, "planned" if gpu.planned else None)
            if x
        ]
        if sub:
            layout.addWidget(_muted(QtWidgets.QLabel(" · ".join(sub))))

        self.vram_bar = QtWidgets.QProgressBar()
        self.vram_bar.setObjectName("vramBar")
        self.vram_bar.setRange(0, 1000)
        total = gpu.vram_total_mib
        if gpu.vram_free_mib is not None and total > 0:
            used = max(0.0, total - gpu.vram_free_mib)
            self.vram_bar.setValue(round(1000 * used / total))
            self.vram_bar.setFormat(f"VRAM {_gib(gpu.vram_free_mib)} free of {_gib(total)}")
        else:
            self.vram_bar.setValue(0)
            self.vram_bar.setFormat(f"VRAM {_gib(total)}" if total > 0 else "VRAM not reported")
        self.vram_bar.setTextVisible(True)
        layout.addWidget(self.vram_bar)

        self.pcie_label = QtWidgets.QLabel(f"PCIe {gpu.pcie.describe()}")
        self.pcie_label.setObjectName("pcieLabel")
        self.pcie_label.setToolTip(tip("pcie_width"))
        if gpu.remote is not None:
            where = gpu.remote.endpoint or "a planned machine"
            self.pcie_label.setText(f"Remote (llama.cpp RPC) at {where} over {gpu.remote.link.describe()}")
            self.pcie_label.setToolTip(
                "A device on another machine: llama.cpp sends it activations over the network for every "
                "token, and the weights once when loading."
            )
        elif gpu.pcie.slot_limited:
            self._tint(self.pcie_label, attention_color(self.palette()))
            self.pcie_label.setToolTip(
                "The slot gives this card less than it supports: tensor-parallel (row) traffic to it is "
                "throttled. The layer split is barely affected.\n\n" + tip("pcie_width")
            )
        layout.addWidget(self.pcie_label)

        facts = QtWidgets.QGridLayout()
        facts.setHorizontalSpacing(12)
        rows = [
            ("Memory bandwidth", f"{gpu.bandwidth_gbps:.0f} GB/s" if gpu.bandwidth_gbps else "not reported"),
            ("Power limit", f"{gpu.power_limit_w:.0f} W" if gpu.power_limit_w else "not reported"),
        ]
        if gpu.temperature_c is not None:
            rows.append(("Temperature", f"{gpu.temperature_c:.0f} °C"))
        if gpu.power_connectors:
            rows.append(("Power connectors", " + ".join(gpu.power_connectors)))
        for r, (key, value) in enumerate(rows):
            facts.addWidget(_muted(QtWidgets.QLabel(key)), r, 0)
            facts.addWidget(QtWidgets.QLabel(value), r, 1)
        facts.setColumnStretch(1, 1)
        layout.addLayout(facts)

        badges = QtWidgets.QHBoxLayout()
        self.nvlink_badge = QtWidgets.QLabel(self._nvlink_text(rig))
        self.nvlink_badge.setObjectName("nvlinkBadge")
        self.nvlink_badge.setToolTip(tip("nvlink"))
        if gpu.nvlink.links > 0:
            pal = self.palette()
            hl = pal.color(QtGui.QPalette.ColorRole.Highlight).name()
            hl_text = pal.color(QtGui.QPalette.ColorRole.HighlightedText).name()
            self.nvlink_badge.setStyleSheet(
                f"QLabel#nvlinkBadge {{ background: {hl}; color: {hl_text}; border-radius: 6px; padding: 1px 6px; }}"
            )
        else:
            _muted(self.nvlink_badge)
        badges.addWidget(self.nvlink_badge)
        if gpu.vendor != VENDOR_NVIDIA and gpu.remote is None:
            planning = QtWidgets.QLabel("planning only")
            self._tint(planning, attention_color(self.palette()))
            from app.hardware.sysfs import note_for

            planning.setToolTip(note_for(gpu))
            badges.addWidget(planning)
        badges.addStretch(1)
        layout.addLayout(badges)

        self.slot_combo: QtWidgets.QComboBox | None = None
        self.nvlink_check: QtWidgets.QCheckBox | None = None
        self.remove_button: QtWidgets.QPushButton | None = None
        if editable:
            layout.addLayout(self._editor_row(nvlink_capable, nvlink_checked))

    def _cc_text(self) -> str | None:
        cc = self.gpu.compute_capability
        return f"CC {cc[0]}.{cc[1]}" if cc else None

    @staticmethod
    def _tint(label: QtWidgets.QLabel, color: QtGui.QColor) -> None:
        pal = label.palette()
        pal.setColor(QtGui.QPalette.ColorRole.WindowText, color)
        label.setPalette(pal)

    def _nvlink_text(self, rig: Rig) -> str:
        nv = self.gpu.nvlink
        if nv.links <= 0:
            return "No NVLink" if not nv.supported else "NVLink: no bridge"
        peers = [
            rig.gpus[j].index
            for j in range(rig.n_gpus)
            if j != self.position and rig.nvlinked(self.position, j)
        ]
        to = f" → GPU {', '.join(map(str, peers))}" if peers else ""
        return f"NVLink ×{nv.links}{to} · {nv.bandwidth_gbps:.0f} GB/s"

    def _editor_row(self, nvlink_capable: bool, nvlink_checked: bool) -> QtWidgets.QHBoxLayout:
        row = QtWidgets.QHBoxLayout()
        from app.hardware.catalog import SLOT_WIDTHS

        if self.gpu.remote is not None:  # in another machine: no slot or bridge of this rig's
            row.addStretch(1)
            remove = QtWidgets.QPushButton("Remove")
            remove.setObjectName("removeGpu")
            remove.clicked.connect(lambda: self.remove_requested.emit(self.position))
            row.addWidget(remove)
            self.remove_button = remove
            return row
        row.addWidget(QtWidgets.QLabel("Slot"))
        combo = QtWidgets.QComboBox()
        combo.setObjectName("slotWidth")
        card = self.gpu.pcie.gpu_max_width or self.gpu.pcie.max_width or 16
        for width in sorted((w for w in SLOT_WIDTHS if w <= card), reverse=True):
            combo.addItem(f"x{width}", width)
        current = self.gpu.pcie.max_width or card
        combo.setCurrentIndex(max(0, combo.findData(current)))
        combo.setToolTip("The slot's electrical width (an x16-long slot is often wired x4 or x8)")
        combo.currentIndexChanged.connect(self._on_slot_changed)
        row.addWidget(combo)
        self.slot_combo = combo
        check = QtWidgets.QCheckBox("NVLink")
        check.setObjectName("nvlinkCheck")
        check.setEnabled(nvlink_capable)
        check.setChecked(nvlink_checked)
        check.setToolTip(
            "Join this card to its partner with an NVLink bridge"
            if nvlink_capable
            else "No NVLink on this card"
        )
        check.toggled.connect(lambda on: self.nvlink_toggled.emit(self.position, on))
        row.addWidget(check)
        self.nvlink_check = check
        row.addStretch(1)
        remove = QtWidgets.QPushButton("Remove")
        remove.setObjectName("removeGpu")
        remove.clicked.connect(lambda: self.remove_requested.emit(self.position))
        row.addWidget(remove)
        self.remove_button = remove
        return row

    def _on_slot_changed(self, index: int) -> None:
        assert self.slot_combo is not None
        width = self.slot_combo.itemData(index)
        card = self.gpu.pcie.gpu_max_width
        self.slot_width_changed.emit(self.position, None if width == card else width)


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
        self._planned_gpus: list[Gpu] = []
        self._planned_groups: list[tuple[int, ...]] = []
        # What the user ticked; the groups are derived from it (a ticked card may still lack a partner).
        self._nvlink_flags: list[bool] = []
        self._planned_host: Host | None = None
        self._planned_name = ""
        self._planned_notes: list[str] = []
        self._planned_rig: Rig = Rig(gpus=(), name="")
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
        topo_layout.addWidget(_muted(legend))
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

        from app.ui.rpc_panel import RpcPanel

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
        return self._planned_rig

    def current_rig(self) -> Rig:
        """The rig the tab shows now (what the other tabs should plan for), with the remote
        machines' devices of the RPC panel after its own."""
        base = (
            self._detected
            if self._mode == MODE_DETECTED and self._detected is not None
            else self._planned_rig
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
        from app.hardware.catalog import nvlink_groups

        self._planned_set = True
        self._planned_gpus = list(rig.gpus)
        self._planned_groups = [tuple(g) for g in nvlink_groups(rig)]
        linked = {i for g in self._planned_groups for i in g}
        self._nvlink_flags = [i in linked for i in range(rig.n_gpus)]
        self._planned_host = rig.host
        self._planned_name = rig.name
        self._planned_notes = []
        self._planned_rig = rig

    def add_planned_gpu(self, catalog_id: str) -> None:
        self._ensure_ready()
        entry = next((e for e in self._catalog if e.id == catalog_id), None)
        if entry is None:
            self._show_editor_message(f"unknown catalog GPU '{catalog_id}'", error=True)
            return
        # Before the remote devices, which always follow the local GPUs (llama.cpp's RPC rules).
        at = next(
            (i for i, g in enumerate(self._planned_gpus) if g.remote is not None), len(self._planned_gpus)
        )
        self._planned_gpus.insert(at, entry.to_gpu(at))
        self._nvlink_flags.insert(at, False)
        self._planned_groups = [tuple(i + 1 if i >= at else i for i in g) for g in self._planned_groups]
        self._planned_name = ""
        self._rebuild_planned()

    def add_planned_remote(self, catalog_id: str, link_name: str) -> None:
        """A planned GPU on another machine, reached over ``link_name`` (``rpc(RTX 4090 @ 1GbE)``)."""
        from app.core.rig import Remote
        from app.core.rpc import parse_link

        self._ensure_ready()
        entry = next((e for e in self._catalog if e.id == catalog_id), None)
        if entry is None:
            self._show_editor_message(f"unknown catalog GPU '{catalog_id}'", error=True)
            return
        gpu = replace(entry.to_gpu(len(self._planned_gpus)), remote=Remote(link=parse_link(link_name)))
        self._planned_gpus.append(gpu)
        self._nvlink_flags.append(False)
        self._planned_name = ""
        self._rebuild_planned()

    def remove_planned_gpu(self, position: int) -> None:
        self._ensure_ready()
        if not 0 <= position < len(self._planned_gpus):
            return
        del self._planned_gpus[position]
        del self._nvlink_flags[position]
        groups = []
        for group in self._planned_groups:
            if position in group:
                continue  # a bridge or switch group that lost a member is taken apart
            groups.append(tuple(i - 1 if i > position else i for i in group))
        self._planned_groups = groups
        linked = {i for g in groups for i in g}
        # A partner that lost its bridge stays ticked only if it is still in a group.
        self._nvlink_flags = [flag and i in linked for i, flag in enumerate(self._nvlink_flags)]
        self._planned_name = ""
        self._rebuild_planned()

    def set_slot_width(self, position: int, width: int | None) -> None:
        if 0 <= position < len(self._planned_gpus):
            self._planned_gpus[position] = with_slot_width(self._planned_gpus[position], width)
            self._planned_name = ""
            self._rebuild_planned()

    def set_nvlink(self, position: int, on: bool) -> None:
        if 0 <= position < len(self._nvlink_flags):
            self._nvlink_flags[position] = on
        self._planned_groups, self._planned_notes = nvlink_groups_for(self._planned_gpus, self._nvlink_flags)
        self._planned_name = ""
        self._rebuild_planned()

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
    def _rebuild_planned(self) -> None:
        from app.hardware.catalog import build_planned_rig

        gpus = [g.with_index(i) for i, g in enumerate(self._planned_gpus)]
        try:
            # Slot widths live in the GPUs; NVLink is rebuilt from the groups.
            stripped = [
                replace(g, nvlink=replace(g.nvlink, links=0, peers=(), version=None, link_gbps=None))
                for g in gpus
            ]
            rig = build_planned_rig(
                stripped, self._planned_groups, host=self._planned_host, name=self._planned_name
            )
        except RigfitError as exc:
            self._show_editor_message(str(exc), error=True)
            return
        if self._planned_notes:
            rig = replace(rig, notes=rig.notes + tuple(self._planned_notes))
        self._planned_gpus = list(rig.gpus)
        self._planned_rig = rig
        self._mode = MODE_PLANNED
        self._show_editor_message("")
        self._refresh()

    def _show_editor_message(self, text: str, error: bool = False) -> None:
        self.editor_message.setText(text)
        self.editor_message.setVisible(bool(text))
        pal = self.editor_message.palette()
        color = (
            error_color(self.palette())
            if error
            else self.palette().color(QtGui.QPalette.ColorRole.WindowText)
        )
        pal.setColor(QtGui.QPalette.ColorRole.WindowText, color)
        self.editor_message.setPalette(pal)

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
                return f"{detected}\nShowing a planned rig: {self._planned_rig.name}"
            return detected
        if not self._detected.gpus:
            # The probe's message may already say that models run on the CPU; say it once.
            cpu = CPU_ONLY_PLAN_TEXT if "CPU" in detected else CPU_ONLY_TEXT
            return f"{detected}\n{cpu}\nShowing a planned rig you can edit: {self._planned_rig.name}"
        return f"Planned rig: {self._planned_rig.name} (this computer: {detected})"

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
        linked = {i for i, flag in enumerate(self._nvlink_flags) if flag} if editable else set()
        columns = 3 if rig.n_gpus >= 5 else 2
        for i, gpu in enumerate(rig.gpus):
            entry = catalog.get(gpu.catalog_id or "")
            card = GpuCard(
                gpu,
                i,
                rig,
                # the RPC panel's devices are edited there, not here
                editable=editable and i < len(self._planned_gpus),
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
            f", RAM {_gib(h.ram_total_mib)} ({_gib(h.ram_available_mib)} available)"
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
                f"{g.name} ({_gib(g.vram_total_mib) if g.vram_total_mib else 'VRAM unknown'}, PCIe {g.pcie.describe()}): {note_for(g)}"
                for g in others
            ]
            self.other_label.setText("Other GPUs: " + "; ".join(lines))
            self.other_label.show()
        else:
            self.other_label.hide()


__all__ = [
    "CPU_ONLY_TEXT",
    "DEMO_RIG_EXPRESSION",
    "GpuCard",
    "HardwareView",
    "nvlink_groups_for",
    "with_slot_width",
]
