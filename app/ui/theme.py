"""Colours and number formats, in one place: every view asks here, none hard-codes a colour.

Palette roles, each a function of the widget's :class:`QPalette` so a light and a dark desktop theme
both read well:

* GPU colours (:func:`gpu_color`): one per GPU index, the same in every view (Hardware, Split bars,
  Monitor plots, Run's memory table). A mid-luminance set that stays readable on light and dark
  backgrounds and keeps neighbouring indexes far apart in hue; it repeats after ten GPUs.
* Plan statuses (fits, tight, offload, does not fit): :func:`status_background` for cell and banner
  backgrounds (the hue mixed into the palette's base colour), :func:`status_foreground` for text.
* Memory-bar segments (weights, KV cache, compute, overhead): :func:`segment_color`;
  :func:`over_capacity_color` for what runs past a device's memory.
* Text roles (:data:`TEXT_ERROR`, :data:`TEXT_WARNING`, :data:`TEXT_MUTED`): :func:`text_color`, and
  :func:`tint` to colour a label. Coloured text is pulled towards the palette's text colour until it
  has a contrast ratio of at least 4.5 against the window (WCAG AA), so no theme makes it unreadable.

Formatters (``fmt_*``) write memory, speeds, power and temperature the same way everywhere; each
takes ``None`` for "not known" and says so.
"""

from __future__ import annotations

from PySide6 import QtGui, QtWidgets

from app.core.plan import STATUS_FITS, STATUS_NO, STATUS_OFFLOAD, STATUS_TIGHT

# ------------------------------------------------------------------------------------------ GPU colours
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


# ------------------------------------------------------------------------------------------ blending
def is_dark(palette: QtGui.QPalette) -> bool:
    """True for a dark theme (the window colour is darker than mid-grey)."""
    return palette.color(QtGui.QPalette.ColorRole.Window).lightness() < 128


def blend(a: QtGui.QColor, b: QtGui.QColor, t: float) -> QtGui.QColor:
    """``a`` moved a fraction ``t`` towards ``b``."""
    return QtGui.QColor(
        round(a.red() + (b.red() - a.red()) * t),
        round(a.green() + (b.green() - a.green()) * t),
        round(a.blue() + (b.blue() - a.blue()) * t),
    )


def _luminance(color: QtGui.QColor) -> float:
    def channel(value: int) -> float:
        v = value / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(color.red()) + 0.7152 * channel(color.green()) + 0.0722 * channel(color.blue())


def contrast_ratio(a: QtGui.QColor, b: QtGui.QColor) -> float:
    """WCAG contrast ratio of two colours, 1 (same) to 21 (black on white)."""
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


MIN_TEXT_CONTRAST = 4.5  # WCAG AA for normal text


def readable(
    color: QtGui.QColor, palette: QtGui.QPalette, min_ratio: float = MIN_TEXT_CONTRAST
) -> QtGui.QColor:
    """``color``, pulled towards the palette's text colour just enough to read on its window colour."""
    window = palette.color(QtGui.QPalette.ColorRole.Window)
    text = palette.color(QtGui.QPalette.ColorRole.WindowText)
    for step in range(11):
        candidate = blend(color, text, step / 10)
        if contrast_ratio(candidate, window) >= min_ratio:
            return candidate
    return text


# ------------------------------------------------------------------------------------------ statuses
# Hues for the plan statuses; blended with the palette's base colour for backgrounds.
STATUS_HUES: dict[str, str] = {
    STATUS_FITS: "#2e9d57",
    STATUS_TIGHT: "#d6a300",
    STATUS_OFFLOAD: "#e0701a",
    STATUS_NO: "#d0393e",
}
_UNKNOWN_HUE = "#888888"
STATUS_WORDS: dict[str, str] = {
    STATUS_FITS: "Fits",
    STATUS_TIGHT: "Tight",
    STATUS_OFFLOAD: "Offload",
    STATUS_NO: "Does not fit",
}


def status_background(status: str, palette: QtGui.QPalette) -> QtGui.QColor:
    """A cell background for a plan status: its hue mixed into the palette's base colour."""
    base = palette.color(QtGui.QPalette.ColorRole.Base)
    hue = QtGui.QColor(STATUS_HUES.get(status, _UNKNOWN_HUE))
    return blend(base, hue, 0.42 if is_dark(palette) else 0.30)


def status_foreground(status: str, palette: QtGui.QPalette) -> QtGui.QColor:
    """Text in a status colour that stays readable on the window background."""
    hue = QtGui.QColor(STATUS_HUES.get(status, _UNKNOWN_HUE))
    text = palette.color(QtGui.QPalette.ColorRole.WindowText)
    return readable(blend(hue, text, 0.15 if is_dark(palette) else 0.35), palette)


# ------------------------------------------------------------------------------------------ memory bars
# Segment hues of the memory bar: one per kind of buffer, distinct from each other in both themes.
SEGMENT_HUES: dict[str, str] = {
    "weights": "#4f86d9",
    "kv": "#e39b2d",
    "compute": "#4caf7a",
    "overhead": "",  # empty: a muted mix of the palette's text and base colours
}


def segment_color(kind: str, palette: QtGui.QPalette) -> QtGui.QColor:
    """The fill of one memory-bar segment (``weights``, ``kv``, ``compute``, ``overhead``)."""
    hue = SEGMENT_HUES.get(kind, "")
    if not hue:
        return blend(
            palette.color(QtGui.QPalette.ColorRole.Text), palette.color(QtGui.QPalette.ColorRole.Base), 0.5
        )
    return QtGui.QColor(hue)


def over_capacity_color() -> QtGui.QColor:
    """The hatching and the edge line where a bar runs past the device's memory."""
    return QtGui.QColor(STATUS_HUES[STATUS_NO])


def track_color(palette: QtGui.QPalette) -> QtGui.QColor:
    """The empty part of a memory bar: the base colour, a shade towards the text."""
    return blend(
        palette.color(QtGui.QPalette.ColorRole.Base), palette.color(QtGui.QPalette.ColorRole.Text), 0.06
    )


# ------------------------------------------------------------------------------------------ text roles
TEXT_NORMAL = "normal"
TEXT_MUTED = "muted"  # secondary text: hints, notes, where a value comes from
TEXT_WARNING = "warning"  # the user should look: a plan that does not fit, a slot holding a card back
TEXT_ERROR = "error"  # something failed: a load, a file that cannot be read
_ROLE_HUES: dict[str, tuple[str, str]] = {  # (light theme, dark theme)
    TEXT_WARNING: ("#a15c00", "#f2b84b"),
    TEXT_ERROR: ("#b42318", "#ff7b72"),
}


def muted_text(palette: QtGui.QPalette) -> QtGui.QColor:
    """Secondary text: the text colour pulled 40% towards the window colour (less where that would
    not read)."""
    faded = blend(
        palette.color(QtGui.QPalette.ColorRole.WindowText),
        palette.color(QtGui.QPalette.ColorRole.Window),
        0.4,
    )
    return readable(faded, palette)


def text_color(role: str, palette: QtGui.QPalette) -> QtGui.QColor:
    """The colour of a text role (``TEXT_*``) on this palette's window colour."""
    if role == TEXT_MUTED:
        return muted_text(palette)
    hues = _ROLE_HUES.get(role)
    if hues is None:
        return palette.color(QtGui.QPalette.ColorRole.WindowText)
    return readable(QtGui.QColor(hues[1] if is_dark(palette) else hues[0]), palette)


def tint(label: QtWidgets.QWidget, role: str) -> None:
    """Colour a label's text with a role (``TEXT_NORMAL`` puts the inherited colour back)."""
    # The colour is worked out from the palette the label inherits, not its own: its own may hold the
    # last tint, which TEXT_NORMAL must undo.
    parent = label.parentWidget()
    inherited = parent.palette() if parent is not None else QtWidgets.QApplication.palette(label)
    pal = label.palette()
    pal.setColor(QtGui.QPalette.ColorRole.WindowText, text_color(role, inherited))
    label.setPalette(pal)


def badge_style_sheet(object_name: str, palette: QtGui.QPalette) -> str:
    """A rounded badge in the palette's selection colours, for the QLabel called ``object_name``."""
    background = palette.color(QtGui.QPalette.ColorRole.Highlight).name()
    text = palette.color(QtGui.QPalette.ColorRole.HighlightedText).name()
    return (
        f"QLabel#{object_name} {{ background: {background}; color: {text}; "
        "border-radius: 6px; padding: 1px 6px; }"
    )


# ------------------------------------------------------------------------------------------ formatters
def fmt_value(value: float | None, unit: str = "", digits: int = 0, missing: str = "n/a") -> str:
    """``value`` with ``digits`` decimals and ``unit`` appended as given (``" W"``, ``"%"``)."""
    if value is None:
        return missing
    return f"{value:.{digits}f}{unit}"


def fmt_gib(mib: float | None, digits: int = 1) -> str:
    """MiB as ``"21.8 GiB"`` ("?" when not known)."""
    if mib is None:
        return "?"
    return f"{mib / 1024:.{digits}f} GiB"


def fmt_gib_of(used_mib: float, total_mib: float | None) -> str:
    """Used of total, one unit for both: ``"21.8 / 24.0 GiB"``."""
    return f"{used_mib / 1024:.1f} / {fmt_gib(total_mib)}"


def fmt_mib(mib: float | None, *, unit: bool = True) -> str:
    """``"1,234.5 MiB"``, or ``"1,234.5"`` in a column headed MiB ("—" when not known)."""
    if mib is None:
        return "—"
    return f"{mib:,.1f} MiB" if unit else f"{mib:,.1f}"


def fmt_size(n_bytes: float) -> str:
    """A file size the way memory is shown: ``1.9 GiB``, ``92 MiB``, ``3.5 MiB``."""
    mib = float(n_bytes) / 2**20
    if mib >= 1024:
        return f"{mib / 1024:.1f} GiB"
    return f"{mib:.0f} MiB" if mib >= 10 else f"{mib:.1f} MiB"


def fmt_tok_s(value: float | None, *, exact: bool = False) -> str:
    """A speed: ``"23 tok/s"`` (``"8.5 tok/s"`` under 10), or with ``exact`` one decimal always
    (measured figures); "—" when not known."""
    if value is None:
        return "—"
    if exact:
        return f"{value:,.1f} tok/s"
    return f"{value:.0f} tok/s" if value >= 10 else f"{value:.1f} tok/s"


def fmt_watts(watts: float | None) -> str:
    """``"350 W"`` ("n/a" when not reported)."""
    return fmt_value(watts, " W")


def fmt_celsius(celsius: float | None) -> str:
    """``"48 °C"`` ("n/a" when not reported)."""
    return fmt_value(celsius, " °C")


__all__ = [
    "GPU_COLORS",
    "MIN_TEXT_CONTRAST",
    "SEGMENT_HUES",
    "STATUS_HUES",
    "STATUS_WORDS",
    "TEXT_ERROR",
    "TEXT_MUTED",
    "TEXT_NORMAL",
    "TEXT_WARNING",
    "badge_style_sheet",
    "blend",
    "contrast_ratio",
    "fmt_celsius",
    "fmt_gib",
    "fmt_gib_of",
    "fmt_mib",
    "fmt_size",
    "fmt_tok_s",
    "fmt_value",
    "fmt_watts",
    "gpu_color",
    "gpu_color_name",
    "gpu_swatch_html",
    "is_dark",
    "muted_text",
    "over_capacity_color",
    "readable",
    "segment_color",
    "status_background",
    "status_foreground",
    "text_color",
    "tint",
    "track_color",
]
