"""One colour per GPU, the same in every view (Hardware cards, split sliders, Monitor plots, Run).

Colours are keyed by the GPU's index in the rig (NVML's index for a detected rig), so GPU 1 is the
same orange on the split slider and on the temperature plot. The palette is a mid-luminance set that
stays readable on light and dark window themes and keeps neighbouring indexes far apart in hue; it
repeats after ten GPUs (a 16-GPU rig shares colours between GPU n and n+10).
"""

from __future__ import annotations

from PySide6 import QtGui

GPU_COLORS: tuple[str, ...] = (
    "#4c9be8",  # blue
    "#f28e2b",  # orange
    "#3fb37f",  # green
    "#e15759",  # red
    "#a77bd8",  # purple
    "#2cb5c0",  # cyan
    "#d4a017",  # amber
    "#e377c2",  # pink
    "#8c9db0",  # slate
    "#b07c5a",  # brown
)


def gpu_color_name(index: int) -> str:
    """The ``#rrggbb`` colour of GPU ``index``."""
    return GPU_COLORS[index % len(GPU_COLORS)]


def gpu_color(index: int, alpha: int = 255) -> QtGui.QColor:
    """The colour of GPU ``index`` as a QColor (``alpha`` 0–255 for fills)."""
    color = QtGui.QColor(gpu_color_name(index))
    color.setAlpha(alpha)
    return color


def gpu_swatch_html(index: int) -> str:
    """A coloured square for rich-text labels: ``<span style=...>■</span>``."""
    return f'<span style="color:{gpu_color_name(index)}">■</span>'
