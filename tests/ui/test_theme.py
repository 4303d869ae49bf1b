"""One theme: views take every colour from app/ui/theme.py, the colours read on light and dark
palettes, and the formatters write numbers the same way everywhere."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from PySide6 import QtGui, QtWidgets

from app.core.plan import STATUSES
from app.ui import theme
from app.ui.state import AppState
from tests.ui.ui_guard import assert_quiet

UI = Path(__file__).resolve().parents[2] / "app" / "ui"
# A colour written into code: "#1a2b3c" (or #abc), QColor("name"), QColor(r, g, b), Qt.GlobalColor.
HARD_CODED = re.compile(
    r"""["']#[0-9a-fA-F]{3}(?:[0-9a-fA-F]{3})?(?:[0-9a-fA-F]{2})?["']|QColor\(\s*["']|QColor\(\s*\d|GlobalColor"""
)


def _palette(window: str, text: str, base: str) -> QtGui.QPalette:
    pal = QtGui.QPalette()
    for role, colour in (
        (QtGui.QPalette.ColorRole.Window, window),
        (QtGui.QPalette.ColorRole.WindowText, text),
        (QtGui.QPalette.ColorRole.Base, base),
        (QtGui.QPalette.ColorRole.Text, text),
        (QtGui.QPalette.ColorRole.AlternateBase, window),
    ):
        pal.setColor(role, QtGui.QColor(colour))
    return pal


LIGHT = ("#efefef", "#000000", "#ffffff")  # Fusion's light palette
DARK = ("#202124", "#e8eaed", "#17181a")
PALETTES = {"light": LIGHT, "dark": DARK, "dim grey": ("#5a5a5a", "#ffffff", "#4a4a4a")}


def test_no_view_hard_codes_a_colour() -> None:
    offenders = []
    for path in sorted(UI.rglob("*.py")):
        if path.name == "theme.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if HARD_CODED.search(line):
                offenders.append(f"{path.relative_to(UI)}:{n}: {line.strip()}")
    assert not offenders, "colours belong in app/ui/theme.py:\n" + "\n".join(offenders)


@pytest.mark.parametrize("name", sorted(PALETTES))
def test_every_text_role_and_status_reads_on_light_and_dark_palettes(
    qapp: QtWidgets.QApplication, name: str
) -> None:
    pal = _palette(*PALETTES[name])
    window = pal.color(QtGui.QPalette.ColorRole.Window)
    for role in (theme.TEXT_ERROR, theme.TEXT_WARNING, theme.TEXT_MUTED, theme.TEXT_NORMAL):
        ratio = theme.contrast_ratio(theme.text_color(role, pal), window)
        assert ratio >= theme.MIN_TEXT_CONTRAST, f"{role} text on the {name} window: {ratio:.2f}"
    for status in STATUSES:
        fg = theme.contrast_ratio(theme.status_foreground(status, pal), window)
        assert fg >= theme.MIN_TEXT_CONTRAST, f"{status} text on the {name} window: {fg:.2f}"
        # Cells and the Split banner put the palette's text on the status background.
        bg = theme.contrast_ratio(
            theme.status_background(status, pal), pal.color(QtGui.QPalette.ColorRole.Text)
        )
        assert bg >= theme.MIN_TEXT_CONTRAST, f"text on the {status} background ({name}): {bg:.2f}"
    # The statuses stay apart from each other, and the warning from the error.
    backgrounds = {theme.status_background(s, pal).name() for s in STATUSES}
    assert len(backgrounds) == len(STATUSES)
    assert theme.text_color(theme.TEXT_ERROR, pal) != theme.text_color(theme.TEXT_WARNING, pal)


def test_readable_pulls_a_faint_colour_towards_the_text_only_as_far_as_needed(
    qapp: QtWidgets.QApplication,
) -> None:
    pal = _palette(*LIGHT)
    window = pal.color(QtGui.QPalette.ColorRole.Window)
    faint = QtGui.QColor(theme.STATUS_HUES["tight"])  # amber on light grey: about 2:1
    assert theme.contrast_ratio(faint, window) < theme.MIN_TEXT_CONTRAST
    fixed = theme.readable(faint, pal)
    assert theme.contrast_ratio(fixed, window) >= theme.MIN_TEXT_CONTRAST
    assert fixed != pal.color(QtGui.QPalette.ColorRole.WindowText)  # still amber, not black
    strong = QtGui.QColor(theme.gpu_color_name(0)).darker(300)
    assert theme.readable(strong, pal).name() == strong.name()


def test_tint_normal_restores_the_inherited_colour(qtbot: QtBot) -> None:
    parent = QtWidgets.QWidget()
    qtbot.addWidget(parent)
    parent.setPalette(_palette(*DARK))
    label = QtWidgets.QLabel("x", parent)
    theme.tint(label, theme.TEXT_WARNING)
    warned = label.palette().color(QtGui.QPalette.ColorRole.WindowText)
    assert warned != parent.palette().color(QtGui.QPalette.ColorRole.WindowText)
    theme.tint(label, theme.TEXT_NORMAL)
    assert label.palette().color(QtGui.QPalette.ColorRole.WindowText) == QtGui.QColor("#e8eaed")


def test_formatters() -> None:
    assert theme.fmt_gib(22323.2) == "21.8 GiB" and theme.fmt_gib(24576, 0) == "24 GiB"
    assert theme.fmt_gib(None) == "?" and theme.fmt_gib_of(22323.2, 24576) == "21.8 / 24.0 GiB"
    assert theme.fmt_mib(1234.56) == "1,234.6 MiB" and theme.fmt_mib(92.1, unit=False) == "92.1"
    assert theme.fmt_mib(None) == "—"
    assert theme.fmt_size(98_000_000) == "93 MiB" and theme.fmt_size(2 * 2**30) == "2.0 GiB"
    assert theme.fmt_size(3.5 * 2**20) == "3.5 MiB"
    assert theme.fmt_tok_s(8.53) == "8.5 tok/s" and theme.fmt_tok_s(23.4) == "23 tok/s"
    assert theme.fmt_tok_s(1234.56, exact=True) == "1,234.6 tok/s" and theme.fmt_tok_s(None) == "—"
    assert theme.fmt_watts(349.6) == "350 W" and theme.fmt_watts(None) == "n/a"
    assert theme.fmt_celsius(48.2) == "48 °C" and theme.fmt_value(None, "%", missing="—") == "—"


@pytest.fixture
def dark_app(qapp: QtWidgets.QApplication) -> Iterator[QtGui.QPalette]:
    """The whole application on a dark palette, as on a dark desktop (restored afterwards)."""
    before = QtGui.QPalette(qapp.palette())
    dark = _palette(*DARK)
    qapp.setPalette(dark)
    yield dark
    qapp.setPalette(before)


def test_labels_the_views_colour_read_on_a_dark_desktop(qtbot: QtBot, dark_app: QtGui.QPalette) -> None:
    from app.ui.hardware.view import HardwareView
    from app.ui.run.view import RunView

    state = AppState()
    run = RunView(state, scan_on_show=False)
    qtbot.addWidget(run)
    hardware = HardwareView()
    qtbot.addWidget(hardware)
    window = dark_app.color(QtGui.QPalette.ColorRole.Window)
    labels = [
        run.problem.label,
        run.picker.model_error,
        run.picker.scan_label,
        run.load_panel.confirm_label,
        run.load_panel.hardware_label,
        run.memory.memory_note,
        hardware.status_label,
    ] + [card.pcie_label for card in hardware.cards]
    for label in labels:
        text = label.palette().color(QtGui.QPalette.ColorRole.WindowText)
        ratio = theme.contrast_ratio(text, window)
        assert ratio >= theme.MIN_TEXT_CONTRAST, f"{label.objectName() or label.text()[:30]}: {ratio:.2f}"
    run.shutdown()
    assert_quiet(run, hardware)
