"""The Fit tab, offscreen: the model × quant table from app.core.fit, its filters, and picking a cell."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter
from pytestqt.qtbot import QtBot

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.errors import RigfitError
from app.core.fit import fit_table
from app.core.model_source import load_gguf_spec
from app.core.plan import STATUS_FITS, STATUS_NO, STATUS_OFFLOAD, STATUS_TIGHT
from app.core.settings import Settings
from app.hardware.catalog import parse_rig_expression
from app.ui.fit.filters import FAMILY_LOCAL
from app.ui.fit.table import COL_BEST, COL_MODEL, QUANT_ROLE, STATUS_ROLE, FitResult
from app.ui.fit.view import FitView
from app.ui.state import AppState
from app.ui.tasks import TaskRunner
from app.ui.theme import STATUS_WORDS
from tests.ui.ui_guard import assert_quiet

WAIT_MS = 60000  # the first table of a test run warms the whole catalog up (about 2-3 s here)


@pytest.fixture
def state() -> AppState:
    s = AppState()
    s.set_rig(parse_rig_expression("2x RTX 3090"))
    return s


@pytest.fixture
def view(qtbot: QtBot, state: AppState) -> Iterator[FitView]:
    tasks = TaskRunner()
    widget = FitView(state, tasks)
    qtbot.addWidget(widget)
    widget.resize(1400, 800)
    widget.activate()
    qtbot.waitUntil(lambda: widget.result is not None and not widget.busy, timeout=WAIT_MS)
    yield widget
    widget.shutdown()
    tasks.wait()
    assert_quiet(widget, tasks)


def _cell(view: FitView, model: str, quant: str) -> QtCore.QModelIndex:
    index = view.select_cell(model, quant)
    assert index.isValid(), (model, quant)
    return index


def test_one_row_per_catalog_model_with_a_column_per_quant(view: FitView, state: AppState) -> None:
    table = fit_table(state.rig, 8192, Settings())
    models = list(dict.fromkeys(r.model for r in table.rows))
    assert [r.key for r in view.model.model_rows] == models
    assert set(view.model.quants) == {r.quant for r in table.rows}
    assert view.model.rowCount() == len(models)
    # One model, one value per cell: the table agrees with app.core.fit cell for cell.
    row = table.row("llama-3.3-70b", "Q4_K_M")
    index = _cell(view, "llama-3.3-70b", "Q4_K_M")
    assert index.data(STATUS_ROLE) == row.status
    assert f"{row.total_gib:.1f} GiB" in index.data()
    assert f"{row.decode_tok_s:.0f} tok/s" in index.data()


def test_cells_are_coloured_by_status_and_the_best_quant_is_starred(view: FitView, state: AppState) -> None:
    table = fit_table(state.rig, 8192, Settings())
    best = table.best()["llama-3.3-70b"]
    starred = _cell(view, "llama-3.3-70b", best)
    assert starred.data().startswith("★")
    assert starred.data(QtCore.Qt.ItemDataRole.FontRole).bold()
    other = _cell(view, "llama-3.3-70b", "Q8_0")
    assert not other.data().startswith("★")
    fits = _cell(view, "llama-3.1-8b", "Q4_K_M")
    no = _cell(view, "llama-3.1-405b", "Q4_K_M")
    assert fits.data(STATUS_ROLE) == STATUS_FITS and no.data(STATUS_ROLE) == STATUS_NO
    colour = QtCore.Qt.ItemDataRole.BackgroundRole
    assert fits.data(colour).color() != no.data(colour).color()
    assert no.data().split("\n")[1] == "does not fit"
    best_col = view.proxy.index(starred.row(), COL_BEST)
    assert best_col.data().startswith(best)


def test_tooltip_gives_the_largest_context_and_speed(view: FitView, state: AppState) -> None:
    row = fit_table(state.rig, 8192, Settings()).row("llama-3.1-8b", "Q4_K_M")
    tooltip = _cell(view, "llama-3.1-8b", "Q4_K_M").data(QtCore.Qt.ItemDataRole.ToolTipRole)
    assert f"{row.max_ctx:,}" in tooltip
    assert "tok/s" in tooltip and "Double-click" in tooltip


def test_search_and_filters_narrow_the_rows(view: FitView) -> None:
    def shown() -> list[str]:
        return [
            view.proxy.index(r, COL_MODEL).data(QtCore.Qt.ItemDataRole.DisplayRole)
            for r in range(view.proxy.rowCount())
        ]

    total = view.proxy.rowCount()
    view.filters.search.setText("qwen3")
    assert shown() and all("qwen3" in name.lower() for name in shown())
    view.filters.search.clear()
    assert view.proxy.rowCount() == total

    view.filters.status_filter.setCurrentIndex(view.filters.status_filter.findData("fits"))
    names = shown()
    assert "Llama 3.1 405B Instruct" not in names and names
    for r in range(view.proxy.rowCount()):
        row = view.model.row_at(view.proxy.mapToSource(view.proxy.index(r, 0)).row())
        assert any(c.status in (STATUS_FITS, STATUS_TIGHT) for c in row.cells.values())
    view.filters.status_filter.setCurrentIndex(0)

    view.filters.size_filter.setCurrentIndex(view.filters.size_filter.findData("small"))
    assert shown() and all(view.model.row_at(i).params_b is not None for i in range(view.model.rowCount()))
    for r in range(view.proxy.rowCount()):
        row = view.model.row_at(view.proxy.mapToSource(view.proxy.index(r, 0)).row())
        assert row.params_b is not None and row.params_b < 4.5
    view.filters.size_filter.setCurrentIndex(0)

    view.filters.family_filter.setCurrentIndex(view.filters.family_filter.findData("Gemma"))
    assert shown() and all(name.lower().startswith("gemma") for name in shown())


def test_double_click_picks_model_and_quant(view: FitView, qtbot: QtBot) -> None:
    view.show()
    index = _cell(view, "qwen3-14b", "Q5_K_M")
    view.table.scrollTo(index)
    rect = view.table.visualRect(index)
    with qtbot.waitSignal(view.model_chosen, timeout=2000) as blocker:
        # Qt's item views take a double click only on the index the first press hit.
        qtbot.mouseClick(view.table.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=rect.center())
        qtbot.mouseDClick(view.table.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=rect.center())
    assert blocker.args == ["qwen3-14b", "Q5_K_M"]
    # The model's name and its best-fit column pick the best quant.
    with qtbot.waitSignal(view.model_chosen, timeout=2000) as blocker:
        view.choose(view.proxy.index(index.row(), COL_MODEL))
    assert blocker.args[1] == index.siblingAtColumn(COL_BEST).data(QUANT_ROLE)


def test_enter_on_a_cell_picks_it(view: FitView, qtbot: QtBot) -> None:
    view.show()
    view.table.setCurrentIndex(_cell(view, "phi-4", "Q8_0"))
    with qtbot.waitSignal(view.model_chosen, timeout=2000) as blocker:
        qtbot.keyClick(view.table, QtCore.Qt.Key.Key_Return)
    assert blocker.args == ["phi-4", "Q8_0"]


def test_rig_changes_recompute_and_stale_tables_are_dropped(
    view: FitView, state: AppState, qtbot: QtBot
) -> None:
    seen: list[FitResult] = []
    view.table_ready.connect(seen.append)
    one = parse_rig_expression("RTX 3060")
    four = parse_rig_expression("4x RTX 4090")
    state.set_rig(one)
    state.set_rig(four)  # before the first answer can arrive: it is stale now
    qtbot.waitUntil(lambda: bool(seen) and not view.busy, timeout=WAIT_MS)
    qtbot.wait(50)
    assert [r.rig for r in seen] == [four]
    assert view.result is not None and view.result.rig == four
    assert view.rig_header.summary.startswith("4x RTX 4090")


def test_context_choice_recomputes_at_that_context(view: FitView, state: AppState, qtbot: QtBot) -> None:
    view.ctx_combo.setCurrentIndex(view.ctx_combo.findData(32768))
    view.ctx_combo.activated.emit(view.ctx_combo.currentIndex())
    assert state.settings.ctx == 32768
    qtbot.waitUntil(
        lambda: view.result is not None and view.result.ctx == 32768 and not view.busy, timeout=WAIT_MS
    )
    expected = fit_table(state.rig, 32768, Settings()).row("llama-3.3-70b", "Q4_K_M")
    assert _cell(view, "llama-3.3-70b", "Q4_K_M").data(STATUS_ROLE) == expected.status
    # A context typed on the Split tab shows up in the combo too.
    state.update_settings(ctx=12000)
    assert view.ctx_combo.currentData() == 12000


def test_split_sliders_do_not_recompute_the_table(view: FitView, state: AppState) -> None:
    state.update_settings(tensor_split=(0.7, 0.3), n_gpu_layers=10)
    assert not view.busy


def test_local_gguf_files_become_rows(view: FitView, qtbot: QtBot, demo_model_path: str) -> None:
    view.add_local_models([demo_model_path])  # a path: its header is read on the pool
    qtbot.waitUntil(lambda: not view.busy and any(r.local for r in view.model.model_rows), timeout=WAIT_MS)
    local = [r for r in view.model.model_rows if r.local]
    assert [r.ref for r in local] == [demo_model_path]
    spec = load_gguf_spec(demo_model_path)
    assert list(local[0].cells) == [spec.file_type]
    assert view.filters.family_filter.findData(FAMILY_LOCAL) >= 0
    view.filters.family_filter.setCurrentIndex(view.filters.family_filter.findData(FAMILY_LOCAL))
    assert view.proxy.rowCount() == 1
    # The same file again (as a spec) adds nothing.
    view.add_local_models([replace(spec)])
    assert not view.busy
    assert sum(r.local for r in view.model.model_rows) == 1


def _nan_layers_gguf(path: Path) -> Path:
    """The issue's case: a GGUF in the Hugging Face cache whose ``llama.block_count`` is an f32 NaN."""
    w = GGUFWriter(str(path), "llama")
    w.add_float32("llama.block_count", float("nan"))
    w.add_uint32("llama.embedding_length", 64)
    w.add_uint32("llama.attention.head_count", 4)
    w.add_tensor("token_embd.weight", np.zeros((32, 64), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_a_bad_file_is_one_row_marked_unreadable_never_the_whole_table(
    view: FitView, qtbot: QtBot, tmp_path: Path
) -> None:
    catalog_rows = [r.key for r in view.model.model_rows]
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf at all")
    nan = _nan_layers_gguf(tmp_path / "nan-layers.gguf")
    view.add_local_models([str(broken), str(nan)])
    qtbot.waitUntil(lambda: not view.busy and len(view.model.model_rows) > len(catalog_rows), timeout=WAIT_MS)
    assert not view.error_text and "No fit table" not in view.status_label.text()
    rows = view.model.model_rows
    assert [r.key for r in rows[: len(catalog_rows)]] == catalog_rows  # every catalog row still there
    bad = {r.key: r for r in rows if r.unreadable}
    assert set(bad) == {str(broken), str(nan)}
    assert "'llama.block_count' should be a whole number, not nan" in bad[str(nan)].unreadable
    # The row says "unreadable" where the best quant goes, the reason in its tooltips, nothing to pick.
    row = view.model.row_of(str(nan))
    best = view.model.index(row, COL_BEST)
    assert best.data() == "unreadable" and best.data(STATUS_ROLE) == "unreadable"
    assert "not nan" in view.model.index(row, COL_MODEL).data(QtCore.Qt.ItemDataRole.ToolTipRole)
    assert "not nan" in best.data(QtCore.Qt.ItemDataRole.ToolTipRole)
    assert not view.choose(view.proxy.mapFromSource(best))
    assert "2 unreadable" in view.status_label.text()
    # Shown under "Any status" and among local files; not an answer to "what fits".
    view.filters.family_filter.setCurrentIndex(view.filters.family_filter.findData(FAMILY_LOCAL))
    assert view.proxy.rowCount() == 2
    view.filters.status_filter.setCurrentIndex(view.filters.status_filter.findData("fits"))
    assert view.proxy.rowCount() == 0
    # A change of rig recomputes the table; the bad files stay rows, read once.
    view.state.set_rig(parse_rig_expression("RTX 4090"))
    qtbot.waitUntil(
        lambda: not view.busy and view.result is not None and view.result.rig.n_gpus == 1, timeout=WAIT_MS
    )
    assert {r.key for r in view.model.model_rows if r.unreadable} == {str(broken), str(nan)}


def test_dark_palette_gives_dark_cells(view: FitView) -> None:
    index = _cell(view, "llama-3.1-8b", "Q4_K_M")
    light = index.data(QtCore.Qt.ItemDataRole.BackgroundRole).color()
    dark = QtGui.QPalette()
    for role, colour in (
        (QtGui.QPalette.ColorRole.Window, "#202124"),
        (QtGui.QPalette.ColorRole.Base, "#17181a"),
        (QtGui.QPalette.ColorRole.Text, "#e8eaed"),
        (QtGui.QPalette.ColorRole.WindowText, "#e8eaed"),
    ):
        dark.setColor(role, QtGui.QColor(colour))
    view.setPalette(dark)
    shaded = index.data(QtCore.Qt.ItemDataRole.BackgroundRole).color()
    assert shaded != light
    assert shaded.lightness() < 110 < light.lightness()
    assert index.data(QtCore.Qt.ItemDataRole.ForegroundRole).color().lightness() > 200


def test_the_model_column_stays_while_the_quants_scroll_sideways(view: FitView, qtbot: QtBot) -> None:
    view.resize(900, 600)
    view.show()
    qtbot.waitExposed(view)
    table = view.table
    bar = table.horizontalScrollBar()
    assert bar.maximum() > 0  # more quant columns than fit in 900 px
    bar.setValue(bar.maximum())
    frozen = table.frozen
    assert frozen.isVisible() and frozen.geometry().left() <= table.verticalHeader().width() + 2
    assert frozen.width() == table.columnWidth(COL_MODEL)
    # What sits at the left edge is still the model's name, row for row.
    for row in (0, 3):
        rect = frozen.visualRect(frozen.model().index(row, COL_MODEL))
        under = frozen.indexAt(rect.center())
        assert under.column() == COL_MODEL and under.row() == row
        assert under.data() == view.proxy.index(row, COL_MODEL).data()
    # The main view scrolled: its first visible column is no longer the model's.
    assert table.columnAt(table.columnWidth(COL_MODEL) + 5) > COL_BEST
    # Scrolling down moves both views together.
    table.verticalScrollBar().setValue(table.verticalScrollBar().maximum())
    assert frozen.verticalScrollBar().value() == table.verticalScrollBar().value()
    # Sorting by the frozen header sorts the table.
    frozen.horizontalHeader().sectionClicked.emit(COL_MODEL)
    qtbot.mouseClick(
        frozen.horizontalHeader().viewport(),
        QtCore.Qt.MouseButton.LeftButton,
        pos=QtCore.QPoint(10, frozen.horizontalHeader().height() // 2),
    )
    names = [view.proxy.index(r, COL_MODEL).data() for r in range(view.proxy.rowCount())]
    assert names in (sorted(names, key=str.lower), sorted(names, key=str.lower, reverse=True))
    assert table.horizontalHeader().sortIndicatorSection() == COL_MODEL


def test_empty_cells_and_the_status_tooltip_explain_themselves(view: FitView) -> None:
    row = view.model.row_of("llama-3.1-8b")
    missing = next(q for q in view.model.quants if q not in view.model.row_at(row).cells)
    empty = view.select_cell("llama-3.1-8b", missing)
    assert empty.data() == ""
    tooltip = empty.data(QtCore.Qt.ItemDataRole.ToolTipRole)
    assert "not published" in tooltip and missing in tooltip
    assert "Empty" in " ".join(w.text() for w in view.empty_legend.findChildren(QtWidgets.QLabel))
    # The status line of a cell's tooltip says the status once ("Fits: every layer..."), not twice.
    tip_text = _cell(view, "llama-3.1-8b", "Q4_K_M").data(QtCore.Qt.ItemDataRole.ToolTipRole)
    assert "Fits: every layer" in tip_text and "Fits: Fits" not in tip_text
    for status in ("fits", "tight", "offload", "no"):
        assert f"{STATUS_WORDS[status]}: {STATUS_WORDS[status]}" not in tip_text


def test_offload_cells_are_labelled_and_coloured_apart_from_does_not_fit(view: FitView) -> None:
    offload = _cell(view, "llama-3.3-70b", "Q8_0")
    no = _cell(view, "llama-3.1-405b", "Q4_K_M")
    assert offload.data(STATUS_ROLE) == STATUS_OFFLOAD and no.data(STATUS_ROLE) == STATUS_NO
    assert offload.data().split("\n")[1].startswith("offload ") and "tok/s" in offload.data()
    assert no.data().split("\n")[1] == "does not fit"
    colour = QtCore.Qt.ItemDataRole.BackgroundRole
    for palette in (view.palette(), _dark_palette()):
        view.setPalette(palette)
        a, b = offload.data(colour).color(), no.data(colour).color()
        assert _delta_e(a, b) > 20, (a.name(), b.name())
    # The Best fit column of a model that only offloads says so too.
    best = view.proxy.index(_cell(view, "llama-3.1-405b", "Q4_K_M").row(), COL_BEST)
    assert "offload" in best.data() and best.data(STATUS_ROLE) == STATUS_OFFLOAD


def test_every_cell_text_fits_its_column_even_in_bold(view: FitView) -> None:
    # A best (starred, bold) offload cell was cut to "offload 1.0 t…" at the default width.
    model = view.proxy
    cut = []
    for r in range(model.rowCount()):
        for c in range(COL_BEST, model.columnCount()):
            index = model.index(r, c)
            text = index.data() or ""
            font = index.data(QtCore.Qt.ItemDataRole.FontRole) or view.table.font()
            fm = QtGui.QFontMetrics(font)
            if any(fm.horizontalAdvance(line) + 8 > view.table.columnWidth(c) for line in text.split("\n")):
                cut.append(text)
    assert not cut, cut[:5]


def test_best_fit_preference_changes_the_pick_and_the_tooltip_says_why(view: FitView, qtbot: QtBot) -> None:
    assert view.prefer == "balanced" and view.prefer_combo.currentData() == "balanced"

    def best() -> QtCore.QModelIndex:  # fetched again: a recompute invalidates the proxy's indexes
        return view.proxy.index(_cell(view, "llama-3.1-8b", "Q8_0").row(), COL_BEST)

    assert best().data(QUANT_ROLE) == "Q8_0"
    tooltip = _cell(view, "llama-3.1-8b", "Q8_0").data(QtCore.Qt.ItemDataRole.ToolTipRole)
    assert "★ Q8_0: 1.7× the speed of F16" in tooltip and "same quality" in tooltip
    view.prefer_combo.setCurrentIndex(view.prefer_combo.findData("quality"))
    view.prefer_combo.activated.emit(view.prefer_combo.currentIndex())
    qtbot.waitUntil(lambda: view.result is not None and view.result.prefer == "quality" and not view.busy)
    assert best().data(QUANT_ROLE) == "F16" and _cell(view, "llama-3.1-8b", "F16").data().startswith("★")
    assert "Quality" in view.model.headerData(
        COL_BEST, QtCore.Qt.Orientation.Horizontal, QtCore.Qt.ItemDataRole.ToolTipRole
    )
    view.set_prefer("speed")
    qtbot.waitUntil(lambda: view.result is not None and view.result.prefer == "speed" and not view.busy)
    picked = best().data(QUANT_ROLE)
    assert picked not in ("F16", "Q8_0") and view.prefer_combo.currentData() == "speed"
    with pytest.raises(RigfitError):
        view.set_prefer("fast")


def test_the_legend_follows_a_palette_change(view: FitView) -> None:
    from app.ui.theme import status_background
    from app.ui.widgets import Swatch

    dark = _dark_palette()
    view.setPalette(dark)
    swatches = view.legend.findChildren(Swatch)
    assert swatches[0]._color == status_background(STATUS_FITS, view.palette())


def _dark_palette() -> QtGui.QPalette:
    dark = QtGui.QPalette()
    for role, colour in (
        (QtGui.QPalette.ColorRole.Window, "#202124"),
        (QtGui.QPalette.ColorRole.Base, "#17181a"),
        (QtGui.QPalette.ColorRole.Text, "#e8eaed"),
        (QtGui.QPalette.ColorRole.WindowText, "#e8eaed"),
    ):
        dark.setColor(role, QtGui.QColor(colour))
    return dark


def _delta_e(a: QtGui.QColor, b: QtGui.QColor) -> float:
    """CIE76 colour difference (above about 10, two colours read as different at a glance)."""

    def lab(c: QtGui.QColor) -> tuple[float, float, float]:
        def linear(v: int) -> float:
            x = v / 255
            return x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4

        r, g, bl = linear(c.red()), linear(c.green()), linear(c.blue())
        x = (0.4124 * r + 0.3576 * g + 0.1805 * bl) / 0.95047
        y = 0.2126 * r + 0.7152 * g + 0.0722 * bl
        z = (0.0193 * r + 0.1192 * g + 0.9505 * bl) / 1.08883

        def f(t: float) -> float:
            return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

        return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))

    return sum((p - q) ** 2 for p, q in zip(lab(a), lab(b), strict=True)) ** 0.5
