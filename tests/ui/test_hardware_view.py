"""The Hardware tab and the main window, offscreen: cards, the demo rig, editing, no threads left."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.advice import rig_advice
from app.core.rig import Rig
from app.hardware.nvml import load_fake
from app.hardware.probe import detect_rig
from app.ui.app import has_display, run_gui
from app.ui.hardware.gpu_card import GpuCard
from app.ui.hardware.view import MODE_DETECTED, MODE_PLANNED, HardwareView
from app.ui.main_window import MainWindow

# The offscreen platform warns whenever a shown top-level window gets size constraints; it is not a
# problem of the code under test.
pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints\(\)")


def _rig(scenario: str, tmp_path: Path) -> Rig:
    return detect_rig(backend=load_fake(scenario), sysfs_root=tmp_path)


@pytest.fixture
def view(qtbot: QtBot) -> HardwareView:
    widget = HardwareView()
    qtbot.addWidget(widget)
    return widget


def test_one_card_per_gpu_for_a_detected_two_gpu_rig(view: HardwareView, tmp_path: Path) -> None:
    view.set_detected(_rig("2x3090-nvlink", tmp_path))
    assert view.mode == MODE_DETECTED
    assert len(view.cards) == 2
    assert [c.gpu.name for c in view.cards] == ["NVIDIA GeForce RTX 3090"] * 2
    assert view.cards[0].nvlink_badge.text() == "NVLink ×4 → GPU 1 · 56 GB/s"
    assert view.cards[0].vram_bar.format() == "VRAM 23.7 GiB free of 24.0 GiB"
    assert view.cards[0].slot_combo is None  # a detected rig is not editable
    assert not view.editor.isVisibleTo(view)
    assert view.topology_table.item(0, 1).text() == "NV4\nP2P OK"
    assert view.status_label.text() == "2 NVIDIA GPUs detected (driver 550.127.05, CUDA 12.4)"


def test_degraded_link_is_coloured_and_warned_about(view: HardwareView, tmp_path: Path) -> None:
    view.set_detected(_rig("3090+3060-x4", tmp_path))
    full, narrow = view.cards
    assert narrow.pcie_label.text() == "PCIe Gen3 x4 (card supports Gen4 x16)"
    text_role = narrow.pcie_label.foregroundRole()
    assert narrow.pcie_label.palette().color(text_role) != full.pcie_label.palette().color(text_role)
    codes = [
        view.advice_list.item(i).data(QtCore.Qt.ItemDataRole.UserRole)
        for i in range(view.advice_list.count())
    ]
    assert "pcie-narrow-slot" in codes


def test_nothing_detected_shows_why_and_the_editable_demo_rig(view: HardwareView, tmp_path: Path) -> None:
    view.set_detected(_rig("no-library", tmp_path))
    assert view.mode == MODE_PLANNED
    assert "libnvidia-ml.so.1 is missing" in view.status_label.text()
    assert "2x RTX 3090" in view.status_label.text()
    assert [c.gpu.catalog_id for c in view.cards] == ["rtx-3090", "rtx-3090"]
    assert view.editor.isVisibleTo(view)
    assert all(c.slot_combo is not None and c.remove_button is not None for c in view.cards)


def test_editing_the_planned_rig(view: HardwareView, qtbot: QtBot) -> None:
    seen: list[Rig] = []
    view.rig_changed.connect(seen.append)
    view.add_combo.setCurrentIndex(view.add_combo.findData("rtx-3060-12gb"))
    view.add_button.click()
    assert [c.gpu.catalog_id for c in view.cards] == ["rtx-3090", "rtx-3090", "rtx-3060-12gb"]
    assert seen[-1].n_gpus == 3

    # The slot combo of the new card: x4 -> a narrow-slot warning.
    combo = view.cards[2].slot_combo
    assert combo is not None
    combo.setCurrentIndex(combo.findData(4))
    qtbot.waitUntil(lambda: view.planned_rig.gpus[2].pcie.max_width == 4)
    assert view.cards[2].pcie_label.text() == "PCIe Gen4 x4 (card supports x16)"
    assert any(a.code == "pcie-narrow-slot" for a in rig_advice(view.planned_rig))

    # NVLink between the two 3090s.
    for k in (0, 1):
        check = view.cards[k].nvlink_check
        assert check is not None and check.isEnabled()
        check.setChecked(True)
    qtbot.waitUntil(lambda: view.planned_rig.nvlinked(0, 1))
    assert view.planned_rig.topology[0][1] == "NV4"
    assert (
        view.cards[2].nvlink_check is not None and not view.cards[2].nvlink_check.isEnabled()
    )  # no NVLink on a 3060

    # Remove the first 3090: the bridge goes, the 3060 keeps its slot.
    assert view.cards[0].remove_button is not None
    view.cards[0].remove_button.click()
    qtbot.waitUntil(lambda: view.planned_rig.n_gpus == 2)
    assert [g.catalog_id for g in view.planned_rig.gpus] == ["rtx-3090", "rtx-3060-12gb"]
    assert not view.planned_rig.nvlinked(0, 1)
    assert view.planned_rig.gpus[1].pcie.max_width == 4
    assert seen[-1] == view.planned_rig


def test_typing_a_name_in_the_searchable_combo_adds_that_gpu(view: HardwareView) -> None:
    view.add_combo.setEditText("4060 ti 16gb")
    view.add_button.click()
    assert view.cards[-1].gpu.catalog_id == "rtx-4060-ti-16gb"
    view.add_combo.setEditText("rtx 3095")
    view.add_button.click()
    assert view.editor_message.isVisibleTo(view) and "did you mean RTX 3090" in view.editor_message.text()
    assert len(view.cards) == 3


def test_save_and_load_the_planned_rig(view: HardwareView, tmp_path: Path) -> None:
    view.add_planned_gpu("rtx-4090")
    path = tmp_path / "rig.toml"
    assert view.save_rig_file(path)
    saved = view.planned_rig
    other = HardwareView()
    try:
        assert other.load_rig_file(path)
        assert other.planned_rig == saved
        assert len(other.cards) == 3
    finally:
        other.deleteLater()


def test_loading_a_broken_rig_file_keeps_the_rig_and_says_why(view: HardwareView, tmp_path: Path) -> None:
    before = view.planned_rig
    bad = tmp_path / "bad.toml"
    bad.write_text("[[gpu]]\ncatalog = 'rtx-9999'\n")
    assert not view.load_rig_file(bad)
    assert view.planned_rig == before
    assert str(bad) in view.editor_message.text() and "unknown GPU" in view.editor_message.text()


def test_user_choice_of_mode_survives_a_new_detection(view: HardwareView, tmp_path: Path) -> None:
    rig = _rig("rtx4090", tmp_path)
    view.set_detected(rig)
    view.planned_button.click()
    assert view.mode == MODE_PLANNED
    view.set_detected(rig)
    assert view.mode == MODE_PLANNED
    view.detected_button.click()
    assert view.current_rig() == rig and len(view.cards) == 1


def test_gpu_card_shows_temperature_and_power_when_known(qtbot: QtBot, tmp_path: Path) -> None:
    rig = _rig("h200", tmp_path)
    card = GpuCard(rig.gpus[0], 0, rig)
    qtbot.addWidget(card)
    texts = [w.text() for w in card.findChildren(QtWidgets.QLabel)]
    assert "35 °C" in texts and "700 W" in texts and "4814 GB/s" in texts
    assert card.nvlink_badge.text() == "No NVLink"


@pytest.fixture
def window(qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MainWindow:
    monkeypatch.setenv("RIGFIT_FAKE_NVML", "2x3090-nvlink")
    monkeypatch.setenv("RIGFIT_SYSFS_ROOT", str(tmp_path))
    win = MainWindow()
    qtbot.addWidget(win)
    return win


def test_window_detects_off_the_gui_thread_and_shows_the_cards(window: MainWindow, qtbot: QtBot) -> None:
    threads: list[QtCore.QThread] = []
    original = window._detect_fn

    def detect() -> Rig:
        threads.append(QtCore.QThread.currentThread())
        return original()

    window._detect_fn = detect
    window.show()
    with qtbot.waitSignal(window.detection_finished, timeout=20000) as blocker:
        window.start_detection()
    assert isinstance(blocker.args[0], Rig)
    assert threads and threads[0] is not QtWidgets.QApplication.instance().thread()
    assert len(window.hardware.cards) == 2
    assert window.status_text.text().startswith("2 NVIDIA GPUs detected")
    assert window.tabs.tabText(0) == "Hardware"
    window.close()
    assert window._pool.activeThreadCount() == 0
    assert not window.busy


def test_adding_a_tab_is_one_call(window: MainWindow) -> None:
    before = window.tabs.count()
    index = window.add_tab(QtWidgets.QLabel("extra"), "Extra")
    assert window.tabs.tabText(index) == "Extra" and window.tabs.count() == before + 1


def test_ctrl_q_quits_and_about_lists_the_versions(window: MainWindow, qtbot: QtBot) -> None:
    assert window.quit_action.shortcut().toString() == "Ctrl+Q"
    with qtbot.waitSignal(window.versions_ready, timeout=60000):
        window.show_about()
    box = window.findChild(QtWidgets.QMessageBox, "aboutBox")
    assert box is not None and "Rigfit" in box.text() and "Python" in box.text()
    box.close()
    window.quit_action.trigger()
    assert not window.isVisible()
    window.wait_for_tasks()
    assert window._pool.activeThreadCount() == 0


def test_planned_rig_from_the_command_line_opens_in_planned_mode(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.hardware.catalog import parse_rig_expression

    monkeypatch.setenv("RIGFIT_FAKE_NVML", "h200")
    win = MainWindow(planned_rig=parse_rig_expression("RTX 4090 + RTX 4090@x4"))
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.detection_finished, timeout=20000):
        win.start_detection()
    assert win.hardware.mode == MODE_PLANNED  # detection found a GPU, but the user asked for this rig
    assert [c.gpu.pcie.max_width for c in win.hardware.cards] == [16, 4]
    win.close()


def test_screenshot_renders_the_window_to_a_png(
    qapp: QtWidgets.QApplication, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RIGFIT_FAKE_NVML", "2x3090-nvlink")
    monkeypatch.setenv("RIGFIT_SYSFS_ROOT", str(tmp_path))
    out = tmp_path / "shot.png"
    args = argparse.Namespace(screenshot=str(out), gui_rig=None)
    assert run_gui(args) == 0
    assert out.stat().st_size > 10_000
    image = QtGui.QImage(str(out))
    assert image.width() >= 800 and image.height() >= 600


def test_no_display_is_a_clear_message_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert run_gui(argparse.Namespace(screenshot=None, gui_rig=None)) == 2
    err = capsys.readouterr().err
    assert "no display" in err and "rigfit detect" in err and len(err.strip().splitlines()) == 1


def test_bad_rig_expression_for_the_window_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_gui(argparse.Namespace(screenshot=None, gui_rig="RTX 3095")) == 2
    assert "unknown GPU 'RTX 3095'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "platform", "expected"),
    [
        ({}, "linux", False),
        ({"DISPLAY": ":0"}, "linux", True),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", True),
        ({"QT_QPA_PLATFORM": "offscreen"}, "linux", True),
        ({}, "win32", True),
        ({}, "darwin", True),
    ],
)
def test_has_display(env: dict[str, str], platform: str, expected: bool) -> None:
    assert has_display(env, platform) is expected


@pytest.mark.parametrize("scenario", ["no-library", "no-driver", "zero-gpus"])
def test_without_a_usable_gpu_the_tab_says_models_still_run_on_the_cpu(
    view: HardwareView, tmp_path: Path, scenario: str
) -> None:
    view.set_detected(_rig(scenario, tmp_path))
    text = view.status_label.text()
    assert "on the CPU" in text and "not run models" not in text
    assert text.count("CPU") == 1  # said once, whether the probe or the view says it
