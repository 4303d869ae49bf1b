"""One GPU of the Hardware tab: name, VRAM, PCIe link, NVLink, bandwidth, power, temperature.

In the planned-rig editor the card also offers the slot width, an NVLink checkbox and a remove
button; it reports those edits as signals (by its position in the rig) and changes nothing itself.
"""

from __future__ import annotations

import html

from PySide6 import QtCore, QtWidgets

from app.core.rig import VENDOR_NVIDIA, Gpu, Rig
from app.ui.glossary import tip
from app.ui.theme import TEXT_MUTED, TEXT_WARNING, badge_style_sheet, fmt_celsius, fmt_gib, fmt_value, tint


def _muted(label: QtWidgets.QLabel) -> QtWidgets.QLabel:
    tint(label, TEXT_MUTED)
    return label


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
            self.vram_bar.setFormat(f"VRAM {fmt_gib(gpu.vram_free_mib)} free of {fmt_gib(total)}")
        else:
            self.vram_bar.setValue(0)
            self.vram_bar.setFormat(f"VRAM {fmt_gib(total)}" if total > 0 else "VRAM not reported")
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
            tint(self.pcie_label, TEXT_WARNING)
            self.pcie_label.setToolTip(
                "The slot gives this card less than it supports: tensor-parallel (row) traffic to it is "
                "throttled. The layer split is barely affected.\n\n" + tip("pcie_width")
            )
        layout.addWidget(self.pcie_label)

        facts = QtWidgets.QGridLayout()
        facts.setHorizontalSpacing(12)
        rows = [
            ("Memory bandwidth", fmt_value(gpu.bandwidth_gbps or None, " GB/s", missing="not reported")),
            ("Power limit", fmt_value(gpu.power_limit_w or None, " W", missing="not reported")),
        ]
        if gpu.temperature_c is not None:
            rows.append(("Temperature", fmt_celsius(gpu.temperature_c)))
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
            self.nvlink_badge.setStyleSheet(badge_style_sheet("nvlinkBadge", self.palette()))
        else:
            _muted(self.nvlink_badge)
        badges.addWidget(self.nvlink_badge)
        if gpu.vendor != VENDOR_NVIDIA and gpu.remote is None:
            planning = QtWidgets.QLabel("planning only")
            tint(planning, TEXT_WARNING)
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


__all__ = ["GpuCard"]
