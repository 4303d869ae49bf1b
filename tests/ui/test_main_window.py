"""The whole window, offscreen: tabs, the shared state between them, shortcuts, and what it remembers."""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from PySide6 import QtCore, QtGui

from app.core.rig import Rig
from app.hardware.catalog import parse_rig_expression
from app.hardware.nvml import load_fake
from app.hardware.probe import detect_rig
from app.ui.app import run_gui
from app.ui.hardware.view import MODE_DETECTED, MODE_PLANNED
from app.ui.main_window import TAB_NAMES, MainWindow
from app.ui.settings_store import SettingsStore
from app.ui.state import ModelChoice
from tests.ui.ui_guard import assert_quiet

pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints\(\)")
WAIT_MS = 60000


def _detector(scenario: str, sysfs: Path) -> Callable[[], Rig]:
    return lambda: detect_rig(backend=load_fake(scenario), sysfs_root=sysfs)


@pytest.fixture
def make_window(qtbot: QtBot, tmp_path: Path) -> Iterator[Callable[..., MainWindow]]:
    """Windows on a temporary settings file, detecting a fake two-RTX-3090 NVLink rig by default."""
    made: list[MainWindow] = []

    def make(scenario: str = "2x3090-nvlink", ini: Path | None = None, **kwargs: object) -> MainWindow:
        store = SettingsStore.at(ini or tmp_path / "rigfit.ini")
        kwargs.setdefault("detect", _detector(scenario, tmp_path))
        kwargs.setdefault("discover", None)
        window = MainWindow(store=store, **kwargs)  # type: ignore[arg-type]
        qtbot.addWidget(window)
        made.append(window)
        return window

    yield make
    for window in made:
        window.close()
        window.wait_for_tasks()
        assert_quiet(window)


def _settle(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: not window.busy, timeout=WAIT_MS)


def _detected(qtbot: QtBot, window: MainWindow) -> None:
    with qtbot.waitSignal(window.detection_finished, timeout=WAIT_MS):
        window.start_detection()
    _settle(qtbot, window)


def _choose(qtbot: QtBot, window: MainWindow, ref: str, quant: str | None) -> ModelChoice:
    window.load_model(ref, quant)
    qtbot.waitUntil(lambda: window.state.model is not None and window.state.model.ref == ref, timeout=WAIT_MS)
    model = window.state.model
    assert model is not None
    return model


def test_tabs_in_task_order_with_heavy_ones_built_on_first_use(
    make_window: Callable[..., MainWindow],
) -> None:
    window = make_window()
    titles = [window.tabs.tabText(i) for i in range(window.tabs.count())]
    assert titles == ["Hardware", "Fit", "Split", "Run", "Monitor"]
    assert [window.tab_name(i) for i in range(window.tabs.count())] == list(TAB_NAMES)
    assert not window._monitor_tab.is_created
    assert window._run_tab is not None and not window._run_tab.is_created
    window.show()
    window.show_tab("monitor")
    assert window._monitor_tab.is_created
    assert window.tab_name() == "monitor"


def test_detection_feeds_every_tab_and_the_status_bar(
    make_window: Callable[..., MainWindow], qtbot: QtBot
) -> None:
    window = make_window()
    window.show()
    _detected(qtbot, window)
    rig = window.state.rig
    assert rig is not None and rig.source == "detected" and rig.n_gpus == 2
    assert window.status_text.text().startswith("2 NVIDIA GPUs detected")
    assert "this computer" in window.fit_view.rig_header.summary
    assert "this computer" in window.split_view.rig_header.summary
    assert len(window.split_view.gpus.rows) == 2
    assert window.fit_view.result is not None and window.fit_view.result.rig == rig


def test_no_gpu_status_says_models_still_run_on_the_cpu(
    make_window: Callable[..., MainWindow], qtbot: QtBot
) -> None:
    window = make_window("no-library")
    _detected(qtbot, window)
    assert "CPU" in window.hardware.status_label.text()
    assert "not run models" not in window.status_text.text()
    assert window.hardware.mode == MODE_PLANNED


def test_fit_double_click_selects_model_and_quant_and_opens_split(
    make_window: Callable[..., MainWindow], qtbot: QtBot
) -> None:
    window = make_window()
    window.show()
    _detected(qtbot, window)
    window.show_tab("fit")
    index = window.fit_view.select_cell("llama-3.1-8b", "Q6_K")
    assert window.fit_view.choose(index)
    qtbot.waitUntil(lambda: window.state.model is not None, timeout=WAIT_MS)
    model = window.state.model
    assert model is not None and (model.ref, model.quant) == ("llama-3.1-8b", "Q6_K")
    assert model.spec.file_type == "Q6_K"
    assert window.tab_name() == "split"
    assert window.state.plan is not None and window.split_view.banner.status
    assert "Q6_K" in window.split_view.model_header.summary


def test_switching_detected_and_planned_keeps_model_and_split_where_they_fit(
    make_window: Callable[..., MainWindow], qtbot: QtBot
) -> None:
    window = make_window()
    _detected(qtbot, window)
    _choose(qtbot, window, "qwen2.5-14b", "Q4_K_M")
    window.state.update_settings(tensor_split=(0.6, 0.4), ctx=16384)
    window.hardware.set_planned_rig(parse_rig_expression("2x RTX 4090"))
    assert window.state.rig is not None and window.state.rig.source == "planned"
    assert window.state.model is not None and window.state.model.ref == "qwen2.5-14b"
    assert window.state.settings.tensor_split == (0.6, 0.4)  # same GPU count: the split still means something
    window.hardware.show_mode(MODE_DETECTED)
    assert window.state.settings.tensor_split == (0.6, 0.4) and window.state.settings.ctx == 16384
    window.hardware.set_planned_rig(parse_rig_expression("3x RTX 3060"))
    assert window.state.settings.tensor_split is None  # three GPUs: back to llama.cpp's default
    assert window.state.model is not None and window.state.settings.ctx == 16384
    _settle(qtbot, window)


def test_settings_survive_a_restart(
    make_window: Callable[..., MainWindow], qtbot: QtBot, tmp_path: Path
) -> None:
    ini = tmp_path / "restart.ini"
    first = make_window(ini=ini)
    first.show()
    _detected(qtbot, first)
    first.hardware.set_planned_rig(parse_rig_expression("RTX 4090 + RTX 3090@x4"))
    _choose(qtbot, first, "mistral-small-24b", "Q5_K_M")
    first.state.update_settings(
        tensor_split=(0.55, 0.45), ctx=32768, type_k="q8_0", type_v="q8_0", flash_attn=True
    )
    first.show_tab("split")
    first.resize(
        780, 560
    )  # inside the offscreen platform's 800x600 screen: restoreGeometry keeps windows on it
    _settle(qtbot, first)
    size = (first.width(), first.height())
    first.close()

    second = make_window(ini=ini)
    second.show()
    qtbot.waitUntil(lambda: second.state.model is not None, timeout=WAIT_MS)
    _detected(qtbot, second)
    assert second.hardware.mode == MODE_PLANNED  # detection must not take the remembered planned rig away
    rig = second.state.rig
    assert rig is not None and [g.name for g in rig.gpus] == [g.name for g in first.hardware.planned_rig.gpus]
    assert rig.gpus[1].pcie.max_width == 4
    model = second.state.model
    assert model is not None and (model.ref, model.quant) == ("mistral-small-24b", "Q5_K_M")
    s = second.state.settings
    assert (s.tensor_split, s.ctx, s.type_k, s.type_v) == ((0.55, 0.45), 32768, "q8_0", "q8_0")
    assert second.tab_name() == "split"
    # restoreGeometry works in frame coordinates: the offscreen platform's frame may shift it by a few px.
    assert abs(second.width() - size[0]) <= 8 and abs(second.height() - size[1]) <= 8


def test_a_remembered_model_file_that_is_gone_is_ignored(
    make_window: Callable[..., MainWindow], qtbot: QtBot, tmp_path: Path
) -> None:
    ini = tmp_path / "gone.ini"
    store = SettingsStore.at(ini)
    store.set_text("model/ref", str(tmp_path / "deleted.gguf"))
    store.set_text("settings", '{"ctx": 4096, "tensor_split": [0.2, 0.3, 0.5]}')
    store.set_text("rig/mode", "planned")
    store.set_text("rig/planned", "this is not a rig file")
    store.sync()
    window = make_window(ini=ini)
    _detected(qtbot, window)
    assert window.state.model is None
    assert window.state.settings.ctx == 4096
    assert window.state.settings.tensor_split is None  # three ratios for a two-GPU rig: stale
    assert window.hardware.mode == MODE_DETECTED


def test_a_remembered_split_waits_for_the_detected_rig(
    make_window: Callable[..., MainWindow], qtbot: QtBot, tmp_path: Path
) -> None:
    ini = tmp_path / "detected.ini"
    store = SettingsStore.at(ini)
    store.set_text("rig/mode", "detected")
    store.set_text("settings", '{"tensor_split": [0.3, 0.2, 0.5]}')
    store.sync()
    window = make_window("2x3090-nvlink", ini=ini)
    window.hardware.set_planned_rig(parse_rig_expression("3x RTX 3060"), pin=False)
    assert window.state.settings.tensor_split == (0.3, 0.2, 0.5)  # a three-GPU rig showed up: it applies
    _detected(qtbot, window)
    assert window.state.settings.tensor_split is None  # the detected rig has two


def test_open_model_shortcut_goes_to_the_run_tab(
    make_window: Callable[..., MainWindow], qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = make_window()
    window.show()
    run = window.run_view
    assert run is not None
    calls: list[bool] = []
    monkeypatch.setattr(run, "open_model_dialog", lambda: calls.append(True))
    assert window.open_model_action.shortcut() == QtGui.QKeySequence(QtGui.QKeySequence.StandardKey.Open)
    assert window.open_model_action.shortcutContext() == QtCore.Qt.ShortcutContext.ApplicationShortcut
    window.open_model_action.trigger()
    assert calls == [True] and window.tab_name() == "run"
    _settle(qtbot, window)


def test_quit_shortcut_and_tab_shortcuts(make_window: Callable[..., MainWindow]) -> None:
    window = make_window()
    assert window.quit_action.shortcut().toString() == "Ctrl+Q"
    keys = {a.text().replace("&", ""): a.shortcut().toString() for a in window.findChildren(QtGui.QAction)}
    assert keys["Fit"] == "Ctrl+2" and keys["Split"] == "Ctrl+3"


def test_an_opened_gguf_file_is_selected_and_listed_in_the_fit_table(
    make_window: Callable[..., MainWindow], qtbot: QtBot, demo_model_path: str
) -> None:
    window = make_window()
    window.show()  # the fit table starts computing once the window is on screen
    _detected(qtbot, window)
    model = _choose(qtbot, window, demo_model_path, None)
    assert model.is_file and model.quant == model.spec.file_type
    qtbot.waitUntil(
        lambda: not window.busy and any(r.local for r in window.fit_view.model.model_rows), timeout=WAIT_MS
    )
    assert [r.ref for r in window.fit_view.model.model_rows if r.local] == [demo_model_path]


def test_a_model_that_cannot_be_read_says_why_in_the_status_bar(
    make_window: Callable[..., MainWindow], qtbot: QtBot, tmp_path: Path
) -> None:
    window = make_window()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF")
    with qtbot.waitSignal(window.model_failed, timeout=WAIT_MS) as blocker:
        window.load_model(str(bad))
    assert blocker.args and "bad.gguf" in window.status_text.text() + blocker.args[0]
    assert window.state.model is None
    _settle(qtbot, window)


def test_dropping_a_gguf_on_the_window_opens_it(
    make_window: Callable[..., MainWindow],
    qtbot: QtBot,
    monkeypatch: pytest.MonkeyPatch,
    demo_model_path: str,
) -> None:
    window = make_window()
    window.show()
    opened: list[str] = []
    run = window.run_view
    assert run is not None
    monkeypatch.setattr(run, "open_model_file", lambda path: opened.append(str(path)))
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(demo_model_path)])
    pos = QtCore.QPointF(50, 50)
    buttons, keys = QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier
    with warnings.catch_warnings():  # the QPoint constructor is the one every PySide6 6.x has
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QtGui.QDragEnterEvent(pos.toPoint(), QtCore.Qt.DropAction.CopyAction, mime, buttons, keys)
    window.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QtGui.QDropEvent(pos, QtCore.Qt.DropAction.CopyAction, mime, buttons, keys)
    window.dropEvent(drop)
    assert opened == [demo_model_path] and window.tab_name() == "run"
    _settle(qtbot, window)


def test_screenshot_of_a_chosen_tab_waits_for_the_model_and_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.ui.app as gui

    windows: list[MainWindow] = []
    grab = gui._screenshot

    def spy(app: object, window: object, path: Path, tab: str | None = None) -> int:
        assert isinstance(window, MainWindow)
        windows.append(window)
        return grab(app, window, path, tab)

    monkeypatch.setattr(gui, "_screenshot", spy)
    out = tmp_path / "split.png"
    args = argparse.Namespace(
        screenshot=str(out), gui_rig="2x RTX 3090", tab="split", gui_model="llama-3.1-8b", gui_quant="Q4_K_M"
    )
    assert run_gui(args) == 0
    image = QtGui.QImage(str(out))
    assert not image.isNull() and image.width() >= 800
    (window,) = windows
    assert window.tab_name() == "split"
    assert window.state.model is not None and window.state.model.ref == "llama-3.1-8b"
    assert window.fit_view.result is not None and window.split_view.banner.status
    assert not window.store.persistent  # a screenshot neither reads nor writes the user's settings
    window.wait_for_tasks()
    assert_quiet(window)
    window.deleteLater()


def test_unknown_tab_for_a_screenshot_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(screenshot=str(tmp_path / "x.png"), gui_rig=None, tab="kitchen")
    assert run_gui(args) == 2
    assert "unknown tab 'kitchen'" in capsys.readouterr().err


def test_every_term_the_tabs_explain_has_a_glossary_entry() -> None:
    import re

    from app.core.plan import STATUSES
    from app.core.settings import SPLIT_MODES
    from app.ui.glossary import GLOSSARY

    root = Path(__file__).resolve().parents[2] / "app" / "ui"
    used = set()
    for path in root.rglob("*.py"):
        used |= set(re.findall(r'\btip\("([a-z_]+)"\)', path.read_text(encoding="utf-8")))
    used |= {f"mode_{m}" for m in SPLIT_MODES} | {f"status_{s}" for s in STATUSES}
    assert used - set(GLOSSARY) == set()
    for term in (
        "tensor_split",
        "split_mode",
        "kv_cache",
        "quantization",
        "flash_attention",
        "pcie_width",
        "nvlink",
    ):
        assert len(GLOSSARY[term]) > 40 and term in used
