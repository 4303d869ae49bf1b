"""Small widgets the tabs share: the stacked memory bar, colour swatches and legends, the rig header.

Colours come from :mod:`app.ui.theme` (palette roles), so light and dark themes both read well;
everything is painted with QPainter (no raster images), so it stays sharp at any device pixel ratio.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.plan import STATUS_FITS, STATUS_NO, STATUS_OFFLOAD, STATUS_TIGHT
from app.core.rig import Rig
from app.ui.glossary import tip
from app.ui.theme import (
    STATUS_WORDS,
    fmt_gib,
    over_capacity_color,
    segment_color,
    status_background,
    status_foreground,
    track_color,
)

SEGMENT_LABELS: dict[str, str] = {
    "weights": "Weights",
    "kv": "KV cache",
    "compute": "Compute",
    "overhead": "Overhead",
}
SEGMENT_TIPS: dict[str, str] = {
    "weights": "weights",
    "kv": "kv_cache",
    "compute": "compute",
    "overhead": "overhead",
}


def short_gpu_name(name: str) -> str:
    """``NVIDIA GeForce RTX 3090`` → ``RTX 3090``: the vendor and brand words every card repeats."""
    words = [w for w in name.split() if w.lower() not in ("nvidia", "geforce", "amd", "radeon", "intel")]
    return " ".join(words) or name


@dataclass(frozen=True)
class BarValues:
    """What one memory bar shows, in MiB. ``capacity_mib`` None: no limit known (host RAM)."""

    weights_mib: float = 0.0
    kv_mib: float = 0.0
    compute_mib: float = 0.0
    overhead_mib: float = 0.0
    capacity_mib: float | None = None

    @property
    def total_mib(self) -> float:
        return self.weights_mib + self.kv_mib + self.compute_mib + self.overhead_mib

    def segments(self) -> tuple[tuple[str, float], ...]:
        return (
            ("weights", self.weights_mib),
            ("kv", self.kv_mib),
            ("compute", self.compute_mib),
            ("overhead", self.overhead_mib),
        )


def describe_bar(v: BarValues) -> str:
    """The bar's figures as tooltip text: each part, the total, what is free (or too much)."""
    lines = [f"{SEGMENT_LABELS[k]}: {mib:,.0f} MiB" for k, mib in v.segments() if mib > 0]
    lines.append(f"Total: {v.total_mib:,.0f} MiB")
    if v.capacity_mib is not None:
        free = v.capacity_mib - v.total_mib
        lines.append(
            f"Capacity: {v.capacity_mib:,.0f} MiB ("
            + (f"{free:,.0f} MiB free" if free >= 0 else f"{-free:,.0f} MiB too much")
            + ")"
        )
    return "\n".join(lines)


class MemoryBar(QtWidgets.QWidget):
    """A stacked bar — weights, KV cache, compute, overhead — against the device's capacity.

    Painted by hand: a handful of rectangles, so a slider drag repaints it in microseconds. The bar's
    scale can be shared between bars (:meth:`set_scale_mib`) so a 12 GiB card looks half as long as a
    24 GiB one. Whatever goes past the capacity is drawn in the "does not fit" colour.
    """

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._values = BarValues()
        self._scale_mib: float | None = None
        self.show_text = True  # False when a label beside the bar says the numbers
        self.setObjectName("memoryBar")
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(160)
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_OpaquePaintEvent, False)

    def sizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(360, self.fontMetrics().height() + 10)

    def minimumSizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(160, self.fontMetrics().height() + 10)

    @property
    def values(self) -> BarValues:
        return self._values

    def set_values(self, values: BarValues) -> None:
        if values == self._values:
            return
        self._values = values
        self.setToolTip(self.describe())
        self.update()

    def set_scale_mib(self, scale_mib: float | None) -> None:
        if scale_mib != self._scale_mib:
            self._scale_mib = scale_mib
            self.update()

    def text(self) -> str:
        v = self._values
        if v.capacity_mib is None:
            return fmt_gib(v.total_mib)
        return f"{fmt_gib(v.total_mib)} of {fmt_gib(v.capacity_mib)}"

    def describe(self) -> str:
        return describe_bar(self._values)

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:
        pal = self.palette()
        v = self._values
        painter = QtGui.QPainter(self)
        painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
        rect = QtCore.QRectF(self.rect()).adjusted(0.5, 1.5, -0.5, -1.5)
        capacity = v.capacity_mib
        scale = max(self._scale_mib or 0.0, v.total_mib, capacity or 0.0, 1.0)
        width = rect.width()
        # The track is as long as the device's memory (a 12 GiB card's half the length of a 24 GiB
        # one on a shared scale); what does not fit runs past its end, hatched.
        cap_w = width * capacity / scale if capacity is not None else width
        track = QtGui.QPainterPath()
        track.addRoundedRect(QtCore.QRectF(rect.left(), rect.top(), cap_w, rect.height()), 3, 3)
        painter.fillPath(track, track_color(pal))
        outline = QtGui.QPainterPath()
        outline.addRoundedRect(rect, 3, 3)
        painter.save()
        painter.setClipPath(outline)
        x = rect.left()
        for kind, mib in v.segments():
            if mib <= 0:
                continue
            w = width * mib / scale
            painter.fillRect(QtCore.QRectF(x, rect.top(), w, rect.height()), segment_color(kind, pal))
            x += w
        cap_x = rect.left() + cap_w
        if capacity is not None and x > cap_x:
            over = QtCore.QRectF(cap_x, rect.top(), x - cap_x, rect.height())
            painter.fillRect(over, QtGui.QBrush(pal.color(QtGui.QPalette.ColorRole.Base)))
            brush = QtGui.QBrush(over_capacity_color(), QtCore.Qt.BrushStyle.BDiagPattern)
            painter.fillRect(over, brush)
        painter.restore()
        painter.setPen(QtGui.QPen(pal.color(QtGui.QPalette.ColorRole.Mid), 1))
        painter.setBrush(QtCore.Qt.BrushStyle.NoBrush)
        painter.drawPath(track)
        if capacity is not None and x > cap_x:
            painter.setPen(QtGui.QPen(over_capacity_color(), 2))
            painter.drawLine(QtCore.QPointF(cap_x, rect.top() - 1), QtCore.QPointF(cap_x, rect.bottom() + 1))
        if not self.show_text:
            painter.end()
            return
        # The text sits on a small plate of the base colour so it reads over any segment.
        text = self.text()
        fm = self.fontMetrics()
        tw = fm.horizontalAdvance(text) + 10
        plate = QtCore.QRectF(rect.right() - tw - 3, rect.top() + 2, tw, rect.height() - 4)
        base = QtGui.QColor(pal.color(QtGui.QPalette.ColorRole.Base))
        base.setAlpha(215)
        painter.setPen(QtCore.Qt.PenStyle.NoPen)
        painter.setBrush(base)
        painter.drawRoundedRect(plate, 2, 2)
        over_capacity = capacity is not None and v.total_mib > capacity
        painter.setPen(
            status_foreground(STATUS_NO, pal) if over_capacity else pal.color(QtGui.QPalette.ColorRole.Text)
        )
        painter.drawText(plate, QtCore.Qt.AlignmentFlag.AlignCenter, text)
        painter.end()


class Swatch(QtWidgets.QWidget):
    """A small square of one colour (legends); painted, so it is crisp on high-DPI screens."""

    def __init__(self, color: QtGui.QColor, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._color = color
        side = max(10, self.fontMetrics().height() - 4)
        self.setFixedSize(side, side)

    def set_color(self, color: QtGui.QColor) -> None:
        self._color = color
        self.update()

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:
        painter = QtGui.QPainter(self)
        painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
        painter.setPen(QtGui.QPen(self.palette().color(QtGui.QPalette.ColorRole.Mid), 1))
        painter.setBrush(self._color)
        painter.drawRoundedRect(QtCore.QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5), 2, 2)
        painter.end()


def legend(
    items: Sequence[tuple[QtGui.QColor, str, str]], parent: QtWidgets.QWidget | None = None
) -> QtWidgets.QWidget:
    """A row of swatches with labels; each item is (colour, label, tooltip)."""
    box = QtWidgets.QWidget(parent)
    row = QtWidgets.QHBoxLayout(box)
    row.setContentsMargins(0, 0, 0, 0)
    row.setSpacing(6)
    for color, label, tooltip in items:
        swatch = Swatch(color)
        text = QtWidgets.QLabel(label)
        swatch.setToolTip(tooltip)
        text.setToolTip(tooltip)
        row.addWidget(swatch)
        row.addWidget(text)
        row.addSpacing(8)
    row.addStretch(1)
    return box


def segment_legend(palette: QtGui.QPalette, parent: QtWidgets.QWidget | None = None) -> QtWidgets.QWidget:
    """Legend for :class:`MemoryBar`: weights, KV cache, compute, overhead."""
    return legend(
        [(segment_color(k, palette), SEGMENT_LABELS[k], tip(SEGMENT_TIPS[k])) for k in SEGMENT_LABELS],
        parent,
    )


def status_legend(palette: QtGui.QPalette, parent: QtWidgets.QWidget | None = None) -> QtWidgets.QWidget:
    """Legend for plan statuses: fits, tight, offload, does not fit."""
    return legend(
        [
            (status_background(s, palette), STATUS_WORDS[s], tip(f"status_{s}"))
            for s in (STATUS_FITS, STATUS_TIGHT, STATUS_OFFLOAD, STATUS_NO)
        ],
        parent,
    )


def rig_summary(rig: Rig | None) -> str:
    """One line about a rig: its name, where it comes from, its total VRAM."""
    if rig is None:
        return "no rig yet (detecting…)"
    where = "this computer" if rig.source == "detected" else "planned"
    name = rig.name or (", ".join(g.name for g in rig.gpus) if rig.gpus else "")
    if not rig.gpus:
        return f"{name or 'no GPU'} ({where}): runs on the CPU"
    return f"{name} ({where}) · {rig.n_gpus} GPU{'s' if rig.n_gpus != 1 else ''}, {fmt_gib(rig.vram_total_mib, 0)} VRAM"


class LinkHeader(QtWidgets.QLabel):
    """A one-line summary with a "change…" link (``link_activated`` carries the link's target)."""

    link_activated = QtCore.Signal(str)

    def __init__(self, prefix: str, target: str, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._prefix = prefix
        self._target = target
        self.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.setWordWrap(True)
        self.setTextInteractionFlags(
            QtCore.Qt.TextInteractionFlag.LinksAccessibleByMouse
            | QtCore.Qt.TextInteractionFlag.LinksAccessibleByKeyboard
        )
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.TabFocus)
        self.linkActivated.connect(self.link_activated.emit)
        self.set_summary("")

    def set_summary(self, text: str) -> None:
        self._summary = text
        self.setText(
            f"{html.escape(self._prefix)} <b>{html.escape(text)}</b> &nbsp;·&nbsp; "
            f'<a href="{self._target}">change…</a>'
        )

    @property
    def summary(self) -> str:
        return self._summary


__all__ = [
    "SEGMENT_LABELS",
    "BarValues",
    "LinkHeader",
    "MemoryBar",
    "Swatch",
    "describe_bar",
    "legend",
    "rig_summary",
    "segment_legend",
    "short_gpu_name",
    "status_legend",
]
