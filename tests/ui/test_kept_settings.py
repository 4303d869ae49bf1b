"""Nothing the user saved is lost: settings this version cannot read are kept, a newer format is never
written, and the user is told once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.core.rig import Rig
from app.hardware.catalog import parse_rig_expression
from app.hardware.nvml import load_fake
from app.hardware.probe import detect_rig
from app.ui.main_window import MainWindow
from app.ui.settings_store import KEEP_RIG, Session, SettingsStore
from tests.ui.ui_guard import assert_quiet

pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints\(\)")
WAIT_MS = 60000

# A rig file from a newer Rigfit: a GPU id this catalog does not have, and a key it does not know.
FUTURE_RIG = (
    'format = 1\nname = "future"\nfan_curve = "quiet"\n\n[[gpu]]\ncatalog = "rtx-6090"\n\n'
    '[[gpu]]\ncatalog = "rtx-6090"\n\n[[gpu]]\ncatalog = "rtx-3090"\n'
)
FUTURE_SETTINGS = {"ctx": 65536, "tensor_split": [0.5, 0.3, 0.2], "main_gpu": 2, "type_k": "q8_0"}


def _detector(scenario: str, sysfs: Path) -> Callable[[], Rig]:
    return lambda: detect_rig(backend=load_fake(scenario), sysfs_root=sysfs)


@pytest.fixture
def make_window(qtbot: QtBot, tmp_path: Path) -> Iterator[Callable[..., MainWindow]]:
    made: list[MainWindow] = []

    def make(ini: Path, scenario: str = "zero-gpus") -> MainWindow:
        window = MainWindow(store=SettingsStore.at(ini), detect=_detector(scenario, tmp_path), discover=None)
        qtbot.addWidget(window)
        made.append(window)
        return window

    yield make
    for window in made:
        window.close()
        window.wait_for_tasks()
        assert_quiet(window)


def _open_and_close(qtbot: QtBot, window: MainWindow) -> list[str]:
    notices: list[str] = []
    window.settings_notice.connect(notices.append)
    window.show()
    qtbot.waitUntil(lambda: window._started_background, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not window.busy, timeout=WAIT_MS)
    window.close()
    window.wait_for_tasks()
    return notices


def _future_store(ini: Path) -> None:
    store = SettingsStore.at(ini)
    store.set_text("format", "1")
    store.set_text("rig/mode", "planned")
    store.set_text("rig/planned", FUTURE_RIG)
    store.set_text("settings", json.dumps(FUTURE_SETTINGS))
    store.sync()


def test_a_rig_this_version_cannot_read_is_kept_with_its_split_and_the_user_is_told_once(
    make_window: Callable[..., MainWindow], qtbot: QtBot, tmp_path: Path
) -> None:
    ini = tmp_path / "future.ini"
    _future_store(ini)
    window = make_window(ini)
    notices = _open_and_close(qtbot, window)
    assert len(notices) == 1 and "remembered rig could not be read" in notices[0]
    assert "fan_curve" in notices[0]
    back = SettingsStore.at(ini)
    assert back.get_text("rig/planned") == FUTURE_RIG
    assert back.get_text("rig/mode") == "planned"
    stored = json.loads(back.get_text("settings") or "{}")
    assert stored["tensor_split"] == [0.5, 0.3, 0.2] and stored["main_gpu"] == 2
    assert stored["ctx"] == 65536 and stored["type_k"] == "q8_0"

    # The next start finds the same problem: it is not told again.
    again = _open_and_close(qtbot, make_window(ini))
    assert again == []
    assert SettingsStore.at(ini).get_text("rig/planned") == FUTURE_RIG


def test_a_rig_the_user_replaces_is_written(
    make_window: Callable[..., MainWindow], qtbot: QtBot, tmp_path: Path
) -> None:
    ini = tmp_path / "replaced.ini"
    _future_store(ini)
    window = make_window(ini)
    window.show()
    qtbot.waitUntil(lambda: window._started_background, timeout=WAIT_MS)
    window.hardware.set_planned_rig(parse_rig_expression("RTX 4090 + RTX 3060"))
    assert KEEP_RIG not in window._kept_entries()
    window.close()
    window.wait_for_tasks()
    planned = SettingsStore.at(ini).get_text("rig/planned") or ""
    assert "rtx-4090" in planned and "rtx-6090" not in planned


def test_a_settings_file_of_a_newer_format_is_never_written(
    make_window: Callable[..., MainWindow], qtbot: QtBot, tmp_path: Path
) -> None:
    ini = tmp_path / "newer.ini"
    ini.write_text(
        '[General]\nformat=7\nsettings="{\\"ctx\\": 1}"\nrig\\mode=orbital\nsomething\\new=42\n',
        encoding="utf-8",
    )
    before = ini.read_bytes()
    window = make_window(ini)
    notices = _open_and_close(qtbot, window)
    assert len(notices) == 1 and "newer Rigfit" in notices[0]
    assert ini.read_bytes() == before
    # Told at every start: the store cannot even remember that it told.
    assert len(_open_and_close(qtbot, make_window(ini))) == 1


def test_unreadable_setting_fields_are_kept_unless_the_user_changes_them(tmp_path: Path) -> None:
    ini = tmp_path / "fields.ini"
    store = SettingsStore.at(ini)
    store.set_text("settings", json.dumps({"ctx": 1e99, "n_gpu_layers": "all", "flash_attn": False}))
    store.sync()
    first = SettingsStore.at(ini)
    session = first.load_session()
    assert session.settings is not None and session.settings.ctx == 8192  # the default, for now
    assert session.problems and "ctx" in session.problems[0] and "n_gpu_layers" in session.problems[0]
    first.save_session(session)
    kept = json.loads(SettingsStore.at(ini).get_text("settings") or "{}")
    assert kept["ctx"] == 1e99 and kept["n_gpu_layers"] == "all" and kept["flash_attn"] is False

    second = SettingsStore.at(ini)
    s = second.load_session().settings
    assert s is not None
    from dataclasses import replace

    second.save_session(Session(settings=replace(s, ctx=4096)))
    kept = json.loads(SettingsStore.at(ini).get_text("settings") or "{}")
    assert kept["ctx"] == 4096 and kept["n_gpu_layers"] == "all"


def test_deeply_nested_and_corrupt_values_do_not_stop_the_window(
    make_window: Callable[..., MainWindow], qtbot: QtBot, tmp_path: Path
) -> None:
    ini = tmp_path / "nested.ini"
    store = SettingsStore.at(ini)
    deep = "[" * 100000 + "]" * 100000
    store.set_text("settings", deep)
    store.set_text("run/folders", deep)
    store.set_text("rig/mode", "planned")
    store.set_text("rig/planned", "gpu = " + "[" * 50000 + "]" * 50000)
    store.sync()
    window = make_window(ini)
    notices = _open_and_close(qtbot, window)
    assert len(notices) == 1
    back = SettingsStore.at(ini)
    assert back.get_text("settings") == deep and back.get_text("run/folders") == deep
    assert (back.get_text("rig/planned") or "").startswith("gpu = [[[")
