""" "Get this model" and the downloads list, against the fake hub: from a Fit cell to the Run tab."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from PySide6 import QtCore

from app.core.rig import Rig
from app.hardware.nvml import load_fake
from app.hardware.probe import detect_rig
from app.hub.listing import list_repo
from app.ui.hub.downloads import CANCELLED, DONE, DownloadManager
from app.ui.hub.downloads_view import DownloadsPanel
from app.ui.hub.get_model import GetModelDialog
from app.ui.main_window import MainWindow
from app.ui.settings_store import SettingsStore
from app.ui.state import AppState
from app.ui.tasks import TaskRunner
from tests.hub.fake_hub import FakeHub
from tests.hub.models import DEMO_FILE, DEMO_REPO, VOCAB128K_FILE, VOCAB128K_REPO
from tests.ui.ui_guard import assert_quiet

pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints\(\)")
WAIT_MS = 60000


@pytest.fixture
def hub_env(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    # The catalog's first SmolLM2 repository is the model maker's: the fake hub holds it.
    return fake_hub


@pytest.fixture
def parts(qtbot: QtBot) -> Iterator[tuple[AppState, TaskRunner, DownloadManager]]:
    from app.hardware.catalog import parse_rig_expression

    state = AppState()
    state.set_rig(parse_rig_expression("2x RTX 3090"))
    holder = QtCore.QObject()
    tasks = TaskRunner(QtCore.QThreadPool(holder), holder)
    manager = DownloadManager(holder)
    yield state, tasks, manager
    manager.shutdown()
    tasks.shutdown()
    assert_quiet(holder)


def test_a_fit_cell_finds_its_file_shows_size_and_plan_then_downloads(
    qtbot: QtBot, hub_env: FakeHub, parts: tuple[AppState, TaskRunner, DownloadManager]
) -> None:
    state, tasks, manager = parts
    dialog = GetModelDialog(state, tasks, manager)
    qtbot.addWidget(dialog)
    dialog.for_catalog("smollm2-135m", "Q4_1")
    assert dialog.repo_combo.itemData(0) == DEMO_REPO
    qtbot.waitUntil(dialog.download_button.isEnabled, timeout=WAIT_MS)
    assert DEMO_FILE in dialog.info.text() and "94 MiB" in dialog.info.text()
    assert "planned from its header on the hub (not downloaded)" in dialog.plan_label.text()
    assert "Fits" in dialog.plan_label.text() and "GPU 1 RTX 3090" in dialog.plan_label.text()
    assert not [e for e in hub_env.log if e.role == "cdn" and e.range == "bytes=0-"]  # nothing downloaded yet
    with qtbot.waitSignal(manager.finished, timeout=WAIT_MS) as finished:
        dialog.download_button.click()
    entry = finished.args[0]
    assert (
        entry.state == DONE
        and Path(entry.path).read_bytes() == hub_env.blob(DEMO_REPO, DEMO_FILE).file.read_bytes()
    )
    tasks.wait()
    # The same cell again: the file is here, "Use it" hands its path over without a new download.
    again = GetModelDialog(state, tasks, manager)
    qtbot.addWidget(again)
    again.for_catalog("smollm2-135m", "Q4_1")
    qtbot.waitUntil(again.download_button.isEnabled, timeout=WAIT_MS)
    assert again.download_button.text() == "Use it" and "already downloaded" in again.plan_label.text()
    with qtbot.waitSignal(again.use_requested) as used:
        again.download_button.click()
    assert Path(used.args[0]).resolve() == Path(entry.path).resolve() and len(manager.entries()) == 1
    tasks.wait()


def test_a_missing_quant_says_which_repositories_were_tried_and_offers_the_other_files(
    qtbot: QtBot, hub_env: FakeHub, parts: tuple[AppState, TaskRunner, DownloadManager]
) -> None:
    state, tasks, manager = parts
    dialog = GetModelDialog(state, tasks, manager)
    qtbot.addWidget(dialog)
    dialog.for_catalog("smollm2-135m", "Q2_K")
    qtbot.waitUntil(dialog.download_button.isEnabled, timeout=WAIT_MS)
    text = dialog.info.text()
    assert "no catalog repository" in text and "has no Q2_K file" in text.replace("&nbsp;", " ")
    # The maker's repository answered: its Q4_1 file is offered, planned, ready to download.
    assert dialog.repo_combo.currentData() == DEMO_REPO and DEMO_FILE in text and "Q4_1" in text
    assert "Fits" in dialog.plan_label.text() and "Q2_K" not in dialog.windowTitle()
    tasks.wait()
    # No catalog repository on the hub at all: the one line, and nothing to download.
    dialog.for_catalog("llama-3.2-1b", "Q4_K_M")
    qtbot.waitUntil(lambda: "no catalog repository" in dialog.info.text(), timeout=WAIT_MS)
    assert dialog.file_combo.count() == 0 and not dialog.download_button.isEnabled()
    tasks.wait()


def test_the_downloads_list_shows_states_and_a_stopped_download_resumes(
    qtbot: QtBot, hub_env: FakeHub, parts: tuple[AppState, TaskRunner, DownloadManager]
) -> None:
    _, _, manager = parts
    panel = DownloadsPanel(manager)
    qtbot.addWidget(panel)
    sha = hub_env.blob(VOCAB128K_REPO, VOCAB128K_FILE).sha256
    hub_env.cut_after[sha] = [8 << 20]
    hub_env.stall_blobs.add(sha)  # 8 MiB arrive, then the server stalls
    listing = list_repo(VOCAB128K_REPO)
    entry_id = manager.start(listing, listing.pick(file=VOCAB128K_FILE))
    assert manager.start(listing, listing.pick(file=VOCAB128K_FILE)) == entry_id  # not twice
    qtbot.waitUntil(lambda: manager.entry(entry_id).done_bytes >= 8 << 20, timeout=WAIT_MS)
    assert panel.table.item(0, 3).text() == "Downloading"
    selected = panel.selected()  # the new download is selected: the buttons act on it
    assert selected is not None and selected.id == entry_id
    assert ": Downloading" in panel.message.text()
    assert panel.stop_button.isEnabled() and not panel.use_button.isEnabled()
    panel.stop_button.click()
    qtbot.waitUntil(lambda: manager.entry(entry_id).state == CANCELLED, timeout=WAIT_MS)
    assert panel.table.item(0, 3).text() == "Stopped (resumable)" and panel.resume_button.isEnabled()
    hub_env.stall_blobs.clear()
    with qtbot.waitSignal(manager.finished, timeout=WAIT_MS):
        panel.resume_button.click()
    assert panel.table.item(0, 3).text() == "Downloaded" and panel.use_button.isEnabled()
    assert [e.range for e in hub_env.log if e.role == "cdn"][-1] == f"bytes={8 << 20}-"
    with qtbot.waitSignal(panel.use_requested) as used:
        panel.use_button.click()
    assert used.args[0] == manager.entry(entry_id).path


def _detector(tmp_path: Path) -> Callable[[], Rig]:
    return lambda: detect_rig(backend=load_fake("2x3090-nvlink"), sysfs_root=tmp_path)


def test_from_a_fit_cell_to_the_model_picked_in_the_run_tab(
    qtbot: QtBot, hub_env: FakeHub, tmp_path: Path
) -> None:
    window = MainWindow(
        store=SettingsStore.at(tmp_path / "rigfit.ini"), detect=_detector(tmp_path), discover=None
    )
    qtbot.addWidget(window)
    try:
        window.show()  # the fit table starts computing once the window is on screen
        with qtbot.waitSignal(window.detection_finished, timeout=WAIT_MS):
            window.start_detection()
        window.show_tab("fit")
        fit = window.fit_view
        qtbot.waitUntil(lambda: fit.result is not None, timeout=WAIT_MS)
        index = fit.select_cell("smollm2-135m", "Q4_1")
        assert index.isValid()
        assert [a.text() for a in fit.table.actions()] == ["Get this model…"]
        assert window.hub.get_from_fit_cell(index)
        dialog = window.hub.dialog
        assert dialog is not None
        qtbot.waitUntil(dialog.download_button.isEnabled, timeout=WAIT_MS)
        # The remote plan is a row of the Fit table too, marked as on the hub.
        ref = f"hf:{DEMO_REPO}/{DEMO_FILE}"
        qtbot.waitUntil(lambda: any(r.ref == ref for r in fit.model.model_rows), timeout=WAIT_MS)
        (row,) = [r for r in fit.model.model_rows if r.ref == ref]
        assert row.name.endswith("· on the hub") and row.cells["Q4_1"].status == "fits"
        dialog.download_button.click()
        qtbot.waitUntil(
            lambda: window.state.model is not None and (window.state.model.path or "").endswith(DEMO_FILE),
            timeout=WAIT_MS,
        )
        assert window.tab_name() == "run"
        assert window.hub.status_button.isVisible() or window.hub.status_button.text() == "Downloads"
        # The downloaded file's row replaces the "on the hub" one, and a later plan from the hub of
        # the same file adds no second row.
        qtbot.waitUntil(lambda: window.state.model.path in fit.local_paths(), timeout=WAIT_MS)
        assert ref not in fit.local_paths()
        fit.add_local_models([dialog.remote_plan.spec])
        assert ref not in fit.local_paths()
    finally:
        window.close()
        window.wait_for_tasks()
    assert_quiet(window)


def test_a_file_on_the_hub_is_planned_on_the_split_tab_marked_remote(
    qtbot: QtBot, hub_env: FakeHub, tmp_path: Path
) -> None:
    window = MainWindow(
        store=SettingsStore.at(tmp_path / "rigfit.ini"), detect=_detector(tmp_path), discover=None
    )
    qtbot.addWidget(window)
    try:
        with qtbot.waitSignal(window.detection_finished, timeout=WAIT_MS):
            window.start_detection()
        dialog = window.hub.get_model(search=DEMO_REPO)
        qtbot.waitUntil(dialog.split_button.isEnabled, timeout=WAIT_MS)
        dialog.split_button.click()
        qtbot.waitUntil(lambda: window.state.model is not None, timeout=WAIT_MS)
        model = window.state.model
        assert model is not None and model.spec.remote == f"hf:{DEMO_REPO}/{DEMO_FILE}"
        assert model.label.endswith("(on the hub, not downloaded)")
        assert window.tab_name() == "split" and window.state.plan is not None
        assert not list(Path(os.environ["HF_HUB_CACHE"]).rglob("*.gguf"))  # nothing downloaded
    finally:
        window.close()
        window.wait_for_tasks()
    assert_quiet(window)


def test_an_unreachable_hub_is_one_line_in_the_dialog_and_nothing_else_breaks(
    qtbot: QtBot,
    hub_env: FakeHub,
    parts: tuple[AppState, TaskRunner, DownloadManager],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state, tasks, manager = parts
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    dialog = GetModelDialog(state, tasks, manager)
    qtbot.addWidget(dialog)
    dialog.for_search("llama 3.2 1b")
    qtbot.waitUntil(lambda: "cannot reach the Hugging Face hub" in dialog.info.text(), timeout=WAIT_MS)
    assert "\n" not in dialog.info.text() and not dialog.download_button.isEnabled()
    tasks.wait()


def test_the_run_tabs_model_picker_opens_the_hub_search(
    qtbot: QtBot, hub_env: FakeHub, tmp_path: Path
) -> None:
    window = MainWindow(
        store=SettingsStore.at(tmp_path / "rigfit.ini"), detect=_detector(tmp_path), discover=None
    )
    qtbot.addWidget(window)
    try:
        window.show_tab("run")
        run = window.run_view
        assert run is not None
        run.picker.hub_button.click()  # type: ignore[attr-defined]
        dialog = window.hub.dialog
        assert dialog is not None and dialog.isVisible()
        dialog.search_edit.setText("smollm2")
        dialog.search()
        qtbot.waitUntil(lambda: dialog.repo_combo.count() > 0, timeout=WAIT_MS)
        assert dialog.repo_combo.itemData(0) == DEMO_REPO  # the catalog's repository first
        qtbot.waitUntil(dialog.download_button.isEnabled, timeout=WAIT_MS)
        dialog.reject()
    finally:
        window.close()
        window.wait_for_tasks()
    assert_quiet(window)
